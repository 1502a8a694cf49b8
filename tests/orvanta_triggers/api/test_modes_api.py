"""A trigger's mode through the API: setmode/, `mode` and its alias `enabled`."""

import pytest
from django.db import IntegrityError, transaction

from orvanta_triggers import services
from orvanta_triggers.models import WebSocketTrigger, Workspace
from tests.conftest import ROLES

LIST = "/api/w/acme/websocket_triggers/"
PATH = "f/demo/ticks"
DETAIL = f"{LIST}{PATH}/"
SETMODE = f"{DETAIL}setmode/"
BODY = {"path": PATH, "url": "ws://example.org/feed", "script_path": "examples/echo"}


def make_trigger(workspace, **fields):
    return services.create_trigger(workspace=workspace, **{**BODY, **fields})


def stored(path=PATH):
    return WebSocketTrigger.objects.values_list("mode", "enabled", "status").get(path=path)


@pytest.mark.parametrize(
    "mode, enabled, status",
    [("suspended", True, "connecting"), ("disabled", False, "disabled"), ("enabled", True, "connecting")],
)
def test_setmode_sets_mode_and_its_alias(api, workspace, mode, enabled, status):
    """setmode/ answers the trigger JSON with the mode, `enabled` following it (true while suspended)."""
    make_trigger(workspace)
    body = api.post(SETMODE, {"mode": mode}, format="json").json()
    assert (body["mode"], body["enabled"], body["status"]) == (mode, enabled, status)
    assert stored() == (mode, enabled, status)


def test_setmode_refuses_an_unknown_mode(api, workspace):
    """A mode other than enabled, disabled or suspended is a 400 naming the field."""
    make_trigger(workspace)
    response = api.post(SETMODE, {"mode": "paused"}, format="json")
    assert response.status_code == 400 and "mode" in response.json()


def test_viewer_cannot_set_the_mode(workspace, member_client):
    """A viewer reads triggers but can't change their mode (403)."""
    make_trigger(workspace)
    assert member_client(ROLES.VIEWER).post(SETMODE, {"mode": "suspended"}, format="json").status_code == 403
    assert stored()[0] == "enabled"


def test_setmode_out_of_disabled_is_refused_on_a_plan_without_triggers(api, workspace):
    """Suspending a disabled trigger connects it, so a `free` workspace gets the plan's 403."""
    make_trigger(workspace, mode="disabled")
    services.set_workspace_plan(workspace=workspace, plan=Workspace.Plan.FREE)
    response = api.post(SETMODE, {"mode": "suspended"}, format="json")
    assert response.status_code == 403 and "plan" in response.json()["detail"]
    assert stored()[0] == "disabled"


def test_create_takes_a_mode(api, workspace):
    """POST with mode suspended creates a suspended trigger."""
    response = api.post(LIST, {**BODY, "mode": "suspended"}, format="json")
    assert response.status_code == 201 and response.json()["mode"] == "suspended"


def test_enabled_true_keeps_a_suspended_trigger_suspended(api, workspace):
    """PATCH {"enabled": true} on a suspended trigger changes nothing: a suspended trigger reads true."""
    make_trigger(workspace, mode="suspended")
    assert api.patch(DETAIL, {"enabled": True}, format="json").json()["mode"] == "suspended"


def test_setenabled_true_enables_a_disabled_trigger(api, workspace):
    """setenabled/ {"enabled": true} on a disabled trigger sets mode enabled."""
    make_trigger(workspace, mode="disabled")
    assert api.post(f"{DETAIL}setenabled/", {"enabled": True}, format="json").json()["mode"] == "enabled"


def test_enabled_false_disables_a_suspended_trigger(api, workspace):
    """setenabled/ {"enabled": false} on a suspended trigger disables it."""
    make_trigger(workspace, mode="suspended")
    api.post(f"{DETAIL}setenabled/", {"enabled": False}, format="json")
    assert stored()[:2] == ("disabled", False)


def test_mode_wins_over_enabled(api, workspace):
    """A body with both `mode` and `enabled` takes `mode` (a client changing mode in a body read earlier)."""
    make_trigger(workspace)
    assert api.patch(DETAIL, {"mode": "disabled", "enabled": True}, format="json").json()["mode"] == "disabled"


def test_put_without_mode_keeps_it(api, workspace):
    """PUT of a body without mode or enabled (Windmill's update body) keeps the trigger's mode."""
    make_trigger(workspace, mode="suspended")
    assert api.put(DETAIL, BODY, format="json").json()["mode"] == "suspended"


def test_a_trigger_path_cannot_end_in_an_action_name(api, workspace):
    """A path ending in setmode, resume_jobs or discard_jobs would shadow the action: 400."""
    for name in ("setmode", "resume_jobs", "discard_jobs"):
        response = api.post(LIST, {**BODY, "path": f"f/demo/{name}"}, format="json")
        assert response.status_code == 400 and "path" in response.json()


def test_enabled_and_mode_cannot_disagree_in_the_database(workspace):
    """The database refuses a row whose `enabled` contradicts its mode (a bulk update bypassing the services)."""
    make_trigger(workspace, mode="suspended")
    with pytest.raises(IntegrityError), transaction.atomic():
        WebSocketTrigger.objects.filter(path=PATH).update(enabled=False)
