"""Triggers as code (orvanta_triggers/triggerfiles/): the document a workspace
exports, reading files, and the one-transaction import service."""

import datetime
import json

import pytest
import yaml

from orvanta_triggers import services, triggerfiles
from orvanta_triggers.models import Flow, WebSocketTrigger, Workspace
from orvanta_triggers.triggerfiles import TriggerFileError

STEPS = [
    {"id": "a", "script_path": "examples/parse", "args": {"msg": {"type": "ref", "expr": "flow_input.msg"}}},
    {
        "id": "b",
        "script_path": "examples/slow_double",
        "args": {"x": {"type": "ref", "expr": "results.a.value"}, "delay": {"type": "static", "value": 0}},
    },
]
FULL_TRIGGER = {
    "url": "ws://example.org/feed",
    "url_runnable_args": {},
    "script_path": "examples/echo",
    "filters": [{"key": "type", "value": {"z": 1, "a": [1, 2]}}, {"any_of": [{"path": "d.s", "value": 3}]}],
    "filter_logic": "or",
    "initial_messages": [
        {"raw_message": '{"op": "subscribe"}'},
        {"runnable_result": {"path": "examples/auth_message", "args": {"token": "s3cret"}, "is_flow": False}},
    ],
    "can_return_message": True,
    "heartbeat": {"interval_secs": 10, "message": '{"op": 1, "d": {{state}}}', "state_field": "s"},
    "error_handler_path": "examples/echo",
    "error_handler_args": {"channel": "#alerts"},
    "retry": {"max_attempts": 3, "delay_secs": 0.5, "multiplier": 2},
    "headers": {"X-Token": "s3cret", "Accept-Language": "fr"},
    "subprotocols": ["v1.chat"],
}


def document(*, flows=(), triggers=(), **top):
    return {"version": 1, **top, "flows": list(flows), "websocket_triggers": list(triggers)}


def trigger_entry(path="f/demo/ticks", **fields):
    return {"path": path, "url": "ws://example.org/feed", "script_path": "examples/echo", **fields}


def import_data(workspace, data, **options):
    return triggerfiles.import_document(
        workspace=workspace, document=triggerfiles.read_document(data, name="t.yaml"), **options
    )


def problems(data, **options):
    return triggerfiles.read_document(data, name="t.yaml", **options).problems()


def import_problems(workspace, data, **options):
    with pytest.raises(TriggerFileError) as caught:
        import_data(workspace, data, **options)
    return caught.value.errors


# Export


def test_export_holds_configuration_fields_only_in_the_trigger_json_order(workspace):
    """A trigger's entry is its configuration, in the trigger JSON's order: no status, no timestamps."""
    services.create_trigger(workspace=workspace, path="f/demo/ticks", **FULL_TRIGGER)
    [entry] = triggerfiles.export_document(workspace=workspace)["websocket_triggers"]
    assert list(entry) == [name for name in services.TRIGGER_CONFIG_FIELDS if name != "enabled"]
    assert entry["headers"] == {"Accept-Language": "fr", "X-Token": "s3cret"}


def test_export_sorts_entries_by_path_and_object_keys(workspace):
    """Entries come by path and every JSON object's keys sorted, whatever order they were saved in."""
    for path in ("f/b/second", "f/a/first"):
        services.create_trigger(workspace=workspace, **trigger_entry(path, filters=[{"value": 1, "key": "k"}]))
    exported = triggerfiles.export_document(workspace=workspace)["websocket_triggers"]
    assert [e["path"] for e in exported] == ["f/a/first", "f/b/second"]
    assert list(exported[0]["filters"][0]) == ["key", "value"]


def test_export_with_prefix_takes_the_flows_its_triggers_run(workspace):
    """With a prefix: the triggers under it, the flows under it, and the flows those triggers run."""
    services.create_flow(workspace=workspace, path="f/shared/pipeline", steps=STEPS)
    services.create_flow(workspace=workspace, path="f/other/unused", steps=STEPS)
    services.create_flow(workspace=workspace, path="f/feeds/local", steps=STEPS)
    services.create_trigger(
        workspace=workspace, **trigger_entry("f/feeds/ticks", script_path="f/shared/pipeline", is_flow=True)
    )
    services.create_trigger(workspace=workspace, **trigger_entry("f/other/feed"))
    exported = triggerfiles.export_document(workspace=workspace, path_prefix="f/feeds/")
    assert exported["path_prefix"] == "f/feeds/"
    assert [f["path"] for f in exported["flows"]] == ["f/feeds/local", "f/shared/pipeline"]
    assert [t["path"] for t in exported["websocket_triggers"]] == ["f/feeds/ticks"]


