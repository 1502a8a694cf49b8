"""The Django admin: triggers, jobs, flows and workspaces, saved through the services,
scoped to the user's workspaces."""

import json
import re
import uuid
from unittest import mock

import pytest
import redis
from django.contrib.auth.models import Permission
from django.contrib.messages import constants, get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from config.celery import app as celery_app
from orvanta_triggers import bus, monitor, services
from orvanta_triggers.admin import frame_fingerprint
from orvanta_triggers.client.probe import probe_connection
from orvanta_triggers.models import Flow, Job, Membership, WebSocketTrigger, Workspace
from tests.support.wsserver import wait_for

TRIGGER_LIST = "admin:orvanta_triggers_websockettrigger_changelist"
TRIGGER_ADD = "admin:orvanta_triggers_websockettrigger_add"
FLOW_STEPS = [{"id": "a", "script_path": "examples/echo", "args": {"msg": {"type": "ref", "expr": "flow_input.msg"}}}]


def trigger_url(name, trigger):
    return reverse(f"admin:orvanta_triggers_websockettrigger_{name}", args=[trigger.pk])


def make_trigger(workspace, **fields):
    config = {"path": "f/test/feed", "url": "ws://example.org/feed", "script_path": "examples/echo", **fields}
    return services.create_trigger(workspace=workspace, **config)


def make_job(workspace, *, trigger_path="f/test/feed", status=Job.Status.SUCCESS, result=None, error=None, args=None):
    job_id = str(uuid.uuid4())
    services.record_jobs(
        jobs={
            job_id: dict(
                workspace_id=workspace.id,
                trigger_path=trigger_path,
                script_path="examples/echo",
                is_flow=False,
                args=args or {"msg": "hi"},
                attempt=1,
                status=status,
                result=result,
                error=error,
                started_at=timezone.now(),
                finished_at=timezone.now(),
            )
        }
    )
    return Job.objects.get(pk=job_id)


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


@pytest.fixture
def staff_client(user, workspace):
    """Alice, admin of `acme` only, as a staff member with the app's model permissions."""
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="orvanta_triggers"))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def other_workspace(db):
    return services.create_workspace(slug="other")


@pytest.fixture
def push_frame():
    """push_frame(trigger, msg, ...) stores a received frame where the monitor keeps them."""
    keys = []

    def push(trigger, msg, *, msg_type="text", url=None, at="2024-05-01T12:00:00+00:00"):
        key = monitor.frames_key(trigger.id)
        entry = {"at": at, "msg": msg, "msg_type": msg_type, "url": url or trigger.url}
        bus.client().lpush(key, json.dumps(entry))
        keys.append(key)
        return entry

    yield push
    for key in keys:
        bus.client().delete(key)


# Trigger list


def test_list_shows_status_badge_redacted_error_and_listener(admin_client, workspace):
    """The list shows the status badge, the last error with URL secrets redacted, and the listener."""
    trigger = make_trigger(workspace)
    services.record_trigger_status(
        trigger_id=trigger.id,
        status="error",
        listener_id="listener-7",
        error="ws://example.org/feed?token=s3cret: the server refused the upgrade with HTTP 401",
    )
    content = admin_client.get(reverse(TRIGGER_LIST)).content.decode()
    assert "orvanta-badge-error" in content and "#dc3545" in content
    assert "listener-7" in content
    assert "token=***" in content and "s3cret" not in content


def test_list_badge_says_disabled_whatever_the_stored_status(admin_client, workspace):
    """A disabled trigger shows the grey `disabled` badge even if a stale status says connected."""
    trigger = make_trigger(workspace, enabled=False)
    # A listener's late write racing the disable (services never store this).
    WebSocketTrigger.objects.filter(pk=trigger.pk).update(status="connected")
    content = admin_client.get(reverse(TRIGGER_LIST)).content.decode()
    assert "orvanta-badge-disabled" in content and "orvanta-badge-connected" not in content


def test_list_status_filter_follows_the_badge(admin_client, workspace):
    """Filtering by `disabled` lists disabled triggers; `connected` lists only enabled ones."""
    make_trigger(workspace, path="f/test/on")
    off = make_trigger(workspace, path="f/test/off", enabled=False)
    WebSocketTrigger.objects.filter(pk=off.pk).update(status="connected")
    services.record_trigger_status(trigger_id=WebSocketTrigger.objects.get(path="f/test/on").pk, status="connected")
    disabled = admin_client.get(reverse(TRIGGER_LIST), {"status": "disabled"}).context["cl"].result_list
    connected = admin_client.get(reverse(TRIGGER_LIST), {"status": "connected"}).context["cl"].result_list
    assert [t.path for t in disabled] == ["f/test/off"]
    assert [t.path for t in connected] == ["f/test/on"]


