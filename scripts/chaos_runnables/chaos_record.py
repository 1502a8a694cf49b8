"""Chaos runnable (script path `chaos_record`): records each execution of a job in an
append-only file, so the chaos run can count executions per message (duplicates
included) and see which pool process runs which message.

Each execution appends two lines, one write(2) each (atomic with O_APPEND):
  S <tab> pid <tab> unix time <tab> msg     when it starts
  E <tab> pid <tab> unix time <tab> msg     when it ends
and sleeps a random CHAOS_SLEEP_MS ("min-max" milliseconds) in between, so a
SIGKILL of a pool process lands on a running job.
"""

import os
import random
import time


def _record(kind, msg):
    path = os.environ.get("CHAOS_EXEC_LOG")
    if not path:
        return
    line = f"{kind}\t{os.getpid()}\t{time.time():.6f}\t{msg}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _sleep():
    low, _, high = os.environ.get("CHAOS_SLEEP_MS", "20-100").partition("-")
    low = float(low)
    high = float(high or low)
    time.sleep(random.uniform(low, high) / 1000.0)


def main(msg: str):
    _record("S", msg)
    _sleep()
    _record("E", msg)
    return msg
