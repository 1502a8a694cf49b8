"""Leases in Redis: compare-and-set ownership, renewal, reclaim, and rendezvous spread."""

import collections
import threading
import time

import pytest

from listener.leases import LeaseKeeper, Leases, rendezvous_owner
from orvanta_triggers import bus
from tests.support.wsserver import wait_for


@pytest.fixture
def leases():
    made = []

    def make(listener_id, ttl_secs=5):
        lease = Leases(listener_id=listener_id, ttl_secs=ttl_secs)
        made.append(lease)
        return lease

    yield make
    for lease in made:
        lease.leave()


def test_only_one_listener_acquires_a_lease(leases):
    """Two listeners race for a trigger; exactly one wins."""
    a, b = leases("a"), leases("b")
    assert a.acquire(1001) is True
    assert b.acquire(1001) is False
    assert a.owners([1001]) == {1001: "a"}


def test_renew_reports_a_lease_taken_by_another(leases):
    """A lease now owned by someone else is reported lost and dropped."""
    a = leases("a")
    a.acquire(1002)
    bus.client().set(bus.lease_key(1002), "b")
    assert a.renew() == [1002]
    assert a.held() == set()


def test_renew_takes_back_a_lease_that_vanished(leases):
    """A lease gone from Redis (expired or Redis restarted) is taken back by its holder."""
    a = leases("a")
    a.acquire(1003)
    bus.client().delete(bus.lease_key(1003))
    assert a.renew() == []
    assert bus.client().get(bus.lease_key(1003)) == b"a"


def test_renew_extends_the_ttl(leases):
    """Renewal pushes the expiry back to the full TTL."""
    a = leases("a", ttl_secs=5)
    a.acquire(1004)
    bus.client().pexpire(bus.lease_key(1004), 100)
    a.renew()
    assert bus.client().pttl(bus.lease_key(1004)) > 4000


def test_release_only_deletes_ones_own_lease(leases):
    """Releasing a lease someone else owns leaves it alone."""
    a = leases("a")
    a.acquire(1005)
    bus.client().set(bus.lease_key(1005), "b")
    a.release(1005)
    assert bus.client().get(bus.lease_key(1005)) == b"b"


def test_release_many_frees_ones_own_leases_only(leases):
    """Releasing many leases at once deletes those held and leaves another's alone."""
    a = leases("a")
    for trigger_id in (1006, 1007, 1008):
        a.acquire(trigger_id)
    bus.client().set(bus.lease_key(1008), "b")
    a.release_many([1006, 1007, 1008])
    assert a.owners([1006, 1007, 1008]) == {1006: None, 1007: None, 1008: "b"}
    assert a.held() == set()


def test_heartbeat_lists_live_listeners_and_leave_removes(leases):
    """Listeners announce themselves; one that leaves is no longer live."""
    a, b = leases("a"), leases("b")
    a.announce_live()
    assert b.announce_live()[0] == ["a", "b"]
    a.leave()
    assert b.announce_live()[0] == ["b"]


def test_rendezvous_spreads_triggers_evenly():
    """Over three listeners each gets about a third of 3,000 triggers."""
    counts = collections.Counter(rendezvous_owner(t, ["l1", "l2", "l3"]) for t in range(3000))
    assert all(900 <= n <= 1100 for n in counts.values()), counts


def test_rendezvous_moves_only_what_a_new_listener_takes():
    """When a listener joins, triggers move only to it, about a quarter of them."""
    before = {t: rendezvous_owner(t, ["l1", "l2", "l3"]) for t in range(3000)}
    after = {t: rendezvous_owner(t, ["l1", "l2", "l3", "l4"]) for t in range(3000)}
    moved = [t for t in before if before[t] != after[t]]
    assert all(after[t] == "l4" for t in moved)
    assert 600 <= len(moved) <= 900


def test_the_keeper_renews_leases_on_its_own(leases):
    """With nobody else renewing, the keeper's thread keeps a lease alive past several TTLs."""
    a = leases("a", ttl_secs=0.6)
    a.acquire(1101)
    keeper = LeaseKeeper(a, on_lost=lambda ids: None)
    keeper.start()
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert a.owners([1101]) == {1101: "a"}
            time.sleep(0.05)
    finally:
        keeper.stop()


def test_the_keeper_reports_a_lease_another_listener_took(leases):
    """A lease taken by another owner is reported to on_lost by the keeper."""
    a = leases("a", ttl_secs=0.6)
    a.acquire(1102)
    lost = threading.Event()
    reported = []

    def on_lost(ids):
        reported.extend(ids)
        lost.set()

    keeper = LeaseKeeper(a, on_lost=on_lost)
    bus.client().set(bus.lease_key(1102), "b")
    keeper.start()
    try:
        assert lost.wait(5)
        assert reported == [1102] and a.held() == set()
    finally:
        keeper.stop()


def test_acquire_many_takes_only_the_leases_nobody_holds(leases):
    """Acquiring many leases in one round trip takes the free ones and leaves another's alone."""
    a = leases("a")
    bus.client().set(bus.lease_key(1201), "b")
    assert a.acquire_many([1201, 1202, 1203]) == [1202, 1203]
    assert a.owners([1201, 1202, 1203]) == {1201: "b", 1202: "a", 1203: "a"}
    assert a.held() == {1202, 1203}


def test_lapses_tell_when_each_lease_lapses(leases):
    """Each lease's time left is told in seconds, and a lease already gone as 0."""
    a = leases("a", ttl_secs=5)
    a.acquire(1301)
    lapses = a.lapses([1301, 1302])
    assert 4.5 < lapses[1301] <= 5.0
    assert lapses[1302] == 0


def test_the_keeper_keeps_its_listener_live_on_its_own(leases):
    """With no supervisor announcing, the keeper's thread keeps its listener in the live set past several TTLs."""
    a, observer = leases("a", ttl_secs=0.6), leases("observer", ttl_secs=0.6)
    keeper = LeaseKeeper(a, on_lost=lambda ids: None)
    keeper.start()
    try:
        wait_for(lambda: "a" in observer.announce_live()[0], timeout=2, message="the keeper's first announcement")
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert "a" in observer.announce_live()[0]
            time.sleep(0.05)
    finally:
        keeper.stop()


def test_a_listener_that_stops_announcing_leaves_the_live_set_before_its_leases_lapse(leases):
    """A listener that dies just before renewing is dropped from the live set while its leases still hold."""
    a, observer = leases("a", ttl_secs=1.5), leases("observer", ttl_secs=1.5)
    a.acquire(1401)
    # Renewed three times per TTL: a third of a TTL ago at most, the soonest its lease can lapse.
    bus.client().pexpire(bus.lease_key(1401), 1000)
    a.announce_live()
    wait_for(lambda: "a" not in observer.announce_live()[0], timeout=3, message="a to leave the live set")
    assert a.owners([1401]) == {1401: "a"}


def test_a_listener_that_left_is_not_announced_again(leases):
    """Once a listener left, its keeper's announcements no longer bring it back."""
    a, observer = leases("a"), leases("observer")
    a.keep_live()
    a.leave()
    a.keep_live()
    assert observer.announce_live()[0] == ["observer"]
