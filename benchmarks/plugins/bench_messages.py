"""A benchmark plugin: the MESSAGE_CREATE hook of a real bot, minus the bot's own work.

Loaded the way botrun loads any drop-in plugin. Its settings carry the
benchmark's counter (set in code, since a TOML table cannot hold an object).
"""

from __future__ import annotations

from typing import Any

from runtime import hookimpl


@hookimpl
async def on_message_create(bot: Any, data: dict[str, Any]) -> None:
    bot.settings["tally"].hit(data)
