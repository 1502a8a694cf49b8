"""Subprocesses with their output captured (Process: tests, bench and chaos), and the
product's own processes (runlisteners, celery worker) as subprocesses of a test,
pointed at the test database and this test process's Redis keys."""

import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from django.conf import settings
from django.db import connection


def database_url():
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


# Proxy variables, in either case, are the test's to give (conftest.no_machine_proxies).
PROXY_VARIABLES = {"http_proxy", "https_proxy", "no_proxy"}


def process_env(**extra):
    return {
        **{name: value for name, value in os.environ.items() if name.lower() not in PROXY_VARIABLES},
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "ORVANTA_REDIS_PREFIX": settings.ORVANTA_REDIS_PREFIX,
        **extra,
    }


class Process:
    """A subprocess in a process group of its own (its pool children too), stdout and
    stderr in `log_path` (appended) or, without one, a temporary file. With
    `stdout_pipe`, stdout comes line by line in `lines` (None at its end) instead;
    with `stdin_pipe`, send() writes command lines to it."""

    def __init__(self, args, env, cwd=None, *, name=None, log_path=None, stdout_pipe=False, stdin_pipe=False):
        self.name = name or Path(args[0]).name
        # Output goes to a file, not a pipe: a busy process would fill a pipe nobody
        # reads until stop() and block on its next log line.
        if log_path:
            self._output = open(log_path, "ab")
        else:
            self._output = tempfile.NamedTemporaryFile(prefix="orvanta-process-", suffix=".log")
        self._temporary = not log_path
        self.log_path = Path(self._output.name)
        self.popen = subprocess.Popen(
            args,
            cwd=cwd or settings.BASE_DIR,
            env=env,
            stdout=subprocess.PIPE if stdout_pipe else self._output,
            stderr=self._output if stdout_pipe else subprocess.STDOUT,
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            start_new_session=True,
        )
        self._terminated = False
        self.output = None
        self.killed_at_stop = False
        self.lines = queue.Queue()
        if stdout_pipe:
            threading.Thread(target=self._read_lines, name=f"{self.name}-stdout", daemon=True).start()

    def _read_lines(self):
        for line in self.popen.stdout:
            self.lines.put(line)
        self.lines.put(None)

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def send(self, command):
        """A command line on the process's stdin."""
        self.popen.stdin.write(f"{command}\n".encode())
        self.popen.stdin.flush()

    def signal(self, signum):
        self.popen.send_signal(signum)

    def kill(self):
        """SIGKILL, as a crash would (the process alone: its pool children live on)."""
        self.popen.kill()
        self.popen.wait(5)

    def terminate(self):
        """SIGTERM, once, without waiting (stop() waits): processes stopping side by side."""
        if self.popen.poll() is None and not self._terminated:
            self.popen.send_signal(signal.SIGTERM)
            self._terminated = True

    def kill_group(self):
        """SIGKILL to the whole process group: pool children and stragglers too."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def stop(self, timeout=10):
        """SIGTERM and wait, then SIGKILL the group (killed_at_stop says whether the
        process itself needed it); the output of a process without a log_path (the
        temporary file goes; a log stays where it is)."""
        if self.popen.poll() is None:
            self.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.killed_at_stop = True
        self.kill_group()
        if not self._output.closed:
            if self._temporary:
                self.output = self.log_text()
            self._output.close()
        return self.output

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_lines(self, needle, limit=3):
        """(first `limit` lines of the output containing `needle`, how many there are)."""
        hits = [line for line in self.log_text().splitlines() if needle in line]
        return hits[:limit], len(hits)

    def log_tail(self, lines=15):
        return "".join(line + "\n" for line in self.log_text().splitlines()[-lines:])


def start_listener(listener_id, *, metrics_port=None, **env):
    args = [sys.executable, "manage.py", "runlisteners", "--listener-id", listener_id]
    if metrics_port:
        args += ["--metrics-port", str(metrics_port)]
    return Process(args, process_env(**env))


def worker_command(name, *, concurrency=2, queues=None, loglevel="INFO", quiet_cluster=False):
    """The command line of this project's Celery worker (prefork) named `name`, on
    `queues` (default: every queue the settings declare); `quiet_cluster` turns off
    the gossip, mingle and heartbeat chatter between workers."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "-n",
        f"{name}@%h",
        "--pool",
        "prefork",
        "--concurrency",
        str(concurrency),
        "--loglevel",
        loglevel,
    ]
    if queues:
        command += ["-Q", ",".join(queues)]
    if quiet_cluster:
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    return command


def start_worker(name, *, concurrency=1, **env):
    # The queues tests/settings.py names after the process's ORVANTA_REDIS_PREFIX.
    prefix = env.get("ORVANTA_REDIS_PREFIX", settings.ORVANTA_REDIS_PREFIX)
    queues = [f"{prefix}jobs", f"{prefix}runnables"]
    return Process(worker_command(name, concurrency=concurrency, queues=queues), process_env(**env))
