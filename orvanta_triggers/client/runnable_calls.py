"""Runs a runnable on a Celery worker for the listener (URL runnables, initial
messages) and waits for its reply; the listener itself never runs user code."""

import logging
import time
import uuid

from orvanta_triggers import bus, wire

logger = logging.getLogger(__name__)


class RunnableFailed(Exception):
    pass


class RunnableClient:
    def __init__(self, *, celery_app, timeout_secs):
        self._app = celery_app
        self._timeout = timeout_secs

    def call(self, *, workspace_id, path, is_flow, args, cancelled, kind, trigger_path=""):
        """The runnable's result. Raises RunnableFailed on error, on timeout and when
        `cancelled` (an Event) is set while waiting. The worker records the run as a
        job of `kind` (Job.Kind) for the trigger at `trigger_path`."""
        request_id = str(uuid.uuid4())
        self._app.send_task(
            wire.RUN_RUNNABLE,
            kwargs={
                "request_id": request_id,
                "workspace_id": workspace_id,
                "path": path,
                "is_flow": is_flow,
                "args": args,
                "timeout_secs": self._timeout,
                "kind": kind,
                "trigger_path": trigger_path,
            },
            # Not run once nobody waits for it; killed if it ignores its time limit.
            expires=self._timeout,
            time_limit=self._timeout + wire.RUNNABLE_KILL_AFTER_SECS,
            retry=False,
            **wire.reprs(request_id=request_id, path=path),
        )
        deadline = time.monotonic() + self._timeout
        key = bus.reply_key(request_id)
        while not cancelled.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RunnableFailed(f"{path} did not answer within {self._timeout:g}s (is a Celery worker running?)")
            reply = bus.client().blpop([key], timeout=min(1.0, remaining))
            if reply is not None:
                ok, outcome = wire.decode_reply(reply[1])
                if not ok:
                    raise RunnableFailed(f"{path} failed: {outcome['name']}: {outcome['message']}")
                return outcome
        raise RunnableFailed(f"{path}: cancelled")
