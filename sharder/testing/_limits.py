"""Discord's gateway limits as pure bookkeeping that takes ``now``.

Kept free of I/O so the rules (one IDENTIFY per bucket per window, the daily
session-start budget, 120 commands per connection per minute, one
all-members request per guild per 30 s) read in one place.
"""

from __future__ import annotations

from collections import deque
from typing import Final

__all__ = ["MEMBER_REQUEST_WINDOW", "IdentifyGate", "MemberRequestLimiter", "SlidingWindow"]

MEMBER_REQUEST_WINDOW: Final = 30.0
"""Seconds between two all-members requests for one guild (changelog, Aug 2025)."""


class SlidingWindow:
    """Counts events in the last ``window`` seconds; refuses the one over ``limit``."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()

    def hit(self, now: float) -> bool:
        """Count one event; ``False`` if it goes over the limit."""
        times = self._times
        while times and times[0] <= now - self.window:
            times.popleft()
        times.append(now)
        return len(times) <= self.limit

    def __len__(self) -> int:
        return len(self._times)


class IdentifyGate:
    """Identify concurrency buckets plus the daily session-start budget."""

    def __init__(
        self,
        *,
        max_concurrency: int,
        window: float,
        total: int,
        remaining: int,
        reset_after: float,
    ) -> None:
        self.max_concurrency = max_concurrency
        self.window = window
        self.total = total
        self._remaining = remaining
        self._reset_after = reset_after
        self._reset_at: float | None = None
        """Set on first use, so the window starts when the emulator does."""
        self._last_identify: dict[int, float] = {}

    def bucket(self, shard_id: int) -> int:
        """Discord's rate-limit key for a shard."""
        return shard_id % self.max_concurrency

    def remaining(self, now: float) -> int:
        """Session starts left in the current window."""
        self._roll(now)
        return self._remaining

    def reset_after(self, now: float) -> float:
        """Seconds until the daily budget refills."""
        return max(0.0, self._roll(now) - now)

    def admit(self, shard_id: int, now: float) -> str | None:
        """Take a session start for ``shard_id``, or say which limit it broke.

        Returns ``None`` when admitted, else a violation message. Only
        admitted identifies start a bucket's window.
        """
        self._roll(now)
        bucket = self.bucket(shard_id)
        last = self._last_identify.get(bucket)
        if last is not None and now - last < self.window:
            return (
                f"identify-concurrency: shard {shard_id} (bucket {bucket}) identified "
                f"{now - last:.3f} s after the previous identify of its bucket "
                f"(one per {self.window} s)"
            )
        if self._remaining <= 0:
            return f"daily-limit: shard {shard_id} identified with no session starts remaining"
        self._remaining -= 1
        self._last_identify[bucket] = now
        return None

    def _roll(self, now: float) -> float:
        """Refill the budget if its window is over; return when it next refills."""
        if self._reset_at is None:
            self._reset_at = now + self._reset_after
        elif now >= self._reset_at:
            self._remaining = self.total
            self._reset_at = now + self._reset_after
        return self._reset_at


class MemberRequestLimiter:
    """One all-members request (query ``""``, limit 0) per guild per 30 s."""

    def __init__(self, window: float = MEMBER_REQUEST_WINDOW) -> None:
        self.window = window
        self._last: dict[int, float] = {}

    def retry_after(self, guild_id: int, now: float) -> float:
        """0.0 when allowed (and recorded), else seconds to wait."""
        last = self._last.get(guild_id)
        if last is not None and now - last < self.window:
            return self.window - (now - last)
        self._last[guild_id] = now
        return 0.0
