"""``botrun``: run a bot, check a config, list plugins.

Exit status: 0 on success, 1 when the bot fails (a rejected token, every shard
stopped), 2 for a usage error, 78 (EX_CONFIG) for a bad config or plugin.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import textwrap
import threading
from collections.abc import Sequence
from typing import Any

import anyio

from . import __version__
from .config import Config, load_config, resolve_token
from .errors import EX_CONFIG, BotrunError, ConfigError, PluginError
from .logs import configure_logging
from .plugins import PluginSet, load_plugins

__all__ = ["main"]

COMMANDS = ("run", "check", "plugins")
_TOP_LEVEL_OPTIONS = ("-h", "--help", "--version")
logger = logging.getLogger("botrun")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="botrun",
        description="A plugin-driven Discord bot runtime.\n"
        "'botrun CONFIG' runs the bot (same as 'botrun run CONFIG').",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"botrun {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="run the bot until SIGINT or SIGTERM (the default)")
    run.add_argument("config", help="path of the TOML config file")
    run.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default=os.environ.get("BOTRUN_BACKEND", "asyncio"),
        help="async backend to run on (default: asyncio, or $BOTRUN_BACKEND)",
    )
    run.add_argument("--log-level", help="override [logging] level (DEBUG, INFO, WARNING, ERROR)")

    check = commands.add_parser(
        "check", help="validate the config and load every plugin, without connecting"
    )
    check.add_argument("config", help="path of the TOML config file")

    plugins = commands.add_parser("plugins", help="list every plugin found and its hooks")
    plugins.add_argument("config", help="path of the TOML config file")
    plugins.add_argument("--json", action="store_true", help="print JSON instead of a table")
    # The top-level help lists every command's options, not only the command names.
    parser.epilog = (
        _commands_help({"run": run, "check": check, "plugins": plugins})
        + "\n\nExit status: 0 ok, 1 the bot failed, 2 usage error, 78 bad config or plugin."
    )
    return parser


def _commands_help(commands: dict[str, argparse.ArgumentParser]) -> str:
    """Each command's usage line and options, for the top-level ``--help``."""
    width = shutil.get_terminal_size().columns - 6
    lines = ["options of each command (botrun COMMAND --help for more):"]
    for command in commands.values():
        lines.append("  " + " ".join(command.format_usage().removeprefix("usage: ").split()))
        options = [
            action
            for action in command._actions
            if action.option_strings and not isinstance(action, argparse._HelpAction)
        ]
        if options:
            formatter = argparse.HelpFormatter(command.prog, max_help_position=30, width=width)
            formatter.add_arguments(options)
            lines.append(textwrap.indent(formatter.format_help().rstrip("\n"), "    "))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``botrun`` console script."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] not in COMMANDS and args_list[0] not in _TOP_LEVEL_OPTIONS:
        args_list.insert(0, "run")  # 'botrun CONFIG', 'botrun --backend trio CONFIG'...
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "check":
            return _check(args.config)
        if args.command == "plugins":
            return _plugins(args.config, as_json=args.json)
        return _run(args.config, backend=args.backend, log_level=args.log_level)
    except ConfigError as exc:
        print(f"botrun: config error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except PluginError as exc:
        print(f"botrun: plugin error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except BotrunError as exc:
        print(f"botrun: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _run(path: str, *, backend: str, log_level: str | None) -> int:
    config = load_config(path)
    redactor = configure_logging(log_level or config.logging.level, config.logging.format)
    token = resolve_token(config)
    if token:
        redactor.add(token)
    from .bot import Bot

    plugins = load_plugins(config)
    bot = Bot(config, plugins=plugins)
    code = anyio.run(bot.run, backend=backend)
    _exit_despite_hung_threads(code)
    return code


def _exit_despite_hung_threads(code: int) -> None:
    """Leave now if a cancelled ``@in_thread`` handler still runs.

    Python waits for every non-daemon thread at exit, and asyncio's worker
    threads are not daemons: without this, one hung handler would hold the
    process long after the shutdown grace.
    """
    hung = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if not any(t.is_alive() for t in hung):
        return
    logger.warning("exiting with %d handler thread(s) still running", len(hung))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _check(path: str) -> int:
    config = load_config(path)
    configure_logging("WARNING")
    resolve_token(config)
    from .bot import check_paths

    check_paths(config)
    plugins = load_plugins(config, strict=True)
    for line in describe(config, plugins):
        print(line)
    return 0


def describe(config: Config, plugins: PluginSet) -> list[str]:
    """The summary ``botrun check`` prints."""
    from sharder import Intents

    gateway = config.gateway
    if gateway.total is not None:
        shards = f"ids {list(gateway.ids or range(gateway.total))} of {gateway.total}"
    else:
        shards = str(gateway.shards)
    intents = config.resolved_intents
    names = [m.name for m in Intents if m.value & intents and m.name and m.value.bit_count() == 1]
    lines = [
        f"config: {config.path} is valid",
        f"shards: {shards}",
        f"intents: {intents} ({', '.join(dict.fromkeys(names)) or 'none'})",
        f"gateway: {gateway.compression} compression, {gateway.encoding} encoding, "
        f"large_threshold {gateway.large_threshold}",
        f"emulator: {'on' if config.emulator.enabled else 'off'}",
        plugins.summary(),
    ]
    for plugin in plugins.plugins:
        state = "loaded" if plugin.loaded else "disabled" if not plugin.enabled else "FAILED"
        lines.append(
            f"  {plugin.name} [{plugin.source}, {state}]: {', '.join(plugin.hooks) or '-'}"
        )
    return lines


def _plugins(path: str, *, as_json: bool) -> int:
    config = load_config(path)
    configure_logging("CRITICAL")
    plugins = load_plugins(config, strict=False)
    rows: list[dict[str, Any]] = [p.as_dict() for p in plugins.plugins]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        state = "enabled" if row["enabled"] else "disabled"
        if row["error"]:
            state = f"failed: {row['error']}"
        print(f"{row['name']} {row['version'] or '-'} ({row['source']}: {row['origin']}) {state}")
        print(f"    hooks: {', '.join(row['hooks']) or '-'}")
    return 0
