"""What every scenario needs: a private Redis, a fresh PostgreSQL database, the
product's processes (listeners, a worker) as subprocesses in process groups of their
own, and readers for /proc and the listener's Prometheus metrics.

Times that cross processes are time.monotonic() values: CLOCK_MONOTONIC is one
system-wide clock on Linux, so a stamp taken in a subprocess compares with one taken
here.
"""

import json
import os
import queue
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
RESULTS_DIR = ROOT / "bench" / "results"
LOG_DIR = RESULTS_DIR / "logs"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
POSTGRES_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
T0 = time.monotonic()


class BenchError(Exception):
    """A scenario could not be measured (its row says why)."""


def log(message):
    print(f"[bench +{time.monotonic() - T0:6.1f}s] {message}", flush=True)


def env_int(name, default):
    value = os.environ.get(name)
    return int(float(value)) if value not in (None, "") else default


def env_float(name, default):
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, *, timeout, what, interval=0.05):
    """Poll until predicate() is truthy; its value. BenchError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(int(round(p / 100.0 * len(ordered) + 0.5)) - 1, 0)
    return ordered[min(rank, len(ordered) - 1)]


# /proc


def rss_bytes(pid):
    """Resident set size of `pid` (VmRSS)."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_SIZE


def cpu_seconds(pid):
    """User + system CPU time of `pid` (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_percent(pid, secs):
    """Percent of one core `pid` used over the next `secs` seconds."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(secs)
    c1, t1 = cpu_seconds(pid), time.monotonic()
    return 100.0 * (c1 - c0) / (t1 - t0)


def cpu_percents(pids, secs):
    """Percent of one core each of `pids` used over the same next `secs` seconds."""
    c0, t0 = [cpu_seconds(pid) for pid in pids], time.monotonic()
    time.sleep(secs)
    c1, t1 = [cpu_seconds(pid) for pid in pids], time.monotonic()
    return [100.0 * (b - a) / (t1 - t0) for a, b in zip(c0, c1)]


# Files a process needs beside its sockets to the servers: Redis and database
# connections, pipes, logs, the metrics endpoint.
OTHER_FILES = 256


def ensure_room(connections, what):
    """Make sure `connections` sockets fit: in each process holding one end of them
    (the bench process holds the server ends; a listener or the baseline client the
    others, and they inherit this process's limit), and in the local port range.
    Raises the soft open-files limit up to the hard one if needed, or fails now with a
    clear message rather than with EMFILE half-way through."""
    needed = connections + OTHER_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise BenchError(
                f"{what} needs about {needed:,} open files in each of the bench process (the server ends), "
                f"the listener(s) and the baseline client, but `ulimit -n` allows at most {hard:,}: "
                f"raise it or lower the number of triggers"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = (int(x) for x in f.read().split())
    if high - low + 1 < connections:
        raise BenchError(
            f"{what} opens {connections:,} connections to one server port, but net.ipv4.ip_local_port_range "
            f"({low}-{high}) has only {high - low + 1:,} ports: widen it or lower the number of triggers"
        )


def loadavg():
    """The 1-minute load average (the machine is shared: a busy one skews figures)."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def revision():
    """The product's commit, and the files changed in the working tree (read-only git)."""

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return ""

    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD"), "changed_files": changed}


# Prometheus text


def scrape(port, timeout=2.0):
    """{metric name with labels: value} from a Prometheus endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            values[name] = float(value)
        except ValueError:
            continue
    return values


def metric(port, name, default=0.0):
    try:
        return scrape(port).get(name, default)
    except OSError:
        return None


# Results


@dataclass
class Row:
    """One line of the table: a figure, its target, the value measured and the
    baseline measured in the same run (or, where marked, quoted from the issue)."""

    scenario: str
    figure: str
    unit: str
    target: str = ""
    met: bool | None = None
    measured: float | None = None
    baseline: float | None = None
    baseline_label: str = ""
    higher_is_better: bool = True
    note: str = ""
    error: str | None = None
    # Shown instead of the number when there is none (e.g. "> 40 s": results lost) or
    # when the row holds two (latency: "5.4 / 12.8 ms", p50 / p99).
    measured_shown: str | None = None
    baseline_shown: str | None = None
    ratio_shown: str | None = None

    @property
    def ratio(self):
        if self.measured is None or not self.baseline:
            return None
        return self.measured / self.baseline

    def as_json(self):
        data = asdict(self)
        data["ratio"] = self.ratio
        return data


@dataclass
class ScenarioResult:
    name: str
    status: str = "ok"  # ok | crashed | skipped
    error: str | None = None
    seconds: float = 0.0
    rows: list = field(default_factory=list)
    details: dict = field(default_factory=dict)
    trimmed: list = field(default_factory=list)


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
        self.redis = PrivateRedis().start()
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
            self.redis.stop()

    def reset(self):
        """Between scenarios: nothing running, earlier triggers retired, Redis empty."""
        from bench import product

        self.stop_all()
        product.retire_all()
        self.redis.flush()

    # processes

    def start(self, name, args, *, env=None, **kwargs):
        proc = Proc(name, args, {**self.env, **(env or {})}, **kwargs)
        self.procs.append(proc)
        return proc

    def stop(self, proc, timeout=8.0):
        proc.stop(timeout)
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
                proc.stop(max(deadline - time.monotonic(), 0.1))
            except Exception as exc:
                log(f"stopping {proc.name}: {exc!r}")
        self.procs.clear()

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
            [
                PY,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                str(concurrency),
                "-n",
                f"{name}-{os.getpid()}@%h",
                "--loglevel",
                os.environ.get("BENCH_WORKER_LOGLEVEL", "INFO"),
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
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
