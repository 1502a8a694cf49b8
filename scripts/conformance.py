"""`make conformance`: RFC 6455 conformance of the listener, measured with the
Autobahn|Testsuite fuzzing server (cases 1-7 and 9), beside a plain websocket-client
echo client in the same run.

The fuzzing server is Autobahn|Testsuite's own `wstest -m fuzzingserver`, on the
Python 2.7 that scripts/ensure_wstest.sh installs in .run/wstest/ (first run only).

The product runs as in production: a private redis-server, a fresh PostgreSQL
database on the machine's server (CONFORMANCE_POSTGRES_URL), `manage.py migrate`, one
`runlisteners` and one Celery worker as subprocesses. Each case is one trigger, with
"send runnable result" on, running scripts/conformance_runnables/conformance_echo.py
(text back as text, binary back as binary); its URL runnable hands out the case's
runCase URL once only (see conformance_url_once.py: a second run would replace the
first's result). The harness long-polls the server's getCaseStatus for the case, which
answers once the case is over, then deletes the trigger. A case still running after
CONFORMANCE_CASE_TIMEOUT_SECS is ended by deleting its trigger (it then shows how far
it got).

Phases: groups 1-7 (CONFORMANCE_CONCURRENCY cases in flight) with the listener at the
default ORVANTA_MAX_MESSAGE_BYTES, then group 9 with the listener restarted at 32 MiB:
its message-size cases 9.1-9.6 (up to 16 MiB; CONFORMANCE_LARGE_CONCURRENCY in flight),
then its round-trip cases 9.7-9.8 (1,000 echoes each against a deadline;
CONFORMANCE_LATENCY_CONCURRENCY in flight). In each phase the listener's cases run
first, then the plain client's (scripts/conformance_client.py, agent
`websocket-client`, a process of its own), so that neither takes CPU the other's
deadlines need. A case FAILED (or not ended) runs once more, alone: the report keeps
that second verdict, and both are printed. Then updateReports, the table per case
group and agent, the FAILED cases with the server's reason, and .run/conformance/
holds the Autobahn report (reports/index.html, index.json, a file per case and agent),
summary.json and the processes' logs.

Exit status: 0 when the issue's target is met (no listener case FAILED or not run in
groups 1-7, none FAILED for the listener that the plain client passes), else 1; 2 when
the run could not complete.

Knobs (environment): CONFORMANCE_CASES (comma-separated case ids or globs, default
"1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*"), CONFORMANCE_CONCURRENCY (8),
CONFORMANCE_LARGE_CONCURRENCY (2), CONFORMANCE_LATENCY_CONCURRENCY (2),
CONFORMANCE_CASE_TIMEOUT_SECS (120), CONFORMANCE_POSTGRES_URL
(postgres://postgres@127.0.0.1:5432/postgres), WSTEST (a wstest to use instead of
installing one).
"""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import websocket

from scripts.conformance_processes import (
    ConformanceError,
    FreshDatabase,
    FuzzingServer,
    Proc,
    loadavg,
    wait_for,
)
from scripts.conformance_report import report
from scripts.conformance_settings import (
    AGENTS,
    CASE_END_AFTER_DELETE_SECS,
    CASE_TIMEOUT_SECS,
    CASES,
    CLIENT_AGENT,
    CONCURRENCY,
    LARGE_CONCURRENCY,
    LARGE_MESSAGE_BYTES,
    LARGE_MESSAGE_GROUP,
    LATENCY_CASES,
    LATENCY_CONCURRENCY,
    LISTENER_AGENT,
    LOG_DIR,
    ONCE_DIR,
    PY,
    REPORT_DIR,
    ROOT,
    RUN_DIR,
    START_TIMEOUT_SECS,
    group_of,
)
from tests.support.ports import free_port
from tests.support.processes import worker_command
from tests.support.redisserver import PrivateRedis

logger = logging.getLogger(__name__)


