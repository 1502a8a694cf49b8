"""Turns matched frames into Celery jobs, in order, from one thread.

Connections only append to a bounded in-memory buffer; this thread publishes. While
Redis does not answer, frames wait in the buffer and are sent in order once it does.
While workers lag (more than ORVANTA_MAX_QUEUED_JOBS waiting in the broker) it holds
off publishing. A full buffer either blocks the connection that submits (the
"backpressure" policy: it stops reading its socket, so TCP slows the server down) or
drops the frame, counted and logged ("drop"); never silently.
"""

import collections
import logging
import threading
import time
import uuid

from orvanta_triggers.tasks import RUN_TRIGGER_JOB

from listener import metrics
from listener.backoff import Backoff

logger = logging.getLogger(__name__)

QUEUE_CHECK_INTERVAL_SECS = 0.5


class Dispatcher:
    def __init__(self, *, celery_app, buffer_size, overflow_policy, max_queued_jobs):
        self._app = celery_app
        # Its own stop event: it must outlive the connections to flush their frames.
        self._stop = threading.Event()
        self._buffer_size = buffer_size
        self._overflow_policy = overflow_policy
        self._max_queued_jobs = max_queued_jobs
        self._buffer = collections.deque()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._space = threading.Condition(self._lock)
        self.dropped = 0
        self._queue_checked_at = 0.0
        self._lagging = False
        self._thread = threading.Thread(target=self._run, name="dispatcher", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self, timeout=None):
        """Publish what is buffered (while the broker answers), then end."""
        self._stop.set()
        with self._lock:
            self._ready.notify()
        self._thread.join(timeout)

    def submit(self, *, job_spec, msg, msg_type, url, cancelled):
        """Queue one job. Under back-pressure, waits for room until `cancelled` is
        set; returns False when the frame was not queued (dropped or cancelled)."""
        with self._lock:
            while len(self._buffer) >= self._buffer_size:
                if self._overflow_policy == "drop":
                    self._count_drop(job_spec)
                    return False
                if cancelled.is_set():
                    return False
                self._space.wait(0.1)
            self._buffer.append((str(uuid.uuid4()), job_spec, msg, msg_type, url, time.monotonic()))
            self._ready.notify()
        return True

    def _count_drop(self, job_spec):
        self.dropped += 1
        metrics.FRAMES_DROPPED.labels("buffer_full").inc()
        if self.dropped == 1 or self.dropped % 1000 == 0:
            logger.error(
                "trigger %s: dispatch buffer full (%s frames): frame dropped, %s dropped so far",
                job_spec["trigger_path"], self._buffer_size, self.dropped,
            )

    def backlog(self):
        return len(self._buffer)

    def _publish(self, item):
        job_id, job_spec, msg, msg_type, url, _ = item
        self._app.send_task(
            RUN_TRIGGER_JOB,
            kwargs={"job_id": job_id, "spec": job_spec, "msg": msg, "msg_type": msg_type, "url": url},
            task_id=job_id,
            retry=False,
        )

    def _workers_lagging(self):
        """Whether the broker holds more waiting jobs than allowed (checked at most
        every QUEUE_CHECK_INTERVAL_SECS; the answer is kept in between)."""
        now = time.monotonic()
        if now - self._queue_checked_at < QUEUE_CHECK_INTERVAL_SECS:
            return self._lagging
        self._queue_checked_at = now
        with self._app.connection_for_write() as connection:
            queued = connection.default_channel.client.llen(self._app.conf.task_default_queue)
        self._lagging = queued > self._max_queued_jobs
        if self._lagging:
            logger.warning("%s jobs wait for workers (limit %s); holding frames back", queued, self._max_queued_jobs)
        return self._lagging

    def _run(self):
        backoff = Backoff(base=0.2, cap=5.0)
        failing = False
        while True:
            with self._lock:
                while not self._buffer and not self._stop.is_set():
                    self._ready.wait(0.5)
                if not self._buffer:
                    return
                item = self._buffer[0]
            try:
                if self._workers_lagging() and not self._stop.is_set():
                    self._stop.wait(0.1)
                    continue
                self._publish(item)
            except Exception as exc:
                if self._stop.is_set():
                    break
                if not failing:
                    logger.warning("trigger %s: broker unavailable, buffering frames: %s", item[1]["trigger_path"], exc)
                failing = True
                metrics.DISPATCH_BACKLOG.set(len(self._buffer))
                self._stop.wait(backoff.next_delay())
                continue
            if failing:
                logger.info("broker reachable again; flushing %s buffered frames", len(self._buffer))
                failing = False
                backoff.reset()
            with self._lock:
                self._buffer.popleft()
                self._space.notify()
            metrics.FRAMES_DISPATCHED.inc()
            metrics.DISPATCH_LATENCY.observe(time.monotonic() - item[5])
        self._drain()

    def _drain(self):
        """On shutdown: one last try to publish what is buffered, then say what was lost."""
        while self._buffer:
            try:
                self._publish(self._buffer[0])
            except Exception as exc:
                logger.error("shutdown with %s frames not handed to the broker: %s", len(self._buffer), exc)
                metrics.FRAMES_DROPPED.labels("shutdown").inc(len(self._buffer))
                return
            self._buffer.popleft()
