"""A pip-installable botrun plugin for the end-to-end tests: records the hooks it receives.

Registered through the ``botrun.plugins`` entry point ``e2e_sample``. Each hook
call appends one JSON line to the file named by ``[plugins.e2e_sample] record``,
with the paths this module and botrun's ``runtime`` were imported from, so a
test can tell which installation ran.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import runtime
from runtime import hookimpl

__version__ = "0.3.0"


@dataclass(frozen=True)
class Settings:
    record: str = ""
    """Path of the JSON-lines file every hook call is appended to (nothing if empty)."""


def _record(bot: Any, entry: dict[str, Any]) -> None:
    path = bot.settings.record
    if not path:
        return
    entry = {"plugin": bot.name, "pid": os.getpid(), **entry}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


@hookimpl
def on_startup(bot: Any) -> None:
    _record(bot, {"hook": "on_startup", "module": __file__, "runtime": runtime.__file__})


@hookimpl
def on_ready(bot: Any, data: dict[str, Any], shard_id: int) -> None:
    _record(
        bot,
        {
            "hook": "on_ready",
            "shard_id": shard_id,
            "session_id": data.get("session_id"),
            "guilds": [guild["id"] for guild in data.get("guilds") or ()],
        },
    )


@hookimpl
async def on_message_create(bot: Any, data: dict[str, Any], shard_id: int) -> None:
    _record(
        bot,
        {
            "hook": "on_message_create",
            "shard_id": shard_id,
            "id": data.get("id"),
            "channel_id": data.get("channel_id"),
            "content": data.get("content"),
        },
    )


@hookimpl
def on_shutdown(bot: Any) -> None:
    _record(bot, {"hook": "on_shutdown"})
