"""Trigger and flow validation, through the services (the one write path): a trigger as a
whole, its path and error handler, values that only look valid, updates, plans, flows and
limits (each field's own checks: test_triggerfields.py)."""

import base64

import pytest
from django.core.exceptions import ValidationError

from orvanta_triggers import conf, services, validation
from orvanta_triggers.models import WebSocketTrigger, Workspace
from tests.orvanta_triggers.validationhelpers import FULL_TRIGGER, VALID, create_errors, flow_errors

# A valid trigger


def test_full_trigger_saves(workspace):
    """A trigger with every field of DESIGN.md's trigger JSON is saved as given."""
    trigger = services.create_trigger(workspace=workspace, **FULL_TRIGGER)
    trigger = WebSocketTrigger.objects.get(pk=trigger.pk)
    assert {name: getattr(trigger, name) for name in FULL_TRIGGER} == FULL_TRIGGER
    assert trigger.status == WebSocketTrigger.Status.CONNECTING


def test_refused_trigger_is_not_saved(workspace):
    """A trigger that fails validation leaves no row behind."""
    create_errors(workspace, url="http://example.org/feed")
    assert not WebSocketTrigger.objects.exists()


# Path and error handler


def test_duplicate_path_refused(workspace):
    """A second trigger with the same path in the workspace is refused on path."""
    services.create_trigger(workspace=workspace, **VALID)
    assert set(create_errors(workspace)) == {"path"}


def test_same_path_in_another_workspace_saves(workspace, user):
    """Paths are unique per workspace: another workspace may reuse one."""
    services.create_trigger(workspace=workspace, **VALID)
    other = services.create_workspace(slug="other", owner=user)
    assert services.create_trigger(workspace=other, **VALID).path == VALID["path"]


@pytest.mark.parametrize("path", ["f/test/setenabled", "setenabled"])
def test_path_ending_in_setenabled_refused(workspace, path):
    """A path whose last segment is "setenabled" would shadow the API action and is refused."""
    assert set(create_errors(workspace, path=path)) == {"path"}


@pytest.mark.parametrize("path", ["", "/f/x", "f/x/", "f//x", "f/x y", "../x", "a" * 256])
def test_malformed_path_refused(workspace, path):
    """Empty, slash-bounded, doubled-slash, spaced, dot-dot-led and over-long paths are refused."""
    assert set(create_errors(workspace, path=path)) == {"path"}


def test_unknown_error_handler_refused(workspace):
    """An error_handler_path that is not in the registry is refused on error_handler_path."""
    assert set(create_errors(workspace, error_handler_path="examples/no_such_handler")) == {"error_handler_path"}


def test_error_handler_args_must_be_object(workspace):
    """error_handler_args must be a JSON object."""
    assert set(create_errors(workspace, error_handler_args=[1])) == {"error_handler_args"}


def test_several_bad_fields_all_reported(workspace):
    """Every bad field gets its own key in one ValidationError."""
    errors = create_errors(
        workspace, url="http://x", filter_logic="xor", heartbeat={"interval_secs": 0, "message": "p"}
    )
    assert set(errors) == {"url", "filter_logic", "heartbeat"}


# Values that only look valid


@pytest.mark.parametrize(
    "field, value",
    [
        ("path", "f/test/feed\n"),
        ("url", "$script:examples/ws_url\n"),
        ("headers", {"X-Token\n": "v"}),
        ("subprotocols", ["chat\n"]),
    ],
    ids=["path", "runnable-url", "header-name", "subprotocol"],
)
def test_trailing_newline_refused(workspace, field, value):
    """A trailing newline does not slip past the pattern checks ("$" matches before a final "\\n")."""
    assert set(create_errors(workspace, **{field: value})) == {field}


@pytest.mark.parametrize(
    "field, value",
    [
        ("heartbeat", {"interval_secs": float("nan"), "message": "ping"}),
        ("heartbeat", {"interval_secs": float("inf"), "message": "ping"}),
        ("filters", [{"key": "price", "value": float("nan")}]),
        ("error_handler_args", {"limit": float("-inf")}),
        ("url_runnable_args", {"x": {1, 2}}),
    ],
    ids=["heartbeat-nan", "heartbeat-inf", "filter-nan", "handler-args-inf", "not-json-set"],
)
def test_non_json_values_refused(workspace, field, value):
    """NaN, Infinity and other non-JSON values are a field-keyed ValidationError, not a database error."""
    overrides = {field: value}
    if field == "url_runnable_args":
        overrides["url"] = "$script:examples/ws_url"
    assert set(create_errors(workspace, **overrides)) == {field}


