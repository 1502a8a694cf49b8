"""exporttriggers WS [--path-prefix P] [--format yaml|json]."""

import json
from io import StringIO

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from orvanta_triggers import services


def export(*args):
    out = StringIO()
    call_command("exporttriggers", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def feed(workspace):
    return services.create_trigger(
        workspace=workspace,
        path="f/demo/ticks",
        url="ws://example.org/feed",
        script_path="examples/echo",
        headers={"Authorization": "Bearer s3cret"},
    )


def test_export_writes_yaml_by_default(feed):
    """The default output is YAML: a comment saying it holds secrets, then the document."""
    text = export("acme")
    assert text.startswith("# Orvanta WebSocket triggers and flows") and "Holds secrets" in text
    document = yaml.safe_load(text)
    assert document["version"] == 1 and document["flows"] == []
    assert [t["path"] for t in document["websocket_triggers"]] == ["f/demo/ticks"]


def test_export_includes_secrets_as_stored(feed):
    """Headers are exported as stored (it is an operator command), not redacted."""
    [trigger] = yaml.safe_load(export("acme"))["websocket_triggers"]
    assert trigger["headers"] == {"Authorization": "Bearer s3cret"}


def test_export_has_no_status(feed):
    """Status, errors, listener and timestamps are not in the file."""
    [trigger] = json.loads(export("acme", "--format", "json"))["websocket_triggers"]
    assert not {"status", "error", "listener_id", "last_connected_at", "edited_at", "created_at"} & set(trigger)


def test_export_json(feed):
    """--format json writes the same document as JSON."""
    assert json.loads(export("acme", "--format", "json")) == yaml.safe_load(export("acme"))


def test_export_path_prefix_is_recorded(feed):
    """--path-prefix keeps the triggers under it and records the prefix in the file."""
    document = yaml.safe_load(export("acme", "--path-prefix", "f/other/"))
    assert document["path_prefix"] == "f/other/" and document["websocket_triggers"] == []


def test_export_twice_gives_the_same_bytes(feed):
    """Two exports of an unchanged workspace are byte-identical."""
    assert export("acme") == export("acme")


def test_export_unknown_workspace_is_an_error(db):
    """An unknown workspace is a CommandError naming it."""
    with pytest.raises(CommandError, match="no workspace 'nope'"):
        export("nope")
