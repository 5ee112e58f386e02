"""A well-formed plugin shipped as a package, with a relative import."""

from __future__ import annotations

from typing import Any

from runtime import hookimpl

from .replies import reply_to


@hookimpl
async def on_message_create(bot: Any, data: dict[str, Any]) -> None:
    bot.record("on_message_create", reply_to(data))
