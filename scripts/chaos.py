"""`make chaos`: the whole system (2 listeners, 2 Celery workers, a private Redis, a
private PostgreSQL server, 20 WebSocket feeds) under failures, with exact accounting
of every message the feeds wrote.

The feeds send numbered JSON messages; the first CHAOS_POISON_FEEDS of them also send
a poison frame every CHAOS_POISON_EVERY_SECS, in turn: text with U+0000 (a STOMP
MESSAGE frame), a 200,000-deep JSON array, a ~0.9 MB text frame and a binary frame.
Each carries a `poison:<trigger>-<seq>` tag (a prefix, the innermost string of the
array, the first bytes of the binary payload) that the chaos runnable and the
accounting recover (scripts/chaos_runnables/chaos_record.py: message_key).

Timeline: all triggers connected -> run -> graceful Redis restart -> run ->
PostgreSQL fast restart (pg_ctl restart -m fast) -> run -> PostgreSQL stopped for
CHAOS_PG_DOWN_SECS -> run -> SIGKILL of a pool process of worker w1 while it runs a
job -> run -> SIGKILL of listener L1 (frozen with SIGSTOP a few ms before, to read its
sockets exactly) -> run -> stop the feeds -> wait for the jobs -> stop everything ->
summary + assertions:

  (a) every message written, poison frames included, produced exactly one Job row,
      status success, on its trigger, whose msg (the base64 of the payload for a
      binary frame) and result (what the runnable saw) are exactly what was sent;
      duplicate executions, counted from the chaos runnable's execution log, are
      allowed only for the killed pool process's message and around the Redis
      restart;
  (b) the only messages without a job were written to L1's sockets at or after the
      moment L1 was frozen; one written to L1 before that and lost fails the run
      (how long before the kill each was written is printed);
  (c) no trigger ever had two live connections at once (server side);
  (d) every trigger is connected at the end (DB status and exactly one server-side
      connection each);
  plus: L1's triggers are taken over within ORVANTA_LEASE_TTL_SECS + 2 s, and no
  listener socket is closed while Redis or PostgreSQL is away.

Everything it starts (Redis, PostgreSQL, listeners, workers, feeds, work dir) is torn
down in `finally`, even on failure; the process logs (PostgreSQL's included) stay in
a logs directory whose path is printed at the end.

Knobs (environment): CHAOS_TRIGGERS (20), CHAOS_RATE (messages/s per trigger, 2),
CHAOS_PHASE_SECS (20), CHAOS_DROP_MIN_SECS/CHAOS_DROP_MAX_SECS (5/15),
CHAOS_REDIS_DOWN_SECS (3), CHAOS_PG_DOWN_SECS (10), CHAOS_POISON_FEEDS (4),
CHAOS_POISON_EVERY_SECS (3), CHAOS_SLEEP_MS (job duration range, "20-60"),
CHAOS_DRAIN_TIMEOUT_SECS (150), CHAOS_SEED, CHAOS_KEEP_WORK_DIR (1: keep the work dir,
e.g. the broker's AOF). On failure the broker's AOF is copied next to the logs
(redis-aof/).

The private PostgreSQL server is tests/pgserver.py's PrivatePostgres (its own
cluster on a free port, run as the postgres OS user when run as root), shared with
the suite's database-fault tests rather than copied.
"""

import asyncio
import base64
import collections
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

from scripts.chaos_runnables.chaos_record import message_key
from tests.pgserver import PrivatePostgres

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def _env_float(name, default):
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


N_TRIGGERS = int(_env_float("CHAOS_TRIGGERS", 20))
RATE = _env_float("CHAOS_RATE", 2.0)
PHASE_SECS = _env_float("CHAOS_PHASE_SECS", 20)
DROP_MIN_SECS = _env_float("CHAOS_DROP_MIN_SECS", 5)
DROP_MAX_SECS = _env_float("CHAOS_DROP_MAX_SECS", 15)
REDIS_DOWN_SECS = _env_float("CHAOS_REDIS_DOWN_SECS", 3)
PG_DOWN_SECS = _env_float("CHAOS_PG_DOWN_SECS", 10)
POISON_FEEDS = int(_env_float("CHAOS_POISON_FEEDS", 4))
POISON_EVERY_SECS = _env_float("CHAOS_POISON_EVERY_SECS", 3)
DRAIN_TIMEOUT_SECS = _env_float("CHAOS_DRAIN_TIMEOUT_SECS", 150)
SLEEP_MS = os.environ.get("CHAOS_SLEEP_MS", "20-60")
SEED = int(_env_float("CHAOS_SEED", time.time_ns() % 1_000_000))
KEEP_WORK_DIR = os.environ.get("CHAOS_KEEP_WORK_DIR", "") not in ("", "0")

LEASE_TTL_SECS = 5.0
TAKEOVER_LIMIT_SECS = LEASE_TTL_SECS + 2.0
CONNECT_TIMEOUT_SECS = 60
SETTLE_TIMEOUT_SECS = 20
STOP_TIMEOUT_SECS = 20
DROP_CODES = (1000, 1001, 1011, 1012, 1013, 1014, 3000, 4000, 4321)
SCRIPT_PATH = "chaos_record"
POISON_KINDS = ("nul", "deep", "big", "binary")
DEEP_LEVELS = 200_000
BIG_BYTES = 900_000
BINARY_BYTES = 4096
# Summary only: how many messages were written to L1 this close to its death.
NEAR_KILL_SECS = 0.05

T0 = time.time()


def clock(t):
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int((t % 1) * 1000):03d}"


def step(message):
    now = time.time()
    print(f"[{clock(now)} +{now - T0:6.1f}s] {message}", flush=True)


class ChaosFailure(Exception):
    pass


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# /proc helpers (Linux)