def test_export_prefix_is_case_sensitive(workspace):
    """The prefix matches paths exactly, on SQLite too (whose LIKE ignores case)."""
    services.create_trigger(workspace=workspace, **trigger_entry("f/Feeds/ticks"))
    assert triggerfiles.export_document(workspace=workspace, path_prefix="f/feeds/")["websocket_triggers"] == []


def test_yaml_and_json_renderings_hold_the_same_document(workspace):
    """The YAML and the JSON of an export read back as the same document."""
    services.create_flow(workspace=workspace, path="f/demo/pipeline", steps=STEPS, early_return="a")
    services.create_trigger(workspace=workspace, path="f/demo/ticks", **FULL_TRIGGER)
    exported = triggerfiles.export_document(workspace=workspace)
    assert yaml.safe_load(triggerfiles.render(exported, "yaml")) == exported
    assert json.loads(triggerfiles.render(exported, "json")) == exported


# Reading a file


def test_parse_reports_the_line_of_a_yaml_error():
    """Bad YAML is refused with the line and column the parser gives."""
    with pytest.raises(TriggerFileError) as caught:
        triggerfiles.parse("version: 1\nflows: []\n  websocket_triggers: []\n", name="t.yaml")
    assert caught.value.errors == [
        "t.yaml: not valid YAML: expected <block end>, but found '<block mapping start>' (line 3, column 3)"
    ]


def test_parse_reports_the_line_of_a_json_error():
    """A file named .json is read as JSON, and a JSON error names its line and column."""
    with pytest.raises(TriggerFileError, match=r"t\.json: not valid JSON: .*\(line 2, column 1\)"):
        triggerfiles.parse('{"version": 1,\n}', name="t.json")


def test_read_document_lists_every_problem_at_once():
    """Unknown fields, wrong types, missing fields and duplicate paths are all listed together."""
    errors = problems(
        document(
            triggers=[
                trigger_entry("f/a/one", frobnicate=1, enabled="yes"),
                {"url": "ws://example.org/", "script_path": "examples/echo"},
                trigger_entry("f/a/two", is_flow=1),
                trigger_entry("f/a/three"),
                trigger_entry("f/a/three"),
            ],
            flows=[{"path": "f/a/flow", "steps": STEPS, "early_return": 3}],
        )
    )
    assert errors == [
        "websocket_triggers[1]: path: required",
        "trigger f/a/three: listed more than once",
        "flow f/a/flow: early_return: must be a string",
        "trigger f/a/one: frobnicate: unknown field",
        "trigger f/a/one: enabled: must be true or false",
        "trigger f/a/two: is_flow: must be true or false",
    ]


def test_read_document_refuses_duplicate_paths():
    """The same trigger path twice in one file is an error, not last-one-wins."""
    assert problems(document(triggers=[trigger_entry(), trigger_entry()])) == [
        "trigger f/demo/ticks: listed more than once"
    ]


def test_read_document_refuses_unknown_top_level_keys_and_versions():
    """An unknown top-level key or a version this program does not read is refused."""
    assert problems({"version": 2, "websocket_trigers": []}) == [
        "t.yaml: websocket_trigers: unknown top-level key (expected version, path_prefix, flows, websocket_triggers)",
        "t.yaml: version: 2 is not a version this program reads (use 1)",
    ]


def test_a_yaml_date_is_not_a_json_value():
    """A value YAML reads as a date (unquoted 2025-01-01) is refused, with a hint to quote it."""
    errors = problems(document(triggers=[trigger_entry(url_runnable_args={"since": datetime.date(2025, 1, 1)})]))
    assert errors == [
        "trigger f/demo/ticks: url_runnable_args: datetime.date(2025, 1, 1) is not a JSON value (in YAML, quote it)"
    ]


def test_an_empty_file_is_an_error():
    """An empty file is refused rather than read as "nothing"."""
    assert problems(None) == ["t.yaml: the file is empty"]


def test_status_fields_of_the_trigger_json_are_ignored():
    """The API's trigger JSON (with its read-only status) reads as its configuration."""
    [entry] = triggerfiles.read_document(
        trigger_entry(status="connected", error=None, listener_id="l1", edited_at="2025-01-01T00:00:00Z"),
        name="t.json",
    ).triggers
    assert entry.path == "f/demo/ticks" and "status" not in entry.fields


def test_a_list_of_triggers_reads_as_triggers():
    """A list (Windmill's trigger list JSON) reads as that many triggers."""
    read = triggerfiles.read_document([trigger_entry("f/a/one"), trigger_entry("f/a/two")], name="t.json")
    assert [entry.path for entry in read.triggers] == ["f/a/one", "f/a/two"]