def test_flow_step_id_with_newline_refused(workspace):
    """A step id with a trailing newline is not an identifier."""
    step = {"id": "a\n", "script_path": "upper", "args": {"msg": {"type": "static", "value": "x"}}}
    assert set(flow_errors(workspace, steps=[step])) == {"steps"}


def test_flow_nan_static_value_refused(workspace):
    """A NaN static input is refused on steps instead of failing in the database."""
    step = {"id": "a", "script_path": "upper", "args": {"msg": {"type": "static", "value": float("nan")}}}
    assert set(flow_errors(workspace, steps=[step])) == {"steps"}


# update_trigger


def test_update_refuses_bad_value_and_keeps_row(workspace):
    """update_trigger validates like create_trigger and leaves the stored row unchanged when it refuses."""
    trigger = services.create_trigger(workspace=workspace, **VALID)
    with pytest.raises(ValidationError) as info:
        services.update_trigger(trigger=trigger, url="http://example.org/feed")
    assert set(info.value.message_dict) == {"url"}
    assert WebSocketTrigger.objects.get(pk=trigger.pk).url == VALID["url"]


def test_update_to_existing_path_refused(workspace):
    """Renaming a trigger onto another trigger's path is refused on path."""
    services.create_trigger(workspace=workspace, **VALID)
    second = services.create_trigger(workspace=workspace, **{**VALID, "path": "f/test/second"})
    with pytest.raises(ValidationError) as info:
        services.update_trigger(trigger=second, path=VALID["path"])
    assert set(info.value.message_dict) == {"path"}


def test_update_keeps_own_path(workspace):
    """Saving a trigger again under its own path is not a duplicate."""
    trigger = services.create_trigger(workspace=workspace, **VALID)
    assert services.update_trigger(trigger=trigger, filter_logic="or").filter_logic == "or"


def test_unknown_service_field_is_a_type_error(workspace):
    """create_trigger takes only configuration fields: status and the like are not writable through it."""
    with pytest.raises(TypeError):
        services.create_trigger(workspace=workspace, status="connected", **VALID)


# Plans


@pytest.mark.parametrize("plan", [Workspace.Plan.FREE, Workspace.Plan.TEAM])
def test_plan_without_triggers_cannot_create(db, plan):
    """A workspace on the free or team plan can't create a WebSocket trigger."""
    workspace = services.create_workspace(slug=f"ws-{plan}", plan=plan)
    with pytest.raises(services.PlanNotAllowed):
        services.create_trigger(workspace=workspace, **VALID)
    assert not WebSocketTrigger.objects.exists()


@pytest.mark.parametrize("plan", [Workspace.Plan.ENTERPRISE, Workspace.Plan.SELF_HOSTED])
def test_plan_with_triggers_can_create(db, plan):
    """Enterprise and self-hosted workspaces can create WebSocket triggers."""
    workspace = services.create_workspace(slug=f"ws-{plan}", plan=plan)
    assert services.create_trigger(workspace=workspace, **VALID).pk is not None


@pytest.mark.parametrize("plan", [Workspace.Plan.FREE, Workspace.Plan.TEAM])
def test_plan_without_triggers_cannot_enable(workspace, plan):
    """A disabled trigger of a workspace moved to free or team can't be enabled again."""
    trigger = services.create_trigger(workspace=workspace, enabled=False, **VALID)
    Workspace.objects.filter(pk=workspace.pk).update(plan=plan)  # a downgrade; no service changes plans
    trigger = WebSocketTrigger.objects.select_related("workspace").get(pk=trigger.pk)
    with pytest.raises(services.PlanNotAllowed):
        services.set_trigger_enabled(trigger=trigger, enabled=True)
    assert WebSocketTrigger.objects.get(pk=trigger.pk).enabled is False


