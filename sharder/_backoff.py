"""Capped exponential backoff with full jitter for reconnects."""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """Delays ``base * factor**n`` (capped, jittered), reset by a stable connection.

    A reconnect that follows a connection which lived longer than ``stable_after``
    seconds goes at once: one failure after hours of uptime is not a storm. Only
    repeated quick failures back off, which is what keeps a broken network from
    turning into a tight reconnect loop.
    """

    __slots__ = ("_attempt", "_rng", "base", "cap", "factor", "stable_after")

    def __init__(
        self,
        base: float = 1.0,
        cap: float = 60.0,
        factor: float = 2.0,
        stable_after: float = 30.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.base = base
        self.cap = cap
        self.factor = factor
        self.stable_after = stable_after
        self._rng = rng
        self._attempt = 0

    def next_delay(self, uptime: float | None) -> float:
        """Delay before the next attempt, given how long the last connection lived.

        ``uptime`` is None when the last attempt never connected.
        """
        if uptime is not None and uptime >= self.stable_after:
            self._attempt = 0
        attempt = self._attempt
        self._attempt += 1
        if attempt == 0:
            return 0.0
        ceiling = min(self.cap, self.base * self.factor ** (attempt - 1))
        return ceiling * (0.5 + 0.5 * self._rng())

    def reset(self) -> None:
        self._attempt = 0
