"""Helpers of the end-to-end tests: configs, a botrun subprocess, the plugins' records.

Every test talks to a real ``botrun`` process; the only Discord it can reach is
the :class:`~sharder.testing.FakeDiscord` the test runs on loopback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import anyio
import anyio.abc

from sharder.testing import FakeDiscord, RecordedMessage
from sharder.testing._chatter import message_create
from sharder.testing._data import guild_ids_for_shard, user

E2E = Path(__file__).resolve().parent
REPO = E2E.parents[1]
DROPIN = E2E / "dropin"
SAMPLE_PLUGIN = E2E / "sample_plugin"

TOKEN_ENV = "BOTRUN_E2E_TOKEN"
TOKEN = "ODc2NTQzMjEwOTg3NjU0MzIx.GqE2eX.e2e-S3cr3t_t0ken-MUST-never-be-logged-9f4c"
"""Distinctive, so that any piece of it in an output is a leak."""

STARTUP_TIMEOUT = 20.0
"""Seconds a bot gets from its start to READY reaching the plugins."""
STEP_TIMEOUT = 10.0
"""Seconds any other single step may take."""

TRACEBACK = "Traceback (most recent call last)"


# ---------------------------------------------------------------------- config and env


def write_config(
    directory: Path,
    *,
    api_base: str,
    record: Path | None = None,
    plugin_paths: Sequence[Path] = (DROPIN,),
    recording_plugins: Sequence[str] = ("recorder",),
    extra: str = "",
    name: str = "botrun.toml",
) -> Path:
    """A config for a bot against the emulator at ``api_base``, as a real user writes it.

    Each of ``recording_plugins`` (the drop-in ``recorder``, the installed
    ``e2e_sample``) gets a settings table telling it to append what it receives
    to ``record``.
    """
    paths = ", ".join(json.dumps(str(p)) for p in plugin_paths)
    tables = "".join(
        f"[plugins.{plugin}]\nrecord = {json.dumps(str(record))}\n\n"
        for plugin in (recording_plugins if record is not None else ())
    )
    text = f"""\
[discord]
token_env = "{TOKEN_ENV}"
api_base = "{api_base}"
intents = ["GUILDS", "GUILD_MESSAGES", "MESSAGE_CONTENT"]

[gateway]
identify_timeout = 5.0

[plugins]
paths = [{paths}]
shutdown_grace = 5.0

{tables}[emulator]
enabled = false

{extra}
"""
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def bot_env(**extra: str) -> dict[str, str]:
    """The environment of a botrun subprocess: the token, and no settings of ours leaking in."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BOTRUN_", "DISCORD_"))
    }
    env[TOKEN_ENV] = TOKEN
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def token_leaks(text: str) -> list[str]:
    """The pieces of the token (whole, or any dot-separated part) found in ``text``."""
    return [piece for piece in (TOKEN, *TOKEN.split(".")) if piece in text]


def assert_no_token(text: str) -> None:
    leaks = token_leaks(text)
    assert not leaks, f"the token leaked ({leaks}) into:\n{text}"


def assert_clean_log(text: str) -> None:
    """No traceback, nothing logged at ERROR or above, no token."""
    assert TRACEBACK not in text, text
    bad = [line for line in text.splitlines() if " ERROR " in line or " CRITICAL " in line]
    assert not bad, "\n".join(bad)
    assert_no_token(text)


# ---------------------------------------------------------------------- processes


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


