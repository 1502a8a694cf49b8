"""The WebSocket trigger REST API: /api/w/<ws>/websocket_triggers/."""

import json

import pytest
from rest_framework.test import APIClient

from orvanta_triggers import services
from orvanta_triggers.models import WebSocketTrigger, Workspace
from tests.conftest import ROLES, api_client_for

LIST = "/api/w/acme/websocket_triggers/"
PATH = "f/demo/ticks"
DETAIL = f"{LIST}{PATH}/"
SETENABLED = f"{DETAIL}setenabled/"

BODY = {"path": PATH, "url": "ws://example.org/feed", "script_path": "examples/echo"}

# DESIGN.md's trigger JSON, key for key (the API may add read-only fields).
TRIGGER_JSON_KEYS = {
    "path",
    "url",
    "url_runnable_args",
    "script_path",
    "is_flow",
    "mode",
    "enabled",
    "filters",
    "filter_logic",
    "initial_messages",
    "can_return_message",
    "can_return_error_result",
    "heartbeat",
    "error_handler_path",
    "error_handler_args",
    "retry",
    "headers",
    "subprotocols",
    "status",
    "error",
    "last_connected_at",
    "last_message_at",
    "listener_id",
    "edited_at",
}


def make_trigger(workspace, **fields):
    return services.create_trigger(workspace=workspace, **{**BODY, **fields})


# List


def test_list_is_paginated(api, workspace):
    """The list answers {"count", "next", "previous", "results"}, sorted by path."""
    for path in ("f/b/two", "f/a/one", "f/c/three"):
        make_trigger(workspace, path=path)
    body = api.get(LIST).json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 3 and body["next"] is None and body["previous"] is None
    assert [t["path"] for t in body["results"]] == ["f/a/one", "f/b/two", "f/c/three"]


def test_list_page_size(api, workspace):
    """?page_size= limits a page and links to the next one."""
    for index in range(3):
        make_trigger(workspace, path=f"f/t/{index}")
    body = api.get(LIST, {"page_size": 2}).json()
    assert body["count"] == 3 and len(body["results"]) == 2
    assert "page=2" in body["next"]
    second = api.get(body["next"]).json()
    assert [t["path"] for t in second["results"]] == ["f/t/2"] and second["previous"] is not None


def test_list_filters_by_script_path(api, workspace):
    """?script_path= keeps only the triggers that run that script."""
    make_trigger(workspace, path="f/a/echo")
    make_trigger(workspace, path="f/a/fail", script_path="examples/fail")
    body = api.get(LIST, {"script_path": "examples/fail"}).json()
    assert [t["path"] for t in body["results"]] == ["f/a/fail"]


@pytest.mark.parametrize("name", ["script_path", "path_start"])
def test_list_filter_with_nul_is_a_400(api, workspace, name):
    """A NUL in a filter parameter is refused with 400 naming it (PostgreSQL can't compare it: no 500)."""
    response = api.get(LIST, {name: "a\x00b"})
    assert response.status_code == 400 and name in response.json()


def test_list_filters_by_path_start(api, workspace):
    """?path_start= keeps only the triggers whose path starts with it."""
    make_trigger(workspace, path="f/sales/one")
    make_trigger(workspace, path="f/support/two")
    body = api.get(LIST, {"path_start": "f/sales/"}).json()
    assert [t["path"] for t in body["results"]] == ["f/sales/one"]


def test_list_shows_only_this_workspace(api, workspace, user):
    """The list holds the workspace's triggers, not those of another workspace of the same user."""
    make_trigger(workspace, path="f/a/mine")
    make_trigger(services.create_workspace(slug="other", owner=user), path="f/a/theirs")
    assert [t["path"] for t in api.get(LIST).json()["results"]] == ["f/a/mine"]


# Create


