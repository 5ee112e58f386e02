"""Answers to the client's request opcodes (3, 4, 8, 31, 43) as lists of dispatches.

Pure functions of the request and a small context, so the gateway connection
only has to record and dispatch what they return. A malformed request raises
:class:`BadPayload`, which the connection turns into close code 4001, as
Discord does for "invalid payload for an opcode".
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from sharder._constants import OpCode

from ._data import (
    BOT_USER_ID,
    bot_user,
    channel_info,
    guild_members,
    iso_timestamp,
    presence,
    soundboard_sounds,
)
from ._limits import MemberRequestLimiter

__all__ = ["COMMAND_OPCODES", "BadPayload", "CommandContext", "Dispatches", "run_command"]

Dispatches = list[tuple[str, dict[str, Any]]]

CHUNK_SIZE: Final = 1000
"""Members per GUILD_MEMBERS_CHUNK."""
QUERY_RESULT_LIMIT: Final = 100
"""Most members a query or user_ids request returns."""
MAX_NONCE_BYTES: Final = 32
VOICE_ENDPOINT: Final = "127.0.0.1:1"
"""A voice endpoint nobody listens on: the emulator does not do voice."""


class BadPayload(ValueError):
    """The ``d`` of a request is malformed (close code 4001)."""


@dataclass(frozen=True, slots=True)
class CommandContext:
    """What a request's answer depends on besides its ``d``."""

    session_id: str
    members_per_guild: int
    member_limiter: MemberRequestLimiter
    now: float


def run_command(op: int, d: Any, context: CommandContext) -> Dispatches:
    """The dispatches answering request opcode ``op``.

    Raises:
        BadPayload: ``d`` is not a valid payload for ``op``.
    """
    if not isinstance(d, dict):
        raise BadPayload(f"op {op} needs an object as d")
    handler = _HANDLERS[op]
    return handler(d, context)


def _snowflake(value: Any, field: str) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if type(value) is int and 0 <= value < 1 << 64:
        return value
    raise BadPayload(f"{field} must be a snowflake")


def _presence_update(d: dict[str, Any], context: CommandContext) -> Dispatches:
    if not isinstance(d.get("status"), str) or not isinstance(d.get("activities", []), list):
        raise BadPayload("presence update needs a status and a list of activities")
    return []


def _voice_state_update(d: dict[str, Any], context: CommandContext) -> Dispatches:
    guild_id = str(_snowflake(d.get("guild_id"), "guild_id"))
    raw_channel = d.get("channel_id")
    channel_id = None if raw_channel is None else str(_snowflake(raw_channel, "channel_id"))
    state = {
        "guild_id": guild_id,
        "channel_id": channel_id,
        "user_id": str(BOT_USER_ID),
        "member": {"user": bot_user(), "roles": [], "joined_at": iso_timestamp(), "deaf": False,
                   "mute": False, "flags": 0},
        "session_id": context.session_id,
        "deaf": False,
        "mute": False,
        "self_deaf": bool(d.get("self_deaf")),
        "self_mute": bool(d.get("self_mute")),
        "self_video": False,
        "suppress": False,
        "request_to_speak_timestamp": None,
    }  # fmt: skip
    events: Dispatches = [("VOICE_STATE_UPDATE", state)]
    if channel_id is not None:
        server = {"token": secrets.token_hex(8), "guild_id": guild_id, "endpoint": VOICE_ENDPOINT}
        events.append(("VOICE_SERVER_UPDATE", server))
    return events


def _valid_nonce(d: dict[str, Any]) -> str | None:
    """The nonce to echo: Discord silently drops one over 32 bytes."""
    nonce = d.get("nonce")
    if isinstance(nonce, str) and len(nonce.encode()) <= MAX_NONCE_BYTES:
        return nonce
    return None


def _request_guild_members(d: dict[str, Any], context: CommandContext) -> Dispatches:
    guild_id = _snowflake(d.get("guild_id"), "guild_id")
    nonce = _valid_nonce(d)
    members = guild_members(guild_id, context.members_per_guild)
    not_found: list[Any] | None = None
    if d.get("user_ids") is not None:
        found, not_found = _members_by_id(members, d["user_ids"])
    else:
        query, limit = d.get("query"), d.get("limit")
        if not isinstance(query, str) or type(limit) is not int or limit < 0:
            raise BadPayload("request guild members needs user_ids, or query and limit")
        if query == "" and limit == 0:
            retry_after = context.member_limiter.retry_after(guild_id, context.now)
            if retry_after:
                return [("RATE_LIMITED", _rate_limited(guild_id, nonce, retry_after))]
            found = list(members)
        else:
            found = _members_by_query(members, query, limit)
    return _chunks(guild_id, found, not_found, nonce, bool(d.get("presences")))


