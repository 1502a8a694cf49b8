"""The chaos scenario: sets up the system, inflicts each failure of the timeline in
turn while the feeds write, waits for the jobs, and leaves the accounting to
scripts.chaos.report; everything it started is torn down in cleanup()."""

import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from scripts.chaos.console import ChaosFailure, step
from scripts.chaos.evidence import grep
from scripts.chaos.faults import Faults
from scripts.chaos.feeds import Feeds
from scripts.chaos.knobs import (
    CONNECT_TIMEOUT_SECS,
    DRAIN_TIMEOUT_SECS,
    DROP_MAX_SECS,
    DROP_MIN_SECS,
    KEEP_WORK_DIR,
    LEASE_TTL_SECS,
    N_TRIGGERS,
    PHASE_SECS,
    POISON_EVERY_SECS,
    POISON_FEEDS,
    POISON_KINDS,
    PY,
    RATE,
    ROOT,
    SCRIPT_PATH,
    SEED,
    SETTLE_TIMEOUT_SECS,
    SLEEP_MS,
)
from scripts.chaos.processes import Processes
from scripts.chaos.report import report_run
from scripts.chaos_runnables.chaos_record import message_key
from tests.support.pgserver import PrivatePostgres
from tests.support.processes import worker_command
from tests.support.redisserver import PrivateRedis


