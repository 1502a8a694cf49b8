"""The bench's subprocesses: a private Redis, a fresh PostgreSQL database, and the
product's processes (and clients) in process groups of their own, their output in
bench/results/logs.
"""

import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from bench.harness import LOG_DIR, ROOT, BenchError, log, wait_for
from tests.support.ports import free_port

POSTGRES_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


# Redis and PostgreSQL


class PrivateRedis:
    """A redis-server of our own on a free port: the shared one stays untouched and
    queues start empty."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="orvanta-bench-redis-")
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=10, socket_connect_timeout=2)

    def start(self):
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--protected-mode",
                "no",
                "--maxclients",
                "10000",
                "--logfile",
                str(LOG_DIR / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

        def answers():
            if self.proc.poll() is not None:
                raise BenchError(f"redis-server exited with {self.proc.returncode} (see {LOG_DIR / 'redis.log'})")
            try:
                return self.client().ping()
            except Exception:
                return False

        wait_for(answers, timeout=10, what=f"redis-server on port {self.port}")
        return self

    def flush(self):
        self.client().flushall()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


class FreshDatabase:
    """PostgreSQL database orvanta_bench_<pid>, created here and dropped at the end."""

    def __init__(self):
        self.name = f"orvanta_bench_{os.getpid()}"
        self.url = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{self.name}"
        self.created = False

    def create(self):
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}"')
            admin.execute(f'CREATE DATABASE "{self.name}"')
        self.created = True
        return self

    def drop(self):
        if not self.created:
            return
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.created = False


# The product's processes


class Proc:
    """A subprocess in a process group of its own, its output in bench/results/logs."""

    def __init__(self, name, args, env, *, stdout_pipe=False, stdin_pipe=False):
        self.name = name
        self.log_path = LOG_DIR / f"{name}.log"
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE if stdout_pipe else self._log,
            stderr=self._log,
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            start_new_session=True,
        )
        self._terminated = False
        self.lines = queue.Queue()
        if stdout_pipe:
            threading.Thread(target=self._read_lines, name=f"{name}-stdout", daemon=True).start()

    def _read_lines(self):
        for line in self.popen.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, command):
        """A command line on the client's stdin."""
        self.popen.stdin.write(f"{command}\n".encode())
        self.popen.stdin.flush()

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def kill_group(self):
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def sigkill(self):
        """Kill outright, as a crash would (the whole group: pool children too)."""
        self.kill_group()
        self.popen.wait(5)

    def terminate(self):
        """SIGTERM, once (a second one may mean "hurry" to some programs)."""
        if self.popen.poll() is None and not self._terminated:
            self._terminated = True
            try:
                self.popen.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def stop(self, timeout=8.0):
        """SIGTERM, wait, then SIGKILL the group (pool children and stragglers)."""
        if self.popen.poll() is None:
            self.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} (pid {self.pid}) did not stop within {timeout:g}s: SIGKILL")
        self.kill_group()
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()

    def log_lines(self, needle, limit=3):
        """(first `limit` lines of the log containing `needle`, how many there are)."""
        hits = []
        try:
            with open(self.log_path, errors="replace") as f:
                hits = [line.rstrip() for line in f if needle in line]
        except OSError:
            pass
        return hits[:limit], len(hits)

    def log_tail(self, lines=15):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""


def read_json_line(proc, timeout):
    """The next JSON line a client prints on stdout (clients print one per phase)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError(f"{proc.name}: no answer within {timeout:g}s:\n{proc.log_tail()}")
        try:
            line = proc.lines.get(timeout=min(left, 0.5))
        except queue.Empty:
            continue
        if line is None:
            proc.popen.wait(5)
            raise BenchError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.log_tail()}")
        try:
            return json.loads(line)
        except ValueError:
            continue
