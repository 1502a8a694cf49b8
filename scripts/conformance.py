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
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import websocket

from tests.ports import free_port
from tests.redisserver import PrivateRedis

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
RUN_DIR = ROOT / ".run" / "conformance"
REPORT_DIR = RUN_DIR / "reports"
LOG_DIR = RUN_DIR / "logs"
ONCE_DIR = RUN_DIR / "once"

LISTENER_AGENT = "orvanta-listener"
CLIENT_AGENT = "websocket-client"
AGENTS = (LISTENER_AGENT, CLIENT_AGENT)
GROUPS = {
    "1": "Framing",
    "2": "Pings/Pongs",
    "3": "Reserved bits",
    "4": "Opcodes",
    "5": "Fragmentation",
    "6": "UTF-8 handling",
    "7": "Close handling",
    "9": "Limits/performance",
}
# Autobahn's verdicts, best first; "not run" is ours: a case missing from the report.
VERDICTS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "not run")
FAILING = {"FAILED", "not run"}
LARGE_MESSAGE_GROUP = "9"
LARGE_MESSAGE_BYTES = 32 * 1024 * 1024
LATENCY_CASES = ("9.7.", "9.8.")

CASES = [c.strip() for c in os.environ.get("CONFORMANCE_CASES", "1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*").split(",")]
CONCURRENCY = int(os.environ.get("CONFORMANCE_CONCURRENCY", "8"))
LARGE_CONCURRENCY = int(os.environ.get("CONFORMANCE_LARGE_CONCURRENCY", "2"))
LATENCY_CONCURRENCY = int(os.environ.get("CONFORMANCE_LATENCY_CONCURRENCY", "2"))
CASE_TIMEOUT_SECS = float(os.environ.get("CONFORMANCE_CASE_TIMEOUT_SECS", "120"))
POSTGRES_ADMIN_URL = os.environ.get("CONFORMANCE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
# After its trigger is deleted, a case ends as soon as the listener closes the socket.
CASE_END_AFTER_DELETE_SECS = 30
START_TIMEOUT_SECS = 60
STOP_TIMEOUT_SECS = 15


class ConformanceError(Exception):
    """The run could not complete."""


def wait_for(predicate, *, timeout, what, interval=0.1):
    """Poll until predicate() is truthy; its value. ConformanceError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise ConformanceError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def loadavg():
    """The 1-minute load average: the machine is shared, and a busy one makes cases
    miss their deadlines."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def group_of(case_id):
    return case_id.split(".", 1)[0]


class Proc:
    """A subprocess in a process group of its own (so its children stop with it),
    its output in LOG_DIR/<name>.log."""

    def __init__(self, name, args, env):
        self.name = name
        self.log_path = LOG_DIR / f"{name}.log"
        with open(self.log_path, "ab") as out:
            self.popen = subprocess.Popen(
                args,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def alive(self):
        return self.popen.poll() is None

    def check_alive(self):
        if not self.alive():
            raise ConformanceError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")

    def log_tail(self, lines=20):
        try:
            return "".join(self.log_path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
        except OSError:
            return ""

    def stop(self):
        """SIGTERM and wait, then SIGKILL the whole group (pool children, stragglers)."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(STOP_TIMEOUT_SECS)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %ss: SIGKILL", self.name, STOP_TIMEOUT_SECS)
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.popen.wait(5)


class FreshDatabase:
    """Database orvanta_conformance_<pid> on the machine's PostgreSQL, dropped at the end."""

    def __init__(self):
        self.name = f"orvanta_conformance_{os.getpid()}"
        self.url = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{self.name}"

    def _admin(self, statement):
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(statement)

    def create(self):
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}"')
        self._admin(f'CREATE DATABASE "{self.name}"')
        return self

    def drop(self):
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class FuzzingServer:
    """`wstest -m fuzzingserver` on a free port, serving the CONFORMANCE_CASES."""

    def __init__(self):
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.proc = None
        self.cases = {}

    def command(self, wstest):
        """The command line of the server, its spec written to RUN_DIR."""
        spec = RUN_DIR / "fuzzingserver.json"
        spec.write_text(
            json.dumps(
                {
                    "url": self.url,
                    "outdir": str(REPORT_DIR),
                    "cases": CASES,
                    "exclude-cases": [],
                    "exclude-agent-cases": {},
                }
            )
        )
        # --webport 0: no embedded web server (it would take port 8080).
        return [wstest, "-m", "fuzzingserver", "--webport", "0", "-s", str(spec)]

    def wait_ready(self, proc):
        """Wait until the server started as `proc` answers; learn its cases."""
        self.proc = proc
        wait_for(self._answers, timeout=START_TIMEOUT_SECS, what=f"the fuzzing server on port {self.port}")
        count = self._ask("getCaseCount")
        # getCaseInfo maps the server's case numbers (runCase?case=<n>) to case ids.
        with ThreadPoolExecutor(8) as pool:
            infos = pool.map(lambda n: self._ask(f"getCaseInfo?case={n}"), range(1, count + 1))
            self.cases = {n: info["id"] for n, info in zip(range(1, count + 1), infos)}

    def _ask(self, path):
        ws = websocket.create_connection(f"{self.url}/{path}", timeout=10)
        try:
            return json.loads(ws.recv())
        finally:
            ws.close()

    def _answers(self):
        self.proc.check_alive()
        try:
            return self._ask("getCaseCount") is not None
        except (OSError, websocket.WebSocketException):
            return False

    def status_socket(self, number, agent):
        """A connection that receives the case's verdict once the case is over (the
        server answers getCaseStatus when the case's connection is gone)."""
        return websocket.create_connection(
            f"{self.url}/getCaseStatus?case={number}&agent={agent}", timeout=CASE_TIMEOUT_SECS
        )

    def verdict(self, number, agent):
        """The verdict of a case that has ended, or None when it never ran."""
        status = self.status_socket(number, agent)
        try:
            status.settimeout(10)
            return json.loads(status.recv())["behavior"]
        except websocket.WebSocketTimeoutException:
            return None
        finally:
            status.close()

    def run_case_url(self, number, agent):
        return f"{self.url}/runCase?case={number}&agent={agent}"

    def update_reports(self):
        """Write the report of every agent (the server closes once it is written)."""
        for agent in AGENTS:
            ws = websocket.create_connection(f"{self.url}/updateReports?agent={agent}", timeout=300)
            try:
                ws.recv_data()
            finally:
                ws.shutdown()


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
            [
                PY,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                "2",
                "-n",
                f"conformance-{os.getpid()}@%h",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
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

    # results

    def results(self):
        """{agent: {case id: verdict}} from the report, "not run" for a missing case."""
        index = json.loads((REPORT_DIR / "index.json").read_text())
        return {
            agent: {
                case_id: index.get(agent, {}).get(case_id, {}).get("behavior", "not run")
                for case_id in self.server.cases.values()
            }
            for agent in AGENTS
        }

    def reason(self, agent, case_id):
        """The server's reason for a verdict, from the case's own report file, and
        whether the harness ended the case (CONFORMANCE_CASE_TIMEOUT_SECS)."""
        entry = json.loads((REPORT_DIR / "index.json").read_text()).get(agent, {}).get(case_id)
        parts = ["no result: the case never ended"]
        if entry is not None:
            report = json.loads((REPORT_DIR / entry["reportfile"]).read_text())
            parts = [report.get("result") or ""]
            if report.get("behaviorClose") not in ("OK", "INFORMATIONAL"):
                parts.append(f"close: {report.get('resultClose')}")
        if case_id in self.harness_timeouts[agent]:
            parts.append(f"ended by the harness after {CASE_TIMEOUT_SECS:g}s")
        return " / ".join(p for p in parts if p)

    def report(self, total_secs):
        results = self.results()
        ids = list(self.server.cases.values())
        groups = sorted({group_of(c) for c in ids}, key=int)
        summary = {"cases": len(ids), "timings": self.timings, "total_secs": round(total_secs, 1), "agents": {}}
        print(f"\nAutobahn|Testsuite fuzzing server, {len(ids)} cases ({', '.join(CASES)})", flush=True)
        for agent in AGENTS:
            verdicts = results[agent]
            limits = "" if agent == CLIENT_AGENT else " (ORVANTA_MAX_MESSAGE_BYTES: default, 32 MiB for group 9)"
            print(f"\n{agent}{limits}")
            header = f"{'group':<22}{'cases':>6}" + "".join(f"{v:>15}" for v in VERDICTS)
            print(header)
            per_group = {}
            for group in [*groups, "all"]:
                in_group = [c for c in ids if group == "all" or group_of(c) == group]
                counts = Counter(verdicts[c] for c in in_group)
                per_group[group] = {v: counts.get(v, 0) for v in VERDICTS}
                label = "all" if group == "all" else f"{group} {GROUPS.get(group, '')}"
                print(f"{label:<22}{len(in_group):>6}" + "".join(f"{counts.get(v, 0):>15}" for v in VERDICTS))
            failed = [c for c in ids if verdicts[c] in FAILING]
            print(f"FAILED or not run ({len(failed)}): {', '.join(failed) or 'none'}")
            for case_id in failed:
                print(f"  {case_id:<8} {verdicts[case_id]:<14} {self.reason(agent, case_id)[:200]}")
            retried = self.retried[agent]
            print(
                f"run again alone after FAILED ({len(retried)}): "
                + (", ".join(f"{c} {first} -> {again}" for c, (first, again) in retried.items()) or "none")
            )
            summary["agents"][agent] = {
                "groups": per_group,
                "failed": {c: verdicts[c] for c in failed},
                "non_strict": [c for c in ids if verdicts[c] == "NON-STRICT"],
                "ended_by_harness": self.harness_timeouts[agent],
                "run_again": {c: {"first": first, "again": again} for c, (first, again) in retried.items()},
            }
        listener, client = results[LISTENER_AGENT], results[CLIENT_AGENT]
        small_failed = [c for c in ids if group_of(c) != LARGE_MESSAGE_GROUP and listener[c] in FAILING]
        listener_only = [c for c in ids if listener[c] in FAILING and client[c] not in FAILING]
        client_only = [c for c in ids if client[c] in FAILING and listener[c] not in FAILING]
        print(f"\nFAILED by the listener only: {', '.join(listener_only) or 'none'}")
        print(f"FAILED by the plain client only: {', '.join(client_only) or 'none'}")
        met = not small_failed and not listener_only
        print(
            f"target (no listener case failed in groups 1-7, none failed that the plain client passes): "
            f"{'met' if met else 'MISSED'}"
        )
        print(f"report: {REPORT_DIR / 'index.html'}; logs: {LOG_DIR}")
        print("time: " + ", ".join(f"{phase} {secs:g}s" for phase, secs in self.timings.items()))
        load = (self.load_at_start, loadavg())
        print(f"load average (1 min, 2 shared cores): {load[0]:g} at the start, {load[1]:g} at the end")
        print(f"total time {total_secs:.0f}s", flush=True)
        summary.update(listener_only=listener_only, client_only=client_only, target_met=met, load_average=load)
        (RUN_DIR / "summary.json").write_text(json.dumps(summary, indent=2))
        return met


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
        met = run.report(time.monotonic() - started)
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
