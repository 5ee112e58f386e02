"""Sessions survive restarts: proven through the real CLI, against the emulator.

The bot runs as a ``botrun`` process; the emulator runs in the test process,
so the test sees exactly what Discord would: which close code the bot sent,
whether it resumed or identified, and at which sequence it resumed.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import anyio
import pytest

from sharder.testing import FakeDiscord
from tests.reliability.harness import TOKEN, BotProcess, message_events
from tests.reliability.scenarios import RestartRun

pytestmark = pytest.mark.slow


def _seqs(run: RestartRun, records: list[str]) -> list[int]:
    return [run.seq_of[content] for content in records]


# ---------------------------------------------------------------- SIGTERM


def test_sigterm_then_restart_resumes_and_delivers_exactly_the_queued_events(
    sigterm_run: RestartRun,
) -> None:
    run = sigterm_run
    assert run.first_exit == 0, run.bot.stderr(1)[-3000:]
    assert [r.content for r in run.before] == [f"a{i}" for i in range(1000)]
    # The restart resumed the saved session: no IDENTIFY reached the emulator.
    assert run.entries("identify") == []
    [resume] = run.entries("resume")
    assert resume.session_id == run.session_id
    assert resume.detail["seq"] == run.saved_sequence() == run.seq_of["a999"]
    [resumed] = run.entries("resumed")
    assert resumed.detail["replayed"] == 500
    # Exactly the 500 queued events, once each, in order, and nothing else.
    assert [r.content for r in run.after] == [f"b{i}" for i in range(500)]
    assert run.second_exit == 0, run.bot.stderr(2)[-3000:]


def test_graceful_shutdown_closes_with_a_code_that_keeps_the_session(
    sigterm_run: RestartRun,
) -> None:
    closes = [e for e in sigterm_run.first_run if e.kind == "client_close"]
    assert [e.detail["code"] for e in closes] == [4099]
    assert all(
        e.detail["code"] not in (1000, 1001) for e in sigterm_run.restart if "code" in e.detail
    )
    assert "shutting down" in sigterm_run.bot.stderr(1)


def test_the_sessions_file_is_written_atomically_with_mode_0600(sigterm_run: RestartRun) -> None:
    run = sigterm_run
    assert run.saved_mode == 0o600
    [(shard_id, session)] = run.saved["shards"].items()
    assert shard_id == "0"
    assert set(session) == {"session_id", "sequence", "resume_url"}
    assert session["session_id"] == run.session_id
    # No temporary file is left behind next to it.
    leftovers = [p.name for p in run.bot.workdir.iterdir() if p.name.startswith(".sessions")]
    assert leftovers == []
    log = run.bot.stderr(2)
    assert "resuming 1 sessions" in log
    assert "shard 0 resumed its saved session: 500 events replayed" in log


# ---------------------------------------------------------------- SIGKILL


def test_sigkill_then_restart_resumes_from_the_last_saved_sequence_and_loses_nothing(
    sigkill_run: RestartRun,
) -> None:
    run = sigkill_run
    assert run.first_exit == -signal.SIGKILL
    saved = run.saved_sequence()
    before = _seqs(run, [r.content for r in run.before])
    after = _seqs(run, [r.content for r in run.after])
    # Killed mid-stream: the shard had read all 1,000 events, the plugin had not handled them.
    assert 400 <= len(before) < 1000
    # The saved sequence is one every plugin had finished with, never one merely received.
    assert saved <= max(before)
    assert set(range(2, saved + 1)) <= set(before)
    # The restart resumed (no IDENTIFY) from exactly that sequence...
    assert run.entries("identify") == []
    [resume] = run.entries("resume")
    assert (resume.session_id, resume.detail["seq"]) == (run.session_id, saved)
    # ...and the plugin then got every later event once, in order: nothing is missing.
    expected = sorted(seq for seq in run.seq_of.values() if seq > saved)
    assert after == expected
    assert set(before) | set(after) == set(run.seq_of.values())
    # Events handled after the last save are replayed: allowed after a crash, and counted.
    replayed = sorted(set(before) & set(after))
    assert replayed == [seq for seq in before if seq > saved]
    print(f"SIGKILL restart: saved sequence {saved}, {len(replayed)} events replayed")
    assert run.second_exit == 0, run.bot.stderr(2)[-3000:]


# ---------------------------------------------------------------- a session that is gone


def test_a_session_discord_no_longer_accepts_falls_back_to_identify_with_a_log_line(
    tmp_path: Path,
) -> None:
    anyio.run(_session_gone, tmp_path)


async def _session_gone(tmp_path: Path) -> None:
    # Discord forgets a detached session after a while: 0.5 s here.
    async with FakeDiscord(
        token=TOKEN, heartbeat_interval=1.0, identify_window=0.2, resume_timeout=0.5
    ) as discord:
        bot = BotProcess(tmp_path / "bot", discord)
        try:
            await bot.start()
            await discord.wait_for("ready", shard_id=0, timeout=30)
            await discord.dispatch_many(0, message_events("x", 0, 10))
            await bot.wait_records(10)
            assert await bot.stop() == 0
            saved = json.loads(bot.sessions_path.read_text(encoding="utf-8"))
            await anyio.sleep(1.0)
            mark = len(discord.timeline)
            await bot.start()
            await discord.wait_for("ready", shard_id=0, since=mark, timeout=30)
            await discord.dispatch_many(0, message_events("y", 0, 5))
            records = await bot.wait_records(15)
            assert await bot.stop() == 0
        finally:
            await bot.kill()
    [resume] = discord.entries("resume")
    assert resume.session_id == saved["shards"]["0"]["session_id"]
    assert discord.entries("invalid_session_sent")[-1].detail["resumable"] is False
    assert len(discord.entries("identify")) == 2
    assert [r.content for r in records[10:]] == [f"y{i}" for i in range(5)]
    log = bot.stderr(2)
    assert "could not resume" in log, log[-3000:]
