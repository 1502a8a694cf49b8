"""A worker's sweep of abandoned jobs (orvanta_triggers.sweeper): rows left `running`
by a dead worker end, on a thread of the worker's main process."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from orvanta_triggers import services
from orvanta_triggers.models import Job
from orvanta_triggers.sweeper import AbandonedJobSweeper, sweep_abandoned_jobs
from tests.support.wsserver import wait_for

# The sweeper thread has its own database connection: what tests create is committed.
pytestmark = pytest.mark.django_db(transaction=True)


def running_job(workspace, *, started_ago):
    job_id = str(uuid.uuid4())
    services.record_jobs(
        jobs={
            job_id: dict(
                workspace_id=workspace.id,
                script_path="examples/echo",
                is_flow=False,
                args={},
                attempt=1,
                status=Job.Status.RUNNING,
                started_at=timezone.now() - started_ago,
            )
        }
    )
    return job_id


def test_sweep_ends_only_jobs_running_past_any_live_workers_limit(workspace, settings):
    """A job running for longer than twice the time limit plus the redelivery margin is failed (JobLost); a recent one is not."""
    settings.ORVANTA_JOB_TIMEOUT_SECS = 60
    old = running_job(workspace, started_ago=timedelta(minutes=5))
    recent = running_job(workspace, started_ago=timedelta(minutes=3))
    assert sweep_abandoned_jobs() == 1
    assert Job.objects.get(pk=old).error["name"] == "JobLost"
    assert Job.objects.get(pk=recent).status == "running"


def test_sweeper_thread_sweeps_on_its_interval(workspace, settings):
    """The worker's sweeper thread runs the sweep every interval, and stops when told."""
    settings.ORVANTA_JOB_TIMEOUT_SECS = 60
    old = running_job(workspace, started_ago=timedelta(hours=1))
    sweeper = AbandonedJobSweeper(interval_secs=0.1).start()
    try:
        wait_for(lambda: Job.objects.get(pk=old).status == "failure", timeout=10, message="the sweep")
    finally:
        sweeper.stop()
