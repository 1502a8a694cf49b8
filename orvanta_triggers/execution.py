"""What a Celery worker does for one job: record it, run the script or flow, record
the outcome, send the result back through Redis, retry, call the error handler.

Called from orvanta_triggers.tasks with plain JSON; never from the listener.
"""

import collections
import json
import logging
import threading
import time
import traceback
from dataclasses import dataclass

from django.db import IntegrityError
from django.utils import timezone

from orvanta_triggers import bus, metrics, registry, selectors, services
from orvanta_triggers.models import Job
from orvanta_triggers.monitor import MonitorPublisher, shorten

logger = logging.getLogger(__name__)


class RunnableError(Exception):
    """A runnable broke its contract (bad preprocessor return, unserializable result...)."""


def job_spec(trigger):
    """What a worker needs to run a job of `trigger`, as plain JSON (tasks never get
    model instances). Built once per trigger version by the listener."""
    return {
        "trigger_id": trigger.id,
        "trigger_path": trigger.path,
        "workspace_id": trigger.workspace_id,
        "workspace": trigger.workspace.slug,
        "script_path": trigger.script_path,
        "is_flow": trigger.is_flow,
        "can_return_message": trigger.can_return_message,
        "can_return_error_result": trigger.can_return_error_result,
        "retry": trigger.retry,
        "error_handler_path": trigger.error_handler_path,
        "error_handler_args": trigger.error_handler_args or {},
    }


def error_payload(exc):
    return {
        "name": type(exc).__name__,
        "message": str(exc),
        "stack": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }


def result_frame(result):
    """How a result travels on the socket: a string as-is, anything else as JSON."""
    return result if isinstance(result, str) else json.dumps(result)


def _json_checked(value, what):
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise RunnableError(f"{what} is not JSON serializable: {exc}") from exc
    return value


def _call_preprocessor(module, path, event):
    kwargs = module.preprocessor(event)
    if not isinstance(kwargs, dict):
        raise RunnableError(
            f"preprocessor of '{path}' returned {type(kwargs).__name__}, expected a dict of arguments for main"
        )
    return _json_checked(kwargs, "the preprocessor's result")


def run_script(path, *, event=None, kwargs=None):
    """Run a registry script. With `event` (a trigger message), its preprocessor maps
    the event to main's arguments, else main gets msg=. Returns (args, result)."""
    module = registry.load_script(path)
    if event is not None:
        if callable(getattr(module, "preprocessor", None)):
            kwargs = _call_preprocessor(module, path, event)
        else:
            kwargs = {"msg": event["msg"]}
    result = module.main(**(kwargs or {}))
    return kwargs, _json_checked(result, "the result")


def _resolve_expr(expr, context):
    root, *rest = expr.split(".")
    if root == "results":
        value, rest = context["results"][rest[0]], rest[1:]
    else:
        value = context[root]
    for part in rest:
        if isinstance(value, dict):
            if part not in value:
                raise RunnableError(f"input transform '{expr}': no key '{part}'")
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise RunnableError(f"input transform '{expr}': can't take '{part}' of {type(value).__name__}")
    return value


def run_flow(flow, *, event=None, flow_input=None, on_early_return=None):
    """Run a stored flow's steps in order. Returns (flow_input, last step's result).
    `on_early_return(result)` is called as soon as the early-return step finishes."""
    if event is not None:
        if flow.preprocessor_path:
            module = registry.load_script(flow.preprocessor_path)
            if not callable(getattr(module, "preprocessor", None)):
                raise RunnableError(f"script '{flow.preprocessor_path}' defines no preprocessor()")
            flow_input = _call_preprocessor(module, flow.preprocessor_path, event)
        else:
            flow_input = {"msg": event["msg"]}
    context = {"flow_input": flow_input or {}, "results": {}, "previous_result": None}
    for step in flow.steps:
        args = {
            name: transform["value"] if transform["type"] == "static" else _resolve_expr(transform["expr"], context)
            for name, transform in step.get("args", {}).items()
        }
        _, result = run_script(step["script_path"], kwargs=args)
        context["results"][step["id"]] = result
        context["previous_result"] = result
        if on_early_return is not None and step["id"] == flow.early_return:
            on_early_return(result)
    return flow_input, context["previous_result"]


def run_runnable(*, workspace_id, path, is_flow, args):
    """A runnable called with plain arguments (URL runnables, initial messages)."""
    if is_flow:
        flow = selectors.flow_by_path(workspace_id=workspace_id, path=path)
        if flow is None:
            raise RunnableError(f"no flow '{path}' in this workspace")
        return run_flow(flow, flow_input=args)[1]
    return run_script(path, kwargs=args)[1]


_monitor = None
_monitor_lock = threading.Lock()


