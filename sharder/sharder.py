"""InternalSharder: many WebsocketShards in one process, one identify queue for all."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import anyio
import anyio.abc
import anyio.lowlevel

from ._constants import DEFAULT_IDENTIFY_TIMEOUT
from ._lifetime import TaskGroupOwner
from ._listeners import Listener, ListenerRegistry
from ._timers import TimerService
from .identify import ConnectGate, HookIdentifyQueue, IdentifyQueue, LocalIdentifyQueue
from .shard import ShardOptions, WebsocketShard, check_option_names

__all__ = ["HOOK_CONNECT_AHEAD", "InternalSharder"]

_START_BATCH: Final = 16
"""Shards started per event-loop iteration by ``connect``."""

HOOK_CONNECT_AHEAD: Final = 32
"""Shards that may be connecting or waiting for a slot at once when an identify hook
(another process) owns the queue: its schedule is unknown here, so a fixed bound."""


class InternalSharder(TaskGroupOwner):
    """Runs shards ``ids`` of a bot with ``total`` shards and routes their events.

    Listeners get ``(data, shard_id)`` for: ``connect``, ``ready``, ``resumed``,
    ``close`` (unresumable close codes only), ``debug``, ``event`` (the raw
    dispatch), each dispatch name such as ``MESSAGE_CREATE`` (its ``d``), and
    ``error``.

    Logins go through one identify queue: the in-process controller built from
    ``session_start_limit`` (buckets of ``max_concurrency``, ``timeout`` seconds
    apart, the daily ``remaining`` count), or, when ``options["identify_hook"]``
    is set, the hook, so that another process can own the queue.

    Shards that will identify open their websockets in the order of their
    identify slots, ``connect_ahead`` at most between opening and being
    granted a slot: by default two waves (``2 x max_concurrency``) with the
    in-process controller, :data:`HOOK_CONNECT_AHEAD` with a hook (whose
    schedule is not known here). Shards that resume connect at once.

    Every shard's timers (heartbeats, timeouts) run on one timer service, so
    that heartbeats falling due within a second of each other go out in one
    wake-up of the event loop.
    """

    def __init__(
        self,
        *,
        options: ShardOptions | Mapping[str, Any],
        total: int | None = None,
        ids: Iterable[int] | None = None,
        shard_options: Mapping[int, ShardOptions | Mapping[str, Any]] | None = None,
        session_start_limit: Mapping[str, Any] | None = None,
        timeout: float = DEFAULT_IDENTIFY_TIMEOUT,
        connect_ahead: int | None = None,
    ) -> None:
        id_list = sorted(set(ids)) if ids is not None else None
        if total is None:
            if not id_list:
                raise ValueError("give total, ids, or both")
            total = max(id_list) + 1
        if total < 1:
            raise ValueError(f"total must be at least 1, got {total}")
        if id_list is None:
            id_list = list(range(total))
        if not id_list or id_list[0] < 0 or id_list[-1] >= total:
            raise ValueError(f"every shard id must be within 0..{total - 1}, got {id_list}")
        check_option_names(options)
        self.ids: list[int] = id_list
        self.total: int = total
        self.options: dict[str, Any] = dict(options)
        self.shard_options: dict[int, dict[str, Any]] = {
            int(k): dict(v) for k, v in (shard_options or {}).items()
        }
        hook = self.options.get("identify_hook")
        queue: IdentifyQueue
        if hook is not None:
            queue = HookIdentifyQueue(hook)
            self.controller: LocalIdentifyQueue | None = None
        else:
            if session_start_limit is None:
                raise ValueError(
                    "session_start_limit (from /gateway/bot) is required "
                    "unless options['identify_hook'] is set"
                )
            self.controller = LocalIdentifyQueue.from_session_start_limit(
                session_start_limit, timeout=timeout
            )
            queue = self.controller
        if connect_ahead is None:
            connect_ahead = (
                HOOK_CONNECT_AHEAD if self.controller is None else 2 * self.controller.concurrency
            )
        self.connect_gate = ConnectGate(connect_ahead)
        self.timers = TimerService()
        self._timers_stopped: anyio.Event | None = None
        self._listeners = ListenerRegistry()
        self.shards: dict[int, WebsocketShard] = {
            shard_id: WebsocketShard(
                {
                    **self.options,
                    **self.shard_options.get(shard_id, {}),
                    "id": shard_id,
                    "total": total,
                },
                listeners=self._listeners,
                identify_queue=queue,
                timers=self.timers,
                connect_gate=self.connect_gate,
            )
            for shard_id in self.ids
        }

    def __repr__(self) -> str:
        return f"<InternalSharder ids={self.ids} total={self.total}>"

    def on(self, name: str, listener: Listener) -> None:
        """Call ``listener(data, shard_id)`` for event ``name`` on every shard."""
        self._listeners.on(name, listener)

    def off(self, name: str, listener: Listener) -> None:
        self._listeners.off(name, listener)

    @property
    def listened_events(self) -> frozenset[str]:
        """Event names that have at least one listener."""
        return self._listeners.names()

    async def connect(self) -> None:
        """Start every shard; return once each has an open websocket or waits for its turn.

        Shards resume where ``shard_options`` carries a session (at once), and
        queue an identify otherwise: those connect in identify-slot order, each
        shortly before its slot (see the class), so with many waves this
        returns once the first ones are open and the rest follow in the
        background.
        """
        tg = self._require_task_group()
        if self._timers_stopped is None:
            self._timers_stopped = anyio.Event()
            await tg.start(self._run_timers, self._timers_stopped)
        gate = self.connect_gate
        starting = [shard for shard in self.shards.values() if not shard._running]
        for shard in starting:  # in id order, before any task runs: slot order
            if shard.session is None:
                gate.expect(shard.id)
        # First the shards that connect now, then the ones that wait for their turn, a
        # batch per loop iteration: the first wave's HELLO and IDENTIFY need not wait
        # behind a thousand tasks starting.
        now: list[WebsocketShard] = []
        later: list[WebsocketShard] = []
        for shard in starting:
            connects_now = shard.session is not None or gate.is_admitted(shard.id)
            (now if connects_now else later).append(shard)
        async with anyio.create_task_group() as starting_now:
            for shard in now:
                starting_now.start_soon(tg.start, shard.run)
        async with anyio.create_task_group() as starting_later:
            for index, shard in enumerate(later, 1):
                starting_later.start_soon(tg.start, shard.run)
                if index % _START_BATCH == 0:
                    await anyio.lowlevel.checkpoint()

    async def _run_timers(
        self, stopped: anyio.Event, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        try:
            await self.timers.run(task_status=task_status)
        finally:
            stopped.set()

    async def close(self) -> None:
        """Close every shard (sessions stay resumable); return once all are closed."""
        async with anyio.create_task_group() as closing:
            for shard in self.shards.values():
                closing.start_soon(shard.close)
        stopped, self._timers_stopped = self._timers_stopped, None
        if stopped is not None:
            self.timers.stop()
            await stopped.wait()

    def get_average_ping(self) -> float | None:
        """Mean of the shards' last latency measurements, in seconds."""
        pings = [s.latency for s in self.shards.values() if s.latency is not None]
        return sum(pings) / len(pings) if pings else None

    def get_current_sessions(self) -> dict[int, dict[str, Any]]:
        """``{shard_id: {session_id, sequence, resume_url}}``: pass back as ``shard_options``."""
        return {
            shard_id: session.to_dict()
            for shard_id, shard in self.shards.items()
            if (session := shard.session) is not None
        }
