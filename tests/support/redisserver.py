"""A private redis-server on a free port, for tests that stop and start Redis."""

import subprocess
import tempfile

import redis

from tests.support.ports import free_port
from tests.support.wsserver import wait_for


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

    def answers(self):
        try:
            return redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
        except redis.RedisError:
            return False

    def stop(self):
        try:
            redis.Redis(port=self.port).shutdown(nosave=True)
        except redis.RedisError:
            pass
        wait_for(lambda: not self.answers(), timeout=5, message="the private redis to stop")
