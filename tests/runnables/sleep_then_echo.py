"""Sleeps as long as its message says ({"sleep": seconds, ...}), counting each run of
each message in Redis (so tests see duplicates across processes), then echoes it."""

import json
import time

from orvanta_triggers import bus, conf


def runs_key(prefix=None):
    """The counts' key under `prefix` (default: this process's ORVANTA_REDIS_PREFIX)."""
    return f"{prefix or conf.redis_prefix()}sleep-then-echo-runs"


def main(msg: str):
    bus.client().hincrby(runs_key(), msg, 1)
    time.sleep(json.loads(msg)["sleep"])
    return msg


def runs(prefix=None):
    """{message: how many times it ran} (in processes with that ORVANTA_REDIS_PREFIX)."""
    return {key.decode(): int(value) for key, value in bus.client().hgetall(runs_key(prefix)).items()}
