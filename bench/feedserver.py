"""`FeedServer`, the server of scale and rebalance: raw asyncio for thousands of mostly
idle connections, on the bench's loop (tests/support/wsserver.py's LoopThread).
"""

import asyncio
import bisect
import time

from bench.servers import CALL_TIMEOUT
from tests.support.frames import frame, read_frame, read_upgrade

# The listen backlog: the kernel caps it at net.core.somaxconn (4096 here). Thousands of
# clients connect at once; a full queue drops SYNs and adds 1 s retransmits to the figures.
FEED_BACKLOG = 4096


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
            upgrade = read_upgrade(self.buffer)
            if upgrade is None:
                return
            path, answer, rest = upgrade
            self.transport.write(answer)
            self.conn = self.server._opened(path, self.transport, now)
            self.buffer = rest
        self._frames(now)

    def _frames(self, now):
        buf = self.buffer
        while (found := read_frame(buf)) is not None:
            opcode, payload, used = found
            buf = buf[used:]
            if opcode in (0x1, 0x2):
                self.conn.beats.append(now)
            elif opcode == 0x9:
                self.transport.write(frame(0xA, payload))
            elif opcode == 0x8:
                # The client closes first: answer with its code and hang up.
                self.conn.clean = True
                self.transport.write(frame(0x8, payload[:2]))
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
