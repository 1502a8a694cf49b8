"""Workers as processes: a runlisteners process and prefork Celery workers on a private
PostgreSQL, fed by a real WebSocket server. Under 200 frames/s, while the database
restarts or stops, or a whole worker is killed, every frame must end as exactly one
successful job; slow jobs spread over the pool; each job has its own time limit.

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

from orvanta_triggers.fields import from_storable
from tests.runnables import sleep_then_echo
from tests.support.processes import process_env, start_listener, start_worker
from tests.support.wsserver import wait_for

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

    def __init__(self, postgres, template, server, **env):
        self.postgres = postgres
        self.server = server
        name = f"faults_{uuid.uuid4().hex[:8]}"
        self.database_url = postgres.create_database(name, template=template)
        # Queues, leases and counts of its own: a message an earlier test's worker left
        # (redelivered after that worker was killed, say) must not become a job here.
        self.redis_prefix = f"{settings.ORVANTA_REDIS_PREFIX}{name}:"
        self.env = process_env(
            **{
                "DATABASE_URL": self.database_url,
                "ORVANTA_REDIS_PREFIX": self.redis_prefix,
                "ORVANTA_WORKER_LOST_SECS": "6",
                **env,
            }
        )
        manage("shell", "-c", SEED.format(url=server.url), env=self.env)
        self.processes = []

    def start_listener(self):
        self.processes.append(start_listener("faults-listener", **self._env()))

    def start_worker(self, name, concurrency=2):
        worker = start_worker(name, concurrency=concurrency, **self._env())
        self.processes.append(worker)
        return worker

    def start(self, *workers, concurrency=2):
        """Workers with these names, then a listener; returns once it is connected."""
        for name in workers:
            self.start_worker(name, concurrency=concurrency)
        self.start_listener()
        wait_for(lambda: self.server.open_connections == 1, timeout=20, message="the listener connected")

    def _env(self):
        return {key: value for key, value in self.env.items() if key.startswith(("DATABASE_", "ORVANTA_"))}

    def rows(self):
        """[(msg, status, error name, finished_at)] of every job row; [] while the database is away."""
        try:
            with psycopg.connect(self.database_url, connect_timeout=2) as db:
                rows = db.execute(
                    "SELECT args->>'msg', status, error->>'name', finished_at FROM orvanta_triggers_job"
                ).fetchall()
        except psycopg.OperationalError:
            return []
        # Read past the model: strings come as stored (orvanta_triggers.fields).
        return [(from_storable(msg), *rest) for msg, *rest in rows]

    def runs(self):
        """{message: how many times sleep_then_echo ran it} in this product's processes."""
        return sleep_then_echo.runs(self.redis_prefix)

    def jobs(self):
        """{message: [status, ...]} of every job row."""
        found = {}
        for msg, status, _, _ in self.rows():
            found.setdefault(msg, []).append(status)
        return found

    def stop(self):
        """Stop every process, side by side; their logs go to the test's output (shown on failure)."""
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            print(f"---- {' '.join(process.popen.args[2:5])}\n{process.stop()[-20000:]}")


@pytest.fixture(scope="module")
def migrated_template(private_postgres):
    """The name of a database migrated once, which each test's database copies: migrating
    each one took about 2 s."""
    url = private_postgres.create_database("faults_template")
    manage("migrate", "--noinput", env=process_env(DATABASE_URL=url))
    return "faults_template"


@pytest.fixture
def product_factory(private_postgres, migrated_template, ws_server):
    """product_factory(**env) -> a fresh database with one trigger running sleep_then_echo."""
    made = []

    def make(**env):
        made.append(Product(private_postgres, migrated_template, ws_server, **env))
        return made[-1]

    yield make
    for product in made:
        product.stop()
    if not private_postgres.is_running():
        private_postgres.start()
    for product in made:
        sleep_then_echo.bus.client().delete(sleep_then_echo.runs_key(product.redis_prefix))


@pytest.fixture
def product(product_factory):
    return product_factory()


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


class InBackground(threading.Thread):
    """function(**kwargs) on a thread; result() joins it and returns its value or raises its error."""

    def __init__(self, function, **kwargs):
        super().__init__(daemon=True)
        self._call = lambda: function(**kwargs)
        self._value = self._error = None
        self.start()

    def run(self):
        try:
            self._value = self._call()
        except Exception as exc:
            self._error = exc

    def result(self):
        self.join()
        if self._error is not None:
            raise self._error
        return self._value


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
    product.start("faults-a")
    feeder = InBackground(send_steadily, server=product.server, seconds=6)
    wait_for_load(product)
    product.postgres.restart()
    sent = feeder.result()
    assert_each_sent_frame_is_one_successful_job(product, sent, timeout=60)
    assert set(product.runs().values()) == {1}


