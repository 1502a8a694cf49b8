"""Turns matched frames into Celery jobs, in order, from one thread.

Connections only append to a bounded in-memory buffer; this thread publishes, in
adaptive batches: one broker message carries every frame that arrived while the
previous message was being published (a lone frame goes at once, so low rates add no
latency; bursts cost one publish per batch, not per frame). Each frame stays its own
job (own row, result, retry and error handling) on the worker. While
Redis does not answer, frames wait in the buffer and are sent in order once it does.
While workers lag (more than ORVANTA_MAX_QUEUED_JOBS waiting in the broker) it holds
off publishing. A full buffer either blocks the connection that submits (the
"backpressure" policy: it stops reading its socket, so TCP slows the server down) or
drops the frame, counted and logged ("drop"); never silently.
"""

import collections
import itertools
import logging
import random
import threading
import time
import uuid

import kombu.exceptions
import redis

from listener import metrics
from listener.backoff import Backoff
from orvanta_triggers import bus, conf, wire

logger = logging.getLogger(__name__)

QUEUE_CHECK_INTERVAL_SECS = 0.5
# One broker message carries at most this many jobs, and this many bytes of messages.
MAX_BATCH_JOBS = 500
MAX_BATCH_BYTES = 1 << 20
# While messages wait in the broker's queue right now (no worker is free to take
# another), a batch may wait this long for more frames. The queue is read afresh: a
# length half a second old made every frame at 100 frames/s wait for the next.
COALESCE_MAX_SECS = 0.02
COALESCE_STEP_SECS = 0.002
# What was published lately, kept to be sent again after Redis restarts: kombu's Redis
# transport takes a message off the queue and records it as unacknowledged in two
# steps, so a restart between them loses it. Workers skip jobs that already ran.
RESEND_WINDOW_SECS = 30
RESEND_MAX_JOBS = 50000
# Receipts of published messages are checked this often. A message not received by
# any worker while one published after it was, for RECEIPT_SLACK_SECS, was lost in
# kombu's Redis transport between the pop and its unacknowledged record (a worker
# killed at that moment): it is sent again.
RECEIPT_CHECK_INTERVAL_SECS = 1.0
RECEIPT_SLACK_SECS = 2.0
# At most this many of the oldest such messages are checked at a time, and this many
# are remembered (the oldest forgotten first, with their frames).
RECEIPT_CHECK_MAX_MESSAGES = 1000
MAX_TRACKED_MESSAGES = 20000


_ids = random.Random()


def new_job_id():
    """A random (version 4) UUID string, without the system call uuid.uuid4() makes
    per id: the generator is seeded from the OS once per process."""
    return str(uuid.UUID(int=_ids.getrandbits(128), version=4))


