"""Heartbeats end to end: a real listener against a Discord-Gateway-style server
(tests/discord_gateway.py), which checks every beat's timing and state itself."""

import json
import time

import pytest

from orvanta_triggers.models import Job
from tests.discord_gateway import DiscordGateway
from tests.listener.helpers import make_trigger, wait_connected, wait_jobs
from tests.support.wsserver import wait_for

IDENTIFY = '{"op": 2, "d": {"token": "t"}}'
DISCORD_HEARTBEAT = {"interval_secs": 1, "message": '{"op": 1, "d": {{state}}}', "state_field": "s"}
# Matches no event the gateway sends: dispatches never become jobs (no worker needed).
NO_EVENT = [{"key": "t", "value": "NO_SUCH_EVENT"}]


@pytest.fixture
def gateway():
    server = DiscordGateway(heartbeat_interval_ms=1000).start()
    yield server
    server.shutdown()


def make_gateway_trigger(workspace, gateway, **fields):
    config = {
        "initial_messages": [{"raw_message": IDENTIFY}],
        "heartbeat": DISCORD_HEARTBEAT,
        "filters": NO_EVENT,
        **fields,
    }
    return make_trigger(workspace, gateway, **config)


def wait_beats(gateway, count, *, connection=None, timeout=10):
    """Wait for `count` heartbeats (on one connection if given), or a gateway failure."""
    wait_for(
        lambda: gateway.failures_snapshot() or len(gateway.heartbeats(connection)) >= count,
        timeout=timeout,
        message=f"{count} heartbeat(s)",
    )
    assert gateway.failures_snapshot() == []
    return gateway.heartbeats(connection)


def test_gateway_connection_survives_five_heartbeat_intervals(e2e_workspace, gateway, listener):
    """Five beats in a row are on time and carry the last "s", and the gateway never closes the connection."""
    make_gateway_trigger(e2e_workspace, gateway)
    beats = wait_beats(gateway, 5)
    assert gateway.connects == 1 and gateway.session(1).closed_with is None
    states = [beat.d for beat in beats]
    # Events go out between beats, so the state grows from one beat to the next.
    assert all(b is not None and (a is None or a < b) for a, b in zip(states, states[1:])), states


def test_heartbeats_create_no_jobs(e2e_workspace, gateway, celery_worker, listener):
    """Beats never become jobs; a matching event afterwards does, so a worker was there to record them."""
    make_gateway_trigger(e2e_workspace, gateway, filters=[{"key": "t", "value": "CONTROL"}])
    wait_beats(gateway, 3)
    assert Job.objects.count() == 0
    gateway.dispatch("CONTROL", {"content": "control"})
    [job] = wait_jobs(count=1)
    assert json.loads(job.args["msg"])["t"] == "CONTROL"
    assert Job.objects.count() == 1


def test_static_heartbeat_is_sent_every_interval(e2e_workspace, ws_server, listener):
    """A heartbeat without state_field sends its message as written, once per interval."""
    make_trigger(e2e_workspace, ws_server, heartbeat={"interval_secs": 1, "message": '{"type": "ping"}'})
    wait_connected(ws_server)
    arrivals = []

    def three_pings():
        count = len(ws_server.received_snapshot())
        arrivals.extend([time.monotonic()] * (count - len(arrivals)))
        return count >= 3

    wait_for(three_pings, timeout=8, message="three heartbeats")
    assert ws_server.received_snapshot()[:3] == ['{"type": "ping"}'] * 3
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:3])]
    assert all(0.7 <= gap <= 1.3 for gap in gaps), gaps
    assert ws_server.connects == 1


def test_heartbeat_state_resets_on_reconnect(e2e_workspace, gateway, listener):
    """After a reconnect the first beat carries null again, not the old connection's last "s"."""
    make_gateway_trigger(e2e_workspace, gateway)
    wait_for(
        lambda: gateway.failures_snapshot() or any(beat.d is not None for beat in gateway.heartbeats(1)),
        timeout=10,
        message="a heartbeat with state on the first connection",
    )
    gateway.dispatching.clear()  # the second connection gets no event before its first beat
    gateway.close_all(4000, "reconnect")
    [first, *_] = wait_beats(gateway, 1, connection=2)
    assert first.d is None
    assert gateway.connects == 2


def test_initial_messages_come_before_first_heartbeat_in_order(e2e_workspace, gateway, listener):
    """Every initial message is sent, in order, before the first heartbeat."""
    presence = '{"op": 3, "d": {"status": "online"}}'
    voice = '{"op": 4, "d": {"guild_id": "1"}}'
    initial = [IDENTIFY, presence, voice]
    make_gateway_trigger(e2e_workspace, gateway, initial_messages=[{"raw_message": text} for text in initial])
    wait_beats(gateway, 1)
    texts = [text for _, text in gateway.session(1).received]
    assert texts[:3] == initial
    assert json.loads(texts[3])["op"] == 1


def test_first_heartbeat_waits_an_interval_after_a_slow_initial_message(
    e2e_workspace, gateway, celery_worker, listener
):
    """The first beat comes one interval after the last initial message, however long that took to compute."""
    slow = {"runnable_result": {"path": "examples/slow_double", "args": {"x": 21, "delay": 0.8}, "is_flow": False}}
    make_gateway_trigger(e2e_workspace, gateway, initial_messages=[{"raw_message": IDENTIFY}, slow])
    wait_beats(gateway, 1)
    received = gateway.session(1).received
    assert [text for _, text in received[:2]] == [IDENTIFY, "42"]
    assert json.loads(received[2][1])["op"] == 1
    assert 0.8 <= received[2][0] - received[1][0] <= 1.5
