"""Identify queues: who may send IDENTIFY, and when.

Discord allows one IDENTIFY per bucket (``shard_id % max_concurrency``) per
5 seconds, and ``session_start_limit.remaining`` per day; breaking the first
gets op 9, breaking the second resets the bot token. Every identify a shard
makes (at start-up and after any lost session) goes through one queue shared
by all shards of the bot, so that startup and reconnects can never race each
other (Discord.Net #1442, serenity #2650).

Two implementations of one interface:

* :class:`LocalIdentifyQueue`: the in-process controller, for one process that
  owns every shard of the bot;
* :class:`HookIdentifyQueue`: asks an ``identify_hook`` before every identify,
  so that another process (a cluster manager) can own the queue.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import anyio

from ._constants import DEFAULT_IDENTIFY_TIMEOUT

__all__ = ["HookIdentifyQueue", "IdentifyHook", "IdentifyQueue", "LocalIdentifyQueue"]

IdentifyHook = Callable[[int], Awaitable[Any] | Any]
"""``hook(shard_id)``: returns (or awaits) when the shard may identify.

The answer may also be tiny-discord's ``{"time": seconds, "ask": bool}``: wait
``time`` seconds, then identify, or ask again if ``ask`` is true.
"""


@runtime_checkable
class IdentifyQueue(Protocol):
    """Grants identify slots. Cancelling ``acquire`` withdraws the request."""

    async def acquire(self, shard_id: int) -> None:
        """Return when ``shard_id`` may send IDENTIFY now."""


class _Bucket:
    __slots__ = ("lock", "next_at")

    def __init__(self) -> None:
        self.lock = anyio.Lock()
        self.next_at = -math.inf


class LocalIdentifyQueue:
    """The in-process identify controller (the seed's ``controller`` object).

    Buckets run in parallel; within one bucket shards go in arrival order, one
    per ``timeout`` seconds. ``remaining`` counts down locally; at zero the
    queue waits until ``reset_timestamp`` and starts again from ``total``.
    ``total``/``remaining`` of None mean the daily count is not tracked.
    """

    def __init__(
        self,
        *,
        concurrency: int = 1,
        timeout: float = DEFAULT_IDENTIFY_TIMEOUT,
        total: int | None = None,
        remaining: int | None = None,
        reset_after: float | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {concurrency}")
        if timeout < 0:
            raise ValueError(f"timeout must not be negative, got {timeout}")
        self.concurrency = concurrency
        self.timeout = timeout
        self.total = total
        self.remaining = remaining if remaining is not None else total
        self.reset_timestamp: float | None = (
            time.time() + reset_after if reset_after is not None else None
        )
        self._buckets: dict[int, _Bucket] = {}
        self._daily_lock = anyio.Lock()

    @classmethod
    def from_session_start_limit(
        cls, limit: Mapping[str, Any], *, timeout: float = DEFAULT_IDENTIFY_TIMEOUT
    ) -> LocalIdentifyQueue:
        """Build from ``/gateway/bot``'s ``session_start_limit`` (``reset_after`` in ms)."""
        queue = cls(concurrency=int(limit.get("max_concurrency", 1)), timeout=timeout)
        queue.update(limit)
        return queue

    def update(self, limit: Mapping[str, Any]) -> None:
        """Refresh the daily counts from a newer ``session_start_limit``."""
        self.total = int(limit["total"])
        self.remaining = int(limit["remaining"])
        self.reset_timestamp = time.time() + float(limit["reset_after"]) / 1000
        concurrency = int(limit.get("max_concurrency", self.concurrency))
        if concurrency != self.concurrency and concurrency >= 1:
            self.concurrency = concurrency
            self._buckets.clear()

    def as_dict(self) -> dict[str, Any]:
        """The seed's ControllerObject: total, remaining, reset_timestamp, concurrency, timeout."""
        return {
            "total": self.total,
            "remaining": self.remaining,
            "reset_timestamp": self.reset_timestamp,
            "concurrency": self.concurrency,
            "timeout": self.timeout,
        }

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"LocalIdentifyQueue({fields})"

    async def acquire(self, shard_id: int) -> None:
        bucket = self._buckets.get(shard_id % self.concurrency)
        if bucket is None:
            bucket = self._buckets[shard_id % self.concurrency] = _Bucket()
        async with bucket.lock:
            wait = bucket.next_at - anyio.current_time()
            if wait > 0:
                await anyio.sleep(wait)
            await self._take_daily_slot()
            bucket.next_at = anyio.current_time() + self.timeout

    async def _take_daily_slot(self) -> None:
        async with self._daily_lock:
            if self.remaining is None:
                return
            if self.remaining <= 0:
                reset_in = (self.reset_timestamp or time.time()) - time.time()
                if reset_in > 0:
                    await anyio.sleep(reset_in)
                self.remaining = self.total or 1
                self.reset_timestamp = time.time() + 86_400
            self.remaining -= 1


class HookIdentifyQueue:
    """Delegates every identify to ``identify_hook(shard_id)``."""

    def __init__(self, hook: IdentifyHook) -> None:
        if not callable(hook):
            raise TypeError("identify_hook must be callable")
        self.hook = hook

    async def acquire(self, shard_id: int) -> None:
        while True:
            answer = self.hook(shard_id)
            if inspect.isawaitable(answer):
                answer = await answer
            if not isinstance(answer, Mapping):
                return
            delay = answer.get("time", 0)
            if isinstance(delay, int | float) and not isinstance(delay, bool) and delay > 0:
                await anyio.sleep(delay)
            if not answer.get("ask"):
                return
