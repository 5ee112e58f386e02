"""The command rate limiter and the reconnect backoff (pure, explicit clock)."""

from __future__ import annotations

import pytest

from sharder._backoff import Backoff
from sharder._ratelimit import SlidingWindowLimiter


def test_limiter_allows_limit_sends_per_window() -> None:
    limiter = SlidingWindowLimiter(limit=3, window=10.0)
    for now in (0.0, 1.0, 2.0):
        assert limiter.delay(now) == 0.0
        limiter.record(now)
    assert limiter.delay(3.0) == pytest.approx(7.0)
    assert limiter.delay(10.0) == 0.0


def test_reserved_slots_are_only_for_priority_commands() -> None:
    limiter = SlidingWindowLimiter(limit=3, window=10.0, reserved=1)
    limiter.record(0.0)
    limiter.record(0.0)
    assert limiter.delay(1.0) == pytest.approx(9.0)
    assert limiter.delay(1.0, priority=True) == 0.0


def test_reserved_equal_to_limit_blocks_ordinary_commands_for_a_window() -> None:
    limiter = SlidingWindowLimiter(limit=2, window=5.0, reserved=2)
    assert limiter.delay(0.0) == 5.0


def test_reset_forgets_the_previous_connection() -> None:
    limiter = SlidingWindowLimiter(limit=1, window=60.0)
    limiter.record(0.0)
    limiter.reset()
    assert limiter.delay(1.0) == 0.0


def test_backoff_first_retry_is_immediate_then_grows_to_the_cap() -> None:
    backoff = Backoff(base=1.0, cap=8.0, rng=lambda: 1.0)
    delays = [backoff.next_delay(None) for _ in range(7)]
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_backoff_resets_after_a_stable_connection() -> None:
    backoff = Backoff(base=1.0, stable_after=30.0, rng=lambda: 1.0)
    backoff.next_delay(None)
    assert backoff.next_delay(1.0) == 1.0
    assert backoff.next_delay(45.0) == 0.0
