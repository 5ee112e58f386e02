"""Implements a hook that does not exist: ``on_mesage_create``."""

from __future__ import annotations

from typing import Any

from runtime import hookimpl


@hookimpl
def on_mesage_create(bot: Any, data: dict[str, Any]) -> None:
    del bot, data
