"""How a worker process runs the jobs that one broker message carries, each on its own.

A listener puts every frame that arrives while it publishes into one message
(listener.dispatch). Here each job of it is run, recorded and answered (result sent
back, retry scheduled, error handler called: jobanswers) by itself, so that a bad job
never harms its neighbours:

- Parallelism. A message's jobs run one after another only while they are quick.
  As soon as one job has run for SLOW_JOB_SECS, or the message for
  BATCH_BUDGET_SECS, a per-process watchdog hands the jobs not yet started back to
  the broker, in chunks sized from the measured durations of their runnables, where
  idle pool processes and other workers take them as they would one task per job.
  Durations are remembered per runnable, so the next message of a slow script is
  split before any of it runs.
- Time limit. Each job runs at most ORVANTA_JOB_TIMEOUT_SECS (workerprocess.time_limit).
- Database faults. A write is retried while the database is unreachable; past
  ORVANTA_DATABASE_OUTAGE_SECS the message goes back to the broker
  (DatabaseUnavailable); a row the database refuses fails that one job (jobrecords).
- Rows. A job that runs longer than SHOW_RUNNING_AFTER_SECS shows `running` meanwhile.
"""

import collections
import contextlib
import logging
import threading
import time

import redis
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from orvanta_triggers import bus, conf, metrics, selectors
from orvanta_triggers.execution import JobRun, JobTimeout, error_payload, execute
from orvanta_triggers.jobanswers import answer, call_error_handlers, publish_early, suspend
from orvanta_triggers.jobrecords import record, with_database
from orvanta_triggers.models import Job
from orvanta_triggers.wire import decode_job
from orvanta_triggers.workerprocess import PerProcess, ResultOutbox, time_limit

# ResultOutbox: the tests make outboxes of their own through this module.
__all__ = ["ResultOutbox", "run_jobs"]

logger = logging.getLogger(__name__)

SLOW_JOB_SECS = 0.005
BATCH_BUDGET_SECS = 0.05
SHOW_RUNNING_AFTER_SECS = 1.0
# A slow batch that found every process busy looks again this often.
RECHECK_SECS = 0.05
# How fast a runnable's remembered duration follows new measurements.
DURATION_WEIGHT = 0.3

# Measured durations: how a message is cut into chunks

_durations = {}


def expected_secs(run):
    """How long a job of this runnable took lately in this process (0 when unknown)."""
    return _durations.get(run.runnable_key, 0.0)


def remember_duration(run, seconds):
    key = run.runnable_key
    previous = _durations.get(key)
    _durations[key] = seconds if previous is None else previous + DURATION_WEIGHT * (seconds - previous)


def chunks(runs, *, budget):
    """`runs` in order, cut into groups expected to take at most `budget` each (at
    least one job per group)."""
    group, total = [], 0.0
    for run in runs:
        secs = expected_secs(run)
        if group and total + secs > budget:
            yield group
            group, total = [], 0.0
        group.append(run)
        total += secs
    if group:
        yield group


# One message's jobs


