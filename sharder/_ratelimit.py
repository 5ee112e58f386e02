"""Sliding-window limiter for gateway commands (pure: every call takes ``now``).

Discord closes a connection with 4008 after 120 commands in 60 s, heartbeats
included. Priority commands (heartbeat, identify, resume) may use the whole
window; everything else leaves ``reserved`` slots free for them, so that a
chatty plugin can never starve the heartbeat.
"""

from __future__ import annotations

from collections import deque

__all__ = ["SlidingWindowLimiter"]


class SlidingWindowLimiter:
    """At most ``limit`` sends in any ``window`` seconds, ``reserved`` kept for priority."""

    __slots__ = ("_sent", "limit", "reserved", "window")

    def __init__(self, limit: int, window: float, reserved: int = 0) -> None:
        self.limit = limit
        self.window = window
        self.reserved = reserved
        self._sent: deque[float] = deque()

    def delay(self, now: float, *, priority: bool = False) -> float:
        """Seconds to wait before a send is allowed (0.0: send now)."""
        sent = self._sent
        horizon = now - self.window
        while sent and sent[0] <= horizon:
            sent.popleft()
        allowed = self.limit if priority else max(self.limit - self.reserved, 0)
        if len(sent) < allowed:
            return 0.0
        if allowed == 0:
            return self.window
        return sent[len(sent) - allowed] + self.window - now

    def record(self, now: float) -> None:
        """Count one send made at ``now``."""
        self._sent.append(now)

    def reset(self) -> None:
        """Forget every send: the server counts per connection."""
        self._sent.clear()
