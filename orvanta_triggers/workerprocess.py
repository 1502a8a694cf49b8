"""What each worker process keeps for itself: the time limit of the job its main
thread runs, the result outbox and the monitor publisher (each with a thread of its own).

Time limit. Each job runs at most ORVANTA_JOB_TIMEOUT_SECS (SIGALRM, in the pool
process's main thread: the prefork and solo pools), then fails with JobTimeout; its
neighbours are not affected. Celery's hard limit stays as a backstop for code that
ignores the signal.
"""

import collections
import contextlib
import logging
import signal
import threading
import time

import redis

from orvanta_triggers import bus, metrics
from orvanta_triggers.execution import JobTimeout
from orvanta_triggers.monitor import MonitorPublisher

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def time_limit(seconds, *, limit="ORVANTA_JOB_TIMEOUT_SECS"):
    """Raise JobTimeout in this thread once `seconds` (the `limit`) have passed. Only
    the main thread can be interrupted: elsewhere (the threads pool) the limit is not
    enforced."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise JobTimeout(f"the job ran longer than {limit} ({seconds:g}s)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class ResultOutbox:
    """Result frames on their way to the listeners. While Redis does not answer they
    wait here (up to MAX_HELD, oldest dropped first, counted) and a thread retries."""

    MAX_HELD = 10000

    def __init__(self):
        self._held = collections.deque()
        self._lock = threading.Lock()
        self._waiting = threading.Event()
        self._thread = None

    def publish(self, frames):
        """Send [(trigger id, job id, frame)] in one round trip, or hold them."""
        with self._lock:
            if self._held:
                self._hold(frames)
                return
        try:
            bus.publish_results(frames)
        except redis.RedisError as exc:
            logger.warning("could not publish %s job results (%s); holding them until Redis answers", len(frames), exc)
            with self._lock:
                self._hold(frames)

    def _hold(self, frames):
        self._held.extend(frames)
        metrics.RESULTS_HELD.inc(len(frames))
        overflow = len(self._held) - self.MAX_HELD
        for _ in range(max(overflow, 0)):
            trigger_id, job_id, _ = self._held.popleft()
            metrics.RESULTS_DROPPED.inc()
            logger.error("job %s (trigger id %s): result dropped: too many results wait for Redis", job_id, trigger_id)
        if self._thread is None:
            self._thread = threading.Thread(target=self._retry, name="result-outbox", daemon=True)
            self._thread.start()
        self._waiting.set()

    def _retry(self):
        delay = 0.1
        while True:
            self._waiting.wait()
            with self._lock:
                frames = list(self._held)
            try:
                bus.publish_results(frames)
            except redis.RedisError:
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            logger.info("Redis answers again: published %s held job results", len(frames))
            with self._lock:
                for _ in frames:
                    self._held.popleft()
                if not self._held:
                    self._waiting.clear()


class PerProcess:
    """This process's instance of a helper, made on first use: a prefork child makes
    its own (and starts its own threads) after the fork."""

    def __init__(self, make):
        self._make = make
        self._instance = None
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            if self._instance is None:
                self._instance = self._make()
            return self._instance


outbox = PerProcess(ResultOutbox)
worker_monitor = PerProcess(lambda: MonitorPublisher().start())
