"""Misbehaving servers for tests, on raw sockets in a background thread: they do
exactly what a real library would refuse to do (answer the upgrade with an error,
never answer, ignore pings, send invalid frames or close codes)."""

import base64
import hashlib
import socket
import struct
import threading

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(opcode, payload, fin=True):
    """An unmasked server frame."""
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([size])
    elif size < 65536:
        head += bytes([126]) + struct.pack("!H", size)
    else:
        head += bytes([127]) + struct.pack("!Q", size)
    return head + payload


def _read_request(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return None
        data += chunk
    return data.decode("latin-1")


def _accept_key(request):
    for line in request.split("\r\n"):
        if line.lower().startswith("sec-websocket-key:"):
            key = line.split(":", 1)[1].strip()
            return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    return ""


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
        while len(data) >= 2:
            opcode, size, offset = data[0] & 0x0F, data[1] & 0x7F, 2
            if size == 126:
                size, offset = struct.unpack("!H", data[2:4])[0], 4
            elif size == 127:
                size, offset = struct.unpack("!Q", data[2:10])[0], 10
            mask, payload = data[offset : offset + 4], data[offset + 4 : offset + 4 + size]
            if len(payload) < size:
                break
            frames.append((opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))))
            data = data[offset + 4 + size :]
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
        conn.sendall(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {_accept_key(request)}\r\n\r\n"
            ).encode()
        )
        for data in frames:
            conn.sendall(data)
        server.hold(conn)

    return behaviour