def _members_by_id(
    members: tuple[dict[str, Any], ...], raw_ids: Any
) -> tuple[list[dict[str, Any]], list[Any]]:
    """Members with the given ids, and the ids (as sent) that are not members."""
    wanted = raw_ids if isinstance(raw_ids, list) else [raw_ids]
    by_id = {int(member["user"]["id"]): member for member in members}
    found, not_found = [], []
    for raw in wanted[:QUERY_RESULT_LIMIT]:
        member = by_id.get(_snowflake(raw, "user_ids"))
        if member is None:
            not_found.append(raw)
        else:
            found.append(member)
    return found, not_found


def _members_by_query(
    members: tuple[dict[str, Any], ...], query: str, limit: int
) -> list[dict[str, Any]]:
    """Members whose username starts with ``query`` (case-insensitive), at most 100."""
    cap = QUERY_RESULT_LIMIT if limit == 0 else min(limit, QUERY_RESULT_LIMIT)
    prefix = query.casefold()
    matches = (m for m in members if m["user"]["username"].casefold().startswith(prefix))
    return [member for member, _ in zip(matches, range(cap), strict=False)]


def _rate_limited(guild_id: int, nonce: str | None, retry_after: float) -> dict[str, Any]:
    meta: dict[str, Any] = {"guild_id": str(guild_id)}
    if nonce is not None:
        meta["nonce"] = nonce
    return {"opcode": int(OpCode.REQUEST_GUILD_MEMBERS), "retry_after": retry_after, "meta": meta}


def _chunks(
    guild_id: int,
    found: list[dict[str, Any]],
    not_found: list[Any] | None,
    nonce: str | None,
    presences: bool,
) -> Dispatches:
    count = max(1, math.ceil(len(found) / CHUNK_SIZE))
    events: Dispatches = []
    for index in range(count):
        members = found[index * CHUNK_SIZE : (index + 1) * CHUNK_SIZE]
        chunk: dict[str, Any] = {
            "guild_id": str(guild_id),
            "members": members,
            "chunk_index": index,
            "chunk_count": count,
        }
        if not_found is not None:
            chunk["not_found"] = not_found
        if presences:
            online = (presence(m["user"]["id"], guild_id) for m in members)
            chunk["presences"] = [p for p in online if p["status"] != "offline"]
        if nonce is not None:
            chunk["nonce"] = nonce
        events.append(("GUILD_MEMBERS_CHUNK", chunk))
    return events


def _request_soundboard_sounds(d: dict[str, Any], context: CommandContext) -> Dispatches:
    guild_ids = d.get("guild_ids")
    if not isinstance(guild_ids, list):
        raise BadPayload("request soundboard sounds needs a list of guild_ids")
    return [
        ("SOUNDBOARD_SOUNDS", {"guild_id": str(gid), "soundboard_sounds": soundboard_sounds(gid)})
        for gid in (_snowflake(raw, "guild_ids") for raw in guild_ids)
    ]


def _request_channel_info(d: dict[str, Any], context: CommandContext) -> Dispatches:
    guild_id = _snowflake(d.get("guild_id"), "guild_id")
    fields = d.get("fields")
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise BadPayload("request channel info needs a list of fields")
    channels = channel_info(guild_id, fields)
    return [("CHANNEL_INFO", {"guild_id": str(guild_id), "channels": channels})]


_HANDLERS: Final[dict[int, Callable[[dict[str, Any], CommandContext], Dispatches]]] = {
    OpCode.PRESENCE_UPDATE: _presence_update,
    OpCode.VOICE_STATE_UPDATE: _voice_state_update,
    OpCode.REQUEST_GUILD_MEMBERS: _request_guild_members,
    OpCode.REQUEST_SOUNDBOARD_SOUNDS: _request_soundboard_sounds,
    OpCode.REQUEST_CHANNEL_INFO: _request_channel_info,
}

COMMAND_OPCODES: Final = frozenset(_HANDLERS)
"""Opcodes that need an identified session and are answered by :func:`run_command`."""
