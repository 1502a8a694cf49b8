"""Answering the jobs a worker ran: their rows, their results back to the socket,
retries, metrics and the monitor; error handlers of final failures; a suspended
trigger's jobs, recorded unrun; and user code run as a job of its own (run_recorded).
"""

import logging
import time
import uuid

import redis
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from orvanta_triggers import conf, metrics
from orvanta_triggers.execution import JobRun, JobTimeout, error_handler_call, error_payload, json_checked, run_script
from orvanta_triggers.jobrecords import DatabaseUnavailable, record, with_database
from orvanta_triggers.models import Job
from orvanta_triggers.monitor import shorten
from orvanta_triggers.wire import result_frame
from orvanta_triggers.workerprocess import outbox, time_limit, worker_monitor

logger = logging.getLogger(__name__)


def _show(run):
    """Count a job that ended (or was suspended) and show it on the live monitor."""
    metrics.JOBS_FINISHED.labels(run.status).inc()
    if run.duration is not None:
        metrics.JOB_DURATION.observe(run.duration)
    worker_monitor().event(
        run.spec["workspace"],
        {
            "type": "job",
            "trigger_path": run.spec["trigger_path"],
            "job_id": run.job_id,
            "status": run.status,
            "error": f"{run.error['name']}: {shorten(run.error['message'])}" if run.error else None,
        },
    )


def publish_early(run, result):
    outbox().publish([(run.spec["trigger_id"], run.job_id, result_frame(result))])


def _result_frame(run):
    """(trigger id, job id, frame) to send back on the socket for a job that ended, or
    None: a success's non-null result (unless a flow sent it early), a failure's error
    with can_return_error_result."""
    spec = run.spec
    if not spec["can_return_message"]:
        return None
    if run.status == Job.Status.SUCCESS:
        if run.result is not None and not run.early_result_sent:
            return (spec["trigger_id"], run.job_id, result_frame(run.result))
    elif run.status == Job.Status.FAILURE and spec["can_return_error_result"]:
        return (spec["trigger_id"], run.job_id, result_frame({"error": run.error}))
    return None


def answer(runs, *, requeue):
    """Everything after jobs ran, error handlers aside: their results back to the
    socket, their rows, retries scheduled (`requeue(run, countdown)`), metrics,
    monitor. Results go first: the answer on the socket does not wait for the row's
    write (a frame's round trip is what users wait on), while the message is still
    acknowledged only once every row is written."""
    frames = [frame for frame in map(_result_frame, runs) if frame is not None]
    if frames:
        outbox().publish(frames)
    record(runs)
    for run in runs:
        spec = run.spec
        if run.status == Job.Status.QUEUED:
            logger.info(
                "trigger %s: job %s attempt %s failed (%s: %s); retrying in %ss",
                spec["trigger_path"],
                run.job_id,
                run.attempt,
                run.error["name"],
                run.error["message"],
                run.retry_in,
            )
            try:
                requeue(run, run.retry_in)
            except (BrokerError, redis.RedisError, OSError) as exc:
                # The row says queued; with no retry coming it must end.
                logger.error(
                    "trigger %s: job %s: its retry could not be scheduled: %s", spec["trigger_path"], run.job_id, exc
                )
                run.status, run.retry_in = Job.Status.FAILURE, None
                run.error = {**run.error, "message": f"{run.error['message']} (retry not scheduled: {exc})"}
                record([run])
                frame = _result_frame(run)
                if frame is not None:
                    outbox().publish([frame])
            else:
                metrics.JOBS_FINISHED.labels("retried").inc()
                continue
        _show(run)


def run_recorded(run, call, *, timeout_secs, limit="ORVANTA_JOB_TIMEOUT_SECS", reply=None):
    """Run user code that is not a trigger's message (`call()`, for at most
    `timeout_secs`) as the job `run`, whose `args` are set; then `reply()`, if given
    (a caller waits for the outcome); then its row, saying what it returned or how it
    failed. The outcome is on `run` (status, result or error). A DatabaseUnavailable
    recording it is logged: the code ran, its caller goes on."""
    clock = time.monotonic()
    run.started_at = timezone.now()
    try:
        with time_limit(timeout_secs, limit=limit):
            run.result = json_checked(call(), "the result")
        run.status = Job.Status.SUCCESS
    except (Exception, JobTimeout, SystemExit) as exc:
        run.status, run.error = Job.Status.FAILURE, error_payload(exc)
    run.finished_at, run.duration = timezone.now(), time.monotonic() - clock
    try:
        if reply is not None:
            reply()
    finally:
        try:
            record([run])
        except DatabaseUnavailable as exc:
            logger.error(
                "trigger %s: %s job %s (%s) ended %s but has no row: %s",
                run.spec["trigger_path"],
                run.kind,
                run.job_id,
                run.spec["script_path"],
                run.status,
                exc,
            )


def handle_failure(*, spec, error, job_id, started_at, failed_at):
    """Run the error handler of a final failure of a job of `spec` (`job_id` None: a
    lasting connection-failure streak), if the trigger or its workspace has one, as a
    job of its own (kind error_handler, parent the failed job), within
    ORVANTA_JOB_TIMEOUT_SECS. Returns its job id, or None when there is no handler."""
    call = with_database(
        lambda: error_handler_call(spec=spec, error=error, job_id=job_id, started_at=started_at, failed_at=failed_at),
        what="finding an error handler",
    )
    if call is None:
        return None
    path, kwargs = call
    handler = JobRun(
        job_id=str(uuid.uuid4()),
        spec={**spec, "script_path": path, "is_flow": False},
        msg=None,
        msg_type=None,
        url=None,
        kind=Job.Kind.ERROR_HANDLER,
        parent_job_id=job_id,
        args=kwargs,
    )
    run_recorded(handler, lambda: run_script(path, kwargs=kwargs)[1], timeout_secs=conf.job_timeout_secs())
    if handler.status == Job.Status.FAILURE:
        logger.warning(
            "trigger %s: error handler '%s' of job %s failed (job %s): %s: %s",
            spec["trigger_path"],
            path,
            job_id,
            handler.job_id,
            handler.error["name"],
            handler.error["message"],
        )
    return handler.job_id


def call_error_handlers(runs):
    """The error handler of each job that failed for good (user code: run last)."""
    for run in runs:
        if run.status != Job.Status.FAILURE:
            continue
        logger.info(
            "trigger %s: job %s failed: %s: %s",
            run.spec["trigger_path"],
            run.job_id,
            run.error["name"],
            run.error["message"],
        )
        try:
            handle_failure(
                spec=run.spec,
                error=run.error,
                job_id=run.job_id,
                started_at=run.started_at,
                failed_at=run.finished_at,
            )
        except DatabaseUnavailable as exc:
            logger.error("trigger %s: job %s: error handler not called: %s", run.spec["trigger_path"], run.job_id, exc)


def suspend(runs):
    """Record the jobs of a suspended trigger, unrun, with what a resume needs (their
    message, its type and URL). Never over a row already written: a message carrying
    them again must not take back a resume or a discard."""
    for run in runs:
        run.status = Job.Status.SUSPENDED
    record(runs, overwrite=False)
    for run in runs:
        _show(run)
