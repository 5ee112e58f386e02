"""A blocking handler marked ``@in_thread``: it runs in a worker thread."""

from __future__ import annotations

import threading
from typing import Any

from runtime import hookimpl, in_thread


@hookimpl
@in_thread
def on_message_create(bot: Any, data: dict[str, Any]) -> None:
    bot.record("on_message_create", (threading.get_ident(), data))
