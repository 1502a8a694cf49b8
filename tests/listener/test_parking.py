"""Connections waiting for their next frame on the shared parking thread, over socket
pairs: pongs are taken there without waking the reader; a frame, the end of the
stream, an error or the parking stopping wake it; a stopping listener's close answers
are taken there too."""

import logging
import socket
import ssl
import threading
import time

import pytest
import websocket

from listener import parking as parking_module
from listener.parking import Parking
from orvanta_triggers.client.boundedsocket import BoundedSocket
from tests.support.frames import read_frame
from tests.support.wsserver import wait_for

PONG = b"\x8a\x02hi"
CLOSE_1000 = b"\x88\x02\x03\xe8"
TEXT_HEADER = b"\x81\x05"
PARK_AFTER = 0.5


@pytest.fixture
def parking():
    """A running parking thread of its own."""
    parking = Parking(name="test-parking")
    parking.start()
    yield parking
    parking.stop()


@pytest.fixture
def parked_pair(parking):
    """A framing BoundedSocket that waits for frames on `parking`, and its peer end."""
    ours, theirs = socket.socketpair()
    bounded = BoundedSocket(ours, max_message_bytes=1024, send_timeout=1.0)
    bounded.settimeout(None)
    bounded.start_framing()
    bounded.park_reads_on(parking, "f/test/parked", park_after=PARK_AFTER)
    yield bounded, theirs
    ours.close()
    theirs.close()


class Reader:
    """Reads one frame header (as websocket-client does) on a thread of its own."""

    def __init__(self, bounded):
        self.header = None
        self.error = None
        self._bounded = bounded
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        try:
            self.header = self._bounded.recv(2)
        except (OSError, websocket.WebSocketException) as exc:
            self.error = exc

    def done(self, timeout=5.0):
        self._thread.join(timeout)
        return not self._thread.is_alive()


def parked_reader(parking, bounded):
    """A Reader of `bounded`, once it waits on the parking."""
    reader = Reader(bounded)
    wait_for(lambda: parking.parked() == 1, timeout=5, message="the reader to park")
    return reader


def assert_reads_text_frame(reader, theirs, before=b""):
    """The peer sends `before` and a text frame: the reader wakes with the frame's header."""
    theirs.sendall(before + TEXT_HEADER + b"hello")
    assert reader.done()
    assert reader.header == TEXT_HEADER


def test_a_pong_is_taken_without_waking_the_reader(parking, parked_pair):
    """A pong that comes while the reader waits is noted on the parking thread; the reader keeps waiting."""
    bounded, theirs = parked_pair
    reader = parked_reader(parking, bounded)
    theirs.sendall(PONG)
    wait_for(lambda: bounded.pong_at > float("-inf"), timeout=5, message="the pong to be noted")
    assert not reader.done(timeout=0.2)
    assert parking.parked() == 1


def test_a_frame_after_pongs_wakes_the_reader_with_its_bytes(parking, parked_pair):
    """Pongs and a text frame arriving together: the pongs are taken, the reader gets the frame's header."""
    bounded, theirs = parked_pair
    reader = parked_reader(parking, bounded)
    assert_reads_text_frame(reader, theirs, before=PONG + PONG)
    assert bounded.pong_at > float("-inf")
    assert parking.parked() == 0


def test_after_a_frame_the_reader_waits_on_its_own_until_quiet(parking, parked_pair):
    """Once a frame has come, the next is waited for on the reader's own thread, and on the parking after PARK_AFTER."""
    bounded, theirs = parked_pair
    reader = Reader(bounded)
    theirs.sendall(TEXT_HEADER + b"hello")
    assert reader.done()
    assert bounded.recv(5) == b"hello"
    reader = Reader(bounded)
    waiting_since = time.monotonic()
    wait_for(lambda: parking.parked() == 1, timeout=5, message="the reader to park")
    assert time.monotonic() - waiting_since >= PARK_AFTER
    theirs.sendall(TEXT_HEADER + b"again")
    assert reader.done()
    assert reader.header == TEXT_HEADER


def test_the_end_of_the_stream_wakes_the_reader(parking, parked_pair):
    """The peer closing its end wakes the reader, which finds the connection closed."""
    bounded, theirs = parked_pair
    reader = parked_reader(parking, bounded)
    theirs.close()
    assert reader.done()
    assert isinstance(reader.error, websocket.WebSocketConnectionClosedException)


def test_a_stopped_parking_leaves_its_readers_waiting_on_their_own(parking, parked_pair):
    """Stopping the parking wakes its readers, which then wait for their frame themselves."""
    bounded, theirs = parked_pair
    reader = parked_reader(parking, bounded)
    parking.stop()
    assert not reader.done(timeout=0.2)
    assert_reads_text_frame(reader, theirs)


def test_an_unparked_socket_is_handed_to_its_reader_unread(parking, parked_pair):
    """After unpark(), the next event wakes the parked reader without the parking thread reading (a closing connection)."""
    bounded, theirs = parked_pair
    reader = parked_reader(parking, bounded)
    bounded.unpark()
    theirs.sendall(PONG)
    # A pong the parking thread read would have left the reader parked.
    wait_for(lambda: parking.parked() == 0, timeout=5, message="the reader to be handed the pong")
    assert not reader.done(timeout=0.2)
    assert_reads_text_frame(reader, theirs)


