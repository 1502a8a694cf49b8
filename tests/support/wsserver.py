"""A real WebSocket server for tests (TLS with `ssl_context`), on a free port, in a background thread
(the `websockets` library): counts connections, records what it receives, and can
send to or close its clients on demand."""

import asyncio
import threading
import time

from websockets.asyncio.server import serve


class WsServer:
    def __init__(self, *, on_connect_messages=(), host="127.0.0.1", subprotocols=None, ssl_context=None):
        self.host = host
        self.ssl_context = ssl_context
        self.subprotocols = subprotocols
        self.on_connect_messages = list(on_connect_messages)
        self.received = []
        self.connects = 0
        self.request_headers = []
        self.request_paths = []
        self.close_codes = []
        self.max_open = 0
        self._clients = set()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server = None
        self.port = None

    @property
    def url(self):
        return f"{'wss' if self.ssl_context else 'ws'}://{self.host}:{self.port}/feed"

    @property
    def open_connections(self):
        return len(self._clients)

    def start(self):
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        return self

    async def _start(self):
        self._server = await serve(
            self._handle,
            self.host,
            self.port or 0,
            ping_interval=None,
            subprotocols=self.subprotocols,
            ssl=self.ssl_context,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, websocket):
        with self._lock:
            self.connects += 1
            self.request_headers.append(dict(websocket.request.headers.raw_items()))
            self.request_paths.append(websocket.request.path)
        self._clients.add(websocket)
        with self._lock:
            self.max_open = max(self.max_open, len(self._clients))
        try:
            for message in self.on_connect_messages:
                await websocket.send(message)
            async for message in websocket:
                with self._lock:
                    self.received.append(message)
        except Exception:
            pass
        finally:
            self._clients.discard(websocket)
            with self._lock:
                self.close_codes.append(websocket.close_code)

    def _run(self, coroutine, timeout=5):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def send_all(self, message):
        async def send():
            for client in list(self._clients):
                await client.send(message)

        self._run(send())

    def close_all(self, code=1000, reason=""):
        async def close():
            for client in list(self._clients):
                await client.close(code, reason)

        self._run(close())

    def stop(self):
        async def stop():
            self._server.close()
            await self._server.wait_closed()

        self._run(stop(), timeout=10)

    def restart(self):
        """Start again on the same port (after stop())."""
        self._run(self._start())

    def shutdown(self):
        try:
            self.stop()
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def received_snapshot(self):
        with self._lock:
            return list(self.received)


def wait_for(predicate, *, timeout, message="condition", interval=0.02):
    """Wait until predicate() is truthy; its value, or AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)
