"""Workspace-level endpoints: settings, the runnables registry, test connection, and
importing Windmill trigger JSON."""

import sys

import pytest

from orvanta_triggers.models import WebSocketTrigger

BASE = "/api/w/acme"


def test_settings_show_error_handler_and_plan(api, workspace):
    """GET settings returns the error handler, its args and the plan."""
    body = api.get(f"{BASE}/settings/").json()
    assert body == {"error_handler_path": None, "error_handler_args": {}, "plan": "self_hosted"}


def test_settings_patch_sets_the_error_handler(api, workspace):
    """PATCH settings stores a known error handler script."""
    response = api.patch(
        f"{BASE}/settings/", {"error_handler_path": "examples/echo", "error_handler_args": {"a": 1}}, format="json"
    )
    assert response.status_code == 200
    workspace.refresh_from_db()
    assert workspace.error_handler_path == "examples/echo" and workspace.error_handler_args == {"a": 1}


def test_settings_refuse_unknown_handler_and_plan_changes(api, workspace):
    """An unknown handler is a field-keyed 400; the plan can't be changed through the API."""
    response = api.patch(f"{BASE}/settings/", {"error_handler_path": "nope/nope"}, format="json")
    assert response.status_code == 400 and "error_handler_path" in response.json()
    api.patch(f"{BASE}/settings/", {"plan": "free"}, format="json")
    workspace.refresh_from_db()
    assert workspace.plan == "self_hosted"


def test_viewers_cannot_change_settings(member_client):
    """A viewer gets 403 on PATCH settings."""
    response = member_client("viewer").patch(
        f"{BASE}/settings/", {"error_handler_path": "examples/echo"}, format="json"
    )
    assert response.status_code == 403


def test_runnables_lists_scripts_with_parameters_without_importing_them(api, workspace):
    """The registry listing describes scripts from source; none of them is imported."""
    sys.modules.pop("runnables.examples.json_content", None)
    body = api.get(f"{BASE}/runnables/").json()
    scripts = {s["path"]: s for s in body["scripts"]}
    assert scripts["examples/json_content"]["has_preprocessor"] is True
    assert scripts["examples/echo"] == {
        "path": "examples/echo",
        "has_preprocessor": False,
        "parameters": [{"name": "msg", "type": "str", "required": True}],
    }
    assert {"name": "token", "type": "str", "required": False, "default": ""} in scripts["examples/ws_url"][
        "parameters"
    ]
    assert "runnables.examples.json_content" not in sys.modules


def test_runnables_lists_the_workspace_flows(api, workspace):
    """Flows of the workspace are listed beside the scripts."""
    from orvanta_triggers import services

    services.create_flow(workspace=workspace, path="f/p", steps=[{"id": "a", "script_path": "examples/echo"}])
    assert api.get(f"{BASE}/runnables/").json()["flows"] == [{"path": "f/p", "has_preprocessor": False}]


def test_test_connection_succeeds_against_a_live_server(api, ws_server):
    """Test connection connects, reports ok and the server sees one connection come and go."""
    body = api.post(f"{BASE}/test_websocket_connection/", {"url": ws_server.url}, format="json").json()
    assert body == {"ok": True, "error": None, "subprotocol": None}
    assert ws_server.connects == 1


def test_test_connection_reports_the_exact_failure(api, ws_server):
    """A refused connection is reported with its reason, not raised."""
    ws_server.stop()
    body = api.post(f"{BASE}/test_websocket_connection/", {"url": ws_server.url}, format="json").json()
    assert body["ok"] is False and "ConnectionRefused" in body["error"]


def test_test_connection_reports_a_bad_url(api, workspace):
    """A non-ws URL is reported as such without any connection attempt."""
    body = api.post(f"{BASE}/test_websocket_connection/", {"url": "http://example.org"}, format="json").json()
    assert body["ok"] is False and "ws or wss" in body["error"]


def test_test_connection_is_for_writers(member_client):
    """A viewer may not probe connections."""
    response = member_client("viewer").post(f"{BASE}/test_websocket_connection/", {"url": "ws://x"}, format="json")
    assert response.status_code == 403


WINDMILL_TRIGGER = {
    "path": "f/imported/feed",
    "url": "wss://stream.example.org/ws",
    "url_runnable_args": {},
    "script_path": "examples/echo",
    "is_flow": False,
    "enabled": False,
    "filters": [{"key": "type", "value": "tick"}],
    "filter_logic": "or",
    "initial_messages": [{"raw_message": '{"op": "subscribe"}'}],
    "can_return_message": True,
    "can_return_error_result": False,
    "error_handler_path": None,
    "error_handler_args": {},
    "retry": {"constant": {"attempts": 2, "seconds": 5}},
    "workspace_id": "acme",
    "edited_by": "admin",
    "email": "admin@example.org",
    "edited_at": "2025-01-01T00:00:00Z",
    "extra_perms": {},
    "server_id": "srv-1",
    "last_server_ping": None,
    "error": None,
}


def test_windmill_trigger_json_imports_as_is(api, workspace):
    """A trigger exported from Windmill creates the same trigger here."""
    response = api.post(f"{BASE}/websocket_triggers/", WINDMILL_TRIGGER, format="json")
    assert response.status_code == 201, response.json()
    trigger = WebSocketTrigger.objects.get(path="f/imported/feed")
    assert trigger.retry == {"max_attempts": 3, "delay_secs": 5, "multiplier": 1}
    assert trigger.filter_logic == "or" and trigger.enabled is False


def test_windmill_exponential_retry_keeps_its_schedule(api, workspace):
    """Windmill's exponential retry (delay multiplier * seconds**n) becomes the same delays here."""
    body = {
        **WINDMILL_TRIGGER,
        "retry": {"exponential": {"attempts": 3, "multiplier": 2, "seconds": 3, "random_factor": 0}},
    }
    assert api.post(f"{BASE}/websocket_triggers/", body, format="json").status_code == 201
    retry = WebSocketTrigger.objects.get(path="f/imported/feed").retry
    delays = [retry["delay_secs"] * retry["multiplier"] ** (n - 1) for n in (1, 2, 3)]
    assert retry["max_attempts"] == 4 and delays == [2 * 3, 2 * 9, 2 * 27]


@pytest.mark.parametrize("mode, enabled", [("enabled", True), ("disabled", False), ("suspended", True)])
def test_windmill_mode_imports_as_is(api, workspace, mode, enabled):
    """Windmill's `mode` field is ours: each of its values imports, with `enabled` its alias."""
    body = {**WINDMILL_TRIGGER, "mode": mode}
    body.pop("enabled")
    assert api.post(f"{BASE}/websocket_triggers/", body, format="json").status_code == 201
    trigger = WebSocketTrigger.objects.get(path="f/imported/feed")
    assert (trigger.mode, trigger.enabled) == (mode, enabled)


def test_windmill_unknown_mode_is_refused_clearly(api, workspace):
    """A mode that is not enabled, disabled or suspended is a 400 naming the field."""
    body = {**WINDMILL_TRIGGER, "mode": "paused"}
    body.pop("enabled")
    response = api.post(f"{BASE}/websocket_triggers/", body, format="json")
    assert response.status_code == 400 and "paused" in response.json()["mode"][0]