# Trigger change form


def test_add_form_saves_valid_trigger_through_services(admin_client, workspace):
    """A valid add form creates the trigger through services.save_new_trigger."""
    with mock.patch.object(services, "save_new_trigger", wraps=services.save_new_trigger) as save:
        response = admin_client.post(reverse(TRIGGER_ADD), trigger_form_data(workspace))
    assert response.status_code == 302, response.context["adminform"].form.errors
    save.assert_called_once()
    trigger = WebSocketTrigger.objects.get(path="f/admin/feed")
    assert trigger.status == "connecting" and trigger.edited_at is not None and trigger.filters == []


def test_change_form_saves_changed_fields_through_update_trigger(admin_client, workspace):
    """Saving the change form hands only the changed fields to services.update_trigger."""
    trigger = make_trigger(workspace, path="f/admin/feed")
    data = trigger_form_data(workspace, filters='[{"key": "type", "value": "tick"}]')
    del data["workspace"]  # read-only once saved
    with mock.patch.object(services, "update_trigger", wraps=services.update_trigger) as update:
        response = admin_client.post(trigger_url("change", trigger), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert update.call_args.kwargs.keys() == {"trigger", "filters"}
    assert WebSocketTrigger.objects.get(pk=trigger.pk).filters == [{"key": "type", "value": "tick"}]


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("script_path", "nope/missing", "Select a valid choice"),
        ("url", "http://example.org/feed", "the scheme must be ws or wss"),
        ("filters", '{"key": "type", "value": "tick"}', "must be a list"),
        ("filters", '[{"key": "type", "value": "tick"}', "Invalid JSON"),
        ("heartbeat", '{"interval_secs": 0, "message": "ping"}', "interval_secs must be a number >= 1"),
        ("headers", '{"Host": "example.org"}', "set by the WebSocket handshake"),
    ],
)
def test_bad_field_shows_error_on_that_field(admin_client, workspace, field, value, expected):
    """An invalid value is reported on its own field, and nothing is saved."""
    response = admin_client.post(reverse(TRIGGER_ADD), trigger_form_data(workspace, **{field: value}))
    form = response.context["adminform"].form
    assert set(form.errors) == {field}
    assert expected in " ".join(form.errors[field])
    assert not WebSocketTrigger.objects.exists()


def test_json_too_deep_to_parse_is_a_field_error(admin_client, workspace):
    """A JSON box nesting 5,000 deep is an error on its field, shown again as typed (not a 500)."""
    deep = "[" * 5000 + "]" * 5000
    response = admin_client.post(reverse(TRIGGER_ADD), trigger_form_data(workspace, url_runnable_args=deep))
    assert response.status_code == 200
    assert "nests deeper than 64 levels" in " ".join(response.context["adminform"].form.errors["url_runnable_args"])
    assert not WebSocketTrigger.objects.exists()


def test_unknown_error_handler_is_a_field_error(admin_client, workspace):
    """The error handler picker only takes scripts of the registry."""
    response = admin_client.post(reverse(TRIGGER_ADD), trigger_form_data(workspace, error_handler_path="no/such"))
    assert set(response.context["adminform"].form.errors) == {"error_handler_path"}


def test_free_plan_workspace_is_refused_as_form_error(admin_client, db):
    """Adding a trigger to a Free-plan workspace shows the plan refusal on the form."""
    cheap = services.create_workspace(slug="cheap", plan=Workspace.Plan.FREE)
    response = admin_client.post(reverse(TRIGGER_ADD), trigger_form_data(cheap))
    assert response.status_code == 200
    assert "not available on the Free plan" in " ".join(response.context["adminform"].form.non_field_errors())
    assert not WebSocketTrigger.objects.exists()


def test_script_picker_offers_registry_scripts_and_visible_flows(admin_client, workspace):
    """script_path is a select of registry scripts plus flows, labelled as flows."""
    services.create_flow(workspace=workspace, path="f/demo/pipeline", steps=FLOW_STEPS)
    form = admin_client.get(reverse(TRIGGER_ADD)).context["adminform"].form
    groups = dict(form.fields["script_path"].choices[1:])
    assert ("examples/echo", "examples/echo") in groups["Scripts"]
    assert ("f/demo/pipeline", "f/demo/pipeline (flow in acme)") in next(v for k, v in groups.items() if "Flows" in k)
    assert form.fields["error_handler_path"].choices[0] == ("", "---------")


