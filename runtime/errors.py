"""Exceptions raised by the botrun runtime.

::

    BotrunError
    ├── ConfigError     the config file, or a plugin's settings table, cannot be used
    └── PluginError     a plugin cannot be loaded or broke a rule of the plugin contract

Messages never contain the bot token: values of secret keys are not echoed.
Gateway failures are the sharder's own exceptions (``sharder.errors``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["EX_CONFIG", "BotrunError", "ConfigError", "PluginError"]

EX_CONFIG: Final = 78
"""Exit status for a configuration error (``EX_CONFIG`` of BSD's sysexits.h)."""


class BotrunError(Exception):
    """Base class of every error the runtime raises."""


class ConfigError(BotrunError):
    """Raised when the config file, or a plugin's settings, cannot be used.

    ``key`` is the dotted path of the offending value (``discord.intents[2]``),
    or ``""`` when the whole file is at fault. ``line`` and ``column`` are set
    only for TOML syntax errors, which have no key yet.
    """

    def __init__(
        self,
        file: Path | str,
        key: str,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.file = str(file)
        self.key = key
        self.message = message
        self.line = line
        self.column = column
        where = [self.file]
        if line is not None:
            where.append(f"line {line}" if column is None else f"line {line}, column {column}")
        if key:
            where.append(key)
        super().__init__(": ".join([*where, message]))


class PluginError(BotrunError):
    """Raised when a plugin cannot be loaded or breaks the plugin contract.

    ``plugin`` is the plugin's name, as used in ``[plugins] enabled``. The
    message is shown as is, so it should name the plugin.
    """

    def __init__(self, plugin: str, message: str) -> None:
        self.plugin = plugin
        self.message = message
        super().__init__(message)
