"""Running user code on a Celery worker: scripts, flows, their preprocessors, and one
job's run (orvanta_triggers.jobrunner runs a message's jobs, jobanswers answers them and runs error handlers).

Called from orvanta_triggers.tasks with plain JSON; never from the listener.
"""

import base64
import json
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime

from django.utils import timezone

from orvanta_triggers import registry, selectors
from orvanta_triggers.models import Job
from orvanta_triggers.wire import encode_job


class RunnableError(Exception):
    """A runnable broke its contract (bad preprocessor return, unserializable result...)."""


class JobTimeout(BaseException):
    """A job ran past ORVANTA_JOB_TIMEOUT_SECS. A BaseException, so that a script's own
    `except Exception` can't swallow it."""


def error_payload(exc):
    return {
        "name": type(exc).__name__,
        "message": str(exc),
        "stack": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }


def json_checked(value, what):
    """`value`, if it is JSON that any database can store (NaN and infinities are not),
    or bytes (a binary result)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise RunnableError(f"{what} is not JSON serializable: {exc}") from exc
    return value


def _call_preprocessor(module, path, event):
    kwargs = module.preprocessor(event)
    if not isinstance(kwargs, dict):
        raise RunnableError(
            f"preprocessor of '{path}' returned {type(kwargs).__name__}, expected a dict of arguments for main"
        )
    return json_checked(kwargs, "the preprocessor's result")


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
    return kwargs, json_checked(result, "the result")


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
    msg: str | None
    msg_type: str | None
    url: str | None
    attempt: int = 1
    # When the listener accepted the frame (wire.WireJob.arrived_at): the row's created_at.
    arrived_at: float = None
    # Job.Kind; None: the spec's kind, else a trigger's message.
    kind: str = None
    parent_job_id: str = None
    args: dict = None
    result: object = None
    error: dict = None
    status: str = None
    retry_in: float = None
    started_at: object = None
    finished_at: object = None
    early_result_sent: bool = False
    duration: float = None

    @property
    def runnable_key(self):
        """What the job runs, as a key for per-runnable measurements."""
        return (self.spec["workspace_id"], self.spec["script_path"], self.spec["is_flow"])

    def wire(self):
        """The job as a message carries it (wire.encode_job)."""
        return encode_job(
            self.job_id, self.spec["trigger_id"], self.msg, self.msg_type, self.url, self.attempt, self.arrived_at
        )

    def row(self, status=None):
        """The job's row values: its outcome once it ran, else `status` (queued,
        running or suspended)."""
        binary = isinstance(self.result, bytes)
        status = self.status or status
        values = dict(
            workspace_id=self.spec["workspace_id"],
            trigger_path=self.spec["trigger_path"],
            script_path=self.spec["script_path"],
            is_flow=self.spec["is_flow"],
            kind=self.kind or self.spec.get("kind", Job.Kind.TRIGGER),
            parent_job_id=self.parent_job_id,
            attempt=self.attempt,
            status=status,
            # Until main() was called with the preprocessor's arguments: the message.
            args=self.args if self.args is not None else {"msg": self.msg},
            result=base64.b64encode(self.result).decode("ascii") if binary else self.result,
            result_type=Job.ResultType.BINARY if binary else Job.ResultType.JSON,
            error=self.error,
            started_at=self.started_at,
            finished_at=self.finished_at,
        )
        if self.arrived_at is not None:
            # Jobs list, and suspended jobs resume, in the order their frames arrived,
            # whichever worker wrote its row first.
            values["created_at"] = datetime.fromtimestamp(self.arrived_at, tz=UTC)
        if status == Job.Status.SUSPENDED:
            values["event"] = {"msg_type": self.msg_type, "url": self.url}
        return values


def execute(run, *, flow=None, publish_early):
    """Run the script or flow of one job (no database access: a flow job gets its
    `flow`, None when it does not exist) and note the outcome on `run`: status, and
    result or error, and when to retry. `publish_early(run, result)` sends a flow's
    early-return result."""
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
            publish_early(run, result)
        run.early_result_sent = True

    try:
        if spec["is_flow"]:
            if flow is None:
                raise RunnableError(f"no flow '{spec['script_path']}' in this workspace")
            run.args, run.result = run_flow(flow, event=event, on_early_return=on_early_return)
        else:
            run.args, run.result = run_script(spec["script_path"], event=event)
        run.status = Job.Status.SUCCESS
    except (Exception, JobTimeout, SystemExit) as exc:
        run.error = error_payload(exc)
        run.retry_in = retry_delay(spec.get("retry"), run.attempt)
        run.status = Job.Status.QUEUED if run.retry_in is not None else Job.Status.FAILURE
    run.finished_at = timezone.now()
    run.duration = time.monotonic() - clock


def error_handler_call(*, spec, error, job_id, started_at, failed_at):
    """(path, kwargs) of the error handler to call for a final failure of a job of
    `spec` (`job_id` None: a lasting connection-failure streak): the trigger's, else
    its workspace's; None when neither is set."""
    path, handler_args = spec.get("error_handler_path"), spec.get("error_handler_args") or {}
    if not path:
        workspace = selectors.workspace_by_id(spec["workspace_id"])
        if workspace is None:
            return None
        path, handler_args = workspace.error_handler_path, workspace.error_handler_args or {}
    if not path:
        return None
    return path, {
        "error": error,
        "job_id": job_id,
        "script_path": spec["script_path"],
        "is_flow": spec["is_flow"],
        "trigger_path": spec["trigger_path"],
        "workspace": spec["workspace"],
        "started_at": started_at.isoformat() if started_at else None,
        "failed_at": failed_at.isoformat() if failed_at else None,
        "error_handler_args": handler_args,
    }
