"""The socket a trigger's WebSocket runs on, handed to websocket-client through its
public `connect(url, socket=...)`.

It does what websocket-client's public API can't:

- **Messages past the size limit are refused unread.** Every frame header is read
  here before websocket-client sees it; a data frame that takes its message past
  `max_message_bytes` has its payload read from the socket and thrown away in
  chunks (never held), and websocket-client is handed the same frame announcing an
  empty payload. `refused_bytes` tells the connection that the message it is
  assembling was refused (and how large it had grown), so the connection is kept.
  Control frames over 125 bytes, reserved opcodes and masked frames fail the
  connection at once, before their payload is read.
- **Pongs are taken here.** A complete pong never reaches websocket-client:
  `pong_at` says when the last came. At 10,000 connections pinged every 20 s, each
  pong parsed by websocket-client's Python frame reader (an object, a dozen calls)
  was a third of the idle connection threads' CPU.
- **Pings and heartbeats are sent here**, whole: `send_ping()` and
  `send_message_now()`, never waiting on a full socket.
  websocket-client builds each frame in Python, 500 times a second at 10,000
  connections. Every `send` goes out whole
  (websocket-client hands over one frame per call), so a ping never lands inside
  another frame.
- **Between frames, a listener's connection can wait on a shared thread**
  (`park_reads_on`, listener/parking.py), which takes the pongs that come meanwhile
  (`read_parked`): its own thread wakes only for a frame, the end of the stream or an
  error.
- **One system call per 64 KiB read**, not three per frame: websocket-client asks
  for each header, length and payload separately, and is served from memory. Reads
  are sized after the last one (from 2 KiB): `recv` allocates its buffer before it
  blocks, and 10,000 idle connections each blocked on 64 KiB held hundreds of MB of
  malloc arenas.
- **A send never blocks for longer than `send_timeout`.** Heartbeats and pings of
  every connection go out from one shared timer thread, and results from one router
  thread: a peer that stops reading must not stall them. The socket stays blocking
  (an idle reader costs no wake-up) with the kernel's SO_SNDTIMEO bounding sends;
  TLS runs on memory buffers here, because an `ssl.SSLSocket` retries a timed-out
  blocking write forever.

websocket-client must read exactly one frame at a time (it does: it asks for a
header, then exactly the announced lengths), so `refused_bytes` always describes the
frame it last returned.
"""

import collections
import os
import select
import socket
import ssl
import struct
import threading
import time

import websocket

CHUNK = 65536
# A quiet socket's next read.
FIRST_READ = 2048
MAX_CONTROL_PAYLOAD = 125
DATA_OPCODES = (0x0, 0x1, 0x2)
CONTROL_OPCODES = (0x8, 0x9, 0xA)
# A ping with FIN set and an empty payload, masked (as every client frame must be);
# its masking key follows.
PING_HEADER = b"\x89\x80"
# A pong's first byte with FIN set and no reserved bit: any other first byte of a
# pong goes to websocket-client, which refuses it as before.
PONG_FIRST_BYTE = 0x8A
# A whole (FIN) text, binary and close frame's first byte.
TEXT_FIRST_BYTE = 0x81
BINARY_FIRST_BYTE = 0x82
CLOSE_FIRST_BYTE = 0x88
# Masking keys for pings, read from os.urandom 1,024 at a time: a system call per
# ping was one more GIL hand-off on the shared timer thread. Each key is used once.
_mask_keys = collections.deque()


def _mask_key():
    try:
        return _mask_keys.popleft()
    except IndexError:
        block = os.urandom(4096)
        _mask_keys.extend(block[i : i + 4] for i in range(0, len(block), 4))
        return _mask_keys.popleft()


