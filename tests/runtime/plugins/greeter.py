"""A well-formed sync plugin: two hooks and a version."""

from __future__ import annotations

from typing import Any

from runtime import hookimpl

__version__ = "2.1.0"


@hookimpl
def on_message_create(bot: Any, data: dict[str, Any]) -> None:
    bot.record("on_message_create", data)


@hookimpl
def on_guild_create(data: dict[str, Any], shard_id: int) -> None:
    del data, shard_id
