"""Slow, hung and blocking plugins: bounded shutdown, named culprits, heartbeats that go on.

The bot runs in-process (``Bot.run``) against an emulator of the test's own,
so that the emulator can hold the bot to Discord's heartbeat rule: with
``heartbeat_timeout`` it ends the session (4009) of a connection whose
heartbeats stop, exactly what a stalled shard would suffer on Discord.
"""

from __future__ import annotations

import gc
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

from runtime.bot import Bot
from runtime.config import load_config
from sharder.testing import FakeDiscord
from tests.reliability.harness import TOKEN, BotProcess, message_events

pytestmark = pytest.mark.slow

HUNG_ASYNC = """
import anyio
from runtime import hookimpl

entered = []


@hookimpl
async def on_message_create(data):
    if data.get("content") == "hang":
        entered.append(True)
        await anyio.sleep_forever()
"""

HUNG_THREAD = """
import threading

from runtime import hookimpl, in_thread

entered = threading.Event()
release = threading.Event()


@hookimpl
@in_thread
def on_message_create(data):
    if data.get("content") == "hang":
        entered.set()
        release.wait(30)
"""

BUSY = """
import anyio
from runtime import hookimpl


@hookimpl
async def on_message_create(data):
    await anyio.sleep(0.2)
"""

RECORDER = """
from runtime import hookimpl

seen = []


@hookimpl
def on_message_create(data, shard_id):
    seen.append((shard_id, data.get("content")))
"""

SLOWPOKE = """
import time
from runtime import hookimpl


@hookimpl
def on_message_create(data):
    if data.get("content") == "block":
        time.sleep(0.4)
"""

BLOCKER = """
import threading
import time
from runtime import hookimpl, in_thread

started = threading.Event()
finished = threading.Event()


@hookimpl
@in_thread
def on_message_create(data):
    if data.get("content") == "block":
        started.set()
        time.sleep(2.0)
        finished.set()
"""

BLOCKER_IN_LOOP = BLOCKER.replace("@in_thread\n", "")

STUCK = """
import anyio
from runtime import hookimpl

release = None
got = []


@hookimpl
async def on_message_create(data, shard_id):
    global release
    if release is None:
        release = anyio.Event()
    await release.wait()
    got.append((shard_id, data.get("content")))
"""


@dataclass
class RunningBot:
    bot: Bot
    discord: FakeDiscord
    done: anyio.Event = field(default_factory=anyio.Event)
    exit_code: int | None = None

    def plugin(self, name: str) -> Any:
        module = self.bot.plugins.by_name(name).module
        assert isinstance(module, ModuleType)
        return module

    async def stop(self, timeout: float = 20.0) -> float:
        """Stop the bot; seconds until ``run`` returned."""
        started = time.monotonic()
        self.bot.stop()
        with anyio.fail_after(timeout):
            await self.done.wait()
        return time.monotonic() - started


@asynccontextmanager
async def running_bot(
    tmp_path: Path,
    plugins: dict[str, str],
    *,
    shards: int = 1,
    heartbeat_timeout: float | None = None,
    **plugin_options: Any,
) -> AsyncIterator[RunningBot]:
    """A Bot with these drop-in plugins, every shard ready, against a fresh emulator."""
    folder = tmp_path / "plugins.d"
    folder.mkdir(mode=0o700)
    for name, source in plugins.items():
        (folder / f"{name}.py").write_text(source, encoding="utf-8")
    options = {"shutdown_grace": 5.0, **plugin_options}
    settings = "\n".join(
        f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"'
        for key, value in options.items()
    )
    async with FakeDiscord(
        token=TOKEN,
        shards=shards,
        max_concurrency=shards,
        heartbeat_interval=0.2,
        heartbeat_timeout=heartbeat_timeout,
    ) as discord:
        path = tmp_path / "bot.toml"
        path.write_text(
            f"""\
[discord]
token_env = "RELIABILITY_TOKEN"
api_base = "{discord.api_base}"
intents = ["GUILDS", "GUILD_MESSAGES", "MESSAGE_CONTENT"]

[plugins]
paths = ["plugins.d"]
enabled = {list(plugins)!r}
{settings}

[emulator]
enabled = false
""".replace("'", '"'),
            encoding="utf-8",
        )
        environ = {"RELIABILITY_TOKEN": TOKEN}
        bot = Bot(load_config(path, environ=environ), environ=environ)
        running = RunningBot(bot, discord)

        async def run() -> None:
            try:
                running.exit_code = await bot.run(handle_signals=False)
            finally:
                running.done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            for shard_id in range(shards):
                await discord.wait_for("ready", shard_id=shard_id, timeout=15)
            try:
                yield running
            finally:
                bot.stop()
                with anyio.move_on_after(20):
                    await running.done.wait()
                tg.cancel_scope.cancel()


