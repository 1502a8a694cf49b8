"""Writes trigger status from one thread, coalesced, so a thousand connections share
one database connection and a busy trigger costs one write per interval; what is
pending is written in batches (services.record_trigger_statuses), so thousands of
connections starting or stopping at once cost a few UPDATEs, not thousands."""

import logging
import threading
import time

from django.db import Error, close_old_connections, connection
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
            self._paths.pop(trigger_id, None)
            self._last_touch.pop(trigger_id, None)

    def stop(self):
        """End the thread after a last flush."""
        self._stop.set()
        self._thread.join()
        self.flush()

    def flush(self):
        with self._lock:
            pending, self._pending = self._pending, {}
            if not pending:
                return True
        try:
            services.record_trigger_statuses(pending)
        except Error as exc:
            logger.warning(
                "trigger %s (and %s more): could not record status: %s",
                self._paths.get(next(iter(pending))),
                len(pending) - 1,
                exc,
            )
            close_old_connections()
            # Written again next time, under anything queued meanwhile.
            with self._lock:
                for trigger_id, fields in pending.items():
                    self._pending[trigger_id] = {**fields, **self._pending.get(trigger_id, {})}
            return False
        return True

    def _run(self):
        while not self._stop.wait(self._flush_interval):
            try:
                self.flush()
            except Exception:
                # A bug in one batch must not end every trigger's status writes.
                logger.exception("status writer: flush failed; its writes are dropped")
        # This thread's database connection ends with it.
        connection.close()
