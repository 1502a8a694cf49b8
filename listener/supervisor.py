"""The listener process object: holds one connection per trigger it leases, and
reconciles them with the database every ORVANTA_RECONCILE_INTERVAL_SECS (sooner when
a config change is announced on Redis).

One stop event drives it; `run()` returns within seconds of it being set, after
closing every socket, handing its leases back and flushing buffered frames.
"""

import collections
import functools
import logging
import os
import socket
import threading
import time
import uuid

import redis
from django.db import close_old_connections
from django.db import connection as db_connection

from listener import metrics
from listener.connection import CONNECT_CONCURRENCY, Connection, Status
from listener.dispatch import Dispatcher
from listener.leases import LeaseKeeper, Leases, rendezvous_owner
from listener.openers import Openers
from listener.parking import Parking
from listener.results import ResultRouter
from listener.shared import ListenerServices
from listener.spec import TriggerSpec
from listener.status import StatusWriter
from listener.timers import Timers
from orvanta_triggers import bus, conf, selectors
from orvanta_triggers.client.runnable_calls import RunnableClient
from orvanta_triggers.monitor import MonitorPublisher

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT_SECS = 2.0
# How often a stopping listener looks which of its sockets have had their answer.
CLOSE_POLL_SECS = 0.05
# Connections closing at once: each one's thread wakes for the server's answer, and
# thousands of threads waiting for the GIL together collapse (CPython wakes every
# waiter every switch interval; closing 10,000 at once took minutes on a busy machine).
CLOSE_WINDOW = 200
# How long the oldest closing connection may keep its place in the window; a server
# slower than that to answer does not hold the others up (it is waited for at the end).
CLOSE_GRACE_SECS = 0.2
# However still the fingerprint, the digest of every trigger's version is compared
# this often, and the whole set read when it moved (a safety net for writes the
# fingerprint can't see, such as an edited_at moved backwards).
FULL_READ_INTERVAL_SECS = 60.0
# Triggers handed to other listeners per reconcile tick (the next tick follows at once).
HANDOVER_BATCH = 250
# PTTL counts whole milliseconds, rounded down: waking this much later than it says
# finds the lease gone.
LAPSE_MARGIN_SECS = 0.001


