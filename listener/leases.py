"""Trigger leases in Redis: one owner per trigger, a TTL renewed by the owner with
compare-and-set, and rendezvous hashing over the live listeners so triggers spread
evenly and move only when the set of listeners changes."""

import hashlib
import logging
import time

from orvanta_triggers import bus

logger = logging.getLogger(__name__)

# Renew every lease this listener still owns in one round trip; report the rest lost.
RENEW_SCRIPT = """
local lost = {}
for i, key in ipairs(KEYS) do
  if redis.call('get', key) == ARGV[1] then
    redis.call('pexpire', key, ARGV[2])
  else
    table.insert(lost, i)
  end
end
return lost
"""
RELEASE_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


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
        self._valid_until = {}
        redis_client = bus.client()
        self._renew = redis_client.register_script(RENEW_SCRIPT)
        self._release = redis_client.register_script(RELEASE_SCRIPT)

    def held(self):
        return set(self._valid_until)

    def is_valid(self, trigger_id):
        """Whether this listener may still act for the trigger: its last renewal is
        recent enough that no other listener can have taken the lease."""
        return time.monotonic() < self._valid_until.get(trigger_id, 0)

    def _deadline(self, started):
        # A margin for clock drift between this process and Redis.
        return started + self.ttl_secs * 0.9

    def heartbeat(self):
        """Announce this listener; return the ids of every live listener."""
        now = time.time()
        client = bus.client()
        pipe = client.pipeline()
        pipe.zadd(bus.listeners_key(), {self.listener_id: now})
        pipe.zremrangebyscore(bus.listeners_key(), "-inf", now - self.ttl_secs)
        pipe.zrange(bus.listeners_key(), 0, -1)
        live = pipe.execute()[2]
        return sorted(lid.decode() for lid in live)

    def acquire(self, trigger_id):
        started = time.monotonic()
        if bus.client().set(bus.lease_key(trigger_id), self.listener_id, nx=True, px=self._ttl_ms):
            self._valid_until[trigger_id] = self._deadline(started)
            return True
        return False

    def renew(self):
        """Renew every held lease; return the ids of those lost to another owner."""
        ids = sorted(self._valid_until)
        if not ids:
            return []
        started = time.monotonic()
        lost_positions = self._renew(keys=[bus.lease_key(t) for t in ids], args=[self.listener_id, self._ttl_ms])
        lost = [ids[i - 1] for i in lost_positions]
        deadline = self._deadline(started)
        for trigger_id in ids:
            self._valid_until[trigger_id] = deadline
        for trigger_id in lost:
            del self._valid_until[trigger_id]
        return lost

    def release(self, trigger_id):
        self._valid_until.pop(trigger_id, None)
        self._release(keys=[bus.lease_key(trigger_id)], args=[self.listener_id])

    def leave(self):
        """Release everything and drop out of the live set (clean shutdown)."""
        for trigger_id in list(self._valid_until):
            self.release(trigger_id)
        bus.client().zrem(bus.listeners_key(), self.listener_id)
