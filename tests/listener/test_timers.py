"""The listener's shared timer thread: order, cancellation, coarse calls sharing a
wake, and one failing callback never stopping the others."""

import math
import threading
import time

from listener.timers import COARSE_SLOT_SECS
from tests.support.wsserver import wait_for


def test_callbacks_run_in_time_order(timers):
    """Timers run by their due time, not the order they were added."""
    ran = []
    now = time.monotonic()
    for delay in (0.15, 0.05, 0.10):
        timers.call_at(now + delay, lambda delay=delay: ran.append(delay))
    wait_for(lambda: len(ran) == 3, timeout=5, message="three timers")
    assert ran == [0.05, 0.10, 0.15]


def test_an_earlier_timer_wakes_the_thread(timers):
    """A timer due before the one being waited for runs on time, not after it."""
    ran = threading.Event()
    timers.call_at(time.monotonic() + 60, lambda: None)
    added = time.monotonic()
    timers.call_at(added + 0.05, ran.set)
    assert ran.wait(5)
    assert time.monotonic() - added < 1.0


def test_a_cancelled_timer_never_runs(timers):
    """cancel() before the due time means the callback is never called."""
    ran = []
    timer = timers.call_at(time.monotonic() + 0.05, lambda: ran.append("cancelled"))
    timer.cancel()
    done = threading.Event()
    timers.call_at(time.monotonic() + 0.1, done.set)
    assert done.wait(5)
    assert ran == [] and timers.pending() == 0


def test_a_failing_callback_does_not_stop_the_others(timers, caplog):
    """An exception in one callback is logged at ERROR; later timers still run."""
    done = threading.Event()

    def broken():
        raise RuntimeError("bug in one connection's timer")

    now = time.monotonic()
    timers.call_at(now + 0.02, broken)
    timers.call_at(now + 0.05, done.set)
    assert done.wait(5)
    assert timers.is_alive()
    assert any(r.levelname == "ERROR" and "failed" in r.getMessage() for r in caplog.records)


def test_coarse_calls_due_within_one_slot_run_together_at_its_end(timers):
    """Coarse calls due at different moments of one slot all run in one wake, at its end, none early."""
    boundary = (math.ceil(time.monotonic() / COARSE_SLOT_SECS) + 2) * COARSE_SLOT_SECS
    dues = [boundary + 0.01 * i for i in range(1, 10)]
    ran = []
    for due in dues:
        timers.call_coarse(due, lambda due: ran.append((due, time.monotonic())), due)
    wait_for(lambda: len(ran) == len(dues), timeout=5, message="every coarse call")
    assert min(at for _, at in ran) >= max(dues)


def test_a_failing_coarse_call_does_not_stop_the_rest_of_its_slot(timers, caplog):
    """An exception in one coarse call is logged at ERROR; the others of its slot still run."""
    ran = []

    def call(name):
        if name == "broken":
            raise RuntimeError("bug in one connection's keepalive")
        ran.append(name)

    due = time.monotonic() + 0.02
    for name in ("before", "broken", "after"):
        timers.call_coarse(due, call, name)
    wait_for(lambda: len(ran) == 2, timeout=5, message="the two working calls")
    assert ran == ["before", "after"] and timers.pending() == 0
    assert any(r.levelname == "ERROR" and "failed" in r.getMessage() for r in caplog.records)
