"""One thread runs the timed work of every connection (heartbeats, protocol pings,
pong deadlines) from a heap. A connection's own thread only reads its socket, so an
idle connection costs no wake-up at all, whatever the number of connections.

Work that may run a little late (keepalive checks) is gathered into slots of
COARSE_SLOT_SECS instead, one heap entry per slot: at 10,000 connections, ~1,000
keepalive checks a second each had their own heap entry and most their own wake (a
timed Condition wait, then the GIL back among 10,000 threads)."""

import functools
import heapq
import itertools
import logging
import math
import threading
import time

logger = logging.getLogger(__name__)

COARSE_SLOT_SECS = 0.1


class Timer:
    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when, callback):
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


class Timers:
    def __init__(self, *, name="timers"):
        self._name = name
        self._heap = []
        self._sequence = itertools.count()
        self._changed = threading.Condition()
        # Coarse calls by slot number (due at slot * COARSE_SLOT_SECS): [(callback, arg)].
        self._slots = {}
        self._stopping = False
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def is_alive(self):
        return self._thread is not None and self._thread.is_alive()

    def stop(self):
        with self._changed:
            self._stopping = True
            self._changed.notify()
        if self._thread is not None:
            self._thread.join(2.0)

    def call_at(self, when, callback):
        """Run `callback()` on the timer thread at monotonic time `when`; the Timer
        can be cancelled until then."""
        with self._changed:
            return self._push(when, callback)

    def call_coarse(self, when, callback, arg):
        """Run `callback(arg)` on the timer thread at the end of the slot of
        COARSE_SLOT_SECS that holds `when`, with everything else due in that slot,
        in one wake. Not cancellable: the callback looks whether it is still wanted."""
        slot = math.ceil(when / COARSE_SLOT_SECS)
        with self._changed:
            calls = self._slots.get(slot)
            if calls is None:
                calls = self._slots[slot] = []
                self._push(slot * COARSE_SLOT_SECS, functools.partial(self._run_slot, slot))
            calls.append((callback, arg))

    def pending(self):
        """Timers not yet run or cancelled, and coarse calls not yet run (for tests
        and metrics)."""
        with self._changed:
            timers = sum(1 for _, _, timer in self._heap if not timer.cancelled)
            return timers - len(self._slots) + sum(len(calls) for calls in self._slots.values())

    def _push(self, when, callback):
        """Add a timer (the caller holds the condition)."""
        timer = Timer(when, callback)
        heapq.heappush(self._heap, (when, next(self._sequence), timer))
        if self._heap[0][2] is timer:
            self._changed.notify()
        return timer

    def _run_slot(self, slot):
        with self._changed:
            calls = self._slots.pop(slot)
        for callback, arg in calls:
            try:
                callback(arg)
            except Exception:
                # One connection's timed work failing must not stop everyone's.
                logger.exception("timer %r failed", callback)

    def _next_due(self):
        """The next timer due, or None when asked to stop."""
        with self._changed:
            while not self._stopping:
                if not self._heap:
                    self._changed.wait()
                    continue
                when, _, timer = self._heap[0]
                if timer.cancelled:
                    heapq.heappop(self._heap)
                    continue
                delay = when - time.monotonic()
                if delay > 0:
                    self._changed.wait(delay)
                    continue
                heapq.heappop(self._heap)
                return timer
            return None

    def _run(self):
        while (timer := self._next_due()) is not None:
            try:
                timer.callback()
            except Exception:
                # One connection's timed work failing must not stop everyone's.
                logger.exception("timer %r failed", timer.callback)
