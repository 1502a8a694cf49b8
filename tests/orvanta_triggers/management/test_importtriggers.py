"""importtriggers WS FILE [--dry-run] [--prune]: round trips with exporttriggers,
Windmill trigger files as `wmill sync` writes them, errors, and a real listener."""

import json
import time
from io import StringIO

import pytest
from django.core.management import call_command, execute_from_command_line
from django.core.management.base import CommandError

from orvanta_triggers import services
from orvanta_triggers.models import Flow, Job, WebSocketTrigger
from tests.listener.helpers import wait_connected, wait_jobs
from tests.orvanta_triggers.test_triggerfiles import FULL_TRIGGER, STEPS
from tests.support.wsserver import wait_for

# A Windmill WebSocket trigger as `wmill sync pull` writes it to
# f/feeds/ticks.websocket_trigger.yaml: no path (the file name is the path), Windmill's
# `mode` and `retry` shapes, and its `email` bookkeeping.
WINDMILL_YAML = """\
script_path: f/feeds/on_tick
is_flow: false
mode: enabled
url: wss://stream.example.org/feed
filters:
  - key: type
    value: tick
initial_messages:
  - raw_message: '{"op": "subscribe", "channel": "ticks"}'
url_runnable_args: {}
can_return_message: true
can_return_error_result: false
error_handler_path: f/feeds/on_error
error_handler_args:
  channel: "#alerts"
retry:
  constant:
    attempts: 2
    seconds: 5
email: admin@windmill.dev
"""


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def populate(workspace):
    services.create_flow(workspace=workspace, path="f/demo/pipeline", steps=STEPS, early_return="a")
    services.create_trigger(workspace=workspace, path="f/demo/ticks", **FULL_TRIGGER)
    services.create_trigger(
        workspace=workspace,
        path="f/demo/piped",
        url="$flow:f/demo/pipeline",
        url_runnable_args={"token": "s3cret"},
        script_path="f/demo/pipeline",
        is_flow=True,
        enabled=False,
    )


@pytest.fixture
def staging(db):
    return services.create_workspace(slug="staging")


@pytest.mark.parametrize("fmt, name", [("yaml", "triggers.yaml"), ("json", "triggers.json")])
def test_export_import_export_round_trip_is_byte_identical(workspace, staging, tmp_path, fmt, name):
    """Export, import into an empty workspace, export again: the same bytes."""
    populate(workspace)
    exported = run("exporttriggers", "acme", "--format", fmt)
    (tmp_path / name).write_text(exported)
    run("importtriggers", "staging", str(tmp_path / name))
    assert run("exporttriggers", "staging", "--format", fmt) == exported


@pytest.mark.parametrize("fmt, name", [("yaml", "triggers.yaml"), ("json", "triggers.json")])
def test_round_trip_keeps_odd_strings(workspace, staging, tmp_path, fmt, name):
    """NUL, a lone surrogate, non-ASCII and private-use characters survive the round trip as UTF-8 files."""
    odd = "a\x00b\ud800c\ue000dé"
    services.create_trigger(
        workspace=workspace,
        path="f/demo/odd",
        url="ws://example.org/feed",
        script_path="examples/echo",
        filters=[{"key": "k", "value": odd}],
    )
    exported = run("exporttriggers", "acme", "--format", fmt)
    (tmp_path / name).write_text(exported, encoding="utf-8")
    run("importtriggers", "staging", str(tmp_path / name))
    assert WebSocketTrigger.objects.get(workspace=staging).filters == [{"key": "k", "value": odd}]
    assert run("exporttriggers", "staging", "--format", fmt) == exported


def test_round_trip_with_a_path_prefix(workspace, staging, tmp_path):
    """A prefixed export round-trips too, and the flows its triggers run come along."""
    populate(workspace)
    exported = run("exporttriggers", "acme", "--path-prefix", "f/demo/pi")
    (tmp_path / "t.yaml").write_text(exported)
    run("importtriggers", "staging", str(tmp_path / "t.yaml"))
    assert run("exporttriggers", "staging", "--path-prefix", "f/demo/pi") == exported
    assert list(Flow.objects.filter(workspace=staging).values_list("path", flat=True)) == ["f/demo/pipeline"]


