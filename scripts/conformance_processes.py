"""`make conformance`'s processes: the subprocesses it starts (in process groups of
their own), the fresh PostgreSQL database, and Autobahn's fuzzing server with the
questions asked of it (its cases, a case's verdict, the reports); with the run's error,
its waiting and the machine's load average.
"""

import json
import logging
import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor

import psycopg
import websocket

from scripts.conformance_settings import (
    AGENTS,
    CASE_TIMEOUT_SECS,
    CASES,
    LOG_DIR,
    POSTGRES_ADMIN_URL,
    REPORT_DIR,
    ROOT,
    RUN_DIR,
    START_TIMEOUT_SECS,
    STOP_TIMEOUT_SECS,
)
from tests.support.ports import free_port
from tests.support.wsserver import wait_for as support_wait_for

logger = logging.getLogger(__name__)


class ConformanceError(Exception):
    """The run could not complete."""


def wait_for(predicate, *, timeout, what, interval=0.1):
    """Poll until predicate() is truthy; its value. ConformanceError at the deadline."""
    return support_wait_for(predicate, timeout=timeout, message=what, interval=interval, error=ConformanceError)


def loadavg():
    """The 1-minute load average: the machine is shared, and a busy one makes cases
    miss their deadlines."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


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
