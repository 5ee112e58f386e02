"""Answers a prefix command (``!ping`` by default) with the shard's latency.

Shows the whole path a plugin takes: a dispatch hook, its own settings, and a
reply through the rate-limited REST client.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from runtime import hookimpl
from sharder import SharderError

__version__ = "1.0.0"


@dataclass(frozen=True)
class Settings:
    prefix: str = "!ping"
    """Messages starting with this get a reply."""
    reply: str = "pong! (gateway latency: {latency})"
    """The reply; ``{latency}`` becomes the shard's last heartbeat round trip."""


@hookimpl
async def on_message_create(bot: Any, data: dict[str, Any], shard_id: int) -> None:
    settings: Settings = bot.settings
    content = data.get("content")
    author = data.get("author") or {}
    if not isinstance(content, str) or author.get("bot"):
        return
    if not content.strip().lower().startswith(settings.prefix.lower()):
        return
    shard = bot.sharder.shards.get(shard_id) if bot.sharder is not None else None
    latency = shard.latency if shard is not None else None
    if shard is not None and latency is None:  # no heartbeat yet: measure one now
        with contextlib.suppress(SharderError):
            latency = await shard.ping(timeout=2.0)
    shown = f"{latency * 1000:.0f} ms" if latency is not None else "not measured yet"
    await bot.rest.post(
        f"/channels/{data['channel_id']}/messages",
        json={
            "content": settings.reply.format(latency=shown),
            "message_reference": {"message_id": data["id"], "fail_if_not_exists": False},
            "allowed_mentions": {"parse": []},
        },
    )
    bot.log.info("answered %s in channel %s", settings.prefix, data["channel_id"])