def children_of(pid):
    """Pids whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def client_ports(pid, server_port):
    """Local ports of `pid`'s TCP sockets connected to 127.0.0.1:server_port."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 10 or parts[9] not in inodes:
                continue
            if int(parts[2].rsplit(":", 1)[1], 16) == server_port:
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


# The WebSocket feeds: one server, one path per trigger, in a thread of its own


def poison_frame(kind, tag, rng):
    """(frame to send, the msg its job must get): a frame that used to break the
    product, carrying `tag`; bytes for a binary frame, whose job's msg is its base64."""
    if kind == "nul":
        return f"{tag}:MESSAGE\ndestination:/q\n\nbody\x00", None
    if kind == "deep":
        return "[" * DEEP_LEVELS + json.dumps(tag) + "]" * DEEP_LEVELS, None
    if kind == "big":
        # 3-byte UTF-8 characters: about 0.9 MB on the wire, a third of that in code points.
        return f"{tag}:" + "\u20ac" * ((BIG_BYTES - len(tag) - 1) // 3), None
    payload = tag.encode() + b"\x00\xff" + rng.randbytes(BINARY_BYTES)
    return payload, base64.b64encode(payload).decode("ascii")


def digest(msg):
    """sha256 of a job's msg (any str, lone surrogates included)."""
    return hashlib.sha256(msg.encode("utf-8", "surrogatepass")).hexdigest()


class Feeds:
    def __init__(self, n_triggers, rate, rng):
        self.n = n_triggers
        self.rate = rate
        self.rng = rng
        self.lock = threading.Lock()
        self.writes = []  # (conn id, trigger, key, t) written
        self.failed_writes = []  # (conn id, trigger, key, t, error) not (surely) written
        self.poison = {}  # key -> (kind, digest of the msg its job must get)
        self.conns = {}  # conn id -> info dict
        self.live = defaultdict(set)
        self.max_live = defaultdict(int)
        self.overlaps = []
        self.sending = True
        self.dropping = True
        self._sockets = {}
        self._next_id = 0
        self._seq = defaultdict(int)
        self._poisons_sent = defaultdict(int)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="feeds", daemon=True)
        self._server = None
        self._tickers = []
        self.port = None

    # called from the main thread

    def start(self):
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def url(self, index):
        return f"ws://127.0.0.1:{self.port}/t/{index}"

    def stop_dropping(self):
        self.dropping = False

    def stop_sending(self):
        self.sending = False
        asyncio.run_coroutine_threadsafe(self._join_tickers(), self._loop).result(10)

    def live_counts(self):
        with self.lock:
            return {i: len(self.live[i]) for i in range(self.n)}

    def shutdown(self):
        if not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        except Exception as exc:
            print(f"feeds: unclean stop: {exc!r}", flush=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # on the loop

    async def _start(self):
        from websockets.asyncio.server import serve

        self._server = await serve(self._handle, "127.0.0.1", 0, ping_interval=None, compression=None, close_timeout=5)
        self.port = self._server.sockets[0].getsockname()[1]
        self._tickers = [asyncio.ensure_future(self._ticker(i)) for i in range(self.n)]

    async def _join_tickers(self):
        await asyncio.gather(*self._tickers, return_exceptions=True)

    async def _stop(self):
        self.sending = False
        self.dropping = False
        for task in self._tickers:
            task.cancel()
        self._server.close()
        await asyncio.wait_for(self._server.wait_closed(), 8)

    async def _handle(self, ws):
        path = ws.request.path
        try:
            index = int(path.rsplit("/", 1)[1])
            assert path.startswith("/t/") and 0 <= index < self.n
        except (ValueError, IndexError, AssertionError):
            await ws.close(4404, "unknown feed")
            return
        now = time.time()
        with self.lock:
            cid = self._next_id
            self._next_id += 1
            info = {
                "id": cid,
                "trigger": index,
                "port": ws.remote_address[1],
                "opened": now,
                "closed": None,
                "closed_by": None,
                "code": None,
                "drop_code": None,
                "writes": 0,
            }
            self.conns[cid] = info
            self._sockets[cid] = ws
            self.live[index].add(cid)
            count = len(self.live[index])
            self.max_live[index] = max(self.max_live[index], count)
            if count > 1:
                others = [(c, self.conns[c]["port"], clock(self.conns[c]["opened"])) for c in self.live[index]]
                self.overlaps.append((now, index, others))
        dropper = asyncio.ensure_future(self._dropper(ws, info))
        try:
            async for _ in ws:
                pass
        except Exception:
            pass
        finally:
            dropper.cancel()
            with self.lock:
                self.live[index].discard(cid)
                self._sockets.pop(cid, None)
                info["closed"] = time.time()
                info["code"] = ws.close_code
                if info["drop_code"] is not None:
                    info["closed_by"] = "server"
                elif ws.close_code == 1006 or ws.close_code is None:
                    info["closed_by"] = "abnormal"
                else:
                    info["closed_by"] = "client"

    async def _dropper(self, ws, info):
        await asyncio.sleep(self.rng.uniform(DROP_MIN_SECS, DROP_MAX_SECS))
        if not self.dropping:
            return
        code = self.rng.choice(DROP_CODES)
        info["drop_code"] = code
        info["drop_at"] = time.time()
        try:
            await ws.close(code, "chaos drop")
        except Exception:
            pass

    async def _ticker(self, index):
        period = 1.0 / self.rate
        next_at = self._loop.time() + self.rng.uniform(0, period)
        poison_at = self._loop.time() + self.rng.uniform(0, POISON_EVERY_SECS)
        while self.sending:
            await asyncio.sleep(max(next_at - self._loop.time(), 0))
            next_at += period
            if not self.sending:
                break
            key = json.dumps({"trigger": index, "seq": self._next_seq(index)})
            await self._send(index, key, key)
            if index < POISON_FEEDS and self._loop.time() >= poison_at:
                poison_at += POISON_EVERY_SECS
                kind = POISON_KINDS[self._poisons_sent[index] % len(POISON_KINDS)]
                self._poisons_sent[index] += 1
                key = f"poison:{index}-{self._next_seq(index)}"
                frame, job_msg = poison_frame(kind, key, self.rng)
                self.poison[key] = (kind, digest(job_msg or frame))
                await self._send(index, key, frame)

    def _next_seq(self, index):
        self._seq[index] += 1
        return self._seq[index]

    async def _send(self, index, key, frame):
        from websockets.exceptions import ConnectionClosed

        with self.lock:
            targets = [(cid, self._sockets[cid]) for cid in self.live[index] if cid in self._sockets]
        for cid, ws in targets:
            t = time.time()
            try:
                await ws.send(frame)
            except ConnectionClosed as exc:
                with self.lock:
                    self.failed_writes.append((cid, index, key, t, repr(exc)))
                continue
            with self.lock:
                self.writes.append((cid, index, key, t))
                self.conns[cid]["writes"] += 1


# Processes


class Processes:
    def __init__(self, env, log_dir):
        self.env = env
        self.log_dir = Path(log_dir)
        self.procs = {}
        self.logs = {}

    def start(self, name, args):
        log = self.log_dir / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                args,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.procs[name] = proc
        self.logs[name] = log
        return proc

    def alive(self, name):
        return self.procs[name].poll() is None

    def stop(self, names, timeout=STOP_TIMEOUT_SECS):
        """SIGTERM, wait, then SIGKILL what is left, and the leftovers of their
        process groups (pool children)."""
        names = [n for n in names if n in self.procs]
        for name in names:
            proc = self.procs[name]
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for name in names:
            proc = self.procs[name]
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                step(f"{name} did not stop within {timeout:g}s: SIGKILL")
                proc.kill()
                proc.wait(5)
            self._kill_group(proc)

    @staticmethod
    def _kill_group(proc):
        # Started with start_new_session: its pgid is its pid. Kill stragglers only.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop_all(self):
        self.stop(list(self.procs))


class PrivateRedis:
    def __init__(self, data_dir, log_dir):
        self.port = free_port()
        self.data_dir = data_dir
        self.log = Path(log_dir) / "redis.log"
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.cli = shutil.which("redis-cli")
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=2)

    def start(self):
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.data_dir),
                "--save",
                "",
                # Never rewritten: broker_trace replays the whole history from the AOF.
                "--auto-aof-rewrite-percentage",
                "0",
                "--logfile",
                str(self.log),
                "--protected-mode",
                "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ChaosFailure(f"redis-server exited with {self.proc.returncode}; see {self.log}")
            try:
                if self.client().ping():
                    return
            except Exception:
                time.sleep(0.05)
        raise ChaosFailure(f"redis-server on port {self.port} did not answer within 10s")

    def shutdown(self):
        """Graceful: SHUTDOWN (the AOF is fsynced on every write anyway)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.cli:
            subprocess.run([self.cli, "-p", str(self.port), "shutdown"], capture_output=True, timeout=15)
        else:
            try:
                self.client().shutdown()
            except Exception:
                pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class ExecLog:
    """Tails the chaos runnable's execution log."""

    def __init__(self, path):
        self.path = path
        self._offset = 0
        self._partial = b""
        self.starts = []  # (pid, t, message key)
        self.ends = []
        self.running = {}  # pid -> (message key, t) started and not ended

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            kind, pid, t, msg = line.decode().split("\t", 3)
            pid, t = int(pid), float(t)
            if kind == "S":
                self.starts.append((pid, t, msg))
                self.running[pid] = (msg, t)
            else:
                self.ends.append((pid, t, msg))
                if self.running.get(pid, (None,))[0] == msg:
                    del self.running[pid]


