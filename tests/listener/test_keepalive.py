"""A session's keepalive on the shared timer thread, over a socket pair: pings of many
connections share a wake, an unanswered ping still ends the session in time, and
heartbeats keep their exact cadence."""

import math
import socket
import time
from types import SimpleNamespace

import pytest
import websocket

from listener.keepalive import Keepalive
from listener.session import Session
from listener.timers import COARSE_SLOT_SECS
from orvanta_triggers.client.boundedsocket import BoundedSocket
from orvanta_triggers.client.connect import SEND_TIMEOUT_SECS
from tests.support.frames import read_frame
from tests.support.wsserver import wait_for

PING_INTERVAL = 0.3
PONG_TIMEOUT = 0.3


@pytest.fixture
def open_session():
    """Make a session on one end of a socket pair; the other end (the server's) with it."""
    pairs = []

    def make():
        ours, theirs = socket.socketpair()
        pairs.append((ours, theirs))
        bounded = BoundedSocket(ours, max_message_bytes=1024, send_timeout=1.0)
        bounded.settimeout(None)
        bounded.start_framing()
        ws = websocket.WebSocket()
        ws.sock, ws.connected = bounded, True
        return Session(ws), theirs

    yield make
    for pair in pairs:
        for sock in pair:
            sock.close()


def keepalive_of(timers, *, heartbeat=None):
    connection = SimpleNamespace(
        spec=SimpleNamespace(path="f/test/keepalive", heartbeat=heartbeat),
        heartbeat_frame=lambda session: heartbeat["message"],
    )
    return Keepalive(connection, timers=timers, ping_interval=PING_INTERVAL, pong_timeout=PONG_TIMEOUT)


def test_pings_due_within_one_slot_go_out_together(timers, open_session):
    """Connections gone quiet at different moments of one slot are all pinged in one wake, none before it's due."""
    keepalive = keepalive_of(timers)
    # A slot boundary after the first keepalive checks (start + PING_INTERVAL, within a
    # slot), which find every connection heard from since and look again when quiet.
    boundary = (math.ceil((time.monotonic() + PING_INTERVAL) / COARSE_SLOT_SECS) + 3) * COARSE_SLOT_SECS
    quiet_from = [boundary + 0.01 * i - PING_INTERVAL for i in range(1, 10)]
    sessions = []
    for heard in quiet_from:
        session, _ = open_session()
        session.last_received = heard
        keepalive.start(session)
        sessions.append(session)
    wait_for(lambda: all(s.ping_sent_at for s in sessions), timeout=5, message="every connection pinged")
    assert min(s.ping_sent_at for s in sessions) >= max(quiet_from) + PING_INTERVAL


def test_an_unanswered_ping_ends_the_session_within_pong_timeout_and_a_slot(timers, open_session):
    """A ping left unanswered ends the session no sooner than the pong timeout and at most a slot after it."""
    session, server_end = open_session()
    keepalive_of(timers).start(session)
    wait_for(lambda: session.end_reason, timeout=5, message="the session ended")
    ended = time.monotonic()
    assert server_end.recv(64)[:2] == b"\x89\x80"
    assert "no pong within" in session.end_reason
    # 0.1 s more for the timer thread's and this loop's scheduling.
    assert PONG_TIMEOUT <= ended - session.ping_sent_at <= PONG_TIMEOUT + COARSE_SLOT_SECS + 0.1


def test_a_peer_reading_nothing_is_ended_without_holding_the_timer_thread(timers, open_session):
    """A ping the full socket can't take is retried, never waited for; the session ends after SEND_TIMEOUT_SECS."""
    session, _ = open_session()
    session.stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    while session.stream.send_ping():
        pass
    session.last_received = time.monotonic() - PING_INTERVAL
    keepalive_of(timers).start(session)
    started = time.monotonic()
    # Other work on the timer thread meanwhile: a probe every 0.1 s.
    lateness = []
    for i in range(1, 20):
        due = started + 0.1 * i
        timers.call_at(due, lambda due=due: lateness.append(time.monotonic() - due))
    wait_for(lambda: session.end_reason, timeout=SEND_TIMEOUT_SECS + 2, message="the session ended")
    assert "read nothing" in session.end_reason
    assert time.monotonic() - started >= SEND_TIMEOUT_SECS
    wait_for(lambda: len(lateness) == 19, timeout=5, message="every probe")
    assert max(lateness) < 0.5


def test_heartbeats_keep_their_exact_cadence(timers, open_session):
    """Each heartbeat is due at exactly start + k × interval, not rounded to a keepalive slot."""
    interval = 0.13
    session, server_end = open_session()
    keepalive_of(timers, heartbeat={"interval_secs": interval, "message": "hb"}).start(session)
    first_due = session.next_heartbeat
    dues = []

    def three_beats_timed():
        if session.heartbeat_timer.when not in dues:
            dues.append(session.heartbeat_timer.when)
        return len(dues) >= 3

    wait_for(three_beats_timed, timeout=5, message="three heartbeats timed", interval=0.01)
    assert dues == pytest.approx([first_due, first_due + interval, first_due + 2 * interval], abs=1e-9)
    assert read_frame(server_end.recv(256))[:2] == (0x1, b"hb")
