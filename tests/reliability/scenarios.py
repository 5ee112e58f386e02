"""The restart proofs, run once per test session (the security test scans their outputs)."""

from __future__ import annotations

import json
import signal
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from sharder.testing import FakeDiscord, TimelineEntry
from tests.reliability.harness import TOKEN, BotProcess, Record, message_events

__all__ = ["RestartRun", "run_sigkill_restart", "run_sigterm_restart"]


@dataclass
class RestartRun:
    """What one stop-and-restart scenario observed."""

    bot: BotProcess
    session_id: str = ""
    first_exit: int | None = None
    second_exit: int | None = None
    seq_of: dict[str, int] = field(default_factory=dict)
    """Content of every dispatched event -> its sequence number."""
    before: list[Record] = field(default_factory=list)
    """What the plugin recorded during the first run."""
    after: list[Record] = field(default_factory=list)
    """What it recorded during the second run."""
    saved: dict[str, Any] = field(default_factory=dict)
    """The sessions file right after the first run ended."""
    saved_mode: int = 0
    first_run: list[TimelineEntry] = field(default_factory=list)
    restart: list[TimelineEntry] = field(default_factory=list)
    """The emulator's timeline from the second start on."""

    def saved_sequence(self) -> int:
        return int(self.saved["shards"]["0"]["sequence"])

    def entries(self, kind: str) -> list[TimelineEntry]:
        return [e for e in self.restart if e.kind == kind]


def emulator() -> FakeDiscord:
    return FakeDiscord(token=TOKEN, heartbeat_interval=1.0, identify_window=0.5)


def _read_saved(run: RestartRun) -> None:
    path = run.bot.sessions_path
    run.saved = json.loads(path.read_text(encoding="utf-8"))
    run.saved_mode = stat.S_IMODE(path.stat().st_mode)


async def _dispatch(discord: FakeDiscord, run: RestartRun, prefix: str, start: int, n: int) -> None:
    events = message_events(prefix, start, n)
    seqs = await discord.dispatch_many(0, events)
    run.seq_of.update((data["content"], seq) for (_, data), seq in zip(events, seqs, strict=True))


async def run_sigterm_restart(workdir: Path) -> RestartRun:
    """1,000 events, SIGTERM, 500 more queued on the emulator, restart: the 500 arrive."""
    async with emulator() as discord:
        run = RestartRun(BotProcess(workdir, discord))
        bot = run.bot
        try:
            await bot.start()
            [ready] = await discord.wait_for("ready", shard_id=0, timeout=30)
            run.session_id = ready.session_id or ""
            await _dispatch(discord, run, "a", 0, 1000)
            run.before = await bot.wait_records(1000)
            mark = len(discord.timeline)
            run.first_exit = await bot.stop(signal.SIGTERM)
            _read_saved(run)
            await discord.wait_for("disconnect", since=mark, timeout=10)
            run.first_run = discord.timeline[:]
            await _dispatch(discord, run, "b", 0, 500)
            restart = len(discord.timeline)
            await bot.start()
            await discord.wait_for("resumed", shard_id=0, since=restart, timeout=30)
            await bot.wait_records(1500)
            await anyio.sleep(0.5)  # time for a duplicate to show up
            run.second_exit = await bot.stop(signal.SIGTERM)
            run.after = bot.records()[len(run.before) :]
            run.restart = discord.timeline[restart:]
        finally:
            await bot.kill()
    return run


async def run_sigkill_restart(workdir: Path) -> RestartRun:
    """SIGKILL while the plugin lags behind the shard, 500 more events, restart."""
    async with emulator() as discord:
        # The plugin takes 2 ms an event, so the shard reads far ahead of it.
        run = RestartRun(BotProcess(workdir, discord, delay=0.002, save_interval=0.1))
        bot = run.bot
        try:
            await bot.start(backend="trio")
            [ready] = await discord.wait_for("ready", shard_id=0, timeout=30)
            run.session_id = ready.session_id or ""
            for batch in range(10):
                await _dispatch(discord, run, "k", batch * 100, 100)
                await anyio.sleep(0.01)
            await bot.wait_records(400)
            mark = len(discord.timeline)
            run.first_exit = await bot.stop(signal.SIGKILL)
            run.before = bot.records()
            _read_saved(run)
            await discord.wait_for("disconnect", since=mark, timeout=10)
            run.first_run = discord.timeline[:]
            await _dispatch(discord, run, "k", 1000, 500)
            restart = len(discord.timeline)
            await bot.start(backend="asyncio")
            await discord.wait_for("resumed", shard_id=0, since=restart, timeout=30)
            wanted = set(run.seq_of)
            with anyio.fail_after(30):
                while not wanted <= {r.content for r in bot.records()}:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            await anyio.sleep(0.5)  # time for a duplicate to show up
            run.second_exit = await bot.stop(signal.SIGTERM)
            run.after = bot.records()[len(run.before) :]
            run.restart = discord.timeline[restart:]
        finally:
            await bot.kill()
    return run