class Chaos(Faults):
    """One run: what it started, the moments of its events (`events`), what it found
    out along the way, and its failed assertions (`failures`)."""

    def __init__(self):
        self.rng = random.Random(SEED)
        self.work_dir = tempfile.mkdtemp(prefix="orvanta-chaos-")
        self.log_dir = tempfile.mkdtemp(prefix="orvanta-chaos-logs-")
        self.exec_log_path = Path(self.log_dir) / "executions.log"
        self.redis = None
        self.procs = None
        self.feeds = None
        self.postgres = None
        self.django_ready = False
        self.events = {}
        self.failures = []

    def check(self, condition, message):
        if not condition:
            self.failures.append(message)
        return condition

    def run(self):
        """The whole timeline (the package's docstring), then the report."""
        step(f"chaos seed {SEED}; work dir {self.work_dir}; logs {self.log_dir}")
        env = self.start_stores()
        self.procs = Processes(env, self.log_dir)
        self.migrate(env)
        self.setup_django()
        from orvanta_triggers.models import WebSocketTrigger

        self.start_feeds()
        self.create_triggers()
        self.start_listeners_and_workers()
        self.wait_connected(WebSocketTrigger)
        self.events["connected"] = time.time()
        self.inflict_failures(WebSocketTrigger)
        self.stop_sending()
        self.drain()
        self.check_final_connections(WebSocketTrigger)
        self.stop_listeners_and_workers()
        report_run(self)

    # Setting up

    def start_stores(self):
        """The private Redis and PostgreSQL; the environment of every process (this one's
        included) pointing at them."""
        self.redis = PrivateRedis(
            dir=self.work_dir,
            log_path=Path(self.log_dir) / "redis.log",
            # Never rewritten: broker_trace replays the whole history from the AOF.
            options=["--appendonly", "yes", "--appendfsync", "always", "--auto-aof-rewrite-percentage", "0"],
        )
        self.redis.start()
        step(f"private redis-server on port {self.redis.port} (appendonly, appendfsync always)")
        self.postgres = PrivatePostgres()
        self.postgres.start()
        database_url = self.postgres.create_database("orvanta_chaos")
        step(f"private PostgreSQL ({self.postgres.bin_dir}) on port {self.postgres.port}, data in {self.postgres.dir}")
        env = dict(os.environ)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.settings",
                # Production settings refuse to start without a secret of their own.
                "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or os.urandom(32).hex(),
                "DATABASE_URL": database_url,
                "REDIS_URL": self.redis.url,
                "ORVANTA_LEASE_TTL_SECS": f"{LEASE_TTL_SECS:g}",
                "ORVANTA_JOB_TIMEOUT_SECS": "20",
                "ORVANTA_ALLOW_PRIVATE_URLS": "true",
                "ORVANTA_BACKOFF_MAX_SECS": "2",
                "ORVANTA_RECONCILE_INTERVAL_SECS": "0.5",
                "ORVANTA_RUNNABLE_PACKAGES": "runnables,scripts.chaos_runnables",
                "CHAOS_EXEC_LOG": str(self.exec_log_path),
                "CHAOS_SLEEP_MS": SLEEP_MS,
                "PYTHONUNBUFFERED": "1",
                "LOG_LEVEL": "INFO",
            }
        )
        env.pop("ORVANTA_REDIS_PREFIX", None)
        os.environ.update(env)
        os.environ.pop("ORVANTA_REDIS_PREFIX", None)
        return env

    @staticmethod
    def migrate(env):
        migrate = subprocess.run(
            [PY, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
        )
        if migrate.returncode != 0:
            raise ChaosFailure(f"migrate failed:\n{migrate.stdout}\n{migrate.stderr}")
        step("migrated")

    def setup_django(self):
        """This process reads the database (triggers, jobs) through the models."""
        import django

        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        django.setup()
        self.django_ready = True
        logging.getLogger("websockets").setLevel(logging.WARNING)

    def start_feeds(self):
        self.feeds = Feeds(N_TRIGGERS, RATE, self.rng).start()
        step(
            f"{N_TRIGGERS} feeds on ws://127.0.0.1:{self.feeds.port}/t/<i>, {RATE:g} msg/s each, "
            f"server drops every {DROP_MIN_SECS:g}-{DROP_MAX_SECS:g}s; feeds 0-{POISON_FEEDS - 1} also send "
            f"a poison frame every {POISON_EVERY_SECS:g}s ({', '.join(POISON_KINDS)} in turn)"
        )

    def create_triggers(self):
        from orvanta_triggers import services

        self.workspace = services.create_workspace(slug="chaos")
        self.trigger_paths = {}
        for i in range(N_TRIGGERS):
            trigger = services.create_trigger(
                workspace=self.workspace, path=f"f/chaos/t{i:02d}", url=self.feeds.url(i), script_path=SCRIPT_PATH
            )
            self.trigger_paths[i] = trigger.path
        step(f"workspace 'chaos' and {N_TRIGGERS} triggers created (script {SCRIPT_PATH}, no filters)")

    def start_listeners_and_workers(self):
        for name in ("w1", "w2"):
            self.procs.start(name, worker_command(name, concurrency=2))
        for name in ("L1", "L2"):
            self.procs.start(name, [PY, "manage.py", "runlisteners", "--listener-id", name])
        step(
            f"started workers w1 (pid {self.procs.procs['w1'].pid}), w2 (pid {self.procs.procs['w2'].pid}) "
            f"and listeners L1 (pid {self.procs.procs['L1'].pid}), L2 (pid {self.procs.procs['L2'].pid})"
        )

    # Timeline steps

    def inflict_failures(self, WebSocketTrigger):
        """Each failure in turn, with a phase of traffic after it."""
        self.phase("steady state")

        self.restart_redis()
        self.phase("after the Redis restart")

        self.restart_postgres()
        self.phase("after the PostgreSQL restart")

        self.stop_postgres()
        self.phase("after the PostgreSQL outage")

        self.kill_worker_child()
        self.phase("after the pool process kill")

        self.kill_listener(WebSocketTrigger)
        remaining = PHASE_SECS - (time.time() - self.events["L1_killed"])
        self.phase("after the listener kill", max(remaining, 0))

    def stop_sending(self):
        self.feeds.stop_dropping()
        self.feeds.stop_sending()
        self.events["sending_stopped"] = time.time()
        step(
            f"feeds stopped sending ({len(self.feeds.writes)} messages written, "
            f"{len(self.feeds.poison)} of them poison frames)"
        )

    def stop_listeners_and_workers(self):
        self.events["stopping"] = time.time()
        step("stopping listeners and workers (SIGTERM)")
        self.procs.stop(["L2", "L1"])
        self.procs.stop(["w1", "w2"])
        step("all stopped")

    def phase(self, label, secs=PHASE_SECS):
        step(f"running {secs:.0f}s ({label})")
        deadline = time.time() + secs
        while time.time() < deadline:
            self.check_alive(label)
            time.sleep(0.2)

    def check_alive(self, label):
        """Listeners and workers must not die (except L1, killed on purpose)."""
        for name in ("L1", "L2", "w1", "w2"):
            if name == "L1" and "L1_killed" in self.events:
                continue
            if not self.procs.alive(name):
                lines = (
                    grep(self.procs.logs[name], ["Unrecoverable error"], 1)[0]
                    or grep(self.procs.logs[name], ["CRITICAL", "Error"], 3)[0]
                )
                raise ChaosFailure(
                    f"{name} (pid {self.procs.procs[name].pid}) exited unexpectedly with code "
                    f"{self.procs.procs[name].popen.returncode} ({label}); see {self.procs.logs[name]}; "
                    f"its log says: {lines}"
                )

    def wait_connected(self, WebSocketTrigger):
        step("waiting until every trigger is connected")
        deadline = time.time() + CONNECT_TIMEOUT_SECS
        while True:
            statuses = dict(WebSocketTrigger.objects.filter(workspace=self.workspace).values_list("path", "status"))
            live = self.feeds.live_counts()
            if all(s == "connected" for s in statuses.values()) and all(live.values()):
                break
            if time.time() > deadline:
                raise ChaosFailure(f"not every trigger connected within {CONNECT_TIMEOUT_SECS}s: {statuses}")
            time.sleep(0.2)
        holders = Counter(
            WebSocketTrigger.objects.filter(workspace=self.workspace).values_list("listener_id", flat=True)
        )
        step(f"all {N_TRIGGERS} triggers connected (held: {dict(sorted(holders.items()))})")

    # End of the run

    def written_to_l1(self, cid):
        """The connection was one of L1's live sockets when it was killed."""
        return "L1_killed" in self.events and cid in self.l1_conns

    def lost_with_l1(self, cid, t):
        """Written to L1's socket at or after its death: no process could read it."""
        return self.written_to_l1(cid) and t >= self.events["L1_killed"]

    def drain(self):
        from orvanta_triggers.models import Job

        step(f"waiting (at most {DRAIN_TIMEOUT_SECS:g}s) for every message's job to succeed")
        deadline = time.time() + DRAIN_TIMEOUT_SECS
        with self.feeds.lock:
            writes = list(self.feeds.writes)
        need = {key for cid, _, key, t in writes if not self.lost_with_l1(cid, t)}
        done = {}  # job id -> key, of the successful jobs seen so far
        last_report = 0
        while True:
            rows = list(Job.objects.filter(workspace=self.workspace).values_list("id", "status"))
            new = [job_id for job_id, status in rows if status == "success" and job_id not in done]
            for i in range(0, len(new), 500):
                for job_id, args in Job.objects.filter(id__in=new[i : i + 500]).values_list("id", "args"):
                    done[job_id] = message_key((args or {}).get("msg", ""))
            pending = sum(1 for _, status in rows if status in ("queued", "running"))
            missing = need - set(done.values())
            if not missing and not pending:
                step(f"all {len(need)} expected messages have a successful job")
                break
            if time.time() > deadline:
                step(f"gave up waiting: {len(missing)} messages without a successful job, {pending} jobs pending")
                break
            self.check_alive("while waiting for the jobs")
            if time.time() - last_report > 10:
                last_report = time.time()
                queue = self._broker_counts()
                step(
                    f"  ...{len(missing)} messages still without a successful job, {pending} running/queued rows, "
                    f"broker: {queue}"
                )
            time.sleep(0.5)
        self.events["drained"] = time.time()

    def _broker_counts(self):
        try:
            client = self.redis.client()
            return {"queued": client.llen("celery"), "unacked": client.hlen("unacked")}
        except Exception as exc:
            return {"error": repr(exc)}

    def check_final_connections(self, WebSocketTrigger):
        deadline = time.time() + SETTLE_TIMEOUT_SECS
        while True:
            live = self.feeds.live_counts()
            statuses = dict(WebSocketTrigger.objects.filter(workspace=self.workspace).values_list("path", "status"))
            ok = all(n == 1 for n in live.values()) and all(s == "connected" for s in statuses.values())
            if ok or time.time() > deadline:
                break
            time.sleep(0.2)
        self.final_live = live
        self.final_status = statuses
        self.final_holders = Counter(
            WebSocketTrigger.objects.filter(workspace=self.workspace).values_list("listener_id", flat=True)
        )
        self.broker_at_end = self._broker_counts()
        step(
            f"final state: server-side connections per trigger {sorted(Counter(live.values()).items())}, "
            f"DB statuses {dict(Counter(statuses.values()))}, holders {dict(self.final_holders)}"
        )

    def cleanup(self, keep_broker_data=False):
        if self.procs is not None:
            try:
                self.procs.stop_all()
            except Exception as exc:
                print(f"cleanup: processes: {exc!r}", flush=True)
        if self.feeds is not None:
            self.feeds.shutdown()
        if self.redis is not None:
            try:
                self.redis.stop()
            except Exception:
                self.redis.kill()
        if self.django_ready:
            try:
                from django.db import connections

                connections.close_all()
            except Exception:
                pass
        if self.postgres is not None:
            if self.postgres.log_path.exists():
                shutil.copy(self.postgres.log_path, Path(self.log_dir) / "postgres.log")
            try:
                self.postgres.destroy()
            except Exception as exc:
                print(f"cleanup: could not remove the private PostgreSQL server: {exc!r}", flush=True)
        aof = Path(self.work_dir) / "appendonlydir"
        if (keep_broker_data or KEEP_WORK_DIR) and aof.is_dir():
            shutil.copytree(aof, Path(self.log_dir) / "redis-aof", dirs_exist_ok=True)
        if KEEP_WORK_DIR:
            print(f"work dir kept (CHAOS_KEEP_WORK_DIR): {self.work_dir}", flush=True)
        else:
            shutil.rmtree(self.work_dir, ignore_errors=True)
