"""One sleeping task for the timers of many shards: wake-ups that fall close together coalesce.

Idle shards cost what their wake-ups cost: on a small VM an event loop pays
about 0.3 ms of CPU to come out of its sleep, before any Python runs. A
thousand shards heartbeating every 41.25 s make 24 heartbeats a second; woken
one by one, that is 24 wake-ups a second for the timers alone.

Every timer here is a window, ``[earliest, latest]``: the protocol says how
early a deadline may be acted on (a heartbeat may go a little early, never
late). The service sleeps until the smallest ``latest`` of all waiting timers
and then fires every timer whose ``earliest`` has passed, so one wake-up serves
every shard whose window it falls in; that greedy choice needs the fewest
wake-ups. Timers fired together stay together (each shard's next heartbeat is
one interval after this one), so after an interval a thousand jittered shards
beat in clusters at least a slack apart instead of one at a time.

A waiting shard is woken with an ``anyio.Event``, within the service's own
wake-up; the service itself sleeps with a plain ``anyio.sleep`` (no deadline
on a cancel scope, whose expiry is an exception on asyncio) and is only
cancelled out of it when a timer needs an earlier wake-up than the one planned,
which happens when connections open, not while they idle.
"""

from __future__ import annotations

import heapq
import itertools
import math

import anyio
import anyio.abc
import anyio.lowlevel

__all__ = ["Timer", "TimerService"]

_Entry = tuple[float, int, "Timer"]


class Timer:
    """One task's timer: ``wait`` until a window opens; ``move`` the window while waiting."""

    __slots__ = ("_event", "_key", "_service", "earliest", "latest")

    def __init__(self, service: TimerService) -> None:
        self._service = service
        self._event: anyio.Event | None = None
        self._key = -1
        """The service's key of this timer's current heap entries; -1 when not waiting."""
        self.earliest = math.inf
        self.latest = math.inf

    @property
    def waiting(self) -> bool:
        return self._key >= 0

    async def wait(self, earliest: float, latest: float) -> None:
        """Return once the clock is past ``earliest``, at the latest shortly after ``latest``.

        ``math.inf`` for both waits until :meth:`move` gives a window.
        """
        if self._key >= 0:
            raise RuntimeError("this timer is already waiting")
        if earliest <= anyio.current_time():
            await anyio.lowlevel.checkpoint()
            return
        event = self._event = anyio.Event()
        self._service._add(self, earliest, latest)
        try:
            await event.wait()
        finally:
            self._event = None
            if self._key >= 0:  # cancelled, not fired
                self._service._discard(self)

    def move(self, earliest: float, latest: float) -> None:
        """Change the window of a waiting timer (nothing if not waiting or unchanged)."""
        if self._key < 0 or (earliest == self.earliest and latest == self.latest):
            return
        if earliest <= anyio.current_time():
            self._service._discard(self)
            self._fire()
            return
        self._service._add(self, earliest, latest)

    def _fire(self) -> None:
        self._key = -1
        if self._event is not None:
            self._event.set()


class TimerService:
    """Fires many :class:`Timer` windows from one task (``run``, until cancelled)."""

    def __init__(self) -> None:
        self._by_earliest: list[_Entry] = []
        self._by_latest: list[_Entry] = []
        self._keys = itertools.count()
        self._waiting = 0
        self._scope: anyio.CancelScope | None = None
        self._run_scope: anyio.CancelScope | None = None
        self._planned = math.inf
        """When the service's current sleep ends (-inf once it has been cut short)."""
        self.running = False
        self.wakeups = 0
        """Sleeps that ran to their end, each firing the timers due then (not those cut
        short by a timer that needed an earlier wake-up): for tests and benchmarks."""

    def timer(self) -> Timer:
        return Timer(self)

    @property
    def waiting(self) -> int:
        """Timers waiting for their window."""
        return self._waiting

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Fire timers as their windows open; runs until :meth:`stop` or cancelled."""
        if self.running:
            raise RuntimeError("this timer service is already running")
        self.running = True
        try:
            with anyio.CancelScope() as self._run_scope:
                task_status.started()
                await self._loop()
        finally:
            self.running = False
            self._run_scope = None
            self._scope = None
            self._planned = math.inf

    def stop(self) -> None:
        """End :meth:`run` (timers still waiting then wait until it runs again)."""
        if self._run_scope is not None:
            self._run_scope.cancel()

    async def _loop(self) -> None:
        while True:
            now = anyio.current_time()
            self._fire_due(now)
            planned = self._next_latest()
            with anyio.CancelScope() as scope:
                self._scope = scope
                self._planned = planned
                if planned == math.inf:
                    await anyio.sleep_forever()
                else:
                    await anyio.sleep(planned - now)
            self._scope = None
            if not scope.cancel_called:
                self.wakeups += 1

    # ------------------------------------------------------------------ internals

    def _add(self, timer: Timer, earliest: float, latest: float) -> None:
        if timer._key < 0:
            self._waiting += 1
        key = timer._key = next(self._keys)
        timer.earliest = earliest
        timer.latest = latest
        latest = max(latest, earliest)
        heapq.heappush(self._by_earliest, (earliest, key, timer))
        heapq.heappush(self._by_latest, (latest, key, timer))
        if latest < self._planned and self._scope is not None:
            self._planned = -math.inf  # cut the sleep short once, however many timers come
            self._scope.cancel()
        if len(self._by_latest) > 4 * self._waiting + 64:
            self._compact()

    def _discard(self, timer: Timer) -> None:
        """Forget a timer (its heap entries go stale and are dropped lazily)."""
        if timer._key >= 0:
            timer._key = -1
            self._waiting -= 1

    def _fire_due(self, now: float) -> None:
        heap = self._by_earliest
        while heap and heap[0][0] <= now:
            _, key, timer = heapq.heappop(heap)
            if timer._key == key:
                self._waiting -= 1
                timer._fire()

    def _next_latest(self) -> float:
        heap = self._by_latest
        while heap and heap[0][2]._key != heap[0][1]:
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf

    def _compact(self) -> None:
        self._by_earliest = [e for e in self._by_earliest if e[2]._key == e[1]]
        self._by_latest = [e for e in self._by_latest if e[2]._key == e[1]]
        heapq.heapify(self._by_earliest)
        heapq.heapify(self._by_latest)