def test_windmill_trigger_path_comes_from_its_file_name(tmp_path):
    """A `wmill sync` file has no path field: f/feeds/ticks.websocket_trigger.yaml is trigger f/feeds/ticks."""
    file = tmp_path / "f" / "feeds" / "ticks.websocket_trigger.yaml"
    file.parent.mkdir(parents=True)
    file.write_text("script_path: examples/echo\nurl: ws://example.org/\nmode: disabled\n")
    [entry] = triggerfiles.read_path(file).triggers
    assert (entry.path, entry.fields["mode"]) == ("f/feeds/ticks", "disabled")


def test_a_trigger_without_path_or_windmill_name_says_how_to_name_it(tmp_path):
    """A lone trigger with no path and no Windmill file name is refused, saying how to fix it."""
    file = tmp_path / "ticks.yaml"
    file.write_text("script_path: examples/echo\nurl: ws://example.org/\n")
    [problem] = triggerfiles.read_path(file).problems()
    assert problem.startswith(f"{file}: path: required (or name the file <path>.websocket_trigger.yaml")


def test_an_unreadable_file_is_an_error(tmp_path):
    """A missing file is refused with the reason."""
    with pytest.raises(TriggerFileError, match="can't read .*missing.yaml: No such file"):
        triggerfiles.read_path(tmp_path / "missing.yaml")


# Import


def test_import_creates_flows_before_the_triggers_that_run_them(workspace):
    """A trigger may run a flow created by the same file."""
    result = import_data(
        workspace,
        document(
            flows=[{"path": "f/demo/pipeline", "steps": STEPS}],
            triggers=[trigger_entry(script_path="f/demo/pipeline", is_flow=True)],
        ),
    )
    assert [str(c) for c in result.changes] == ["+ created flow f/demo/pipeline", "+ created trigger f/demo/ticks"]
    assert WebSocketTrigger.objects.get(path="f/demo/ticks").is_flow


def test_importing_the_same_file_again_writes_nothing(workspace):
    """The second import of a file changes nothing, and no edited_at moves."""
    data = document(flows=[{"path": "f/demo/pipeline", "steps": STEPS}], triggers=[trigger_entry(**FULL_TRIGGER)])
    import_data(workspace, data)
    edited = WebSocketTrigger.objects.get().edited_at, Flow.objects.get().edited_at
    result = import_data(workspace, data)
    assert (result.changes, result.unchanged, result.summary()) == ([], 2, "no changes (2 unchanged)")
    assert (WebSocketTrigger.objects.get().edited_at, Flow.objects.get().edited_at) == edited


def test_import_writes_only_the_fields_that_differ(workspace):
    """A changed entry lists the fields that differ; an unchanged one is not written."""
    import_data(workspace, document(triggers=[trigger_entry("f/a/one"), trigger_entry("f/a/two")]))
    untouched = WebSocketTrigger.objects.get(path="f/a/two").edited_at
    result = import_data(
        workspace,
        document(
            triggers=[
                trigger_entry("f/a/one", filters=[{"key": "type", "value": "tick"}], filter_logic="or"),
                trigger_entry("f/a/two"),
            ]
        ),
    )
    assert [str(c) for c in result.changes] == ["~ changed trigger f/a/one: filters, filter_logic"]
    assert WebSocketTrigger.objects.get(path="f/a/two").edited_at == untouched


def test_a_field_left_out_goes_back_to_its_default(workspace):
    """An entry is the whole configuration: a field it leaves out returns to its default."""
    import_data(workspace, document(triggers=[trigger_entry(headers={"X-Token": "a"})]))
    result = import_data(workspace, document(triggers=[trigger_entry()]))
    assert [str(c) for c in result.changes] == ["~ changed trigger f/demo/ticks: headers"]
    assert WebSocketTrigger.objects.get().headers == {}


def test_enabled_left_out_keeps_the_stored_state(workspace):
    """Like the API's PUT, an entry without `enabled` leaves a disabled trigger disabled."""
    trigger = services.create_trigger(workspace=workspace, **trigger_entry(enabled=False))
    assert import_data(workspace, document(triggers=[trigger_entry()])).changes == []
    trigger.refresh_from_db()
    assert trigger.enabled is False


