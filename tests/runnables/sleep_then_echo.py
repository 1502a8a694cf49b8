"""Sleeps as long as its message says ({"sleep": seconds, ...}), counting each run of
each message in Redis (so tests see duplicates across processes), then echoes it."""

import json
import time

from orvanta_triggers import bus, conf


def runs_key():
    return f"{conf.redis_prefix()}sleep-then-echo-runs"


def main(msg: str):
    bus.client().hincrby(runs_key(), msg, 1)
    time.sleep(json.loads(msg)["sleep"])
    return msg


def runs():
    """{message: how many times it ran}."""
    return {key.decode(): int(value) for key, value in bus.client().hgetall(runs_key()).items()}
