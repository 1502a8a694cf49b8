"""An error handler that records every call in a Redis list, so tests can read what
a worker passed it."""

import json

from orvanta_triggers import bus, conf


def key():
    return f"{conf.redis_prefix()}error-sink"


def main(**kwargs):
    bus.client().rpush(key(), json.dumps(kwargs))


def calls():
    return [json.loads(item) for item in bus.client().lrange(key(), 0, -1)]