class Conformance:
    def __init__(self):
        self.redis = None
        self.db = None
        self.server = None
        self.procs = []
        self.listener = None
        self.workspace = None
        self.timings = {}
        self.load_at_start = None
        self.django_ready = False
        self.harness_timeouts = {agent: [] for agent in AGENTS}
        # {agent: {case id: (first verdict, verdict when run again alone)}}
        self.retried = {agent: {} for agent in AGENTS}

    # set-up and tear-down

    def setup(self):
        self.load_at_start = loadavg()
        shutil.rmtree(RUN_DIR, ignore_errors=True)
        for path in (REPORT_DIR, LOG_DIR, ONCE_DIR):
            path.mkdir(parents=True)
        # Its progress and errors go to our stderr (the first install takes a minute).
        wstest = subprocess.run(
            [str(ROOT / "scripts" / "ensure_wstest.sh")], cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False
        )
        if wstest.returncode != 0:
            raise ConformanceError("could not install the fuzzing server (scripts/ensure_wstest.sh)")
        wstest_path = wstest.stdout.strip().splitlines()[-1]

        self.redis = PrivateRedis()
        self.redis.start()
        self.db = FreshDatabase().create()
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_DEBUG": "false",
            # Production settings refuse to start without a secret of their own.
            "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or os.urandom(32).hex(),
            "DATABASE_URL": self.db.url,
            "REDIS_URL": self.redis.url,
            "ORVANTA_ALLOW_PRIVATE_URLS": "true",
            "ORVANTA_RUNNABLE_PACKAGES": "runnables,scripts.conformance_runnables",
            "CONFORMANCE_ONCE_DIR": str(ONCE_DIR),
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "INFO",
        }
        # Groups 1-7 are measured at the default limit, whatever this shell exports.
        self.env.pop("ORVANTA_MAX_MESSAGE_BYTES", None)
        os.environ.update(self.env)
        logger.info("private redis-server on port %s, PostgreSQL database %s", self.redis.port, self.db.name)

        migrate = subprocess.run(
            [PY, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=self.env, capture_output=True, text=True
        )
        if migrate.returncode != 0:
            raise ConformanceError(f"migrate failed:\n{migrate.stdout}\n{migrate.stderr}")
        import django

        django.setup()
        self.django_ready = True
        from orvanta_triggers import services

        self.workspace = services.create_workspace(slug="conformance", plan="enterprise")

        self.server = FuzzingServer()
        self.server.wait_ready(self.start("wstest", self.server.command(wstest_path)))
        logger.info("fuzzing server on %s: %s cases (%s)", self.server.url, len(self.server.cases), ", ".join(CASES))
        self.start_worker()

    def teardown(self):
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except Exception:
                logger.exception("stopping %s", proc.name)
        if self.django_ready:
            from django.db import connections

            connections.close_all()
        if self.db is not None:
            try:
                self.db.drop()
            except Exception:
                logger.exception("dropping database %s", self.db.name)
        if self.redis is not None:
            self.redis.stop()

    # the product's processes

    def start(self, name, args, **env):
        proc = Proc(name, args, {**self.env, **env})
        self.procs.append(proc)
        return proc

    def start_worker(self):
        worker = self.start(
            "worker",
            worker_command(f"conformance-{os.getpid()}", concurrency=2, quiet_cluster=True),
        )

        def ready():
            worker.check_alive()
            return " ready." in worker.log_path.read_text(errors="replace")

        wait_for(ready, timeout=START_TIMEOUT_SECS, what="the Celery worker to be ready")

    def start_listener(self, name, **env):
        """A listener, returned once its metrics answer (it has started reconciling)."""
        if self.listener is not None:
            self.listener.stop()
            self.procs.remove(self.listener)
        port = free_port()
        listener = self.start(
            name, [PY, "manage.py", "runlisteners", "--listener-id", name, "--metrics-port", str(port)], **env
        )

        def up():
            listener.check_alive()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1):
                    return True
            except OSError:
                return False

        wait_for(up, timeout=START_TIMEOUT_SECS, what=f"listener {name}'s metrics on port {port}")
        self.listener = listener

    # cases

    def case_status(self, status, timeout):
        """The verdict the server sends on a getCaseStatus connection, or None."""
        status.settimeout(timeout)
        try:
            return json.loads(status.recv())["behavior"]
        except websocket.WebSocketTimeoutException:
            return None

    def run_listener_case(self, number, attempt):
        """Run case `number` on a trigger of its own; the server's verdict, or None when
        the case never ended."""
        from django.db import connection

        from orvanta_triggers import services

        case_id = self.server.cases[number]
        url = self.server.run_case_url(number, LISTENER_AGENT)
        if attempt > 1:
            # Another URL, so that the run-once URL runnable hands it out again (the
            # server ignores parameters it does not know).
            url += f"&attempt={attempt}"
        status = self.server.status_socket(number, LISTENER_AGENT)
        try:
            trigger = services.create_trigger(
                workspace=self.workspace,
                path=f"f/conformance/case-{case_id}/{attempt}",
                url="$script:conformance_url_once",
                url_runnable_args={"url": url},
                script_path="conformance_echo",
                can_return_message=True,
            )
            try:
                verdict = self.case_status(status, CASE_TIMEOUT_SECS)
            finally:
                services.delete_trigger(trigger=trigger)
            if verdict is None:
                logger.warning("case %s: not over after %ss: its trigger deleted", case_id, CASE_TIMEOUT_SECS)
                self.harness_timeouts[LISTENER_AGENT].append(case_id)
                verdict = self.case_status(status, CASE_END_AFTER_DELETE_SECS)
            return verdict
        finally:
            status.close()
            connection.close()

    def run_listener_cases(self, name, numbers, concurrency, attempt):
        """{case number: verdict} of the listener on `numbers`, `concurrency` in flight."""
        pool = ThreadPoolExecutor(concurrency)
        try:
            futures = {n: pool.submit(self.run_listener_case, n, attempt) for n in numbers}
            verdicts = {n: future.result() for n, future in futures.items()}
        finally:
            # On an error, the cases not started yet are not run at all.
            pool.shutdown(cancel_futures=True)
        self.listener.check_alive()
        return verdicts

    def run_client_cases(self, name, numbers, concurrency, attempt):
        """{case number: verdict} of the plain client on `numbers`, `concurrency` in flight."""
        args = [PY, "-m", "scripts.conformance_client", self.server.url, CLIENT_AGENT, str(concurrency)]
        client = self.start(f"client-{name}-{attempt}".replace(" ", "-"), [*args, *map(str, numbers)])
        try:
            client.popen.wait(CASE_TIMEOUT_SECS * len(numbers) / concurrency + CASE_TIMEOUT_SECS)
        except subprocess.TimeoutExpired:
            raise ConformanceError(f"the plain client did not finish:\n{client.log_tail()}") from None
        return {n: self.server.verdict(n, CLIENT_AGENT) for n in numbers}

    def run_phase(self, name, numbers, concurrency):
        """The listener's cases, then the plain client's: one agent at a time, so that
        neither fails a case's deadline for want of CPU the other took (the machine
        has 2 cores; many cases allow 0.5 or 1 s for the echo, group 9 counts round
        trips against a deadline).

        Even so, a busy machine can make a case miss its deadline: each case FAILED
        (or not ended) runs once more, alone. The report keeps the second run's
        verdict, and both are printed."""
        if not numbers:
            return
        for agent, run in ((LISTENER_AGENT, self.run_listener_cases), (CLIENT_AGENT, self.run_client_cases)):
            started = time.monotonic()
            verdicts = run(name, numbers, concurrency, 1)
            failed = [n for n in numbers if verdicts[n] in (None, "FAILED")]
            if failed:
                again = run(name, failed, 1, 2)
                for n in failed:
                    self.retried[agent][self.server.cases[n]] = (verdicts[n] or "not run", again[n] or "not run")
            secs = self.timings[f"{name} {agent}"] = round(time.monotonic() - started, 1)
            logger.info("%s: %s cases for %s in %.1fs (%s run again)", name, len(numbers), agent, secs, len(failed))

    def run(self):
        ids = self.server.cases
        small = [n for n in sorted(ids) if group_of(ids[n]) != LARGE_MESSAGE_GROUP]
        latency = [n for n in sorted(ids) if ids[n].startswith(LATENCY_CASES)]
        sizes = [n for n in sorted(ids) if group_of(ids[n]) == LARGE_MESSAGE_GROUP and n not in latency]
        if small:
            self.start_listener("listener-default")
            self.run_phase("groups 1-7", small, CONCURRENCY)
        if sizes or latency:
            self.start_listener("listener-32mib", ORVANTA_MAX_MESSAGE_BYTES=str(LARGE_MESSAGE_BYTES))
            # Few in flight: these cases are about throughput against the cases' deadlines.
            self.run_phase("group 9 sizes", sizes, LARGE_CONCURRENCY)
            self.run_phase("group 9 round trips", latency, LATENCY_CONCURRENCY)
        started = time.monotonic()
        self.server.update_reports()
        logger.info("reports written in %.1fs", time.monotonic() - started)


def _raise_on_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main():
    # The format Django's LOGGING gives these loggers once django.setup() has run.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("websocket").setLevel(logging.CRITICAL)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_on_signal)
    started = time.monotonic()
    run = Conformance()
    try:
        run.setup()
        run.run()
        met = report(run, time.monotonic() - started)
    except BaseException as exc:  # noqa: BLE001 - any failure: clean up, exit status 2
        # A traceback only where it helps: not for our own errors or an interrupt.
        expected = isinstance(exc, (ConformanceError, KeyboardInterrupt))
        logger.error("the run did not complete: %s", exc, exc_info=not expected)
        return 2
    finally:
        run.teardown()
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