def worker_monitor():
    """This worker process's monitor publisher (started on first use, so a prefork
    child starts its own thread after the fork)."""
    global _monitor
    with _monitor_lock:
        if _monitor is None:
            _monitor = MonitorPublisher().start()
        return _monitor


def _show_job(spec, job_id, status, duration, error=None):
    metrics.JOBS_FINISHED.labels(status).inc()
    metrics.JOB_DURATION.observe(duration)
    worker_monitor().event(
        spec["workspace"],
        {
            "type": "job",
            "trigger_path": spec["trigger_path"],
            "job_id": job_id,
            "status": status,
            "error": f"{error['name']}: {shorten(error['message'])}" if error else None,
        },
    )


def _publish(spec, job_id, result):
    try:
        bus.publish_result(trigger_id=spec["trigger_id"], job_id=job_id, frame=result_frame(result))
    except Exception:
        logger.exception("trigger %s: job %s: could not publish its result", spec["trigger_path"], job_id)


def retry_delay(retry, attempt):
    """Seconds before attempt `attempt + 1`, or None when no attempt is left."""
    if not retry or attempt >= retry["max_attempts"]:
        return None
    return retry.get("delay_secs", 0) * retry.get("multiplier", 1) ** (attempt - 1)


@dataclass(eq=False)
class JobRun:
    """One job attempt on its way through a worker: what to run, then what happened."""

    job_id: str
    spec: dict
    msg: str
    msg_type: str
    url: str
    attempt: int = 1
    args: dict = None
    result: object = None
    error: dict = None
    status: str = None
    retry_in: float = None
    started_at: object = None
    finished_at: object = None
    early_result_sent: bool = False
    duration: float = None

    def row_values(self):
        return dict(
            workspace_id=self.spec["workspace_id"],
            trigger_path=self.spec["trigger_path"],
            script_path=self.spec["script_path"],
            is_flow=self.spec["is_flow"],
            status=Job.Status.RUNNING,
            args={"msg": self.msg},
            attempt=self.attempt,
            started_at=self.started_at,
        )


def _execute(run):
    """Run the script or flow of one job (no database writes) and note the outcome
    on `run`: status, and result or error, and when to retry."""
    spec = run.spec
    clock = time.monotonic()
    run.started_at = timezone.now()
    event = {
        "kind": "websocket",
        "msg": run.msg,
        "url": run.url,
        "trigger_path": spec["trigger_path"],
        "msg_type": run.msg_type,
    }

    def on_early_return(result):
        if spec["can_return_message"] and result is not None:
            _publish(spec, run.job_id, result)
        run.early_result_sent = True

    try:
        if spec["is_flow"]:
            flow = selectors.flow_by_path(workspace_id=spec["workspace_id"], path=spec["script_path"])
            if flow is None:
                raise RunnableError(f"no flow '{spec['script_path']}' in this workspace")
            run.args, run.result = run_flow(flow, event=event, on_early_return=on_early_return)
        else:
            run.args, run.result = run_script(spec["script_path"], event=event)
        run.status = Job.Status.SUCCESS
    except Exception as exc:
        run.error = error_payload(exc)
        run.retry_in = retry_delay(spec.get("retry"), run.attempt)
        run.status = Job.Status.QUEUED if run.retry_in is not None else Job.Status.FAILURE
    run.finished_at = timezone.now()
    run.duration = time.monotonic() - clock


def _conclude(run, requeue, publish):
    """Everything after a job's outcome is recorded: the result or error back to the
    socket (through `publish(spec, job_id, value)`), a retry, the error handler,
    metrics and the monitor."""
    spec, job_id = run.spec, run.job_id
    if run.status == Job.Status.QUEUED:
        logger.info(
            "trigger %s: job %s attempt %s failed (%s: %s); retrying in %ss",
            spec["trigger_path"],
            job_id,
            run.attempt,
            run.error["name"],
            run.error["message"],
            run.retry_in,
        )
        metrics.JOBS_FINISHED.labels("retried").inc()
        requeue(run, run.retry_in)
        return
    _show_job(spec, job_id, run.status, run.duration, run.error)
    if run.status == Job.Status.SUCCESS:
        if spec["can_return_message"] and run.result is not None and not run.early_result_sent:
            publish(spec, job_id, run.result)
        return
    logger.info(
        "trigger %s: job %s failed: %s: %s", spec["trigger_path"], job_id, run.error["name"], run.error["message"]
    )
    if spec["can_return_message"] and spec["can_return_error_result"]:
        publish(spec, job_id, {"error": run.error})
    call_error_handler(spec=spec, error=run.error, job_id=job_id, started_at=run.started_at, failed_at=run.finished_at)


def _outcome(run):
    """The row values that record a run's outcome."""
    return dict(
        status=run.status,
        args=run.args if run.status == Job.Status.SUCCESS else {"msg": run.msg},
        result=run.result,
        error=run.error,
        started_at=run.started_at,
        finished_at=run.finished_at,
    )


