"""The WebSocket servers the listener connects to, all in the bench process on one
background asyncio loop (tests/support/wsserver.py's `LoopThread`, its lateness
measured by `LagProbe`):

- `BurstServer`: raw asyncio, no library. It answers the upgrade, then writes a
  pre-encoded burst of frames in one go, so the sender is never what is measured.
- `hub.Hub`: a `websockets` server routing by path (latency, recovery).
- `feedserver.FeedServer`: raw asyncio for thousands of mostly idle connections
  (scale, rebalance).
"""

import asyncio
import time

from bench.harness import BenchError, wait_for
from tests.support.frames import frame, read_frame, read_upgrade

FRAME_BYTES = 100
# How long a read of the feed server's records may wait for its loop: on a machine
# overloaded by thousands of threads the loop may answer late, and late is a figure.
CALL_TIMEOUT = 60


class LagProbe:
    """How late the loop runs a callback due every PERIOD seconds: the servers' own
    delay, which every arrival time they stamp includes (a loop starved of CPU by a
    busy machine stamps late)."""

    PERIOD = 0.05

    def __init__(self, loop):
        self._loop = loop
        self._worst = 0.0
        self._handle = None

    def start(self):
        def start():
            self._tick(self._loop.loop.time() + self.PERIOD)

        self._loop.call(start)
        return self

    def _tick(self, due):
        self._worst = max(self._worst, self._loop.loop.time() - due)
        self._handle = self._loop.loop.call_at(due + self.PERIOD, self._tick, due + self.PERIOD)

    def take(self):
        """The worst lateness (s) since the last take."""

        def take():
            worst, self._worst = self._worst, 0.0
            return worst

        return self._loop.call(take, timeout=CALL_TIMEOUT)

    def stop(self):
        self._loop.call(lambda: self._handle and self._handle.cancel(), timeout=CALL_TIMEOUT)


# Frames


def burst_payloads(n, *, size=FRAME_BYTES):
    """n JSON texts of `size` bytes, kind alternating a/b (so a kind=a filter
    matches half), each with its sequence number."""
    out = []
    for i in range(n):
        head = f'{{"kind":"{"ab"[i % 2]}","seq":{i},"pad":"'
        out.append(head + "x" * max(size - len(head) - 2, 0) + '"}')
    return out


def encode_server_frames(texts):
    """Unmasked text frames, concatenated."""
    return b"".join(frame(0x1, text.encode()) for text in texts)


def burst(n):
    """(wire bytes of n ~100-byte frames, how many match kind=a)."""
    return encode_server_frames(burst_payloads(n)), (n + 1) // 2


# The raw burst server


class _BurstProtocol(asyncio.Protocol):
    def __init__(self, server):
        self.server = server
        self.transport = None
        self.buffer = b""
        self.upgraded = False
        self.path = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buffer += data
        if not self.upgraded:
            upgrade = read_upgrade(self.buffer)
            if upgrade is None:
                return
            self.path, answer, rest = upgrade
            self.transport.write(answer)
            self.upgraded = True
            self.buffer = rest
            self.server._upgraded(self)
        self._parse_client_frames()

    def _parse_client_frames(self):
        buf = self.buffer
        while (found := read_frame(buf)) is not None:
            opcode, payload, used = found
            buf = buf[used:]
            if opcode == 0x8:
                # Answer the close and hang up.
                self.transport.write(frame(0x8, payload[:2]))
                self.transport.close()
                buf = b""
                break
            if opcode == 0x9:
                self.transport.write(frame(0xA, payload))
        self.buffer = buf

    def connection_lost(self, exc):
        self.server._lost(self)


class BurstServer:
    def __init__(self, loop):
        self._loop = loop
        self._server = None
        self.port = None
        self.connections = []

    def start(self):
        async def start():
            self._server = await self._loop.loop.create_server(
                lambda: _BurstProtocol(self), "127.0.0.1", 0, backlog=1024
            )
            self.port = self._server.sockets[0].getsockname()[1]

        self._loop.run(start())
        return self

    def url(self, path):
        return f"ws://127.0.0.1:{self.port}{path}"

    def _upgraded(self, protocol):
        self.connections.append(protocol)

    def _lost(self, protocol):
        if protocol in self.connections:
            self.connections.remove(protocol)

    def wait_connection(self, path, timeout=30, proc=None):
        """The upgraded connection on `path`; `proc`, the connecting process, must
        stay alive meanwhile."""

        def find():
            if proc is not None and not proc.alive():
                raise BenchError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.log_tail()}")
            return next((c for c in list(self.connections) if c.path == path and c.upgraded), None)

        return wait_for(find, timeout=timeout, what=f"a WebSocket connection on {path}", interval=0.02)

    def fire(self, connection, data):
        """Write the burst on `connection`; the monotonic time of its first byte."""

        def write():
            if connection.transport is None or connection.transport.is_closing():
                raise BenchError("the burst connection closed before the burst")
            started = time.monotonic()
            connection.transport.write(data)
            return started

        return self._loop.call(write)

    def stop(self):
        async def stop():
            self._server.close()
            for protocol in list(self.connections):
                protocol.transport.abort()
            await self._server.wait_closed()

        try:
            self._loop.run(stop(), timeout=10)
        except Exception:
            pass
