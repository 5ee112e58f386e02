"""botrun as the benchmarks run it: a sharder listener, or the runtime with real plugins.

The runtime is wired the way ``runtime/bot.py`` wires it: plugins loaded by
``load_plugins`` from a drop-in folder (``benchmarks/plugins``), one
``PluginContext`` each, an ``EventRouter`` attached to an ``InternalSharder``
whose ``disabled_events`` are the router's unrouted events, the router's
workers in a task group next to the sharder, inside ``runtime.heap.serving_heap``
(malloc's thresholds set, the startup heap frozen out of the cycle collector).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import anyio

from benchmarks._measure import PLUGIN_DIR, TOKEN
from runtime.config import Config, PluginsConfig
from runtime.context import PluginContext
from runtime.dispatch import EventRouter
from runtime.heap import serving_heap
from runtime.plugins import load_plugins
from sharder import Intents, InternalSharder

__all__ = ["INTENTS", "TOKEN", "make_sharder", "runtime", "wait"]

INTENTS: Final = int(
    Intents.GUILDS | Intents.GUILD_MESSAGES | Intents.MESSAGE_CONTENT | Intents.GUILD_PRESENCES
)


def make_sharder(
    gateway: dict[str, Any],
    *,
    total: int = 1,
    timeout: float = 5.5,
    ssl_context: ssl.SSLContext | None = None,
    **options: Any,
) -> InternalSharder:
    """An InternalSharder for ``/gateway/bot``'s answer, as a bot would build it."""
    if ssl_context is not None:
        options["ssl_context"] = ssl_context
    return InternalSharder(
        options={"token": TOKEN, "intents": INTENTS, "url": gateway["url"], **options},
        total=total,
        session_start_limit=gateway["session_start_limit"],
        timeout=timeout,
    )


@asynccontextmanager
async def runtime(
    gateway: dict[str, Any], plugins: Sequence[str], settings: dict[str, Any]
) -> AsyncIterator[tuple[InternalSharder, EventRouter]]:
    """Run ``plugins`` (from ``benchmarks/plugins``) on one connected shard."""
    config = Config(
        plugins=PluginsConfig(
            paths=(PLUGIN_DIR,),
            enabled=tuple(plugins),
            strict=True,
            settings=dict.fromkeys(plugins, settings),
        )
    )
    plugin_set = load_plugins(config, environ={})
    async with anyio.create_task_group() as tg:
        contexts = {
            plugin.name: PluginContext(
                plugin.name, plugin.settings, config=config, rest=None, task_group=tg
            )
            for plugin in plugin_set.loaded
        }
        router = EventRouter(
            plugin_set.manager,
            dict(contexts),
            capacity=config.plugins.backlog,
            overflow=config.plugins.overflow,
            slow_threshold=config.plugins.slow_handler_warning,
        )
        sharder = make_sharder(gateway, disabled_events=router.unrouted_events())
        router.attach(sharder)
        with serving_heap():
            async with anyio.create_task_group() as workers:
                workers.start_soon(router.run)
                async with sharder:
                    await sharder.connect()
                    yield sharder, router
                workers.cancel_scope.cancel()
        tg.cancel_scope.cancel()


async def wait(event: anyio.Event, timeout: float, what: str) -> None:
    try:
        with anyio.fail_after(timeout):
            await event.wait()
    except TimeoutError:
        raise TimeoutError(f"timed out after {timeout} s waiting for {what}") from None