def _aof_commands(aof_dir):
    """The commands of a Redis AOF directory's incremental files, in order."""
    files = sorted(Path(aof_dir).glob("*.incr.aof"), key=lambda f: int(f.name.split(".")[-3]))
    for path in files:
        data = path.read_bytes()
        i = 0
        while i < len(data):
            if data[i : i + 1] != b"*":
                break
            j = data.index(b"\r\n", i)
            n, i, args = int(data[i + 1 : j]), j + 2, []
            for _ in range(n):
                j = data.index(b"\r\n", i)
                length, i = int(data[i + 1 : j]), j + 2
                args.append(data[i : i + length])
                i += length + 2
            yield args


def _task_msgs(payload):
    """(delivery tag, [keys of its trigger messages]) of a Celery message as kombu stores it."""
    message = json.loads(payload)
    body = json.loads(base64.b64decode(message["body"]))
    kwargs = body[1] if isinstance(body, list) and len(body) > 1 else {}
    msgs = [kwargs["msg"]] if "msg" in kwargs else [job[2] for job in kwargs.get("jobs", [])]
    return message["properties"]["delivery_tag"], [message_key(msg) for msg in msgs]


def broker_trace(aof_dir, msgs):
    """What the broker did with the task carrying each message (by key), replayed from the
    private Redis's AOF (the `celery` list and kombu's `unacked` hash): a diagnosis
    for messages that never got a job."""
    wanted = set(msgs)
    queue = collections.deque()
    pushed, popped, unacked = {}, {}, set()
    for n, args in enumerate(_aof_commands(aof_dir)):
        name = args[0].upper()
        if name in (b"LPUSH", b"RPUSH") and args[1] == b"celery":
            for value in args[2:]:
                (queue.appendleft if name == b"LPUSH" else queue.append)(value)
                try:
                    tag, carried = _task_msgs(value)
                except Exception:
                    continue
                for m in carried:
                    if m in wanted:
                        pushed.setdefault(m, (n, tag))
        elif name in (b"RPOP", b"LPOP") and args[1] == b"celery":
            for _ in range(int(args[2]) if len(args) > 2 else 1):
                if queue:
                    value = queue.pop() if name == b"RPOP" else queue.popleft()
                    try:
                        tag, _ = _task_msgs(value)
                    except Exception:
                        continue
                    popped.setdefault(tag, n)
        elif name == b"HSET" and args[1] == b"unacked":
            unacked.update(args[2::2])
    out = {}
    for m in msgs:
        if m not in pushed:
            out[m] = "never published to the broker (no LPUSH of a task carrying it)"
            continue
        n, tag = pushed[m]
        if tag not in popped:
            out[m] = f"published (AOF command #{n}) and never consumed"
        elif tag.encode() not in unacked:
            out[m] = (
                f"published (AOF #{n}), popped by a worker's BRPOP (AOF #{popped[tag]}) and never recorded in "
                f"kombu's 'unacked' hash: lost between BRPOP and the unacked bookkeeping"
            )
        else:
            out[m] = f"published (AOF #{n}), consumed (AOF #{popped[tag]}), recorded unacked: lost later"
    return out