class Dispatcher:
    def __init__(self, *, celery_app, buffer_size, overflow_policy, max_queued_jobs):
        self._app = celery_app
        # Its own stop event: it must outlive the connections to flush their frames.
        self._stop = threading.Event()
        self._buffer_size = buffer_size
        self._overflow_policy = overflow_policy
        self._max_queued_jobs = max_queued_jobs
        # (job id, job spec, msg, msg_type, url, monotonic arrival, wall-clock arrival).
        self._buffer = collections.deque()
        self._last_arrival = 0.0
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._space = threading.Condition(self._lock)
        self.dropped = 0
        self._queue_checked_at = 0.0
        self._lagging = False
        # Jobs per message of the latest messages this listener published.
        self._message_sizes = collections.deque(maxlen=100000)
        self._queued_at_check = 0
        self._published_since_check = 0
        self._published_at = 0.0
        self._recent = collections.deque()
        self._recent_jobs = 0
        self._resend_due = threading.Event()
        # Published messages no worker has acknowledged receiving yet, oldest first:
        # [message id, published at, batch].
        self._unreceived = collections.deque()
        self._receipts_checked_at = 0.0
        # (checked at, publish time of the newest message received by then), per check.
        self._received_horizons = collections.deque()
        metrics.DISPATCH_BACKLOG.set_function(lambda: len(self._buffer))
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
            # Strictly increasing, so that rows sort by arrival even within a clock tick
            # or across a step of the wall clock back.
            arrived_at = self._last_arrival = max(time.time(), self._last_arrival + 1e-6)
            self._buffer.append((new_job_id(), job_spec, msg, msg_type, url, time.monotonic(), arrived_at))
            self._ready.notify()
        return True

    def _count_drop(self, job_spec):
        self.dropped += 1
        metrics.FRAMES_DROPPED.labels("buffer_full").inc()
        if self.dropped == 1 or self.dropped % 1000 == 0:
            logger.error(
                "trigger %s: dispatch buffer full (%s frames): frame dropped, %s dropped so far",
                job_spec["trigger_path"],
                self._buffer_size,
                self.dropped,
            )

    def redis_was_away(self):
        """Redis went away or restarted: what was published in the last
        RESEND_WINDOW_SECS is sent again once it answers."""
        self._resend_due.set()
        with self._lock:
            self._ready.notify()

    def _remember(self, batch):
        now = time.monotonic()
        self._recent.append((now, batch))
        self._recent_jobs += len(batch)
        while self._recent and (self._recent[0][0] < now - RESEND_WINDOW_SECS or self._recent_jobs > RESEND_MAX_JOBS):
            self._recent_jobs -= len(self._recent.popleft()[1])

    def _resend_recent(self):
        """Send the remembered batches again, oldest first; they stay remembered."""
        batches = list(self._recent)
        for _, batch in batches:
            self._publish(batch, resent=True)
        self._resend_due.clear()
        if batches:
            jobs = sum(len(b) for _, b in batches)
            logger.warning(
                "Redis restarted: sent again the %s jobs of the last %ss (workers skip any that ran)",
                jobs,
                RESEND_WINDOW_SECS,
            )
            metrics.JOBS_RESENT.inc(jobs)

    def _next_batch(self):
        """The oldest buffered frames, as many as fit one message (by count and size):
        a lone frame goes out at once; frames that arrive while a publish is in flight
        go out together in the next one."""
        batch, size = [], 0
        with self._lock:
            for item in self._buffer:
                if batch and (len(batch) >= MAX_BATCH_JOBS or size + len(item[2]) > MAX_BATCH_BYTES):
                    break
                batch.append(item)
                size += len(item[2])
        return batch

    def _worth_waiting_for_more(self, batch):
        """While messages already wait for workers, one more message now would not
        run sooner: let the batch grow for up to COALESCE_MAX_SECS. Workers keeping up
        get every frame at once. Frames coming slower than one message per
        COALESCE_MAX_SECS would find no company in time: they go at once, and the
        queue is not asked (a Redis round trip on every frame's way)."""
        now = time.monotonic()
        return (
            len(batch) < MAX_BATCH_JOBS
            and now - batch[0][5] < COALESCE_MAX_SECS
            and now - self._published_at < COALESCE_MAX_SECS
            and not self._stop.is_set()
            and self._messages_waiting()
        )

    def _queue_length(self):
        """Messages waiting in the broker's queue (the broker is the Redis at REDIS_URL)."""
        return bus.client().llen(self._app.conf.task_default_queue)

    def _messages_waiting(self):
        """Whether messages wait in the queue now; False when Redis can't say (the
        publish that follows finds out what is wrong)."""
        try:
            return self._queue_length() > 0
        except redis.RedisError:
            return False

    def _publish(self, batch, resent=False):
        specs = {}
        jobs = []
        for job_id, job_spec, msg, msg_type, url, _, arrived_at in batch:
            specs.setdefault(job_spec["trigger_id"], job_spec)
            jobs.append(wire.encode_job(job_id, job_spec["trigger_id"], msg, msg_type, url, arrived_at=arrived_at))
        message_id = new_job_id()
        self._app.send_task(
            wire.RUN_TRIGGER_JOBS,
            kwargs=wire.batch(specs, jobs, resent=resent),
            task_id=message_id,
            time_limit=conf.message_time_limit(len(batch)),
            retry=False,
            **wire.reprs(jobs=len(jobs)),
        )
        self._message_sizes.append(len(batch))
        self._published_since_check += len(batch)
        self._published_at = time.monotonic()
        self._unreceived.append((message_id, time.monotonic(), batch))
        if len(self._unreceived) > MAX_TRACKED_MESSAGES:
            self._unreceived.popleft()

    def _check_receipts(self):
        """Send again the messages lost between a worker's pop and its record: those
        not received while a later one was, for RECEIPT_SLACK_SECS (the queue is first
        in, first out)."""
        now = time.monotonic()
        if now - self._receipts_checked_at < RECEIPT_CHECK_INTERVAL_SECS or not self._unreceived:
            return
        self._receipts_checked_at = now
        tracked = list(itertools.islice(self._unreceived, RECEIPT_CHECK_MAX_MESSAGES))
        received = bus.received_messages([message_id for message_id, _, _ in tracked])
        newest_received = max((at for message_id, at, _ in tracked if message_id in received), default=None)
        if newest_received is not None:
            self._received_horizons.append((now, newest_received))
        horizon = None
        while self._received_horizons and self._received_horizons[0][0] <= now - RECEIPT_SLACK_SECS:
            horizon = self._received_horizons.popleft()[1]
        if horizon is not None:
            # Still the best evidence for the next check.
            self._received_horizons.appendleft((now - RECEIPT_SLACK_SECS, horizon))
        lost = [item for item in tracked if item[0] not in received and horizon is not None and item[1] < horizon]
        if received:
            self._unreceived = collections.deque(item for item in self._unreceived if item[0] not in received)
        for item in lost:
            message_id, _, batch = item
            logger.warning(
                "trigger %s: message %s (%s jobs) was taken off the queue by no worker that lived: sending it again",
                batch[0][1]["trigger_path"],
                message_id,
                len(batch),
            )
            # Forgotten only once sent again: a failed send leaves it for the next check.
            self._publish(batch, resent=True)
            self._unreceived.remove(item)
            metrics.JOBS_RESENT.inc(len(batch))

    def _publish_allowance(self):
        """How many more jobs may go to the broker before about ORVANTA_MAX_QUEUED_JOBS
        wait there: the jobs of the messages waiting (taken as this listener's latest,
        checked at most every QUEUE_CHECK_INTERVAL_SECS) plus what it published since."""
        now = time.monotonic()
        if now - self._queue_checked_at >= QUEUE_CHECK_INTERVAL_SECS:
            self._queue_checked_at = now
            messages = self._queue_length()
            # The queue is first in, first out: what waits are the newest messages.
            self._queued_at_check = sum(itertools.islice(reversed(self._message_sizes), messages))
            self._published_since_check = 0
        # Between checks, what this listener published counts as still waiting.
        queued = self._queued_at_check + self._published_since_check
        allowance = max(int(self._max_queued_jobs - queued), 0)
        if not allowance and not self._lagging:
            logger.warning(
                "about %d jobs wait for workers (limit %s); holding frames back", queued, self._max_queued_jobs
            )
        self._lagging = not allowance
        return allowance

    def _run(self):
        backoff = Backoff(base=0.2, cap=5.0)
        failing = False
        while True:
            with self._lock:
                while not self._buffer and not self._stop.is_set() and not self._resend_due.is_set():
                    self._ready.wait(RECEIPT_CHECK_INTERVAL_SECS / 2)
                    if self._unreceived:
                        break
                if not self._buffer and not self._resend_due.is_set() and self._stop.is_set():
                    return
            try:
                self._check_receipts()
            except (redis.RedisError, kombu.exceptions.OperationalError, OSError) as exc:
                logger.warning("could not check which messages workers received: %s", exc)
            try:
                if self._resend_due.is_set():
                    self._resend_recent()
                    continue
            except Exception as exc:
                if self._stop.is_set():
                    break
                logger.warning("broker unavailable, resend of recent jobs waits: %s", exc)
                self._stop.wait(backoff.next_delay())
                continue
            batch = self._next_batch()
            if not batch:
                continue
            if self._worth_waiting_for_more(batch):
                self._stop.wait(COALESCE_STEP_SECS)
                continue
            try:
                allowance = self._publish_allowance()
                if not allowance and not self._stop.is_set():
                    self._stop.wait(0.1)
                    continue
                batch = batch[: max(allowance, 1)]
                self._publish(batch)
            except Exception as exc:
                if self._stop.is_set():
                    break
                if not failing:
                    logger.warning(
                        "trigger %s: broker unavailable, buffering frames: %s", batch[0][1]["trigger_path"], exc
                    )
                    self._resend_due.set()
                failing = True
                self._stop.wait(backoff.next_delay())
                continue
            if failing:
                logger.info("broker reachable again; flushing %s buffered frames", len(self._buffer))
                failing = False
                backoff.reset()
            with self._lock:
                for _ in batch:
                    self._buffer.popleft()
                self._space.notify_all()
            self._remember(batch)
            metrics.FRAMES_DISPATCHED.inc(len(batch))
            now = time.monotonic()
            for item in batch:
                metrics.DISPATCH_LATENCY.observe(now - item[5])
        self._drain()

    def _drain(self):
        """On shutdown: one last try to publish what is buffered, then say what was lost."""
        while self._buffer:
            batch = self._next_batch()
            try:
                self._publish(batch)
            except Exception as exc:
                logger.error("shutdown with %s frames not handed to the broker: %s", len(self._buffer), exc)
                metrics.FRAMES_DROPPED.labels("shutdown").inc(len(self._buffer))
                return
            for _ in batch:
                self._buffer.popleft()
