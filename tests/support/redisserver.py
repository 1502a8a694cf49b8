"""A private redis-server on a free port, for tests that stop and start Redis, and for
the bench and chaos runs (their queues start empty; the shared server is never
touched). stop() and start() again keep its port and directory."""

import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import redis

from tests.support.ports import free_port
from tests.support.wsserver import wait_for

START_TIMEOUT_SECS = 10
STOP_TIMEOUT_SECS = 15


class PrivateRedis:
    """`options`: more redis-server arguments (later ones win: chaos turns the AOF on);
    `dir` and `log_path` default to a temporary directory of its own."""

    def __init__(self, *, dir=None, log_path=None, options=()):
        self.port = free_port()
        self.dir = str(dir or tempfile.mkdtemp(prefix="orvanta-redis-"))
        self.log_path = Path(log_path or f"{self.dir}/redis.log")
        self.options = list(options)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "/usr/bin/redis-server",
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
                "--logfile",
                str(self.log_path),
                *self.options,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(self._answers, timeout=START_TIMEOUT_SECS, message=f"the private redis on port {self.port}")
        return self

    def _admin_client(self):
        # No retries: redis-py's default retries a refused connection with backoff for
        # about 4 s, which made every stop() (SHUTDOWN drops the connection) take 9 s.
        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2, socket_timeout=5, retry=None)

    def _answers(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.proc.returncode}; see {self.log_path}")
        try:
            return self._admin_client().ping()
        except redis.RedisError:
            return False

    def client(self):
        return redis.Redis.from_url(self.url, socket_timeout=10, socket_connect_timeout=2)

    def flush(self):
        self.client().flushall()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """Gracefully: SHUTDOWN NOSAVE (an AOF, when on, is still written out)."""
        if not self.running():
            return
        try:
            self._admin_client().shutdown(nosave=True)
        except redis.RedisError:
            pass
        try:
            self.proc.wait(STOP_TIMEOUT_SECS)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self):
        """SIGKILL, as a crash would."""
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def destroy(self):
        """Kill the server if it runs and delete its directory."""
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