def grep(path, needles, limit=5):
    hits = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if any(n in line for n in needles):
                    hits.append(line.rstrip())
    except OSError:
        pass
    return hits[:limit], len(hits)


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(int(len(values) * p), len(values) - 1)]


# The run


class Chaos:
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
        self.notes = []

    def check(self, condition, message):
        if not condition:
            self.failures.append(message)
        return condition

    def run(self):
        step(f"chaos seed {SEED}; work dir {self.work_dir}; logs {self.log_dir}")
        self.redis = PrivateRedis(self.work_dir, self.log_dir)
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
        self.procs = Processes(env, self.log_dir)

        migrate = subprocess.run(
            [PY, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
        )
        if migrate.returncode != 0:
            raise ChaosFailure(f"migrate failed:\n{migrate.stdout}\n{migrate.stderr}")
        step("migrated")

        import django

        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        django.setup()
        self.django_ready = True
        import logging

        logging.getLogger("websockets").setLevel(logging.WARNING)
        from orvanta_triggers import services
        from orvanta_triggers.models import WebSocketTrigger

        self.feeds = Feeds(N_TRIGGERS, RATE, self.rng).start()
        step(
            f"{N_TRIGGERS} feeds on ws://127.0.0.1:{self.feeds.port}/t/<i>, {RATE:g} msg/s each, "
            f"server drops every {DROP_MIN_SECS:g}-{DROP_MAX_SECS:g}s; feeds 0-{POISON_FEEDS - 1} also send "
            f"a poison frame every {POISON_EVERY_SECS:g}s ({', '.join(POISON_KINDS)} in turn)"
        )
        workspace = services.create_workspace(slug="chaos")
        self.workspace = workspace
        self.trigger_paths = {}
        for i in range(N_TRIGGERS):
            trigger = services.create_trigger(
                workspace=workspace, path=f"f/chaos/t{i:02d}", url=self.feeds.url(i), script_path=SCRIPT_PATH
            )
            self.trigger_paths[i] = trigger.path
        step(f"workspace 'chaos' and {N_TRIGGERS} triggers created (script {SCRIPT_PATH}, no filters)")

        for name in ("w1", "w2"):
            self.procs.start(
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
                    "2",
                    "-n",
                    f"{name}@%h",
                    "--loglevel",
                    "INFO",
                ],
            )
        for name in ("L1", "L2"):
            self.procs.start(name, [PY, "manage.py", "runlisteners", "--listener-id", name])
        step(
            f"started workers w1 (pid {self.procs.procs['w1'].pid}), w2 (pid {self.procs.procs['w2'].pid}) "
            f"and listeners L1 (pid {self.procs.procs['L1'].pid}), L2 (pid {self.procs.procs['L2'].pid})"
        )

        self.wait_connected(WebSocketTrigger)
        self.events["connected"] = time.time()
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

        self.feeds.stop_dropping()
        self.feeds.stop_sending()
        self.events["sending_stopped"] = time.time()
        step(
            f"feeds stopped sending ({len(self.feeds.writes)} messages written, "
            f"{len(self.feeds.poison)} of them poison frames)"
        )
        self.drain()
        self.check_final_connections(WebSocketTrigger)
        self.l2_ports = client_ports(self.procs.procs["L2"].pid, self.feeds.port)
        self.events["stopping"] = time.time()
        step("stopping listeners and workers (SIGTERM)")
        self.procs.stop(["L2", "L1"])
        self.procs.stop(["w1", "w2"])
        step("all stopped")
        self.report()

    # Timeline steps

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
                    f"{self.procs.procs[name].returncode} ({label}); see {self.procs.logs[name]}; "
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

    def restart_redis(self):
        step(f"Redis: graceful shutdown (redis-cli -p {self.redis.port} shutdown)")
        self.events["redis_down"] = time.time()
        self.redis.shutdown()
        step(f"Redis is down; restarting in {REDIS_DOWN_SECS:g}s on the same port and dir")
        time.sleep(REDIS_DOWN_SECS)
        self.redis.start()
        self.events["redis_up"] = time.time()
        step("Redis is back")

    def restart_postgres(self):
        step("PostgreSQL: pg_ctl restart -m fast")
        self.events["pg_restart"] = time.time()
        self.postgres.restart(mode="fast")
        self.events["pg_restarted"] = time.time()
        self._reconnect_database()
        step(f"PostgreSQL restarted in {self.events['pg_restarted'] - self.events['pg_restart']:.2f}s")

    def stop_postgres(self):
        step(f"PostgreSQL: pg_ctl stop -m fast; starting it again in {PG_DOWN_SECS:g}s")
        self.events["pg_down"] = time.time()
        self.postgres.stop(mode="fast")
        self.events["pg_stopped"] = time.time()
        deadline = self.events["pg_stopped"] + PG_DOWN_SECS
        while time.time() < deadline:
            self.check_alive("while PostgreSQL is stopped")
            time.sleep(0.2)
        self.postgres.start()
        self.events["pg_up"] = time.time()
        self._reconnect_database()
        step(f"PostgreSQL is back after {self.events['pg_up'] - self.events['pg_stopped']:.2f}s stopped")

    @staticmethod
    def _reconnect_database():
        """This process's connection died with the server: the next query opens another."""
        from django.db import connections

        connections.close_all()

    def kill_worker_child(self):
        w1 = self.procs.procs["w1"].pid
        exec_log = ExecLog(self.exec_log_path)
        deadline = time.time() + 15
        killed = None
        while time.time() < deadline and killed is None:
            exec_log.poll()
            children = set(children_of(w1))
            now = time.time()
            # A job that has just started: it surely still runs (sleeps) when the signal lands.
            candidates = sorted(
                ((t, pid, msg) for pid, (msg, t) in exec_log.running.items() if pid in children and now - t < 0.010),
                reverse=True,
            )
            if candidates:
                t, pid, msg = candidates[0]
                before = time.time()
                os.kill(pid, signal.SIGKILL)
                killed = (pid, msg, t, before)
                break
            time.sleep(0.002)
        if killed is None:
            raise ChaosFailure("found no pool process of w1 running a job within 15s")
        pid, msg, started, at = killed
        self.events["worker_child_killed"] = at
        time.sleep(0.5)
        exec_log.poll()
        ended = [e for e in exec_log.ends if e[0] == pid]
        self.killed_child = {
            "pid": pid,
            "msg": msg,
            "started": started,
            "at": at,
            "finished_before_kill": any(e[2] == msg and e[1] <= at for e in ended),
        }
        step(f"SIGKILL pool process {pid} of w1 (pid {w1}) {1000 * (at - started):.0f} ms into job {msg}")

    def kill_listener(self, WebSocketTrigger):
        l1 = self.procs.procs["L1"]
        held = set(
            WebSocketTrigger.objects.filter(workspace=self.workspace, listener_id="L1").values_list("path", flat=True)
        )
        # Freeze it first, so that the sockets read from /proc are exactly those it had
        # when it stopped running (no connect can slip in between), then kill it. Its
        # death is the freeze: it never runs another instruction after that.
        at = time.time()
        os.kill(l1.pid, signal.SIGSTOP)
        ports = client_ports(l1.pid, self.feeds.port)
        os.kill(l1.pid, signal.SIGKILL)
        after = time.time()
        l1.wait(5)
        self.events["L1_killed"] = at
        with self.feeds.lock:
            self.l1_conns = {
                cid
                for cid, c in self.feeds.conns.items()
                if c["port"] in ports and c["opened"] <= after and (c["closed"] is None or c["closed"] >= at)
            }
            self.l1_triggers = {self.feeds.conns[cid]["trigger"] for cid in self.l1_conns}
        index_of = {path: i for i, path in self.trigger_paths.items()}
        self.l1_triggers |= {index_of[path] for path in held if path in index_of}
        self.l1_ports = ports
        self.l1_held_db = held
        step(
            f"SIGSTOP+SIGKILL listener L1 (pid {l1.pid}, {1000 * (after - at):.0f} ms between the two): "
            f"it held {len(self.l1_conns)} live sockets "
            f"(client ports {sorted(ports)}), DB says it held {len(held)} triggers"
        )
        # Takeover: each of L1's triggers gets a new connection within TTL + 2 s.
        deadline = at + TAKEOVER_LIMIT_SECS + 3
        while time.time() < deadline:
            if all(self._reconnected_after(i, at) is not None for i in self.l1_triggers):
                break
            time.sleep(0.1)
        self.takeover = {i: self._reconnected_after(i, at) for i in self.l1_triggers}
        done = [d for d in self.takeover.values() if d is not None]
        step(
            f"takeover: {len(done)}/{len(self.l1_triggers)} of L1's triggers reconnected, "
            f"slowest after {max(done) if done else float('nan'):.2f}s (limit {TAKEOVER_LIMIT_SECS:g}s)"
        )

    def _reconnected_after(self, index, at):
        with self.feeds.lock:
            opened = [c["opened"] for c in self.feeds.conns.values() if c["trigger"] == index and c["opened"] > at]
        return min(opened) - at if opened else None

    # End of the run

    def written_to_l1(self, cid):
        """The connection was one of L1's live sockets when it was killed."""
        return "L1_killed" in self.events and cid in self.l1_conns

    def lost_with_l1(self, cid, t):
        """Written to L1's socket at or after its death: no process could read it."""
        return self.written_to_l1(cid) and t >= self.events["L1_killed"]

    def job_rows(self):
        """[(id, key, digest of msg, digest of result, status, trigger path, finished_at)] of every job."""
        from orvanta_triggers.models import Job

        rows = []
        for job_id, args, result, status, path, finished in (
            Job.objects.filter(workspace=self.workspace)
            .values_list("id", "args", "result", "status", "trigger_path", "finished_at")
            .iterator(chunk_size=200)
        ):
            msg = (args or {}).get("msg", "")
            result_digest = digest(result) if isinstance(result, str) else None
            rows.append((job_id, message_key(msg), digest(msg), result_digest, status, path, finished))
        return rows

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

    def report(self):
        feeds = self.feeds
        writes, failed_writes, conns = list(feeds.writes), list(feeds.failed_writes), dict(feeds.conns)
        rows = self.job_rows()
        exec_log = ExecLog(self.exec_log_path)
        exec_log.poll()
        kill = self.events.get("L1_killed")

        rows_by_key = defaultdict(list)
        for row in rows:
            rows_by_key[row[1]].append(row)
        written = defaultdict(list)
        for cid, index, key, t in writes:
            written[key].append((cid, index, t))
        failed_keys = {w[2] for w in failed_writes}

        ok, not_success, multi_rows, wrong_content, missing_bad = [], [], [], [], []
        lost_after_kill, lost_before_kill, after_kill_with_job = [], [], 0
        near_kill, near_kill_with_job, l1_delivered_before = 0, 0, []
        poison_written, poison_ok = Counter(), Counter()
        latencies, pg_latencies = [], []
        for key, sends in written.items():
            mine = rows_by_key.get(key, [])
            cid, index, t = sends[0]
            kind, want = feeds.poison.get(key, ("json", digest(key)))
            if kind != "json":
                poison_written[kind] += 1
            got_job = len(mine) == 1 and mine[0][4] == "success"
            if self.written_to_l1(cid) and t < kill and kill - t <= NEAR_KILL_SECS:
                near_kill += 1
                near_kill_with_job += got_job
            if got_job:
                ok.append(key)
                _, _, msg_digest, result_digest, _, path, finished = mine[0]
                if (msg_digest, result_digest, path) != (want, want, self.trigger_paths[index]):
                    wrong_content.append((key, path, msg_digest == want, result_digest == want))
                elif kind != "json":
                    poison_ok[kind] += 1
                if finished is not None:
                    latencies.append(finished.timestamp() - t)
                    if self.events["pg_down"] <= t <= self.events["pg_up"]:
                        pg_latencies.append(finished.timestamp() - t)
                if self.lost_with_l1(cid, t):
                    after_kill_with_job += 1
                elif self.written_to_l1(cid):
                    l1_delivered_before.append(kill - t)
            elif len(mine) > 1:
                multi_rows.append((key, [(str(r[0]), r[4]) for r in mine]))
            elif len(mine) == 1:
                not_success.append((key, mine[0][4], str(mine[0][0])))
            elif self.lost_with_l1(cid, t):
                lost_after_kill.append(key)
            elif self.written_to_l1(cid):
                lost_before_kill.append((key, kill - t))
            else:
                missing_bad.append((key, cid, conns[cid]["port"], clock(t)))
        phantom = [k for k in rows_by_key if k not in written and k not in failed_keys]
        uncertain_delivered = [k for k in rows_by_key if k not in written and k in failed_keys]

        starts = Counter(msg for _, _, msg in exec_log.starts)
        ends = Counter(msg for _, _, msg in exec_log.ends)
        dups = {m: n for m, n in starts.items() if n > 1}
        killed_msg = self.killed_child["msg"]
        first_pid = {}
        for pid, t, msg in exec_log.starts:
            first_pid.setdefault(msg, pid)
        # Redelivery of the broker message the killed process was running re-runs its
        # job (and, if that message carried several jobs, those it had already run).
        expected_dups = {m: n for m, n in dups.items() if first_pid[m] == self.killed_child["pid"]}
        other_dups = {m: n for m, n in dups.items() if m not in expected_dups}
        # A job running or in flight across the Redis restart may run twice (its ack, or
        # the listener's publish, was cut off): at-least-once. Anything else is a bug.
        window = (self.events["redis_down"] - 2.0, self.events["redis_up"] + 5.0)
        first_start = {}
        for pid, t, msg in exec_log.starts:
            first_start.setdefault(msg, t)
        write_time = {key: sends[0][2] for key, sends in written.items()}
        restart_dups = {
            m: n
            for m, n in other_dups.items()
            if window[0] <= first_start[m] <= window[1] or window[0] <= write_time.get(m, 0) <= window[1]
        }
        unexplained_dups = {m: n for m, n in other_dups.items() if m not in restart_dups}
        no_exec = [m for m in ok if ends[m] == 0]

        # Connection closes by whom, and when.
        outages = {
            "Redis restart": (self.events["redis_down"], self.events["redis_up"] + 3.0),
            "PostgreSQL restart": (self.events["pg_restart"], self.events["pg_restarted"] + 3.0),
            "PostgreSQL stopped": (self.events["pg_down"], self.events["pg_up"] + 3.0),
        }
        closes_in_outage = [
            (name, c)
            for c in conns.values()
            for name, (begin, end) in outages.items()
            if c["closed"] and c["closed_by"] != "server" and begin <= c["closed"] <= end
        ]
        client_closes_later = [
            c
            for c in conns.values()
            if c["closed"]
            and c["closed_by"] in ("client", "abnormal")
            and self.events["connected"] < c["closed"] < self.events["stopping"]
            and c["id"] not in self.l1_conns
        ]
        l1_abnormal = [
            c
            for c in conns.values()
            if c["closed"] and c["closed_by"] == "abnormal" and kill <= c["closed"] <= kill + 2
        ]
        max_live = max(feeds.max_live.values()) if feeds.max_live else 0

        # Log evidence
        listener_logs = [self.procs.logs["L1"], self.procs.logs["L2"]]
        buffering = [grep(p, ["broker unavailable, buffering"], 3) for p in listener_logs]
        flushing = [grep(p, ["flushing"], 3) for p in listener_logs]
        worker_lost = [
            grep(self.procs.logs[w], ["WorkerLostError", "exited with 'signal", "SIGKILL"], 3) for w in ("w1", "w2")
        ]
        tracebacks = {n: grep(p, ["Traceback"], 1)[1] for n, p in self.procs.logs.items()}
        close_reasons = Counter()
        for name, path in zip(("L1", "L2"), listener_logs):
            for line in grep(path, ["connection closed ("], 100000)[0]:
                close_reasons[f"{name}: {line.split('connection closed (', 1)[1].rstrip(')')}"] += 1
        lease_lost = sum(grep(p, ["lease lost"], 1)[1] for p in listener_logs)
        database_retries = sum(grep(self.procs.logs[w], ["database unreachable while"], 1)[1] for w in ("w1", "w2"))
        reconcile_failed = sum(grep(p, ["reconcile failed"], 1)[1] for p in listener_logs)

        # (a)
        self.check(
            not not_success, f"(a) {len(not_success)} messages whose job did not succeed, e.g. {not_success[:5]}"
        )
        self.check(not multi_rows, f"(a) {len(multi_rows)} messages with more than one Job row, e.g. {multi_rows[:5]}")
        self.check(not phantom, f"(a) {len(phantom)} Job rows for messages no feed wrote, e.g. {phantom[:5]}")
        self.check(not no_exec, f"(a) {len(no_exec)} successful jobs the runnable never recorded, e.g. {no_exec[:5]}")
        self.check(
            not wrong_content,
            f"(a) {len(wrong_content)} jobs whose msg, result or trigger is not what was sent: "
            f"(key, trigger path, msg ok, result ok) {wrong_content[:5]}",
        )
        self.check(
            all(poison_written[kind] for kind in POISON_KINDS) or POISON_FEEDS == 0,
            f"(a) not every kind of poison frame was written: {dict(poison_written)}",
        )
        # (b)
        self.check(
            not missing_bad,
            f"(b) {len(missing_bad)} messages without a job that were not written to L1: "
            f"e.g. (key, conn, client port, written at) {missing_bad[:5]}",
        )
        self.check(
            not lost_before_kill,
            f"(b) {len(lost_before_kill)} messages written to L1 before its death have no job: "
            f"(key, ms before the kill) {[(k, round(d * 1000, 1)) for k, d in lost_before_kill[:10]]}",
        )
        self.check(bool(self.l1_conns), "(b) could not find L1's sockets (via /proc) at the moment it was killed")
        abnormal_ids = {c["id"] for c in l1_abnormal}
        mismatch = (abnormal_ids - self.l1_conns) | {
            cid for cid in self.l1_conns - abnormal_ids if conns[cid]["closed_by"] != "server"
        }
        self.check(
            not mismatch,
            f"(b) L1's sockets by /proc {sorted(self.l1_conns)} differ from the sockets closed abnormally "
            f"within 2s of the kill {sorted(abnormal_ids)}",
        )
        # (c)
        self.check(
            max_live <= 1,
            f"(c) a trigger had {max_live} live connections at once: "
            f"{[(clock(t), i, o) for t, i, o in feeds.overlaps[:5]]}",
        )
        # (d)
        self.check(
            all(n == 1 for n in self.final_live.values()),
            f"(d) server-side connections per trigger at the end: {self.final_live}",
        )
        self.check(
            all(s == "connected" for s in self.final_status.values()),
            f"(d) trigger statuses at the end: {self.final_status}",
        )
        # takeover and outage
        slow = {i: d for i, d in self.takeover.items() if d is None or d > TAKEOVER_LIMIT_SECS}
        self.check(not slow, f"takeover: L1's triggers not reconnected within {TAKEOVER_LIMIT_SECS:g}s: {slow}")
        self.check(
            not closes_in_outage,
            "listener sockets closed during an outage: "
            f"{[(name, c['id'], c['trigger'], c['closed_by'], clock(c['closed'])) for name, c in closes_in_outage]}",
        )
        self.check(
            not unexplained_dups,
            f"(a) duplicate executions not explained by the pool process kill or the "
            f"Redis restart: {dict(list(unexplained_dups.items())[:10])}",
        )
        self.check(
            not self.killed_child["finished_before_kill"],
            f"the pool process kill missed its job ({killed_msg} had ended before the signal)",
        )
        self.check(
            starts[killed_msg] >= 2 and ends[killed_msg] >= 1,
            f"the killed job {killed_msg} was not run again ({starts[killed_msg]} starts, {ends[killed_msg]} ends)",
        )

        self.lost_trace = {}
        suspects = [k for k, *_ in missing_bad] + [k for k, _ in lost_before_kill]
        if suspects:
            try:
                self.lost_trace = broker_trace(Path(self.work_dir) / "appendonlydir", suspects)
            except Exception as exc:  # diagnostics only
                self.lost_trace = {m: f"could not read the broker's AOF: {exc!r}" for m in suspects}
        takeover_done = [d for d in self.takeover.values() if d is not None]
        lat = latencies
        per_kind = " / ".join(POISON_KINDS)
        table = [
            ("seed", SEED),
            ("messages written by the feeds", len(writes)),
            ("  writes refused (connection closing)", len(failed_writes)),
            ("connections (server side)", len(conns)),
            ("  closed by the server (chaos drops)", sum(1 for c in conns.values() if c["closed_by"] == "server")),
            ("  closed by a listener", sum(1 for c in conns.values() if c["closed_by"] == "client")),
            ("  closed abnormally (no close frame)", sum(1 for c in conns.values() if c["closed_by"] == "abnormal")),
            ("  by listeners between 'connected' and the stop", len(client_closes_later)),
            ("  'lease lost' in listener logs", lease_lost),
            ("max live connections per trigger", max_live),
            ("Job rows", len(rows)),
            ("(a) messages with exactly one successful job", len(ok)),
            ("(a) messages whose job did not succeed", len(not_success)),
            ("(a) messages with several Job rows", len(multi_rows)),
            ("(a) Job rows for unknown messages", len(phantom)),
            ("    jobs for writes that raised (delivered anyway)", len(uncertain_delivered)),
            ("(a) jobs whose msg, result or trigger differ", len(wrong_content)),
            (f"(a) poison frames written ({per_kind})", " / ".join(str(poison_written[k]) for k in POISON_KINDS)),
            ("(a)   with one successful job, exact msg", " / ".join(str(poison_ok[k]) for k in POISON_KINDS)),
            ("executions recorded by the runnable", sum(starts.values())),
            ("duplicate executions (messages run > once)", len(dups)),
            ("  first run by the killed pool process", len(expected_dups)),
            ("  around the Redis restart (at-least-once)", len(restart_dups)),
            ("  unexplained (FAIL if > 0)", len(unexplained_dups)),
            ("(b) L1 sockets at its death (by /proc)", len(self.l1_conns)),
            ("(b) L1 sockets closed abnormally within 2s", len(l1_abnormal)),
            ("(b) lost: written to L1 at/after its death", len(lost_after_kill)),
            ("(b)   written to L1 after its death, got a job", after_kill_with_job),
            (f"(b) written to L1 <= {NEAR_KILL_SECS * 1000:g} ms before its death", near_kill),
            ("(b)   of which got a job", near_kill_with_job),
            (
                "(b) newest L1 message with a job (ms before death)",
                f"{min(l1_delivered_before) * 1000:.1f}" if l1_delivered_before else "n/a",
            ),
            ("(b) lost: written to L1 before its death (FAIL if > 0)", len(lost_before_kill)),
            ("(b) lost otherwise (FAIL if > 0)", len(missing_bad)),
            ("takeover of L1's triggers (max s)", f"{max(takeover_done):.2f}" if takeover_done else "n/a"),
            ("(d) triggers with exactly one connection at end", sum(1 for n in self.final_live.values() if n == 1)),
            ("(d) triggers 'connected' in DB at end", sum(1 for s in self.final_status.values() if s == "connected")),
            ("PostgreSQL fast restart took (s)", f"{self.events['pg_restarted'] - self.events['pg_restart']:.2f}"),
            ("PostgreSQL stopped for (s)", f"{self.events['pg_up'] - self.events['pg_stopped']:.2f}"),
            ("  worker 'database unreachable' retries (logs)", database_retries),
            ("  listener 'reconcile failed' (logs)", reconcile_failed),
            (
                "  latency of messages written meanwhile p50/max (s)",
                f"{percentile(pg_latencies, 0.5):.2f} / {max(pg_latencies) if pg_latencies else float('nan'):.2f}",
            ),
            ("listener sockets closed during an outage (FAIL if > 0)", len(closes_in_outage)),
            (
                "latency write->job finished p50/p99/max (s)",
                f"{percentile(lat, 0.5):.2f} / {percentile(lat, 0.99):.2f} / {max(lat) if lat else float('nan'):.2f}",
            ),
            (
                "broker at end (queued / unacked)",
                f"{self.broker_at_end.get('queued')} / {self.broker_at_end.get('unacked')}",
            ),
            ("tracebacks in logs", ", ".join(f"{n}: {c}" for n, c in tracebacks.items())),
        ]
        print("", flush=True)
        print("=" * 78)
        print("CHAOS SUMMARY")
        print("=" * 78)
        for event in (
            "connected",
            "redis_down",
            "redis_up",
            "pg_restart",
            "pg_restarted",
            "pg_down",
            "pg_stopped",
            "pg_up",
            "worker_child_killed",
            "L1_killed",
            "sending_stopped",
            "drained",
        ):
            if event in self.events:
                print(f"  {event:<22} {clock(self.events[event])}  (+{self.events[event] - T0:.1f}s)")
        print("-" * 78)
        width = max(len(k) for k, _ in table)
        for key, value in table:
            print(f"  {key:<{width}}  {value}")
        print("-" * 78)
        print(f"  listener-side closes by reason (logs): {dict(sorted(close_reasons.items()))}")
        kc = self.killed_child
        print(f"  killed pool process {kc['pid']}: job {kc['msg']} ({starts[killed_msg]} executions)")
        if other_dups:
            print("  other duplicate executions (msg: executions [pid@start]):")
            by_msg = defaultdict(list)
            for pid, t, msg in exec_log.starts:
                if msg in other_dups:
                    by_msg[msg].append(f"{pid}@{clock(t)}")
            for msg in list(other_dups)[:10]:
                print(f"    {msg}: {other_dups[msg]} [{', '.join(by_msg[msg])}]")
        if missing_bad:
            print("  messages lost, not written to L1 (key, conn, client port, written at) -> broker trace (AOF):")
            for key, cid, port, at in missing_bad[:10]:
                print(f"    {key} conn {cid} port {port} at {at} -> {self.lost_trace.get(key, '?')}")
        if lost_before_kill:
            print("  messages written to L1 before its death and lost (key, ms before the kill) -> broker trace (AOF):")
            for key, before in lost_before_kill[:10]:
                print(f"    {key} {before * 1000:.1f} ms -> {self.lost_trace.get(key, '?')}")
        for name, (lines, count) in zip(("L1", "L2"), buffering):
            if count:
                print(f"  {name} buffered frames while Redis was away ({count}x): {lines[0]}")
        for name, (lines, count) in zip(("L1", "L2"), flushing):
            for line in lines:
                print(f"  {name}: {line}")
        for name, (lines, count) in zip(("w1", "w2"), worker_lost):
            for line in lines[:2]:
                print(f"  {name}: {line[:200]}")
        print("-" * 78)
        print("  logs:")
        for name, path in self.procs.logs.items():
            print(f"    {name:<4} {path}")
        print(f"    redis {self.redis.log}")
        print(f"    postgres {Path(self.log_dir) / 'postgres.log'} (copied at cleanup)")
        print(f"    executions {self.exec_log_path}")
        print("=" * 78, flush=True)

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
                self.redis.shutdown()
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


def _raise_on_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main():
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_on_signal)
    chaos = Chaos()
    crashed = None
    try:
        chaos.run()
    except BaseException as exc:  # noqa: BLE001 - report anything, then clean up
        crashed = exc
        import traceback

        traceback.print_exc()
    finally:
        step("cleaning up (processes, Redis, PostgreSQL, work dir)")
        chaos.cleanup(keep_broker_data=crashed is not None or bool(chaos.failures))
        step(f"done in {time.time() - T0:.0f}s; logs kept in {chaos.log_dir}")
    if crashed is not None:
        if chaos.procs is not None:
            for name, path in chaos.procs.logs.items():
                print(f"  log {name}: {path}", flush=True)
        print(f"CHAOS FAILED: the run did not complete: {crashed}", flush=True)
        return 2
    if chaos.failures:
        print("CHAOS FAILED:", flush=True)
        for failure in chaos.failures:
            print(f"  - {failure}", flush=True)
        return 1
    print("CHAOS PASSED", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
