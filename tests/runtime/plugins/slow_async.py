"""An async handler that waits for ``bot.gate`` (an anyio.Event) before each event."""

from __future__ import annotations

from typing import Any

from runtime import hookimpl


@hookimpl
async def on_message_create(bot: Any, data: dict[str, Any], shard_id: int) -> None:
    await bot.gate.wait()
    bot.record("on_message_create", data, shard_id)