def test_downgraded_workspace_can_still_disable(workspace):
    """The plan check blocks enabling only: a downgraded workspace can still switch its trigger off."""
    trigger = services.create_trigger(workspace=workspace, **VALID)
    Workspace.objects.filter(pk=workspace.pk).update(plan=Workspace.Plan.FREE)
    trigger = WebSocketTrigger.objects.select_related("workspace").get(pk=trigger.pk)
    trigger = services.set_trigger_enabled(trigger=trigger, enabled=False)
    assert trigger.status == WebSocketTrigger.Status.DISABLED


# Flows

STEP_A = {"id": "a", "script_path": "upper", "args": {"msg": {"type": "ref", "expr": "flow_input.msg"}}}
STEP_B = {"id": "b", "script_path": "wrap", "args": {"value": {"type": "ref", "expr": "results.a"}}}


def test_valid_flow_saves(workspace):
    """A flow whose steps name registry scripts and earlier steps is saved."""
    flow = services.create_flow(workspace=workspace, path="f/test/flow", steps=[STEP_A, STEP_B], early_return="a")
    assert flow.pk is not None


def test_flow_unknown_step_script_refused(workspace):
    """A step whose script is not in the registry is refused on steps."""
    errors = flow_errors(workspace, steps=[{**STEP_A, "script_path": "examples/no_such_script"}])
    assert set(errors) == {"steps"}


def test_flow_duplicate_step_ids_refused(workspace):
    """Two steps with the same id are refused on steps."""
    assert set(flow_errors(workspace, steps=[STEP_A, {**STEP_B, "id": "a"}])) == {"steps"}


def test_flow_ref_to_later_step_refused(workspace):
    """A ref transform naming a step that runs later is refused on steps."""
    first = {"id": "a", "script_path": "wrap", "args": {"value": {"type": "ref", "expr": "results.b"}}}
    second = {"id": "b", "script_path": "upper", "args": {"msg": {"type": "static", "value": "x"}}}
    assert set(flow_errors(workspace, steps=[first, second])) == {"steps"}


@pytest.mark.parametrize("expr", ["os.system", "flow_input..msg", "", "__import__('os')"])
def test_flow_ref_expr_must_be_dotted_path(workspace, expr):
    """A ref expr not rooted at flow_input / results.<id> / previous_result is refused on steps."""
    step = {"id": "a", "script_path": "upper", "args": {"msg": {"type": "ref", "expr": expr}}}
    assert set(flow_errors(workspace, steps=[step])) == {"steps"}


def test_flow_bad_early_return_refused(workspace):
    """An early_return that names no step is refused on early_return."""
    assert set(flow_errors(workspace, steps=[STEP_A, STEP_B], early_return="c")) == {"early_return"}


def test_flow_without_steps_refused(workspace):
    """A flow needs at least one step."""
    assert set(flow_errors(workspace, steps=[])) == {"steps"}


def test_flow_unknown_preprocessor_refused(workspace):
    """A preprocessor_path that is not in the registry is refused on preprocessor_path."""
    errors = flow_errors(workspace, steps=[STEP_A], preprocessor_path="examples/no_such_script")
    assert set(errors) == {"preprocessor_path"}


def test_trigger_on_existing_flow_saves(workspace):
    """is_flow with the path of a flow of the workspace is accepted."""
    services.create_flow(workspace=workspace, path="f/test/flow", steps=[STEP_A])
    trigger = services.create_trigger(workspace=workspace, **{**VALID, "script_path": "f/test/flow", "is_flow": True})
    assert trigger.is_flow is True


# Limits


def nested(depth):
    """A JSON value of `depth` nested arrays."""
    value = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("url_runnable_args", {"a": nested(64)}),
        ("filters", [{"key": "a", "value": nested(64)}]),
        ("initial_messages", [{"runnable_result": {"path": "examples/auth_message", "args": {"a": nested(64)}}}]),
        ("error_handler_args", {"a": nested(64)}),
        ("heartbeat", {"interval_secs": 5, "message": "ping", "x": nested(64)}),
    ],
)
def test_json_fields_nest_at_most_64_levels(workspace, field, value):
    """Any JSON field nesting deeper than 64 levels is refused, naming the limit."""
    assert "nests deeper than 64 levels of arrays and objects" in " ".join(
        create_errors(workspace, **{field: value})[field]
    )


