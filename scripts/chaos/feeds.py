"""The WebSocket feeds: one server, one path per trigger, in a thread of its own; each
feed writes numbered messages (and poison frames) and records what it wrote, and
the server drops connections at random."""

import asyncio
import base64
import hashlib
import json
import threading
import time
from collections import defaultdict

from scripts.chaos.console import clock
from scripts.chaos.knobs import (
    BIG_BYTES,
    BINARY_BYTES,
    DEEP_LEVELS,
    DROP_CODES,
    DROP_MAX_SECS,
    DROP_MIN_SECS,
    POISON_EVERY_SECS,
    POISON_FEEDS,
    POISON_KINDS,
)
from tests.support.wsserver import ServerOnThread

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


class Feeds(ServerOnThread):
    def __init__(self, n_triggers, rate, rng):
        super().__init__(thread_name="feeds")
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
        self._tickers = []

    # called from the main thread

    def start(self):
        return super().start(timeout=10)

    def url(self, index):
        return f"ws://127.0.0.1:{self.port}/t/{index}"

    def stop_dropping(self):
        self.dropping = False

    def stop_sending(self):
        self.sending = False
        self._run(self._join_tickers(), timeout=10)

    def live_counts(self):
        with self.lock:
            return {i: len(self.live[i]) for i in range(self.n)}

    def stop(self, timeout=10):
        """Stop the tickers and droppers, then the server."""
        try:
            self._run(self._stop(), timeout)
        except Exception as exc:
            print(f"feeds: unclean stop: {exc!r}", flush=True)

    # on the loop

    def serve_options(self):
        return {"compression": None, "close_timeout": 5}

    async def _start(self):
        await super()._start()
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

    async def handle(self, ws):
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
        next_at = self.loop.time() + self.rng.uniform(0, period)
        poison_at = self.loop.time() + self.rng.uniform(0, POISON_EVERY_SECS)
        while self.sending:
            await asyncio.sleep(max(next_at - self.loop.time(), 0))
            next_at += period
            if not self.sending:
                break
            key = json.dumps({"trigger": index, "seq": self._next_seq(index)})
            await self._send(index, key, key)
            if index < POISON_FEEDS and self.loop.time() >= poison_at:
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