def test_change_form_groups_fields_like_the_product_page(admin_client, workspace):
    """The change form's fieldsets come in the product page's order, Advanced collapsed."""
    trigger = make_trigger(workspace)
    fieldsets = admin_client.get(trigger_url("change", trigger)).context["adminform"].fieldsets
    names = [name for name, _ in fieldsets]
    assert names == [
        None,
        "URL",
        "Runnable",
        "Filters",
        "Initial messages",
        "Send results",
        "Heartbeat",
        "Error handler",
        "Retry",
        "Advanced",
        "Status",
    ]
    assert "collapse" in dict(fieldsets)["Advanced"]["classes"]


def test_every_trigger_form_field_has_help_text(admin_client, workspace):
    """Every field of the trigger change form, editable or read-only, carries help text."""
    trigger = make_trigger(workspace)
    adminform = admin_client.get(trigger_url("change", trigger)).context["adminform"]
    fields = [field for fieldset in adminform for line in fieldset for field in line]
    assert len(fields) == 27
    missing = [
        field.field["name"] if field.is_readonly else field.field.name
        for field in fields
        if not (field.field["help_text"] if field.is_readonly else field.field.help_text)
    ]
    assert missing == []


# Actions


def test_disable_action_disables_through_services(admin_client, workspace):
    """The disable action turns the trigger off and its status to disabled."""
    trigger = make_trigger(workspace)
    run_action(admin_client, "disable", trigger)
    trigger.refresh_from_db()
    assert (trigger.enabled, trigger.status) == (False, "disabled")


def test_disable_action_does_not_depend_on_the_url(admin_client, workspace, settings):
    """A trigger whose URL is refused now (its host resolving to a private address) can be disabled."""
    trigger = make_trigger(workspace, url="ws://127.0.0.1:9/feed")
    settings.ORVANTA_ALLOW_PRIVATE_URLS = False
    response = run_action(admin_client, "disable", trigger)
    assert messages_of(response) == [(constants.SUCCESS, "Disabled 1 trigger(s).")]
    assert not WebSocketTrigger.objects.get(pk=trigger.pk).enabled


def test_disabling_does_not_depend_on_the_url(admin_client, workspace, settings):
    """The change form saves a trigger being disabled without checking its unchanged URL again."""
    trigger = make_trigger(workspace, url="ws://127.0.0.1:9/feed")
    settings.ORVANTA_ALLOW_PRIVATE_URLS = False
    data = trigger_form_data(workspace, path=trigger.path, url=trigger.url, mode="disabled")
    response = admin_client.post(trigger_url("change", trigger), data)
    assert response.status_code == 302
    assert not WebSocketTrigger.objects.get(pk=trigger.pk).enabled


def test_enable_action_enables_through_services(admin_client, workspace):
    """The enable action turns a disabled trigger on (status connecting)."""
    trigger = make_trigger(workspace, enabled=False)
    run_action(admin_client, "enable", trigger)
    trigger.refresh_from_db()
    assert (trigger.enabled, trigger.status) == (True, "connecting")


def test_enable_action_reports_plan_refusal(admin_client, workspace):
    """Enabling a trigger of a workspace now on the Team plan is refused with an error message."""
    trigger = make_trigger(workspace, enabled=False)
    services.set_workspace_plan(workspace=workspace, plan=Workspace.Plan.TEAM)
    response = run_action(admin_client, "enable", trigger)
    assert any(
        level == constants.ERROR and "not available on the Team plan" in text for level, text in messages_of(response)
    )
    assert not WebSocketTrigger.objects.get(pk=trigger.pk).enabled


def test_test_connection_action_reports_success(admin_client, workspace, ws_server):
    """Testing the connection to a live server reports success for that trigger."""
    trigger = make_trigger(workspace, url=ws_server.url)
    response = run_action(admin_client, "test_connection", trigger)
    assert (constants.SUCCESS, f"f/test/feed: connection OK ({ws_server.url})") in messages_of(response)


def test_test_connection_action_reports_the_failure(admin_client, workspace, ws_server):
    """Testing the connection to a stopped server reports the probe's failure as an error."""
    trigger = make_trigger(workspace, url=ws_server.url)
    ws_server.stop()
    expected = probe_connection(celery_app=celery_app, workspace_id=workspace.id, url=ws_server.url)["error"]
    response = run_action(admin_client, "test_connection", trigger)
    assert "Connection" in expected
    assert (constants.ERROR, f"f/test/feed: connection failed: {expected}") in messages_of(response)


