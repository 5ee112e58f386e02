"""Synthetic but realistically shaped Discord objects.

Everything is derived deterministically from ids, so a guild's members are
the same on every request and tests can predict them; only snowflakes minted
for new objects (messages) depend on the clock.
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

__all__ = [
    "APPLICATION_ID",
    "BOT_USERNAME",
    "BOT_USER_ID",
    "DISCORD_EPOCH_MS",
    "application",
    "bot_user",
    "channel_info",
    "guild_create",
    "guild_ids_for_shard",
    "guild_members",
    "iso_timestamp",
    "make_snowflake",
    "new_snowflake",
    "presence",
    "snowflake_time",
    "soundboard_sounds",
    "text_channel_id",
    "user",
]

DISCORD_EPOCH_MS: Final = 1_420_070_400_000
BOT_USERNAME: Final = "botrun-emulator"
_BASE_MS: Final = 1_600_000_000_000 - DISCORD_EPOCH_MS
"""Offset (ms since the Discord epoch) for synthetic ids: September 2020."""

BOT_USER_ID: Final = (_BASE_MS << 22) | 1
APPLICATION_ID: Final = BOT_USER_ID
"""Discord gives a bot user the id of its application."""

_NAMES: Final = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
    "ivan", "judy", "mallory", "niaj", "olivia", "peggy", "rupert", "sybil",
    "trent", "victor", "walter", "yara",
)  # fmt: skip
_CHILD_BITS: Final = (1 << 22) - 1
"""A guild's own objects (channels, members) share its timestamp and differ in the low bits."""

_FIRST_MEMBER: Final = 100
"""Child index of a guild's first synthetic member; lower ones are channels and sounds."""

_counter = itertools.count(1)


def make_snowflake(ms_since_epoch: int, increment: int = 0) -> int:
    """A snowflake for a timestamp (ms since the Discord epoch)."""
    return (ms_since_epoch << 22) | (increment & 0xFFF)


def new_snowflake() -> int:
    """A fresh snowflake with the current wall-clock time, as Discord mints them."""
    return make_snowflake(int(time.time() * 1000) - DISCORD_EPOCH_MS, next(_counter))


def snowflake_time(snowflake: int) -> datetime:
    return datetime.fromtimestamp(((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000, UTC)


def iso_timestamp(moment: datetime | None = None) -> str:
    """Discord's timestamp format: ISO 8601 with microseconds and ``+00:00``."""
    return (moment or datetime.now(UTC)).isoformat(timespec="microseconds")


def guild_ids_for_shard(shard_id: int, total: int, count: int) -> list[int]:
    """``count`` guild ids that route to ``shard_id``: ``(id >> 22) % total == shard_id``."""
    start = _BASE_MS + 1_000_000
    start -= start % total
    return [make_snowflake(start + j * total + shard_id) for j in range(count)]


def _child_id(guild_id: int, index: int) -> int:
    """An id owned by a guild (channel, member): stable, and never another guild's."""
    return (guild_id >> 22 << 22) | ((index + 1) & _CHILD_BITS)


def text_channel_id(guild_id: int) -> int:
    return _child_id(guild_id, 1)


def _voice_channel_ids(guild_id: int) -> list[int]:
    return [_child_id(guild_id, 2), _child_id(guild_id, 3)]


def user(user_id: int, username: str, *, bot: bool = False) -> dict[str, Any]:
    return {
        "id": str(user_id),
        "username": username,
        "discriminator": "0",
        "global_name": None if bot else username.title(),
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
    }


def bot_user() -> dict[str, Any]:
    return {
        "id": str(BOT_USER_ID),
        "username": BOT_USERNAME,
        "discriminator": "0",
        "global_name": None,
        "avatar": None,
        "bot": True,
        "flags": 0,
        "verified": True,
        "mfa_enabled": False,
        "public_flags": 0,
    }


def application() -> dict[str, Any]:
    return {
        "id": str(APPLICATION_ID),
        "name": BOT_USERNAME,
        "icon": None,
        "description": "The botrun gateway emulator",
        "bot_public": False,
        "bot_require_code_grant": False,
        "flags": 0,
        "bot": bot_user(),
    }


def _member(user_obj: dict[str, Any], guild_id: int) -> dict[str, Any]:
    return {
        "user": user_obj,
        "nick": None,
        "avatar": None,
        "roles": [],
        "joined_at": iso_timestamp(snowflake_time(guild_id)),
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
    }


@lru_cache(maxsize=64)
def guild_members(guild_id: int, count: int) -> tuple[dict[str, Any], ...]:
    """The guild's synthetic members (the bot first), sorted by user id."""
    members = [_member(bot_user(), guild_id)]
    for i in range(1, count):
        user_id = _child_id(guild_id, _FIRST_MEMBER + i)
        members.append(_member(user(user_id, f"{_NAMES[i % len(_NAMES)]}{i}"), guild_id))
    return tuple(members)


def presence(user_id: str, guild_id: int) -> dict[str, Any]:
    status = ("online", "idle", "dnd", "offline")[int(user_id) % 4]
    return {
        "user": {"id": user_id},
        "guild_id": str(guild_id),
        "status": status,
        "activities": [],
        "client_status": {} if status == "offline" else {"desktop": status},
    }


def guild_create(guild_id: int, member_count: int) -> dict[str, Any]:
    """A GUILD_CREATE payload: an available guild with a text and two voice channels."""
    gid = str(guild_id)
    channels = [{"id": str(text_channel_id(guild_id)), "type": 0, "name": "general"}]
    channels += [
        {"id": str(cid), "type": 2, "name": f"voice-{n}", "bitrate": 64000, "user_limit": 0}
        for n, cid in enumerate(_voice_channel_ids(guild_id), 1)
    ]
    for position, channel in enumerate(channels):
        channel |= {"guild_id": gid, "position": position, "permission_overwrites": []}
    return {
        "id": gid,
        "name": f"Emulated Guild {guild_id >> 22 & 0xFFFF}",
        "icon": None,
        "owner_id": str(_child_id(guild_id, _FIRST_MEMBER + 1)),
        "unavailable": False,
        "large": member_count > 250,
        "member_count": member_count,
        "joined_at": iso_timestamp(snowflake_time(guild_id)),
        "features": [],
        "premium_tier": 0,
        "preferred_locale": "en-US",
        "roles": [{"id": gid, "name": "@everyone", "permissions": "1071698660929", "position": 0}],
        "emojis": [],
        "stickers": [],
        "channels": channels,
        "threads": [],
        "members": [_member(bot_user(), guild_id)],
        "voice_states": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
    }


def soundboard_sounds(guild_id: int) -> list[dict[str, Any]]:
    return [
        {
            "sound_id": str(_child_id(guild_id, 10 + n)),
            "name": name,
            "volume": 1.0,
            "emoji_id": None,
            "emoji_name": emoji,
            "guild_id": str(guild_id),
            "available": True,
        }
        for n, (name, emoji) in enumerate((("airhorn", "📯"), ("rimshot", "🥁")))
    ]


def channel_info(guild_id: int, fields: list[str]) -> list[dict[str, Any]]:
    """CHANNEL_INFO entries for the guild's voice channels, with the asked fields only."""
    values = {"status": "chilling", "voice_start_time": iso_timestamp(snowflake_time(guild_id))}
    return [
        {"id": str(cid)} | {f: values[f] for f in fields if f in values}
        for cid in _voice_channel_ids(guild_id)
    ]
