"""kombu's Redis transport, with one Redis client per channel and the listeners'
receipt written with kombu's own record of a message taken.

kombu builds a new redis-py client for every command it sends outside its event loop
(each publish, each acknowledgement, each unacknowledged record), and redis-py's
client constructor fills a table of ~170 response callbacks each time: 250 µs of CPU
per command on our machines, a third of a listener's publish and an eighth of a
worker's main process at 300 frames/s. A client holds no connection of its own (it
borrows one from the channel's pool per command, and pipelines are still made per
call), so one per channel and pool serves every caller.

A worker notes each trigger-jobs message it takes (bus.note_received, read by
listener.dispatch). Here that note joins the MULTI in which kombu records the message
as unacknowledged: one round trip instead of two on every message's way to a pool
process, and the note is written exactly when kombu's record is. It assumes, as the
listeners do, that the broker is the Redis at REDIS_URL.

celeryconfig selects this transport for redis:// and rediss:// broker URLs; anything
else keeps kombu's own choice (and workersignals notes receipts by itself).
"""

import time

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps

from orvanta_triggers import bus
from orvanta_triggers.wire import RUN_TRIGGER_JOBS


def notes_receipts(message):
    """Whether the transport that delivered `message` (a kombu message) noted its receipt."""
    return isinstance(getattr(message.channel, "qos", None), QoS)


class QoS(kombu_redis.QoS):
    def append(self, message, delivery_tag):
        headers = message.headers or {}
        if headers.get("task") != RUN_TRIGGER_JOBS:
            return super().append(message, delivery_tag)
        delivery = message.delivery_info
        # kombu_redis.QoS.append's record, with the receipt in the same MULTI.
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time.time()}).hset(
                self.unacked_key, delivery_tag, dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
            ).set(bus.received_key(headers["id"]), 1, ex=bus.RECEIVED_TTL_SECS).execute()
            virtual.QoS.append(self, message, delivery_tag)


class Channel(kombu_redis.Channel):
    QoS = QoS
    _sync_client = None

    def _create_client(self, asynchronous=False):
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._sync_client
        # kombu replaces the pool after a fork or a lost connection: follow it.
        if client is None or client.connection_pool is not self.pool:
            client = self._sync_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel
