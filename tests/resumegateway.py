"""A gateway that resumes sessions, Discord-style, for session-resume tests: a real
WebSocket server on a free port in a background thread (tests/support/wsserver.py's
ServerOnThread).

- On connect it sends hello {"op": 10}.
- IDENTIFY {"op": 2} opens a session: READY {"op": 0, "t": "READY", "s": 1,
  "d": {"session_id": ...}}.
- `dispatch(n)` appends n events {"op": 0, "t": "MESSAGE_CREATE", "s": k, "d": {"n": k}}
  to the session's log and sends them to the client if one is connected; events
  dispatched while none is are only logged (the client missed them).
- RESUME {"op": 6, "d": {"session_id", "seq"}} of a known session replays every
  logged event after `seq`, then RESUMED; of an unknown one it answers INVALID_SESSION
  {"op": 9, "d": false}.
- `drop()` closes the client's connection (code 4000, resumable); while `refusing` is
  set, upgrades are answered with HTTP 503 (so a test can dispatch into the gap);
  `forget_sessions()` makes the next RESUME invalid.
"""

import http
import json
import threading
import uuid

from websockets.exceptions import ConnectionClosed

from tests.support.wsserver import ServerOnThread


class ResumeGateway(ServerOnThread):
    def __init__(self, host="127.0.0.1"):
        super().__init__(host=host)
        self.refusing = threading.Event()
        self.connections = []  # per connection: the client's messages, parsed
        self.session_ids = []  # of every session opened by an IDENTIFY, in order
        self._sessions = {}  # session id -> list of events
        self._client = None
        self._session_id = None

    @property
    def url(self):
        return f"ws://{self.host}:{self.port}/gateway"

    def serve_options(self):
        return {"process_request": self._process_request}

    def _process_request(self, connection, request):
        if self.refusing.is_set():
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "not now\n")
        return None

    # What tests do

    @property
    def connected(self):
        return self._client is not None

    def dispatch(self, count):
        async def send():
            events = self._sessions[self._session_id]
            for _ in range(count):
                seq = len(events) + 1
                event = {"op": 0, "t": "MESSAGE_CREATE", "s": seq, "d": {"n": seq}}
                events.append(event)
                if self._client is not None:
                    await self._client.send(json.dumps(event))

        self._run(send())

    def drop(self):
        async def close():
            if self._client is not None:
                await self._client.close(4000, "resumable drop")

        self._run(close())

    def forget_sessions(self):
        async def forget():
            self._sessions.clear()

        self._run(forget())

    def ops(self, connection):
        """The ops the client sent on its `connection`-th connection (from 1)."""
        return [message.get("op") for message in self.connections[connection - 1]]

    # The protocol

    async def handle(self, websocket):
        received = []
        self.connections.append(received)
        self._client = websocket
        try:
            await websocket.send(json.dumps({"op": 10, "d": {"heartbeat_interval": 45000}}))
            async for text in websocket:
                message = json.loads(text)
                received.append(message)
                if message.get("op") == 2:
                    await self._identify(websocket)
                elif message.get("op") == 6:
                    await self._resume(websocket, message.get("d") or {})
        except ConnectionClosed:
            pass
        finally:
            if self._client is websocket:
                self._client = None

    async def _identify(self, websocket):
        self._session_id = uuid.uuid4().hex
        self.session_ids.append(self._session_id)
        ready = {"op": 0, "t": "READY", "s": 1, "d": {"session_id": self._session_id}}
        self._sessions[self._session_id] = [ready]
        await websocket.send(json.dumps(ready))

    async def _resume(self, websocket, d):
        events = self._sessions.get(d.get("session_id"))
        if events is None:
            await websocket.send(json.dumps({"op": 9, "d": False}))
            return
        self._session_id = d["session_id"]
        for event in events:
            if event["s"] > (d.get("seq") or 0):
                await websocket.send(json.dumps(event))
        await websocket.send(json.dumps({"op": 0, "t": "RESUMED", "s": None, "d": {}}))
