"""Gateway protocol constants: opcodes, close codes, intents, dispatch event names, limits.

No logic lives here; every number is one that Discord documents (see
``gateway-protocol.md``) or a margin that a peer library proved necessary.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = [
    "CLIENT_RESUMABLE_CLOSE_CODE",
    "COMMANDS_PER_WINDOW",
    "COMMAND_WINDOW",
    "DEFAULT_IDENTIFY_TIMEOUT",
    "DISPATCH_EVENTS",
    "EVENT_INTENTS",
    "FATAL_CLOSE_CODES",
    "MAX_CLIENT_PAYLOAD",
    "NEW_SESSION_CLOSE_CODES",
    "PRESENCE_UPDATES_PER_WINDOW",
    "PRESENCE_WINDOW",
    "ZLIB_SUFFIX",
    "CloseCode",
    "Intents",
    "OpCode",
]


class OpCode(enum.IntEnum):
    """Gateway opcodes (payload field ``op``)."""

    DISPATCH = 0
    """Server: an event, with ``t`` (name) and ``s`` (sequence)."""
    HEARTBEAT = 1
    """Both: client keep-alive; from the server, a request for one now."""
    IDENTIFY = 2
    """Client: start a new session."""
    PRESENCE_UPDATE = 3
    """Client: change status and activities."""
    VOICE_STATE_UPDATE = 4
    """Client: join, move or leave a voice channel."""
    RESUME = 6
    """Client: continue a session; the server replays what was missed."""
    RECONNECT = 7
    """Server: reconnect and resume (a node is draining)."""
    REQUEST_GUILD_MEMBERS = 8
    """Client: ask for GUILD_MEMBERS_CHUNK events."""
    INVALID_SESSION = 9
    """Server: the session is gone (``d`` says whether a resume may work)."""
    HELLO = 10
    """Server: first message, carries ``heartbeat_interval`` in ms."""
    HEARTBEAT_ACK = 11
    """Server: answer to a heartbeat."""
    REQUEST_SOUNDBOARD_SOUNDS = 31
    """Client: ask for SOUNDBOARD_SOUNDS events."""
    REQUEST_CHANNEL_INFO = 43
    """Client: ask for a CHANNEL_INFO event."""


class CloseCode(enum.IntEnum):
    """Gateway close codes sent by Discord, plus the RFC 6455 ones we meet."""

    NORMAL = 1000
    """Normal closure; from the client it ends the session."""
    GOING_AWAY = 1001
    """Going away; from the client it ends the session."""
    ABNORMAL = 1006
    """No close frame at all (never sent, only observed)."""
    UNKNOWN_ERROR = 4000
    """Something went wrong on Discord's side; resume."""
    UNKNOWN_OPCODE = 4001
    """We sent an invalid opcode or payload: a bug on our side; resume."""
    DECODE_ERROR = 4002
    """We sent a payload Discord could not decode (or over 4096 bytes); resume."""
    NOT_AUTHENTICATED = 4003
    """We sent something before IDENTIFY, or the session was invalidated; identify anew."""
    AUTHENTICATION_FAILED = 4004
    """The token is wrong: fatal."""
    ALREADY_AUTHENTICATED = 4005
    """We sent IDENTIFY twice; the session exists, so resume."""
    INVALID_SEQ = 4007
    """The sequence in RESUME was wrong; identify anew."""
    RATE_LIMITED = 4008
    """Over 120 commands per 60 s; resume."""
    SESSION_TIMED_OUT = 4009
    """The session expired; identify anew."""
    INVALID_SHARD = 4010
    """The shard id or count is invalid: fatal."""
    SHARDING_REQUIRED = 4011
    """The shard holds too many guilds: fatal (reshard with more shards)."""
    INVALID_API_VERSION = 4012
    """The gateway version is invalid: fatal."""
    INVALID_INTENTS = 4013
    """The intents bitfield is invalid: fatal."""
    DISALLOWED_INTENTS = 4014
    """A privileged intent is not enabled for the application: fatal."""


