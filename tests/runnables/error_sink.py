"""An error handler that records every call in a Redis list, so tests can read what
a worker passed it."""

import json

from orvanta_triggers import bus

KEY = "orvanta-test:error-sink"


def main(**kwargs):
    bus.client().rpush(KEY, json.dumps(kwargs))


def calls():
    return [json.loads(item) for item in bus.client().lrange(KEY, 0, -1)]
