"""Running a message's jobs as a worker would, without the broker (unit tests of the
task bodies)."""

import uuid

from orvanta_triggers import jobrunner


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
