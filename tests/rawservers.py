"""Misbehaving servers for tests, on raw sockets in a background thread: they do
exactly what a real library would refuse to do (answer the upgrade with an error,
never answer, ignore pings, send invalid frames or close codes)."""

import socket
import struct
import threading

from tests.support.frames import read_frame, read_upgrade


def _read_request(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return None
        data += chunk
    return data


class RawServer:
    """Accepts connections and hands each to `behaviour(server, conn)` on a thread.
    Behaviours: `http_status(code)`, `silent` (never answers), `upgrade_then(send)`."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.requests = 0
        self.received = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/raw"

    def _serve(self):
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.requests += 1
            self._conns.append(conn)
            threading.Thread(target=self._run_behaviour, args=(conn,), daemon=True).start()

    def _run_behaviour(self, conn):
        try:
            self.behaviour(self, conn)
        except OSError:
            pass

    def hold(self, conn):
        """Keep the connection open, reading (and recording) until the peer goes."""
        while not self._stop.is_set():
            try:
                conn.settimeout(0.2)
                data = conn.recv(65536)
            except socket.timeout:
                continue
            if not data:
                return
            self.received.append(data)

    def client_frames(self):
        """(opcode, unmasked payload) of every frame the client sent so far."""
        data, frames = b"".join(self.received), []
        while (found := read_frame(data)) is not None:
            opcode, payload, used = found
            frames.append((opcode, payload))
            data = data[used:]
        return frames

    def close_codes(self):
        """Close codes the client sent."""
        return [struct.unpack("!H", p[:2])[0] for op, p in self.client_frames() if op == 0x8 and len(p) >= 2]

    def close(self):
        self._stop.set()
        for conn in self._conns:
            try:
                conn.close()
            except OSError:
                pass
        self._sock.close()


def http_status(code):
    def behaviour(server, conn):
        _read_request(conn)
        conn.sendall(f"HTTP/1.1 {code} Nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        conn.close()

    return behaviour


def silent(server, conn):
    server.hold(conn)


def upgrade_then(*frames):
    """Complete the upgrade, send `frames`, then hold the connection (pings unanswered)."""

    def behaviour(server, conn):
        request = _read_request(conn)
        if request is None:
            return
        conn.sendall(read_upgrade(request)[1])
        for data in frames:
            conn.sendall(data)
        server.hold(conn)

    return behaviour
