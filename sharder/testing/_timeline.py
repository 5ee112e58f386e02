"""The emulator's record of what happened, and a way for tests to wait on it.

Tests assert on behaviour ("the client resumed on /resume", "the heartbeat was
acked") rather than on internals, so every observable step is appended here
with the event loop's clock. The token is never recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import anyio

__all__ = ["Timeline", "TimelineEntry"]

_RECENT_KINDS = 20
"""How many recent kinds a wait_for timeout message lists."""


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One thing the emulator saw or did.

    ``time`` is ``anyio.current_time()``; ``shard_id`` and ``session_id`` are
    ``None`` when not known yet (before IDENTIFY or RESUME).
    """

    time: float
    kind: str
    shard_id: int | None
    session_id: str | None
    detail: dict[str, Any]


class Timeline:
    """An append-only list of entries that tasks can wait on."""

    def __init__(self) -> None:
        self.entries: list[TimelineEntry] = []
        self._changed: anyio.Event | None = None

    def record(
        self, kind: str, shard_id: int | None, session_id: str | None, /, **detail: Any
    ) -> TimelineEntry:
        """Append an entry stamped with the current time and wake the waiters.

        The parameters are positional-only so ``detail`` may use any key, even
        one a client chose (IDENTIFY fields are recorded as sent).
        """
        entry = TimelineEntry(anyio.current_time(), kind, shard_id, session_id, detail)
        self.entries.append(entry)
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        return entry

    def select(
        self, kind: str, shard_id: int | None = None, since: float | int = 0
    ) -> list[TimelineEntry]:
        """Entries of ``kind`` (and ``shard_id`` if given) from ``since`` on.

        An ``int`` ``since`` is an index into the timeline, a ``float`` a time.
        """
        if isinstance(since, float):
            candidates: Iterable[TimelineEntry] = (e for e in self.entries if e.time >= since)
        else:
            candidates = self.entries[since:]
        return [
            entry
            for entry in candidates
            if entry.kind == kind and (shard_id is None or entry.shard_id == shard_id)
        ]

    async def wait_for(
        self,
        kind: str,
        *,
        shard_id: int | None = None,
        count: int = 1,
        timeout: float = 10.0,
        since: float | int = 0,
    ) -> list[TimelineEntry]:
        """Wait until at least ``count`` matching entries exist and return them all.

        Raises:
            TimeoutError: with the recent timeline kinds, to make a failing test
                say what happened instead.
        """
        with anyio.move_on_after(timeout):
            while len(found := self.select(kind, shard_id, since)) < count:
                if self._changed is None:
                    self._changed = anyio.Event()
                await self._changed.wait()
            return found
        recent = ", ".join(self._describe(e) for e in self.entries[-_RECENT_KINDS:])
        shard = "" if shard_id is None else f" for shard {shard_id}"
        have = len(self.select(kind, shard_id, since))
        raise TimeoutError(
            f"timed out after {timeout} s waiting for {count} {kind!r} entries{shard} "
            f"(have {have}); recent timeline: {recent or 'empty'}"
        )

    @staticmethod
    def _describe(entry: TimelineEntry) -> str:
        return entry.kind if entry.shard_id is None else f"{entry.kind}[{entry.shard_id}]"
