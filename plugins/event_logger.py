"""Logs the gateway lifecycle: sessions started, resumed and lost, guilds arriving.

It implements no catch-all ``on_event`` on purpose: events no plugin listens to
are then dropped by the sharder before they are parsed.
"""

from __future__ import annotations

from typing import Any

from runtime import hookimpl

__version__ = "1.0.0"


@hookimpl
def on_ready(bot: Any, data: dict[str, Any], shard_id: int) -> None:
    user = data.get("user") or {}
    bot.log.info(
        "shard %s ready as %s: session %s, %d guilds",
        shard_id,
        user.get("username", "?"),
        data.get("session_id"),
        len(data.get("guilds") or ()),
    )


@hookimpl
def on_resumed(bot: Any, data: dict[str, Any], shard_id: int) -> None:
    bot.log.info("shard %s resumed: %s events replayed", shard_id, data.get("replayed"))


@hookimpl
def on_guild_create(bot: Any, data: dict[str, Any], shard_id: int) -> None:
    bot.log.info("shard %s: guild %s (%s) available", shard_id, data.get("name"), data.get("id"))


@hookimpl
def on_close(bot: Any, data: BaseException, shard_id: int) -> None:
    bot.log.error("shard %s stopped for good: %s", shard_id, data)
