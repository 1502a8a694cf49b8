"""Suspended jobs through the API, where no worker is needed: discard, refusals, and
a broker that refuses a resume (tests/listener/test_suspended_mode.py runs them)."""

import pytest
from celery import Celery
from kombu.exceptions import OperationalError as BrokerError

from orvanta_triggers import services
from orvanta_triggers.models import Job
from tests.conftest import ROLES
from tests.listener.helpers import fail_once
from tests.orvanta_triggers.helpers import record_job

PATH = "f/demo/ticks"
TRIGGER = f"/api/w/acme/websocket_triggers/{PATH}"
JOBS = "/api/w/acme/jobs"


@pytest.fixture
def trigger(workspace):
    return services.create_trigger(
        workspace=workspace, path=PATH, url="ws://example.org/feed", script_path="examples/echo", mode="suspended"
    )


def suspended_job(workspace, trigger_path=PATH):
    return record_job(workspace, status=Job.Status.SUSPENDED, trigger_path=trigger_path)


def statuses():
    return sorted(Job.objects.values_list("status", flat=True))


def test_discard_one_job(api, workspace, trigger):
    """jobs/<id>/discard/ answers the job JSON, `discarded`; the trigger's other suspended jobs stay."""
    first, _ = suspended_job(workspace), suspended_job(workspace)
    body = api.post(f"{JOBS}/{first.id}/discard/").json()
    assert (body["id"], body["status"]) == (str(first.id), "discarded")
    assert statuses() == ["discarded", "suspended"]


def test_discard_jobs_counts_only_that_triggers_suspended_jobs(api, workspace, trigger):
    """discard_jobs/ discards the trigger's suspended jobs, no other trigger's."""
    suspended_job(workspace)
    suspended_job(workspace)
    suspended_job(workspace, trigger_path="f/demo/other")
    assert api.post(f"{TRIGGER}/discard_jobs/").json() == {"discarded": 2}
    assert statuses() == ["discarded", "discarded", "suspended"]


def test_resume_of_a_job_that_is_not_suspended_is_a_409(api, workspace, trigger):
    """A finished job can't be resumed or discarded: 409 saying its status."""
    job = suspended_job(workspace)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCESS)
    for action in ("resume", "discard"):
        response = api.post(f"{JOBS}/{job.id}/{action}/")
        assert response.status_code == 409 and "success" in response.json()["detail"]


def test_resume_of_a_job_whose_trigger_is_gone_is_a_409(api, workspace, trigger):
    """A suspended job of a deleted trigger can't run (no configuration): 409 says so; it can be discarded."""
    job = suspended_job(workspace)
    services.delete_trigger(trigger=trigger)
    response = api.post(f"{JOBS}/{job.id}/resume/")
    assert response.status_code == 409 and "no longer exists" in response.json()["detail"]
    assert api.post(f"{JOBS}/{job.id}/discard/").json()["status"] == "discarded"


def test_viewer_can_neither_resume_nor_discard(workspace, trigger, member_client):
    """Resuming and discarding are writes: a viewer gets 403 and the jobs stay suspended."""
    job = suspended_job(workspace)
    viewer = member_client(ROLES.VIEWER)
    for url in (f"{JOBS}/{job.id}/resume/", f"{JOBS}/{job.id}/discard/", f"{TRIGGER}/resume_jobs/"):
        assert viewer.post(url).status_code == 403
    assert statuses() == ["suspended"]


def test_broker_refusing_a_resume_leaves_the_jobs_suspended(api, workspace, trigger, monkeypatch):
    """When the broker refuses the resumed jobs the answer is 503 and every job is still suspended (none lost)."""
    suspended_job(workspace)
    suspended_job(workspace)
    fail_once(monkeypatch, Celery, "send_task", BrokerError("connection refused"))
    response = api.post(f"{TRIGGER}/resume_jobs/")
    assert response.status_code == 503 and "2 still suspended" in response.json()["detail"]
    assert statuses() == ["suspended", "suspended"]


def test_list_filters_by_kind(api, workspace, trigger):
    """?kind= keeps the jobs of that kind."""
    suspended_job(workspace)
    assert api.get(f"{JOBS}/", {"kind": "trigger"}).json()["count"] == 1
    assert api.get(f"{JOBS}/", {"kind": "error_handler"}).json()["count"] == 0