def test_test_connection_button_probes_and_returns_to_the_form(admin_client, workspace, ws_server):
    """The change form's Test connection button runs the probe and redirects back with the outcome."""
    trigger = make_trigger(workspace, url=ws_server.url)
    response = admin_client.post(trigger_url("test_connection", trigger))
    assert response.status_code == 302 and response.url == trigger_url("change", trigger)
    assert messages_of(response)[0][0] == constants.SUCCESS
    assert admin_client.get(trigger_url("test_connection", trigger)).status_code == 405


# Recent jobs and frames, replay


def test_change_form_shows_recent_jobs_and_frames(admin_client, workspace, push_frame):
    """The change form lists the trigger's jobs (linked, coloured) and its frames, escaped, with Replay."""
    trigger = make_trigger(workspace)
    job = make_job(workspace, result="hi")
    make_job(workspace, trigger_path="f/other/feed")
    push_frame(trigger, "<b>tick</b>", url="ws://example.org/feed?token=s3cret")
    response = admin_client.get(trigger_url("change", trigger))
    content = response.content.decode()
    assert [row["job"].pk for row in response.context["recent_jobs"]] == [job.pk]
    assert reverse("admin:orvanta_triggers_job_change", args=[job.pk]) in content
    assert "orvanta-badge-success" in content
    assert "&lt;b&gt;tick&lt;/b&gt;" in content and "<b>tick</b>" not in content
    assert "token=***" in content and "s3cret" not in content
    assert trigger_url("replay", trigger) in content


def test_change_form_notes_when_frames_are_unavailable(admin_client, workspace):
    """With Redis away the change form still renders, with a note instead of frames."""
    trigger = make_trigger(workspace)
    with mock.patch.object(monitor, "recent_frames", side_effect=redis.ConnectionError("refused")):
        response = admin_client.get(trigger_url("change", trigger))
    assert response.status_code == 200
    assert "Recent frames are unavailable" in response.content.decode()


def test_replay_runs_the_frame_as_a_new_job(client, django_user_model, e2e_workspace, celery_worker, push_frame):
    """Replay queues a job on the frame (its id in the message) that a real worker runs."""
    admin = django_user_model.objects.create_superuser(username="root", password="pw", email="")
    client.force_login(admin)
    trigger = make_trigger(e2e_workspace, enabled=False)
    frame = push_frame(trigger, "hello again")
    response = client.post(trigger_url("replay", trigger), {"frame": frame_fingerprint(frame)})
    assert response.status_code == 302
    [(level, text)] = messages_of(response)
    job_id = re.search(r"job <a [^>]*>([0-9a-f-]{36})</a> queued", text).group(1)
    assert level == constants.SUCCESS
    job = wait_for(
        lambda: Job.objects.filter(pk=job_id, status=Job.Status.SUCCESS).first(),
        timeout=10,
        message="replayed job",
    )
    assert (job.trigger_path, job.result) == ("f/test/feed", "hello again")


def test_replay_of_a_frame_no_longer_kept_is_an_error(admin_client, workspace):
    """Replaying a frame that is no longer stored says so and queues nothing."""
    trigger = make_trigger(workspace)
    with mock.patch.object(services, "enqueue_trigger_job") as enqueue:
        response = admin_client.post(trigger_url("replay", trigger), {"frame": "0" * 32})
    enqueue.assert_not_called()
    assert messages_of(response)[0][0] == constants.ERROR


# Jobs


def test_job_admin_shows_the_error_readably(admin_client, workspace):
    """A failed job's page shows the error's name, message and stack (in a <pre>) and pretty args."""
    stack = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: boom <3'
    job = make_job(
        workspace, status=Job.Status.FAILURE, error={"name": "ValueError", "message": "boom", "stack": stack}
    )
    content = admin_client.get(reverse("admin:orvanta_triggers_job_change", args=[job.pk])).content.decode()
    assert "<strong>ValueError</strong>: boom" in content
    assert re.search(r"<pre[^>]*>Traceback \(most recent call last\):\n.*boom &lt;3</pre>", content, re.S)
    assert "{\n  &quot;msg&quot;: &quot;hi&quot;\n}" in content


