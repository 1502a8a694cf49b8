"""Receives job results from Redis and sends them on the owning connection.

One thread owns the pub/sub connection; others ask it to (un)subscribe through a
queue, since a redis-py PubSub is not safe to share between threads, and wake it with
a message on a channel of its own. The same connection carries the config-change
nudges that wake the supervisor early.
"""

import logging
import queue
import threading
import time
import uuid

import redis

from listener import metrics
from listener.backoff import Backoff
from orvanta_triggers import bus, wire

logger = logging.getLogger(__name__)

# While (un)subscriptions keep coming (a listener starting or stopping thousands of
# connections), the router looks for more every BUSY_WAIT_SECS: a wake-up published
# for each would cost a Redis round trip on the supervisor's thread per connection
# (connecting 10,000 took 45 s instead of 26). Once none came for BUSY_SECS, it waits
# up to IDLE_WAIT_SECS for a message, and the next change wakes it with one; the
# idle wait only bounds a change whose wake-up could not be published. (Waking every
# 50 ms at all times cost an idle 10,000-trigger listener 0.45 % of a core.)
BUSY_WAIT_SECS = 0.05
BUSY_SECS = 1.0
IDLE_WAIT_SECS = 1.0


class ResultRouter:
    def __init__(self, *, on_config_changed):
        self._on_config_changed = on_config_changed
        self._stop = threading.Event()
        self._connections = {}
        self._subscribed = {}
        self._changes = queue.SimpleQueue()
        self._wake_channel = bus.router_wake_channel(uuid.uuid4().hex)
        # Set while the router is in (or about to enter) its idle wait: the first change
        # then clears it and publishes the wake-up.
        self._waiting_idle = threading.Event()
        self._thread = threading.Thread(target=self._run, name="result-router", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        # A router waiting out a Redis outage sees the stop at once; one idle in its
        # wait for a message needs a wake-up (publishing to an absent Redis could take
        # its client's retries: not when there is no need).
        self._thread.join(0.05)
        if self._thread.is_alive():
            self._wake()
            self._thread.join()

    def _wake(self):
        """Make the router look at its changes (and its stop event) now, not at the end
        of its idle wait."""
        if not self._waiting_idle.is_set():
            return
        self._waiting_idle.clear()
        try:
            bus.client().publish(self._wake_channel, b"")
        except redis.RedisError as exc:
            # The router is resubscribing meanwhile, or finds the change within IDLE_WAIT_SECS.
            logger.debug("could not wake the result router: %s", exc)

    def attach(self, connection, subscribed):
        """Route results of `connection.spec.id` to `connection` from now on, and
        set `subscribed` once Redis confirmed the subscription: a connection waits
        for it, so no result is published before anyone listens."""
        trigger_id = connection.spec.id
        self._subscribed[trigger_id] = subscribed
        self._connections[trigger_id] = connection
        self._changes.put(("subscribe", trigger_id))
        self._wake()

    def detach(self, trigger_id, connection, *, unsubscribe=True):
        """Stop routing results to `connection`. A stopping listener need not
        unsubscribe: its subscriptions end with the pubsub connection, and 10,000
        unsubscribe replies read one by one would compete with closing the sockets."""
        if self._connections.get(trigger_id) is connection:
            del self._connections[trigger_id]
            self._subscribed.pop(trigger_id, None)
            if unsubscribe:
                self._changes.put(("unsubscribe", trigger_id))
                self._wake()

    def _subscribe_all(self, pubsub):
        channels = [bus.results_channel(tid) for tid in list(self._connections)]
        pubsub.subscribe(bus.config_channel(), self._wake_channel, *channels)

    def _discard_changes(self):
        while not self._changes.empty():
            self._changes.get_nowait()

    def _apply_changes(self, pubsub):
        """Apply the queued (un)subscriptions, the latest of each trigger, in one
        command of each kind: thousands of connections starting or stopping at once
        cost two round trips, not thousands. Whether there were any."""
        latest = {}
        while True:
            try:
                action, trigger_id = self._changes.get_nowait()
            except queue.Empty:
                break
            latest[trigger_id] = action
        subscribe = [bus.results_channel(tid) for tid, action in latest.items() if action == "subscribe"]
        unsubscribe = [
            bus.results_channel(tid)
            for tid, action in latest.items()
            if action == "unsubscribe" and tid not in self._connections
        ]
        if subscribe:
            pubsub.subscribe(*subscribe)
        if unsubscribe:
            pubsub.unsubscribe(*unsubscribe)
        return bool(latest)

    def _confirm(self, channel):
        if channel not in (bus.config_channel(), self._wake_channel):
            # Set once: a resubscription after a Redis outage has no one waiting.
            event = self._subscribed.pop(wire.trigger_id_of_results_channel(channel), None)
            if event is not None:
                event.set()

    def _deliver(self, channel, data):
        if channel == self._wake_channel:
            return
        if channel == bus.config_channel():
            self._on_config_changed()
            return
        trigger_id = wire.trigger_id_of_results_channel(channel)
        job_id, frame = wire.decode_result(data)
        connection = self._connections.get(trigger_id)
        if connection is None or not connection.send_result(frame, job_id):
            metrics.RESULTS_UNDELIVERED.inc()
            logger.warning("trigger %s: result of job %s not sent: no live connection", trigger_id, job_id)
        else:
            metrics.RESULTS_SENT.inc()

    def _run(self):
        backoff = Backoff(base=0.2, cap=5.0)
        while not self._stop.is_set():
            pubsub = bus.client().pubsub()
            try:
                # Changes queued before this (re)subscription are covered by it.
                self._discard_changes()
                self._subscribe_all(pubsub)
                backoff.reset()
                last_change = time.monotonic()
                while not self._stop.is_set():
                    busy = time.monotonic() - last_change < BUSY_SECS
                    if not busy:
                        # Set before the look: a change queued after it wakes the router.
                        self._waiting_idle.set()
                    if self._apply_changes(pubsub):
                        last_change = time.monotonic()
                        busy = True
                    message = pubsub.get_message(timeout=BUSY_WAIT_SECS if busy else IDLE_WAIT_SECS)
                    if message is None:
                        continue
                    if message["type"] == "message":
                        self._deliver(message["channel"].decode(), message["data"])
                    elif message["type"] == "subscribe":
                        self._confirm(message["channel"].decode())
            except redis.RedisError as exc:
                delay = backoff.next_delay()
                logger.warning("result channel lost (%s); resubscribing in %.1fs", exc, delay)
                self._stop.wait(delay)
            finally:
                try:
                    pubsub.close()
                except redis.RedisError:
                    pass
