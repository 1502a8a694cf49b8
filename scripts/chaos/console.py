"""Progress lines stamped with the wall clock and the time since the start, and the
exception that ends a run early."""

import time

T0 = time.time()


def clock(t):
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int((t % 1) * 1000):03d}"


def step(message):
    now = time.time()
    print(f"[{clock(now)} +{now - T0:6.1f}s] {message}", flush=True)


class ChaosFailure(Exception):
    pass
