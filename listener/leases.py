"""Trigger leases in Redis: one owner per trigger, a TTL renewed by the owner with
compare-and-set, and rendezvous hashing over the live listeners so triggers spread
evenly and move only when the set of listeners changes."""

import hashlib
import logging
import threading
import time

import redis

from orvanta_triggers import bus

logger = logging.getLogger(__name__)

# Renew every lease this listener still owns in one round trip, and report those
# another listener owns now. A lease that is gone altogether (it expired during a
# pause, or Redis restarted empty) is owned by nobody: its holder, whose socket is
# still open, takes it back rather than drop a healthy connection.
RENEW_SCRIPT = """
local lost = {}
for i, key in ipairs(KEYS) do
  local owner = redis.call('get', key)
  if owner == ARGV[1] then
    redis.call('pexpire', key, ARGV[2])
  elseif not owner then
    redis.call('set', key, ARGV[1], 'PX', ARGV[2])
  else
    table.insert(lost, i)
  end
end
return lost
"""
RELEASE_SCRIPT = """
local released = 0
for i, key in ipairs(KEYS) do
  if redis.call('get', key) == ARGV[1] then released = released + redis.call('del', key) end
end
return released
"""
# Leases per release script: one call holds Redis for a few milliseconds at most.
RELEASE_BATCH = 1000
# The keeper renews leases this many times per TTL: a dead listener's leases outlive
# it by at least (1 - 1/RENEWALS_PER_TTL) of a TTL, two thirds.
RENEWALS_PER_TTL = 3
# A listener leaves the live set after this share of a TTL without announcing itself,
# so that even with a reconcile interval for the others to notice, it is gone from
# their view before its leases can lapse (two thirds of a TTL after its death at the
# earliest): by then they know which of its triggers each prefers, and claim each one
# the moment its lease lapses. The lease, not the live set, gates a takeover.
LIVE_WINDOW_TTL_SHARE = 0.5
# Announcements the keeper's thread makes per live window (the supervisor makes one
# every tick as well): a listener is judged dead only after missing this many in a
# row, so one whose supervisor is busy for seconds (starting thousands of connections)
# or whose keeper waited a while for the GIL stays live. A wrong verdict costs churn,
# never a second connection: the others can take only unleased triggers, and hand
# them back (closed first, then released) once it shows up again.
ANNOUNCEMENTS_PER_WINDOW = 3


def rendezvous_owner(trigger_id, listener_ids):
    """The listener that should hold `trigger_id` (highest random weight)."""
    return max(
        listener_ids,
        key=lambda lid: hashlib.blake2b(f"{lid}|{trigger_id}".encode(), digest_size=8).digest(),
    )


