"""`Hub`: a `websockets` server routing by path, recording every connection (opened
and closed times) and every message received (arrival time), with an optional
per-connection coroutine (the latency sender). Stoppable and restartable on the same
port. It runs on the bench's loop (tests/support/wsserver.py's LoopThread), which
ServerOnThread starts and stops it on.
"""

import time

from tests.support.wsserver import ServerOnThread


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


class Hub(ServerOnThread):
    def __init__(self, loop, *, record_messages=True):
        super().__init__(loop_thread=loop)
        self.record_messages = record_messages
        self.conns = []
        self.live = {}  # path -> set of Conn
        self._next = 0

    def serve_options(self):
        return {"compression": None, "max_size": None, "max_queue": None, "backlog": 2048, "close_timeout": 2}

    def start(self):
        return super().start(timeout=30)

    def url(self, path):
        return f"ws://127.0.0.1:{self.port}{path}"

    async def handle(self, ws):
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
        return self._call(lambda: list(self.conns))

    def live_paths(self):
        return self._call(lambda: {p for p, s in self.live.items() if s})

    def live_count(self):
        return self._call(lambda: sum(len(s) for s in self.live.values()))

    def opened_after(self, path, t):
        """The first connection on `path` opened after monotonic time `t`, or None."""

        def find():
            found = [c for c in self.conns if c.path == path and c.opened > t]
            return min(found, key=lambda c: c.opened) if found else None

        return self._call(find)

    def live_conn(self, path):
        return self._call(lambda: next(iter(self.live.get(path) or ()), None))

    def send(self, conn, text):
        async def send():
            if conn.ws is not None:
                await conn.ws.send(text)

        self._run(send(), timeout=30)

    def stop(self, timeout=15):
        super().stop(timeout)
