"""The WebSocket servers the listener connects to, all in the bench process on one
background asyncio loop:

- `BurstServer`: raw asyncio, no library. It answers the upgrade, then writes a
  pre-encoded burst of frames in one go, so the sender is never what is measured.
- `Hub`: a `websockets` server routing by path, recording every connection (opened
  and closed times) and every message received (arrival time), with an optional
  per-connection coroutine (the latency sender). Stoppable and restartable on the
  same port.
"""

import asyncio
import base64
import bisect
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


# The websockets hub


class Conn:
    __slots__ = ("id", "path", "opened", "closed", "messages", "ws", "close_code")

    def __init__(self, cid, path, ws):
        self.id = cid
        self.path = path
        self.opened = time.monotonic()
        self.closed = None
        self.messages = []  # (monotonic arrival, text)
        self.ws = ws
        self.close_code = None


class Hub:
    def __init__(self, loop, *, record_messages=True):
        self._loop = loop
        self.record_messages = record_messages
        self._server = None
        self.port = None
        self.conns = []
        self.live = {}  # path -> set of Conn
        self._next = 0

    def start(self, port=None):
        async def start():
            from websockets.asyncio.server import serve

            self._server = await serve(
                self._handle,
                "127.0.0.1",
                port or self.port or 0,
                ping_interval=None,
                compression=None,
                max_size=None,
                max_queue=None,
                backlog=2048,
                close_timeout=2,
            )
            self.port = self._server.sockets[0].getsockname()[1]

        self._loop.run(start())
        return self

    def url(self, path):
        return f"ws://127.0.0.1:{self.port}{path}"

    async def _handle(self, ws):
        conn = Conn(self._next, ws.request.path, ws)
        self._next += 1
        self.conns.append(conn)
        self.live.setdefault(conn.path, set()).add(conn)
        messages = conn.messages
        record = self.record_messages
        try:
            async for message in ws:
                if record:
                    messages.append((time.monotonic(), message))
        except Exception:
            pass
        finally:
            conn.closed = time.monotonic()
            conn.close_code = ws.close_code
            conn.ws = None
            self.live.get(conn.path, set()).discard(conn)

    # read from the bench thread (list/set snapshots are taken on the loop)

    def snapshot(self):
        return self._loop.call(lambda: list(self.conns))

    def live_paths(self):
        return self._loop.call(lambda: {p for p, s in self.live.items() if s})

    def live_count(self):
        return self._loop.call(lambda: sum(len(s) for s in self.live.values()))

    def opened_after(self, path, t):
        """The first connection on `path` opened after monotonic time `t`, or None."""

        def find():
            found = [c for c in self.conns if c.path == path and c.opened > t]
            return min(found, key=lambda c: c.opened) if found else None

        return self._loop.call(find)

    def live_conn(self, path):
        return self._loop.call(lambda: next(iter(self.live.get(path) or ()), None))

    def send(self, conn, text):
        async def send():
            if conn.ws is not None:
                await conn.ws.send(text)

        self._loop.run(send())

    def stop(self):
        """Stop listening and close every connection (1001, going away)."""

        async def stop():
            self._server.close()
            await self._server.wait_closed()

        self._loop.run(stop(), timeout=15)

    def shutdown(self):
        try:
            self.stop()
        except Exception:
            pass


# The feed server (scale, rebalance)

# The listen backlog: the kernel caps it at net.core.somaxconn (4096 here). Thousands of
# clients connect at once; a full queue drops SYNs and adds 1 s retransmits to the figures.
FEED_BACKLOG = 4096


def _unmask(payload, mask):
    if not payload:
        return payload
    n = len(payload)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")


class FeedConn:
    """One upgraded connection: when it opened and closed (monotonic), whether the
    client sent a close frame first (a clean close), and when each data frame came."""

    __slots__ = ("id", "path", "opened", "closed", "clean", "beats", "transport")

    def __init__(self, cid, path, opened, transport):
        self.id = cid
        self.path = path
        self.opened = opened
        self.closed = None
        self.clean = False
        self.beats = []
        self.transport = transport


