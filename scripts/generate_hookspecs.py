"""Write ``runtime/hookspecs.py``, the plugin contract, from ``sharder/_constants.py``.

One hook per documented dispatch event is too many to keep in step with
Discord by hand, so the event list comes from ``EVENT_INTENTS`` and the prose
from the tables below. Run it after changing either::

    python scripts/generate_hookspecs.py            # rewrite the file
    python scripts/generate_hookspecs.py --check    # exit 1 if the file is stale

The output is already ``ruff format`` clean, so the generator needs no tools.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sharder._constants import EVENT_INTENTS, Intents  # noqa: E402

__all__ = ["EVENTS", "OUTPUT", "main", "render"]

OUTPUT: Final = ROOT / "runtime" / "hookspecs.py"
WIDTH: Final = 96
LIFECYCLE_EVENTS: Final = {"READY": "on_ready", "RESUMED": "on_resumed"}
PRIVILEGED: Final = frozenset(
    name for name in Intents.__members__ if Intents[name] in Intents.privileged()
)

BOT_ARG: Final = (
    "The plugin's context: its settings, logger, sharder, REST client and background tasks."
)
SHARD_ARG: Final = "The id of the shard that received the event."

# Event name -> (what happened, what ``data`` holds[, a note]). Wording follows
# Discord's "Receive Events" table; ``?`` marks a field that may be missing.
EVENTS: Final[dict[str, tuple[str, ...]]] = {
    "RATE_LIMITED": (
        "a gateway command of this shard was rate limited",
        "``{opcode, retry_after, meta}``; for op 8 (Request Guild Members), ``meta`` is "
        "``{guild_id, nonce?}`` and ``retry_after`` is in seconds.",
        "So far only an all-members request sent twice for one guild within 30 s gets this.",
    ),
    "APPLICATION_COMMAND_PERMISSIONS_UPDATE": (
        "an application command's permissions were updated",
        "an application command permissions object: ``{id, application_id, guild_id, "
        "permissions}``.",
    ),
    "INTERACTION_CREATE": (
        "a user used a slash command, a button, a select menu or a modal",
        "an interaction object. Answer it over REST within 3 seconds.",
    ),
    "USER_UPDATE": (
        "the bot's own user changed (name, avatar, ...)",
        "a user object.",
    ),
    "VOICE_SERVER_UPDATE": (
        "the voice server of the bot's voice connection was assigned or changed",
        "``{token, guild_id, endpoint}``; ``endpoint`` is null while the voice server is gone.",
    ),
    "GUILD_MEMBERS_CHUNK": (
        "an answer to a Request Guild Members command (op 8)",
        "``{guild_id, members, chunk_index, chunk_count, not_found?, presences?, nonce?}``; "
        "the answer is complete after ``chunk_count`` chunks.",
    ),
    "SOUNDBOARD_SOUNDS": (
        "an answer to a Request Soundboard Sounds command (op 31)",
        "``{guild_id, soundboard_sounds}``.",
    ),
    "CHANNEL_INFO": (
        "an answer to a Request Channel Info command (op 43)",
        "``{guild_id, channels}``; each channel is ``{id, status?, voice_start_time?}``.",
    ),
    "ENTITLEMENT_CREATE": (
        "a user bought a SKU of the app or was granted an entitlement",
        "an entitlement object.",
    ),
    "ENTITLEMENT_UPDATE": (
        "an entitlement was updated, for example when a subscription ends",
        "an entitlement object.",
    ),
    "ENTITLEMENT_DELETE": (
        "an entitlement was deleted (refunds and removals by Discord)",
        "an entitlement object.",
    ),
    "SUBSCRIPTION_CREATE": (
        "a user subscribed to a premium app subscription",
        "a subscription object.",
    ),
    "SUBSCRIPTION_UPDATE": (
        "a premium app subscription was updated or renewed",
        "a subscription object.",
    ),
    "SUBSCRIPTION_DELETE": (
        "a premium app subscription was deleted",
        "a subscription object.",
    ),
    "GUILD_CREATE": (
        "a guild became available (at startup, after an outage, or on joining)",
        "a guild object with ``joined_at``, ``large``, ``member_count``, ``members``, "
        "``channels``, ``threads``, ``presences``, ``voice_states``, ``stage_instances``, "
        "``guild_scheduled_events`` and ``soundboard_sounds``; or ``{id, unavailable: true}`` "
        "during an outage.",
        "Without GUILD_PRESENCES, or in guilds over 75k members, ``members`` and "
        "``presences`` hold only the bot and users in voice channels.",
    ),
    "GUILD_UPDATE": (
        "a guild's settings changed",
        "a guild object.",
    ),
    "GUILD_DELETE": (
        "a guild became unavailable (an outage), or the bot left or was removed from it",
        "``{id, unavailable?}``; ``unavailable`` is missing when the bot was removed.",
    ),
    "GUILD_ROLE_CREATE": (
        "a role was created",
        "``{guild_id, role}``.",
    ),
    "GUILD_ROLE_UPDATE": (
        "a role was updated",
        "``{guild_id, role}``.",
    ),
    "GUILD_ROLE_DELETE": (
        "a role was deleted",
        "``{guild_id, role_id}``.",
    ),
    "CHANNEL_CREATE": (
        "a guild channel was created",
        "a channel object.",
    ),
    "CHANNEL_UPDATE": (
        "a channel was updated (also when its last message changes, for a pin)",
        "a channel object.",
    ),
    "CHANNEL_DELETE": (
        "a guild channel was deleted",
        "a channel object.",
    ),
    "THREAD_CREATE": (
        "a thread was created, or the bot was added to a private thread",
        "a channel object; ``newly_created`` for a new thread, a ``member`` for the bot "
        "when it was added.",
    ),
    "THREAD_UPDATE": (
        "a thread was updated",
        "a channel object.",
    ),
    "THREAD_DELETE": (
        "a thread was deleted",
        "``{id, guild_id, parent_id, type}``.",
    ),
    "THREAD_LIST_SYNC": (
        "the bot gained access to a channel; this lists its active threads",
        "``{guild_id, channel_ids?, threads, members}``.",
    ),
    "THREAD_MEMBER_UPDATE": (
        "the bot's own thread member object changed",
        "a thread member object with ``guild_id``.",
    ),
    "STAGE_INSTANCE_CREATE": (
        "a stage instance was created (a stage went live)",
        "a stage instance object.",
    ),
    "STAGE_INSTANCE_UPDATE": (
        "a stage instance was updated",
        "a stage instance object.",
    ),
    "STAGE_INSTANCE_DELETE": (
        "a stage instance was deleted or closed",
        "a stage instance object.",
    ),
    "VOICE_CHANNEL_STATUS_UPDATE": (
        "the status text of a voice channel changed",
        "``{id, guild_id, status}``.",
    ),
    "VOICE_CHANNEL_START_TIME_UPDATE": (
        "the time a voice channel's call started changed",
        "``{id, guild_id, voice_start_time}``.",
    ),
    "CHANNEL_PINS_UPDATE": (
        "a message was pinned or unpinned",
        "``{guild_id?, channel_id, last_pin_timestamp?}``.",
        "GUILDS delivers it for guild channels, DIRECT_MESSAGES for DMs.",
    ),
    "THREAD_MEMBERS_UPDATE": (
        "users were added to or removed from a thread",
        "``{id, guild_id, member_count, added_members?, removed_member_ids?}``.",
        "With GUILDS alone it only reports the bot itself; GUILD_MEMBERS adds everyone else.",
    ),
    "GUILD_MEMBER_ADD": (
        "a user joined a guild",
        "a guild member object with ``guild_id``.",
    ),
    "GUILD_MEMBER_UPDATE": (
        "a guild member changed (roles, nickname, avatar, timeout, ...)",
        "``{guild_id, roles, user, nick?, avatar, joined_at, ...}``.",
        "Updates of the bot's own member are sent even without GUILD_MEMBERS.",
    ),
    "GUILD_MEMBER_REMOVE": (
        "a user left a guild or was kicked or banned",
        "``{guild_id, user}``.",
    ),
    "GUILD_AUDIT_LOG_ENTRY_CREATE": (
        "an audit log entry was created",
        "an audit log entry object with ``guild_id``.",
        "The bot also needs the VIEW_AUDIT_LOG permission.",
    ),
    "GUILD_BAN_ADD": (
        "a user was banned from a guild",
        "``{guild_id, user}``.",
    ),
    "GUILD_BAN_REMOVE": (
        "a user was unbanned from a guild",
        "``{guild_id, user}``.",
    ),
    "GUILD_EMOJIS_UPDATE": (
        "a guild's emojis changed",
        "``{guild_id, emojis}``: the whole new list.",
    ),
    "GUILD_STICKERS_UPDATE": (
        "a guild's stickers changed",
        "``{guild_id, stickers}``: the whole new list.",
    ),
    "GUILD_SOUNDBOARD_SOUND_CREATE": (
        "a soundboard sound was created",
        "a soundboard sound object.",
    ),
    "GUILD_SOUNDBOARD_SOUND_UPDATE": (
        "a soundboard sound was updated",
        "a soundboard sound object.",
    ),
    "GUILD_SOUNDBOARD_SOUND_DELETE": (
        "a soundboard sound was deleted",
        "``{sound_id, guild_id}``.",
    ),
    "GUILD_SOUNDBOARD_SOUNDS_UPDATE": (
        "several soundboard sounds of a guild were updated",
        "``{soundboard_sounds, guild_id}``.",
    ),
    "GUILD_INTEGRATIONS_UPDATE": (
        "a guild's integrations changed",
        "``{guild_id}``.",
    ),
    "INTEGRATION_CREATE": (
        "an integration was added to a guild",
        "an integration object with ``guild_id``.",
    ),
    "INTEGRATION_UPDATE": (
        "an integration was updated",
        "an integration object with ``guild_id``.",
    ),
    "INTEGRATION_DELETE": (
        "an integration was removed from a guild",
        "``{id, guild_id, application_id?}``.",
    ),
    "WEBHOOKS_UPDATE": (
        "a webhook of a guild channel was created, updated or deleted",
        "``{guild_id, channel_id}``.",
    ),
    "INVITE_CREATE": (
        "an invite to a channel was created",
        "``{channel_id, code, created_at, guild_id?, inviter?, max_age, max_uses, temporary, "
        "uses, ...}``.",
    ),
    "INVITE_DELETE": (
        "an invite was deleted",
        "``{channel_id, guild_id?, code}``.",
    ),
    "PRESENCE_UPDATE": (
        "a user's status or activities changed",
        "``{user, guild_id, status, activities, client_status}``; ``user`` may hold only ``id``.",
    ),
    "VOICE_STATE_UPDATE": (
        "someone joined, left or moved voice channels, or muted or deafened",
        "a voice state object. For the bot itself, it carries the ``session_id`` a voice "
        "connection needs.",
    ),
    "VOICE_CHANNEL_EFFECT_SEND": (
        "someone sent an emoji or sound effect in the bot's voice channel",
        "``{channel_id, guild_id, user_id, emoji?, animation_type?, animation_id?, sound_id?, "
        "sound_volume?}``.",
    ),
    "MESSAGE_CREATE": (
        "a message was sent in a channel the bot can see",
        "a message object; in guilds also ``guild_id`` and ``member``.",
        "Without the MESSAGE_CONTENT intent (privileged), ``content``, ``embeds``, "
        "``attachments``, ``components`` and ``poll`` are empty, except in DMs, in messages "
        "that mention the bot and in the bot's own messages.",
    ),
    "MESSAGE_UPDATE": (
        "a message was edited",
        "a message object; in guilds also ``guild_id`` and ``member``.",
        "The same MESSAGE_CONTENT rule as for ``on_message_create`` applies.",
    ),
    "MESSAGE_DELETE": (
        "a message was deleted",
        "``{id, channel_id, guild_id?}``.",
    ),
    "MESSAGE_DELETE_BULK": (
        "several messages were deleted at once",
        "``{ids, channel_id, guild_id?}``.",
    ),
    "MESSAGE_REACTION_ADD": (
        "a user reacted to a message",
        "``{user_id, channel_id, message_id, guild_id?, member?, emoji, message_author_id?, "
        "burst, burst_colors?, type}``.",
    ),
    "MESSAGE_REACTION_REMOVE": (
        "a user removed a reaction from a message",
        "``{user_id, channel_id, message_id, guild_id?, emoji, burst, type}``.",
    ),
    "MESSAGE_REACTION_REMOVE_ALL": (
        "all reactions were removed from a message",
        "``{channel_id, message_id, guild_id?}``.",
    ),
    "MESSAGE_REACTION_REMOVE_EMOJI": (
        "all reactions with one emoji were removed from a message",
        "``{channel_id, guild_id?, message_id, emoji}``.",
    ),
    "TYPING_START": (
        "a user started typing in a channel",
        "``{channel_id, guild_id?, user_id, timestamp, member?}``.",
    ),
    "GUILD_SCHEDULED_EVENT_CREATE": (
        "a scheduled event was created",
        "a guild scheduled event object.",
    ),
    "GUILD_SCHEDULED_EVENT_UPDATE": (
        "a scheduled event was updated (also when it starts or ends)",
        "a guild scheduled event object.",
    ),
    "GUILD_SCHEDULED_EVENT_DELETE": (
        "a scheduled event was deleted",
        "a guild scheduled event object.",
    ),
    "GUILD_SCHEDULED_EVENT_USER_ADD": (
        "a user subscribed to a scheduled event",
        "``{guild_scheduled_event_id, user_id, guild_id}``.",
    ),
    "GUILD_SCHEDULED_EVENT_USER_REMOVE": (
        "a user unsubscribed from a scheduled event",
        "``{guild_scheduled_event_id, user_id, guild_id}``.",
    ),
    "AUTO_MODERATION_RULE_CREATE": (
        "an Auto Moderation rule was created",
        "an auto moderation rule object.",
        "The bot also needs the MANAGE_GUILD permission.",
    ),
    "AUTO_MODERATION_RULE_UPDATE": (
        "an Auto Moderation rule was updated",
        "an auto moderation rule object.",
        "The bot also needs the MANAGE_GUILD permission.",
    ),
    "AUTO_MODERATION_RULE_DELETE": (
        "an Auto Moderation rule was deleted",
        "an auto moderation rule object.",
        "The bot also needs the MANAGE_GUILD permission.",
    ),
    "AUTO_MODERATION_ACTION_EXECUTION": (
        "an Auto Moderation rule was triggered and acted",
        "``{guild_id, action, rule_id, rule_trigger_type, user_id, channel_id?, message_id?, "
        "alert_system_message_id?, content, matched_keyword, matched_content}``.",
        "``content`` and ``matched_content`` are empty without the MESSAGE_CONTENT intent.",
    ),
    "MESSAGE_POLL_VOTE_ADD": (
        "a user voted on a poll",
        "``{user_id, channel_id, message_id, guild_id?, answer_id}``.",
    ),
    "MESSAGE_POLL_VOTE_REMOVE": (
        "a user removed a poll vote",
        "``{user_id, channel_id, message_id, guild_id?, answer_id}``.",
    ),
}

MODULE_DOCSTRING: Final = '''\
"""The botrun plugin contract: every hook a plugin can implement.

