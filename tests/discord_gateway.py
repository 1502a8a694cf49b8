"""A Discord-Gateway-style WebSocket server for heartbeat tests, on a free port in a
background thread (tests/support/wsserver.py's ServerOnThread).

Per connection it:
- sends hello: {"op": 10, "d": {"heartbeat_interval": <ms>}} (no "s": the client's
  state must not be set by it);
- expects an identify ({"op": 2, ...}) as the first message, else closes with 4003;
- once identified, dispatches {"op": 0, "t": "MESSAGE_CREATE", "s": n, "d": {...}} with
  n = 1, 2, ... every `dispatch_every` seconds, but never inside the `quiet_secs` before
  the next heartbeat is due, so the client has certainly seen the last event before it
  beats and the expected state is exact;
- checks every heartbeat is exactly {"op": 1, "d": <last s sent on this connection, or
  null before any>}, neither early (interval - early_tolerance) nor late (interval +
  late_tolerance) after the previous beat, or for the first beat after the last message
  before it (the initial messages); answers {"op": 11}; and closes with 4009 on a wrong,
  early or late heartbeat, recording why in `failures`.
"""

import asyncio
import collections
import json
import threading
import time
from dataclasses import dataclass, field

from websockets.exceptions import ConnectionClosed

from tests.support.wsserver import ServerOnThread


@dataclass
class Heartbeat:
    connection: int
    at: float
    d: object


@dataclass
class Session:
    """What happened on one connection (numbered from 1)."""

    number: int
    received: list = field(default_factory=list)  # (monotonic time, text) of every client message
    heartbeats: list = field(default_factory=list)
    dispatched: list = field(default_factory=list)  # the events sent, in order
    seq: object = None  # the last "s" sent, None before any
    identified_at: float = None
    anchor: float = None  # when the last heartbeat (or the identify) arrived
    closed_with: tuple = None  # (code, reason) when the server closed it


def _canonical(value):
    # sort_keys and JSON text keep true and 1 (and 1 and "1") apart.
    return json.dumps(value, sort_keys=True)


class DiscordGateway(ServerOnThread):
    def __init__(
        self,
        *,
        heartbeat_interval_ms=1000,
        dispatch_every=0.3,
        quiet_secs=0.35,
        early_tolerance=0.3,
        late_tolerance=0.6,
        host="127.0.0.1",
    ):
        super().__init__(host=host)
        self.interval = heartbeat_interval_ms / 1000
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.dispatch_every = dispatch_every
        self.quiet_secs = quiet_secs
        self.early_tolerance = early_tolerance
        self.late_tolerance = late_tolerance
        self.dispatching = threading.Event()  # clear it to stop sending events
        self.dispatching.set()
        self.connects = 0
        self.sessions = []
        self.failures = []  # (connection number, close code, reason)
        self.client_close_codes = []
        self._pending = collections.deque()  # (t, d) events queued by dispatch()
        self._lock = threading.Lock()

    @property
    def url(self):
        return f"ws://{self.host}:{self.port}/gateway"

    # Test-thread API

    def dispatch(self, t, d):
        """Queue one event of type `t`; sent (with the next "s") at the next dispatch slot."""
        self._pending.append((t, d))

    def heartbeats(self, connection=None):
        with self._lock:
            return [
                beat
                for session in self.sessions
                for beat in session.heartbeats
                if connection is None or session.number == connection
            ]

    def session(self, number):
        with self._lock:
            return self.sessions[number - 1] if len(self.sessions) >= number else None

    def failures_snapshot(self):
        with self._lock:
            return list(self.failures)

    # The server side

    async def handle(self, websocket):
        with self._lock:
            self.connects += 1
            session = Session(number=self.connects)
            self.sessions.append(session)
        self._clients.add(websocket)
        tasks = []
        try:
            await websocket.send(json.dumps({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}}))
            async for text in websocket:
                now = time.monotonic()
                with self._lock:
                    session.received.append((now, text))
                try:
                    message = json.loads(text)
                except ValueError:
                    message = None
                op = message.get("op") if isinstance(message, dict) else None
                if session.identified_at is None:
                    if op != 2:
                        await self._fail(websocket, session, 4003, f"first message was not an identify: {text!r}")
                        break
                    session.identified_at = session.anchor = now
                    tasks = [
                        asyncio.create_task(self._dispatch_loop(websocket, session)),
                        asyncio.create_task(self._watchdog(websocket, session)),
                    ]
                    continue
                if op == 1:
                    if not await self._on_heartbeat(websocket, session, text, message, now):
                        break
                elif not session.heartbeats:
                    # More initial messages: the first beat is due one interval after the last.
                    session.anchor = now
        except ConnectionClosed:
            pass
        finally:
            for task in tasks:
                task.cancel()
            self._clients.discard(websocket)
            with self._lock:
                self.client_close_codes.append(websocket.close_code)

    async def _on_heartbeat(self, websocket, session, text, message, now):
        """Check one heartbeat; False when it was wrong and the connection is closing."""
        expected = {"op": 1, "d": session.seq}
        if _canonical(message) != _canonical(expected):
            await self._fail(websocket, session, 4009, f"heartbeat {text!r}, expected {json.dumps(expected)}")
            return False
        gap = now - session.anchor
        if gap < self.interval - self.early_tolerance:
            await self._fail(websocket, session, 4009, f"heartbeat {gap:.3f}s after the previous one (early)")
            return False
        with self._lock:
            session.heartbeats.append(Heartbeat(connection=session.number, at=now, d=message["d"]))
            session.anchor = now
        await websocket.send(json.dumps({"op": 11}))
        return True

    async def _fail(self, websocket, session, code, reason):
        with self._lock:
            self.failures.append((session.number, code, reason))
            session.closed_with = (code, reason)
        await websocket.close(code, reason[:120])

    async def _watchdog(self, websocket, session):
        """Close with 4009 when no heartbeat comes within interval + late_tolerance."""
        while True:
            await asyncio.sleep(0.05)
            waited = time.monotonic() - session.anchor
            if waited > self.interval + self.late_tolerance:
                await self._fail(websocket, session, 4009, f"no heartbeat for {waited:.3f}s (late)")
                return

    async def _dispatch_loop(self, websocket, session):
        while True:
            await asyncio.sleep(self.dispatch_every)
            if not self.dispatching.is_set():
                continue
            if time.monotonic() >= session.anchor + self.interval - self.quiet_secs:
                continue  # a heartbeat is due soon: let it carry the current state
            t, d = self._pending.popleft() if self._pending else ("MESSAGE_CREATE", None)
            seq = (session.seq or 0) + 1
            event = {
                "op": 0,
                "t": t,
                "s": seq,
                "d": d if d is not None else {"id": str(seq), "content": f"message {seq}"},
            }
            with self._lock:
                session.seq = seq
                session.dispatched.append(event)
            await websocket.send(json.dumps(event))
