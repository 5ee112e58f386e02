"""A sync handler that blocks the event loop for ``bot.block_for`` seconds."""

from __future__ import annotations

import time
from typing import Any

from runtime import hookimpl


@hookimpl
def on_message_create(bot: Any, data: dict[str, Any]) -> None:
    time.sleep(bot.block_for)
    bot.record("on_message_create", data)