def test_job_admin_is_read_only(admin_client, workspace):
    """Jobs can't be added, changed or deleted from the admin."""
    job = make_job(workspace)
    assert admin_client.get(reverse("admin:orvanta_triggers_job_add")).status_code == 403
    page = admin_client.get(reverse("admin:orvanta_triggers_job_change", args=[job.pk])).content.decode()
    assert 'name="_save"' not in page
    assert (
        admin_client.post(reverse("admin:orvanta_triggers_job_delete", args=[job.pk]), {"post": "yes"}).status_code
        == 403
    )


def test_job_list_filters_by_status_and_finds_by_id(admin_client, workspace):
    """The job list filters by status and a search for a job id finds it."""
    ok = make_job(workspace)
    failed = make_job(workspace, status=Job.Status.FAILURE, error={"name": "E", "message": "m", "stack": ""})
    url = reverse("admin:orvanta_triggers_job_changelist")
    assert [j.pk for j in admin_client.get(url, {"status__exact": "failure"}).context["cl"].result_list] == [failed.pk]
    assert [j.pk for j in admin_client.get(url, {"q": str(ok.pk)}).context["cl"].result_list] == [ok.pk]


# Suspended jobs, job kinds

JOB_LIST = "admin:orvanta_triggers_job_changelist"


def run_job_action(client, action, *jobs):
    return client.post(reverse(JOB_LIST), {"action": action, "_selected_action": [j.pk for j in jobs]})


def suspended_job(workspace, msg="m"):
    job = make_job(workspace, status=Job.Status.SUSPENDED, args={"msg": msg})
    Job.objects.filter(pk=job.pk).update(event={"msg_type": "text", "url": "ws://example.org/feed"})
    return job


def test_suspend_action_suspends_through_services(admin_client, workspace):
    """The suspend action sets the mode of the selected triggers to suspended."""
    trigger = make_trigger(workspace)
    run_action(admin_client, "suspend", trigger)
    assert WebSocketTrigger.objects.get(pk=trigger.pk).mode == "suspended"


def test_change_form_links_to_the_triggers_suspended_jobs(admin_client, workspace):
    """A trigger with suspended jobs links to them: "Suspended jobs (N)", a jobs list filtered to them."""
    trigger = make_trigger(workspace, mode="suspended")
    suspended_job(workspace)
    suspended_job(workspace)
    make_job(workspace)
    response = admin_client.get(trigger_url("change", trigger))
    link = re.search(
        r'<a href="([^"]+)" class="orvanta-suspended-jobs"[^>]*>Suspended jobs \(2\)</a>', response.content.decode()
    )
    listed = admin_client.get(link.group(1).replace("&amp;", "&")).context["cl"].result_list
    assert {job.status for job in listed} == {"suspended"} and len(listed) == 2


def test_change_form_links_to_the_error_handler_runs(admin_client, workspace):
    """The trigger's page links to the jobs list filtered to its error-handler runs."""
    trigger = make_trigger(workspace)
    handler = make_job(workspace)
    Job.objects.filter(pk=handler.pk).update(kind=Job.Kind.ERROR_HANDLER)
    make_job(workspace)
    response = admin_client.get(trigger_url("change", trigger))
    link = re.search(r'<a href="([^"]+)" class="orvanta-error-handler-runs"', response.content.decode())
    listed = admin_client.get(link.group(1).replace("&amp;", "&")).context["cl"].result_list
    assert [job.pk for job in listed] == [handler.pk]


def test_discard_action_discards_suspended_jobs_only(admin_client, workspace):
    """The discard action ends the selected suspended jobs `discarded` and leaves a finished one alone."""
    make_trigger(workspace, mode="suspended")
    held, done = suspended_job(workspace), make_job(workspace)
    response = run_job_action(admin_client, "discard_selected", held, done)
    assert Job.objects.get(pk=held.pk).status == "discarded" and Job.objects.get(pk=done.pk).status == "success"
    assert (constants.SUCCESS, "Discarded 1 job(s).") in messages_of(response)


def test_viewer_cannot_resume_or_discard_from_the_admin(staff_client, user, workspace):
    """A viewer's resume or discard action leaves the jobs suspended."""
    make_trigger(workspace, mode="suspended")
    held = suspended_job(workspace)
    services.set_membership(workspace=workspace, user=user, role=Membership.Role.VIEWER)
    for action in ("resume_selected", "discard_selected"):
        run_job_action(staff_client, action, held)
    assert Job.objects.get(pk=held.pk).status == "suspended"