def test_a_quiet_close_sends_a_close_frame_and_its_answer_shuts_the_socket_on_the_parking_thread(parking, parked_pair):
    """A stopping listener's close: a 1000 close frame goes out, the server's answer shuts the socket on the parking thread, and the reader is never woken."""
    bounded, theirs = parked_pair
    reader = parked_reader(parking, bounded)
    assert parking.close_quietly(bounded, 1000)
    assert read_frame(theirs.recv(16))[:2] == (0x8, b"\x03\xe8")
    assert not parking.close_answered(bounded)
    theirs.sendall(CLOSE_1000)
    wait_for(lambda: parking.close_answered(bounded), timeout=5, message="the close answer to be taken")
    assert theirs.recv(16) == b""
    assert not reader.done(timeout=0.2)


def test_a_stopped_parking_closes_answered_sockets_and_leaves_their_readers_waiting(parking, parked_pair):
    """At stop, a socket whose close answer was taken is closed, its reader not woken (it ends with the process)."""
    bounded, theirs = parked_pair
    reader = parked_reader(parking, bounded)
    assert parking.close_quietly(bounded, 1000)
    theirs.sendall(CLOSE_1000)
    wait_for(lambda: parking.close_answered(bounded), timeout=5, message="the close answer to be taken")
    parking.stop()
    assert bounded.fileno() == -1
    assert not reader.done(timeout=0.2)


def test_a_frame_before_the_close_answer_counts_as_the_answer(parking, parked_pair):
    """Whatever comes first once the close frame is out (here a late pong) ends the wait: nothing more is owed."""
    bounded, theirs = parked_pair
    parked_reader(parking, bounded)
    assert parking.close_quietly(bounded, 1000)
    theirs.sendall(PONG)
    wait_for(lambda: parking.close_answered(bounded), timeout=5, message="the socket to be shut")
    assert read_frame(theirs.recv(16))[0] == 0x8
    assert theirs.recv(16) == b""


def test_a_quiet_close_the_socket_cannot_take_now_sends_nothing(parking, parked_pair):
    """A socket whose buffer is full takes no close frame now: False, and the caller closes it the slow way."""
    bounded, theirs = parked_pair
    bounded.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    while bounded.send_ping():
        pass
    assert not parking.close_quietly(bounded, 1000)
    assert not parking.close_answered(bounded)


def test_an_unparked_reader_never_parks_again(parking, parked_pair):
    """After unpark(), the reader waits for each next frame on its own thread."""
    bounded, theirs = parked_pair
    bounded.unpark()
    reader = Reader(bounded)
    assert not reader.done(timeout=0.2)
    assert parking.parked() == 0
    theirs.sendall(TEXT_HEADER + b"hello")
    assert reader.done()


def test_a_read_failing_on_the_parking_thread_wakes_the_reader(parking, parked_pair, monkeypatch, caplog):
    """A bug reading one socket on the parking thread is logged with the trigger path, and its reader reads itself."""
    bounded, theirs = parked_pair

    def broken_read_parked():
        raise RuntimeError("injected")

    monkeypatch.setattr(bounded, "read_parked", broken_read_parked)
    reader = parked_reader(parking, bounded)
    with caplog.at_level(logging.ERROR, logger="listener.parking"):
        theirs.sendall(TEXT_HEADER + b"hello")
        assert reader.done()
    assert reader.header == TEXT_HEADER
    assert "f/test/parked" in caplog.text


@pytest.fixture
def tls_parked_pair(parking, trusted_ca):
    """A framing BoundedSocket over TLS that waits for frames on `parking`, and the
    server's TLS socket."""
    server = socket.create_server(("127.0.0.1", 0))
    context = trusted_ca.server_context("localhost")
    accepted = []
    threading.Thread(
        target=lambda: accepted.append(context.wrap_socket(server.accept()[0], server_side=True)), daemon=True
    ).start()
    ours = socket.create_connection(server.getsockname(), timeout=5)
    bounded = BoundedSocket(ours, max_message_bytes=1024, send_timeout=1.0, tls_hostname="localhost")
    bounded.settimeout(None)
    bounded.start_framing()
    bounded.park_reads_on(parking, "f/test/tls", park_after=PARK_AFTER)
    wait_for(lambda: accepted, timeout=5, message="the TLS handshake")
    yield bounded, accepted[0]
    ours.close()
    server.close()
    accepted[0].close()


def test_a_pong_over_tls_is_taken_on_the_parking_thread(parking, tls_parked_pair):
    """Over TLS too, a pong is decrypted and taken on the parking thread, and a frame after it wakes the reader."""
    bounded, theirs = tls_parked_pair
    reader = parked_reader(parking, bounded)
    theirs.sendall(PONG)
    wait_for(lambda: bounded.pong_at > float("-inf"), timeout=5, message="the pong to be noted")
    assert not reader.done(timeout=0.2)
    assert_reads_text_frame(reader, theirs)


def test_a_tls_close_notify_wakes_the_reader(parking, tls_parked_pair):
    """A TLS peer ending its stream cleanly (close_notify) wakes the reader, which finds the connection closed."""
    bounded, theirs = tls_parked_pair
    reader = parked_reader(parking, bounded)
    theirs.setblocking(False)
    with pytest.raises(ssl.SSLWantReadError):
        # Sends close_notify, then would wait for ours.
        theirs.unwrap()
    assert reader.done()
    assert isinstance(reader.error, websocket.WebSocketConnectionClosedException)


def test_without_epoll_readers_wait_on_their_own(parked_pair, monkeypatch):
    """Where there is no epoll (not Linux), the parking never runs: wait() returns at once and the reader polls itself."""
    monkeypatch.setattr(parking_module, "_epoll", None)
    parking = Parking(name="no-epoll")
    parking.start()
    bounded, theirs = parked_pair
    bounded.park_reads_on(parking, "f/test/no-epoll", park_after=PARK_AFTER)
    assert parking.is_alive()
    reader = Reader(bounded)
    assert not reader.done(timeout=0.2)
    assert parking.parked() == 0
    assert_reads_text_frame(reader, theirs)