def test_import_prints_created_then_no_changes(workspace, staging, tmp_path):
    """The first import prints what it creates; the same file again prints "no changes"."""
    populate(workspace)
    (tmp_path / "t.yaml").write_text(run("exporttriggers", "acme"))
    assert run("importtriggers", "staging", str(tmp_path / "t.yaml")).splitlines() == [
        "+ created flow f/demo/pipeline",
        "+ created trigger f/demo/piped",
        "+ created trigger f/demo/ticks",
        "3 created, 0 unchanged",
    ]
    edited = list(WebSocketTrigger.objects.filter(workspace=staging).values_list("edited_at", flat=True))
    assert run("importtriggers", "staging", str(tmp_path / "t.yaml")) == "no changes (3 unchanged)\n"
    assert list(WebSocketTrigger.objects.filter(workspace=staging).values_list("edited_at", flat=True)) == edited


def test_import_prints_changed_fields(workspace, tmp_path):
    """An edited file prints each changed trigger with the fields that differ."""
    populate(workspace)
    text = run("exporttriggers", "acme", "--format", "json")
    document = json.loads(text)
    document["websocket_triggers"][1]["url"] = "ws://example.org/other"
    document["websocket_triggers"][1]["subprotocols"] = []
    (tmp_path / "t.json").write_text(json.dumps(document))
    assert run("importtriggers", "acme", str(tmp_path / "t.json")).splitlines() == [
        "~ changed trigger f/demo/ticks: url, subprotocols",
        "1 changed, 2 unchanged",
    ]


def test_dry_run_prints_the_diff_and_writes_nothing(workspace, staging, tmp_path):
    """--dry-run prints what would change and leaves the workspace as it was."""
    populate(workspace)
    (tmp_path / "t.yaml").write_text(run("exporttriggers", "acme"))
    out = run("importtriggers", "staging", str(tmp_path / "t.yaml"), "--dry-run")
    assert out.splitlines()[-1] == "dry run, nothing written: 3 created, 0 unchanged"
    assert not WebSocketTrigger.objects.filter(workspace=staging).exists()


def test_prune_prints_what_it_deletes(workspace, tmp_path):
    """--prune deletes the triggers the file leaves out, and says so."""
    populate(workspace)
    (tmp_path / "t.yaml").write_text(
        "version: 1\nwebsocket_triggers:\n- path: f/demo/ticks\n  url: ws://example.org/feed\n"
        "  script_path: examples/echo\n"
    )
    out = run("importtriggers", "acme", str(tmp_path / "t.yaml"), "--prune")
    assert "- deleted trigger f/demo/piped" in out.splitlines()
    assert "- deleted flow f/demo/pipeline" in out.splitlines()
    assert list(WebSocketTrigger.objects.values_list("path", flat=True)) == ["f/demo/ticks"]


def test_windmill_yaml_imports_as_is(workspace, tmp_path):
    """A Windmill trigger file as `wmill sync` writes it creates the trigger its name and fields say."""
    file = tmp_path / "f" / "feeds" / "ticks.websocket_trigger.yaml"
    file.parent.mkdir(parents=True)
    file.write_text(WINDMILL_YAML)
    assert run("importtriggers", "acme", str(file)).splitlines() == [
        "+ created trigger f/feeds/ticks",
        "1 created, 0 unchanged",
    ]
    trigger = WebSocketTrigger.objects.get(path="f/feeds/ticks")
    assert (trigger.script_path, trigger.url, trigger.enabled) == (
        "f/feeds/on_tick",
        "wss://stream.example.org/feed",
        True,
    )
    assert trigger.filters == [{"key": "type", "value": "tick"}]
    assert trigger.initial_messages == [{"raw_message": '{"op": "subscribe", "channel": "ticks"}'}]
    assert (trigger.error_handler_path, trigger.error_handler_args) == ("f/feeds/on_error", {"channel": "#alerts"})
    assert trigger.retry == {"max_attempts": 3, "delay_secs": 5, "multiplier": 1}
    assert trigger.can_return_message is True
    assert run("importtriggers", "acme", str(file)) == "no changes (1 unchanged)\n"


def test_a_wmill_sync_tree_imports_every_trigger_file(workspace, tmp_path):
    """A directory imports each *.websocket_trigger.yaml under it, its path from its place in the tree."""
    for path in ("f/feeds/ticks", "u/alice/quotes"):
        file = tmp_path / f"{path}.websocket_trigger.yaml"
        file.parent.mkdir(parents=True)
        file.write_text(WINDMILL_YAML.replace("mode: enabled", "mode: disabled"))
    assert run("importtriggers", "acme", str(tmp_path)).splitlines() == [
        "+ created trigger f/feeds/ticks",
        "+ created trigger u/alice/quotes",
        "2 created, 0 unchanged",
    ]
    assert not WebSocketTrigger.objects.filter(enabled=True).exists()


