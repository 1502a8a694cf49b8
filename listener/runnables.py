"""Runs a runnable on a Celery worker for the listener (URL runnables, initial
messages) and waits for its reply; the listener itself never runs user code."""

import base64
import json
import logging
import time
import uuid

from orvanta_triggers import bus
from orvanta_triggers.tasks import RUN_RUNNABLE, RUNNABLE_KILL_AFTER_SECS

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
            RUN_RUNNABLE,
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
            time_limit=self._timeout + RUNNABLE_KILL_AFTER_SECS,
            retry=False,
        )
        deadline = time.monotonic() + self._timeout
        key = bus.reply_key(request_id)
        while not cancelled.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RunnableFailed(f"{path} did not answer within {self._timeout:g}s (is a Celery worker running?)")
            reply = bus.client().blpop([key], timeout=min(1.0, remaining))
            if reply is not None:
                payload = json.loads(reply[1])
                if not payload["ok"]:
                    error = payload["error"]
                    raise RunnableFailed(f"{path} failed: {error['name']}: {error['message']}")
                return base64.b64decode(payload["result"]) if payload.get("binary") else payload["result"]
        raise RunnableFailed(f"{path}: cancelled")
