"""Selectors the listener polls (orvanta_triggers/selectors.py): the digest of the
listenable triggers' versions sees what the cheap fingerprint can't."""

import datetime

from orvanta_triggers import selectors, services
from orvanta_triggers.models import WebSocketTrigger


def two_triggers(workspace):
    older = services.create_trigger(
        workspace=workspace, path="f/a/older", url="ws://127.0.0.1:9/a", script_path="examples/echo"
    )
    services.create_trigger(
        workspace=workspace, path="f/a/newer", url="ws://127.0.0.1:9/b", script_path="examples/echo"
    )
    return older


def test_versions_digest_is_stable_while_nothing_changes(workspace):
    """Two reads of an unchanged trigger set give the same digest."""
    two_triggers(workspace)
    assert selectors.listenable_trigger_versions_digest() == selectors.listenable_trigger_versions_digest()


def test_versions_digest_moves_with_an_edit_the_fingerprint_cant_see(workspace):
    """An edited_at moved backwards (count, latest edit and ids unchanged) leaves the
    fingerprint as it was and changes the digest."""
    older = two_triggers(workspace)
    fingerprint, digest = selectors.listenable_triggers_fingerprint(), selectors.listenable_trigger_versions_digest()
    WebSocketTrigger.objects.filter(pk=older.pk).update(edited_at=older.edited_at - datetime.timedelta(seconds=1))
    assert selectors.listenable_triggers_fingerprint() == fingerprint
    assert selectors.listenable_trigger_versions_digest() != digest