def test_resume_action_runs_suspended_jobs(client, django_user_model, e2e_workspace, celery_worker):
    """The resume action runs the selected suspended jobs on a real worker."""
    client.force_login(django_user_model.objects.create_superuser(username="root", password="pw", email=""))
    make_trigger(e2e_workspace, mode="suspended")
    held = suspended_job(e2e_workspace, msg="later")
    response = run_job_action(client, "resume_selected", held)
    assert (constants.SUCCESS, "Resumed 1 job(s).") in messages_of(response)
    job = wait_for(lambda: Job.objects.filter(pk=held.pk, status="success").first(), timeout=10, message="the run")
    assert job.result == "later"


def test_job_list_filters_by_kind(admin_client, workspace):
    """The job list filters by kind."""
    handler = make_job(workspace)
    Job.objects.filter(pk=handler.pk).update(kind=Job.Kind.ERROR_HANDLER)
    make_job(workspace)
    listed = admin_client.get(reverse(JOB_LIST), {"kind__exact": "error_handler"}).context["cl"].result_list
    assert [job.pk for job in listed] == [handler.pk]


# Flows


def test_flow_add_saves_through_services(admin_client, workspace):
    """A valid flow add form is saved through services.save_new_flow."""
    data = {
        "workspace": workspace.pk,
        "path": "f/demo/pipeline",
        "preprocessor_path": "",
        "steps": json.dumps(FLOW_STEPS),
        "early_return": "",
        "_save": "Save",
    }
    with mock.patch.object(services, "save_new_flow", wraps=services.save_new_flow) as save:
        response = admin_client.post(reverse("admin:orvanta_triggers_flow_add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    save.assert_called_once()
    assert Flow.objects.get(path="f/demo/pipeline").steps == FLOW_STEPS


def test_flow_steps_with_an_unknown_script_is_a_field_error(admin_client, workspace):
    """A step naming a script outside the registry is an error on steps."""
    steps = [{"id": "a", "script_path": "no/such"}]
    data = {"workspace": workspace.pk, "path": "f/demo/bad", "steps": json.dumps(steps), "_save": "Save"}
    response = admin_client.post(reverse("admin:orvanta_triggers_flow_add"), data)
    assert set(response.context["adminform"].form.errors) == {"steps"}


def test_renaming_a_flow_in_use_is_a_field_error(admin_client, workspace):
    """Renaming a flow a trigger runs is refused on the path field."""
    flow = services.create_flow(workspace=workspace, path="f/demo/pipeline", steps=FLOW_STEPS)
    make_trigger(workspace, script_path="f/demo/pipeline", is_flow=True)
    data = {
        "path": "f/demo/renamed",
        "preprocessor_path": "",
        "steps": json.dumps(FLOW_STEPS),
        "early_return": "",
        "_save": "Save",
    }
    response = admin_client.post(reverse("admin:orvanta_triggers_flow_change", args=[flow.pk]), data)
    assert "used by trigger(s) f/test/feed" in " ".join(response.context["adminform"].form.errors["path"])
    assert Flow.objects.get(pk=flow.pk).path == "f/demo/pipeline"


def test_deleting_a_flow_in_use_shows_the_refusal(admin_client, workspace):
    """Deleting a flow a trigger runs is refused with an error message, not a 500."""
    flow = services.create_flow(workspace=workspace, path="f/demo/pipeline", steps=FLOW_STEPS)
    make_trigger(workspace, script_path="f/demo/pipeline", is_flow=True)
    response = admin_client.post(reverse("admin:orvanta_triggers_flow_delete", args=[flow.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert response.url == reverse("admin:orvanta_triggers_flow_change", args=[flow.pk])
    [(level, text)] = messages_of(response)
    assert level == constants.ERROR and "used by trigger(s) f/test/feed" in text
    assert Flow.objects.filter(pk=flow.pk).exists()


def test_bulk_deleting_flows_deletes_the_unused_and_reports_the_used(admin_client, workspace):
    """The delete action removes unused flows and reports each refusal."""
    used = services.create_flow(workspace=workspace, path="f/demo/used", steps=FLOW_STEPS)
    unused = services.create_flow(workspace=workspace, path="f/demo/unused", steps=FLOW_STEPS)
    make_trigger(workspace, script_path="f/demo/used", is_flow=True)
    response = admin_client.post(
        reverse("admin:orvanta_triggers_flow_changelist"),
        {"action": "delete_selected", "post": "yes", "_selected_action": [used.pk, unused.pk]},
    )
    assert list(Flow.objects.values_list("path", flat=True)) == ["f/demo/used"]
    levels = sorted(level for level, _ in messages_of(response))
    assert levels == [constants.SUCCESS, constants.ERROR]


# Workspaces


def test_workspace_add_goes_through_create_workspace_with_the_staff_member_as_owner(staff_client, user):
    """A staff member's new workspace is created by services.create_workspace with them as admin."""
    data = {
        "slug": "beta",
        "name": "Beta",
        "error_handler_path": "",
        "error_handler_args": "{}",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "_save": "Save",
    }
    with mock.patch.object(services, "create_workspace", wraps=services.create_workspace) as create:
        response = staff_client.post(reverse("admin:orvanta_triggers_workspace_add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    create.assert_called_once()
    beta = Workspace.objects.get(slug="beta")
    assert beta.plan == Workspace.Plan.SELF_HOSTED
    assert Membership.objects.get(workspace=beta, user=user).role == Membership.Role.ADMIN


def test_workspace_plan_and_members_change_through_services(admin_client, workspace, user, django_user_model):
    """Changing the plan uses set_workspace_plan and a new member row uses set_membership."""
    bob = django_user_model.objects.create_user(username="bob", password="pw")
    alice_membership = Membership.objects.get(workspace=workspace, user=user)
    data = {
        "name": "Acme",
        "plan": "enterprise",
        "error_handler_path": "",
        "error_handler_args": "{}",
        "memberships-TOTAL_FORMS": "2",
        "memberships-INITIAL_FORMS": "1",
        "memberships-0-id": alice_membership.pk,
        "memberships-0-workspace": workspace.pk,
        "memberships-0-user": user.pk,
        "memberships-0-role": "admin",
        "memberships-1-id": "",
        "memberships-1-workspace": workspace.pk,
        "memberships-1-user": bob.pk,
        "memberships-1-role": "viewer",
        "_save": "Save",
    }
    with mock.patch.object(services, "set_membership", wraps=services.set_membership) as set_membership:
        response = admin_client.post(reverse("admin:orvanta_triggers_workspace_change", args=[workspace.pk]), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    workspace.refresh_from_db()
    assert (workspace.plan, workspace.name) == ("enterprise", "Acme")
    set_membership.assert_called_once_with(workspace=workspace, user=bob, role="viewer")


def test_workspace_admin_removes_a_member_through_services(staff_client, workspace, user, django_user_model):
    """A workspace admin deletes a member row; the membership is removed by remove_membership."""
    bob = django_user_model.objects.create_user(username="bob", password="pw")
    services.set_membership(workspace=workspace, user=bob, role=Membership.Role.VIEWER)
    rows = list(Membership.objects.filter(workspace=workspace).order_by("pk"))
    data = {"name": "acme", "error_handler_path": "", "error_handler_args": "{}", "_save": "Save"}
    data.update({"memberships-TOTAL_FORMS": "2", "memberships-INITIAL_FORMS": "2"})
    for index, row in enumerate(rows):
        data.update(
            {
                f"memberships-{index}-id": row.pk,
                f"memberships-{index}-workspace": workspace.pk,
                f"memberships-{index}-user": row.user_id,
                f"memberships-{index}-role": row.role,
            }
        )
    data["memberships-1-DELETE"] = "on"
    with mock.patch.object(services, "remove_membership", wraps=services.remove_membership) as remove_membership:
        response = staff_client.post(reverse("admin:orvanta_triggers_workspace_change", args=[workspace.pk]), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    remove_membership.assert_called_once_with(workspace=workspace, user=bob)
    assert list(Membership.objects.filter(workspace=workspace).values_list("user", flat=True)) == [user.pk]


# Staff isolation


def test_staff_see_only_their_workspaces_triggers(staff_client, workspace, other_workspace):
    """A staff member's trigger list holds their workspaces' triggers only."""
    make_trigger(workspace, path="f/mine/feed")
    make_trigger(other_workspace, path="f/theirs/feed")
    result = staff_client.get(reverse(TRIGGER_LIST)).context["cl"].result_list
    assert [t.path for t in result] == ["f/mine/feed"]


@pytest.mark.parametrize("model", ["websockettrigger", "job", "flow", "workspace"])
def test_staff_cannot_open_another_workspaces_objects(staff_client, other_workspace, model):
    """Another workspace's trigger, job, flow or the workspace itself is a 404 for a staff member."""
    objects = {
        "websockettrigger": lambda: make_trigger(other_workspace),
        "job": lambda: make_job(other_workspace),
        "flow": lambda: services.create_flow(workspace=other_workspace, path="f/x", steps=FLOW_STEPS),
        "workspace": lambda: other_workspace,
    }
    obj = objects[model]()
    assert staff_client.get(reverse(f"admin:orvanta_triggers_{model}_change", args=[obj.pk])).status_code == 404


def test_staff_workspace_choices_are_their_own(staff_client, workspace, other_workspace):
    """The trigger form offers a staff member only their workspaces, preselected when there is one."""
    form = staff_client.get(reverse(TRIGGER_ADD)).context["adminform"].form
    assert list(form.fields["workspace"].queryset) == [workspace]
    assert form.initial["workspace"] == workspace.pk


def test_staff_cannot_replay_or_test_another_workspaces_trigger(staff_client, other_workspace):
    """The replay and test-connection views answer 404 outside the staff member's workspaces."""
    trigger = make_trigger(other_workspace)
    assert staff_client.post(trigger_url("replay", trigger), {"frame": "x"}).status_code == 404
    assert staff_client.post(trigger_url("test_connection", trigger)).status_code == 404


SECRETS = {
    "url": "wss://feed.example.org/ws?token=s3cret",
    "headers": {"Authorization": "Bearer hunter2"},
    "initial_messages": [
        {"raw_message": '{"token": "raw-s3cret"}'},
        {"runnable_result": {"path": "examples/auth_message", "args": {"token": "arg-s3cret"}, "is_flow": False}},
    ],
}
SECRET_VALUES = ("s3cret", "hunter2")


def test_viewer_sees_a_triggers_secrets_redacted(staff_client, user, workspace):
    """A viewer's trigger page shows URL query values, headers and initial messages as *** (it showed them)."""
    trigger = make_trigger(workspace, **SECRETS)
    services.set_membership(workspace=workspace, user=user, role=Membership.Role.VIEWER)
    page = staff_client.get(trigger_url("change", trigger)).content.decode()
    assert "wss://feed.example.org/ws?token=***" in page and "examples/auth_message" in page
    assert not [value for value in SECRET_VALUES if value in page]


def test_viewer_sees_url_runnable_args_redacted(staff_client, user, workspace):
    """A viewer's trigger page shows a URL runnable's arg values as ***."""
    trigger = make_trigger(workspace, url="$script:examples/ws_url", url_runnable_args={"token": "s3cret"})
    services.set_membership(workspace=workspace, user=user, role=Membership.Role.VIEWER)
    page = staff_client.get(trigger_url("change", trigger)).content.decode()
    assert "$script:examples/ws_url" in page and "s3cret" not in page


def test_writer_sees_a_triggers_secrets(staff_client, workspace):
    """A developer or admin edits the secrets as stored."""
    trigger = make_trigger(workspace, **SECRETS)
    page = staff_client.get(trigger_url("change", trigger)).content.decode()
    assert all(value in page for value in SECRET_VALUES)


def test_viewer_cannot_search_urls(staff_client, user, workspace):
    """A viewer's search doesn't look into URLs (it told query strings apart, a character at a time)."""
    make_trigger(workspace, **SECRETS)
    assert staff_client.get(reverse(TRIGGER_LIST), {"q": "s3cret"}).context["cl"].result_count == 1
    services.set_membership(workspace=workspace, user=user, role=Membership.Role.VIEWER)
    assert staff_client.get(reverse(TRIGGER_LIST), {"q": "s3cret"}).context["cl"].result_count == 0


def test_viewer_sees_urls_in_job_args_redacted(staff_client, user, workspace):
    """A viewer's job page shows the query values of URLs in the args as ***; a writer's shows them."""
    job = make_job(workspace, args={"url": "wss://feed.example.org/ws?token=s3cret"})
    job_page = reverse("admin:orvanta_triggers_job_change", args=[job.pk])
    assert "token=s3cret" in staff_client.get(job_page).content.decode()
    services.set_membership(workspace=workspace, user=user, role=Membership.Role.VIEWER)
    page = staff_client.get(job_page).content.decode()
    assert "token=***" in page and "s3cret" not in page


def test_viewer_member_gets_a_read_only_trigger(staff_client, user, workspace):
    """A staff member who is only a viewer of the workspace sees the trigger read-only."""
    trigger = make_trigger(workspace)
    services.set_membership(workspace=workspace, user=user, role=Membership.Role.VIEWER)
    page = staff_client.get(trigger_url("change", trigger))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    response = run_action(staff_client, "disable", trigger)
    assert WebSocketTrigger.objects.get(pk=trigger.pk).enabled
    assert messages_of(response)[0][0] == constants.ERROR
