"""A trigger's mode through the API: setmode/ and setenabled/, `mode` and its alias `enabled`."""

import pytest
from django.db import IntegrityError, transaction

from orvanta_triggers import services
from orvanta_triggers.models import WebSocketTrigger, Workspace
from tests.conftest import ROLES

LIST = "/api/w/acme/websocket_triggers/"
PATH = "f/demo/ticks"
DETAIL = f"{LIST}{PATH}/"
SETMODE = f"{DETAIL}setmode/"
SETENABLED = f"{DETAIL}setenabled/"
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


# setenabled


def test_setenabled_false_disables(api, workspace):
    """POST setenabled {"enabled": false} disables the trigger and reports status "disabled"."""
    make_trigger(workspace)
    response = api.post(SETENABLED, {"enabled": False}, format="json")
    assert response.status_code == 200
    assert response.json()["enabled"] is False and response.json()["status"] == "disabled"
    assert WebSocketTrigger.objects.get(path=PATH).enabled is False


def test_setenabled_true_enables(api, workspace):
    """POST setenabled {"enabled": true} enables a disabled trigger (status "connecting")."""
    make_trigger(workspace, enabled=False)
    body = api.post(SETENABLED, {"enabled": True}, format="json").json()
    assert body["enabled"] is True and body["status"] == "connecting"


def test_setenabled_requires_boolean(api, workspace):
    """setenabled without a boolean "enabled" answers 400 keyed on enabled."""
    make_trigger(workspace)
    response = api.post(SETENABLED, {}, format="json")
    assert response.status_code == 400 and set(response.json()) == {"enabled"}


def test_setenabled_on_downgraded_workspace_403(api, workspace):
    """Enabling a trigger of a workspace moved to the free plan answers 403."""
    make_trigger(workspace, enabled=False)
    Workspace.objects.filter(pk=workspace.pk).update(plan=Workspace.Plan.FREE)
    response = api.post(SETENABLED, {"enabled": True}, format="json")
    assert response.status_code == 403 and "Free" in response.json()["detail"]
    assert WebSocketTrigger.objects.get(path=PATH).enabled is False


REFUSED_NOW = "ws://127.0.0.1:9/feed"


@pytest.fixture
def url_refused_since(workspace, settings):
    """A trigger saved while its URL was allowed, whose host is refused now (as one
    that resolves to a private address since)."""
    trigger = make_trigger(workspace, url=REFUSED_NOW)
    settings.ORVANTA_ALLOW_PRIVATE_URLS = False
    return trigger


def test_setenabled_false_does_not_depend_on_the_url(api, url_refused_since):
    """A trigger whose URL is refused now can still be disabled (it answered 400 with the URL error)."""
    response = api.post(SETENABLED, {"enabled": False}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "disabled"
    assert WebSocketTrigger.objects.get(path=PATH).enabled is False


def test_patch_disabling_does_not_depend_on_the_url(api, url_refused_since):
    """PATCH {"enabled": false}, with other changes too, disables a trigger whose URL is refused now."""
    response = api.patch(DETAIL, {"enabled": False, "filter_logic": "or"}, format="json")
    assert response.status_code == 200
    assert WebSocketTrigger.objects.values_list("enabled", "filter_logic", "url").get() == (False, "or", REFUSED_NOW)


def test_enabling_checks_the_url_again(api, url_refused_since):
    """Once disabled, enabling it again is refused with the URL's reason."""
    api.post(SETENABLED, {"enabled": False}, format="json")
    response = api.post(SETENABLED, {"enabled": True}, format="json")
    assert response.status_code == 400 and "private or internal address" in " ".join(response.json()["url"])
    assert WebSocketTrigger.objects.get(path=PATH).enabled is False


def test_a_disabled_triggers_new_url_is_checked(api, url_refused_since):
    """A disabled trigger keeps its stored URL unchecked, not a new one."""
    api.post(SETENABLED, {"enabled": False}, format="json")
    response = api.patch(DETAIL, {"url": "ws://10.0.0.1/feed"}, format="json")
    assert response.status_code == 400 and "private or internal address" in " ".join(response.json()["url"])


def test_delete_does_not_depend_on_the_url(api, url_refused_since):
    """A trigger whose URL is refused now can be deleted."""
    assert api.delete(DETAIL).status_code == 204 and not WebSocketTrigger.objects.exists()


def test_setenabled_unknown_path_404(api):
    """setenabled of a path with no trigger answers 404."""
    assert api.post(f"{LIST}f/no/such/setenabled/", {"enabled": True}, format="json").status_code == 404
