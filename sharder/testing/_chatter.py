"""Simulated users talking in a few guilds, for the offline demo.

Messages go to the shard that owns the guild, ``(guild_id >> 22) % total``
with the session's own ``total``, exactly as Discord routes them, so a demo
exercises the same path a real bot does.
"""

from __future__ import annotations

import logging
import random
from typing import Any, Final

import anyio

from ._data import (
    guild_ids_for_shard,
    iso_timestamp,
    make_snowflake,
    new_snowflake,
    snowflake_time,
    text_channel_id,
    user,
)
from ._hub import Hub
from ._sessions import Session

__all__ = ["message_create", "run_chatter"]

logger = logging.getLogger("sharder.testing")

_LINES: Final = (
    "hello everyone",
    "anyone up for a game tonight?",
    "just pushed the fix, can someone review?",
    "lol",
    "has anyone seen the new patch notes",
    "brb coffee",
    "this bot is fast",
    "good morning :sunny:",
    "what's the weather like over there?",
    "gg",
)
_USER_NAMES: Final = ("ada", "linus", "grace", "guido", "barbara", "ken", "margaret", "dennis")
_USER_BASE_MS: Final = 300_000_000_000
"""Timestamp part (ms since the Discord epoch) of the chatter users' ids: 2019."""


def message_create(guild_id: int, author: dict[str, Any], content: str) -> dict[str, Any]:
    """A MESSAGE_CREATE payload shaped like Discord's, in the guild's text channel."""
    return {
        "id": str(new_snowflake()),
        "channel_id": str(text_channel_id(guild_id)),
        "guild_id": str(guild_id),
        "author": author,
        "member": {
            "roles": [],
            "nick": None,
            "avatar": None,
            "joined_at": iso_timestamp(snowflake_time(guild_id)),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
        },
        "content": content,
        "timestamp": iso_timestamp(),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "components": [],
        "pinned": False,
        "type": 0,
        "flags": 0,
        "nonce": str(new_snowflake()),
    }


def _owner(hub: Hub, guild_id: int) -> Session | None:
    """The latest session whose shard receives events of ``guild_id``."""
    for session in reversed(list(hub.sessions)):
        if (guild_id >> 22) % session.total == session.shard_id:
            return session
    return None


async def run_chatter(
    hub: Hub, *, guilds: int, users: int, interval: float, messages: int | None, ping_every: int
) -> None:
    """Send a message every ``interval`` s until cancelled or ``messages`` were sent."""
    rng = random.Random(0)
    guild_ids = guild_ids_for_shard(0, 1, guilds)
    authors = [
        user(make_snowflake(_USER_BASE_MS + i), f"{_USER_NAMES[i % len(_USER_NAMES)]}{i}")
        for i in range(users)
    ]
    sent = 0
    while messages is None or sent < messages:
        await anyio.sleep(interval)
        hub.sessions.purge(hub.now())
        guild_id = rng.choice(guild_ids)
        session = _owner(hub, guild_id)
        if session is None:
            continue
        sent += 1
        content = "!ping" if ping_every > 0 and sent % ping_every == 0 else rng.choice(_LINES)
        author = rng.choice(authors)
        session.dispatch("MESSAGE_CREATE", message_create(guild_id, author, content))
        logger.info(
            "emulator: %s says %r in guild %s (shard %s)",
            author["username"],
            content,
            guild_id,
            session.shard_id,
        )