Generated by ``python scripts/generate_hookspecs.py`` from the event list in
``sharder/_constants.py``; change the generator, not this file.

A plugin is a module whose functions are named after hooks and marked with
``hookimpl``::

    from runtime import hookimpl


    @hookimpl
    def on_ready(data, shard_id):
        print(f"shard {shard_id} is ready as {data['user']['username']}")


    @hookimpl
    async def on_message_create(bot, data): ...

Implementations:

- may be plain functions or ``async def``; botrun awaits coroutines;
- may take any subset of the hook's arguments, by name: ``(data)``,
  ``(bot, data)`` and ``(bot, data, shard_id)`` all implement
  ``on_message_create`` (pluggy passes only the names asked for);
- return nothing that matters: return values are ignored;
- must be spelled right: an unknown ``on_*`` name is an error when the plugin
  loads, and :func:`suggest_hook` names the closest real hook.

The hooks:

- lifecycle: ``on_startup`` and ``on_shutdown`` for the runtime; ``on_connect``,
  ``on_ready``, ``on_resumed``, ``on_close``, ``on_debug`` and ``on_error`` for
  the shards;
- ``on_event``: every dispatch as the raw payload, including event names
  Discord adds after this file was generated;
- one ``on_<event>`` per documented dispatch event, the event name in lower
  case: MESSAGE_CREATE calls ``on_message_create``. READY and RESUMED have no
  hooks of their own: they are ``on_ready`` and ``on_resumed``. ``EVENT_HOOKS``
  maps every event name to its hook. A hook whose intent is not in
  ``[discord] intents`` is never called.