@pytest.fixture
def info_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)
    return caplog


async def poll_until(predicate: Callable[[], object], timeout: float) -> None:
    """Poll ``predicate`` (plugin state, logs: nothing to wait on) until true."""
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.005)


def _beats(discord: FakeDiscord, shard_id: int, since: float, until: float) -> int:
    return sum(1 for e in discord.entries("heartbeat_ack", shard_id) if since <= e.time <= until)


def _stuck_and_recorder(tmp_path: Path, **options: Any) -> AbstractAsyncContextManager[RunningBot]:
    """A bot with a stuck plugin and a recorder, two shards, a backlog of 5."""
    plugins = {"stuck": STUCK, "rec": RECORDER}
    return running_bot(tmp_path, plugins, shards=2, heartbeat_timeout=1.0, backlog=5, **options)


async def _flood_both_shards(discord: FakeDiscord, rec: Any = None, step: int = 100) -> None:
    """100 events to each shard, ``step`` at a time; with ``rec``, each step once it has them.

    The emulator writes what is queued at once, so a step arrives in one read, and a
    read's events reach the plugins' queues a slice of up to 64 at a time.
    """
    for start in range(0, 100, step):
        for shard_id in (0, 1):
            await discord.dispatch_many(shard_id, message_events(f"s{shard_id}-", start, step))
        if rec is not None:
            await poll_until(lambda: len(rec.seen) >= 2 * (start + step), 5)  # noqa: B023


def _all_in_order(seen: list[tuple[int, str]]) -> bool:
    """Whether ``seen`` holds both shards' 100 events, each shard's in order."""
    return all(
        [c for s, c in seen if s == shard_id] == [f"s{shard_id}-{i}" for i in range(100)]
        for shard_id in (0, 1)
    )


# ---------------------------------------------------------------- shutdown


async def test_the_startup_heap_is_frozen_while_the_bot_runs_and_given_back_when_it_stops(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path, {"rec": RECORDER}) as running:
        assert gc.get_freeze_count() > 0  # runtime.heap: full collections skip it
        await running.stop()
        assert running.exit_code == 0
    assert gc.get_freeze_count() == 0


async def test_shutdown_with_busy_and_hung_handlers_ends_within_the_grace_and_names_them(
    tmp_path: Path, info_logs: pytest.LogCaptureFixture
) -> None:
    plugins = {"hung_async": HUNG_ASYNC, "hung_thread": HUNG_THREAD, "busy": BUSY, "rec": RECORDER}
    async with running_bot(tmp_path, plugins, shutdown_grace=1.0) as running:
        hung_thread = running.plugin("hung_thread")
        try:
            events = [("MESSAGE_CREATE", {"content": "hang", "channel_id": "1"})]
            await running.discord.dispatch_many(0, events + message_events("m", 0, 30))
            hung_async, rec = running.plugin("hung_async"), running.plugin("rec")
            await poll_until(lambda: hung_async.entered and hung_thread.entered.is_set(), 5)
            await poll_until(lambda: len(rec.seen) == 31, 5)
            took = await running.stop()
        finally:
            hung_thread.release.set()
    # 1 s of grace, then the hung ones are cancelled: the whole shutdown stays bounded.
    assert took < 1.0 + 1.5, took
    assert running.exit_code == 0
    cancelled = [r.getMessage() for r in info_logs.records if "cancelled a handler" in r.message]
    text = "\n".join(cancelled)
    assert "plugin 'hung_async' in on_message_create" in text
    assert "plugin 'hung_thread' in on_message_create" in text
    assert "plugin 'busy' in on_message_create" in text  # 0.2 s an event, 31 events: too slow
    assert "'rec'" not in text  # the recorder had finished everything
    assert len(cancelled) == 3


