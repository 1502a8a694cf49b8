"""Several runlisteners processes: each trigger connected exactly once, spread over
them, taken over when one dies or stops."""

import time

import pytest

from orvanta_triggers import bus, services
from tests.listener.helpers import make_trigger, wait_connected
from tests.support.processes import start_listener
from tests.support.wsserver import wait_for

TRIGGERS = 8
# What a takeover may take after the lease lapsed: the survivor's pass, which starts
# when the lease lapses, and a socket opening on a busy machine.
CLAIM_MARGIN_SECS = 0.5


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


def lease_keys_by_server(servers):
    """{index of the trigger's server in `servers`: its lease key}."""
    from orvanta_triggers.models import WebSocketTrigger

    ids = dict(WebSocketTrigger.objects.filter(path__startswith="f/fleet/").values_list("path", "id"))
    return {index: bus.lease_key(ids[f"f/fleet/t{index}"]) for index in range(len(servers))}


def lease_owners(keys):
    """{index: the listener id holding that lease, or None}."""
    values = bus.client().mget(list(keys.values()))
    return {index: value.decode() if value else None for index, value in zip(keys, values)}


def lapse_times(keys):
    """{index: time.monotonic() at which that lease lapses} for the leases still there."""
    pipe = bus.client().pipeline(transaction=False)
    for key in keys.values():
        pipe.pttl(key)
    now = time.monotonic()
    return {index: now + ms / 1000 for index, ms in zip(keys, pipe.execute()) if ms >= 0}


@pytest.fixture
def two_listeners(fleet, settings):
    """L1 and L2 each holding their rendezvous share, every trigger connected once:
    (servers, the L1 process, {server index: lease key}, the TTL)."""
    from listener.leases import rendezvous_owner
    from orvanta_triggers.models import WebSocketTrigger

    servers, start = fleet
    first = start("L1")
    wait_for(lambda: all_connected_once(servers), timeout=20, message="every trigger connected")
    start("L2")
    keys = lease_keys_by_server(servers)
    ids = dict(WebSocketTrigger.objects.filter(path__startswith="f/fleet/").values_list("path", "id"))
    shares = {index: rendezvous_owner(ids[f"f/fleet/t{index}"], ["L1", "L2"]) for index in keys}
    wait_for(
        lambda: lease_owners(keys) == shares and all_connected_once(servers),
        timeout=20,
        message="each listener holding its rendezvous share",
    )
    return servers, first, keys, settings.ORVANTA_LEASE_TTL_SECS


def kill_just_before_renewal(process, keys, ttl):
    """SIGKILL `process` as its leases are about to be renewed (three times per TTL),
    when they have least life left, two thirds of a TTL: the hardest case for the live
    set to forget it in time. {index: time.monotonic() at which its lease lapses}."""
    wait_for(
        lambda: min(lapse_times(keys).values()) - time.monotonic() <= ttl * 2 / 3 + 0.1,
        timeout=ttl,
        interval=0.01,
        message="a renewal to come due",
    )
    process.kill()
    return lapse_times(keys)


def test_a_killed_listeners_triggers_are_taken_as_its_leases_lapse(two_listeners):
    """Each trigger of a SIGKILLed listener is connected again within CLAIM_MARGIN_SECS of its lease lapsing."""
    servers, first, keys, ttl = two_listeners
    owners = lease_owners(keys)
    victim = {index: key for index, key in keys.items() if owners[index] == "L1"}
    connects = {index: servers[index].connects for index in victim}
    lapses = kill_just_before_renewal(first, victim, ttl)
    taken = {}

    def all_taken():
        for index in victim:
            if index not in taken and servers[index].connects > connects[index] and servers[index].open_connections:
                taken[index] = time.monotonic()
        return len(taken) == len(victim)

    wait_for(all_taken, timeout=ttl + 5, interval=0.01, message="the takeover")
    late = {index: round(taken[index] - lapses[index], 3) for index in victim}
    assert max(late.values()) <= CLAIM_MARGIN_SECS, f"seconds after the lease lapsed, by server: {late}"


def test_a_killed_listener_leaves_the_live_set_before_its_leases_lapse(two_listeners):
    """A SIGKILLed listener is dropped from the live set while every lease it held is still there."""
    servers, first, keys, ttl = two_listeners
    owners = lease_owners(keys)
    victim = {index: key for index, key in keys.items() if owners[index] == "L1"}
    kill_just_before_renewal(first, victim, ttl)
    wait_for(
        lambda: bus.client().zscore(bus.listeners_key(), "L1") is None,
        timeout=ttl + 2,
        interval=0.01,
        message="L1 to leave the live set",
    )
    assert bus.client().exists(*victim.values()) == len(victim)


def test_no_trigger_has_two_connections_during_a_takeover(two_listeners):
    """While a SIGKILLed listener's triggers move, no server ever has two connections at once."""
    servers, first, keys, ttl = two_listeners
    first.kill()
    wait_for(
        lambda: set(lease_owners(keys).values()) == {"L2"} and all_connected_once(servers),
        timeout=ttl + 5,
        message="the takeover",
    )
    assert [s.max_open for s in servers] == [1] * len(servers)


def test_a_lease_left_by_a_listener_gone_is_claimed_as_it_lapses_not_at_the_next_tick(
    e2e_workspace, ws_server_factory, listener_factory, settings
):
    """A trigger leased by a listener no longer live is connected as the lease lapses, though the next tick is later."""
    settings.ORVANTA_RECONCILE_INTERVAL_SECS = 2.0
    first, second = ws_server_factory(), ws_server_factory()
    make_trigger(e2e_workspace, first, path="f/fleet/first")
    listener_factory("L1")
    # The first claim waits for Redis to have answered two intervals (Supervisor._may_claim).
    wait_connected(first, timeout=10)
    trigger = make_trigger(e2e_workspace, second, path="f/fleet/second", enabled=False)
    bus.client().set(bus.lease_key(trigger.pk), "gone", px=1000)
    lapses_at = time.monotonic() + bus.client().pttl(bus.lease_key(trigger.pk)) / 1000
    services.set_trigger_enabled(trigger=trigger, enabled=True)
    wait_connected(second, timeout=5)
    assert time.monotonic() - lapses_at <= CLAIM_MARGIN_SECS
