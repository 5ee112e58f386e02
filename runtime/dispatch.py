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
import itertools
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


class _Session:
    """One shard's session as the router saw it begin; each queued event carries it.

    A READY starts a new one, so events of the previous session still queued are
    history to the saved sequence. Which events are unfinished is read off the
    queues when a sequence is saved, not booked per event.
    """

    __slots__ = ("abandoned", "shard_id")

    def __init__(self, shard_id: int) -> None:
        self.shard_id = shard_id
        self.abandoned: int | None = None
        """The lowest sequence of this session that no plugin will finish in this run:
        refused after stop, or left queued when stop's grace ran out."""

    def abandon(self, seq: int) -> None:
        if self.abandoned is None or seq < self.abandoned:
            self.abandoned = seq


_Kind = Literal["async (bot, data)", "async", "sync", "thread"]
"""How a hook is called. ``async (bot, data)`` is a coroutine function of the usual
shape, called as ``function(bot, data)``: no argument tuples to build per event
(about 0.1 µs); the other kinds pick their arguments with ``select``."""


@dataclass(frozen=True, slots=True)
class _Target:
    """One hook implementation of one plugin, ready to call."""

    worker: PluginWorker
    hook: str
    function: Callable[..., Any]
    arguments: tuple[int, ...]
    kind: _Kind
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


