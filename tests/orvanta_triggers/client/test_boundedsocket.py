"""The socket under a trigger's WebSocket: sends are bounded in time, over TCP and
over TLS, so a peer that stops reading can't hold the shared sending threads."""

import socket
import ssl
import threading
import time

import pytest

from orvanta_triggers.client.boundedsocket import BoundedSocket
from tests.support.frames import read_frame
from tests.support.wsserver import wait_for


def fill_until_timeout(bounded):
    """Send until the send times out; the seconds the last (timed-out) send took."""
    chunk = b"x" * 65536
    for _ in range(10_000):
        started = time.monotonic()
        try:
            bounded.send(chunk)
        except socket.timeout:
            return time.monotonic() - started
    raise AssertionError("the peer took 655 MB without reading")


@pytest.fixture
def small_buffer_pair():
    """A BoundedSocket over TCP with a 4 KiB send buffer and a 0.3 s send timeout, and
    the peer end of its socket (which reads nothing unless told)."""
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    bounded = BoundedSocket(ours, max_message_bytes=1024, send_timeout=0.3)
    bounded.settimeout(None)
    yield bounded, theirs
    ours.close()
    theirs.close()


def test_a_send_to_a_peer_that_stops_reading_times_out(small_buffer_pair):
    """Over TCP, a send that can't proceed fails with socket.timeout after the send timeout."""
    bounded, _ = small_buffer_pair
    assert 0.2 < fill_until_timeout(bounded) < 2.0


def test_a_tls_send_to_a_peer_that_stops_reading_times_out(trusted_ca):
    """Over TLS too (where a blocking SSLSocket would retry forever), a stuck send times out."""
    server = socket.create_server(("127.0.0.1", 0))
    context = trusted_ca.server_context("localhost")
    accepted = []

    def serve():
        conn, _ = server.accept()
        tls = context.wrap_socket(conn, server_side=True)
        accepted.append(tls)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ours = socket.create_connection(server.getsockname(), timeout=5)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    try:
        bounded = BoundedSocket(ours, max_message_bytes=1024, send_timeout=0.3, tls_hostname="localhost")
        bounded.settimeout(None)
        thread.join(5)
        assert accepted, "the TLS handshake did not complete"
        assert 0.2 < fill_until_timeout(bounded) < 2.0
    finally:
        ours.close()
        server.close()
        for tls in accepted:
            tls.close()


def test_a_certificate_for_another_name_fails_the_handshake(trusted_ca):
    """TLS checks the server's certificate against the URL's host name."""
    server = socket.create_server(("127.0.0.1", 0))
    context = trusted_ca.server_context("elsewhere.test")

    def serve():
        conn, _ = server.accept()
        try:
            context.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    ours = socket.create_connection(server.getsockname(), timeout=5)
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            BoundedSocket(ours, max_message_bytes=1024, send_timeout=0.3, tls_hostname="localhost")
    finally:
        ours.close()
        server.close()


def test_writable_says_no_once_the_peer_stops_reading(small_buffer_pair):
    """writable() turns False when the send buffer is full, without blocking, and True once the peer reads."""
    bounded, theirs = small_buffer_pair
    assert bounded.writable()
    fill_until_timeout(bounded)
    started = time.monotonic()
    assert not bounded.writable()
    assert time.monotonic() - started < 0.1
    theirs.setblocking(False)
    while True:
        try:
            theirs.recv(1 << 20)
        except BlockingIOError:
            break
    assert bounded.writable()


class RecordingSocket:
    """A real socket that records the buffer size of every recv that returned, how
    many found nothing to read, and when each blocking recv began."""

    def __init__(self, sock):
        self.sock = sock
        self.sizes = []
        self.found_nothing = 0
        self.blocking_recv_at = []

    def recv(self, size, flags=0):
        if not flags & socket.MSG_DONTWAIT:
            self.blocking_recv_at.append(time.monotonic())
        try:
            data = self.sock.recv(size, flags)
        except BlockingIOError:
            self.found_nothing += 1
            raise
        self.sizes.append(size)
        return data

    def __getattr__(self, name):
        return getattr(self.sock, name)


def test_reads_grow_while_data_waits_and_shrink_once_it_is_drained():
    """Reads double while each fills its buffer, then size to what came, down to 2 KiB when quiet."""
    ours, theirs = socket.socketpair()
    recording = RecordingSocket(ours)
    bounded = BoundedSocket(recording, max_message_bytes=1 << 20, send_timeout=1.0)
    try:
        theirs.sendall(b"x" * 20000)
        received = 0
        while received < 20000:
            received += len(bounded.recv(65536))
        assert recording.sizes == [2048, 4096, 8192, 16384]
        theirs.sendall(b"y")
        bounded.recv(65536)
        theirs.sendall(b"z")
        bounded.recv(65536)
        assert recording.sizes[4:] == [20000 - 14336, 2048]
    finally:
        ours.close()
        theirs.close()