FATAL_CLOSE_CODES: Final = frozenset({4004, 4010, 4011, 4012, 4013, 4014})
"""Codes after which reconnecting cannot help: the user must fix something."""

NEW_SESSION_CLOSE_CODES: Final = frozenset({4003, 4007, 4009})
"""Codes after which the session is gone and a new IDENTIFY is needed."""

CLIENT_RESUMABLE_CLOSE_CODE: Final = 4099
"""What we send to close while keeping the session resumable (tiny-discord's choice)."""

MAX_CLIENT_PAYLOAD: Final = 4096
"""Largest payload the client may send; larger ones get close code 4002."""

COMMANDS_PER_WINDOW: Final = 120
COMMAND_WINDOW: Final = 60.0
"""Every command counts, heartbeats included: 120 per connection per 60 s."""

PRESENCE_UPDATES_PER_WINDOW: Final = 5
PRESENCE_WINDOW: Final = 20.0

DEFAULT_IDENTIFY_TIMEOUT: Final = 5.5
"""Seconds between two identifies of one bucket: Discord's 5 s plus tiny-discord's margin."""

ZLIB_SUFFIX: Final = b"\x00\x00\xff\xff"
"""Z_SYNC_FLUSH marker that ends every message of a zlib-stream."""


class Intents(enum.IntFlag):
    """Gateway intents: which groups of events a session receives."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_MODERATION = 1 << 2
    GUILD_EXPRESSIONS = 1 << 3
    GUILD_INTEGRATIONS = 1 << 4
    GUILD_WEBHOOKS = 1 << 5
    GUILD_INVITES = 1 << 6
    GUILD_VOICE_STATES = 1 << 7
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    GUILD_MESSAGE_TYPING = 1 << 11
    DIRECT_MESSAGES = 1 << 12
    DIRECT_MESSAGE_REACTIONS = 1 << 13
    DIRECT_MESSAGE_TYPING = 1 << 14
    MESSAGE_CONTENT = 1 << 15
    GUILD_SCHEDULED_EVENTS = 1 << 16
    AUTO_MODERATION_CONFIGURATION = 1 << 20
    AUTO_MODERATION_EXECUTION = 1 << 21
    GUILD_MESSAGE_POLLS = 1 << 24
    DIRECT_MESSAGE_POLLS = 1 << 25
    # Old names Discord still accepts in its docs.
    GUILD_BANS = 1 << 2
    GUILD_EMOJIS_AND_STICKERS = 1 << 3

    @classmethod
    def privileged(cls) -> Intents:
        """Intents that must be switched on in the Developer Portal."""
        return cls.GUILD_MEMBERS | cls.GUILD_PRESENCES | cls.MESSAGE_CONTENT

    @classmethod
    def all(cls) -> Intents:
        """Every defined intent (53608447)."""
        value = cls(0)
        for member in cls:
            value |= member
        return value


def _group(names: str, *intents: str) -> dict[str, tuple[str, ...]]:
    return dict.fromkeys(names.split(), intents)


EVENT_INTENTS: Final[dict[str, tuple[str, ...]]] = {
    **_group(
        "READY RESUMED RATE_LIMITED APPLICATION_COMMAND_PERMISSIONS_UPDATE INTERACTION_CREATE "
        "USER_UPDATE VOICE_SERVER_UPDATE GUILD_MEMBERS_CHUNK SOUNDBOARD_SOUNDS CHANNEL_INFO "
        "ENTITLEMENT_CREATE ENTITLEMENT_UPDATE ENTITLEMENT_DELETE SUBSCRIPTION_CREATE "
        "SUBSCRIPTION_UPDATE SUBSCRIPTION_DELETE"
    ),
    **_group(
        "GUILD_CREATE GUILD_UPDATE GUILD_DELETE GUILD_ROLE_CREATE GUILD_ROLE_UPDATE "
        "GUILD_ROLE_DELETE CHANNEL_CREATE CHANNEL_UPDATE CHANNEL_DELETE THREAD_CREATE "
        "THREAD_UPDATE THREAD_DELETE THREAD_LIST_SYNC THREAD_MEMBER_UPDATE "
        "STAGE_INSTANCE_CREATE STAGE_INSTANCE_UPDATE STAGE_INSTANCE_DELETE "
        "VOICE_CHANNEL_STATUS_UPDATE VOICE_CHANNEL_START_TIME_UPDATE",
        "GUILDS",
    ),
    **_group("CHANNEL_PINS_UPDATE", "GUILDS", "DIRECT_MESSAGES"),
    **_group("THREAD_MEMBERS_UPDATE", "GUILDS", "GUILD_MEMBERS"),
    **_group("GUILD_MEMBER_ADD GUILD_MEMBER_UPDATE GUILD_MEMBER_REMOVE", "GUILD_MEMBERS"),
    **_group("GUILD_AUDIT_LOG_ENTRY_CREATE GUILD_BAN_ADD GUILD_BAN_REMOVE", "GUILD_MODERATION"),
    **_group(
        "GUILD_EMOJIS_UPDATE GUILD_STICKERS_UPDATE GUILD_SOUNDBOARD_SOUND_CREATE "
        "GUILD_SOUNDBOARD_SOUND_UPDATE GUILD_SOUNDBOARD_SOUND_DELETE "
        "GUILD_SOUNDBOARD_SOUNDS_UPDATE",
        "GUILD_EXPRESSIONS",
    ),
    **_group(
        "GUILD_INTEGRATIONS_UPDATE INTEGRATION_CREATE INTEGRATION_UPDATE INTEGRATION_DELETE",
        "GUILD_INTEGRATIONS",
    ),
    **_group("WEBHOOKS_UPDATE", "GUILD_WEBHOOKS"),
    **_group("INVITE_CREATE INVITE_DELETE", "GUILD_INVITES"),
    **_group("PRESENCE_UPDATE", "GUILD_PRESENCES"),
    **_group("VOICE_STATE_UPDATE VOICE_CHANNEL_EFFECT_SEND", "GUILD_VOICE_STATES"),
    **_group("MESSAGE_CREATE MESSAGE_UPDATE MESSAGE_DELETE", "GUILD_MESSAGES", "DIRECT_MESSAGES"),
    **_group("MESSAGE_DELETE_BULK", "GUILD_MESSAGES"),
    **_group(
        "MESSAGE_REACTION_ADD MESSAGE_REACTION_REMOVE MESSAGE_REACTION_REMOVE_ALL "
        "MESSAGE_REACTION_REMOVE_EMOJI",
        "GUILD_MESSAGE_REACTIONS",
        "DIRECT_MESSAGE_REACTIONS",
    ),
    **_group("TYPING_START", "GUILD_MESSAGE_TYPING", "DIRECT_MESSAGE_TYPING"),
    **_group(
        "GUILD_SCHEDULED_EVENT_CREATE GUILD_SCHEDULED_EVENT_UPDATE GUILD_SCHEDULED_EVENT_DELETE "
        "GUILD_SCHEDULED_EVENT_USER_ADD GUILD_SCHEDULED_EVENT_USER_REMOVE",
        "GUILD_SCHEDULED_EVENTS",
    ),
    **_group(
        "AUTO_MODERATION_RULE_CREATE AUTO_MODERATION_RULE_UPDATE AUTO_MODERATION_RULE_DELETE",
        "AUTO_MODERATION_CONFIGURATION",
    ),
    **_group("AUTO_MODERATION_ACTION_EXECUTION", "AUTO_MODERATION_EXECUTION"),
    **_group(
        "MESSAGE_POLL_VOTE_ADD MESSAGE_POLL_VOTE_REMOVE",
        "GUILD_MESSAGE_POLLS",
        "DIRECT_MESSAGE_POLLS",
    ),
}
"""Every documented dispatch event name, with the intents that deliver it (empty: always sent)."""

DISPATCH_EVENTS: Final = tuple(EVENT_INTENTS)
"""The 79 documented dispatch event names, in documentation order."""
