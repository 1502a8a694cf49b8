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
        self._held = set()
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
        pipe.zremrangebyscore(bus.listeners_key(), "-inf", now - self.ttl_secs)
        pipe.zrange(bus.listeners_key(), 0, -1)
        pipe.info("server")
        _, _, live, server = pipe.execute()
        return sorted(lid.decode() for lid in live), server["run_id"]

    def acquire(self, trigger_id):
        if bus.client().set(bus.lease_key(trigger_id), self.listener_id, nx=True, px=self._ttl_ms):
            with self._lock:
                self._held.add(trigger_id)
            return True
        return False

    def owners(self, trigger_ids):
        """{trigger id: holding listener id or None}, in one round trip."""
        ids = list(trigger_ids)
        if not ids:
            return {}
        values = bus.client().mget([bus.lease_key(t) for t in ids])
        return {t: (v.decode() if v is not None else None) for t, v in zip(ids, values)}

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
        self.release_many(self.held())
        bus.client().zrem(bus.listeners_key(), self.listener_id)


class LeaseKeeper:
    """Renews a listener's leases on a thread of its own, three times per TTL,
    however long the supervisor's reconcile pass takes (starting thousands of
    connections can outlast a TTL: leases must not lapse meanwhile, or another
    listener takes triggers whose sockets are still open). `on_lost(ids)` hears of
    leases another listener owns now."""

    def __init__(self, leases, *, on_lost):
        self._leases = leases
        self._on_lost = on_lost
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
        while not self._stop.is_set():
            try:
                lost = self._leases.renew()
            except redis.RedisError as exc:
                logger.warning("listener %s: could not renew leases: %s", self._leases.listener_id, exc)
            else:
                if lost:
                    self._on_lost(lost)
            self._now.wait(self._leases.ttl_secs / 3)
            self._now.clear()
