"""Redis names and the shared client: result channels, leases, listener nudges and
runnable replies all live under ORVANTA_REDIS_PREFIX."""

import logging
import threading

import redis

from orvanta_triggers import conf, wire

logger = logging.getLogger(__name__)

_client = None
_client_lock = threading.Lock()


def client():
    """A process-wide Redis client (redis-py pools connections and is thread-safe)."""
    global _client
    with _client_lock:
        if _client is None:
            _client = redis.Redis.from_url(
                conf.redis_url(), socket_timeout=5, socket_connect_timeout=5, health_check_interval=10
            )
        return _client


def reset_client():
    """Forget the client (tests point REDIS_URL elsewhere)."""
    global _client
    with _client_lock:
        _client = None


def results_channel(trigger_id):
    return wire.results_channel(conf.redis_prefix(), trigger_id)


def config_channel():
    return f"{conf.redis_prefix()}config"


def router_wake_channel(name):
    """A listener's result router is woken through this channel (listener.results)."""
    return f"{conf.redis_prefix()}router-wake:{name}"


def lease_key(trigger_id):
    return f"{conf.redis_prefix()}lease:{trigger_id}"


def listeners_key():
    return f"{conf.redis_prefix()}listeners"


def reply_key(request_id):
    return wire.reply_key(conf.redis_prefix(), request_id)


def publish_results(frames):
    """Hand result frames [(trigger id, job id, frame)] to whichever listeners hold
    the triggers, in one round trip."""
    pipe = client().pipeline(transaction=False)
    for trigger_id, job_id, frame in frames:
        pipe.publish(results_channel(trigger_id), wire.encode_result(job_id, frame))
    pipe.execute()


# How long a worker's receipt of a message is kept: longer than any listener waits for it.
RECEIVED_TTL_SECS = 3600


def received_key(message_id):
    return f"{conf.redis_prefix()}received:{message_id}"


def note_received(message_id):
    """A worker took message `message_id` off the queue (see listener.dispatch)."""
    client().set(received_key(message_id), 1, ex=RECEIVED_TTL_SECS)


def received_messages(message_ids):
    """Those of `message_ids` some worker took off the queue."""
    if not message_ids:
        return set()
    marks = client().mget([received_key(message_id) for message_id in message_ids])
    return {message_id for message_id, mark in zip(message_ids, marks) if mark is not None}


# How long a message's hand-off record outlives it: longer than any redelivery.
HANDED_OFF_TTL_SECS = 86400


def handed_off_key(message_id):
    return f"{conf.redis_prefix()}handed-off:{message_id}"


def remember_handed_off(message_id, job_ids):
    """Jobs of message `message_id` now travel in another message: a redelivery of
    the first must not run them."""
    pipe = client().pipeline(transaction=False)
    pipe.sadd(handed_off_key(message_id), *job_ids)
    pipe.expire(handed_off_key(message_id), HANDED_OFF_TTL_SECS)
    pipe.execute()


def handed_off_job_ids(message_id):
    return {member.decode() for member in client().smembers(handed_off_key(message_id))}


def nudge_listeners():
    """Tell listeners that trigger configuration changed; they also poll, so a lost
    nudge only delays the change to the next poll."""
    try:
        client().publish(config_channel(), "changed")
    except redis.RedisError as exc:
        logger.warning("could not nudge listeners about a config change: %s", exc)