def test_a_value_at_the_depth_limit_saves(workspace):
    """64 levels of arrays and objects are accepted."""
    services.create_trigger(workspace=workspace, **VALID, url_runnable_args={"a": nested(63)})


def test_a_raw_message_too_deep_to_parse_is_refused(workspace):
    """A raw_message nesting 5,000 deep is refused naming the limit, not a crash."""
    raw = "[" * 5000 + "]" * 5000
    errors = create_errors(workspace, initial_messages=[{"raw_message": raw}])
    assert errors == {"initial_messages": [f"message 0: raw_message {validation.TOO_DEEP}"]}


def test_workspace_and_flow_json_nest_at_most_64_levels(workspace):
    """The depth limit holds for a workspace's error handler args and a flow's steps too."""
    with pytest.raises(ValidationError) as info:
        services.update_workspace_settings(workspace=workspace, error_handler_args={"a": nested(64)})
    assert set(info.value.message_dict) == {"error_handler_args"}
    step = {**STEP_A, "args": {"x": {"type": "static", "value": nested(64)}}}
    assert "nests deeper than 64 levels" in " ".join(flow_errors(workspace, steps=[step])["steps"])


@pytest.mark.parametrize(
    "message",
    [{"raw_message": '"' + "x" * 65535 + '"'}, {"binary_message": base64.b64encode(b"x" * 65537).decode()}],
    ids=["raw", "binary"],
)
def test_initial_messages_are_at_most_64_kib(workspace, message):
    """An initial message larger than 65,536 bytes is refused, naming the limit."""
    errors = create_errors(workspace, initial_messages=[{"raw_message": "1"}, message])
    assert errors == {"initial_messages": ["message 1: larger than 65536 bytes (the limit for an initial message)"]}


def test_an_initial_message_of_64_kib_saves(workspace):
    """An initial message of exactly 65,536 bytes is accepted."""
    services.create_trigger(workspace=workspace, **VALID, initial_messages=[{"raw_message": '"' + "x" * 65534 + '"'}])


def test_at_most_100_initial_messages(workspace):
    """More than 100 initial messages are refused, naming the limit."""
    errors = create_errors(workspace, initial_messages=[{"raw_message": "1"}] * 101)
    assert errors == {"initial_messages": ["at most 100 initial messages"]}


def test_triggers_per_workspace_are_limited(workspace, settings):
    """Past ORVANTA_MAX_TRIGGERS_PER_WORKSPACE a workspace's next trigger is refused, naming the setting."""
    settings.ORVANTA_MAX_TRIGGERS_PER_WORKSPACE = 2
    for index in range(2):
        services.create_trigger(workspace=workspace, **{**VALID, "path": f"f/test/{index}"})
    with pytest.raises(ValidationError) as info:
        services.create_trigger(workspace=workspace, **VALID)
    assert info.value.messages == [
        "workspace 'acme' already has 2 WebSocket triggers, the most ORVANTA_MAX_TRIGGERS_PER_WORKSPACE allows"
    ]
    assert WebSocketTrigger.objects.count() == 2


def test_the_trigger_limit_is_per_workspace(workspace, user, settings):
    """Another workspace's triggers don't count against this one's limit."""
    settings.ORVANTA_MAX_TRIGGERS_PER_WORKSPACE = 1
    services.create_trigger(workspace=workspace, **VALID)
    other = services.create_workspace(slug="other", owner=user)
    services.create_trigger(workspace=other, **VALID)


def test_the_default_trigger_limit_is_1000():
    """ORVANTA_MAX_TRIGGERS_PER_WORKSPACE defaults to 1,000."""
    assert conf.max_triggers_per_workspace() == 1000


@pytest.mark.parametrize("path", ["__init__", "examples/__init__", "_private"])
def test_package_and_private_module_paths_are_refused(workspace, path):
    """A script path naming a package's __init__ or a private module is refused on script_path."""
    assert "not a script path" in " ".join(create_errors(workspace, script_path=path)["script_path"])
