"""Routing sharder events to plugin hooks.

Every plugin gets one bounded queue and one worker task. The sharder calls the
router synchronously from its reader (no task, no await per event); the router
appends the event to the queue of each plugin that implements a matching hook.
So a slow plugin delays only itself, each plugin sees the events of a shard in
sequence order, and heartbeats never wait for plugin code.

When a queue is full, ``overflow`` decides: ``"wait"`` keeps every event, the
excess on disk (``runtime.spill``) so that the plugin's memory stays bounded and
no other plugin waits; only if the plugin's spill reaches its limit is reading
paused on the shard that produced the event until the plugin catches up
(Discord keeps the events; heartbeats go on). ``"drop_oldest"`` drops the
oldest queued event with a counted warning.

The router also tracks, per shard, the sequence of the last event that every
plugin has finished with: the sequence worth saving for a resume after a crash.
"""

from __future__ import annotations

import functools
import logging
import operator
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread
import pluggy

from runtime.spill import Spill
from sharder import DISPATCH_EVENTS, InternalSharder, WebsocketShard
from sharder._listeners import is_async_callable

__all__ = ["LIFECYCLE_EVENTS", "EventRouter", "PluginWorker", "in_thread"]

logger = logging.getLogger("botrun.dispatch")

LIFECYCLE_EVENTS = ("connect", "close", "debug", "error")
"""Sharder events routed to ``on_<name>`` (ready and resumed come with their dispatch)."""

_ARGUMENT_INDEX = {"bot": 0, "data": 1, "shard_id": 2}
_THREAD_MARK = "__botrun_in_thread__"


def in_thread(function: Callable[..., Any]) -> Callable[..., Any]:
    """Run this plain-function hook in a worker thread instead of the event loop.

    For handlers that block (file or database I/O, CPU work): the loop, and so
    every heartbeat and every other plugin, keeps running meanwhile. Put it
    under ``@hookimpl``.
    """
    setattr(function, _THREAD_MARK, True)
    return function


class _Progress:
    """Dispatches of one shard's session not yet finished by every plugin."""

    __slots__ = ("pending", "safe")

    def __init__(self) -> None:
        self.pending: deque[list[int]] = deque()
        self.safe: int | None = None

    def add(self, seq: int, handlers: int) -> list[int] | None:
        if handlers == 0 and not self.pending:
            self.safe = seq
            return None
        if self.safe is None:
            # Nothing finished yet since this session (re)started: everything before
            # this event is done, and Discord numbers a session's dispatches 1, 2, 3...
            self.safe = max(seq - 1, 0)
        entry = [seq, handlers]
        self.pending.append(entry)
        if handlers == 0:
            self._advance()
        return entry

    def finish(self, entry: list[int]) -> None:
        entry[1] -= 1
        pending = self.pending
        if entry[1] <= 0 and pending and pending[0] is entry:
            while pending and pending[0][1] <= 0:  # _advance, inlined: once per event
                self.safe = pending.popleft()[0]

    def _advance(self) -> None:
        pending = self.pending
        while pending and pending[0][1] <= 0:
            self.safe = pending.popleft()[0]


@dataclass(frozen=True, slots=True)
class _Target:
    """One hook implementation of one plugin, ready to call."""

    worker: PluginWorker
    hook: str
    function: Callable[..., Any]
    arguments: tuple[int, ...]
    kind: Literal["async", "sync", "thread"]
    raw: bool
    """Whether it takes the raw {op, t, s, d} payload (on_event) rather than ``d``."""
    select: Callable[[tuple[Any, Any, int | None]], tuple[Any, ...]]
    """Picks the implementation's arguments, in its order, out of ``(bot, data, shard_id)``."""


