"""The product under faults, as processes: a runlisteners process and Celery workers
on a private PostgreSQL, fed 200 frames/s by a real WebSocket server, while the
database restarts or stops, or a whole worker is killed. Every frame must end as
exactly one successful job.

They run once per suite, in its PostgreSQL pass (their database is their own, so the
SQLite pass would only repeat them).
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from tests.processes import process_env, start_listener, start_worker
from tests.runnables import sleep_then_echo
from tests.wsserver import wait_for

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="run in the suite's PostgreSQL pass"),
    pytest.mark.timeout(240),
]

RATE = 200
SEED = """
from orvanta_triggers import services
workspace = services.create_workspace(slug="faults")
services.create_trigger(workspace=workspace, path="f/faults/feed", url={url!r}, script_path="sleep_then_echo")
"""


def manage(*args, env):
    subprocess.run(
        [sys.executable, "manage.py", *args], cwd=settings.BASE_DIR, env=env, check=True, capture_output=True
    )


class Product:
    """The database, a listener and workers, and what they recorded."""

    def __init__(self, postgres, server):
        self.postgres = postgres
        self.server = server
        self.database_url = postgres.create_database(f"faults_{uuid.uuid4().hex[:8]}")
        self.env = process_env(DATABASE_URL=self.database_url, ORVANTA_WORKER_LOST_SECS="6")
        manage("migrate", "--noinput", env=self.env)
        manage("shell", "-c", SEED.format(url=server.url), env=self.env)
        self.processes = []

    def start_listener(self):
        self.processes.append(start_listener("faults-listener", **self._env()))

    def start_worker(self, name, concurrency=2):
        worker = start_worker(name, concurrency=concurrency, **self._env())
        self.processes.append(worker)
        return worker

    def _env(self):
        return {key: value for key, value in self.env.items() if key.startswith(("DATABASE_", "ORVANTA_"))}

    def jobs(self):
        """{message: [status, ...]} of every job row; {} while the database is away."""
        try:
            with psycopg.connect(self.database_url, connect_timeout=2) as db:
                rows = db.execute("SELECT args->>'msg', status FROM orvanta_triggers_job").fetchall()
        except psycopg.OperationalError:
            return {}
        found = {}
        for msg, status in rows:
            found.setdefault(msg, []).append(status)
        return found

    def stop(self):
        """Stop every process; their logs go to the test's output (shown on failure)."""
        for process in self.processes:
            print(f"---- {' '.join(process.popen.args[2:5])}\n{process.stop()[-20000:]}")


@pytest.fixture
def product(private_postgres, ws_server):
    product = Product(private_postgres, ws_server)
    yield product
    product.stop()
    if private_postgres.is_running() is False:
        private_postgres.start()
    sleep_then_echo.bus.client().delete(sleep_then_echo.runs_key())


def send_steadily(server, *, seconds, rate=RATE):
    """Send numbered frames at `rate` per second for `seconds`, on absolute deadlines;
    the frames sent."""
    sent = []
    start = time.monotonic()
    for number in range(int(seconds * rate)):
        delay = start + number / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        frame = json.dumps({"sleep": 0, "tag": number})
        server.send_all(frame)
        sent.append(frame)
    return sent


def in_background(function, **kwargs):
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("value", function(**kwargs)), daemon=True)
    thread.start()
    return thread, outcome


def wait_for_load(product):
    """Until jobs are being recorded: the fault then hits a running pipeline."""
    wait_for(lambda: len(product.jobs()) >= 100, timeout=20, message="jobs being recorded")


def assert_each_sent_frame_is_one_successful_job(product, sent, *, timeout):
    def all_recorded():
        jobs = product.jobs()
        return all(jobs.get(frame) == ["success"] for frame in sent) and len(jobs) == len(sent)

    try:
        wait_for(all_recorded, timeout=timeout, message=f"{len(sent)} frames recorded as one successful job each")
    except AssertionError:
        jobs = product.jobs()
        missing = [frame for frame in sent if frame not in jobs]
        odd = {frame: statuses for frame, statuses in jobs.items() if statuses != ["success"]}
        raise AssertionError(
            f"{len(missing)} of {len(sent)} frames have no job (first: {missing[:3]}); odd rows: {list(odd.items())[:5]}"
        )


def test_a_database_restart_under_load_loses_no_job(product):
    """PostgreSQL restarted (fast) under 200 frames/s: every frame is one successful job, run once."""
    product.start_worker("faults-a")
    product.start_listener()
    wait_for(lambda: product.server.open_connections == 1, timeout=20, message="the listener connected")
    feeder, outcome = in_background(send_steadily, server=product.server, seconds=6)
    wait_for_load(product)
    product.postgres.restart()
    feeder.join()
    sent = outcome["value"]
    assert_each_sent_frame_is_one_successful_job(product, sent, timeout=60)
    assert set(sleep_then_echo.runs().values()) == {1}


def test_a_database_down_for_ten_seconds_loses_no_job(product):
    """PostgreSQL stopped for 10 s under 200 frames/s: workers hold their jobs and record
    every one once it is back."""
    product.start_worker("faults-a")
    product.start_listener()
    wait_for(lambda: product.server.open_connections == 1, timeout=20, message="the listener connected")
    feeder, outcome = in_background(send_steadily, server=product.server, seconds=14)
    wait_for_load(product)
    product.postgres.stop()
    time.sleep(10)  # the outage itself, not a wait for a condition
    product.postgres.start()
    feeder.join()
    sent = outcome["value"]
    assert_each_sent_frame_is_one_successful_job(product, sent, timeout=90)
    assert set(sleep_then_echo.runs().values()) == {1}


def test_a_killed_worker_costs_seconds_and_no_job(product):
    """A whole worker (main process and pool) SIGKILLed under 200 frames/s: the jobs it
    held run on the other worker within ORVANTA_WORKER_LOST_SECS plus its sweep, and
    every frame is one successful job."""
    doomed = product.start_worker("faults-doomed", concurrency=1)
    product.start_listener()
    wait_for(lambda: product.server.open_connections == 1, timeout=20, message="the listener connected")
    feeder, outcome = in_background(send_steadily, server=product.server, seconds=6)
    wait_for_load(product)
    os.killpg(doomed.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    product.start_worker("faults-survivor")
    feeder.join()
    sent = outcome["value"]
    assert_each_sent_frame_is_one_successful_job(product, sent, timeout=60)
    # Worker lost after 6 s, found by a sweep every 1.5 s, plus the survivor's start.
    assert time.monotonic() - killed_at < 30