def _record(runs, *, executed):
    """Write the rows of `runs`: the outcome of those in `executed`, `queued` for the
    rest (with the same fields, so one statement fits all)."""
    waiting = dict(status=Job.Status.QUEUED, result=None, error=None, started_at=None, finished_at=None)
    try:
        services.record_jobs(
            jobs={
                run.job_id: {
                    **run.row_values(),
                    **(_outcome(run) if run in executed else {**waiting, "args": {"msg": run.msg}}),
                }
                for run in runs
            }
        )
    except IntegrityError:
        # A job whose workspace was deleted meanwhile; record the others.
        live = selectors.existing_workspace_ids({run.spec["workspace_id"] for run in runs})
        kept = [run for run in runs if run.spec["workspace_id"] in live]
        if len(kept) == len(runs):
            raise
        _record(kept, executed=executed)


def run_trigger_job(*, job_id, spec, msg, msg_type, url, attempt, requeue):
    """Run one job (a retry or a replay), its row `running` while it runs.
    `requeue(run, countdown)` schedules the next attempt. Returns its status."""
    run = JobRun(job_id=job_id, spec=spec, msg=msg, msg_type=msg_type, url=url, attempt=attempt)
    if selectors.workspace_by_id(spec["workspace_id"]) is None:
        logger.info("trigger %s: job %s dropped: its workspace was deleted", spec["trigger_path"], job_id)
        return None
    run.started_at = timezone.now()
    services.record_jobs(jobs={job_id: {**run.row_values(), "result": None, "error": None, "finished_at": None}})
    _execute(run)
    _record([run], executed={run})
    _conclude(run, requeue, _publish)
    return run.status


# A batch whose jobs take longer than this shows its rows (done and waiting) at once,
# instead of only when the whole batch is done.
SHOW_BATCH_ROWS_AFTER_SECS = 1.0


def run_trigger_jobs(*, specs, jobs, requeue, resent=False):
    """Run a batch of jobs handed over by a listener in one message: one row each,
    written together (once, when the batch ends quickly), each job with its own
    outcome, result, retry and error handler. `specs` maps trigger id (str) to job
    spec; `jobs` is [[job_id, trigger id, msg, msg_type, url], ...] in arrival
    order; `resent` marks a batch a listener sends again after a Redis restart.
    Returns {status: count}."""
    runs = [JobRun(job_id=j[0], spec=specs[str(j[1])], msg=j[2], msg_type=j[3], url=j[4]) for j in jobs]
    # A re-sent job (what a Redis restart may have lost) runs once: one that already
    # ended is left alone.
    finished = selectors.finished_job_ids(run.job_id for run in runs) if resent else set()
    if finished:
        logger.info("skipping %s jobs that already ran", len(finished))
        metrics.JOBS_FINISHED.labels("duplicate").inc(len(finished))
        runs = [run for run in runs if run.job_id not in finished]
    batch_started = time.monotonic()
    executed = set()
    shown = False
    for run in runs:
        _execute(run)
        executed.add(run)
        if not shown and time.monotonic() - batch_started > SHOW_BATCH_ROWS_AFTER_SECS:
            _record(runs, executed=executed)
            shown = True
    _record(runs, executed=executed)
    frames = []
    for run in runs:
        _conclude(
            run, requeue, lambda spec, job_id, value: frames.append((spec["trigger_id"], job_id, result_frame(value)))
        )
    if frames:
        try:
            bus.publish_results(frames)
        except Exception:
            logger.exception("could not publish %s job results", len(frames))
    return dict(collections.Counter(run.status for run in runs))


def call_error_handler(*, spec, error, job_id, started_at, failed_at):
    """The trigger's error handler, else its workspace's, if either is set. Called
    once per final job failure, and once per lasting connection-failure streak
    (then `job_id` is None)."""
    path, handler_args = spec.get("error_handler_path"), spec.get("error_handler_args") or {}
    if not path:
        workspace = selectors.workspace_by_id(spec["workspace_id"])
        if workspace is None:
            return
        path, handler_args = workspace.error_handler_path, workspace.error_handler_args or {}
    if not path:
        return
    try:
        run_script(
            path,
            kwargs={
                "error": error,
                "job_id": job_id,
                "script_path": spec["script_path"],
                "is_flow": spec["is_flow"],
                "trigger_path": spec["trigger_path"],
                "workspace": spec["workspace"],
                "started_at": started_at.isoformat() if started_at else None,
                "failed_at": failed_at.isoformat() if failed_at else None,
                "error_handler_args": handler_args,
            },
        )
    except Exception:
        logger.exception("trigger %s: error handler '%s' failed", spec["trigger_path"], path)