def test_the_default_shutdown_grace_is_ten_seconds(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("")
    assert load_config(path).plugins.shutdown_grace == 10.0


# ---------------------------------------------------------------- slow handlers


async def test_a_sync_handler_blocking_the_loop_is_reported_by_plugin_and_hook(
    tmp_path: Path, info_logs: pytest.LogCaptureFixture
) -> None:
    plugins = {"slowpoke": SLOWPOKE}
    async with running_bot(tmp_path, plugins, slow_handler_warning=0.2) as running:
        await running.discord.dispatch_many(0, message_events("fast", 0, 5))
        await running.discord.dispatch(0, "MESSAGE_CREATE", {"content": "block", "channel_id": "1"})
        await poll_until(
            lambda: any("blocked the event loop" in r.message for r in info_logs.records), 5
        )
    # One line from the watchdog while it blocks, one from the worker when it returns.
    warnings = [r for r in info_logs.records if "blocked the event loop" in r.message]
    assert warnings
    for warning in warnings:
        assert warning.levelno == logging.WARNING
        message = warning.getMessage()
        assert "plugin 'slowpoke'" in message
        assert "in on_message_create" in message
        assert "in_thread" in message  # says what to do about it


@pytest.mark.parametrize("marked", [True, False], ids=["in_thread", "in_loop"])
async def test_in_thread_keeps_heartbeats_flowing_while_a_handler_blocks_for_2_s(
    tmp_path: Path, marked: bool
) -> None:
    plugins = {"blocker": BLOCKER if marked else BLOCKER_IN_LOOP, "rec": RECORDER}
    ticks: list[float] = []

    async def tick() -> None:
        while True:
            ticks.append(anyio.current_time())
            await anyio.sleep(0.05)

    async with running_bot(tmp_path, plugins, shards=2, slow_handler_warning=5.0) as running:
        discord = running.discord
        blocker = running.plugin("blocker")
        async with anyio.create_task_group() as tg:
            tg.start_soon(tick)
            await discord.dispatch(0, "MESSAGE_CREATE", {"content": "block", "channel_id": "1"})
            await poll_until(blocker.started.is_set, 5)
            since = anyio.current_time()
            await discord.dispatch_many(1, message_events("other", 0, 5))
            await poll_until(blocker.finished.is_set, 5)
            until = anyio.current_time()
            await anyio.sleep(0.1)
            tg.cancel_scope.cancel()
        seen = list(running.plugin("rec").seen)
    stall = max(b - a for a, b in itertools.pairwise(ticks))
    beats = [_beats(discord, shard_id, since + 0.3, until) for shard_id in (0, 1)]
    if marked:
        # The event loop never stopped: 0.2 s heartbeats, each acknowledged, on both
        # shards all through the 2 s...
        assert stall < 0.5, stall
        assert min(beats) >= 6, beats
        # ...and another shard's events went to another plugin meanwhile.
        assert [c for s, c in seen if s == 1] == [f"other{i}" for i in range(5)]
        assert len(discord.entries("connect")) == 2
    else:
        # The same handler without the marker stops the whole event loop for 2 s: no
        # heartbeat, no event, nothing (this emulator runs on that loop too).
        assert stall >= 1.9, stall


# ---------------------------------------------------------------- overflow


async def test_drop_oldest_never_stalls_another_plugin_nor_any_heartbeat(
    tmp_path: Path, info_logs: pytest.LogCaptureFixture
) -> None:
    async with _stuck_and_recorder(tmp_path, overflow="drop_oldest", shutdown_grace=0.3) as running:
        discord = running.discord
        since = anyio.current_time()
        rec = running.plugin("rec")
        # In steps that fit the backlog of 5: the recorder keeps up, the stuck one drops.
        await _flood_both_shards(discord, rec, step=2)
        await anyio.sleep(1.5)  # the stuck plugin is still stuck
        until = anyio.current_time()
        stats = running.bot.router.stats() if running.bot.router is not None else {}
    assert _all_in_order(rec.seen)
    for shard_id in (0, 1):
        assert _beats(discord, shard_id, since, until) >= 6
    assert stats["stuck"]["dropped"] >= 190
    assert any("'stuck' is falling behind" in r.getMessage() for r in info_logs.records)
    # The emulator enforced the heartbeat rule (1 s) and never had to end a session.
    assert not [e for e in discord.timeline if e.kind == "server_close"]
    assert len(discord.entries("identify")) == 2


async def test_wait_spills_a_stuck_plugins_events_to_disk_and_never_stalls_another_plugin(
    tmp_path: Path, info_logs: pytest.LogCaptureFixture
) -> None:
    async with _stuck_and_recorder(tmp_path, overflow="wait") as running:
        discord, router = running.discord, running.bot.router
        assert router is not None
        since = anyio.current_time()
        await _flood_both_shards(discord)
        stuck, rec = running.plugin("stuck"), running.plugin("rec")
        # The other plugin gets every event while the stuck one has not finished one.
        await poll_until(lambda: len(rec.seen) >= 200, 5)
        await anyio.sleep(1.0)  # and the shards keep reading and beating meanwhile
        until = anyio.current_time()
        stats = router.stats()["stuck"]
        assert stuck.release is not None
        stuck.release.set()
        await poll_until(lambda: len(stuck.got) >= 200, 10)
        drained = router.stats()["stuck"]
    # One event in the stuck handler, the rest in the backlog of 5 and on disk (4 in
    # memory if the handler took its event from a queue that a slice had filled).
    assert 4 <= stats["queued"] <= 5
    assert (stats["queued"] + stats["spilled"], stats["dropped"]) == (199, 0)
    assert (drained["queued"], drained["spilled"]) == (0, 0)
    for shard_id in (0, 1):
        assert _beats(discord, shard_id, since, until) >= 5
    assert not [e for e in discord.timeline if e.kind == "server_close"]
    assert _all_in_order(rec.seen)  # none lost, none reordered
    assert _all_in_order(stuck.got)
    assert any(
        "'stuck' is falling behind: its backlog of 5 is full, further events wait on disk"
        in r.getMessage()
        for r in info_logs.records
    )


async def test_wait_without_a_spill_holds_events_without_losing_any_and_heartbeats_go_on(
    tmp_path: Path,
) -> None:
    async with _stuck_and_recorder(tmp_path, overflow="wait", spill_limit=0) as running:
        discord = running.discord
        await _flood_both_shards(discord)
        since = anyio.current_time()
        await anyio.sleep(3.0)  # the stuck plugin's queue is full: both shards stop reading
        until = anyio.current_time()
        stuck, rec = running.plugin("stuck"), running.plugin("rec")
        held = len(rec.seen)
        assert stuck.release is not None
        stuck.release.set()
        await poll_until(lambda: len(rec.seen) >= 200 and len(stuck.got) >= 200, 10)
    # While reading was paused the shards went on beating: 3 s at 0.2 s, acknowledged,
    # and the emulator (which ends a session after 1 s without a heartbeat) kept them.
    for shard_id in (0, 1):
        assert _beats(discord, shard_id, since, until) >= 10
    assert not [e for e in discord.timeline if e.kind == "server_close"]
    assert len(discord.entries("identify")) == 2
    assert held < 200  # events really were held back...
    assert _all_in_order(rec.seen)  # ...and none was lost or reordered
    assert _all_in_order(stuck.got)


# ---------------------------------------------------------------- the process


HANGING_THREAD = """
import threading

from runtime import hookimpl, in_thread


@hookimpl
@in_thread
def on_message_create(data):
    if data.get("content") == "hang":
        threading.Event().wait(6)
"""


async def _stop_with_a_hung_thread(workdir: Path) -> tuple[float, str]:
    async with FakeDiscord(token=TOKEN, heartbeat_interval=1.0) as discord:
        bot = BotProcess(workdir, discord, shutdown_grace=0.5, plugins={"hanging": HANGING_THREAD})
        try:
            await bot.start(backend="asyncio", log_level="INFO")
            await discord.wait_for("ready", shard_id=0, timeout=30)
            await discord.dispatch(0, "MESSAGE_CREATE", {"content": "hang", "channel_id": "1"})
            await bot.wait_records(1)
            started = time.monotonic()
            assert await bot.stop() == 0
            return time.monotonic() - started, bot.stderr()
        finally:
            await bot.kill()


def test_the_botrun_process_exits_within_the_grace_even_with_a_hung_thread_handler(
    tmp_path: Path,
) -> None:
    took, log = anyio.run(_stop_with_a_hung_thread, tmp_path / "bot")
    assert "plugin 'hanging' in on_message_create" in log
    assert took < 0.5 + 2.5, took