class Leases:
    def __init__(self, *, listener_id, ttl_secs):
        self.listener_id = listener_id
        self.ttl_secs = ttl_secs
        self._ttl_ms = int(ttl_secs * 1000)
        self.live_window_secs = ttl_secs * LIVE_WINDOW_TTL_SHARE
        self._held = set()
        # Set by leave(): the keeper's thread must not announce a listener that left.
        self._left = False
        # The keeper thread renews while the supervisor acquires and releases.
        self._lock = threading.Lock()
        redis_client = bus.client()
        self._renew = redis_client.register_script(RENEW_SCRIPT)
        self._release = redis_client.register_script(RELEASE_SCRIPT)

    def held(self):
        with self._lock:
            return set(self._held)

    def announce_live(self):
        """Announce this listener as live (its liveness, unrelated to triggers'
        heartbeats); return (ids of every live listener, the Redis
        server's run id, which changes when Redis restarts)."""
        now = time.time()
        client = bus.client()
        pipe = client.pipeline()
        pipe.zadd(bus.listeners_key(), {self.listener_id: now})
        pipe.zremrangebyscore(bus.listeners_key(), "-inf", now - self.live_window_secs)
        pipe.zrange(bus.listeners_key(), 0, -1)
        pipe.info("server")
        _, _, live, server = pipe.execute()
        return sorted(lid.decode() for lid in live), server["run_id"]

    def keep_live(self):
        """Announce this listener as live, and nothing more (the keeper's thread does,
        however long the supervisor's pass); never once it left."""
        with self._lock:
            if not self._left:
                bus.client().zadd(bus.listeners_key(), {self.listener_id: time.time()})

    def acquire(self, trigger_id):
        return self.acquire_many([trigger_id]) == [trigger_id]

    def acquire_many(self, trigger_ids):
        """Acquire the leases nobody holds among `trigger_ids`, in one round trip (a
        dead listener's hundreds of triggers are claimed the moment their leases
        lapse, not one round trip after another); the ids acquired."""
        ids = list(trigger_ids)
        if not ids:
            return []
        pipe = bus.client().pipeline(transaction=False)
        for trigger_id in ids:
            pipe.set(bus.lease_key(trigger_id), self.listener_id, nx=True, px=self._ttl_ms)
        acquired = [trigger_id for trigger_id, done in zip(ids, pipe.execute()) if done]
        with self._lock:
            self._held.update(acquired)
        return acquired

    def owners(self, trigger_ids):
        """{trigger id: holding listener id or None}, in one round trip."""
        ids = list(trigger_ids)
        if not ids:
            return {}
        values = bus.client().mget([bus.lease_key(t) for t in ids])
        return {t: (v.decode() if v is not None else None) for t, v in zip(ids, values)}

    def lapses(self, trigger_ids):
        """{trigger id: seconds until its lease lapses, 0 when it is gone already}, in
        one round trip. A key without expiry (none this code sets) is left out."""
        ids = list(trigger_ids)
        if not ids:
            return {}
        pipe = bus.client().pipeline(transaction=False)
        for trigger_id in ids:
            pipe.pttl(bus.lease_key(trigger_id))
        # PTTL: milliseconds left, -2 for no key, -1 for a key without expiry.
        return {t: max(ms, 0) / 1000 for t, ms in zip(ids, pipe.execute()) if ms != -1}

    def renew(self):
        """Renew every held lease; return the ids of those lost to another owner.
        Holds the lock throughout, so a lease released meanwhile is not taken back
        from a stale list."""
        with self._lock:
            ids = sorted(self._held)
            if not ids:
                return []
            lost_positions = self._renew(keys=[bus.lease_key(t) for t in ids], args=[self.listener_id, self._ttl_ms])
            lost = [ids[i - 1] for i in lost_positions]
            self._held.difference_update(lost)
        return lost

    def release(self, trigger_id):
        self.release_many([trigger_id])

    def release_many(self, trigger_ids):
        """Release the leases this listener owns among `trigger_ids`, RELEASE_BATCH a
        round trip (a listener stopping with thousands must not take one each)."""
        ids = list(trigger_ids)
        with self._lock:
            self._held.difference_update(ids)
            for start in range(0, len(ids), RELEASE_BATCH):
                keys = [bus.lease_key(t) for t in ids[start : start + RELEASE_BATCH]]
                self._release(keys=keys, args=[self.listener_id])

    def leave(self):
        """Release everything and drop out of the live set (clean shutdown)."""
        with self._lock:
            self._left = True
        self.release_many(self.held())
        bus.client().zrem(bus.listeners_key(), self.listener_id)


class LeaseKeeper:
    """Renews a listener's leases on a thread of its own, RENEWALS_PER_TTL times per
    TTL, and announces the listener live ANNOUNCEMENTS_PER_WINDOW times per live
    window, however long the supervisor's reconcile pass takes (starting thousands of
    connections can outlast a TTL: leases must not lapse meanwhile, or another
    listener takes triggers whose sockets are still open). `on_lost(ids)` hears of
    leases another listener owns now."""

    def __init__(self, leases, *, on_lost):
        self._leases = leases
        self._on_lost = on_lost
        self._renew_every = leases.ttl_secs / RENEWALS_PER_TTL
        self._announce_every = leases.live_window_secs / ANNOUNCEMENTS_PER_WINDOW
        self._stop = threading.Event()
        self._now = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
        self._thread.start()

    def is_alive(self):
        return self._thread is not None and self._thread.is_alive()

    def renew_soon(self):
        """Renew at once (after Redis came back: leases may be gone with it)."""
        self._now.set()

    def stop(self):
        self._stop.set()
        self._now.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def _run(self):
        renew_due = 0.0
        while not self._stop.is_set():
            if self._now.is_set() or time.monotonic() >= renew_due:
                self._now.clear()
                renew_due = time.monotonic() + self._renew_every
                self._renew()
            try:
                self._leases.keep_live()
            except redis.RedisError as exc:
                logger.warning("listener %s: could not announce itself live: %s", self._leases.listener_id, exc)
            self._now.wait(max(min(self._announce_every, renew_due - time.monotonic()), 0))

    def _renew(self):
        try:
            lost = self._leases.renew()
        except redis.RedisError as exc:
            logger.warning("listener %s: could not renew leases: %s", self._leases.listener_id, exc)
        else:
            if lost:
                self._on_lost(lost)