class _FeedProtocol(asyncio.Protocol):
    def __init__(self, server):
        self.server = server
        self.transport = None
        self.buffer = b""
        self.conn = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        # One stamp per read: frames that came in one segment arrived together.
        now = time.monotonic()
        self.buffer += data
        if self.conn is None:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            lines = head.decode("latin-1").split("\r\n")
            key = b""
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "sec-websocket-key":
                    key = value.strip().encode()
            accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
            )
            self.conn = self.server._opened(lines[0].split(" ")[1], self.transport, now)
            self.buffer = rest
        self._frames(now)

    def _frames(self, now):
        buf = self.buffer
        while len(buf) >= 2:
            opcode = buf[0] & 0x0F
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
            if buf[1] & 0x80:
                mask = buf[offset : offset + 4]
                offset += 4
            if len(buf) < offset + length:
                break
            payload = buf[offset : offset + length]
            buf = buf[offset + length :]
            if opcode in (0x1, 0x2):
                self.conn.beats.append(now)
            elif opcode == 0x9:
                payload = _unmask(payload, mask)
                self.transport.write(bytes((0x8A, len(payload))) + payload)
            elif opcode == 0x8:
                # The client closes first: answer with its code and hang up.
                self.conn.clean = True
                code = _unmask(payload, mask)[:2]
                self.transport.write(bytes((0x88, len(code))) + code)
                self.transport.close()
                buf = b""
                break
        self.buffer = buf

    def connection_lost(self, exc):
        if self.conn is not None:
            self.server._closed(self.conn, time.monotonic())


class FeedServer:
    """Raw asyncio WebSocket server for thousands of mostly idle connections: a few
    KB per connection and no per-connection task, so the server's own cost stays
    small beside what it measures. It answers pings and closes, and records every
    connection and data frame arrival; it counts the open connections of each path
    and notes every path that ever had two open at once (one trigger connected
    twice)."""

    def __init__(self, loop):
        self._loop = loop
        self._server = None
        self.port = None
        self.conns = []
        self.open = {}  # path -> open connections on it
        self.open_total = 0
        self.doubled = {}  # path -> when it first had two open connections

    def start(self):
        async def start():
            self._server = await self._loop.loop.create_server(
                lambda: _FeedProtocol(self), "127.0.0.1", 0, backlog=FEED_BACKLOG
            )
            self.port = self._server.sockets[0].getsockname()[1]

        self._loop.run(start())
        return self

    def url(self, path):
        return f"ws://127.0.0.1:{self.port}{path}"

    # on the loop

    def _opened(self, path, transport, now):
        conn = FeedConn(len(self.conns), path, now, transport)
        self.conns.append(conn)
        count = self.open.get(path, 0) + 1
        self.open[path] = count
        self.open_total += 1
        if count > 1:
            self.doubled.setdefault(path, now)
        return conn

    def _closed(self, conn, now):
        conn.closed = now
        conn.transport = None
        self.open_total -= 1
        count = self.open[conn.path] - 1
        if count:
            self.open[conn.path] = count
        else:
            del self.open[conn.path]

    # read from the bench thread (copies are taken on the loop)

    def _call(self, fn):
        return self._loop.call(fn, timeout=CALL_TIMEOUT)

    def open_count(self):
        return self._call(lambda: self.open_total)

    def latest_open(self):
        """When the most recently opened connection still open opened (monotonic)."""
        return self._call(lambda: next((c.opened for c in reversed(self.conns) if c.closed is None), None))

    def latest_close(self, t):
        """When the last connection closed after monotonic time `t` closed, or None."""
        return self._call(
            lambda: max((c.closed for c in self.conns if c.closed is not None and c.closed > t), default=None)
        )

    def _after(self, t):
        # Connections are appended as they open, so in order of `opened`.
        return self.conns[bisect.bisect_right(self.conns, t, key=lambda c: c.opened) :]

    def open_since(self, t):
        """How many connections opened after monotonic time `t` are open now."""
        return self._call(lambda: sum(1 for c in self._after(t) if c.closed is None))

    def opened_after(self, t):
        """{path: when its first connection after monotonic time `t` opened}."""

        def collect():
            out = {}
            for c in self._after(t):
                out.setdefault(c.path, c.opened)
            return out

        return self._call(collect)

    def snapshot(self):
        return self._call(lambda: list(self.conns))

    def beats(self, conns, since, until):
        """{connection: data frame arrivals in (since, until]} of `conns`."""
        return self._call(lambda: {c: [t for t in c.beats if since < t <= until] for c in conns})

    def first_opened(self, path, t):
        """The first connection on `path` opened after monotonic time `t`, or None."""
        return self._call(lambda: next((c for c in self._after(t) if c.path == path), None))

    def doubled_paths(self):
        return self._call(lambda: dict(self.doubled))

    def doubled_by_phase(self, phases):
        """{phase: how many paths first had two connections open at once during it};
        `phases` maps each phase's name to its start (monotonic)."""
        out = {}
        for at in self.doubled_paths().values():
            phase = max((name for name, t in phases.items() if at >= t), key=phases.get, default="set-up")
            out[phase] = out.get(phase, 0) + 1
        return out

    def stop(self):
        """Stop listening and drop every connection (no close frame: a server gone)."""

        async def stop():
            self._server.close()
            for conn in self.conns:
                if conn.transport is not None:
                    conn.transport.abort()
            await self._server.wait_closed()

        try:
            self._loop.run(stop(), timeout=15)
        except Exception:
            pass