class Batch:
    """The jobs of one message in this process: run in order by the task's thread,
    watched by the process's watchdog, which may hand the rest off and answer what is
    done meanwhile."""

    def __init__(self, runs, *, requeue, hand_off, queue_is_empty):
        self._requeue = requeue
        self._hand_off = hand_off
        self._queue_is_empty = queue_is_empty
        self._lock = threading.Lock()
        self._pending = collections.deque(runs)
        self._executed = []
        self._answered = []
        self._current = None
        self._current_since = None
        self._current_shown = False
        self._started = time.monotonic()

    def run(self):
        """Run every job not handed off; answer them; then their error handlers."""
        groups = list(chunks(self._pending, budget=BATCH_BUDGET_SECS))
        if len(groups) > 1 and self._may_hand_off():
            # Known to be slow: spread it before running any.
            self._pending = collections.deque(groups[0])
            self._give_away([run for group in groups[1:] for run in group])
        while True:
            with watchdog().watching(self):
                self._run_pending()
            # A hand-off the watchdog had under way may have failed and put jobs back.
            with self._lock:
                if not self._pending:
                    break
        with self._lock:
            executed, self._executed = self._executed, []
        try:
            if executed:
                answer(executed, requeue=self._requeue)
        finally:
            call_error_handlers(self._answered)
        call_error_handlers(executed)

    def _run_pending(self):
        while True:
            with self._lock:
                if not self._pending:
                    return
                run = self._current = self._pending.popleft()
                self._current_since, self._current_shown = time.monotonic(), False
            self._run_one(run)
            with self._lock:
                self._current = None
                self._executed.append(run)

    def _run_one(self, run):
        flow = None
        if run.spec["is_flow"]:
            flow = with_database(
                lambda: selectors.flow_by_path(workspace_id=run.spec["workspace_id"], path=run.spec["script_path"]),
                what="reading a flow",
            )
        clock = time.monotonic()
        try:
            with time_limit(conf.job_timeout_secs()):
                execute(run, flow=flow, publish_early=publish_early)
        except JobTimeout as exc:
            # The alarm went off after the script returned, while its outcome was noted.
            if run.status is None:
                run.status, run.error = Job.Status.FAILURE, error_payload(exc)
                run.finished_at, run.duration = timezone.now(), time.monotonic() - clock
        remember_duration(run, run.duration)

    def first_look(self, now):
        """When the watchdog need look first: no job proves slow before SLOW_JOB_SECS,
        and a lone job has nothing to hand off or answer early, only `running` to show
        (so a stream of one-job messages does not wake the watchdog for each)."""
        with self._lock:
            lone = len(self._pending) <= 1 and not self._executed
        return now + (SHOW_RUNNING_AFTER_SECS if lone else SLOW_JOB_SECS)

    def check(self, now):
        """The watchdog's look at this batch: once it proves slow, answer the jobs done
        and, if a process may be idle, hand the jobs not started off; show a long job as
        running. When to look again (None: only when told)."""
        with self._lock:
            current, since = self._current, self._current_since
            slow = current is not None and now - since >= SLOW_JOB_SECS
            proven_slow = slow or now - self._started >= BATCH_BUDGET_SECS
            done = []
            if proven_slow:
                done, self._executed = self._executed, []
            show = current is not None and not self._current_shown and now - since >= SHOW_RUNNING_AFTER_SECS
            if show:
                self._current_shown = True
            pending = bool(self._pending)
        if slow:
            _durations[current.runnable_key] = max(expected_secs(current), now - since)
        if proven_slow and pending and self._may_hand_off():
            with self._lock:
                rest = list(self._pending)
                self._pending.clear()
            self._give_away(rest)
        if done:
            self._answer_meanwhile(done)
        if show:
            record([current], status=Job.Status.RUNNING)
        if proven_slow and self._pending:
            # Every process was busy: look again, one may have become idle.
            return now + RECHECK_SECS
        if current is None:
            return now + SLOW_JOB_SECS
        if not slow:
            return since + SLOW_JOB_SECS
        if not self._current_shown:
            return since + SHOW_RUNNING_AFTER_SECS
        return None

    def _may_hand_off(self):
        """Whether another process may take handed-off jobs now: none waits in the queue
        (with one message per process prefetched, a message waits only while every
        process is busy). Handing off to busy processes would only reorder the work."""
        try:
            return self._queue_is_empty()
        except (redis.RedisError, OSError, BrokerError) as exc:
            logger.warning("could not read the queue's length (%s); keeping the batch", exc)
            return False

    def _give_away(self, runs):
        """Hand `runs` to the broker in chunks; keep those it won't take."""
        groups = list(chunks(runs, budget=BATCH_BUDGET_SECS))
        for index, group in enumerate(groups):
            try:
                self._hand_off(group)
            except Exception as exc:
                kept = [run for later in groups[index:] for run in later]
                logger.warning("could not hand %s jobs to other processes (%s); running them here", len(kept), exc)
                with self._lock:
                    self._pending.extendleft(reversed(kept))
                return
            metrics.JOBS_HANDED_OFF.inc(len(group))

    def _answer_meanwhile(self, runs):
        try:
            answer(runs, requeue=self._requeue)
        except Exception:
            logger.exception("could not answer %s jobs yet; the task will", len(runs))
            with self._lock:
                self._executed[:0] = runs
            return
        with self._lock:
            self._answered.extend(runs)


