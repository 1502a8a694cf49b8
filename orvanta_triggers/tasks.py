"""Celery entry points. They take ids and plain JSON and delegate to execution."""

import functools
import logging

import redis
from celery import current_app, shared_task
from celery.exceptions import Reject
from django.utils.dateparse import parse_datetime

from orvanta_triggers import bus, conf, execution, jobanswers, jobrecords, jobrunner, wire
from orvanta_triggers.models import Job
from orvanta_triggers.wire import NOTIFY_CONNECTION_FAILURE, RUN_RUNNABLE, RUN_TRIGGER_JOB, RUN_TRIGGER_JOBS

logger = logging.getLogger(__name__)

REPLY_TTL_SECS = 300


def _requeue(run, countdown):
    """Schedule the next attempt of a failed job, on its own."""
    run_trigger_job.apply_async(
        kwargs=dict(
            job_id=run.job_id, spec=run.spec, msg=run.msg, msg_type=run.msg_type, url=run.url, attempt=run.attempt + 1
        ),
        task_id=run.job_id,
        countdown=countdown,
        **wire.reprs(job_id=run.job_id),
    )


def _hand_off(message_id, runs):
    """Publish `runs` (jobs of message `message_id`) as a message of their own."""
    run_trigger_jobs.apply_async(
        kwargs=wire.batch({run.spec["trigger_id"]: run.spec for run in runs}, [run.wire() for run in runs]),
        time_limit=conf.message_time_limit(len(runs)),
        retry=False,
        **wire.reprs(jobs=len(runs)),
    )
    try:
        bus.remember_handed_off(message_id, [run.job_id for run in runs])
    except redis.RedisError as exc:
        logger.warning("message %s: could not note %s handed-off jobs (%s)", message_id, len(runs), exc)


def _queue_is_empty():
    """No message waits in the broker's queue (the Redis at REDIS_URL)."""
    return bus.client().llen(current_app.conf.task_default_queue) == 0


def _run_jobs(task, *, specs, jobs, resent):
    """Run a message's jobs; a message whose jobs can't be recorded goes back to the
    broker rather than being acknowledged."""
    message_id = task.request.id
    redelivered = resent or bool((task.request.delivery_info or {}).get("redelivered"))
    try:
        statuses = jobrunner.run_jobs(
            specs=specs,
            jobs=jobs,
            requeue=_requeue,
            hand_off=functools.partial(_hand_off, message_id),
            queue_is_empty=_queue_is_empty,
            redelivered=redelivered,
            batch_id=message_id,
        )
    except jobrecords.DatabaseUnavailable as exc:
        logger.error("message %s (%s jobs): %s; giving it back to the broker", message_id, len(jobs), exc)
        raise Reject(str(exc), requeue=True) from exc
    return statuses


@shared_task(name=RUN_TRIGGER_JOB, bind=True)
def run_trigger_job(self, job_id, spec, msg, msg_type, url, attempt=1):
    """One job: a retry, a replay, or what plain Celery would do per frame."""
    return _run_jobs(
        self,
        specs={str(spec["trigger_id"]): spec},
        jobs=[wire.encode_job(job_id, spec["trigger_id"], msg, msg_type, url, attempt)],
        resent=False,
    )


@shared_task(name=RUN_TRIGGER_JOBS, bind=True)
def run_trigger_jobs(self, specs, jobs, resent=False):
    """The jobs a listener coalesced into one message (see listener.dispatch), or
    that a slow message handed off (see jobrunner)."""
    return _run_jobs(self, specs=specs, jobs=jobs, resent=resent)


@shared_task(name=RUN_RUNNABLE)
def run_runnable(request_id, workspace_id, path, is_flow, args, timeout_secs, kind=None, trigger_path=""):
    """Run a runnable for a caller that waits for it (the listener: URL, initial
    message; test connection: URL) and push the outcome to the reply list it waits on;
    then record the run as job `request_id` of `kind` (Job.Kind; a message from a
    listener older than kinds has none: a URL runnable, the likeliest). Routed to a
    queue of its own (celeryconfig.celery_queues); runs at most `timeout_secs`, as long as
    the caller waits (prefork and solo pools: workerprocess.time_limit; the caller's hard
    limit kills a runnable that ignores it)."""
    run = execution.JobRun(
        job_id=request_id,
        spec={
            "workspace_id": workspace_id,
            "trigger_path": trigger_path,
            "script_path": path,
            "is_flow": is_flow,
        },
        msg=None,
        msg_type=None,
        url=None,
        kind=kind or Job.Kind.URL_RUNNABLE,
        args=args,
    )
    jobanswers.run_recorded(
        run,
        lambda: execution.run_runnable(workspace_id=workspace_id, path=path, is_flow=is_flow, args=args),
        timeout_secs=timeout_secs,
        limit="the time its caller waits",
        reply=lambda: _reply(request_id, run),
    )
    if run.status == Job.Status.FAILURE:
        logger.info(
            "runnable %s failed (request %s): %s: %s", path, request_id, run.error["name"], run.error["message"]
        )


def _reply(request_id, run):
    """Push the outcome of `run` to the reply list its caller waits on."""
    if run.status == Job.Status.SUCCESS:
        reply = wire.encode_reply(result=run.result)
    else:
        reply = wire.encode_reply(error=run.error)
    key = bus.reply_key(request_id)
    pipe = bus.client().pipeline()
    pipe.rpush(key, reply)
    pipe.expire(key, REPLY_TTL_SECS)
    pipe.execute()


@shared_task(name=NOTIFY_CONNECTION_FAILURE)
def notify_connection_failure(spec, reason, started_at, failed_at):
    """A trigger has been failing to connect for a while: tell its error handler."""
    jobanswers.handle_failure(
        spec=spec,
        error={"name": "ConnectionError", "message": reason, "stack": ""},
        job_id=None,
        started_at=parse_datetime(started_at),
        failed_at=parse_datetime(failed_at),
    )
