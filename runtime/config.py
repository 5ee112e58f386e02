"""botrun's config file: TOML in, frozen dataclasses out.

:func:`load_config` parses the file and checks every key with
:func:`runtime._schema.build`, so a mistake stops botrun before it connects,
with a message that names the file, the key and what was expected.
``config.example.toml`` documents every key with its default.

The token is the one value that never shows up in a ``repr`` or a message:
the literal ``token`` is a :class:`Secret`, and :func:`resolve_token` reads
the environment only when it is needed.
"""

from __future__ import annotations

import functools
import ipaddress
import operator
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import tomli

from runtime._schema import InvalidValue, build, describe_value, join_key, suggest
from runtime.errors import ConfigError
from sharder._constants import DEFAULT_IDENTIFY_TIMEOUT, Intents

__all__ = [
    "ActivityConfig",
    "Config",
    "DiscordConfig",
    "EmulatorConfig",
    "GatewayConfig",
    "LoggingConfig",
    "PluginsConfig",
    "PresenceConfig",
    "RestConfig",
    "Secret",
    "SessionsConfig",
    "is_loopback",
    "load_config",
    "resolve_token",
]

_LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PLUGIN_NAME: Final = re.compile(r"[A-Za-z0-9_-]+\Z")


class Secret(str):
    """A string whose ``repr`` never shows it: the literal bot token.

    It is a ``str`` everywhere else, so it can be sent as is.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('********')"


def is_loopback(host: str) -> bool:
    """True if ``host`` names this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------
# Checks: each returns the value to store or raises ValueError("expected ...")


