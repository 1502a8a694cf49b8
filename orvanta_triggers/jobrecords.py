"""Job rows as a worker writes them, through database faults.

While the database is unreachable (OperationalError, InterfaceError) a write is
retried with backoff for up to ORVANTA_DATABASE_OUTAGE_SECS, the message held
unacknowledged meanwhile; past that the message goes back to the broker
(DatabaseUnavailable). A row the database refuses fails that one job, saying why.
Rows are written in one upsert per answer.
"""

import contextlib
import logging
import time

from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, connection

from orvanta_triggers import conf, metrics, selectors, services
from orvanta_triggers.models import Job

logger = logging.getLogger(__name__)

DATABASE_DOWN = (OperationalError, InterfaceError)
# What a write of a value the database can't hold raises (DATABASE_DOWN excepted:
# with_database turns those into DatabaseUnavailable).
ROW_REFUSED = (DatabaseError, ValueError, TypeError, RecursionError)


class DatabaseUnavailable(Exception):
    """The database stayed unreachable for ORVANTA_DATABASE_OUTAGE_SECS."""


def with_database(operation, *, what):
    """operation(), retried with backoff while the database is unreachable, for up to
    ORVANTA_DATABASE_OUTAGE_SECS; then DatabaseUnavailable."""
    window = conf.database_outage_secs()
    deadline = time.monotonic() + window
    delay = 0.1
    while True:
        try:
            return operation()
        except DATABASE_DOWN as exc:
            with contextlib.suppress(DatabaseError):
                connection.close()
            if time.monotonic() + delay > deadline:
                raise DatabaseUnavailable(f"the database was unreachable for {window:g}s while {what}: {exc}") from exc
            logger.warning("database unreachable while %s (%s); retrying in %.1fs", what, exc, delay)
            metrics.DATABASE_RETRIES.inc()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _write_rows(runs, status, overwrite):
    """One upsert for the rows of `runs` (an insert of those not written yet, unless
    `overwrite`); jobs of a workspace deleted meanwhile are dropped, with a line in
    the log."""
    rows = {run.job_id: run.row(status) for run in runs}
    try:
        services.record_jobs(jobs=rows, overwrite=overwrite)
    except IntegrityError:
        live = selectors.existing_workspace_ids({run.spec["workspace_id"] for run in runs})
        kept = [run for run in runs if run.spec["workspace_id"] in live]
        if len(kept) == len(runs):
            raise
        for run in runs:
            if run not in kept:
                logger.info(
                    "trigger %s: job %s dropped: its workspace was deleted", run.spec["trigger_path"], run.job_id
                )
        if kept:
            _write_rows(kept, status, overwrite)


def record(runs, *, status=None, overwrite=True):
    """Write the rows of `runs` (their outcome, or `status` for those not run yet;
    without `overwrite`, only rows not written yet). A row the database refuses fails
    that job alone: it is recorded as a failure that says why."""
    try:
        with_database(lambda: _write_rows(runs, status, overwrite), what=f"recording {len(runs)} jobs")
        return
    except ROW_REFUSED as exc:
        if len(runs) > 1:
            for run in runs:
                record([run], status=status, overwrite=overwrite)
            return
        refused = exc
    run = runs[0]
    path = run.spec["trigger_path"]
    logger.error("trigger %s: job %s: the database refused its row: %s", path, run.job_id, refused)
    run.status, run.result, run.retry_in = Job.Status.FAILURE, None, None
    run.error = {"name": "UnstorableOutcome", "message": f"the database refused the job's row: {refused}", "stack": ""}
    try:
        with_database(lambda: _write_rows(runs, None, overwrite), what="recording a refused job")
    except ROW_REFUSED as exc:
        logger.error("trigger %s: job %s has no row: the database refused its failure too: %s", path, run.job_id, exc)
