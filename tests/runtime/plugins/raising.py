"""Raises in its handler whenever a message says "boom"."""

from __future__ import annotations

from typing import Any

from runtime import hookimpl


@hookimpl
def on_message_create(bot: Any, data: dict[str, Any]) -> None:
    if data.get("content") == "boom":
        raise RuntimeError("the raising plugin exploded")
    bot.record("on_message_create", data)
