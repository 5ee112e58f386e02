"""Event listeners: ``listener(data, shard_id)``, plain functions or coroutine functions.

The registry keeps, per event name, a tuple of ``(listener, is_async)`` so the
per-event path is one dict lookup and a loop, with no ``inspect`` call.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["Listener", "ListenerRegistry", "is_async_callable"]

Listener = Callable[[Any, int], Any]


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """True for coroutine functions, partials of them and objects with ``async __call__``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - looking for an async __call__
    )


class ListenerRegistry:
    """Listeners by event name, shared by a sharder and all of its shards."""

    __slots__ = ("by_name",)

    def __init__(self) -> None:
        self.by_name: dict[str, tuple[tuple[Listener, bool], ...]] = {}

    def on(self, name: str, listener: Listener) -> None:
        if not callable(listener):
            raise TypeError(f"listener for {name!r} is not callable: {listener!r}")
        entry = (listener, is_async_callable(listener))
        self.by_name[name] = (*self.by_name.get(name, ()), entry)

    def off(self, name: str, listener: Listener) -> None:
        remaining = tuple(e for e in self.by_name.get(name, ()) if e[0] is not listener)
        if remaining:
            self.by_name[name] = remaining
        else:
            self.by_name.pop(name, None)

    def names(self) -> frozenset[str]:
        return frozenset(self.by_name)
