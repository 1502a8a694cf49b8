"""Several runlisteners processes: each trigger connected exactly once, spread over
them, taken over when one dies or stops."""

import time

import pytest

from tests.listener.helpers import make_trigger
from tests.support.processes import start_listener
from tests.support.wsserver import wait_for

TRIGGERS = 8


@pytest.fixture
def fleet(e2e_workspace, ws_server_factory):
    """Eight triggers, each on its own server, and a way to start listener processes."""
    servers = [ws_server_factory() for _ in range(TRIGGERS)]
    for index, server in enumerate(servers):
        make_trigger(e2e_workspace, server, path=f"f/fleet/t{index}")
    processes = []

    def start(listener_id):
        process = start_listener(listener_id)
        processes.append(process)
        return process

    yield servers, start
    for process in processes:
        process.terminate()
    for process in processes:
        process.stop()


def all_connected_once(servers):
    return all(s.open_connections == 1 for s in servers)


def holders(servers):
    from orvanta_triggers.models import WebSocketTrigger

    return WebSocketTrigger.objects.filter(path__startswith="f/fleet/").values_list("listener_id", flat=True)


def test_triggers_spread_over_listeners_connected_once(fleet):
    """With two listeners every trigger has exactly one connection, and both hold some."""
    servers, start = fleet
    start("L1")
    start("L2")
    wait_for(lambda: all_connected_once(servers), timeout=20, message="every trigger connected")
    wait_for(lambda: set(holders(servers)) == {"L1", "L2"}, timeout=10, message="both listeners holding")
    assert all(s.max_open == 1 for s in servers)


def test_killed_listener_triggers_move_within_ttl_plus_2s(fleet, settings):
    """After kill -9 of a listener, the other reconnects its triggers within TTL + 2 s."""
    servers, start = fleet
    first = start("L1")
    wait_for(lambda: all_connected_once(servers), timeout=20, message="every trigger connected")
    start("L2")
    wait_for(lambda: set(holders(servers)) == {"L1", "L2"}, timeout=15, message="the rebalance")
    wait_for(lambda: all_connected_once(servers), timeout=10, message="every trigger connected")
    first.kill()
    killed_at = time.monotonic()
    wait_for(
        lambda: set(holders(servers)) == {"L2"} and all_connected_once(servers),
        timeout=settings.ORVANTA_LEASE_TTL_SECS + 2,
        message="the takeover",
    )
    assert time.monotonic() - killed_at <= settings.ORVANTA_LEASE_TTL_SECS + 2
    assert all(s.max_open == 1 for s in servers)


def test_stopped_listener_hands_its_triggers_over_at_once(fleet):
    """A listener stopped cleanly hands its triggers back; the other takes them in about a second."""
    servers, start = fleet
    first = start("L1")
    start("L2")
    wait_for(
        lambda: set(holders(servers)) == {"L1", "L2"} and all_connected_once(servers),
        timeout=20,
        message="both listeners holding",
    )
    stopped_at = time.monotonic()
    first.stop()
    wait_for(lambda: set(holders(servers)) == {"L2"} and all_connected_once(servers), timeout=5, message="the handover")
    assert time.monotonic() - stopped_at < 4
    assert all(s.max_open == 1 for s in servers)


def test_a_joining_listener_moves_only_the_triggers_it_now_owns(fleet):
    """When a second listener joins, only triggers whose rendezvous owner changed reconnect, each once."""
    from listener.leases import rendezvous_owner
    from orvanta_triggers.models import WebSocketTrigger

    servers, start = fleet
    start("L1")
    wait_for(lambda: all_connected_once(servers), timeout=20, message="every trigger connected")
    start("L2")
    wait_for(
        lambda: set(holders(servers)) == {"L1", "L2"} and all_connected_once(servers),
        timeout=20,
        message="the rebalance",
    )
    ids = dict(WebSocketTrigger.objects.filter(path__startswith="f/fleet/").values_list("path", "id"))
    for index, server in enumerate(servers):
        moved = rendezvous_owner(ids[f"f/fleet/t{index}"], ["L1", "L2"]) == "L2"
        assert server.connects == (2 if moved else 1), f"t{index} moved={moved} connects={server.connects}"
        assert server.max_open == 1
