"""Reconnect delays: exponential, fully jittered, capped, resettable."""

from listener.backoff import Backoff


def test_delays_grow_exponentially_up_to_the_cap():
    """With the jitter at its maximum, delays double from the base until the cap."""
    backoff = Backoff(base=0.5, cap=60, rng=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 32, 60, 60]


def test_jitter_spans_zero_to_the_ceiling():
    """Full jitter: each delay is uniform between zero and the current ceiling."""
    backoff = Backoff(base=0.5, cap=60, rng=lambda: 0.0)
    assert backoff.next_delay() == 0.0
    delays = [Backoff(base=0.5, cap=60).next_delay() for _ in range(200)]
    assert all(0 <= d <= 0.5 for d in delays) and max(delays) > 0.25


def test_reset_starts_again_from_the_base():
    """After reset the next delay is bounded by the base again."""
    backoff = Backoff(base=0.5, cap=60, rng=lambda: 1.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_cap_delay_is_the_cap():
    """Permanent errors wait the whole cap."""
    assert Backoff(base=0.5, cap=60).cap_delay() == 60
