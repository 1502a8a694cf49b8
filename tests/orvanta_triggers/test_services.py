"""Services the listener and workers write through: trigger statuses in batches, job
rows in one statement."""

import datetime
import uuid
from unittest import mock

import pytest
from django.db import IntegrityError, connection
from django.utils import timezone

from orvanta_triggers import services
from orvanta_triggers.models import Job, WebSocketTrigger


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


def job_row(workspace, **fields):
    return {"workspace_id": workspace.id, "script_path": "examples/echo", "status": "success", **fields}


def test_a_job_row_is_written_without_a_transaction_of_its_own(transactional_db, workspace):
    """Outside a transaction, a worker's job row is one statement: no BEGIN and COMMIT
    around it, and it reads back exactly (U+0000 included)."""
    job_id = str(uuid.uuid4())
    with mock.patch.object(connection, "commit", wraps=connection.commit) as commit:
        services.record_jobs(jobs={job_id: job_row(workspace, args={"msg": "a\x00b"}, result={"n": "\x00"})})
    assert commit.call_count == 0
    job = Job.objects.get(id=job_id)
    assert (job.args, job.result, job.status) == ({"msg": "a\x00b"}, {"n": "\x00"}, "success")


def test_an_overwrite_updates_the_row_in_place(transactional_db, workspace):
    """Writing a row again (a retry, a redelivery) replaces the fields written."""
    job_id = str(uuid.uuid4())
    services.record_jobs(jobs={job_id: job_row(workspace, status="running", attempt=1)})
    services.record_jobs(jobs={job_id: job_row(workspace, status="failure", attempt=2)})
    assert Job.objects.filter(id=job_id).values_list("status", "attempt").get() == ("failure", 2)


def test_without_overwrite_a_written_row_stays(transactional_db, workspace):
    """overwrite=False writes rows not written yet and leaves the others as they are."""
    kept, new = str(uuid.uuid4()), str(uuid.uuid4())
    services.record_jobs(jobs={kept: job_row(workspace, status="success")})
    services.record_jobs(
        jobs={kept: job_row(workspace, status="queued"), new: job_row(workspace, status="queued")}, overwrite=False
    )
    assert dict(Job.objects.values_list("id", "status")) == {uuid.UUID(kept): "success", uuid.UUID(new): "queued"}


def test_a_row_of_a_deleted_workspace_fails_alone(transactional_db, workspace):
    """A row whose workspace is gone raises IntegrityError and leaves the connection
    usable for the next write (no transaction left broken)."""
    gone = services.create_workspace(slug="gone")
    gone_id = gone.id
    gone.delete()
    with pytest.raises(IntegrityError):
        services.record_jobs(jobs={str(uuid.uuid4()): {**job_row(workspace), "workspace_id": gone_id}})
    job_id = str(uuid.uuid4())
    services.record_jobs(jobs={job_id: job_row(workspace)})
    assert Job.objects.filter(id=job_id).exists()


@pytest.mark.parametrize("transactional", [False, True], ids=["in a transaction", "autocommit"])
def test_rows_beyond_one_statement_are_all_written(request, transactional):
    """More rows than one statement can carry (SQLite's parameter limit) are written
    all, in a transaction or not."""
    request.getfixturevalue("transactional_db" if transactional else "db")
    workspace = services.create_workspace(slug="many")
    jobs = {str(uuid.uuid4()): job_row(workspace, args={"msg": str(i)}) for i in range(500)}
    services.record_jobs(jobs=jobs)
    assert Job.objects.filter(workspace=workspace).count() == 500
