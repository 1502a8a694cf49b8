"""listener.results: results routed from Redis pub/sub to the connections, with real Redis."""

import threading
import time
from types import SimpleNamespace

import pytest

from listener import results
from listener.results import ResultRouter
from orvanta_triggers import bus
from tests.support.wsserver import wait_for


def subscribers(trigger_id):
    [(_, count)] = bus.client().pubsub_numsub(bus.results_channel(trigger_id))
    return count


@pytest.fixture
def router():
    router = ResultRouter(on_config_changed=lambda: None)
    router.start()
    yield router
    router.stop()


def attached(router, trigger_id):
    connection = SimpleNamespace(spec=SimpleNamespace(id=trigger_id))
    subscribed = threading.Event()
    router.attach(connection, subscribed)
    assert subscribed.wait(5), "the results channel was not subscribed"
    return connection


def test_a_detached_connection_is_unsubscribed(router):
    """detach() unsubscribes the connection's results channel."""
    connection = attached(router, 990001)
    router.detach(990001, connection)
    wait_for(lambda: subscribers(990001) == 0, timeout=5, message="the channel unsubscribed")


def test_a_stopping_listener_leaves_subscriptions_to_end_with_the_pubsub_connection(router):
    """detach(unsubscribe=False) sends no UNSUBSCRIBE: the subscription ends only when the router stops."""
    kept, dropped = attached(router, 990002), attached(router, 990003)
    router.detach(990002, kept, unsubscribe=False)
    router.detach(990003, dropped)
    wait_for(lambda: subscribers(990003) == 0, timeout=5, message="the other channel unsubscribed")
    assert subscribers(990002) == 1
    router.stop()
    wait_for(lambda: subscribers(990002) == 0, timeout=5, message="the subscription to end with the router")


def test_an_idle_router_subscribes_a_new_connection_at_once(router, monkeypatch):
    """A connection attached while the router waits for messages is subscribed without waiting out that wait."""
    monkeypatch.setattr(results, "BUSY_SECS", 0.0)
    monkeypatch.setattr(results, "IDLE_WAIT_SECS", 30.0)
    attached(router, 990004)
    # The router is now in a 30 s wait for a message.
    connection = SimpleNamespace(spec=SimpleNamespace(id=990005))
    subscribed = threading.Event()
    router.attach(connection, subscribed)
    assert subscribed.wait(2), "the new connection waited for the router's idle wait to end"


def test_an_idle_router_stops_at_once(router, monkeypatch):
    """stop() wakes a router in its idle wait instead of waiting it out."""
    monkeypatch.setattr(results, "BUSY_SECS", 0.0)
    monkeypatch.setattr(results, "IDLE_WAIT_SECS", 30.0)
    attached(router, 990006)
    started = time.monotonic()
    router.stop()
    assert time.monotonic() - started < 2


def publishes():
    return bus.client().info("commandstats").get("cmdstat_publish", {}).get("calls", 0)


def test_a_burst_of_attaches_publishes_a_few_wake_ups_not_one_each(router):
    """2,000 connections attached one after the other, as a starting listener does, cost a few wake-up publishes."""
    before = publishes()
    events = []
    for trigger_id in range(991000, 993000):
        connection = SimpleNamespace(spec=SimpleNamespace(id=trigger_id))
        events.append(threading.Event())
        router.attach(connection, events[-1])
        # The router reads confirmations meanwhile, as it does while a listener starts.
        time.sleep(0.0002)
    assert all(event.wait(10) for event in events), "not every channel was subscribed"
    assert publishes() - before < 20