Call order: botrun registers plugins sorted by name, the bundled ones first,
then the others. pluggy calls the implementations of a hook in the reverse
order of registration (last registered first), so a drop-in plugin runs before
the bundled ones. ``@hookimpl(tryfirst=True)`` and ``@hookimpl(trylast=True)``
move an implementation to the front or the back.
"""'''

HEADER: Final = '''\
# Generated by scripts/generate_hookspecs.py: do not edit.

from __future__ import annotations

import difflib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import pluggy

from sharder._constants import DISPATCH_EVENTS
from sharder.errors import GatewayClosedError

__all__ = ["EVENT_HOOKS", "HOOK_NAMES", "hookimpl", "hookspec", "suggest_hook"]

hookspec: Final = pluggy.HookspecMarker("botrun")
"""Marks a hook specification in this module."""

hookimpl: Final = pluggy.HookimplMarker("botrun")
"""Marks a plugin's function as the implementation of the hook of the same name."""
'''

FOOTER: Final = '''\
EVENT_HOOKS: Final[Mapping[str, str]] = MappingProxyType(
    {event: "on_" + event.lower() for event in DISPATCH_EVENTS}
)
"""Hook name of each documented dispatch event (READY -> on_ready, as above)."""

HOOK_NAMES: Final = frozenset(
    {
        "on_startup",
        "on_shutdown",
        "on_connect",
        "on_close",
        "on_debug",
        "on_error",
        "on_event",
        *EVENT_HOOKS.values(),
    }
)
"""Every hook a plugin can implement."""


