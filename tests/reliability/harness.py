"""The bot as a real ``botrun`` process against an emulator in the test process.

``BotProcess`` writes a config with ``[emulator] enabled = false`` and the
emulator's ``api_base``, a drop-in recording plugin in a private folder, and
starts ``python -m runtime run CONFIG`` (the ``botrun`` console script's own
entry point), with stdout and stderr captured to files per run. Every file it
writes or captures stays in its folder, so the security test can scan them.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process

from sharder.testing import FakeDiscord

__all__ = ["TOKEN", "BotProcess", "Record", "message_events"]

TOKEN = "MTExMTIyMjMzMzQ0NDU1NTY2.Gq7mZx.Vb3Kp9TnWcY2sRf6LhJd8QeNa1UoXi5GtZkMPw"
"""A token shaped like Discord's (base64 user id, timestamp, HMAC) for the restart runs."""

RECORDER = '''\
"""Appends the content of every MESSAGE_CREATE, and every debug line, to files."""

from __future__ import annotations

import json
import os
from typing import Any

import anyio

from runtime import hookimpl

_fds: dict[str, int] = {}


def _open(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


@hookimpl
def on_startup(bot: Any) -> None:
    _fds["records"] = _open(bot.settings["file"])
    _fds["debug"] = _open(bot.settings["debug_file"])


@hookimpl
async def on_message_create(bot: Any, data: dict[str, Any], shard_id: int) -> None:
    delay = float(bot.settings.get("delay", 0))
    if delay:
        await anyio.sleep(delay)
    # One unbuffered write per event: what was handled is on disk even after a SIGKILL.
    os.write(_fds["records"], f"{shard_id} {data['content']}\\n".encode())


@hookimpl
def on_debug(data: Any, shard_id: int) -> None:
    os.write(_fds["debug"], f"{shard_id} {data}\\n".encode())


@hookimpl
def on_error(data: Any, shard_id: int) -> None:
    os.write(_fds["debug"], f"{shard_id} ERROR {data!r}\\n".encode())
'''


@dataclass(frozen=True, slots=True)
class Record:
    shard_id: int
    content: str


def message_events(prefix: str, start: int, count: int) -> list[tuple[str, dict[str, Any]]]:
    """MESSAGE_CREATEs whose contents are ``prefix0``, ``prefix1``, ..."""
    return [
        ("MESSAGE_CREATE", {"id": str(10_000 + i), "channel_id": "1", "content": f"{prefix}{i}"})
        for i in range(start, start + count)
    ]


class BotProcess:
    """Runs, stops and restarts the bot; reads what its recording plugin wrote."""

    def __init__(
        self,
        workdir: Path,
        discord: FakeDiscord,
        *,
        token: str = TOKEN,
        save_interval: float = 0.2,
        delay: float = 0.0,
        shutdown_grace: float = 5.0,
        plugins: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.token = token
        self.runs = 0
        self.process: Process | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(workdir, 0o700)
        folder = workdir / "plugins.d"
        folder.mkdir(mode=0o700, exist_ok=True)
        sources = {"recorder": RECORDER, **(plugins or {})}
        for name, source in sources.items():
            (folder / f"{name}.py").write_text(source, encoding="utf-8")
        self.records_path = workdir / "records.txt"
        self.sessions_path = workdir / "sessions.json"
        self.config_path = workdir / "bot.toml"
        self.config_path.write_text(
            f"""\
[discord]
token_env = "RELIABILITY_BOT_TOKEN"
api_base = "{discord.api_base}"
intents = ["GUILDS", "GUILD_MESSAGES", "MESSAGE_CONTENT"]

[plugins]
paths = ["plugins.d"]
enabled = {json.dumps(list(sources))}
shutdown_grace = {shutdown_grace}

[plugins.recorder]
file = "{self.records_path}"
debug_file = "{workdir / "debug.txt"}"
delay = {delay}

[sessions]
file = "{self.sessions_path.name}"
save_interval = {save_interval}

[emulator]
enabled = false
""",
            encoding="utf-8",
        )

    async def start(self, *, backend: str = "asyncio", log_level: str = "DEBUG") -> None:
        assert self.process is None or self.process.returncode is not None
        self.runs += 1
        env = {**os.environ, "RELIABILITY_BOT_TOKEN": self.token, "PYTHONUNBUFFERED": "1"}
        env.pop("BOTRUN_LOAD_PLUGINS", None)
        command = [sys.executable, "-m", "runtime", "run", str(self.config_path)]
        command += ["--backend", backend, "--log-level", log_level]
        with (
            (self.workdir / f"stdout-{self.runs}.txt").open("wb") as stdout,
            (self.workdir / f"stderr-{self.runs}.txt").open("wb") as stderr,
        ):
            self.process = await anyio.open_process(
                command, cwd=self.workdir, env=env, stdout=stdout, stderr=stderr
            )

    async def stop(self, signum: signal.Signals = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``signum`` and return the exit status (killing the bot after ``timeout``)."""
        process = self.process
        assert process is not None
        process.send_signal(signum)
        with anyio.move_on_after(timeout):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
            raise AssertionError(f"the bot did not exit within {timeout} s of {signum.name}")
        return process.returncode

    async def kill(self) -> None:
        """Make sure the bot is gone (for ``finally``)."""
        process = self.process
        if process is not None and process.returncode is None:
            with anyio.CancelScope(shield=True):
                process.kill()
                await process.wait()

    def records(self) -> list[Record]:
        try:
            text = self.records_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        lines = text.split("\n")[:-1]  # a last line without its newline is still being written
        return [Record(int(shard), content) for shard, content in (x.split(" ", 1) for x in lines)]

    async def wait_records(self, count: int, timeout: float = 20.0) -> list[Record]:
        with anyio.move_on_after(timeout):
            while len(records := self.records()) < count:
                if self.process is not None and self.process.returncode is not None:
                    break
                await anyio.sleep(0.02)
            return records
        raise AssertionError(
            f"the plugin recorded {len(self.records())} of {count} events "
            f"within {timeout} s\n{self.stderr()[-3000:]}"
        )

    def stderr(self, run: int | None = None) -> str:
        run = self.runs if run is None else run
        path = self.workdir / f"stderr-{run}.txt"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def outputs(self) -> list[Path]:
        """Every file the bot wrote or whose output was captured (not the config)."""
        return sorted(p for p in self.workdir.iterdir() if p.is_file() and p != self.config_path)


def signal_name(code: int) -> str:
    return signal.Signals(-code).name if code < 0 else str(code)