def _masked_frame(first_byte, payload):
    """A whole client frame: `first_byte` (FIN and opcode), the payload's length, a
    fresh masking key, and the payload masked with it."""
    size = len(payload)
    if size < 126:
        header = bytes((first_byte, 0x80 | size))
    elif size < 65536:
        header = bytes((first_byte, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((first_byte, 0x80 | 127)) + size.to_bytes(8, "big")
    key = _mask_key()
    repeated = key * (size // 4) + key[: size % 4]
    masked = (int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")).to_bytes(size, "little")
    return header + key + masked


def _pongs_at_start(data):
    """How many bytes at the start of `data` are whole pongs (FIN set, unmasked,
    at most 125 bytes of payload); anything else is left to the reader."""
    pos, size = 0, len(data)
    while size - pos >= 2 and data[pos] == PONG_FIRST_BYTE and data[pos + 1] <= MAX_CONTROL_PAYLOAD:
        end = pos + 2 + data[pos + 1]
        if end > size:
            break
        pos = end
    return pos


class BoundedSocket:
    """A connected TCP socket (optionally TLS) speaking WebSocket frames to
    websocket-client, as described in the module docstring."""

    def __init__(self, sock, *, max_message_bytes, send_timeout, tls_hostname=None):
        self._sock = sock
        self._max_message_bytes = max_message_bytes
        self._send_timeout = send_timeout
        self._send_lock = threading.Lock()
        self._tls = None
        self._tls_lock = threading.Lock()
        self._buffer = b""
        self._pos = 0
        self._framing = False
        self._header_out = b""
        self._payload_left = 0
        self._message_bytes = 0
        self.refused_bytes = None
        # When the last pong came (monotonic).
        self.pong_at = float("-inf")
        self._read_size = FIRST_READ
        # Reads block (no timeout): set once connected (settimeout(None)).
        self._reads_block = False
        # The listener's Parking, where this socket waits between frames, if any.
        self._parking = None
        self._label = None
        self._park_after_ms = 0
        self._park_at_once = True
        # Set when the connection closes: its reader reads everything itself.
        self._unparked = False
        # An error the parking thread met reading, raised on the reader's thread.
        self._parked_error = None
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLOUT)
        # Its own poll object: senders on other threads use the other one meanwhile.
        self._read_poll = select.poll()
        self._read_poll.register(sock.fileno(), select.POLLIN)
        if tls_hostname is not None:
            self._start_tls(tls_hostname)

    # TLS on memory buffers

    def _start_tls(self, hostname):
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = ssl.create_default_context().wrap_bio(self._incoming, self._outgoing, server_hostname=hostname)
        while True:
            try:
                with self._tls_lock:
                    self._tls.do_handshake()
                self._flush_tls()
                return
            except ssl.SSLWantReadError:
                self._flush_tls()
                if not self._feed_tls():
                    raise ssl.SSLEOFError("the server closed the connection during the TLS handshake") from None

    def _read_some(self):
        """What the socket has (waiting for it), b"" at end of stream."""
        size = self._read_size
        try:
            data = self._sock.recv(size, socket.MSG_DONTWAIT)
        except BlockingIOError:
            # Wait for data before giving recv() a buffer: a blocked recv() holds one,
            # and 10,000 idle connections would hold 10,000 (20 MB).
            self._read_poll.poll()
            data = self._sock.recv(size)
        self._sized_next_read(size, data)
        return data

    def _sized_next_read(self, size, data):
        """A read that filled its buffer doubles the next (up to CHUNK), so a busy
        socket is read 64 KiB at a time; one that did not sizes the next after what
        came, down to FIRST_READ."""
        self._read_size = min(size * 2, CHUNK) if len(data) == size else max(FIRST_READ, len(data))

    def _read_now(self):
        """What the peer has sent (decrypted), without waiting: None when nothing
        has come yet, b"" at end of stream."""
        size = self._read_size
        try:
            raw = self._sock.recv(size, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            raw = None
        else:
            self._sized_next_read(size, raw)
        if self._tls is None:
            return raw
        if raw is not None:
            with self._tls_lock:
                if raw:
                    self._incoming.write(raw)
                else:
                    self._incoming.write_eof()
        chunks = []
        while True:
            try:
                with self._tls_lock:
                    chunk = self._tls.read(CHUNK)
            except ssl.SSLWantReadError:
                return b"".join(chunks) or None
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                chunk = b""
            if not chunk:
                # The end of the stream (b"" after the peer's close_notify); what came
                # before it first: the next read meets the end again.
                return b"".join(chunks)
            chunks.append(chunk)

    def _feed_tls(self):
        """Move what the socket has into the TLS engine; False at end of stream."""
        data = self._read_some()
        with self._tls_lock:
            if data:
                self._incoming.write(data)
            else:
                self._incoming.write_eof()
        return bool(data)

    def _flush_tls(self):
        with self._send_lock:
            with self._tls_lock:
                data = self._outgoing.read()
            if data:
                self._send_all(data)

    def _read_raw(self):
        """Up to CHUNK bytes from the peer (decrypted); b"" at end of stream."""
        if self._tls is None:
            return self._read_some()
        while True:
            try:
                with self._tls_lock:
                    data = self._tls.read(CHUNK)
            except ssl.SSLWantReadError:
                if not self._feed_tls():
                    return b""
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""
            # Reading may have produced TLS records to send (TLS 1.3 key updates).
            if self._outgoing.pending:
                self._flush_tls()
            return data

    # The socket interface websocket-client uses

    def start_framing(self):
        """The HTTP upgrade is done: from now on the stream is WebSocket frames."""
        self._framing = True

    def recv(self, bufsize):
        if not self._framing:
            return self._take(bufsize)
        if self._header_out:
            data, self._header_out = self._header_out[:bufsize], self._header_out[bufsize:]
            return data
        if self._payload_left == 0:
            self._read_header()
            return self.recv(bufsize)
        data = self._take(min(bufsize, self._payload_left))
        self._payload_left -= len(data)
        return data

    def send(self, data):
        with self._send_lock:
            if self._tls is None:
                self._send_all(data)
                return len(data)
            with self._tls_lock:
                self._tls.write(data)
                encrypted = self._outgoing.read()
            self._send_all(encrypted)
            return len(data)

    def send_ping(self):
        """Send an empty ping, with the fresh random masking key RFC 6455 asks for, if
        the socket takes it now; False, and nothing sent, if it would have to wait."""
        return self._send_now(PING_HEADER + _mask_key())

    def send_message_now(self, data):
        """Send `data` as one text (str) or binary (bytes) frame if the socket takes
        it now; False, and nothing sent, if it would have to wait. The shared timer
        thread's heartbeats, 10,000 a second at 10,000 connections: websocket-client's
        send took three system calls (a masking key from os.urandom, a look whether
        the socket takes it, the send), each a GIL hand-off."""
        if isinstance(data, str):
            return self._send_now(_masked_frame(TEXT_FIRST_BYTE, data.encode("utf-8")))
        return self._send_now(_masked_frame(BINARY_FIRST_BYTE, data))

    def send_close_now(self, code):
        """Send a close frame with `code` if the socket takes it now; False, and
        nothing sent, if it would have to wait."""
        return self._send_now(_masked_frame(CLOSE_FIRST_BYTE, struct.pack("!H", code)))

    def _send_now(self, frame):
        """Send the whole of `frame` if the socket takes it now. Over TCP that is one
        system call (a non-blocking send), where looking first (writable()) and
        sending took two."""
        if self._tls is not None:
            if not self.writable():
                return False
            self.send(frame)
            return True
        with self._send_lock:
            try:
                sent = self._sock.send(frame, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return False
            # The kernel takes a small frame whole or not at all in practice; should
            # it take part, the rest follows (within the send timeout): a frame is
            # never cut.
            self._send_all(frame[sent:])
        return True

    def park_reads_on(self, parking, label, *, park_after):
        """Wait for the next frame on `parking` (listener.parking.Parking), which takes
        the pongs that come meanwhile, rather than in this thread's own poll(): at
        once until a frame has come, and after `park_after` seconds without one.
        `label` names the socket in the parking's log lines."""
        self._parking = parking
        self._label = label
        self._park_after_ms = int(park_after * 1000)
        self._park_at_once = True

    def unpark(self):
        """From now on the reader waits on its own thread, and if it waits on the
        parking now, the parking thread hands it the next event unread. A closing
        connection reads its close handshake so: each handed over through the
        parking thread, or woken at once and waiting again, 10,000 closing took
        twice as long."""
        self._unparked = True

    def read_parked(self):
        """On the parking thread, while this socket's reader waits in `Parking.wait`:
        take what the socket has without waiting, and the pongs it starts with.
        Whether the reader must wake: bytes of a frame, the end of the stream or an
        error are there for it (what was read is left in the read buffer)."""
        if self._unparked:
            return True
        try:
            data = self._read_now()
        except OSError as exc:
            self._parked_error = exc
            return True
        if self._tls is not None and self._outgoing.pending:
            # Records to send back (TLS 1.3 key updates): the reader sends them.
            self._buffer, self._pos = data or b"", 0
            return True
        if data is None:
            return False
        pos = _pongs_at_start(data)
        if pos:
            self.pong_at = time.monotonic()
        if pos == len(data) and data:
            return False
        self._buffer, self._pos = data, pos
        return True

    def gettimeout(self):
        return self._sock.gettimeout()

    def settimeout(self, timeout):
        """Connect-time reads and writes time out as asked; once connected (timeout
        None), reads block and sends are bounded by SO_SNDTIMEO."""
        self._sock.settimeout(timeout)
        self._reads_block = timeout is None
        if timeout is None:
            seconds = int(self._send_timeout)
            micros = int((self._send_timeout - seconds) * 1_000_000)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", seconds, micros))

    def fileno(self):
        return self._sock.fileno()

    def writable(self):
        """Whether the kernel would take a small frame now without blocking (the
        shared timer thread looks before it sends, and comes back later if not)."""
        return bool(self._poll.poll(0))

    def shutdown(self, how):
        self._sock.shutdown(how)

    def close(self):
        self._sock.close()

    def __getattr__(self, name):
        # Anything else websocket-client asks of a socket (its `_closed` check, say).
        return getattr(self._sock, name)

    # Internals

    def _send_some(self, data):
        try:
            return self._sock.send(data)
        except (BlockingIOError, InterruptedError) as exc:
            raise socket.timeout(f"could not send for {self._send_timeout:g}s: the peer is not reading") from exc

    def _send_all(self, data):
        view = memoryview(data)
        while view:
            view = view[self._send_some(view) :]

    def _take(self, bufsize):
        if self._pos >= len(self._buffer):
            self._buffer, self._pos = self._read_raw(), 0
        data = self._buffer[self._pos : self._pos + bufsize]
        self._pos += len(data)
        if self._pos >= len(self._buffer):
            # Drop what was handed out: an idle connection holds no buffer.
            self._buffer, self._pos = b"", 0
        return data

    def _fill(self, needed):
        """Buffer at least `needed` unread bytes, or say the server closed the connection."""
        while len(self._buffer) - self._pos < needed:
            data = self._read_raw()
            if not data:
                raise websocket.WebSocketConnectionClosedException("the server closed the connection")
            self._buffer, self._pos = self._buffer[self._pos :] + data, 0

    def _read_header(self):
        """Read the next frame's header and decide what websocket-client is told;
        pongs before it are taken here."""
        while True:
            if (
                self._pos >= len(self._buffer)
                and self._parking is not None
                and self._reads_block
                and not self._unparked
            ):
                self._await_frame()
            self._fill(2)
            start = self._pos
            first, second = self._buffer[start], self._buffer[start + 1]
            opcode, masked, code = first & 0x0F, second & 0x80, second & 0x7F
            extended = {126: 2, 127: 8}.get(code, 0)
            header_size = 2 + extended + (4 if masked else 0)
            self._fill(header_size)
            start = self._pos
            length = int.from_bytes(self._buffer[start + 2 : start + 2 + extended], "big") if extended else code
            if masked:
                raise websocket.WebSocketProtocolException("the server sent a masked frame")
            if opcode in CONTROL_OPCODES:
                if length > MAX_CONTROL_PAYLOAD:
                    raise websocket.WebSocketProtocolException(f"a control frame of {length} bytes (at most 125)")
                if first == PONG_FIRST_BYTE:
                    self._take_pong(header_size + length)
                    continue
            elif opcode not in DATA_OPCODES:
                raise websocket.WebSocketProtocolException(f"reserved opcode {opcode:#x}")
            else:
                if opcode != 0x0:
                    self._message_bytes = 0
                    self.refused_bytes = None
                self._message_bytes += length
                if self.refused_bytes is not None or self._message_bytes > self._max_message_bytes:
                    self.refused_bytes = self._message_bytes
                    self._pos += header_size
                    self._discard(length)
                    self._header_out = bytes((first, 0))
                    self._park_at_once = False
                    return
            self._header_out = self._buffer[start : start + header_size]
            self._pos += header_size
            self._payload_left = length
            self._park_at_once = False
            return

    def _await_frame(self):
        """Buffer what comes next, waiting for it on the parking. The buffer is left
        empty when the parking is not watching (the reader then waits in its own
        poll()) or found the end of the stream (met again by the next read).

        Once a frame has come, the next is first waited for here, for up to
        `park_after` seconds: a connection with traffic is never pinged, and parking
        it would only add a hand-over to every frame."""
        data = self._read_now()
        if data is None and not self._park_at_once:
            if self._read_poll.poll(self._park_after_ms):
                data = self._read_now()
            else:
                self._park_at_once = True
        if data is None:
            self._parking.wait(self, self._label)
            if self._parked_error is not None:
                error, self._parked_error = self._parked_error, None
                raise error
        elif data:
            self._buffer, self._pos = data, 0
        if self._tls is not None and self._outgoing.pending:
            self._flush_tls()

    def _take_pong(self, frame_size):
        """Consume the pong of `frame_size` bytes at the read position; note when it came."""
        self._fill(frame_size)
        self._pos += frame_size
        if self._pos >= len(self._buffer):
            self._buffer, self._pos = b"", 0
        self.pong_at = time.monotonic()

    def _discard(self, length):
        dropped = min(length, len(self._buffer) - self._pos)
        self._pos += dropped
        length -= dropped
        while length > 0:
            data = self._read_raw()
            if not data:
                raise websocket.WebSocketConnectionClosedException("the server closed the connection")
            if len(data) > length:
                self._buffer, self._pos = data, length
            length -= len(data)
