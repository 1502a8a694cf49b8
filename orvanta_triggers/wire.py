"""Everything that crosses a process boundary between listeners, workers and web
processes, in one place: task names, the job spec, the batch of jobs a message
carries, result frames and their Redis channels, and the replies of runnables a caller
waits for. The listener and the workers import this module, never each other's.
Imports nothing of Django's (settings modules may import it) and reads no settings
(callers pass the Redis key prefix).

Compatibility between releases: a listener and a worker one release apart must
understand each other's messages, so within a format

- a job (a list of JOB_FIELDS, positional to keep messages small) only ever gains
  fields at its end, each with a default in WireJob; a reader fills in the defaults of
  fields an older writer did not send and ignores trailing fields a newer one did;
- the job spec, the batch, a result and a reply are JSON objects that only ever gain
  keys; a reader takes a key that was added later with .get() and a default;
- a change that can't follow these rules is a new task name.
"""

import base64
import json
from typing import NamedTuple

# Celery task names: listeners and web processes send them by name; workers run them
# (orvanta_triggers.tasks).
RUN_TRIGGER_JOB = "orvanta.run_trigger_job"
RUN_TRIGGER_JOBS = "orvanta.run_trigger_jobs"
RUN_RUNNABLE = "orvanta.run_runnable"
NOTIFY_CONNECTION_FAILURE = "orvanta.notify_connection_failure"


def reprs(**summary):
    """send_task's argsrepr and kwargsrepr for a message of these tasks: a summary
    (`summary`, e.g. jobs=3). Celery's default, a saferepr of the arguments, copies up
    to 1 KB of frames and specs (secrets included) into every message's headers, hence
    into worker events and monitoring tools, and took a tenth of a busy listener's CPU."""
    return {"argsrepr": "()", "kwargsrepr": repr(summary)}


# A runnable ignoring its time limit (run_runnable) loses its process this much later:
# its caller sends the task with that hard limit.
RUNNABLE_KILL_AFTER_SECS = 5


# The job spec: what a worker needs to run a job of a trigger, as plain JSON.


def job_spec(trigger):
    """The spec of `trigger` (a WebSocketTrigger), built once per configuration
    version by the listener. A suspended trigger's jobs are recorded, not run; `kind`
    (Job.Kind, absent: a trigger's message) is set by those who send other runs
    (replays)."""
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
        "suspended": trigger.mode == "suspended",
    }


# Jobs and batches: RUN_TRIGGER_JOBS takes {"specs": {str(trigger id): job spec},
# "jobs": [job, ...], "resent"?: true}; RUN_TRIGGER_JOB takes one job's fields as
# keyword arguments (JOB_FIELDS) and its spec as `spec`.


class WireJob(NamedTuple):
    """One job as a message carries it: a frame of a trigger, and which attempt."""

    job_id: str
    trigger_id: int
    msg: str
    msg_type: str
    url: str
    attempt: int = 1
    # When the listener accepted the frame (seconds since the epoch, its clock); None
    # for a job sent without it (a retry or a resume, whose row exists; an older
    # listener's job), whose row is stamped when it is first written.
    arrived_at: float | None = None


JOB_FIELDS = WireJob._fields


def encode_job(job_id, trigger_id, msg, msg_type, url, attempt=1, arrived_at=None):
    """A job as a list of JOB_FIELDS, without the trailing ones left at their default."""
    fields = [job_id, trigger_id, msg, msg_type, url]
    if arrived_at is not None:
        fields += [attempt, arrived_at]
    elif attempt != 1:
        fields.append(attempt)
    return fields


def decode_job(fields):
    """A WireJob from a job a message carries, whatever release wrote it."""
    return WireJob(*fields[: len(JOB_FIELDS)])


def batch(specs, jobs, *, resent=False):
    """RUN_TRIGGER_JOBS's keyword arguments: `specs` by trigger id, encoded `jobs` in
    arrival order; `resent` when a listener sends a message again."""
    kwargs = {"specs": {str(trigger_id): spec for trigger_id, spec in specs.items()}, "jobs": jobs}
    if resent:
        kwargs["resent"] = True
    return kwargs


# Results: a worker publishes each result frame on the channel of its trigger; the
# listener holding the trigger sends it on the socket.


def results_channel(prefix, trigger_id):
    return f"{prefix}results:{trigger_id}"


def trigger_id_of_results_channel(channel):
    """The trigger id a results channel name (str or bytes) is for."""
    if isinstance(channel, bytes):
        channel = channel.decode()
    return int(channel.rsplit(":", 1)[1])


def result_frame(result):
    """How a runnable's result goes on the socket: a string as-is (a text frame),
    bytes as-is (a binary frame), anything else as JSON text."""
    if isinstance(result, (str, bytes)):
        return result
    return json.dumps(result)


def encode_result(job_id, frame):
    """A result frame as it travels through Redis: text as-is, bytes as base64."""
    if isinstance(frame, bytes):
        return json.dumps({"job_id": job_id, "frame": base64.b64encode(frame).decode("ascii"), "binary": True})
    return json.dumps({"job_id": job_id, "frame": frame})


def decode_result(data):
    """(job id, frame: str for a text frame, bytes for a binary one)."""
    payload = json.loads(data)
    frame = base64.b64decode(payload["frame"]) if payload.get("binary") else payload["frame"]
    return payload["job_id"], frame


# Replies: RUN_RUNNABLE pushes its outcome to a Redis list its caller waits on.


def reply_key(prefix, request_id):
    return f"{prefix}reply:{request_id}"


def encode_reply(*, result=None, error=None):
    """A runnable's outcome: its result (bytes as base64), or its error ({name,
    message, stack}) when `error` is given."""
    if error is not None:
        return json.dumps({"ok": False, "error": error})
    if isinstance(result, bytes):
        return json.dumps({"ok": True, "result": base64.b64encode(result).decode("ascii"), "binary": True})
    return json.dumps({"ok": True, "result": result})


def decode_reply(data):
    """(ok, result or error)."""
    payload = json.loads(data)
    if not payload["ok"]:
        return False, payload["error"]
    return True, base64.b64decode(payload["result"]) if payload.get("binary") else payload["result"]
