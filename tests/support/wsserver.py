"""WebSocket servers (the `websockets` library) on a free port, on an asyncio loop in a
thread of their own, for tests, bench and chaos: the machinery (LoopThread,
ServerOnThread) and the tests' plain server (WsServer); other behaviours subclass
ServerOnThread where they belong (tests' gateways, bench's hub, chaos's feeds)."""

import asyncio
import threading
import time

from websockets.asyncio.server import serve


class LoopThread:
    """An asyncio loop on a daemon thread of its own: other threads run() coroutines
    and call() functions on it. Several servers may share one (the bench's do)."""

    def __init__(self, name="ws-servers"):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
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


class ServerOnThread:
    """A `websockets` server on a LoopThread (its own unless `loop_thread` is given),
    on a free port of `host`: start(), stop(), restart() on the same port, shutdown().
    A subclass brings the behaviour: its coroutine handle(websocket), and more
    arguments of serve() in serve_options()."""

    def __init__(self, *, host="127.0.0.1", loop_thread=None, thread_name="ws-server"):
        self.host = host
        self.port = None
        self._server = None
        self._clients = set()  # the open connections a subclass's handle() keeps
        self._own_loop_thread = loop_thread is None
        self._loop_thread = loop_thread
        self._thread_name = thread_name

    @property
    def loop(self):
        return self._loop_thread.loop

    @property
    def open_connections(self):
        return len(self._clients)

    def serve_options(self):
        return {}

    async def handle(self, websocket):
        raise NotImplementedError

    def start(self, timeout=5):
        if self._loop_thread is None:
            self._loop_thread = LoopThread(self._thread_name)
        self._run(self._start(), timeout)
        return self

    async def _start(self):
        options = {"ping_interval": None, **self.serve_options()}
        self._server = await serve(self.handle, self.host, self.port or 0, **options)
        self.port = self._server.sockets[0].getsockname()[1]

    def _run(self, coroutine, timeout=5):
        return self._loop_thread.run(coroutine, timeout)

    def _call(self, fn, timeout=10):
        return self._loop_thread.call(fn, timeout=timeout)

    def close_all(self, code=1000, reason=""):
        async def close():
            for client in list(self._clients):
                await client.close(code, reason)

        self._run(close())

    def stop(self, timeout=10):
        """Stop listening and close every connection (1001, going away)."""

        async def stop():
            self._server.close()
            await self._server.wait_closed()

        self._run(stop(), timeout)

    def restart(self):
        """Start again on the same port (after stop())."""
        self._run(self._start())

    def shutdown(self):
        if self._loop_thread is None or not self._loop_thread.thread.is_alive():
            return
        try:
            self.stop()
        except Exception:
            pass
        if self._own_loop_thread:
            self._loop_thread.close()


class WsServer(ServerOnThread):
    """Counts connections, records what it receives, and sends to or closes its
    clients on demand (TLS with `ssl_context`)."""

    def __init__(self, *, on_connect_messages=(), host="127.0.0.1", subprotocols=None, ssl_context=None):
        super().__init__(host=host)
        self.ssl_context = ssl_context
        self.subprotocols = subprotocols
        self.on_connect_messages = list(on_connect_messages)
        self.received = []
        self.connects = 0
        self.request_headers = []
        self.request_paths = []
        self.close_codes = []
        self.max_open = 0
        self._lock = threading.Lock()

    @property
    def url(self):
        return f"{'wss' if self.ssl_context else 'ws'}://{self.host}:{self.port}/feed"

    def serve_options(self):
        return {"subprotocols": self.subprotocols, "ssl": self.ssl_context}

    async def handle(self, websocket):
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

    def send_all(self, message):
        async def send():
            for client in list(self._clients):
                await client.send(message)

        self._run(send())

    def received_snapshot(self):
        with self._lock:
            return list(self.received)


def wait_for(predicate, *, timeout, message="condition", interval=0.02, error=AssertionError):
    """Wait until predicate() is truthy; its value, or `error` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise error(f"timed out after {timeout:g}s waiting for {message}")
        time.sleep(interval)