def test_a_read_waits_for_data_before_giving_recv_a_buffer():
    """An idle connection's read waits in poll(), so no receive buffer is held while nothing comes."""
    ours, theirs = socket.socketpair()
    recording = RecordingSocket(ours)
    bounded = BoundedSocket(recording, max_message_bytes=1024, send_timeout=1.0)
    bounded.settimeout(None)
    received = []
    reader = threading.Thread(target=lambda: received.append(bounded.recv(16)), daemon=True)
    try:
        reader.start()
        wait_for(lambda: recording.found_nothing, timeout=5, message="the reader to find nothing to read")
        sent_at = time.monotonic()
        theirs.sendall(b"late")
        reader.join(5)
        assert received == [b"late"]
        assert len(recording.blocking_recv_at) == 1 and recording.blocking_recv_at[0] >= sent_at
    finally:
        ours.close()
        theirs.close()


@pytest.fixture
def framed_pair():
    """A BoundedSocket reading frames, and the peer end of its socket."""
    ours, theirs = socket.socketpair()
    bounded = BoundedSocket(ours, max_message_bytes=1024, send_timeout=1.0)
    bounded.start_framing()
    yield bounded, theirs
    ours.close()
    theirs.close()


def test_pongs_are_taken_and_noted_and_the_next_frame_handed_on(framed_pair):
    """Pongs never reach websocket-client: the socket notes when they came and hands on the next frame."""
    bounded, theirs = framed_pair
    before = time.monotonic()
    theirs.sendall(b"\x8a\x00" + b"\x8a\x02hi" + b"\x81\x02ok")
    assert bounded.recv(2) == b"\x81\x02"
    assert bounded.recv(2) == b"ok"
    assert before <= bounded.pong_at <= time.monotonic()


@pytest.mark.parametrize("first_byte", [0xCA, 0x0A], ids=["reserved bit", "no FIN"])
def test_a_malformed_pong_is_handed_on_for_websocket_client_to_refuse(framed_pair, first_byte):
    """Only a well-formed pong is taken; one with a reserved bit or without FIN goes on as before."""
    bounded, theirs = framed_pair
    theirs.sendall(bytes((first_byte, 0)))
    assert bounded.recv(2) == bytes((first_byte, 0))
    assert bounded.pong_at == float("-inf")


def test_a_ping_the_socket_cannot_take_now_is_not_waited_for(small_buffer_pair):
    """send_ping() on a socket whose peer stopped reading says False at once, instead of waiting out the send timeout."""
    bounded, _ = small_buffer_pair
    fill_until_timeout(bounded)
    started = time.monotonic()
    assert bounded.send_ping() is False
    assert time.monotonic() - started < 0.1


def test_a_ping_is_an_empty_masked_frame_with_a_fresh_key():
    """send_ping() sends a whole empty ping, masked as client frames must be, with a new random key each time."""
    ours, theirs = socket.socketpair()
    bounded = BoundedSocket(ours, max_message_bytes=1024, send_timeout=1.0)
    bounded.settimeout(None)
    try:
        assert bounded.send_ping() and bounded.send_ping()
        sent = theirs.recv(64)
        assert len(sent) == 12 and sent[:2] == sent[6:8] == b"\x89\x80"
        assert sent[2:6] != sent[8:12]
    finally:
        ours.close()
        theirs.close()


@pytest.mark.parametrize(
    "message",
    ["", "héllo", "x" * 125, "y" * 126, "z" * 70_000, b"\x00\xff binary", b"b" * 65_536],
    ids=["empty", "text", "125", "126", "70000", "binary", "65536"],
)
def test_send_message_now_sends_one_masked_frame(message):
    """send_message_now() sends the message as one masked text or binary frame whose payload unmasks to it."""
    ours, theirs = socket.socketpair()
    try:
        bounded = BoundedSocket(ours, max_message_bytes=1 << 20, send_timeout=1.0)
        bounded.settimeout(None)
        assert bounded.send_message_now(message)
        data = b""
        while (found := read_frame(data)) is None:
            data += theirs.recv(1 << 20)
        opcode, payload, used = found
        assert used == len(data)
        assert data[1] & 0x80, "the frame is masked"
        if isinstance(message, str):
            assert (opcode, payload.decode("utf-8")) == (0x1, message)
        else:
            assert (opcode, payload) == (0x2, message)
    finally:
        ours.close()
        theirs.close()


def test_send_message_now_refuses_at_once_when_the_socket_is_full(small_buffer_pair):
    """A heartbeat the socket can't take now is refused at once (False), never waited on."""
    bounded, _ = small_buffer_pair
    fill_until_timeout(bounded)
    started = time.monotonic()
    assert not bounded.send_message_now("heartbeat")
    assert time.monotonic() - started < 0.1
