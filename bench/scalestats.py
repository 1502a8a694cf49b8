"""What the scale scenario reads off the feed server and the processes after each
phase (connect, heartbeats, one edit, SIGTERM), and the limits of those phases.
"""

import math
import time

from bench.harness import BenchError, log, wait_for
from tests.support.percentiles import percentile

EDIT_CAP_SECS = 10.0
# How long after the edit took effect other connections are watched for a reconnect
# it set off (the listener reconciles every second).
EDIT_WATCH_SECS = 2.0
# Long enough to time a listener that takes several times the target to exit.
STOP_CAP_SECS = 30.0
MB = 1024 * 1024


def wait_or_none(predicate, proc, timeout, what, interval=0.05):
    """predicate()'s first truthy value, or None after `timeout`; a BenchError when
    `proc` (if given) exits meanwhile."""

    def check():
        if proc is not None and not proc.alive():
            raise BenchError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.log_tail()}")
        return predicate()

    try:
        return wait_for(check, timeout=timeout, what=what, interval=interval)
    except BenchError as exc:
        if proc is not None and not proc.alive():
            raise
        log(f"scale: {exc}")
        return None


def elapsed_since(at, t):
    return None if at is None else at - t


def all_open_since(server, t, n, proc, timeout, what):
    """Seconds from `t` until n connections opened after `t` were open, by the
    server's own stamps (the last of them to open), or None after `timeout`."""
    if wait_or_none(lambda: server.open_since(t) >= n, proc, timeout, what, 0.05) is None:
        return None
    return server.latest_open() - t


def heartbeat_stats(server, conns, since, until, n):
    """Heartbeat intervals seen over (since, until] against those expected of n
    triggers, and the lateness of each (inter-arrival minus 1 s, in ms).

    p50_ms and p99_ms count every missing interval as infinitely late, as the
    latency scenario counts a lost result (None: the percentile falls on one): over
    the intervals seen alone (seen_p50_ms, seen_p99_ms), a sender that fell silent
    would look punctual."""
    owed = max(int(until - since) - 1, 0)
    late = []
    seen = {}
    for conn, beats in server.beats(conns, since, until).items():
        gaps = [((b - a) - 1.0) * 1000.0 for a, b in zip(beats, beats[1:])]
        late += gaps
        seen[conn.path] = seen.get(conn.path, 0) + len(gaps)
    expected = n * owed
    counted = sum(min(count, owed) for count in seen.values())
    with_missing = late + [math.inf] * (expected - counted)

    def finite(value):
        return None if value is None or math.isinf(value) else value

    return {
        "expected_intervals": expected,
        "seen_intervals": counted,
        "intervals": len(late),
        "connections_beating": sum(1 for count in seen.values() if count),
        "p50_ms": finite(percentile(with_missing, 50)),
        "p99_ms": finite(percentile(with_missing, 99)),
        "seen_p50_ms": percentile(late, 50),
        "seen_p99_ms": percentile(late, 99),
        "max_ms": max(late) if late else None,
    }


def edit_effects(server, t, old_path, new_path):
    """What changed at the server since the edit at `t`: connections of other paths
    closed or opened, and whether the edited trigger's old connection closed cleanly."""
    conns = server.snapshot()
    old = [c for c in conns if c.path == old_path and c.closed is not None and c.closed > t]
    new = [c.opened for c in conns if c.path == new_path and c.opened > t]
    return {
        "others_closed": sum(1 for c in conns if c.closed is not None and c.closed > t and c.path != old_path),
        "others_opened": sum(1 for c in conns if c.opened > t and c.path != new_path),
        "old_closed_cleanly": bool(old) and all(c.clean for c in old),
        # The old URL and the new are two paths: a double connection shows here only.
        "old_closed_before_new": bool(old) and bool(new) and max(c.closed for c in old) <= min(new),
    }


def stop_effects(server, proc, t):
    """SIGTERM at `t`: seconds until the server saw every connection closed and until
    `proc` exited (None past STOP_CAP_SECS), and how many closed without a close frame."""
    all_closed = wait_or_none(lambda: server.open_count() == 0, None, STOP_CAP_SECS, "every connection closed", 0.02)
    closed_at = server.latest_close(t) if all_closed else None
    exited = wait_or_none(
        lambda: not proc.alive(), None, max(t + STOP_CAP_SECS - time.monotonic(), 0.1), f"{proc.name} to exit", 0.02
    )
    exited_at = time.monotonic() if exited else None
    closed = [c for c in server.snapshot() if c.closed is not None and c.closed >= t]
    return {
        "closed_secs": elapsed_since(closed_at, t),
        "exited_secs": elapsed_since(exited_at, t),
        "closed": len(closed),
        "unclean": sum(1 for c in closed if not c.clean),
        "still_open": server.open_count(),
        "exit_status": proc.popen.poll(),
    }


def log_problems(proc):
    """Warnings and errors in a process log: (count, first line) of each level."""
    out = {}
    for level in ("WARNING", "ERROR"):
        lines, count = proc.log_lines(f" {level} ", limit=1)
        out[level.lower()] = {"count": count, "first": lines[0] if lines else None}
    return out
