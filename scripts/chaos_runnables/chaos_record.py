"""Chaos runnable (script path `chaos_record`): records each execution of a job in an
append-only file, so the chaos run can count executions per message (duplicates
included) and see which pool process runs which message.

Each execution appends two lines, one write(2) each (atomic with O_APPEND):
  S <tab> pid <tab> unix time <tab> key     when it starts
  E <tab> pid <tab> unix time <tab> key     when it ends
where key is message_key(msg): an ordinary message ('{"trigger": i, "seq": n}') is
its own key; a poison frame (U+0000, 200,000-deep JSON, ~0.9 MB, binary) carries a
`poison:<trigger>-<seq>` tag, found in the text, or in the payload a binary frame's
base64 msg decodes to. It sleeps a random CHAOS_SLEEP_MS ("min-max" milliseconds) in
between, so a SIGKILL of a pool process lands on a running job, and returns msg
unchanged, so the job's result shows what the script saw.
"""

import base64
import binascii
import hashlib
import os
import random
import re
import time

POISON_TAG = re.compile(r"poison:\d+-\d+")


def message_key(msg):
    """The key that identifies `msg` in the chaos accounting (one line, no tab)."""
    if msg.startswith('{"trigger"'):
        return msg
    found = POISON_TAG.search(msg)
    if found is None:
        try:
            found = POISON_TAG.match(base64.b64decode(msg, validate=True)[:64].decode("latin-1"))
        except binascii.Error:
            pass
    if found is None:
        return "unknown:" + hashlib.sha256(msg.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return found.group(0)


def _record(kind, key):
    path = os.environ.get("CHAOS_EXEC_LOG")
    if not path:
        return
    line = f"{kind}\t{os.getpid()}\t{time.time():.6f}\t{key}\n".encode()
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
    key = message_key(msg)
    _record("S", key)
    _sleep()
    _record("E", key)
    return msg
