"""A worker's periodic duty, on a thread of its main process: no job row stays
`running` forever. The broker runs again a job whose worker died (acks late, reject
on worker lost, heldmessages); a row still `running` long past the job's time limit
plus that redelivery belongs to a job nobody will finish. Every worker sweeps (one
idempotent UPDATE a minute), so there is no extra process, such as celery beat, to
deploy and keep alive."""

import logging
from datetime import timedelta

from django.db import DatabaseError, connection
from django.utils import timezone

from orvanta_triggers import conf, services
from orvanta_triggers.periodic import PeriodicThread

logger = logging.getLogger(__name__)

SWEEP_INTERVAL_SECS = 60


def sweep_abandoned_jobs():
    """Mark failed the jobs `running` for longer than any live worker would take;
    how many."""
    horizon = timezone.now() - timedelta(seconds=conf.job_timeout_secs() * 2 + 120)
    swept = services.fail_abandoned_jobs(running_since_before=horizon)
    if swept:
        logger.warning("marked %s abandoned running jobs as failed", swept)
    return swept


class AbandonedJobSweeper(PeriodicThread):
    """The thread that runs sweep_abandoned_jobs every SWEEP_INTERVAL_SECS."""

    def __init__(self, interval_secs=SWEEP_INTERVAL_SECS):
        super().__init__(name="abandoned-job-sweeper", interval_secs=interval_secs)

    def tick(self, session):
        try:
            sweep_abandoned_jobs()
        except DatabaseError as exc:
            logger.warning("could not sweep abandoned jobs: %s", exc)
        finally:
            # This thread's own connection: not kept open between sweeps.
            connection.close()