def _selector(arguments: tuple[int, ...]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """A C-level ``values -> tuple(values[i] for i in arguments)``: no Python call per event."""
    if len(arguments) >= 2:
        return operator.itemgetter(*arguments)
    # itemgetter of one index returns the item itself; a slice keeps it a tuple.
    start = arguments[0] if arguments else 0
    return operator.itemgetter(slice(start, start + len(arguments)))


# An item in a plugin's queue: what to call, with what, and what to tick off after
# (the shard's progress and the event's entry in it). One flat tuple: each object
# queued per event is one more for the garbage collector to look at.
_Item = tuple[_Target, Any, "int | None", "_Progress | None", "list[int] | None"]

_SPILL_WARNING_INTERVAL = 60.0

_ON_DISK: Any = object()
"""An item's data while it waits in the plugin's spill file."""


class PluginWorker:
    """Runs one plugin's hook calls, one at a time, in arrival order."""

    def __init__(
        self,
        name: str,
        context: Any,
        *,
        capacity: int,
        overflow: Literal["wait", "drop_oldest"],
        slow_threshold: float,
        spill: Spill | None = None,
    ) -> None:
        self.name = name
        self.context = context
        self.capacity = capacity
        self.overflow = overflow
        self.slow_threshold = slow_threshold
        self.queue: deque[_Item] = deque()
        self.spill = spill
        self.spilled: deque[_Item] = deque()
        """Items behind the queue, in order; their data is on disk unless unpicklable."""
        self.errors = 0
        self.dropped = 0
        self.spills = 0
        """Times the backlog filled up and events started to wait on disk."""
        self.calls = 0
        self.current: tuple[str, float] | None = None
        self.blocking: tuple[str, float] | None = None
        """Set while a sync handler runs on the loop: what the watchdog names."""
        self._paused: set[WebsocketShard] = set()
        self._spill_full_warned = False
        self._spill_failed = False
        self._spill_warned_at = 0.0
        self._wake: anyio.Event | None = None
        self._stopping = False
        self.scope: anyio.CancelScope | None = None

    @property
    def backlog(self) -> int:
        """Events waiting for this plugin, in memory and on disk."""
        return len(self.queue) + len(self.spilled)

    def put(self, item: _Item, shard: WebsocketShard | None) -> None:
        queue = self.queue
        if len(queue) < self.capacity and not self.spilled:
            queue.append(item)
        else:
            self._overflow(item, shard)
        wake = self._wake
        if wake is not None:
            self._wake = None  # one wake-up per batch: the other puts find it gone
            wake.set()

    def _overflow(self, item: _Item, shard: WebsocketShard | None) -> None:
        """No room in memory: drop the oldest, spill to disk, or pause the shard."""
        if self.overflow == "drop_oldest":
            _finish(self.queue.popleft())
            self.queue.append(item)
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning(
                    "plugin %r is falling behind: %d events dropped so far (backlog %d)",
                    self.name,
                    self.dropped,
                    self.capacity,
                )
            return
        if not self._paused and self._to_disk(item):
            return
        # Kept in memory, behind what is on disk: nothing already read is lost.
        (self.spilled if self.spilled else self.queue).append(item)
        if shard is not None and shard not in self._paused:
            self._paused.add(shard)
            shard.pause_reading()

    def _to_disk(self, item: _Item) -> bool:
        spill = self.spill
        if spill is None or self._spill_failed:
            return False
        try:
            written = spill.push(item[1])
        except OSError as exc:  # the disk is full, say: from now on, pause as without a spill
            self._spill_failed = True
            logger.error(
                "plugin %r: cannot write its spill (%s); from now on reading pauses on the "
                "shards it lags on instead",
                self.name,
                exc,
            )
            return False
        except Exception:  # unpicklable (a lifecycle event's object): keep it in memory
            self.spilled.append(item)
            return True
        if written:
            if not self.spilled:
                self._started_spilling()
            self.spilled.append((item[0], _ON_DISK, item[2], item[3], item[4]))
        elif not self._spill_full_warned:
            self._spill_full_warned = True
            logger.warning(
                "plugin %r is falling behind: its spill holds %d events (%d MiB, the "
                "limit); reading pauses on the shards it lags on until it catches up",
                self.name,
                len(spill),
                spill.size >> 20,
            )
        return written

    def _started_spilling(self) -> None:
        """Count an overflow to disk; say so the first time, then at most once a minute."""
        self.spills += 1
        now = time.monotonic()
        if self.spills > 1 and now - self._spill_warned_at < _SPILL_WARNING_INTERVAL:
            return
        self._spill_warned_at = now
        logger.warning(
            "plugin %r is falling behind: its backlog of %d is full, further events "
            "wait on disk (%d times so far)",
            self.name,
            self.capacity,
            self.spills,
        )

    def _refill(self) -> None:
        """Move the oldest spilled items into the empty queue, data read back from disk."""
        spilled, queue = self.spilled, self.queue
        batch = [spilled.popleft() for _ in range(min(len(spilled), self.capacity))]
        on_disk = iter(self.spill.pop(sum(i[1] is _ON_DISK for i in batch)) if self.spill else ())
        for target, data, shard_id, progress, entry in batch:
            if data is _ON_DISK:
                data = next(on_disk)
            queue.append((target, data, shard_id, progress, entry))

    def _has_room(self) -> bool:
        """Whether the shards paused for this plugin may read again."""
        spill = self.spill
        if spill is not None and not self._spill_failed:
            return spill.size <= spill.limit // 2
        return not self.spilled and len(self.queue) <= self.capacity // 2

    async def run(self) -> None:
        queue = self.queue
        perf_counter = time.perf_counter
        try:
            with anyio.CancelScope() as self.scope:
                while True:
                    while queue:
                        target, data, shard_id, progress, entry = queue.popleft()
                        # Inlined rather than a coroutine per event: this is the hot path.
                        args = target.select((self.context, data, shard_id))
                        self.calls += 1
                        started = perf_counter()
                        self.current = (target.hook, started)
                        try:
                            kind = target.kind
                            if kind == "async":
                                await target.function(*args)
                            elif kind == "sync":
                                self.blocking = self.current
                                target.function(*args)
                                if perf_counter() - started > self.slow_threshold:
                                    self._warn_blocked(target, started)
                            else:
                                await self._call_in_thread(target, args)
                        except Exception:
                            self._failed(target, shard_id)
                        finally:
                            self.current = self.blocking = None
                        # Only a cancellation (stop's grace ran out) skips this: an event
                        # cut short is not finished.
                        if entry is not None:
                            progress.finish(entry)  # type: ignore[union-attr]  # set with entry
                        if self._paused and self._has_room():
                            self._resume_shards()
                    if self.spilled:
                        self._refill()
                        continue
                    if self._stopping:
                        return
                    self._wake = wake = anyio.Event()
                    await wake.wait()
                    self._wake = None
        finally:
            self._resume_shards()
            if self.spill is not None:
                self.spill.close()

    def stop(self) -> None:
        """Finish what is queued, then return from ``run``."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    def _resume_shards(self) -> None:
        for shard in self._paused:
            shard.resume_reading()
        self._paused.clear()
        self._spill_full_warned = False

    async def _call_in_thread(self, target: _Target, args: tuple[Any, ...]) -> None:
        # abandon_on_cancel: a hung thread must not hold up stop() past its grace.
        await anyio.to_thread.run_sync(
            functools.partial(target.function, *args), abandon_on_cancel=True
        )

    def _warn_blocked(self, target: _Target, started: float) -> None:
        logger.warning(
            "plugin %r blocked the event loop for %.2f s in %s; make it async "
            "or mark it @in_thread",
            self.name,
            time.perf_counter() - started,
            target.hook,
        )

    def _failed(self, target: _Target, shard_id: int | None) -> None:
        """Count and log the exception being handled; the bot keeps running."""
        self.errors += 1
        logger.exception(
            "plugin %r failed in %s (shard %s); the bot keeps running",
            self.name,
            target.hook,
            shard_id,
        )


def _finish(item: _Item) -> None:
    progress, entry = item[3], item[4]
    if progress is not None and entry is not None:
        progress.finish(entry)


class EventRouter:
    """Turns sharder events into hook calls on the plugins' workers."""

    def __init__(
        self,
        manager: pluggy.PluginManager,
        contexts: dict[str, Any],
        *,
        capacity: int = 1000,
        overflow: Literal["wait", "drop_oldest"] = "wait",
        slow_threshold: float = 0.5,
        spill_limit: int = 0,
        spill_dir: Path | None = None,
    ) -> None:
        """``spill_limit``: bytes of events per plugin kept on disk under ``"wait"``
        once its queue of ``capacity`` is full (0: pause the shard right away)."""
        self.manager = manager
        self.workers = {
            name: PluginWorker(
                name,
                context,
                capacity=capacity,
                overflow=overflow,
                slow_threshold=slow_threshold,
                spill=Spill(spill_limit, spill_dir)
                if overflow == "wait" and spill_limit > 0
                else None,
            )
            for name, context in contexts.items()
        }
        self._routes: dict[str, tuple[_Target, ...]] = {}
        self._catch_all = self._targets("on_event", raw=True)
        self._progress: dict[int, _Progress] = {}
        self._shards: Mapping[int, WebsocketShard] = {}
        self.accepting = True

    # ------------------------------------------------------------------ routing table

    def _targets(self, hook: str, *, raw: bool = False) -> tuple[_Target, ...]:
        caller = getattr(self.manager.hook, hook, None)
        if caller is None:
            return ()
        targets = []
        # pluggy calls the last registered implementation first (tryfirst/trylast aside).
        for impl in reversed(caller.get_hookimpls()):
            worker = self.workers.get(impl.plugin_name)
            if worker is None:
                continue
            function = impl.function
            kind: Literal["async", "sync", "thread"] = (
                "async"
                if is_async_callable(function)
                else "thread"
                if getattr(function, _THREAD_MARK, False)
                else "sync"
            )
            arguments = tuple(_ARGUMENT_INDEX[a] for a in impl.argnames)
            select = _selector(arguments)
            targets.append(_Target(worker, hook, function, arguments, kind, raw, select))
        return tuple(targets)

    def _route(self, name: str) -> tuple[_Target, ...]:
        route = self._routes.get(name)
        if route is None:
            route = self._routes[name] = self._catch_all + self._targets(f"on_{name.lower()}")
        return route

    def implemented(self, hook: str) -> bool:
        return bool(self._targets(hook))

    def unrouted_events(self) -> list[str]:
        """Documented dispatches no plugin wants: the sharder may drop them unparsed."""
        if self._catch_all:
            return []
        return [name for name in DISPATCH_EVENTS if not self._route(name)]

    # ------------------------------------------------------------------ sharder listeners

    def attach(self, sharder: InternalSharder) -> None:
        self._shards = sharder.shards
        sharder.on("event", self.on_dispatch)
        for name in LIFECYCLE_EVENTS:
            if self.implemented(f"on_{name}"):
                sharder.on(name, functools.partial(self.on_lifecycle, name))

    def on_dispatch(self, payload: dict[str, Any], shard_id: int) -> None:
        """The sharder's ``event`` listener: the per-event hot path."""
        name = payload["t"]
        route = self._routes.get(name)
        if route is None:
            route = self._route(name)
        progress = self._progress.get(shard_id)
        if progress is None or name == "READY":
            progress = self._progress[shard_id] = _Progress()
        seq = payload.get("s")
        entry = progress.add(seq, len(route)) if seq is not None else None
        if not route or not self.accepting:
            # After stop, an event for a plugin stays pending (never finished), so
            # safe_sequence stays before it and a resume replays it.
            return
        shard = self._shards.get(shard_id)
        data = payload.get("d")
        for target in route:
            item = (target, payload if target.raw else data, shard_id, progress, entry)
            target.worker.put(item, shard)

    def on_lifecycle(self, name: str, data: Any, shard_id: int) -> None:
        if not self.accepting:
            return
        for target in self._route_lifecycle(name):
            target.worker.put((target, data, shard_id, None, None), None)

    def _route_lifecycle(self, name: str) -> tuple[_Target, ...]:
        key = f"#{name}"
        route = self._routes.get(key)
        if route is None:
            route = self._routes[key] = self._targets(f"on_{name}")
        return route

    def safe_sequence(self, shard_id: int) -> int | None:
        """Sequence of the last event of this shard that every plugin has finished.

        None when nothing is pending: the shard's own sequence is then safe.
        """
        progress = self._progress.get(shard_id)
        if progress is None or not progress.pending:
            return None
        return progress.safe

    # ------------------------------------------------------------------ lifetime

    async def run(self) -> None:
        """Run every worker until ``stop``."""
        async with anyio.create_task_group() as tg:
            for worker in self.workers.values():
                tg.start_soon(worker.run)

    async def stop(self, grace: float) -> list[str]:
        """Stop accepting, let the workers finish for ``grace`` s, then cancel the hung ones.

        Returns a description of every handler that was cancelled.
        """
        self.accepting = False
        for worker in self.workers.values():
            worker.stop()
        deadline = anyio.current_time() + grace
        # Poll: workers finish on their own; this only bounds how long we wait for them.
        while any(w.backlog or w.current for w in self.workers.values()):
            if anyio.current_time() >= deadline:
                break
            await anyio.sleep(0.02)
        cancelled = []
        for worker in self.workers.values():
            if worker.current is not None or worker.backlog:
                hook, started = worker.current or ("(queued)", time.perf_counter())
                running = time.perf_counter() - started
                cancelled.append(
                    f"plugin {worker.name!r} in {hook} (running {running:.1f} s, "
                    f"{worker.backlog} events still queued)"
                )
                worker.queue.clear()
                worker.spilled.clear()
            if worker.scope is not None:
                worker.scope.cancel()
        return cancelled

    def stats(self) -> dict[str, dict[str, int]]:
        return {
            name: {
                "calls": w.calls,
                "errors": w.errors,
                "dropped": w.dropped,
                "spills": w.spills,
                "queued": len(w.queue),
                "spilled": len(w.spilled),
            }
            for name, w in self.workers.items()
        }

    def remove(self, names: Iterable[str]) -> None:
        """Leave these plugins out of every route (their startup failed)."""
        for name in names:
            self.workers.pop(name, None)
        self._routes.clear()
        self._catch_all = self._targets("on_event", raw=True)
