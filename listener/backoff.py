"""Reconnect delays: exponential backoff with full jitter."""

import random


class Backoff:
    """Delay n is uniform in [0, min(cap, base * 2**n)] (full jitter), so a fleet of
    triggers that lost the same server does not reconnect in lockstep."""

    def __init__(self, *, base, cap, rng=random.random):
        self.base = base
        self.cap = cap
        self._rng = rng
        self._attempt = 0

    def next_delay(self):
        ceiling = min(self.cap, self.base * (2**self._attempt))
        self._attempt = min(self._attempt + 1, 64)
        return ceiling * self._rng()

    def cap_delay(self):
        """For permanent errors: retry rarely, so a fixed server recovers by itself."""
        return self.cap

    def reset(self):
        self._attempt = 0