def suggest_hook(name: str) -> str | None:
    """The hook ``name`` most likely meant (itself if it is one), or None."""
    matches = difflib.get_close_matches(name, sorted(HOOK_NAMES), n=1)
    return matches[0] if matches else None
'''

# (name, signature, summary, body paragraphs, Args lines)
LIFECYCLE: Final[list[tuple[str, str, str, list[str], dict[str, str]]]] = [
    (
        "on_startup",
        "bot: Any",
        "Called once when botrun starts, after plugins load and before any shard connects.",
        ["Open what the plugin needs here; start long-running work as a background task."],
        {"bot": BOT_ARG},
    ),
    (
        "on_shutdown",
        "bot: Any",
        "Called once when botrun shuts down.",
        ["Release what ``on_startup`` opened."],
        {"bot": BOT_ARG},
    ),
    (
        "on_connect",
        "bot: Any, data: None, shard_id: int",
        "Called each time a shard's websocket opens, before it identifies or resumes.",
        [],
        {
            "bot": BOT_ARG,
            "data": "None (kept for symmetry with the other shard hooks).",
            "shard_id": "The id of the shard that connected.",
        },
    ),
    (
        "on_ready",
        "bot: Any, data: dict[str, Any], shard_id: int",
        "Called when a shard starts a new session: Discord sent READY after IDENTIFY.",
        [
            "This is the READY dispatch. Events sent while the shard had no session are lost; "
            "resynchronize what the plugin caches here (over REST).",
        ],
        {
            "bot": BOT_ARG,
            "data": "The READY payload's ``d``: ``v``, ``user``, ``guilds`` (unavailable at "
            "first; a GUILD_CREATE follows for each), ``session_id``, ``resume_gateway_url``, "
            "``shard`` and ``application``.",
            "shard_id": "The id of the shard that is ready.",
        },
    ),
    (
        "on_resumed",
        "bot: Any, data: dict[str, Any], shard_id: int",
        "Called when a shard resumed its session after a reconnect.",
        [
            "This is the RESUMED dispatch. The events missed while disconnected were "
            "replayed before it, so nothing was lost.",
        ],
        {
            "bot": BOT_ARG,
            "data": "The RESUMED payload's ``d``, with ``replayed``: the number of events "
            "Discord replayed.",
            "shard_id": "The id of the shard that resumed.",
        },
    ),
    (
        "on_close",
        "bot: Any, data: GatewayClosedError, shard_id: int",
        "Called when a shard stops for good because reconnecting cannot help.",
        [
            "The gateway closed with a code that needs the user to act: 4004 (wrong token), "
            "4010 and 4011 (shard count), 4012 (API version), 4013 and 4014 (invalid or "
            "disallowed intents). Ordinary disconnects are resumed by the shard and do not "
            "call this hook.",
        ],
        {
            "bot": BOT_ARG,
            "data": "The error, with the close ``code`` and ``reason`` the gateway sent.",
            "shard_id": "The id of the shard that stopped.",
        },
    ),
    (
        "on_debug",
        "bot: Any, data: str, shard_id: int",
        "Called with a debug message from a shard: connections, reconnects, sessions.",
        ["The messages are for people; do not parse them."],
        {
            "bot": BOT_ARG,
            "data": "The message.",
            "shard_id": "The id of the shard that wrote it.",
        },
    ),
    (
        "on_error",
        "bot: Any, data: Exception, shard_id: int | None",
        "Called when something fails, in a shard or elsewhere in the runtime.",
        [],
        {
            "bot": BOT_ARG,
            "data": "The exception.",
            "shard_id": "The id of the shard it happened in, or None outside any shard.",
        },
    ),
]

ON_EVENT: Final = (
    "on_event",
    "bot: Any, data: dict[str, Any], shard_id: int",
    "Called for every dispatch a shard receives, whatever its name.",
    [
        "It sees READY and RESUMED too, and event names Discord adds after this file was "
        "generated, which have no hook of their own.",
    ],
    {
        "bot": BOT_ARG,
        "data": "The raw payload: ``{op, t, s, d}``, with the event name in ``t`` and its "
        "data in ``d``.",
        "shard_id": SHARD_ARG,
    },
)


def render() -> str:
    """The text of ``runtime/hookspecs.py``."""
    missing = set(EVENT_INTENTS) - set(EVENTS) - set(LIFECYCLE_EVENTS)
    extra = set(EVENTS) - set(EVENT_INTENTS)
    if missing or extra:
        raise SystemExit(f"EVENTS is out of step: missing {sorted(missing)}, extra {sorted(extra)}")
    parts = [MODULE_DOCSTRING, HEADER]
    parts.append(_banner("Lifecycle: the runtime and its shards"))
    parts.extend(_spec(*spec) for spec in LIFECYCLE)
    parts.append(_banner("Every dispatch"))
    parts.append(_spec(*ON_EVENT))
    group = None
    for event, intents in EVENT_INTENTS.items():
        if event in LIFECYCLE_EVENTS:
            continue
        first = intents[0] if intents else ""
        if first != group:
            group = first
            title = f"of the {' / '.join(intents)} intent" if intents else "sent without intents"
            parts.append(_banner(f"Dispatch events {title}"))
        parts.append(_dispatch_spec(event, intents))
    parts.append(_banner("Lookups for the runtime"))
    parts.append(FOOTER)
    return "\n\n\n".join(part.strip("\n") for part in parts) + "\n"


def _banner(title: str) -> str:
    rule = "# " + "-" * 75
    return f"{rule}\n# {title}\n{rule}"


def _dispatch_spec(event: str, intents: Sequence[str]) -> str:
    what, data, *note = EVENTS[event]
    return _spec(
        "on_" + event.lower(),
        "bot: Any, data: dict[str, Any], shard_id: int",
        f"{event}: {what}.",
        [" ".join([_intents_sentence(intents), *note])],
        {"bot": BOT_ARG, "data": f"The event's ``d``: {data}", "shard_id": SHARD_ARG},
    )


def _intents_sentence(intents: Sequence[str]) -> str:
    if not intents:
        return "Always sent; needs no intent."
    names = [name + " (privileged)" if name in PRIVILEGED else name for name in intents]
    if len(names) == 1:
        return f"Needs the {names[0]} intent."
    return f"Needs the {' or the '.join(names)} intent; either one delivers it."


def _spec(name: str, params: str, summary: str, body: list[str], args: dict[str, str]) -> str:
    signature = f"def {name}({params}) -> None:"
    if len(signature) > 100:
        signature = f"def {name}(\n    {params}\n) -> None:"
    lines = [f'    """{summary}', ""]
    if len(lines[0]) > 100:
        raise SystemExit(f"the summary of {name} is longer than a line: {summary!r}")
    for paragraph in body:
        lines += [*_wrap(paragraph, "    ", "    "), ""]
    lines.append("    Args:")
    for arg, text in args.items():
        lines += _wrap(f"{arg}: {text}", " " * 8, " " * 12)
    lines.append('    """')
    return "@hookspec\n" + signature + "\n" + "\n".join(lines)


def _wrap(text: str, first: str, rest: str) -> list[str]:
    return textwrap.wrap(
        text,
        width=WIDTH,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="default: %(default)s")
    args = parser.parse_args(argv)
    text = render()
    output: Path = args.output
    current = output.read_text(encoding="utf-8") if output.exists() else None
    if args.check:
        if current != text:
            print(f"{output} is stale: run python scripts/generate_hookspecs.py", file=sys.stderr)
            return 1
        return 0
    if current != text:
        output.write_text(text, encoding="utf-8")
        print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
