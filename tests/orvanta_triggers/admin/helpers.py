"""What the admin tests share: URLs, form data and actions."""

from django.contrib.messages import get_messages
from django.urls import reverse

from orvanta_triggers import services

TRIGGER_LIST = "admin:orvanta_triggers_websockettrigger_changelist"
TRIGGER_ADD = "admin:orvanta_triggers_websockettrigger_add"
FLOW_STEPS = [{"id": "a", "script_path": "examples/echo", "args": {"msg": {"type": "ref", "expr": "flow_input.msg"}}}]


def trigger_url(name, trigger):
    return reverse(f"admin:orvanta_triggers_websockettrigger_{name}", args=[trigger.pk])


def make_trigger(workspace, **fields):
    config = {"path": "f/test/feed", "url": "ws://example.org/feed", "script_path": "examples/echo", **fields}
    return services.create_trigger(workspace=workspace, **config)


def messages_of(response):
    return [(m.level, str(m)) for m in get_messages(response.wsgi_request)]


def trigger_form_data(workspace, **overrides):
    data = {
        "workspace": workspace.pk,
        "path": "f/admin/feed",
        "mode": "enabled",
        "url": "ws://example.org/feed",
        "url_runnable_args": "{}",
        "script_path": "examples/echo",
        "filters": "[]",
        "filter_logic": "and",
        "initial_messages": "[]",
        "heartbeat": "",
        "error_handler_path": "",
        "error_handler_args": "{}",
        "retry": "",
        "headers": "{}",
        "subprotocols": "[]",
        "_save": "Save",
    }
    data.update(overrides)
    return data


def run_action(client, action, *triggers):
    return client.post(reverse(TRIGGER_LIST), {"action": action, "_selected_action": [t.pk for t in triggers]})


JOB_LIST = "admin:orvanta_triggers_job_changelist"


def run_job_action(client, action, *jobs):
    return client.post(reverse(JOB_LIST), {"action": action, "_selected_action": [j.pk for j in jobs]})