async def run_cli(
    argv: Sequence[str | Path],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> CliResult:
    """Run a command that ends by itself (``botrun check``, ``pip install``...)."""
    with anyio.fail_after(timeout):
        done = await anyio.run_process(
            [str(arg) for arg in argv],
            cwd=cwd,
            env=dict(env if env is not None else bot_env()),
            check=False,
            stdin=subprocess.DEVNULL,
        )
    return CliResult(
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


def botrun(*args: str | Path) -> list[str]:
    """``botrun ARGS`` through the installed console script (the one of this interpreter)."""
    script = Path(sys.executable).with_name("botrun")
    command = str(script) if script.exists() else "botrun"
    return [command, *(str(arg) for arg in args)]


@dataclass
class BotProcess:
    """A running botrun; its stdout and stderr go to files, so a pipe never fills up."""

    process: anyio.abc.Process
    stdout_path: Path
    stderr_path: Path

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text("utf-8", "replace")

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    async def wait(self, timeout: float = STEP_TIMEOUT) -> int:
        """Wait for the process to end by itself; its exit status."""
        try:
            with anyio.fail_after(timeout):
                return await self.process.wait()
        except TimeoutError:
            raise AssertionError(
                f"botrun did not exit within {timeout} s; its output:\n{self.output}"
            ) from None

    async def terminate(
        self, signum: signal.Signals = signal.SIGTERM, timeout: float = STEP_TIMEOUT
    ) -> int:
        """SIGTERM (or ``signum``), then wait for a graceful exit; its exit status."""
        self.process.send_signal(signum)
        return await self.wait(timeout)

    def check_alive(self) -> None:
        if self.process.returncode is not None:
            raise AssertionError(
                f"botrun exited early with status {self.process.returncode}:\n{self.output}"
            )


def _create(path: Path) -> BinaryIO:
    return path.open("wb")


@asynccontextmanager
async def start_bot(
    argv: Sequence[str | Path],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    label: str = "bot",
) -> AsyncIterator[BotProcess]:
    """Start botrun; whatever happens in the block, the process is gone after it."""
    stdout_path = cwd / f"{label}.stdout"
    stderr_path = cwd / f"{label}.stderr"
    out, err = _create(stdout_path), _create(stderr_path)
    with out, err:
        process = await anyio.open_process(
            [str(arg) for arg in argv],
            cwd=cwd,
            env=dict(env if env is not None else bot_env()),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    try:
        yield BotProcess(process, stdout_path, stderr_path)
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
                with anyio.move_on_after(STEP_TIMEOUT):
                    await process.wait()
            await process.aclose()


# ---------------------------------------------------------------------- records and events


def read_records(path: Path) -> list[dict[str, Any]]:
    """The JSON lines the recording plugins appended (a line still being written is left out)."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


async def wait_for_records(
    path: Path,
    bot: BotProcess,
    match: Callable[[dict[str, Any]], bool],
    *,
    count: int = 1,
    timeout: float = STEP_TIMEOUT,
) -> list[dict[str, Any]]:
    """Poll ``path`` until ``count`` records match; fails early if botrun exits."""
    found: list[dict[str, Any]] = []
    try:
        with anyio.fail_after(timeout):
            while True:
                found = [r for r in read_records(path) if match(r)]
                if len(found) >= count:
                    return found
                bot.check_alive()
                await anyio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(
            f"{count} matching records not seen within {timeout} s; records: "
            f"{read_records(path)}\nbotrun output:\n{bot.output}"
        ) from None


async def wait_for_messages(
    discord: FakeDiscord,
    bot: BotProcess,
    match: Callable[[RecordedMessage], bool],
    *,
    timeout: float = STEP_TIMEOUT,
) -> list[RecordedMessage]:
    """Poll the messages posted to the emulator's REST API until one matches."""
    try:
        with anyio.fail_after(timeout):
            while True:
                found = [m for m in discord.messages if match(m)]
                if found:
                    return found
                bot.check_alive()
                await anyio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(
            f"no matching message within {timeout} s; posted: {discord.messages}\n"
            f"botrun output:\n{bot.output}"
        ) from None


async def wait_until_ready(
    discord: FakeDiscord, bot: BotProcess, record: Path, plugin: str = "recorder"
) -> dict[str, Any]:
    """The emulator sent READY and ``plugin``'s on_ready got it: its record."""
    try:
        await discord.wait_for("ready", timeout=STARTUP_TIMEOUT)
    except TimeoutError:
        raise AssertionError(f"no READY; botrun output:\n{bot.output}") from None
    [ready] = await wait_for_records(
        record, bot, lambda r: r["plugin"] == plugin and r["hook"] == "on_ready"
    )
    return ready


async def wait_for_log(bot: BotProcess, text: str, *, timeout: float = STEP_TIMEOUT) -> None:
    """Poll botrun's stderr until ``text`` shows up."""
    try:
        with anyio.fail_after(timeout):
            while text not in bot.stderr:
                bot.check_alive()
                await anyio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{text!r} not logged within {timeout} s:\n{bot.output}") from None


def guild_message(content: str, *, shard_id: int = 0, total: int = 1) -> dict[str, Any]:
    """A MESSAGE_CREATE from a user in the first guild of ``shard_id``."""
    [guild_id, *_] = guild_ids_for_shard(shard_id, total, 1)
    return message_create(guild_id, user(111_222_333_444_555_666, "ada"), content)
