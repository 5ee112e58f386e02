"""Declares its settings: ``[plugins.configurable]`` is checked against ``Settings``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runtime import hookimpl


@dataclass(frozen=True)
class Settings:
    threshold: int = 3
    channels: list[str] = field(default_factory=list)


@hookimpl
def on_message_create(bot: Any, data: dict[str, Any]) -> None:
    bot.record("on_message_create", (bot.settings.threshold, data))
