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

A shard calls ``identified(shard_id)`` once its IDENTIFY has left: the local
controller starts the bucket's next ``timeout`` from then, not from its grant,
so that a loop busy between the two can never bring a bucket's identifies
closer together than ``timeout`` on the server.

:class:`ConnectGate` orders the connections: a shard about to identify opens
its websocket only when it is among the next few in the identify schedule
(shard id order is slot order: ids ``0..C-1`` are the first wave of
``C = max_concurrency`` buckets, ``C..2C-1`` the second, ...), so that a
thousand shards do not open a thousand sockets before the first IDENTIFY.
"""

from __future__ import annotations

import heapq
import inspect
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import anyio

from ._constants import DEFAULT_IDENTIFY_TIMEOUT

__all__ = [
    "ConnectGate",
    "HookIdentifyQueue",
    "IdentifyHook",
    "IdentifyQueue",
    "LocalIdentifyQueue",
]

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

    def identified(self, shard_id: int) -> None:
        """``shard_id``'s IDENTIFY, granted by ``acquire``, has been written."""


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

    def _bucket(self, shard_id: int) -> _Bucket:
        bucket = self._buckets.get(shard_id % self.concurrency)
        if bucket is None:
            bucket = self._buckets[shard_id % self.concurrency] = _Bucket()
        return bucket

    async def acquire(self, shard_id: int) -> None:
        bucket = self._bucket(shard_id)
        async with bucket.lock:
            # ``identified`` may push ``next_at`` on while this waits: look again.
            while (wait := bucket.next_at - anyio.current_time()) > 0:  # noqa: ASYNC110
                await anyio.sleep(wait)
            await self._take_daily_slot()
            bucket.next_at = anyio.current_time() + self.timeout

    def identified(self, shard_id: int) -> None:
        """``shard_id``'s IDENTIFY has left: its bucket's next one waits ``timeout`` from now."""
        bucket = self._bucket(shard_id)
        bucket.next_at = max(bucket.next_at, anyio.current_time() + self.timeout)

    async def _take_daily_slot(self) -> None:
        if self.remaining is None:
            return
        if self.remaining > 0 and not self._daily_lock.locked():
            # The common case takes no lock: nothing to wait for, no trip through the loop
            # between the slot and the IDENTIFY.
            self.remaining -= 1
            return
        async with self._daily_lock:
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

    def identified(self, shard_id: int) -> None:
        """Nothing to do: the hook's owner keeps the schedule."""


class ConnectGate:
    """Admits shards that are about to identify, in shard id order, ``limit`` at a time.

    A shard ``enter``s before it opens a websocket to identify on, and
    ``leave``s once its identify slot is granted (or the connection is gone):
    so at most ``limit`` shards are connecting or waiting for a slot, and they
    are the ones whose slots come next. ``expect`` queues shards before their
    tasks run, so that the order does not depend on which task the event loop
    runs first (trio shuffles them on purpose).
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.limit = limit
        self._queued: list[int] = []
        self._state: dict[int, bool] = {}
        """Queued (False) or admitted (True) shard ids."""
        self._events: dict[int, anyio.Event] = {}
        self._admitted = 0

    @property
    def admitted(self) -> int:
        """Shards admitted and not yet gone."""
        return self._admitted

    def expect(self, shard_id: int) -> None:
        """Queue ``shard_id`` now; its ``enter`` will wait for its turn (or find it come)."""
        if shard_id not in self._state:
            self._state[shard_id] = False
            heapq.heappush(self._queued, shard_id)
            self._admit()

    def is_admitted(self, shard_id: int) -> bool:
        """Whether ``shard_id`` holds a place now."""
        return self._state.get(shard_id) is True

    def admits(self, shard_id: int) -> bool:
        """Whether ``enter(shard_id)`` would return at once."""
        return self._state.get(shard_id) is True or (
            shard_id not in self._state
            and self._admitted < self.limit
            and (not self._queued or shard_id < self._queued[0])
        )

    async def enter(self, shard_id: int) -> None:
        """Return once ``shard_id`` may connect; cancelling withdraws it."""
        self.expect(shard_id)
        if self._state.get(shard_id):
            return
        event = self._events[shard_id] = anyio.Event()
        try:
            await event.wait()
        except BaseException:
            self.leave(shard_id)
            raise
        finally:
            self._events.pop(shard_id, None)

    def leave(self, shard_id: int) -> None:
        """``shard_id`` no longer needs its place (admitted or still queued); idempotent."""
        admitted = self._state.pop(shard_id, None)
        if admitted is None:
            return
        if admitted:
            self._admitted -= 1
            self._admit()
        # A queued id stays in the heap, stale, until it reaches the top.

    def _admit(self) -> None:
        queued = self._queued
        while queued and self._admitted < self.limit:
            shard_id = heapq.heappop(queued)
            if self._state.get(shard_id) is not False:
                continue  # left while queued
            self._state[shard_id] = True
            self._admitted += 1
            event = self._events.get(shard_id)
            if event is not None:
                event.set()
