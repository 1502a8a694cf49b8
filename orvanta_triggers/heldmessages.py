"""Keeps the broker messages a live worker holds from being handed to another.

kombu's Redis transport notes each message a worker takes, unacknowledged, with the
time it took it (the `unacked_index` sorted set), and gives back to the queue those
older than `visibility_timeout`. With a long timeout, a dead worker's jobs wait that
long; with a short one, a live worker's long jobs (and retries waiting for their
countdown) would be handed out twice. So the timeout is short
(ORVANTA_WORKER_LOST_SECS) and each worker's main process renews the time of every
message it holds, four times per timeout: a message goes back to the queue only
when its worker stopped renewing it, that is, died.
"""

import logging
import threading
import time
import weakref

import redis
from kombu.exceptions import OperationalError as BrokerError

from orvanta_triggers import conf
from orvanta_triggers.periodic import PeriodicThread

logger = logging.getLogger(__name__)


# Requests this worker received and has not acknowledged yet. Celery's own
# `reserved_requests` misses a retry waiting for its countdown (it joins only once the
# countdown is over), so the worker keeps its own list, filled by `note_held`.
_held = weakref.WeakSet()
_held_lock = threading.Lock()


def note_held(request):
    """Called when the worker receives a message (Celery's task_received signal)."""
    with _held_lock:
        _held.add(request)


def held_delivery_tags():
    """Delivery tags of the messages this worker holds: received, not yet acknowledged."""
    with _held_lock:
        requests = list(_held)
    return [request.message.delivery_tag for request in requests if not request.acknowledged]


class HeldMessagesKeeper(PeriodicThread):
    """A thread of the worker's main process renewing its held messages' times."""

    def __init__(self, app):
        super().__init__(name="held-messages-keeper", interval_secs=conf.worker_lost_secs() / 4)
        self._app = app

    def session(self):
        return self._app.connection_for_write()

    def tick(self, connection):
        try:
            self.renew(connection.default_channel)
        except (redis.RedisError, BrokerError, OSError) as exc:
            logger.warning("could not renew the messages this worker holds: %s", exc)

    @staticmethod
    def renew(channel):
        tags = held_delivery_tags()
        if not tags:
            return
        # The local clock, as kombu's own: XX, so a message acknowledged meanwhile
        # does not come back into the index.
        now = time.time()
        channel.client.zadd(channel.unacked_index_key, dict.fromkeys(tags, now), xx=True)
