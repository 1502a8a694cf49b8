"""A private redis-server on a free port, for tests that stop and start Redis."""

import subprocess
import tempfile

import redis

from tests.ports import free_port
from tests.wsserver import wait_for


class PrivateRedis:
    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="orvanta-redis-")
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        subprocess.run(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
                "--dir",
                self.dir,
                "--logfile",
                f"{self.dir}/redis.log",
            ],
            check=True,
        )
        wait_for(self.answers, timeout=5, message="the private redis")

    def _admin_client(self):
        # No retries: redis-py's default retries a refused connection with backoff for
        # about 4 s, which made every stop() (SHUTDOWN drops the connection) take 9 s.
        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2, socket_timeout=5, retry=None)

    def answers(self):
        try:
            return self._admin_client().ping()
        except redis.RedisError:
            return False

    def stop(self):
        try:
            self._admin_client().shutdown(nosave=True)
        except redis.RedisError:
            pass
        wait_for(lambda: not self.answers(), timeout=5, message="the private redis to stop")