# An item in a plugin's queue: what to call, with what, and which event of which
# session it is (session and sequence; None for a lifecycle event). One flat tuple:
# each object queued per event is one more for the garbage collector to look at.
_Item = tuple[_Target, Any, "int | None", "_Session | None", "int | None"]

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
        self._spilled_seqs: dict[_Session, deque[int]] = {}
        """The sequences in ``spilled``, per session: its oldest without a scan."""
        self.item: _Item | None = None
        """The item being handled; left set if its handler was cancelled (unfinished)."""
        self.shards: Mapping[int, WebsocketShard] = {}
        """The shards by id, to pause the one whose event does not fit."""
        self.errors = 0
        self.dropped = 0
        self.spills = 0
        """Times the backlog filled up and events started to wait on disk."""
        self.calls = 0
        self.started = 0.0
        """When the handler of ``item`` started (``time.perf_counter``)."""
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

    def put(self, item: _Item) -> None:
        queue = self.queue
        if len(queue) < self.capacity and not self.spilled:
            queue.append(item)
        else:
            self._overflow(item)
        wake = self._wake
        if wake is not None:
            self._wake = None  # one wake-up per batch: the other puts find it gone
            wake.set()

    def _overflow(self, item: _Item) -> None:
        """No room in memory: drop the oldest, spill to disk, or pause the shard."""
        if self.overflow == "drop_oldest":
            self.queue.popleft()  # done with, as far as the saved sequence goes
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
        if self.spilled:
            self._append_spilled(item)
        else:
            self.queue.append(item)
        shard_id, shard = item[2], None
        if item[3] is not None and shard_id is not None:  # not a lifecycle event
            shard = self.shards.get(shard_id)
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
            self._append_spilled(item)
            return True
        if written:
            if not self.spilled:
                self._started_spilling()
            self._append_spilled((item[0], _ON_DISK, item[2], item[3], item[4]))
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

    def _append_spilled(self, item: _Item) -> None:
        self.spilled.append(item)
        session, seq = item[3], item[4]
        if session is not None and seq is not None:
            seqs = self._spilled_seqs.get(session)
            if seqs is None:
                seqs = self._spilled_seqs[session] = deque()
            seqs.append(seq)

    def _refill(self) -> None:
        """Move the oldest spilled items into the empty queue, data read back from disk."""
        spilled, queue, spilled_seqs = self.spilled, self.queue, self._spilled_seqs
        batch = [spilled.popleft() for _ in range(min(len(spilled), self.capacity))]
        on_disk = iter(self.spill.pop(sum(i[1] is _ON_DISK for i in batch)) if self.spill else ())
        for target, data, shard_id, session, seq in batch:
            if data is _ON_DISK:
                data = next(on_disk)
            queue.append((target, data, shard_id, session, seq))
            if session is not None and seq is not None:
                seqs = spilled_seqs[session]
                seqs.popleft()
                if not seqs:
                    del spilled_seqs[session]

    def unfinished(self) -> dict[_Session, int]:
        """The oldest sequence of each session that this plugin has not finished.

        A plugin handles a session's events in order, so the first one found per
        session is its oldest: a scan of the in-memory queue (at most about
        ``capacity`` items), and the index of the spilled ones.
        """
        oldest: dict[_Session, int] = {}
        running = () if self.item is None else (self.item,)
        for _, _, _, session, seq in itertools.chain(running, self.queue):
            if session is not None and seq is not None and session not in oldest:
                oldest[session] = seq
        for session, seqs in self._spilled_seqs.items():
            oldest.setdefault(session, seqs[0])
        return oldest

    def abandon(self) -> None:
        """Give up what is queued (stop's grace ran out); it stays unfinished for a resume."""
        for session, seq in self.unfinished().items():
            session.abandon(seq)
        self.queue.clear()
        self.spilled.clear()
        self._spilled_seqs.clear()

    def _has_room(self) -> bool:
        """Whether the shards paused for this plugin may read again."""
        spill = self.spill
        if spill is not None and not self._spill_failed:
            return spill.size <= spill.limit // 2
        return not self.spilled and len(self.queue) <= self.capacity // 2

    @property
    def current(self) -> tuple[str, float] | None:
        """The hook being run and when it started, or None while waiting."""
        item = self.item
        return None if item is None else (item[0].hook, self.started)

    async def run(self) -> None:
        queue, context = self.queue, self.context
        perf_counter = time.perf_counter
        try:
            with anyio.CancelScope() as self.scope:
                while True:
                    while queue:
                        # Inlined rather than a coroutine per event: this is the hot path.
                        item = self.item = queue.popleft()
                        target = item[0]
                        self.calls += 1
                        self.started = perf_counter()
                        kind = target.kind
                        try:
                            if kind == "async (bot, data)":
                                await target.function(context, item[1])
                            elif kind == "async":
                                await target.function(*self._arguments(item))
                            elif kind == "sync":
                                self._call_blocking(item)
                            else:
                                await self._call_in_thread(item)
                        except Exception:
                            self._failed(target, item[2])
                        # Only a cancellation (stop's grace ran out) skips this: an event
                        # cut short is not finished.
                        self.item = None
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

    def _arguments(self, item: _Item) -> tuple[Any, ...]:
        return item[0].select((self.context, item[1], item[2]))

    def _call_blocking(self, item: _Item) -> None:
        """A plain-function hook, on the loop: the watchdog names it while it runs."""
        target, started = item[0], self.started
        self.blocking = (target.hook, started)
        try:
            target.function(*self._arguments(item))
        finally:
            self.blocking = None
        if time.perf_counter() - started > self.slow_threshold:
            self._warn_blocked(target, started)

    async def _call_in_thread(self, item: _Item) -> None:
        # abandon_on_cancel: a hung thread must not hold up stop() past its grace.
        await anyio.to_thread.run_sync(
            functools.partial(item[0].function, *self._arguments(item)), abandon_on_cancel=True
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
        self._sessions: dict[int, _Session] = {}
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
            arguments = tuple(_ARGUMENT_INDEX[a] for a in impl.argnames)
            kind: _Kind = (
                ("async (bot, data)" if arguments == (0, 1) else "async")
                if is_async_callable(function)
                else "thread"
                if getattr(function, _THREAD_MARK, False)
                else "sync"
            )
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
        for worker in self.workers.values():
            worker.shards = sharder.shards
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
        session = self._sessions.get(shard_id)
        if session is None or name == "READY":
            session = self._sessions[shard_id] = _Session(shard_id)
        if not route:
            return
        seq = payload.get("s")
        if not self.accepting:
            # Never delivered in this run: the saved sequence stays before it, so a
            # resume replays it.
            if seq is not None:
                session.abandon(seq)
            return
        data = payload.get("d")
        for target in route:
            target.worker.put((target, payload if target.raw else data, shard_id, session, seq))

    def on_lifecycle(self, name: str, data: Any, shard_id: int) -> None:
        if not self.accepting:
            return
        for target in self._route_lifecycle(name):
            target.worker.put((target, data, shard_id, None, None))

    def _route_lifecycle(self, name: str) -> tuple[_Target, ...]:
        key = f"#{name}"
        route = self._routes.get(key)
        if route is None:
            route = self._routes[key] = self._targets(f"on_{name}")
        return route

    def safe_sequences(self) -> dict[int, int]:
        """Per shard, the sequence just before its oldest event a plugin has not finished.

        What a resume after a crash must start from so that no plugin misses an event.
        A shard left out has nothing unfinished: its own sequence is safe.
        """
        oldest: dict[_Session, int] = {
            s: s.abandoned for s in self._sessions.values() if s.abandoned is not None
        }
        for worker in self.workers.values():
            for session, seq in worker.unfinished().items():
                if session not in oldest or seq < oldest[session]:
                    oldest[session] = seq
        current = self._sessions
        return {
            session.shard_id: max(seq - 1, 0)
            for session, seq in oldest.items()
            if current.get(session.shard_id) is session
        }

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
                worker.abandon()
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
