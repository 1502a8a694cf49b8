"""The trigger admin: its list, its change form and its actions, saved through the services."""

from unittest import mock

import pytest
from django.contrib.messages import constants
from django.urls import reverse

from config.celery import app as celery_app
from orvanta_triggers import services
from orvanta_triggers.client.probe import probe_connection
from orvanta_triggers.models import WebSocketTrigger, Workspace
from tests.orvanta_triggers.admin.helpers import (
    FLOW_STEPS,
    TRIGGER_ADD,
    TRIGGER_LIST,
    make_trigger,
    messages_of,
    run_action,
    trigger_form_data,
    trigger_url,
)

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
