"""Discord's REST rate limits and injected REST faults, as bookkeeping that takes ``now``.

Per-route limits count per *bucket and major parameter*, as Discord does: a
limit on ``POST /channels/{channel_id}/messages`` gives every channel its own
window. A window opens at the first request and lasts ``per`` seconds. Routes
without a configured limit get :data:`DEFAULT_ROUTE_LIMIT`, generous enough
never to bind, so every routed response carries the ``X-RateLimit-*`` headers
a client learns from.

The global limit is a sliding window (at most ``limit`` in any ``per``
seconds): it has no headers to learn a phase from, so a fixed window would
refuse a client that keeps to the rate but whose requests arrive with jitter.

Faults are queued and taken by the first matching request. An injected 429
also blocks its bucket (or, if global, every route) for ``retry_after``, so a
client that retries early is answered 429 again and counted.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = [
    "DEFAULT_ROUTE_LIMIT",
    "Admission",
    "RestFault",
    "RestLimits",
    "RouteLimit",
]

Scope = Literal["user", "global", "shared"]


@dataclass(frozen=True, slots=True)
class RouteLimit:
    """``limit`` requests per ``per`` seconds; routes with the same ``bucket`` share them."""

    limit: int
    per: float
    bucket: str

    def __post_init__(self) -> None:
        if self.limit < 1 or self.per <= 0:
            raise ValueError(f"a limit needs limit >= 1 and per > 0, got {self.limit}/{self.per}")


DEFAULT_ROUTE_LIMIT: Final = (10_000, 1.0)
"""``(limit, per)`` of routes without a configured limit: headers, but no binding limit."""


@dataclass(slots=True)
class RestFault:
    """What the next ``count`` matching requests get instead of a normal answer.

    Attributes:
        route: a route key (``"POST /channels/{channel_id}/messages"``), or None for any.
        status: the status to answer with (429 takes ``retry_after``, ``is_global``, ``scope``).
        drop: handle the request, then reset the connection without answering: the
            client cannot know whether it was executed.
    """

    route: str | None
    count: int
    status: int | None = None
    retry_after: float = 1.0
    is_global: bool = False
    scope: Scope | None = None
    drop: bool = False


@dataclass(frozen=True, slots=True)
class Admission:
    """The verdict on one request.

    Attributes:
        status: None to run the handler, else the status to answer with at once.
        body: the JSON body of that answer.
        headers: response headers (rate-limit headers; ``Retry-After`` on a 429).
        drop: run the handler, then drop the connection instead of answering.
    """

    status: int | None
    body: dict[str, object] | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop: bool = False


@dataclass(slots=True)
class _Window:
    count: int = 0
    reset_at: float = 0.0
    reset_epoch: float = 0.0
    blocked_until: float = 0.0


_Bucket = tuple[RouteLimit, _Window]


class RestLimits:
    """Route and global limits, 429 bookkeeping, and the fault queue of one emulator."""

    def __init__(self, wall_clock: Callable[[], float] = time.time) -> None:
        self._wall = wall_clock
        self._routes: dict[str, RouteLimit] = {}
        self._windows: dict[tuple[str, str], _Window] = {}
        self._global: RouteLimit | None = None
        self._global_window = _Window()
        """Only its ``blocked_until`` is used: set by injected global 429s."""
        self._global_times: deque[float] = deque()
        self._faults: list[RestFault] = []
        self.rate_limited = 0
        """429 answers sent (limits exceeded and injected)."""

    # -- configuration ------------------------------------------------------------

    def set_route_limit(self, route: str, limit: int, per: float, bucket: str | None) -> None:
        self._routes[route] = RouteLimit(limit, per, bucket or _hash(route))

    def set_global_limit(self, limit: int | None, per: float) -> None:
        self._global = None if limit is None else RouteLimit(limit, per, "global")
        self._global_times.clear()

    def inject(self, fault: RestFault) -> None:
        if fault.count < 1:
            raise ValueError(f"count must be at least 1, got {fault.count}")
        if (fault.status is None) == (not fault.drop):
            raise ValueError("a fault needs either a status or drop=True")
        if fault.retry_after < 0:
            raise ValueError(f"retry_after must be >= 0, got {fault.retry_after}")
        self._faults.append(fault)

    # -- per request --------------------------------------------------------------

    def admit(self, route: str, major: str, now: float) -> Admission:
        """Count a request to ``route`` (a route key) with major parameter ``major``."""
        limit = self._routes.get(route) or self._routes.setdefault(route, _default(route))
        window = self._window(limit, major, now)
        fault = self._take_fault(route)
        if fault is not None and fault.status == 429:
            return self._injected_429(fault, limit, window, now)
        if fault is not None and not fault.drop:
            status = fault.status or 500
            return Admission(status, {"message": f"{status}: Emulated fault", "code": 0})
        refused = self._refuse(limit, window, now)
        if refused is not None:
            return refused
        window.count += 1
        if self._global is not None:
            self._global_times.append(now)
        return Admission(None, headers=_bucket_headers(limit, window, now), drop=fault is not None)

    def _window(self, limit: RouteLimit, major: str, now: float) -> _Window:
        key = (limit.bucket, major)
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) > 10_000:
                self._windows = {k: w for k, w in self._windows.items() if w.reset_at > now}
            window = self._windows[key] = _Window()
        self._roll(window, limit.per, now)
        return window

    def _roll(self, window: _Window, per: float, now: float) -> None:
        """Open a new window if the last one is over."""
        if now >= window.reset_at:
            window.count = 0
            window.reset_at = now + per
            window.reset_epoch = round(self._wall() + per, 3)

    def _refuse(self, limit: RouteLimit, window: _Window, now: float) -> Admission | None:
        """A 429 if the global limit or the bucket is exhausted (or blocked)."""
        blocked_until = self._global_window.blocked_until
        if blocked_until > now:
            return self._too_many(blocked_until - now, "global", None, now)
        if self._global is not None:
            wait = self._global_wait(self._global, now)
            if wait > 0:
                return self._too_many(wait, "global", None, now)
        if window.blocked_until > now:
            return self._too_many(window.blocked_until - now, "user", (limit, window), now)
        if window.count >= limit.limit:
            return self._too_many(window.reset_at - now, "user", (limit, window), now)
        return None

    def _global_wait(self, limit: RouteLimit, now: float) -> float:
        """Seconds until the sliding window has room (0.0 if it has now)."""
        times = self._global_times
        while times and times[0] <= now - limit.per:
            times.popleft()
        return times[0] + limit.per - now if len(times) >= limit.limit else 0.0

    def _injected_429(
        self, fault: RestFault, limit: RouteLimit, window: _Window, now: float
    ) -> Admission:
        blocked = now + fault.retry_after
        if fault.is_global:
            self._global_window.blocked_until = max(self._global_window.blocked_until, blocked)
            return self._too_many(fault.retry_after, fault.scope or "global", None, now)
        window.blocked_until = max(window.blocked_until, blocked)
        return self._too_many(fault.retry_after, fault.scope or "user", (limit, window), now)

    def _too_many(
        self,
        retry_after: float,
        scope: Scope,
        bucket: tuple[RouteLimit, _Window] | None,
        now: float,
    ) -> Admission:
        """A 429; ``bucket`` None means the global limit."""
        self.rate_limited += 1
        retry_after = _ceil_ms(retry_after)
        is_global = bucket is None
        headers = [("retry-after", str(math.ceil(retry_after))), ("x-ratelimit-scope", scope)]
        if bucket is None:
            headers.append(("x-ratelimit-global", "true"))
        else:
            headers += _bucket_headers(*bucket, now)
        body: dict[str, object] = {
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": is_global,
        }
        return Admission(429, body, headers)

    def _take_fault(self, route: str) -> RestFault | None:
        for index, fault in enumerate(self._faults):
            if fault.route is None or fault.route == route:
                fault.count -= 1
                if fault.count == 0:
                    del self._faults[index]
                return fault
        return None


def _default(route: str) -> RouteLimit:
    return RouteLimit(*DEFAULT_ROUTE_LIMIT, _hash(route))


def _hash(route: str) -> str:
    """An opaque bucket id, stable per route, like Discord's."""
    return hashlib.blake2s(route.encode(), digest_size=8).hexdigest()


def _ceil_ms(seconds: float) -> float:
    """Round up to the millisecond: a client waiting this long is never early."""
    return max(math.ceil(seconds * 1000.0 - 1e-6) / 1000.0, 0.0)


def _bucket_headers(limit: RouteLimit, window: _Window, now: float) -> list[tuple[str, str]]:
    reset_after = max(_ceil_ms(window.reset_at - now), _ceil_ms(window.blocked_until - now))
    remaining = 0 if window.blocked_until > now else max(limit.limit - window.count, 0)
    return [
        ("x-ratelimit-limit", str(limit.limit)),
        ("x-ratelimit-remaining", str(remaining)),
        ("x-ratelimit-reset", f"{window.reset_epoch:.3f}"),
        ("x-ratelimit-reset-after", f"{reset_after:.3f}"),
        ("x-ratelimit-bucket", limit.bucket),
    ]
