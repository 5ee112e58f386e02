"""A benchmark plugin that listens to PRESENCE_UPDATE, so that nothing is discarded early."""

from __future__ import annotations

from typing import Any

from runtime import hookimpl


@hookimpl
async def on_presence_update(bot: Any, data: dict[str, Any]) -> None:
    bot.settings["tally"].hit(data)
