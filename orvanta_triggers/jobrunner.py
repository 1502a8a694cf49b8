"""How a worker process runs the jobs that one broker message carries, each on its own.

A listener puts every frame that arrives while it publishes into one message
(listener.dispatch). Here each job of it is run, recorded and answered (result sent
back, retry scheduled, error handler called) by itself, so that a bad job never
harms its neighbours:

- Parallelism. A message's jobs run one after another only while they are quick.
  As soon as one job has run for SLOW_JOB_SECS, or the message for
  BATCH_BUDGET_SECS, a per-process watchdog hands the jobs not yet started back to
  the broker, in chunks sized from the measured durations of their runnables, where
  idle pool processes and other workers take them as they would one task per job.
  Durations are remembered per runnable, so the next message of a slow script is
  split before any of it runs.
- Time limit. Each job runs at most ORVANTA_JOB_TIMEOUT_SECS (SIGALRM, in the pool
  process's main thread: the prefork and solo pools), then fails with JobTimeout;
  its neighbours are not affected. Celery's hard limit stays as a backstop for code
  that ignores the signal.
- Database faults. While the database is unreachable (OperationalError,
  InterfaceError) a write is retried with backoff for up to
  ORVANTA_DATABASE_OUTAGE_SECS, the message held unacknowledged meanwhile; past that
  the message goes back to the broker (DatabaseUnavailable). A row the database
  refuses fails that one job, saying why.
- Rows. Written in one upsert per answer; a job that runs longer than
  SHOW_RUNNING_AFTER_SECS shows `running` meanwhile.
"""

import collections
import contextlib
import logging
import signal
import threading
import time
import uuid

import redis
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, connection
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from orvanta_triggers import bus, conf, metrics, selectors, services
from orvanta_triggers.execution import (
    JobRun,
    JobTimeout,
    error_handler_call,
    error_payload,
    execute,
    json_checked,
    run_script,
)
from orvanta_triggers.models import Job
from orvanta_triggers.monitor import MonitorPublisher, shorten
from orvanta_triggers.wire import decode_job, result_frame

logger = logging.getLogger(__name__)

SLOW_JOB_SECS = 0.005
BATCH_BUDGET_SECS = 0.05
SHOW_RUNNING_AFTER_SECS = 1.0
# A slow batch that found every process busy looks again this often.
RECHECK_SECS = 0.05
DATABASE_DOWN = (OperationalError, InterfaceError)
# What a write of a value the database can't hold raises (DATABASE_DOWN excepted:
# with_database turns those into DatabaseUnavailable).
ROW_REFUSED = (DatabaseError, ValueError, TypeError, RecursionError)
# How fast a runnable's remembered duration follows new measurements.
DURATION_WEIGHT = 0.3


class DatabaseUnavailable(Exception):
    """The database stayed unreachable for ORVANTA_DATABASE_OUTAGE_SECS."""


# The database


def with_database(operation, *, what):
    """operation(), retried with backoff while the database is unreachable, for up to
    ORVANTA_DATABASE_OUTAGE_SECS; then DatabaseUnavailable."""
    window = conf.database_outage_secs()
    deadline = time.monotonic() + window
    delay = 0.1
    while True:
        try:
            return operation()
        except DATABASE_DOWN as exc:
            with contextlib.suppress(DatabaseError):
                connection.close()
            if time.monotonic() + delay > deadline:
                raise DatabaseUnavailable(f"the database was unreachable for {window:g}s while {what}: {exc}") from exc
            logger.warning("database unreachable while %s (%s); retrying in %.1fs", what, exc, delay)
            metrics.DATABASE_RETRIES.inc()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _write_rows(runs, status, overwrite):
    """One upsert for the rows of `runs` (an insert of those not written yet, unless
    `overwrite`); jobs of a workspace deleted meanwhile are dropped, with a line in
    the log."""
    rows = {run.job_id: run.row(status) for run in runs}
    try:
        services.record_jobs(jobs=rows, overwrite=overwrite)
    except IntegrityError:
        live = selectors.existing_workspace_ids({run.spec["workspace_id"] for run in runs})
        kept = [run for run in runs if run.spec["workspace_id"] in live]
        if len(kept) == len(runs):
            raise
        for run in runs:
            if run not in kept:
                logger.info(
                    "trigger %s: job %s dropped: its workspace was deleted", run.spec["trigger_path"], run.job_id
                )
        if kept:
            _write_rows(kept, status, overwrite)