class Watchdog:
    """One thread per worker process looking at the batches the process runs (one at a
    time with the prefork pool, several with the threads pool; see Batch.check)."""

    def __init__(self):
        self._changed = threading.Condition()
        # Batch -> when to look at it next (None: only when told).
        self._wake_at = {}
        # When the thread looks next on its own (None: only when told); a batch due
        # earlier wakes it.
        self._deadline = None
        self._checking = threading.Lock()
        threading.Thread(target=self._run, name="batch-watchdog", daemon=True).start()

    @contextlib.contextmanager
    def watching(self, batch):
        with self._changed:
            wake_at = self._wake_at[batch] = batch.first_look(time.monotonic())
            if self._deadline is None or wake_at < self._deadline:
                self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                del self._wake_at[batch]
            # A look under way may still be answering jobs: the task must not end first.
            with self._checking:
                pass

    def _due(self):
        """The batches due for a look, once there are any."""
        with self._changed:
            while True:
                now = time.monotonic()
                due = [batch for batch, at in self._wake_at.items() if at is not None and at <= now]
                if due:
                    return due
                upcoming = [at for at in self._wake_at.values() if at is not None]
                self._deadline = min(upcoming) if upcoming else None
                self._changed.wait(None if self._deadline is None else self._deadline - now)

    def _run(self):
        while True:
            due = self._due()
            with self._checking:
                for batch in due:
                    with self._changed:
                        if batch not in self._wake_at:
                            continue
                    try:
                        wake_at = batch.check(time.monotonic())
                    except Exception:
                        logger.exception("batch watchdog failed; the batch goes on")
                        wake_at = None
                    with self._changed:
                        if batch in self._wake_at:
                            self._wake_at[batch] = wake_at


watchdog = PerProcess(Watchdog)


def run_jobs(*, specs, jobs, requeue, hand_off, queue_is_empty, redelivered, batch_id):
    """Run the jobs of one message. `specs` maps trigger id (str) to job spec; `jobs`
    is the encoded jobs (wire.encode_job) in arrival order;
    `hand_off(runs)` publishes some of them as a message of their own, which is worth
    it when `queue_is_empty()` (some process may be idle);
    `redelivered` says the broker (or a listener, after a Redis restart) sent this
    message before, so jobs that already ran or were handed off are skipped.
    Returns {status: count} of the jobs run here."""
    runs = []
    for fields in jobs:
        job = decode_job(fields)
        runs.append(
            JobRun(
                job_id=job.job_id,
                spec=specs[str(job.trigger_id)],
                msg=job.msg,
                msg_type=job.msg_type,
                url=job.url,
                attempt=job.attempt,
                arrived_at=job.arrived_at,
            )
        )
    if redelivered:
        runs = _not_run_yet(runs, batch_id)
    suspended = [run for run in runs if run.spec.get("suspended")]
    if suspended:
        suspend(suspended)
    to_run = [run for run in runs if not run.spec.get("suspended")]
    Batch(to_run, requeue=requeue, hand_off=hand_off, queue_is_empty=queue_is_empty).run()
    return dict(collections.Counter(run.status for run in runs if run.status))


def _not_run_yet(runs, batch_id):
    """Of a redelivered message's jobs, those that neither ended, nor went on to a later
    attempt, nor were handed off to another message."""
    attempts = {run.job_id: run.attempt for run in runs}
    skipped = with_database(lambda: selectors.settled_job_ids(attempts), what="checking a redelivered message")
    try:
        skipped |= bus.handed_off_job_ids(batch_id)
    except redis.RedisError as exc:
        logger.warning("could not read which jobs message %s handed off (%s); they may run twice", batch_id, exc)
    if skipped:
        logger.info("message %s delivered again: skipping %s of its %s jobs", batch_id, len(skipped), len(runs))
        metrics.JOBS_FINISHED.labels("duplicate").inc(len(skipped))
    return [run for run in runs if run.job_id not in skipped]