def test_true_is_not_one(workspace):
    """A filter value changed from 1 to true is a change (Python's True == 1 is not used)."""
    import_data(workspace, document(triggers=[trigger_entry(filters=[{"key": "on", "value": 1}])]))
    result = import_data(workspace, document(triggers=[trigger_entry(filters=[{"key": "on", "value": True}])]))
    assert [str(c) for c in result.changes] == ["~ changed trigger f/demo/ticks: filters"]


def test_one_invalid_entry_and_nothing_is_written(workspace):
    """Every invalid value is listed with its entry's path and field, and no entry is written."""
    errors = import_problems(
        workspace,
        document(
            flows=[{"path": "f/demo/pipeline", "steps": STEPS}],
            triggers=[
                trigger_entry("f/a/good"),
                trigger_entry("f/a/bad", url="http://example.org/", script_path="nope/nope"),
            ],
        ),
    )
    assert errors == [
        "trigger f/a/bad: url: the scheme must be ws or wss, not 'http'",
        "trigger f/a/bad: script_path: unknown script: no script 'nope/nope' in runnables, tests.runnables",
    ]
    assert not WebSocketTrigger.objects.exists() and not Flow.objects.exists()


def test_a_plan_without_websocket_triggers_is_listed(workspace):
    """On a plan without WebSocket triggers, creating one is an error naming the plan."""
    services.set_workspace_plan(workspace=workspace, plan=Workspace.Plan.FREE)
    errors = import_problems(workspace, document(triggers=[trigger_entry()]))
    assert errors == ["trigger f/demo/ticks: WebSocket triggers are not available on the Free plan (workspace 'acme')"]


def test_dry_run_works_out_the_changes_and_writes_nothing(workspace):
    """A dry run reports the same changes as the real import, and rolls them back."""
    data = document(flows=[{"path": "f/demo/pipeline", "steps": STEPS}], triggers=[trigger_entry()])
    result = import_data(workspace, data, dry_run=True)
    assert [str(c) for c in result.changes] == ["+ created flow f/demo/pipeline", "+ created trigger f/demo/ticks"]
    assert result.summary() == "dry run, nothing written: 2 created, 0 unchanged"
    assert not WebSocketTrigger.objects.exists() and not Flow.objects.exists()


def test_prune_deletes_what_the_file_does_not_list(workspace):
    """With prune, triggers and then flows the file leaves out are deleted."""
    services.create_flow(workspace=workspace, path="f/old/pipeline", steps=STEPS)
    services.create_trigger(
        workspace=workspace, **trigger_entry("f/old/feed", script_path="f/old/pipeline", is_flow=True)
    )
    result = import_data(workspace, document(triggers=[trigger_entry()]), prune=True)
    assert [str(c) for c in result.changes] == [
        "+ created trigger f/demo/ticks",
        "- deleted trigger f/old/feed",
        "- deleted flow f/old/pipeline",
    ]
    assert list(WebSocketTrigger.objects.values_list("path", flat=True)) == ["f/demo/ticks"]


def test_without_prune_nothing_is_deleted(workspace):
    """Without prune, objects the file does not list stay."""
    services.create_trigger(workspace=workspace, **trigger_entry("f/old/feed"))
    import_data(workspace, document(triggers=[trigger_entry()]))
    assert WebSocketTrigger.objects.count() == 2


def test_prune_stays_inside_the_files_path_prefix(workspace):
    """A file exported with a path prefix prunes under that prefix only."""
    services.create_trigger(workspace=workspace, **trigger_entry("f/feeds/old"))
    services.create_trigger(workspace=workspace, **trigger_entry("f/other/feed"))
    result = import_data(
        workspace, document(path_prefix="f/feeds/", triggers=[trigger_entry("f/feeds/new")]), prune=True
    )
    assert [str(c) for c in result.changes] == ["+ created trigger f/feeds/new", "- deleted trigger f/feeds/old"]
    assert WebSocketTrigger.objects.filter(path="f/other/feed").exists()


def test_prune_refuses_to_delete_a_flow_a_kept_trigger_runs(workspace):
    """Pruning a flow that a trigger outside the file still runs is an error, and nothing is written."""
    services.create_flow(workspace=workspace, path="f/feeds/pipeline", steps=STEPS)
    services.create_trigger(
        workspace=workspace, **trigger_entry("f/other/feed", script_path="f/feeds/pipeline", is_flow=True)
    )
    errors = import_problems(
        workspace, document(path_prefix="f/feeds/", triggers=[trigger_entry("f/feeds/new")]), prune=True
    )
    assert errors == [
        "flow f/feeds/pipeline: path: can't delete flow 'f/feeds/pipeline': used by trigger(s) f/other/feed"
    ]
    assert not WebSocketTrigger.objects.filter(path="f/feeds/new").exists()
