"""Running a message's jobs as a worker would, without the broker (unit tests of the
task bodies), and job rows as workers write them."""

import uuid

from django.utils import timezone

from orvanta_triggers import jobrunner, services
from orvanta_triggers.models import Job


class Requeue:
    """Stands in for the Celery task's re-scheduling; records (countdown, attempt)."""

    def __init__(self):
        self.calls = []

    def __call__(self, run, countdown):
        self.calls.append((countdown, run.attempt + 1))


def refuse_hand_off(runs):
    """Stands in for the broker when a batch would hand jobs off: they run here."""
    raise RuntimeError("no broker in these tests")


def run_jobs(specs, jobs, *, requeue=None, redelivered=False, hand_off=refuse_hand_off, queue_is_empty=lambda: True):
    """Run a message's jobs as a worker would, without the broker; {status: count}."""
    return jobrunner.run_jobs(
        specs=specs,
        jobs=jobs,
        requeue=requeue or Requeue(),
        hand_off=hand_off,
        queue_is_empty=queue_is_empty,
        redelivered=redelivered,
        batch_id=str(uuid.uuid4()),
    )


def record_job(workspace, *, msg="hi", status=Job.Status.SUCCESS, **fields):
    """A job row written the way workers write them (services.record_jobs): a
    finished run of examples/echo for trigger f/test/feed on `msg`, unless `fields`
    say otherwise."""
    job_id = str(uuid.uuid4())
    values = dict(
        workspace_id=workspace.id,
        trigger_path="f/test/feed",
        script_path="examples/echo",
        is_flow=False,
        args={"msg": msg},
        attempt=1,
        status=status,
        started_at=timezone.now(),
        finished_at=None if status in (Job.Status.RUNNING, Job.Status.SUSPENDED) else timezone.now(),
    )
    if status == Job.Status.SUSPENDED:
        values.update(started_at=None, event={"msg_type": "text", "url": "ws://example.org/feed"})
    services.record_jobs(jobs={job_id: {**values, **fields}})
    return Job.objects.get(pk=job_id)