def default_listener_id():
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Supervisor:
    def __init__(self, *, celery_app, stop_event, listener_id=None):
        self.listener_id = listener_id or default_listener_id()
        self.stop_event = stop_event
        self._wake = threading.Event()
        self._leases = Leases(listener_id=self.listener_id, ttl_secs=conf.lease_ttl_secs())
        self._lease_keeper = LeaseKeeper(self._leases, on_lost=self._leases_lost)
        # Ids whose lease another listener took, reported by the keeper's thread.
        self._lost = set()
        self._lost_lock = threading.Lock()
        # Connections whose thread ended unasked, reported by that thread.
        self._ended = []
        self._ended_lock = threading.Lock()
        self._status = StatusWriter(touch_interval=conf.status_write_interval_secs())
        self._dispatcher = Dispatcher(
            celery_app=celery_app,
            buffer_size=conf.dispatch_buffer_size(),
            overflow_policy=conf.overflow_policy(),
            max_queued_jobs=conf.max_queued_jobs(),
        )
        self._router = ResultRouter(on_config_changed=self._wake.set)
        self._monitor = MonitorPublisher()
        self._timers = Timers()
        self._openers = Openers(CONNECT_CONCURRENCY)
        self._parking = Parking()
        self._services = ListenerServices(
            listener_id=self.listener_id,
            celery_app=celery_app,
            dispatcher=self._dispatcher,
            status=self._status,
            runnables=RunnableClient(celery_app=celery_app, timeout_secs=conf.runnable_timeout_secs()),
            monitor=self._monitor,
            timers=self._timers,
            openers=self._openers,
            parking=self._parking,
        )
        self._connections = {}
        self._redis_ok_since = None
        self._redis_run_id = None
        # Read at scrape time, so the numbers are never a tick behind.
        metrics.LEASES_HELD.set_function(lambda: len(self._connections))
        for status in (Status.CONNECTING, Status.CONNECTED, Status.ERROR):
            metrics.CONNECTIONS.labels(status).set_function(functools.partial(self._count_connections, status))
        # When each wanted trigger was first seen held by nobody (takeover fallback).
        self._unheld_since = {}
        self._wanted = {}
        self._wanted_fingerprint = None
        self._wanted_digest = None
        self._full_read_due = 0.0
        self._live = None
        # Wanted triggers whose rendezvous owner is this listener, for self._live.
        self._preferred = set()
        # Held triggers another listener now owns, not yet handed over.
        self._handing_over = []
        self._stale_scan_due = 0.0
        # When the first lease of a preferred trigger held by a listener no longer
        # live lapses (time.monotonic()): the next pass starts then, not at the tick.
        self._claim_due = None

    def _count_connections(self, status):
        return sum(1 for c in list(self._connections.values()) if c.status == status)

    def run(self):
        logger.info("listener %s starting", self.listener_id)
        # Sleeping is waiting on the wake event; a stop must wake it too.
        threading.Thread(target=self._wake_on_stop, name="stop-watcher", daemon=True).start()
        self._status.start()
        self._dispatcher.start()
        self._router.start()
        self._monitor.start()
        self._timers.start()
        self._parking.start()
        self._lease_keeper.start()
        try:
            while not self.stop_event.is_set():
                try:
                    self._reconcile()
                except Exception as exc:
                    # Database or Redis trouble: keep the sockets, try again next tick.
                    logger.warning("listener %s: reconcile failed: %s", self.listener_id, exc, exc_info=True)
                    close_old_connections()
                self._wake.wait(self._until_next_pass())
                self._wake.clear()
        finally:
            self._shutdown()

    def _until_next_pass(self):
        """Seconds to the next reconcile pass: a reconcile interval, or less when a
        dead listener's lease lapses sooner. The deadline serves once (each pass sets
        it anew), so a failing pass never turns into a busy loop."""
        due, self._claim_due = self._claim_due, None
        interval = conf.reconcile_interval_secs()
        if due is None:
            return interval
        return min(interval, max(due - time.monotonic(), 0.0))

    def _wake_on_stop(self):
        self.stop_event.wait()
        self._wake.set()

    # Reconciliation

    def _reconcile(self):
        """Bring the held connections in line with the database and the live
        listeners. Its cost follows what changed: the trigger set is read only when
        its fingerprint moved (or every FULL_READ_INTERVAL_SECS), ownership is
        recomputed only when the set or the live listeners changed; leases are renewed
        by the LeaseKeeper's own thread, and those it found lost are closed here."""
        close_old_connections()
        if not self._timers.is_alive():
            logger.error("listener %s: timer thread ended; starting it again", self.listener_id)
            self._timers.start()
        if not self._parking.is_alive():
            logger.error("listener %s: parking thread ended; starting it again", self.listener_id)
            self._parking.start()
        if not self._lease_keeper.is_alive():
            logger.error("listener %s: lease keeper thread ended; starting it again", self.listener_id)
            self._lease_keeper.start()
        ended = self._openers.forget_dead()
        if ended:
            logger.error("listener %s: %s opener threads ended; new ones start as needed", self.listener_id, ended)
        now = time.monotonic()
        with self._lost_lock:
            lost, self._lost = self._lost, set()
        self._stop_connections([tid for tid in lost if tid in self._connections], reason="lease lost", release=False)
        try:
            live, redis_run_id = self._leases.announce_live()
        except redis.RedisError as exc:
            # Nobody can take a lease while Redis is away: keep every socket open,
            # apply only what needs no lease (closing disabled and deleted triggers).
            logger.warning(
                "listener %s: Redis unavailable (%s); keeping %s connections",
                self.listener_id,
                exc,
                len(self._connections),
            )
            self._redis_trouble()
            live = None
        else:
            if redis_run_id != self._redis_run_id:
                if self._redis_run_id is not None:
                    logger.warning("listener %s: Redis restarted", self.listener_id)
                    self._redis_trouble()
                self._redis_run_id = redis_run_id
            if self._redis_ok_since is None:
                self._redis_ok_since = time.monotonic()
        wanted, wanted_changed = self._read_wanted(now)

        if wanted_changed:
            gone = [tid for tid in self._connections if tid not in wanted]
            self._stop_connections(gone, reason="disabled or deleted", release=live is not None)
        with self._ended_lock:
            reported, self._ended = self._ended, []
        ended = [c.spec.id for c in reported if self._connections.get(c.spec.id) is c]
        for trigger_id in ended:
            logger.error(
                "trigger %s: connection thread ended unexpectedly; starting it again",
                self._connections[trigger_id].spec.path,
            )
        self._stop_connections(ended, reason="connection thread ended", release=False)
        if live is None:
            self._start_connections(ended)
            return
        if wanted_changed or live != self._live:
            self._live = live
            self._preferred = {tid for tid in wanted if rendezvous_owner(tid, live) == self.listener_id}
            self._handing_over = [tid for tid in self._connections if tid not in self._preferred]
        self._hand_over_some()
        edited = []
        if wanted_changed:
            edited = [tid for tid, c in self._connections.items() if c.spec.edited_at != wanted[tid]]
            edited = self._apply_edits_in_place(edited)
            self._stop_connections(edited, reason="configuration changed", release=False)
        claimed = self._claim_unheld(wanted, now) if self._may_claim() else []
        self._start_connections(ended + edited + claimed)

    def _apply_edits_in_place(self, trigger_ids):
        """Give the edited triggers whose connection_config is unchanged (a filter, the
        script, the mode...) their new spec on the open connection, with no reconnect
        and so no frame missed. The ids of those that need a new connection."""
        triggers = selectors.triggers_by_id(trigger_ids)
        reconnect = []
        for trigger_id in trigger_ids:
            trigger, connection = triggers.get(trigger_id), self._connections[trigger_id]
            spec = TriggerSpec.from_trigger(trigger) if trigger is not None and trigger.enabled else None
            if spec is None or spec.connection_config() != connection.spec.connection_config():
                reconnect.append(trigger_id)
                continue
            connection.spec = spec
            logger.info("trigger %s: configuration changed; applied to the open connection", spec.path)
        return reconnect

    def _leases_lost(self, trigger_ids):
        """On the keeper's thread: another listener owns these now. Their sockets
        close at once; the supervisor forgets them at its next tick."""
        for trigger_id in trigger_ids:
            connection = self._connections.get(trigger_id)
            path = connection.spec.path if connection else trigger_id
            logger.warning("trigger %s: lease lost to another listener; closing at once", path)
            if connection is not None:
                connection.close("lease lost")
        with self._lost_lock:
            self._lost.update(trigger_ids)
        self._wake.set()

    def _connection_ended(self, connection):
        """On the ended connection's thread: started again at the next tick."""
        with self._ended_lock:
            self._ended.append(connection)
        self._wake.set()

    def _hand_over_some(self):
        """Close and release up to HANDOVER_BATCH of the triggers another listener now
        owns, and tell the others: a joining listener takes its share in batches, not
        as one storm of closes and connects."""
        batch = [tid for tid in self._handing_over[:HANDOVER_BATCH] if tid in self._connections]
        self._handing_over = [
            tid
            for tid in self._handing_over[HANDOVER_BATCH:]
            if tid in self._connections and tid not in self._preferred
        ]
        if not batch:
            return
        self._stop_connections(batch, reason="handed over to another listener")
        logger.info(
            "listener %s: handed %s triggers over (%s more to go)",
            self.listener_id,
            len(batch),
            len(self._handing_over),
        )
        bus.nudge_listeners()
        if self._handing_over:
            self._wake.set()

    def _read_wanted(self, now):
        """({trigger id: edited_at} of the triggers to hold, whether it changed since
        the last tick). The full set is read when its fingerprint changes, and when
        the digest of its versions, compared every FULL_READ_INTERVAL_SECS, does."""
        fingerprint = selectors.listenable_triggers_fingerprint()
        if fingerprint == self._wanted_fingerprint:
            if now < self._full_read_due:
                return self._wanted, False
            self._full_read_due = now + FULL_READ_INTERVAL_SECS
            digest = selectors.listenable_trigger_versions_digest()
            if digest == self._wanted_digest:
                return self._wanted, False
        else:
            # Taken before the read, like the fingerprint: a write in between shows as
            # a change at the next comparison, never as none.
            digest = selectors.listenable_trigger_versions_digest()
        wanted = selectors.listenable_trigger_versions()
        self._wanted_fingerprint = fingerprint
        self._wanted_digest = digest
        self._full_read_due = now + FULL_READ_INTERVAL_SECS
        changed = wanted != self._wanted
        self._wanted = wanted
        return wanted, changed

    def _redis_trouble(self):
        """Redis was away or restarted: its leases and live set may be missing until
        every listener renewed them, and a message a worker was taking may be lost."""
        self._redis_ok_since = None
        # Leases may be gone with it: take them back now, not a third of a TTL later.
        self._lease_keeper.renew_soon()
        self._dispatcher.redis_was_away()

    def _may_claim(self):
        """Claim unheld triggers only once Redis has answered for two reconcile
        intervals: after an outage, holders first take their leases back and show
        themselves live, so nobody claims a trigger whose socket is still open."""
        return (
            self._redis_ok_since is not None
            and time.monotonic() - self._redis_ok_since >= 2 * conf.reconcile_interval_secs()
        )

    def _claim_unheld(self, wanted, now):
        """Acquire the wanted triggers nobody holds that are ours: those this listener
        is the preferred owner of (checked every tick), and, a few times per lease
        TTL, any left unheld for a whole TTL, so no trigger depends on one listener's
        health."""
        # Set differences, in C: at 10,000 held, this runs every tick.
        candidates = list(self._preferred.difference(self._connections))
        stale_scan = now >= self._stale_scan_due
        if stale_scan:
            self._stale_scan_due = now + self._leases.ttl_secs / 3
            for trigger_id in list(self._unheld_since):
                if trigger_id not in wanted or trigger_id in self._connections:
                    del self._unheld_since[trigger_id]
            candidates = list(wanted.keys() - self._connections.keys())
        owners = self._leases.owners(candidates)
        claimable = []
        for trigger_id, owner in owners.items():
            if owner is not None:
                self._unheld_since.pop(trigger_id, None)
                continue
            preferred = trigger_id in self._preferred
            stale = stale_scan and now - self._unheld_since.setdefault(trigger_id, now) > self._leases.ttl_secs
            if preferred or stale:
                claimable.append(trigger_id)
        self._watch_orphaned_leases(owners)
        return self._leases.acquire_many(claimable)

    def _watch_orphaned_leases(self, owners):
        """Of the preferred triggers still leased by a listener no longer live (dead:
        it left the live set well before its leases can lapse), learn when the first
        lease lapses and start the next pass then, so each is claimed the moment its
        lease lapses rather than up to a reconcile interval later."""
        live = set(self._live)
        orphaned = [
            tid for tid, owner in owners.items() if owner is not None and owner not in live and tid in self._preferred
        ]
        lapses = self._leases.lapses(orphaned)
        if lapses:
            self._claim_due = time.monotonic() + min(lapses.values()) + LAPSE_MARGIN_SECS

    def _start_connections(self, trigger_ids):
        # A trigger can be both edited and claimed (its lease lapsed meanwhile): one
        # connection each, never a second one that would orphan the first.
        trigger_ids = [tid for tid in dict.fromkeys(trigger_ids) if tid not in self._connections]
        if not trigger_ids:
            return
        triggers = selectors.triggers_by_id(trigger_ids)
        self._leases.release_many([tid for tid in trigger_ids if tid not in triggers or not triggers[tid].enabled])
        for trigger_id in trigger_ids:
            trigger = triggers.get(trigger_id)
            if trigger is None or not trigger.enabled:
                continue
            results_subscribed = threading.Event()
            connection = Connection(
                TriggerSpec.from_trigger(trigger),
                self._services,
                results_subscribed=results_subscribed,
                on_ended_unasked=self._connection_ended,
            )
            self._connections[trigger_id] = connection
            self._router.attach(connection, results_subscribed)
            connection.start()
            logger.info("trigger %s: held by listener %s", trigger.path, self.listener_id)

    def _stop_connections(self, trigger_ids, *, reason, release=True, listener_stopping=False):
        """Close connections, CLOSE_WINDOW at a time, wait for them, then (optionally)
        release their leases: a lease is free only once its socket is closed. A
        stopping listener skips per-connection work that ends with the process anyway:
        a log line each (10,000 threads contending for the logging lock slowed the
        closing by a fifth) and unsubscribing each result channel."""
        connections = [(tid, self._connections.pop(tid)) for tid in trigger_ids if tid in self._connections]
        closing = collections.deque()
        slow = []
        for _, connection in connections:
            connection.close(reason, log_level=logging.DEBUG if listener_stopping else logging.INFO)
            closing.append((connection, time.monotonic() + CLOSE_GRACE_SECS))
            while len(closing) >= CLOSE_WINDOW:
                oldest, grace_end = closing.popleft()
                if not oldest.wait(max(grace_end - time.monotonic(), 0)):
                    slow.append(oldest)
        deadline = time.monotonic() + CLOSE_TIMEOUT_SECS
        for connection in [c for c, _ in closing] + slow:
            connection.join(max(deadline - time.monotonic(), 0.05))
        for trigger_id, connection in connections:
            self._router.detach(trigger_id, connection, unsubscribe=not listener_stopping)
            if release:
                self._status.forget(trigger_id)
        if release:
            self._leases.release_many([trigger_id for trigger_id, _ in connections])

    # Shutdown

    def _shutdown(self):
        logger.info("listener %s stopping: closing %s connections", self.listener_id, len(self._connections))
        held = {tid: c.spec.path for tid, c in self._connections.items()}
        try:
            started = time.monotonic()
            # Pings and heartbeats first: on sockets about to close they are of no use,
            # and 10,000 heartbeats a second would compete with the closing for the GIL.
            self._timers.stop()
            if self._parking.takes_close_answers():
                self._close_for_stop(list(held))
            else:
                self._stop_connections(list(held), reason="listener stopping", release=False, listener_stopping=True)
            logger.info(
                "listener %s: closed %s connections in %.1fs", self.listener_id, len(held), time.monotonic() - started
            )
            for trigger_id, path in held.items():
                self._status.set(trigger_id, path, status="connecting", error=f"listener {self.listener_id} stopped")
            self._openers.stop()
            self._lease_keeper.stop()
            self._dispatcher.stop(timeout=3.0)
            self._status.stop()
            self._monitor.stop()
            self._router.stop()
            self._leases.leave()
            # The others take the handed-back triggers now, not at their next poll.
            bus.nudge_listeners()
            # Last: it closes the sockets _close_for_stop left to the parking thread,
            # already shut; their readers are never woken, and end with the process.
            self._parking.stop()
        except Exception as exc:
            logger.warning("listener %s: unclean shutdown: %s", self.listener_id, exc)
        finally:
            db_connection.close()
        logger.info("listener %s stopped", self.listener_id)

    def _close_for_stop(self, trigger_ids):
        """A stopping listener's closing: a close frame on every socket at once, each
        shut down by the parking thread when its server answers, its reader never
        woken (woken, 10,000 readers competed for the GIL for seconds); every socket
        still unanswered after CLOSE_TIMEOUT_SECS is shut down then. The caller
        releases the leases, once every socket is shut."""
        connections = [(tid, self._connections.pop(tid)) for tid in trigger_ids if tid in self._connections]
        for _, connection in connections:
            connection.close("listener stopping", log_level=logging.DEBUG, listener_stopping=True)
        deadline = time.monotonic() + CLOSE_TIMEOUT_SECS
        pending = [connection for _, connection in connections]
        while pending and time.monotonic() < deadline:
            self._parking.wait_for_answers(min(CLOSE_POLL_SECS, max(deadline - time.monotonic(), 0)))
            pending = [connection for connection in pending if not connection.answered_or_ended()]
        for connection in pending:
            connection.shut()
        for trigger_id, connection in connections:
            self._router.detach(trigger_id, connection, unsubscribe=False)