def test_every_problem_is_listed_and_nothing_is_written(workspace, tmp_path):
    """Invalid values and unknown fields of several entries are listed together; nothing is imported."""
    (tmp_path / "t.yaml").write_text(
        "version: 1\n"
        "websocket_triggers:\n"
        "- {path: f/a/good, url: 'ws://example.org/', script_path: examples/echo}\n"
        "- {path: f/a/bad, url: 'http://example.org/', script_path: examples/echo, colour: red}\n"
        "- {path: f/a/worse, url: 'ws://example.org/', script_path: examples/echo, retry: {max_attempts: 0}}\n"
    )
    with pytest.raises(CommandError) as caught:
        run("importtriggers", "acme", str(tmp_path / "t.yaml"))
    assert str(caught.value).splitlines() == [
        f"nothing imported: 3 problem(s) in {tmp_path / 't.yaml'}",
        "  trigger f/a/bad: colour: unknown field",
        "  trigger f/a/bad: url: the scheme must be ws or wss, not 'http'",
        "  trigger f/a/worse: retry: max_attempts must be an integer from 1 to 100",
    ]
    assert not WebSocketTrigger.objects.exists()


def test_problems_exit_with_a_non_zero_status(workspace, tmp_path, capsys):
    """From the command line, a refused file exits with status 1 and the problems on stderr."""
    (tmp_path / "t.yaml").write_text("version: 1\nwebsocket_triggers: [{path: f/a/x}]\n")
    with pytest.raises(SystemExit) as caught:
        execute_from_command_line(["manage.py", "importtriggers", "acme", str(tmp_path / "t.yaml")])
    assert caught.value.code == 1
    assert "trigger f/a/x: url: required" in capsys.readouterr().err


def test_bad_yaml_is_refused_with_its_line(workspace, tmp_path):
    """A YAML syntax error names the line."""
    (tmp_path / "t.yaml").write_text("version: 1\nwebsocket_triggers:\n- path: 'f/a/x\n")
    with pytest.raises(CommandError, match=r"not valid YAML: .*\(line \d+, column \d+\)"):
        run("importtriggers", "acme", str(tmp_path / "t.yaml"))


def test_an_unreadable_file_is_refused(workspace, tmp_path):
    """A file that can't be read is a CommandError saying why."""
    with pytest.raises(CommandError, match="can't read .*nope.yaml"):
        run("importtriggers", "acme", str(tmp_path / "nope.yaml"))


def test_an_unknown_workspace_is_refused(db, tmp_path):
    """An unknown workspace is a CommandError naming it."""
    with pytest.raises(CommandError, match="no workspace 'nope'"):
        run("importtriggers", "nope", str(tmp_path / "t.yaml"))


def test_imported_trigger_runs_and_reimporting_keeps_its_connection(
    e2e_workspace, ws_server, celery_worker, listener, tmp_path
):
    """End to end: an imported trigger runs jobs; the same file again keeps its connection, an edit reconnects it."""
    file = tmp_path / "t.yaml"
    file.write_text(
        f"version: 1\nwebsocket_triggers:\n- {{path: f/e2e/feed, url: '{ws_server.url}', script_path: examples/echo}}\n"
    )
    run("importtriggers", "e2e", str(file))
    wait_connected(ws_server)
    ws_server.send_all("hello")
    [job] = wait_jobs(count=1, status=Job.Status.SUCCESS)
    assert job.result == "hello"

    assert run("importtriggers", "e2e", str(file)) == "no changes (1 unchanged)\n"
    time.sleep(1.5)  # five of the listener's reconcile intervals (0.3 s in tests)
    assert (ws_server.connects, ws_server.open_connections) == (1, 1)

    file.write_text(
        file.read_text().replace("script_path: examples/echo}", "script_path: examples/echo, headers: {X-Env: prod}}")
    )
    assert "~ changed trigger f/e2e/feed: headers" in run("importtriggers", "e2e", str(file))
    wait_for(lambda: ws_server.connects == 2 and ws_server.open_connections == 1, timeout=10, message="a reconnect")
