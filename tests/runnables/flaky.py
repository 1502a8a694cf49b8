"""Fails until it has been called `fail_times` times for the same message (counted in
Redis, so every worker process agrees), then echoes the message."""

from orvanta_triggers import bus, conf

FAIL_TIMES = 2


def main(msg: str):
    calls = bus.client().incr(f"{conf.redis_prefix()}flaky:{msg}")
    if calls <= FAIL_TIMES:
        raise RuntimeError(f"flaky failure {calls} of {FAIL_TIMES}")
    return msg