def record(runs, *, status=None, overwrite=True):
    """Write the rows of `runs` (their outcome, or `status` for those not run yet;
    without `overwrite`, only rows not written yet). A row the database refuses fails
    that job alone: it is recorded as a failure that says why."""
    try:
        with_database(lambda: _write_rows(runs, status, overwrite), what=f"recording {len(runs)} jobs")
        return
    except ROW_REFUSED as exc:
        if len(runs) > 1:
            for run in runs:
                record([run], status=status, overwrite=overwrite)
            return
        refused = exc
    run = runs[0]
    path = run.spec["trigger_path"]
    logger.error("trigger %s: job %s: the database refused its row: %s", path, run.job_id, refused)
    run.status, run.result, run.retry_in = Job.Status.FAILURE, None, None
    run.error = {"name": "UnstorableOutcome", "message": f"the database refused the job's row: {refused}", "stack": ""}
    try:
        with_database(lambda: _write_rows(runs, None, overwrite), what="recording a refused job")
    except ROW_REFUSED as exc:
        logger.error("trigger %s: job %s has no row: the database refused its failure too: %s", path, run.job_id, exc)


# Time limit


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


# Per-process state: measured durations, the result outbox, the monitor, the watchdog

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


_process_lock = threading.Lock()
_outbox = None
_monitor = None
_watchdog = None


def _process_singleton(name, make):
    """This process's instance of a helper, made on first use: a prefork child makes
    its own (and starts its own threads) after the fork."""
    with _process_lock:
        value = globals()[name]
        if value is None:
            value = globals()[name] = make()
        return value


def outbox():
    return _process_singleton("_outbox", ResultOutbox)


def worker_monitor():
    return _process_singleton("_monitor", lambda: MonitorPublisher().start())


def watchdog():
    return _process_singleton("_watchdog", Watchdog)


# Answering a job: row, result, retry, monitor


def _show(run):
    metrics.JOBS_FINISHED.labels(run.status).inc()
    metrics.JOB_DURATION.observe(run.duration)
    worker_monitor().event(
        run.spec["workspace"],
        {
            "type": "job",
            "trigger_path": run.spec["trigger_path"],
            "job_id": run.job_id,
            "status": run.status,
            "error": f"{run.error['name']}: {shorten(run.error['message'])}" if run.error else None,
        },
    )


def publish_early(run, result):
    outbox().publish([(run.spec["trigger_id"], run.job_id, result_frame(result))])


def answer(runs, *, requeue):
    """Everything after jobs ran, error handlers aside: their rows, their results back
    to the socket, retries scheduled (`requeue(run, countdown)`), metrics, monitor."""
    record(runs)
    frames = []
    for run in runs:
        spec = run.spec
        if run.status == Job.Status.QUEUED:
            logger.info(
                "trigger %s: job %s attempt %s failed (%s: %s); retrying in %ss",
                spec["trigger_path"],
                run.job_id,
                run.attempt,
                run.error["name"],
                run.error["message"],
                run.retry_in,
            )
            try:
                requeue(run, run.retry_in)
            except (BrokerError, redis.RedisError, OSError) as exc:
                # The row says queued; with no retry coming it must end.
                logger.error(
                    "trigger %s: job %s: its retry could not be scheduled: %s", spec["trigger_path"], run.job_id, exc
                )
                run.status, run.retry_in = Job.Status.FAILURE, None
                run.error = {**run.error, "message": f"{run.error['message']} (retry not scheduled: {exc})"}
                record([run])
            else:
                metrics.JOBS_FINISHED.labels("retried").inc()
                continue
        _show(run)
        if not spec["can_return_message"]:
            continue
        if run.status == Job.Status.SUCCESS:
            if run.result is not None and not run.early_result_sent:
                frames.append((spec["trigger_id"], run.job_id, result_frame(run.result)))
        elif spec["can_return_error_result"]:
            frames.append((spec["trigger_id"], run.job_id, result_frame({"error": run.error})))
    if frames:
        outbox().publish(frames)


