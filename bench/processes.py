"""The bench's fresh PostgreSQL database, and what its clients answer on stdout (the
processes themselves are tests/support/processes.py's Process, their output in
bench/results/logs)."""

import json
import os
import queue
import time

from bench.harness import BenchError

POSTGRES_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


# Redis and PostgreSQL


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


# The clients


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
