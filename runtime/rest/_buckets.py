"""Rate-limit bookkeeping, without I/O: every method takes ``now`` (seconds, monotonic).

Three pieces, each answering "how long must this request wait?":

* :class:`BucketState`: one Discord bucket (bucket hash + major parameters), fed
  by the ``X-RateLimit-*`` headers of its responses;
* :class:`GlobalLimiter`: the global requests-per-second limit, shared by all routes;
* :class:`InvalidRequestCounter`: 401/403/429 responses per plugin over ten minutes,
  because 10,000 of them in ten minutes get the IP banned by Cloudflare.

The client owns the clock and the sleeping; these classes only do arithmetic,
so they are tested with plain numbers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "INVALID_REQUEST_THRESHOLDS",
    "INVALID_REQUEST_WINDOW",
    "BucketState",
    "GlobalLimiter",
    "InvalidRequestCounter",
    "RateLimitHeaders",
    "RetryAfter",
]

INVALID_REQUEST_WINDOW: Final = 600.0
"""Discord counts invalid requests over ten minutes."""

INVALID_REQUEST_THRESHOLDS: Final = (100, 1000, 5000)
"""Counts (per plugin, per window) at which the client logs a warning."""


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """The ``X-RateLimit-*`` headers of one response.

    Attributes:
        bucket: the bucket hash (shared by routes that share a limit).
        limit: requests allowed per window.
        remaining: requests left in the current window.
        reset_after: seconds until the window resets.
        window: ``X-RateLimit-Reset`` (epoch seconds): identifies the window, so
            that two responses of the same window can be told from a new window.
    """

    bucket: str
    limit: int
    remaining: int
    reset_after: float
    window: float | None

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> RateLimitHeaders | None:
        """The headers, or None if the response has no (usable) bucket headers."""
        bucket = headers.get("x-ratelimit-bucket")
        if bucket is None:
            return None
        try:
            limit = int(headers["x-ratelimit-limit"])
            remaining = int(headers["x-ratelimit-remaining"])
            reset_after = float(headers["x-ratelimit-reset-after"])
        except (KeyError, ValueError):
            return None
        window = headers.get("x-ratelimit-reset")
        try:
            reset = float(window) if window is not None else None
        except ValueError:
            reset = None
        return cls(bucket, limit, remaining, reset_after, reset)


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """What a 429 says: how long to wait, and whom the pause applies to.

    Attributes:
        delay: seconds to wait (``retry_after`` of the body, else ``Retry-After``).
        is_global: the global limit was hit: every route must pause.
        scope: ``X-RateLimit-Scope``: ``user``, ``global`` or ``shared`` (a limit
            shared with other bots on a resource; not counted as invalid).
    """

    delay: float
    is_global: bool
    scope: str

    @classmethod
    def parse(cls, headers: Mapping[str, str], body: object) -> RetryAfter:
        """Read a 429 response; a missing or garbled delay means one second."""
        fields = body if isinstance(body, dict) else {}
        delay = _seconds(fields.get("retry_after"))
        if delay is None:
            delay = _seconds(headers.get("retry-after"))
        is_global = headers.get("x-ratelimit-global", "").lower() == "true"
        scope = headers.get("x-ratelimit-scope", "global" if is_global else "user")
        is_global = is_global or fields.get("global") is True
        return cls(1.0 if delay is None else delay, is_global, scope)


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0.0 <= seconds < 86400.0 else None


class BucketState:
    """One bucket: requests left in the current window, and when it resets.

    Unknown until the first response (``remaining`` is None): the client sends
    requests of a route one at a time anyway, so the first response teaches the
    limit before the second request goes out.
    """

    __slots__ = ("limit", "remaining", "reset_at", "window")

    def __init__(self) -> None:
        self.limit: int | None = None
        self.remaining: int | None = None
        self.reset_at = 0.0
        self.window: float | None = None

    def __repr__(self) -> str:
        return f"<BucketState {self.remaining}/{self.limit} reset_at={self.reset_at:.3f}>"

    def acquire(self, now: float) -> float:
        """Take a slot and return 0.0, or return the seconds to wait (taking nothing)."""
        remaining = self.remaining
        if remaining is None:
            return 0.0
        if remaining > 0:
            self.remaining = remaining - 1
            return 0.0
        if now < self.reset_at:
            return self.reset_at - now
        # The window is over: assume a full one until a response says otherwise.
        self.remaining = max((self.limit or 1) - 1, 0)
        return 0.0

    def update(self, headers: RateLimitHeaders, now: float) -> None:
        """Learn from a response's headers.

        Responses of one window can arrive out of order when routes share a
        bucket; within a window the lowest ``remaining`` is the truth, since
        the local count was already lowered for requests still in flight.
        """
        same_window = headers.window is not None and headers.window == self.window
        if same_window and self.remaining is not None:
            self.remaining = min(self.remaining, headers.remaining)
        else:
            self.remaining = headers.remaining
        self.limit = headers.limit
        self.reset_at = now + headers.reset_after
        self.window = headers.window

    def pause(self, delay: float, now: float) -> None:
        """After a 429: nothing more goes out for ``delay`` seconds."""
        self.remaining = 0
        self.reset_at = max(self.reset_at, now + delay)

    def idle(self, now: float) -> bool:
        """True when forgetting this bucket loses nothing (its window is over)."""
        return now >= self.reset_at


class GlobalLimiter:
    """At most ``rate`` requests in any ``period`` seconds, for all routes together.

    A request holds its slot from the moment it is sent until ``period``
    seconds after its answer. Discord counts a request when it *arrives*,
    which is somewhere between the two; counting from the answer is the only
    choice that keeps Discord's count within the limit whatever the network
    jitter, at the price of a period of ``period`` plus one round trip.
    """

    __slots__ = ("_free_at", "in_flight", "paused_until", "period", "rate")

    def __init__(self, rate: int, period: float = 1.0) -> None:
        if rate < 1:
            raise ValueError(f"global_limit must be at least 1, got {rate}")
        self.rate = rate
        self.period = period
        self.in_flight = 0
        self.paused_until = 0.0
        self._free_at: deque[float] = deque()
        """When held slots come free, in order (answers arrive in time order)."""

    def acquire(self, now: float) -> float | None:
        """Take a slot and return 0.0; else the seconds to wait before asking again.

        None means every slot is held by a request still waiting for its
        answer: ask again after the next :meth:`release`.
        """
        free_at = self._free_at
        while free_at and free_at[0] <= now:
            free_at.popleft()
        if self.paused_until > now:
            return self.paused_until - now
        if self.in_flight + len(free_at) < self.rate:
            self.in_flight += 1
            return 0.0
        return free_at[0] - now if free_at else None

    def release(self, now: float) -> None:
        """The request of a slot got its answer (or failed) at ``now``."""
        self.in_flight -= 1
        self._free_at.append(now + self.period)

    def pause(self, delay: float, now: float) -> None:
        """After a global 429: no route sends for ``delay`` seconds."""
        self.paused_until = max(self.paused_until, now + delay)


class InvalidRequestCounter:
    """401, 403 and non-shared 429 responses per plugin, over a sliding window."""

    __slots__ = ("_times", "thresholds", "window")

    def __init__(
        self,
        window: float = INVALID_REQUEST_WINDOW,
        thresholds: tuple[int, ...] = INVALID_REQUEST_THRESHOLDS,
    ) -> None:
        self.window = window
        self.thresholds = thresholds
        self._times: dict[str, deque[float]] = {}

    def add(self, plugin: str, now: float) -> int | None:
        """Count one; returns the threshold just reached, if any, for a warning."""
        times = self._times.setdefault(plugin, deque())
        times.append(now)
        self._expire(times, now)
        count = len(times)
        return count if count in self.thresholds else None

    def counts(self, now: float) -> dict[str, int]:
        """Invalid requests per plugin within the window (plugins with none left out)."""
        for plugin, times in list(self._times.items()):
            self._expire(times, now)
            if not times:
                del self._times[plugin]
        return {plugin: len(times) for plugin, times in self._times.items()}

    def _expire(self, times: deque[float], now: float) -> None:
        horizon = now - self.window
        while times and times[0] <= horizon:
            times.popleft()