def test_a_database_down_for_ten_seconds_loses_no_job(product):
    """PostgreSQL stopped for 10 s under 200 frames/s: workers hold their jobs and record
    every one once it is back."""
    product.start("faults-a")
    feeder = InBackground(send_steadily, server=product.server, seconds=14)
    wait_for_load(product)
    product.postgres.stop()
    time.sleep(10)  # the outage itself, not a wait for a condition
    product.postgres.start()
    sent = feeder.result()
    assert_each_sent_frame_is_one_successful_job(product, sent, timeout=90)
    assert set(product.runs().values()) == {1}


def test_a_killed_worker_costs_seconds_and_no_job(product):
    """A whole worker (main process and pool) SIGKILLed under 200 frames/s: the jobs it
    held run on the other worker within ORVANTA_WORKER_LOST_SECS plus its sweep, and
    every frame is one successful job."""
    doomed = product.start_worker("faults-doomed", concurrency=1)
    product.start()
    feeder = InBackground(send_steadily, server=product.server, seconds=6)
    wait_for_load(product)
    os.killpg(doomed.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    product.start_worker("faults-survivor")
    sent = feeder.result()
    assert_each_sent_frame_is_one_successful_job(product, sent, timeout=60)
    # Worker lost after 6 s, found by a sweep every 1.5 s, plus the survivor's start.
    assert time.monotonic() - killed_at < 30


def test_slow_jobs_spread_over_the_pool(product_factory):
    """40 frames to a script sleeping 0.25 s on one worker with 4 processes take about a
    quarter of 40 x 0.25 s, as one task per job would, not 10 s in one process."""
    product = product_factory()
    product.start("spread", concurrency=4)
    frames = [json.dumps({"sleep": 0.25, "tag": n}) for n in range(40)]
    started = time.monotonic()
    for frame in frames:
        product.server.send_all(frame)
    assert_each_sent_frame_is_one_successful_job(product, frames, timeout=30)
    # Ideal: 40 x 0.25 s / 4 = 2.5 s; sequential in one process: 10 s.
    assert time.monotonic() - started < 5


def test_a_job_past_its_time_limit_fails_alone(product_factory):
    """At ORVANTA_JOB_TIMEOUT_SECS=4, a 60 s job fails with JobTimeout after about 4 s,
    the short jobs sent with it succeed meanwhile, and nothing runs twice."""
    product = product_factory(ORVANTA_JOB_TIMEOUT_SECS="4")
    product.start("limits", concurrency=2)
    hung = json.dumps({"sleep": 60, "tag": "hung"})
    short = [json.dumps({"sleep": 0.05, "tag": n}) for n in range(10)]
    for frame in [hung, *short]:
        product.server.send_all(frame)
    wait_for(
        lambda: len(product.rows()) == 11 and all(row[3] for row in product.rows()), timeout=20, message="11 jobs ended"
    )
    outcomes = {msg: (status, error) for msg, status, error, _ in product.rows()}
    assert outcomes[hung] == ("failure", "JobTimeout")
    assert all(outcomes[frame] == ("success", None) for frame in short)
    assert set(product.runs().values()) == {1}


def test_a_live_workers_long_job_is_not_handed_to_another(product_factory):
    """A job running longer than ORVANTA_WORKER_LOST_SECS on a live worker stays its own:
    the worker renews the message, so the other worker never runs it too."""
    product = product_factory(ORVANTA_WORKER_LOST_SECS="2")
    product.start("long-a", "long-b", concurrency=1)
    frame = json.dumps({"sleep": 6, "tag": "long"})
    product.server.send_all(frame)
    assert_each_sent_frame_is_one_successful_job(product, [frame], timeout=20)
    assert product.runs() == {frame: 1}


def test_a_poison_frame_in_a_burst_fails_alone(product_factory):
    """A burst that workers take as one message, with a frame the script can't parse
    (a STOMP frame, ending with U+0000) in its middle: that job fails with its exact
    frame recorded, and the 49 others succeed."""
    product = product_factory()
    product.start("poison", concurrency=1)
    poison = "MESSAGE\ndestination:/queue/a\n\nbody\x00"
    frames = [json.dumps({"sleep": 0, "tag": n}) for n in range(49)]
    frames.insert(25, poison)
    for frame in frames:
        product.server.send_all(frame)
    wait_for(lambda: len(product.rows()) == 50 and all(row[3] for row in product.rows()), timeout=20, message="50 jobs")
    outcomes = {msg: (status, error) for msg, status, error, _ in product.rows()}
    assert outcomes.pop(poison) == ("failure", "JSONDecodeError")
    assert set(outcomes.values()) == {("success", None)}