def test_create_answers_201_with_trigger_json(api, workspace):
    """POST creates the trigger and answers 201 with DESIGN.md's trigger JSON."""
    response = api.post(LIST, BODY, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert TRIGGER_JSON_KEYS <= set(body)
    assert body["path"] == PATH and body["status"] == "connecting" and body["enabled"] is True
    assert body["filters"] == [] and body["filter_logic"] == "and" and body["heartbeat"] is None
    assert WebSocketTrigger.objects.filter(workspace=workspace, path=PATH).exists()


def test_create_disabled_has_status_disabled(api):
    """A trigger created with enabled false reports status "disabled"."""
    body = api.post(LIST, {**BODY, "enabled": False}, format="json").json()
    assert body["enabled"] is False and body["status"] == "disabled"


def test_create_round_trips_json_fields(api):
    """JSON fields come back exactly as posted."""
    extra = {
        "filters": [{"key": "type", "value": {"a": [1, 2]}}],
        "filter_logic": "or",
        "initial_messages": [{"raw_message": '"hello"'}],
        "heartbeat": {"interval_secs": 5, "message": "ping", "state_field": "s"},
        "retry": {"max_attempts": 2, "delay_secs": 0.5, "multiplier": 3},
        "headers": {"X-Token": "abc"},
        "subprotocols": ["v1.chat"],
        "can_return_message": True,
        "can_return_error_result": True,
    }
    body = api.post(LIST, {**BODY, **extra}, format="json").json()
    assert {name: body[name] for name in extra} == extra


def test_create_ignores_windmill_extra_fields(api, workspace):
    """Windmill-only fields (workspace_id, edited_by, extra_perms, server_id...) are ignored on create."""
    windmill = {
        "workspace_id": "someone-else",
        "edited_by": "mallory",
        "email": "m@example.org",
        "extra_perms": {"u/mallory": True},
        "server_id": "srv-1",
        "last_server_ping": "2024-01-01T00:00:00Z",
    }
    response = api.post(LIST, {**BODY, **windmill}, format="json")
    assert response.status_code == 201, response.content
    assert not set(windmill) & set(response.json())
    assert WebSocketTrigger.objects.get(path=PATH).workspace == workspace


def test_create_ignores_read_only_status_fields(api):
    """status, error and listener_id in the body can't be set by a client."""
    body = api.post(LIST, {**BODY, "status": "connected", "error": "x", "listener_id": "fake"}, format="json").json()
    assert body["status"] == "connecting" and body["error"] is None and body["listener_id"] is None


def test_create_bad_url_is_field_keyed_400(api):
    """A bad URL answers 400 with {"url": [...]}."""
    response = api.post(LIST, {**BODY, "url": "http://example.org/feed"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"url"} and isinstance(body["url"], list) and body["url"]


def test_create_bad_json_field_is_field_keyed_400(api):
    """A rule of the model's validation (a reserved header) answers 400 keyed on that field."""
    response = api.post(LIST, {**BODY, "headers": {"Host": "x"}}, format="json")
    assert response.status_code == 400 and set(response.json()) == {"headers"}


def test_create_with_filters_v2_round_trips(api):
    """Paths, regexes and nested groups are accepted and read back as written."""
    filters = [
        {"any_of": [{"path": "d.s", "value": 1}, {"none_of": [{"regex": "^HEARTBEAT"}]}]},
        {"key": "op", "value": 0},
    ]
    response = api.post(LIST, {**BODY, "filters": filters}, format="json")
    assert response.status_code == 201 and response.json()["filters"] == filters


def test_create_with_a_backtracking_regex_is_400(api):
    """A pattern RE2 can't run in linear time (a backreference) answers 400 on filters."""
    response = api.post(LIST, {**BODY, "filters": [{"regex": "(a+)+\\1"}]}, format="json")
    assert response.status_code == 400 and "RE2" in response.json()["filters"][0]


def test_create_missing_required_fields_400(api):
    """A body without path, url and script_path answers 400 naming each."""
    response = api.post(LIST, {}, format="json")
    assert response.status_code == 400
    assert {"path", "url", "script_path"} <= set(response.json())


def test_create_duplicate_path_400(api, workspace):
    """Creating a second trigger with an existing path answers 400 keyed on path."""
    make_trigger(workspace)
    response = api.post(LIST, BODY, format="json")
    assert response.status_code == 400 and set(response.json()) == {"path"}


@pytest.mark.parametrize("plan", [Workspace.Plan.FREE, Workspace.Plan.TEAM])
def test_create_on_plan_without_triggers_403(user, plan):
    """On the free and team plans create answers 403 with the reason in the body."""
    services.create_workspace(slug="small", plan=plan, owner=user)
    response = api_client_for(user).post("/api/w/small/websocket_triggers/", BODY, format="json")
    assert response.status_code == 403
    assert "not available" in response.json()["detail"] and Workspace.Plan(plan).label in response.json()["detail"]
    assert not WebSocketTrigger.objects.exists()


# Secrets by role

SECRETS = {
    "url": "wss://feed.example.org/ws?token=s3cret&v=2",
    "url_runnable_args": {},
    "headers": {"Authorization": "Bearer hunter2", "X-Team": "blue"},
    "initial_messages": [
        {"raw_message": '{"op": "auth", "token": "s3cret"}'},
        {"binary_message": "c2VjcmV0"},
        {"runnable_result": {"path": "examples/auth_message", "args": {"token": "s3cret"}, "is_flow": False}},
    ],
}
RUNNABLE_URL = {
    "url": "$script:examples/ws_url",
    "url_runnable_args": {"base_url": "wss://x.example.org/", "token": "abc"},
}

# What a viewer gets instead of SECRETS.
REDACTED_SECRETS = {
    "url": "wss://feed.example.org/ws?token=***&v=***",
    "url_runnable_args": {},
    "headers": {"Authorization": "***", "X-Team": "***"},
    "initial_messages": [
        {"raw_message": "***"},
        {"binary_message": "***"},
        {"runnable_result": {"path": "examples/auth_message", "args": {"token": "***"}, "is_flow": False}},
    ],
}


def test_viewers_get_secrets_redacted(workspace, member_client):
    """A viewer reads header values, initial messages and URL query values as *** (they read them in clear)."""
    make_trigger(workspace, **SECRETS)
    viewer = member_client(ROLES.VIEWER)
    for body in (viewer.get(DETAIL).json(), viewer.get(LIST).json()["results"][0]):
        assert {name: body[name] for name in REDACTED_SECRETS} == REDACTED_SECRETS


def test_viewers_get_url_runnable_args_redacted(workspace, member_client):
    """A viewer reads a URL runnable's args as *** (its names stay readable)."""
    make_trigger(workspace, **RUNNABLE_URL)
    body = member_client(ROLES.VIEWER).get(DETAIL).json()
    assert body["url"] == "$script:examples/ws_url"
    assert body["url_runnable_args"] == {"base_url": "***", "token": "***"}


@pytest.mark.parametrize("role", [ROLES.DEVELOPER, ROLES.ADMIN])
def test_members_who_write_see_secrets(workspace, member_client, role):
    """Developers and admins read the secrets as stored."""
    make_trigger(workspace, **SECRETS)
    body = member_client(role).get(DETAIL).json()
    assert {name: body[name] for name in SECRETS} == SECRETS


def test_patch_with_redacted_values_keeps_the_stored_ones(api, workspace, member_client):
    """A trigger read as a viewer and written back changed keeps its stored secrets."""
    make_trigger(workspace, **SECRETS)
    as_read = member_client(ROLES.VIEWER).get(DETAIL).json()
    response = api.patch(DETAIL, {**{name: as_read[name] for name in SECRETS}, "filter_logic": "or"}, format="json")
    assert response.status_code == 200
    trigger = WebSocketTrigger.objects.get(path=PATH)
    assert {name: getattr(trigger, name) for name in SECRETS} == SECRETS and trigger.filter_logic == "or"


def test_put_with_redacted_values_keeps_the_stored_ones(api, workspace, member_client):
    """PUT of the viewer's JSON keeps the stored URL runnable args, and new values replace the others."""
    make_trigger(workspace, **RUNNABLE_URL, headers={"Authorization": "Bearer hunter2"})
    as_read = member_client(ROLES.VIEWER).get(DETAIL).json()
    body = {**as_read, "headers": {"Authorization": "Bearer new", "X-New": "1"}}
    assert api.put(DETAIL, body, format="json").status_code == 200
    trigger = WebSocketTrigger.objects.get(path=PATH)
    assert trigger.url_runnable_args == RUNNABLE_URL["url_runnable_args"]
    assert trigger.headers == {"Authorization": "Bearer new", "X-New": "1"}


def test_a_redacted_value_for_a_new_name_is_stored_as_sent(api, workspace):
    """*** for a header the trigger doesn't have is a value like any other."""
    make_trigger(workspace, **SECRETS)
    api.patch(DETAIL, {"headers": {"Authorization": "***", "X-Other": "***"}}, format="json")
    assert WebSocketTrigger.objects.get(path=PATH).headers == {"Authorization": "Bearer hunter2", "X-Other": "***"}


# Limits


def test_a_filter_value_nested_5000_deep_is_a_400(api):
    """A body nesting deeper than JSON can be parsed answers 400 naming the limit (it was a 500)."""
    body = json.dumps(BODY)[:-1] + ', "filters": [{"key": "a", "value": ' + "[" * 5000 + "]" * 5000 + "}]}"
    response = api.post(LIST, body, content_type="application/json")
    assert response.status_code == 400
    assert "nests deeper than 500 levels" in response.json()["detail"]
    assert not WebSocketTrigger.objects.exists()


def test_a_field_nested_past_the_limit_is_a_field_keyed_400(api):
    """A field nesting deeper than 64 levels, yet parseable, answers 400 keyed on that field."""
    deep = "[" * 400 + "]" * 400
    body = json.dumps(BODY)[:-1] + ', "url_runnable_args": {"a": ' + deep + "}}"
    response = api.post(LIST, body, content_type="application/json")
    assert response.status_code == 400 and "nests deeper than 64 levels" in response.json()["url_runnable_args"][0]


def test_a_2_mb_initial_message_is_a_400(api):
    """An initial message of 2 MB answers 400 naming the 64 KiB limit."""
    response = api.post(
        LIST, {**BODY, "initial_messages": [{"raw_message": '"' + "x" * 2_000_000 + '"'}]}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "initial_messages": ["message 0: larger than 65536 bytes (the limit for an initial message)"]
    }


def test_creating_past_the_workspace_trigger_limit_is_a_400(api, workspace, settings):
    """Past ORVANTA_MAX_TRIGGERS_PER_WORKSPACE, create answers 400 naming the setting."""
    settings.ORVANTA_MAX_TRIGGERS_PER_WORKSPACE = 1
    make_trigger(workspace, path="f/a/one")
    response = api.post(LIST, BODY, format="json")
    assert response.status_code == 400
    assert "ORVANTA_MAX_TRIGGERS_PER_WORKSPACE" in response.json()["non_field_errors"][0]


@pytest.mark.parametrize("script_path", ["__init__", "examples/__init__", "_private"])
def test_package_and_private_script_paths_are_a_400(api, script_path):
    """__init__ and names starting with _ answer 400 on script_path (they were accepted)."""
    response = api.post(LIST, {**BODY, "script_path": script_path}, format="json")
    assert response.status_code == 400 and "not a script path" in response.json()["script_path"][0]


# Detail: get, put, patch, delete


def test_get_by_path_with_slashes(api, workspace):
    """GET <path>/ finds a trigger whose path contains "/"."""
    make_trigger(workspace)
    response = api.get(DETAIL)
    assert response.status_code == 200 and response.json()["path"] == PATH


def test_get_unknown_path_404(api):
    """GET of a path with no trigger answers 404."""
    assert api.get(f"{LIST}f/no/such/").status_code == 404


def test_put_replaces_configuration(api, workspace):
    """PUT replaces the configuration: fields it leaves out go back to their defaults."""
    make_trigger(workspace, filters=[{"key": "type", "value": "tick"}], can_return_message=True)
    response = api.put(DETAIL, {**BODY, "url": "wss://example.org/other"}, format="json")
    assert response.status_code == 200, response.content
    trigger = WebSocketTrigger.objects.get(path=PATH)
    assert trigger.url == "wss://example.org/other" and trigger.filters == [] and trigger.can_return_message is False


def test_patch_changes_only_given_fields(api, workspace):
    """PATCH changes the fields in the body and keeps the others."""
    make_trigger(workspace, filters=[{"key": "type", "value": "tick"}])
    response = api.patch(DETAIL, {"can_return_message": True}, format="json")
    assert response.status_code == 200, response.content
    trigger = WebSocketTrigger.objects.get(path=PATH)
    assert trigger.can_return_message is True and trigger.filters == [{"key": "type", "value": "tick"}]


def test_patch_bumps_edited_at(api, workspace):
    """A configuration change moves edited_at forward (listeners poll it)."""
    before = make_trigger(workspace).edited_at
    api.patch(DETAIL, {"filter_logic": "or"}, format="json")
    assert WebSocketTrigger.objects.get(path=PATH).edited_at > before


def test_patch_bad_value_400_keeps_row(api, workspace):
    """A PATCH that fails validation answers 400 keyed on the field and changes nothing."""
    make_trigger(workspace)
    response = api.patch(DETAIL, {"heartbeat": {"interval_secs": 0, "message": "ping"}}, format="json")
    assert response.status_code == 400 and set(response.json()) == {"heartbeat"}
    assert WebSocketTrigger.objects.get(path=PATH).heartbeat is None


def test_patch_unknown_path_404(api):
    """PATCH of a path with no trigger answers 404."""
    assert api.patch(f"{LIST}f/no/such/", {"enabled": False}, format="json").status_code == 404


def test_delete_removes_trigger(api, workspace):
    """DELETE answers 204 and the trigger is gone."""
    make_trigger(workspace)
    assert api.delete(DETAIL).status_code == 204
    assert not WebSocketTrigger.objects.exists()
    assert api.get(DETAIL).status_code == 404


# Membership and roles


def test_non_member_workspace_404(workspace, django_user_model):
    """A workspace the user is not a member of answers 404, as if it did not exist."""
    make_trigger(workspace)
    stranger = api_client_for(django_user_model.objects.create_user(username="bob", password="pw"))
    assert stranger.get(LIST).status_code == 404
    assert stranger.get(DETAIL).status_code == 404
    assert stranger.post(LIST, {**BODY, "path": "f/b/x"}, format="json").status_code == 404


def test_unknown_workspace_404(api):
    """A workspace slug that does not exist answers 404."""
    assert api.get("/api/w/nowhere/websocket_triggers/").status_code == 404


def test_viewer_can_read(workspace, member_client):
    """A viewer can list and get triggers."""
    make_trigger(workspace)
    viewer = member_client(ROLES.VIEWER)
    assert viewer.get(LIST).json()["count"] == 1
    assert viewer.get(DETAIL).status_code == 200


@pytest.mark.parametrize(
    "method, url, body",
    [
        ("post", LIST, {**BODY, "path": "f/demo/new"}),
        ("put", DETAIL, BODY),
        ("patch", DETAIL, {"enabled": False}),
        ("delete", DETAIL, None),
        ("post", SETENABLED, {"enabled": False}),
    ],
    ids=["create", "put", "patch", "delete", "setenabled"],
)
def test_viewer_cannot_write(workspace, member_client, method, url, body):
    """A viewer gets 403 on every write and nothing changes."""
    trigger = make_trigger(workspace)
    response = getattr(member_client(ROLES.VIEWER), method)(url, body, format="json")
    assert response.status_code == 403
    assert list(WebSocketTrigger.objects.values_list("path", "enabled", "edited_at")) == [
        (PATH, True, trigger.edited_at)
    ]


def test_developer_can_write(workspace, member_client):
    """A developer can create, patch and delete triggers."""
    developer = member_client(ROLES.DEVELOPER)
    assert developer.post(LIST, BODY, format="json").status_code == 201
    assert developer.patch(DETAIL, {"filter_logic": "or"}, format="json").status_code == 200
    assert developer.delete(DETAIL).status_code == 204


@pytest.mark.parametrize("method, url", [("get", LIST), ("post", LIST), ("get", DETAIL), ("delete", DETAIL)])
def test_unauthenticated_refused(workspace, method, url):
    """Without credentials every endpoint answers 401/403 and nothing is written."""
    make_trigger(workspace)
    client = APIClient()
    response = getattr(client, method)(url) if method in ("get", "delete") else client.post(url, BODY, format="json")
    assert response.status_code in (401, 403)
    assert WebSocketTrigger.objects.count() == 1


def test_bad_token_refused(workspace):
    """An invalid token answers 401."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert client.get(LIST).status_code == 401