def run_recorded(run, call, *, timeout_secs, limit="ORVANTA_JOB_TIMEOUT_SECS", reply=None):
    """Run user code that is not a trigger's message (`call()`, for at most
    `timeout_secs`) as the job `run`, whose `args` are set; then `reply()`, if given
    (a caller waits for the outcome); then its row, saying what it returned or how it
    failed. The outcome is on `run` (status, result or error). A DatabaseUnavailable
    recording it is logged: the code ran, its caller goes on."""
    clock = time.monotonic()
    run.started_at = timezone.now()
    try:
        with time_limit(timeout_secs, limit=limit):
            run.result = json_checked(call(), "the result")
        run.status = Job.Status.SUCCESS
    except (Exception, JobTimeout, SystemExit) as exc:
        run.status, run.error = Job.Status.FAILURE, error_payload(exc)
    run.finished_at, run.duration = timezone.now(), time.monotonic() - clock
    try:
        if reply is not None:
            reply()
    finally:
        try:
            record([run])
        except DatabaseUnavailable as exc:
            logger.error(
                "trigger %s: %s job %s (%s) ended %s but has no row: %s",
                run.spec["trigger_path"],
                run.kind,
                run.job_id,
                run.spec["script_path"],
                run.status,
                exc,
            )


def handle_failure(*, spec, error, job_id, started_at, failed_at):
    """Run the error handler of a final failure of a job of `spec` (`job_id` None: a
    lasting connection-failure streak), if the trigger or its workspace has one, as a
    job of its own (kind error_handler, parent the failed job), within
    ORVANTA_JOB_TIMEOUT_SECS. Returns its job id, or None when there is no handler."""
    call = with_database(
        lambda: error_handler_call(spec=spec, error=error, job_id=job_id, started_at=started_at, failed_at=failed_at),
        what="finding an error handler",
    )
    if call is None:
        return None
    path, kwargs = call
    handler = JobRun(
        job_id=str(uuid.uuid4()),
        spec={**spec, "script_path": path, "is_flow": False},
        msg=None,
        msg_type=None,
        url=None,
        kind=Job.Kind.ERROR_HANDLER,
        parent_job_id=job_id,
        args=kwargs,
    )
    run_recorded(handler, lambda: run_script(path, kwargs=kwargs)[1], timeout_secs=conf.job_timeout_secs())
    if handler.status == Job.Status.FAILURE:
        logger.warning(
            "trigger %s: error handler '%s' of job %s failed (job %s): %s: %s",
            spec["trigger_path"],
            path,
            job_id,
            handler.job_id,
            handler.error["name"],
            handler.error["message"],
        )
    return handler.job_id


def call_error_handlers(runs):
    """The error handler of each job that failed for good (user code: run last)."""
    for run in runs:
        if run.status != Job.Status.FAILURE:
            continue
        logger.info(
            "trigger %s: job %s failed: %s: %s",
            run.spec["trigger_path"],
            run.job_id,
            run.error["name"],
            run.error["message"],
        )
        try:
            handle_failure(
                spec=run.spec,
                error=run.error,
                job_id=run.job_id,
                started_at=run.started_at,
                failed_at=run.finished_at,
            )
        except DatabaseUnavailable as exc:
            logger.error("trigger %s: job %s: error handler not called: %s", run.spec["trigger_path"], run.job_id, exc)


# A suspended trigger's jobs


def suspend(runs):
    """Record the jobs of a suspended trigger, unrun, with what a resume needs (their
    message, its type and URL). Never over a row already written: a message carrying
    them again must not take back a resume or a discard."""
    for run in runs:
        run.status = Job.Status.SUSPENDED
    record(runs, overwrite=False)
    for run in runs:
        metrics.JOBS_FINISHED.labels(run.status).inc()
        worker_monitor().event(
            run.spec["workspace"],
            {
                "type": "job",
                "trigger_path": run.spec["trigger_path"],
                "job_id": run.job_id,
                "status": run.status,
                "error": None,
            },
        )


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
        self._checking = threading.Lock()
        threading.Thread(target=self._run, name="batch-watchdog", daemon=True).start()

    @contextlib.contextmanager
    def watching(self, batch):
        with self._changed:
            self._wake_at[batch] = time.monotonic()
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
                self._changed.wait(min(upcoming) - now if upcoming else None)

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
