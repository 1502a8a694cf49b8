"""The WebSocket servers the listener connects to, all in the bench process on one
background asyncio loop (`Loop`, its lateness measured by `LagProbe`):

- `BurstServer`: raw asyncio, no library. It answers the upgrade, then writes a
  pre-encoded burst of frames in one go, so the sender is never what is measured.
- `hub.Hub`: a `websockets` server routing by path (latency, recovery).
- `feedserver.FeedServer`: raw asyncio for thousands of mostly idle connections
  (scale, rebalance).
"""

import asyncio
import base64
import hashlib
import struct
import threading
import time

from bench.harness import BenchError, wait_for

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
FRAME_BYTES = 100
# How long a read of the feed server's records may wait for its loop: on a machine
# overloaded by thousands of threads the loop may answer late, and late is a figure.
CALL_TIMEOUT = 60


class Loop:
    """An asyncio loop on a daemon thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bench-servers", daemon=True)
        self.thread.start()

    def run(self, coroutine, timeout=30):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, fn, *args, timeout=10):
        async def wrapper():
            return fn(*args)

        return self.run(wrapper(), timeout)

    def close(self):
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


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
    out = bytearray()
    for text in texts:
        data = text.encode()
        length = len(data)
        if length < 126:
            out += bytes((0x81, length))
        elif length < 65536:
            out += bytes((0x81, 126)) + struct.pack("!H", length)
        else:
            out += bytes((0x81, 127)) + struct.pack("!Q", length)
        out += data
    return bytes(out)


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
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            lines = head.decode("latin-1").split("\r\n")
            self.path = lines[0].split(" ")[1]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            key = headers.get("sec-websocket-key", "").encode()
            accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
            )
            self.upgraded = True
            self.buffer = rest
            self.server._upgraded(self)
        self._parse_client_frames()

    def _parse_client_frames(self):
        buf = self.buffer
        while len(buf) >= 2:
            opcode = buf[0] & 0x0F
            masked = buf[1] & 0x80
            length = buf[1] & 0x7F
            offset = 2
            if length == 126:
                if len(buf) < 4:
                    break
                length = struct.unpack("!H", buf[2:4])[0]
                offset = 4
            elif length == 127:
                if len(buf) < 10:
                    break
                length = struct.unpack("!Q", buf[2:10])[0]
                offset = 10
            mask = b""
            if masked:
                mask = buf[offset : offset + 4]
                offset += 4
            if len(buf) < offset + length:
                break
            payload = buf[offset : offset + length]
            if masked:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            buf = buf[offset + length :]
            if opcode == 0x8:
                # Answer the close and hang up.
                self.transport.write(bytes((0x88, len(payload[:2]))) + payload[:2])
                self.transport.close()
                buf = b""
                break
            if opcode == 0x9:
                self.transport.write(bytes((0x8A, len(payload))) + payload)
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
