"""Writes trigger status from one thread, coalesced, so a thousand connections share
one database connection and a busy trigger costs one write per interval."""

import logging
import threading
import time

from django.db import close_old_connections, connection
from django.utils import timezone

from orvanta_triggers import services

logger = logging.getLogger(__name__)


class StatusWriter:
    def __init__(self, *, touch_interval, flush_interval=0.2):
        self._stop = threading.Event()
        self._touch_interval = touch_interval
        self._flush_interval = flush_interval
        self._lock = threading.Lock()
        self._pending = {}
        self._paths = {}
        self._last_touch = {}
        self._thread = threading.Thread(target=self._run, name="status-writer", daemon=True)

    def start(self):
        self._thread.start()

    def set(self, trigger_id, path, **fields):
        """Queue status fields for `trigger_id`; later values win."""
        with self._lock:
            self._pending.setdefault(trigger_id, {}).update(fields)
            self._paths[trigger_id] = path

    def touch(self, trigger_id, path):
        """A message arrived: record last_message_at, at most once per interval."""
        now = time.monotonic()
        if now - self._last_touch.get(trigger_id, -1e9) < self._touch_interval:
            return
        self._last_touch[trigger_id] = now
        self.set(trigger_id, path, last_message_at=timezone.now())

    def forget(self, trigger_id):
        """Drop queued writes: another listener now speaks for this trigger."""
        with self._lock:
            self._pending.pop(trigger_id, None)
            self._last_touch.pop(trigger_id, None)

    def stop(self):
        """End the thread after a last flush."""
        self._stop.set()
        self._thread.join()
        self.flush()

    def flush(self):
        with self._lock:
            pending, self._pending = self._pending, {}
            paths = dict(self._paths)
        failed = {}
        for trigger_id, fields in pending.items():
            try:
                services.record_trigger_status(trigger_id=trigger_id, **fields)
            except Exception as exc:
                logger.warning(
                    "trigger %s: could not record status %s: %s", paths.get(trigger_id), fields.get("status"), exc
                )
                failed[trigger_id] = fields
                close_old_connections()
        if failed:
            with self._lock:
                for trigger_id, fields in failed.items():
                    self._pending[trigger_id] = {**fields, **self._pending.get(trigger_id, {})}
        return not failed

    def _run(self):
        while not self._stop.wait(self._flush_interval):
            self.flush()
        # This thread's database connection ends with it.
        connection.close()
