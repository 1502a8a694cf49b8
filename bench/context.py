"""The Bench the scenarios share: the environment, Redis, the database and the
processes started (listeners, workers, clients), set up once and torn down at the end.
"""

import os
import subprocess
import sys
import time

from bench.harness import LOG_DIR, PY, ROOT, BenchError, log, wait_for
from bench.processes import FreshDatabase
from bench.readers import metric
from tests.support.ports import free_port
from tests.support.processes import Process, worker_command
from tests.support.redisserver import PrivateRedis


class Bench:
    """The shared context: environment, Redis, database, started processes."""

    def __init__(self):
        self.redis = None
        self.db = None
        self.env = None
        self.procs = []
        self.trimmed = []
        self.prefix = f"bench{os.getpid()}:"

    # set-up and tear-down

    def setup(self):
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        for old in [*LOG_DIR.glob("*.log"), *LOG_DIR.glob("spec-*.json")]:
            old.unlink()
        self.redis = PrivateRedis(log_path=LOG_DIR / "redis.log").start()
        log(f"private redis-server on port {self.redis.port}")
        self.db = FreshDatabase().create()
        log(f"PostgreSQL database {self.db.name}")
        env = dict(os.environ)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.settings",
                "DJANGO_DEBUG": "false",
                # Production settings refuse to start without a secret of their own.
                "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or os.urandom(32).hex(),
                "DATABASE_URL": self.db.url,
                "REDIS_URL": self.redis.url,
                "ORVANTA_ALLOW_PRIVATE_URLS": "true",
                "ORVANTA_REDIS_PREFIX": self.prefix,
                "ORVANTA_RUNNABLE_PACKAGES": "runnables,bench.runnables",
                "PYTHONUNBUFFERED": "1",
                "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
            }
        )
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.pop("ORVANTA_WORKER_METRICS_PORT", None)
        self.env = env
        os.environ.update(env)
        migrate = subprocess.run(
            [PY, "manage.py", "migrate", "--noinput"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if migrate.returncode != 0:
            raise BenchError(f"migrate failed:\n{migrate.stdout[-2000:]}\n{migrate.stderr[-2000:]}")
        log("migrated")
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        import logging

        logging.getLogger("websockets").setLevel(logging.CRITICAL)
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)

    def teardown(self):
        self.stop_all()
        try:
            from django.db import connections

            connections.close_all()
        except Exception:
            pass
        if self.db is not None:
            try:
                self.db.drop()
                log(f"dropped database {self.db.name}")
            except Exception as exc:
                log(f"could not drop database {self.db.name}: {exc!r}")
        if self.redis is not None:
            self.redis.destroy()

    def reset(self):
        """Between scenarios: nothing running, earlier triggers retired, Redis empty."""
        from bench import product

        self.stop_all()
        product.retire_all()
        self.redis.flush()

    # processes

    def start(self, name, args, *, env=None, **kwargs):
        env = {**self.env, **(env or {})}
        proc = Process(args, env, ROOT, name=name, log_path=LOG_DIR / f"{name}.log", **kwargs)
        self.procs.append(proc)
        return proc

    def stop(self, proc, timeout=8.0):
        self._stop(proc, timeout)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self, timeout=8.0):
        # SIGTERM to all at once: they stop side by side within one deadline, not one
        # after the other (three slow listeners would take three timeouts).
        procs = list(reversed(self.procs))
        for proc in procs:
            proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                self._stop(proc, max(deadline - time.monotonic(), 0.1))
            except Exception as exc:
                log(f"stopping {proc.name}: {exc!r}")
        self.procs.clear()

    @staticmethod
    def _stop(proc, timeout):
        proc.stop(timeout)
        if proc.killed_at_stop:
            log(f"{proc.name} (pid {proc.pid}) did not stop within {timeout:g}s: SIGKILL")

    def start_listener(self, name, *, env=None):
        """`manage.py runlisteners` with its metrics on a free port; returns
        (proc, metrics port) once the metrics answer."""
        port = free_port()
        proc = self.start(
            name, [PY, "manage.py", "runlisteners", "--listener-id", name, "--metrics-port", str(port)], env=env
        )

        def up():
            if not proc.alive():
                raise BenchError(f"listener {name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
            return metric(port, "orvanta_listener_frames_dispatched_total") is not None

        wait_for(up, timeout=30, what=f"listener {name} metrics on port {port}", interval=0.1)
        return proc, port

    def start_worker(self, name="worker", *, concurrency=2, env=None):
        """One `celery -A config worker` (prefork), returned once it says ready."""
        proc = self.start(
            name,
            worker_command(
                f"{name}-{os.getpid()}",
                concurrency=concurrency,
                loglevel=os.environ.get("BENCH_WORKER_LOGLEVEL", "INFO"),
                quiet_cluster=True,
            ),
            env=env,
        )

        def ready():
            if not proc.alive():
                raise BenchError(f"worker exited with {proc.popen.returncode}:\n{proc.log_tail()}")
            try:
                with open(proc.log_path, errors="replace") as f:
                    return " ready." in f.read()
            except OSError:
                return False

        wait_for(ready, timeout=60, what="the Celery worker to be ready", interval=0.2)
        return proc

    def client(self, name, args, **kwargs):
        """A bench client (bench/clients.py) in a subprocess."""
        return self.start(name, [PY, "-m", "bench.clients", *args], **kwargs)

    def trim(self, scenario, what):
        self.trimmed.append(f"{scenario}: {what}")
        log(f"trimmed: {scenario}: {what}")
