"""``async with`` for objects that run tasks: a task group that lives as long as the block."""

from __future__ import annotations

from types import TracebackType
from typing import Self

import anyio
import anyio.abc

__all__ = ["TaskGroupOwner"]


class TaskGroupOwner:
    """Enter opens a task group; a clean exit awaits ``close()``, an error cancels the tasks."""

    _task_group: anyio.abc.TaskGroup | None = None

    async def close(self) -> None:
        raise NotImplementedError

    def _require_task_group(self) -> anyio.abc.TaskGroup:
        if self._task_group is None:
            raise RuntimeError(f"use 'async with {type(self).__name__}(...)' before connect()")
        return self._task_group

    async def __aenter__(self) -> Self:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        try:
            if exc is None:
                await self.close()
            else:
                self._task_group.cancel_scope.cancel()
        finally:
            task_group, self._task_group = self._task_group, None
            result = await task_group.__aexit__(exc_type, exc, tb)
        return result
