"""Services the listener writes through: trigger statuses in batches."""

import datetime

from django.utils import timezone

from orvanta_triggers import services
from orvanta_triggers.models import WebSocketTrigger


def make_triggers(workspace, count, **fields):
    return [
        services.create_trigger(
            workspace=workspace, path=f"f/test/t{i}", url="ws://example.org/feed", script_path="examples/echo", **fields
        )
        for i in range(count)
    ]


def test_statuses_of_many_triggers_take_one_update(workspace, django_assert_num_queries):
    """Triggers writing the same fields, with values of their own, are written in one UPDATE."""
    triggers = make_triggers(workspace, 3)
    at = timezone.now()
    statuses = {
        t.id: {"status": "connected", "error": None, "last_connected_at": at + datetime.timedelta(seconds=i)}
        for i, t in enumerate(triggers)
    }
    with django_assert_num_queries(1):
        assert services.record_trigger_statuses(statuses) == 3
    for i, trigger in enumerate(triggers):
        trigger.refresh_from_db()
        assert (trigger.status, trigger.last_connected_at) == ("connected", at + datetime.timedelta(seconds=i))


def test_statuses_leave_disabled_triggers_alone(workspace):
    """A status written in a batch never lands on a trigger disabled meanwhile."""
    on, off = make_triggers(workspace, 2)
    WebSocketTrigger.objects.filter(pk=off.pk).update(mode="disabled", enabled=False, status="disabled")
    assert services.record_trigger_statuses({on.id: {"status": "connected"}, off.id: {"status": "connected"}}) == 1
    assert WebSocketTrigger.objects.get(pk=off.pk).status == "disabled"


def test_statuses_writing_different_fields_are_all_written(workspace):
    """Triggers writing different sets of fields in one batch each get their own."""
    a, b = make_triggers(workspace, 2)
    services.record_trigger_statuses({a.id: {"status": "error", "error": "refused"}, b.id: {"status": "connected"}})
    assert WebSocketTrigger.objects.get(pk=a.pk).error == "refused"
    assert WebSocketTrigger.objects.get(pk=b.pk).status == "connected"