def _doc(help: str, check: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """Field metadata: documentation and an optional check."""
    return {"help": help} if check is None else {"help": help, "check": check}


def _between(low: float, high: float, what: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if low <= value <= high:
            return value
        raise ValueError(f"expected {what}")

    return check


def _above(low: float, what: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value > low:
            return value
        raise ValueError(f"expected {what}")

    return check


def _http_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or any(char.isspace() or not char.isprintable() for char in value)
    ):
        raise ValueError("expected an http:// or https:// URL")
    return value.rstrip("/")


def _env_name(value: str) -> str:
    if _ENV_NAME.match(value):
        return value
    # Never echo it: a pasted token is the likely mistake.
    raise ValueError(
        "expected the name of an environment variable (letters, digits and _), "
        'not the token itself; a literal token goes in token = "..."'
    )


def _token(value: str) -> Secret:
    if not value:
        raise ValueError("expected the bot token, not an empty string (or leave token out)")
    if any(char.isspace() or not char.isprintable() for char in value):
        raise ValueError('expected the bot token alone, without spaces or a "Bot " prefix')
    return Secret(value)


def _intents(value: tuple[str, ...] | int) -> tuple[str, ...] | int:
    if isinstance(value, int):
        if value < 0:
            raise ValueError("expected a non-negative intents bitfield")
        undefined = value & ~int(Intents.all())
        if undefined:
            raise ValueError(f"expected defined intent bits only (undefined: {undefined:#x})")
        return value
    for index, name in enumerate(value):
        if name not in Intents.__members__:
            match = suggest(name, Intents.__members__)
            hint = f' (did you mean "{match}"?)' if match else ""
            raise InvalidValue(f"unknown intent {describe_value(name)}{hint}", key=f"[{index}]")
    return value


def _shard_count(value: str | int) -> str | int:
    if value == "auto" or (isinstance(value, int) and value >= 1):
        return value
    raise ValueError('expected "auto" or a positive integer')


def _shard_ids(value: tuple[int, ...]) -> tuple[int, ...]:
    if not value:
        raise ValueError("expected at least one shard id")
    seen: set[int] = set()
    for index, shard_id in enumerate(value):
        if shard_id < 0:
            raise InvalidValue(f"expected a shard id >= 0, got {shard_id}", key=f"[{index}]")
        if shard_id in seen:
            raise InvalidValue(f"shard id {shard_id} is listed twice", key=f"[{index}]")
        seen.add(shard_id)
    return value


def _plugin_names(value: tuple[str, ...]) -> tuple[str, ...]:
    for index, name in enumerate(value):
        if not _PLUGIN_NAME.match(name):
            raise InvalidValue(
                f"expected a plugin name (letters, digits, _ and -), got {describe_value(name)}",
                key=f"[{index}]",
            )
    return value


def _plugin_tables(value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    for name in value:
        if not _PLUGIN_NAME.match(name):
            raise InvalidValue(
                "a plugin's settings table must be named after the plugin "
                "(letters, digits, _ and -)",
                key=join_key("", name),
            )
    return value


def _log_level(value: str) -> str:
    upper = value.upper()
    if upper in _LOG_LEVELS:
        return upper
    match = suggest(value, _LOG_LEVELS)
    hint = f' (did you mean "{match}"?)' if match else ""
    raise InvalidValue(
        f"expected one of DEBUG, INFO, WARNING, ERROR, got {describe_value(value)}{hint}"
    )


# ---------------------------------------------------------------------------
# [discord]


@dataclass(frozen=True, slots=True)
class DiscordConfig:
    """``[discord]``: who the bot is and what it may receive."""

    token_env: str = field(
        default="DISCORD_TOKEN",
        metadata={
            "help": "name of the environment variable holding the bot token",
            "check": _env_name,
            "secret": True,
        },
    )
    token: str | None = field(
        default=None,
        repr=False,
        metadata={
            "help": "the bot token itself, instead of token_env (keep the file private)",
            "check": _token,
            "secret": True,
            "conflicts": ("token_env",),
        },
    )
    api_base: str = field(
        default="https://discord.com/api/v10",
        metadata=_doc("base URL of Discord's HTTP API", _http_url),
    )
    intents: tuple[str, ...] | int = field(
        default=("GUILDS", "GUILD_MESSAGES"),
        metadata=_doc("gateway intents: a list of names or a bitfield", _intents),
    )
    allow_insecure_transport: bool = field(
        default=False,
        metadata=_doc(
            "allow sending the token over http:// or ws:// to a host other than this machine"
        ),
    )

    def __post_init__(self) -> None:
        parts = urlsplit(self.api_base)
        if (
            parts.scheme == "http"
            and not self.allow_insecure_transport
            and not is_loopback(parts.hostname or "")
        ):
            raise InvalidValue(
                "refusing to send the token over plain http to another machine; "
                "use https, or set allow_insecure_transport = true",
                key="api_base",
            )


# ---------------------------------------------------------------------------
# [gateway]


@dataclass(frozen=True, slots=True)
class ActivityConfig:
    """One entry of ``[gateway.presence] activities``."""

    name: str = field(metadata={"help": "the activity's name"})
    type: int = field(
        metadata={
            "help": "0 playing, 1 streaming, 2 listening, 3 watching, 4 custom, 5 competing",
            "check": _between(0, 6, "an activity type from 0 to 6"),
        }
    )
    state: str | None = field(
        default=None, metadata=_doc("status text (for type 4, the custom status)")
    )
    url: str | None = field(default=None, metadata=_doc("stream URL (for type 1)", _http_url))

    def as_payload(self) -> dict[str, Any]:
        """The activity object of a presence update."""
        payload: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.state is not None:
            payload["state"] = self.state
        if self.url is not None:
            payload["url"] = self.url
        return payload


@dataclass(frozen=True, slots=True)
class PresenceConfig:
    """``[gateway.presence]``: the presence sent with IDENTIFY."""

    status: Literal["online", "dnd", "idle", "invisible", "offline"] = field(
        default="online", metadata=_doc("online, dnd, idle, invisible or offline")
    )
    afk: bool = field(default=False, metadata=_doc("whether the bot is away"))
    activities: tuple[ActivityConfig, ...] = field(
        default=(), metadata=_doc("the bot's activities")
    )

    def as_payload(self) -> dict[str, Any]:
        """The ``presence`` object of IDENTIFY."""
        return {
            "since": None,
            "activities": [activity.as_payload() for activity in self.activities],
            "status": self.status,
            "afk": self.afk,
        }


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """``[gateway]``: how many shards to run and how they talk to Discord."""

    shards: Literal["auto"] | int = field(
        default="auto",
        metadata=_doc('"auto" (the count Discord recommends) or a number of shards', _shard_count),
    )
    ids: tuple[int, ...] | None = field(
        default=None,
        metadata=_doc("with total: run only these shard ids of a larger bot", _shard_ids),
    )
    total: int | None = field(
        default=None,
        metadata=_doc(
            "with ids: the bot's whole shard count", _between(1, float("inf"), "an integer >= 1")
        ),
    )
    compression: Literal["zlib-stream", "zstd-stream", "payload", "none"] = field(
        default="zlib-stream", metadata=_doc("transport compression")
    )
    encoding: Literal["json"] = field(default="json", metadata=_doc("payload encoding"))
    large_threshold: int = field(
        default=50,
        metadata=_doc(
            "member count above which a guild's offline members are not sent",
            _between(50, 250, "an integer from 50 to 250"),
        ),
    )
    identify_timeout: float = field(
        default=DEFAULT_IDENTIFY_TIMEOUT,
        metadata=_doc(
            "seconds between identify groups of one bucket",
            _between(5.0, float("inf"), "a number of seconds >= 5.0"),
        ),
    )
    version: Literal[9, 10] = field(default=10, metadata=_doc("gateway API version"))
    presence: PresenceConfig | None = field(
        default=None, metadata=_doc("presence sent with IDENTIFY")
    )

    def __post_init__(self) -> None:
        if self.ids is None and self.total is None:
            return
        if self.total is None:
            raise InvalidValue("ids needs total (the bot's whole shard count)", key="ids")
        if self.ids is None:
            raise InvalidValue("total needs ids (the shard ids this process runs)", key="total")
        if self.shards != "auto":
            raise InvalidValue('leave shards "auto" (or out) when ids and total are set', "shards")
        for index, shard_id in enumerate(self.ids):
            if shard_id >= self.total:
                raise InvalidValue(
                    f"shard id {shard_id} is not below total {self.total}", key=f"ids[{index}]"
                )

    def shard_plan(self, recommended: int) -> tuple[tuple[int, ...], int]:
        """The shard ids to run and the total shard count, given Discord's recommendation."""
        if self.ids is not None and self.total is not None:
            return self.ids, self.total
        total = max(recommended, 1) if self.shards == "auto" else self.shards
        return tuple(range(total)), total


# ---------------------------------------------------------------------------
# [plugins], [sessions], [rest], [logging], [emulator]


@dataclass(frozen=True, slots=True)
class PluginsConfig:
    """``[plugins]``: which plugins run and how their events are queued.

    Every sub-table (``[plugins.ping]``) is that plugin's settings, kept as
    parsed in ``settings`` until the plugin's own ``Settings`` class checks it.
    """

    paths: tuple[Path, ...] = field(
        default=(), metadata=_doc("drop-in plugin folders, relative to the config file")
    )
    enabled: tuple[str, ...] = field(
        default=(), metadata=_doc("if not empty, only these plugins load", _plugin_names)
    )
    disabled: tuple[str, ...] = field(
        default=(), metadata=_doc("these plugins do not load", _plugin_names)
    )
    strict: bool = field(
        default=False, metadata=_doc("stop at startup if any plugin fails to load")
    )
    backlog: int = field(
        default=1000,
        metadata=_doc(
            "events queued in memory per plugin", _between(1, float("inf"), "an integer >= 1")
        ),
    )
    overflow: Literal["wait", "drop_oldest"] = field(
        default="wait", metadata=_doc("what a full backlog does")
    )
    spill_limit: int = field(
        default=1024,
        metadata=_doc(
            'MiB of events per plugin kept on disk under "wait" once its backlog is '
            "full; 0 pauses the shard instead",
            _between(0, 1 << 20, "a number of MiB from 0 to 1048576"),
        ),
    )
    spill_dir: Path | None = field(
        default=None,
        metadata=_doc(
            "folder for spill files, relative to the config file; default: the temp folder"
        ),
    )
    shutdown_grace: float = field(
        default=10.0,
        metadata=_doc(
            "seconds pending handlers get at shutdown", _above(0, "a number of seconds > 0")
        ),
    )
    slow_handler_warning: float = field(
        default=0.5,
        metadata=_doc(
            "seconds a sync handler may block the event loop before a warning",
            _above(0, "a number of seconds > 0"),
        ),
    )
    settings: dict[str, dict[str, Any]] = field(
        default_factory=dict,
        metadata={"help": "[plugins.<name>] tables", "rest": True, "check": _plugin_tables},
    )

    def __post_init__(self) -> None:
        for index, name in enumerate(self.disabled):
            if name in self.enabled:
                raise InvalidValue(
                    f'plugin "{name}" is both enabled and disabled', key=f"disabled[{index}]"
                )


@dataclass(frozen=True, slots=True)
class SessionsConfig:
    """``[sessions]``: where gateway sessions are saved so a restart can resume."""

    file: Path | None = field(
        default=None, metadata=_doc("session file, relative to the config file; none if unset")
    )
    save_interval: float = field(
        default=5.0, metadata=_doc("seconds between saves", _above(0, "a number of seconds > 0"))
    )


@dataclass(frozen=True, slots=True)
class RestConfig:
    """``[rest]``: the HTTP API client."""

    timeout: float = field(
        default=15.0, metadata=_doc("seconds per request", _above(0, "a number of seconds > 0"))
    )
    max_retries: int = field(
        default=5,
        metadata=_doc("retries after a 429 or 5xx", _between(0, float("inf"), "an integer >= 0")),
    )
    global_limit: int = field(
        default=50,
        metadata=_doc("requests per second", _between(1, float("inf"), "an integer >= 1")),
    )


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """``[logging]``."""

    level: str = field(
        default="INFO", metadata=_doc("DEBUG, INFO, WARNING or ERROR (any case)", _log_level)
    )
    format: Literal["text", "json"] = field(
        default="text", metadata=_doc("text for people, json for log collectors")
    )


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """``[emulator]``: the built-in fake Discord, to run without a network or token."""

    enabled: bool = field(
        default=False, metadata=_doc("run against the emulator instead of Discord")
    )
    port: int = field(
        default=0,
        metadata=_doc("TCP port (0: any free port)", _between(0, 65535, "a port from 0 to 65535")),
    )
    shards: int = field(
        default=1,
        metadata=_doc(
            "shard count the emulator recommends", _between(1, float("inf"), "an integer >= 1")
        ),
    )
    max_concurrency: int = field(
        default=1,
        metadata=_doc("identify buckets it reports", _between(1, float("inf"), "an integer >= 1")),
    )
    heartbeat_interval: float = field(
        default=41.25,
        metadata=_doc(
            "seconds between heartbeats it asks for", _above(0, "a number of seconds > 0")
        ),
    )
    guilds: int = field(
        default=3,
        metadata=_doc("number of fake guilds", _between(0, float("inf"), "an integer >= 0")),
    )
    chatter_interval: float = field(
        default=2.0,
        metadata=_doc(
            "seconds between simulated user messages (0: none)",
            _between(0, float("inf"), "a number of seconds >= 0"),
        ),
    )


# ---------------------------------------------------------------------------
# The whole file


@dataclass(frozen=True, slots=True)
class Config:
    """A checked botrun config file. ``path`` is the file's absolute path."""

    discord: DiscordConfig = field(default_factory=DiscordConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    plugins: PluginsConfig = field(default_factory=PluginsConfig)
    sessions: SessionsConfig = field(default_factory=SessionsConfig)
    rest: RestConfig = field(default_factory=RestConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    emulator: EmulatorConfig = field(default_factory=EmulatorConfig)
    path: Path = field(default=Path("config.toml"), metadata={"internal": True})

    @property
    def resolved_intents(self) -> int:
        """The intents bitfield to IDENTIFY with."""
        intents = self.discord.intents
        if isinstance(intents, int):
            return intents
        return functools.reduce(operator.or_, (int(Intents[name]) for name in intents), 0)


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and check the config file at ``path``.

    Relative paths in the file are resolved against its directory. With
    ``environ``, the token is also checked (:func:`resolve_token`), so that a
    missing one is reported before anything connects; without it, only the
    file is checked.

    Raises:
        ConfigError: the file is missing, unreadable, not TOML, or invalid.
    """
    try:
        with open(path, "rb") as f:
            data = tomli.load(f)
    except FileNotFoundError:
        raise ConfigError(path, "", "no such file (copy config.example.toml to start)") from None
    except IsADirectoryError:
        raise ConfigError(path, "", "is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror or exc}") from None
    except tomli.TOMLDecodeError as exc:
        raise ConfigError(path, "", exc.msg, line=exc.lineno, column=exc.colno) from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(path, "", "not valid UTF-8 text", line=line) from None
    except ValueError:  # A NUL in the path.
        raise ConfigError(path, "", "is not a valid file name") from None
    except RecursionError:
        raise ConfigError(path, "", "arrays or inline tables are nested too deeply") from None
    config = replace(build(Config, data, path="", file=path), path=Path(os.path.abspath(path)))
    if environ is not None:
        resolve_token(config, environ)
    return config


def resolve_token(config: Config, environ: Mapping[str, str] | None = None) -> str | None:
    """The bot token: the literal ``token``, else the variable named by ``token_env``.

    The token is returned as a :class:`Secret`, so a stray ``repr`` hides it.
    Returns None only when the emulator is enabled and no token is
    configured; the runtime then uses the emulator's token.

    Raises:
        ConfigError: no token is configured and the emulator is off.
    """
    discord = config.discord
    if discord.token is not None:
        return Secret(discord.token)
    value = (os.environ if environ is None else environ).get(discord.token_env, "").strip()
    if value:
        return Secret(value)
    if config.emulator.enabled:
        return None
    raise ConfigError(
        config.path,
        "discord.token_env",
        f"the environment variable {discord.token_env} is not set; set it to the bot token "
        "(or set [emulator] enabled = true to run offline)",
    )
