"""Declares a pluggy hook wrapper, which botrun's router cannot honour."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from runtime import hookimpl


@hookimpl(wrapper=True)
def on_message_create(bot: Any, data: dict[str, Any]) -> Generator[None, None, None]:
    del bot, data
    yield
