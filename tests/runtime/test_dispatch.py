"""EventRouter: sharder events to plugin hooks, one queue and one worker per plugin."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import anyio
import anyio.lowlevel
import pluggy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime import hookimpl, in_thread
from runtime.config import Config, PluginsConfig
from runtime.dispatch import EventRouter, PluginWorker, _selector, _Target
from runtime.plugins import load_plugins, make_manager
from runtime.spill import Spill
from sharder import DISPATCH_EVENTS, InternalSharder
from tests.sharder.helpers import emulator, running_sharder

SAMPLES = Path(__file__).parent / "plugins"


@pytest.fixture(autouse=True)
def _forget_drop_ins() -> Iterator[None]:
    yield
    for name in [n for n in sys.modules if n.startswith("botrun_dropin_")]:
        del sys.modules[name]


class Recorder:
    """A plugin's ``bot``: the sample plugins record their calls here."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[tuple[Any, ...]] = []
        self.block_for = 0.0
        self.gate: anyio.Event | None = None
        self.release: dict[int, anyio.Event] = {}

    def record(self, hook: str, *values: Any) -> None:
        self.calls.append((hook, *values))

    @property
    def contents(self) -> list[Any]:
        return [call[1]["content"] for call in self.calls]


class FakeShard:
    def __init__(self) -> None:
        self.paused = 0
        self.resumed = 0

    def pause_reading(self) -> None:
        self.paused += 1

    def resume_reading(self) -> None:
        self.resumed += 1


class FakeSharder:
    """What the router uses of an InternalSharder: ``shards`` and ``on``."""

    def __init__(self, shards: int = 2) -> None:
        self.shards = {shard_id: FakeShard() for shard_id in range(shards)}
        self.listeners: dict[str, list[Callable[[Any, int], None]]] = {}

    def on(self, name: str, listener: Callable[[Any, int], None]) -> None:
        self.listeners.setdefault(name, []).append(listener)

    def emit(self, name: str, data: Any, shard_id: int) -> None:
        for listener in self.listeners.get(name, ()):
            listener(data, shard_id)

    def dispatch(self, seq: int, content: str = "hi", *, shard_id: int = 0) -> None:
        self.emit("event", message(seq, content), shard_id)


def message(seq: int, content: str = "hi", name: str = "MESSAGE_CREATE") -> dict[str, Any]:
    return {"op": 0, "t": name, "s": seq, "d": {"content": content, "seq": seq}}


def samples(*names: str) -> pluggy.PluginManager:
    """A manager holding these sample plugins (loaded the real way, from a drop-in folder)."""
    config = Config(plugins=PluginsConfig(paths=(SAMPLES,), enabled=names, strict=True))
    return load_plugins(config, environ={}).manager


def plugin(**hooks: Callable[..., Any]) -> ModuleType:
    """An in-test plugin module; hooks not yet marked get a plain ``@hookimpl``."""
    module = ModuleType("in_test_plugin")
    for name, function in hooks.items():
        marked = function if hasattr(function, "botrun_impl") else hookimpl(function)
        setattr(module, name, marked)
    return module


def manager_with(**plugins: ModuleType) -> pluggy.PluginManager:
    """Registered in keyword order (pluggy calls the last registered first)."""
    manager = make_manager()
    for name, module in plugins.items():
        manager.register(module, name=name)
    return manager


def make_router(
    manager: pluggy.PluginManager, **options: Any
) -> tuple[EventRouter, dict[str, Recorder], FakeSharder]:
    contexts = {name: Recorder(name) for name, _ in manager.list_name_plugin()}
    router = EventRouter(manager, dict(contexts), **options)
    sharder = FakeSharder()
    router.attach(cast(InternalSharder, sharder))
    return router, contexts, sharder


@asynccontextmanager
async def running(router: EventRouter, grace: float = 1.0) -> AsyncIterator[None]:
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(router.run)
            yield
            await router.stop(grace)


async def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - the workers are the ones to wait for
            await anyio.sleep(0.001)


def idle(router: EventRouter) -> bool:
    return all(not w.queue and w.current is None for w in router.workers.values())


# ---------------------------------------------------------------------------
# Routing


async def test_message_create_reaches_its_hook_and_on_event_gets_the_raw_payload() -> None:
    seen: list[tuple[str, Any, Any]] = []

    def on_message_create(data: dict[str, Any], shard_id: int) -> None:
        seen.append(("on_message_create", data, shard_id))

    def on_event(data: dict[str, Any], shard_id: int) -> None:
        seen.append(("on_event", data, shard_id))

    manager = manager_with(
        specific=plugin(on_message_create=on_message_create),
        catch_all=plugin(on_event=on_event),
    )
    router, _, sharder = make_router(manager)
    first, future = message(1, "hello"), message(2, name="SOMETHING_DISCORD_ADDS_LATER")
    async with running(router):
        sharder.emit("event", first, 1)
        sharder.emit("event", future, 1)
        await wait_until(lambda: len(seen) == 3)
    assert ("on_message_create", first["d"], 1) in seen
    assert ("on_event", first, 1) in seen
    assert ("on_event", future, 1) in seen
    [raw] = [data for hook, data, _ in seen if hook == "on_event" and data["s"] == 1]
    assert raw is first


async def test_hooks_may_take_any_subset_of_their_arguments() -> None:
    seen: dict[str, tuple[Any, ...]] = {}

    def nothing() -> None:
        seen["nothing"] = ()

    def data_only(data: dict[str, Any]) -> None:
        seen["data_only"] = (data["seq"],)

    def reordered(shard_id: int, bot: Recorder) -> None:
        seen["reordered"] = (shard_id, bot.name)

    def everything(bot: Recorder, data: dict[str, Any], shard_id: int) -> None:
        seen["everything"] = (bot.name, data["seq"], shard_id)

    # Coroutine functions: (bot, data), the usual shape, is called by a shortcut.
    async def bot_and_data(bot: Recorder, data: dict[str, Any]) -> None:
        seen["bot_and_data"] = (bot.name, data["seq"])

    async def data_and_shard(data: dict[str, Any], shard_id: int) -> None:
        seen["data_and_shard"] = (data["seq"], shard_id)

    functions = (nothing, data_only, reordered, bot_and_data, data_and_shard)
    manager = manager_with(
        **{f.__name__: plugin(on_message_create=f) for f in functions},
        everything=plugin(on_message_create=everything),
    )
    router, _, sharder = make_router(manager)
    async with running(router):
        sharder.dispatch(7, shard_id=1)
        await wait_until(lambda: len(seen) == 6)
    assert seen == {
        "nothing": (),
        "data_only": (7,),
        "reordered": (1, "reordered"),
        "everything": ("everything", 7, 1),
        "bot_and_data": ("bot_and_data", 7),
        "data_and_shard": (7, 1),
    }


async def test_sync_async_and_in_thread_hooks_all_run() -> None:
    router, bots, sharder = make_router(samples("greeter", "greeter_package", "threaded"))
    async with running(router):
        sharder.dispatch(1, "you")
        await wait_until(lambda: all(bot.calls for bot in bots.values()))
    assert bots["greeter"].calls == [("on_message_create", {"content": "you", "seq": 1})]
    assert bots["greeter_package"].calls == [("on_message_create", "hello you")]
    [(_, (thread, data))] = bots["threaded"].calls
    assert data["content"] == "you"
    assert thread != threading.get_ident()


async def test_lifecycle_events_reach_only_the_hooks_that_exist() -> None:
    seen: list[tuple[str, Any, Any]] = []

    def on_connect(shard_id: int) -> None:
        seen.append(("on_connect", None, shard_id))

    def on_ready(data: dict[str, Any], shard_id: int) -> None:
        seen.append(("on_ready", data, shard_id))

    router, _, sharder = make_router(
        manager_with(life=plugin(on_connect=on_connect, on_ready=on_ready))
    )
    assert set(sharder.listeners) == {"event", "connect"}
    async with running(router):
        sharder.emit("connect", None, 1)
        sharder.emit("event", message(1, name="READY"), 1)
        await wait_until(lambda: len(seen) == 2)
    assert seen == [("on_connect", None, 1), ("on_ready", {"content": "hi", "seq": 1}, 1)]


# ---------------------------------------------------------------------------
# Failures and slow plugins


async def test_a_raising_hook_is_logged_counted_and_later_events_still_arrive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="botrun.dispatch")
    router, bots, sharder = make_router(samples("raising", "greeter"))
    async with running(router):
        sharder.dispatch(1, "boom")
        sharder.dispatch(2, "after", shard_id=1)
        await wait_until(lambda: len(bots["raising"].calls) == 1)
        await wait_until(lambda: idle(router))
        assert router.stats()["raising"] == {
            "calls": 2, "errors": 1, "dropped": 0, "spills": 0, "queued": 0, "spilled": 0,
        }  # fmt: skip
    assert bots["raising"].contents == ["after"]
    assert bots["greeter"].contents == ["boom", "after"]
    [failure] = caplog.records
    assert failure.getMessage() == (
        "plugin 'raising' failed in on_message_create (shard 0); the bot keeps running"
    )
    assert failure.exc_info is not None
    assert "Traceback (most recent call last)" in caplog.text
    assert "RuntimeError: the raising plugin exploded" in caplog.text
    assert router.stats()["greeter"]["errors"] == 0


async def test_a_sync_handler_that_blocks_the_loop_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="botrun.dispatch")
    router, bots, sharder = make_router(samples("blocking", "greeter"), slow_threshold=0.01)
    bots["blocking"].block_for = 0.03
    async with running(router):
        sharder.dispatch(1)
        await wait_until(lambda: bool(bots["blocking"].calls) and idle(router))
    [warning] = caplog.records
    message = warning.getMessage()
    assert message.startswith("plugin 'blocking' blocked the event loop for 0.0")
    assert message.endswith("s in on_message_create; make it async or mark it @in_thread")


async def test_a_slow_async_plugin_does_not_delay_another_plugins_events() -> None:
    router, bots, sharder = make_router(samples("slow_async", "greeter"))
    slow = bots["slow_async"]
    slow.gate = anyio.Event()
    async with running(router):
        for seq in range(1, 21):
            sharder.dispatch(seq, str(seq), shard_id=seq % 2)
        await wait_until(lambda: len(bots["greeter"].calls) == 20)
        assert slow.calls == []
        assert len(router.workers["slow_async"].queue) == 19
        slow.gate.set()
        await wait_until(lambda: len(slow.calls) == 20)
    assert slow.contents == [str(seq) for seq in range(1, 21)]


async def test_each_plugin_sees_each_shards_events_in_order() -> None:
    seen: dict[str, list[tuple[int, int]]] = {"sync": [], "async": []}

    def record_sync(data: dict[str, Any], shard_id: int) -> None:
        seen["sync"].append((shard_id, data["seq"]))

    async def record_async(data: dict[str, Any], shard_id: int) -> None:
        for _ in range(data["seq"] % 3):
            await anyio.lowlevel.checkpoint()
        seen["async"].append((shard_id, data["seq"]))

    manager = manager_with(
        sync=plugin(on_message_create=record_sync),
        async_=plugin(on_message_create=record_async),
    )
    router, _, sharder = make_router(manager)
    sharder.shards[2] = FakeShard()
    sent = [(seq % 3, seq) for seq in range(1, 61)]
    async with running(router):
        for shard_id, seq in sent:
            sharder.dispatch(seq, shard_id=shard_id)
            if seq % 7 == 0:
                await anyio.lowlevel.checkpoint()
        await wait_until(lambda: len(seen["sync"]) == len(seen["async"]) == 60)
    for shard_id in range(3):
        expected = [seq for s, seq in sent if s == shard_id]
        for name in ("sync", "async"):
            assert [seq for s, seq in seen[name] if s == shard_id] == expected


# ---------------------------------------------------------------------------
# Overflow


async def test_drop_oldest_drops_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="botrun.dispatch")
    router, bots, sharder = make_router(samples("greeter"), capacity=3, overflow="drop_oldest")
    for seq in range(1, 6):  # the workers are not running yet: the queue fills up
        sharder.dispatch(seq, str(seq))
    assert router.stats()["greeter"] == {
        "calls": 0, "errors": 0, "dropped": 2, "spills": 0, "queued": 3, "spilled": 0,
    }  # fmt: skip
    assert [r.getMessage() for r in caplog.records] == [
        "plugin 'greeter' is falling behind: 1 events dropped so far (backlog 3)"
    ]
    assert router.safe_sequences().get(0) == 2, "a dropped event is done with"
    async with running(router):
        await wait_until(lambda: len(bots["greeter"].calls) == 3)
    assert bots["greeter"].contents == ["3", "4", "5"]
    assert sharder.shards[0].paused == 0


async def test_wait_pauses_the_shard_and_resumes_it_when_drained() -> None:
    router, bots, sharder = make_router(samples("slow_async"), capacity=4, overflow="wait")
    slow = bots["slow_async"]
    slow.gate = anyio.Event()
    shard0, shard1 = sharder.shards[0], sharder.shards[1]
    for seq in range(1, 5):
        sharder.dispatch(seq, str(seq))
    assert shard0.paused == 0
    sharder.dispatch(5, "5")
    sharder.dispatch(6, "6")
    sharder.dispatch(1, "other shard", shard_id=1)
    assert (shard0.paused, shard1.paused) == (1, 1)  # once per shard, however full
    assert router.stats()["slow_async"]["dropped"] == 0
    assert len(router.workers["slow_async"].queue) == 7  # nothing already read is lost
    async with running(router):
        await anyio.sleep(0.01)
        assert (shard0.resumed, shard1.resumed) == (0, 0)
        slow.gate.set()
        await wait_until(lambda: len(slow.calls) == 7)
        assert (shard0.resumed, shard1.resumed) == (1, 1)
    assert slow.contents == ["1", "2", "3", "4", "5", "6", "other shard"]


async def test_wait_pauses_once_per_full_plugin() -> None:
    manager = samples("slow_async", "greeter")
    router, bots, sharder = make_router(manager, capacity=2, overflow="wait")
    bots["slow_async"].gate = anyio.Event()
    for seq in range(1, 4):
        sharder.dispatch(seq)
    shard = sharder.shards[0]
    assert shard.paused == 2  # both queues are full: the shard resumes when both drained
    async with running(router):
        await wait_until(lambda: len(bots["greeter"].calls) == 3)
        await anyio.sleep(0.01)
        assert shard.resumed == 1
        bots["slow_async"].gate.set()
        await wait_until(lambda: shard.resumed == 2)
    assert shard.paused == shard.resumed


async def test_wait_spills_past_the_backlog_without_pausing_and_delivers_all_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="botrun.dispatch")
    manager = samples("slow_async", "greeter")
    router, bots, sharder = make_router(manager, capacity=4, overflow="wait", spill_limit=1 << 20)
    slow, greeter = bots["slow_async"], bots["greeter"]
    slow.gate = anyio.Event()
    async with running(router):
        for seq in range(1, 51):
            sharder.dispatch(seq, f"m{seq}")
            await wait_until(lambda: len(greeter.calls) == seq)  # never held up  # noqa: B023
        assert router.stats()["slow_async"] == {
            "calls": 1, "errors": 0, "dropped": 0, "spills": 1, "queued": 4, "spilled": 45,
        }  # fmt: skip
        assert sharder.shards[0].paused == 0
        assert router.safe_sequences().get(0) == 0, "spilled events are not done with"
        slow.gate.set()
        await wait_until(lambda: len(slow.calls) == 50)
    assert slow.contents == [f"m{seq}" for seq in range(1, 51)]
    assert [call[1] for call in slow.calls] == [
        {"content": f"m{i}", "seq": i} for i in range(1, 51)
    ]
    assert router.safe_sequences().get(0) is None
    assert [r.getMessage() for r in caplog.records] == [
        "plugin 'slow_async' is falling behind: its backlog of 4 is full, further events "
        "wait on disk (1 times so far)"
    ]


async def test_a_full_spill_pauses_the_shard_until_half_of_it_is_read_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="botrun.dispatch")
    router, bots, sharder = make_router(
        samples("slow_async"), capacity=2, overflow="wait", spill_limit=2000
    )
    slow = bots["slow_async"]
    slow.gate = anyio.Event()
    for seq in range(1, 101):
        sharder.dispatch(seq, f"m{seq}")
    shard = sharder.shards[0]
    stats = router.stats()["slow_async"]
    spill = router.workers["slow_async"].spill
    assert spill is not None
    assert 0 < spill.size <= 2000
    assert shard.paused == 1
    assert stats["queued"] + stats["spilled"] == 100  # what did not fit is kept in memory
    assert "its spill holds" in caplog.records[-1].getMessage()
    async with running(router):
        slow.gate.set()
        await wait_until(lambda: len(slow.calls) == 100)
    assert shard.resumed == 1
    assert slow.contents == [f"m{seq}" for seq in range(1, 101)]


async def test_a_spill_that_cannot_be_written_falls_back_to_pausing_the_shard(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="botrun.dispatch")
    router, bots, sharder = make_router(
        samples("slow_async"),
        capacity=2,
        overflow="wait",
        spill_limit=1 << 20,
        spill_dir=tmp_path / "removed",  # the folder is gone: every write fails
    )
    slow = bots["slow_async"]
    slow.gate = anyio.Event()
    for seq in range(1, 11):
        sharder.dispatch(seq, f"m{seq}")
    shard = sharder.shards[0]
    assert shard.paused == 1
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert "cannot write its spill" in caplog.records[0].getMessage()
    async with running(router):
        slow.gate.set()
        await wait_until(lambda: len(slow.calls) == 10)
    assert shard.resumed == 1
    assert slow.contents == [f"m{seq}" for seq in range(1, 11)]


async def test_a_lifecycle_event_that_cannot_be_pickled_keeps_its_place_in_memory() -> None:
    worker = PluginWorker(
        "p", Recorder("p"), capacity=1, overflow="wait", slow_threshold=1.0, spill=Spill(1 << 20)
    )
    seen: list[Any] = []
    target = _Target(worker, "on_error", seen.append, (1,), "sync", False, _selector((1,)))
    unpicklable = lambda: None  # noqa: E731
    for data in ("first", "on disk", unpicklable, "after"):
        worker.put((target, data, None, None, None))
    assert (len(worker.queue), len(worker.spilled), len(worker.spill or ())) == (1, 3, 2)
    worker.stop()
    with anyio.fail_after(5):
        await worker.run()
    assert seen == ["first", "on disk", unpicklable, "after"]


# ---------------------------------------------------------------------------
# The sequence worth saving


def stepper() -> ModuleType:
    """A plugin that finishes event ``seq`` only when ``bot.release[seq]`` is set."""

    async def on_message_create(bot: Recorder, data: dict[str, Any]) -> None:
        await bot.release.setdefault(data["seq"], anyio.Event()).wait()
        bot.record("on_message_create", data)

    return plugin(on_message_create=on_message_create)


async def test_safe_sequence_never_passes_an_unfinished_event() -> None:
    router, bots, sharder = make_router(
        manager_with(fast=samples_module("greeter"), step=stepper())
    )
    step = bots["step"]
    for seq in range(2, 5):
        step.release[seq] = anyio.Event()
    async with running(router):
        sharder.emit("event", message(1, name="READY"), 0)  # no on_ready: done at once
        assert router.safe_sequences().get(0) is None  # nothing pending: its own seq is safe
        for seq in range(2, 5):
            sharder.dispatch(seq)
        await wait_until(lambda: len(bots["fast"].calls) == 3)
        assert router.safe_sequences().get(0) == 1
        step.release[3].set()  # out of order: 3 is done only after 2
        await anyio.sleep(0.01)
        assert router.safe_sequences().get(0) == 1
        step.release[2].set()
        await wait_until(lambda: len(step.calls) == 2)
        assert router.safe_sequences().get(0) == 3
        step.release[4].set()
        await wait_until(lambda: len(step.calls) == 3)
        assert router.safe_sequences().get(0) is None
        assert router.safe_sequences().get(1) is None  # a shard that saw nothing


async def test_safe_sequence_before_anything_finishes_is_the_one_before_the_first() -> None:
    router, bots, sharder = make_router(manager_with(step=stepper()))
    for seq in (101, 102):  # a resumed session: no READY
        sharder.dispatch(seq)
    assert router.safe_sequences().get(0) == 100
    async with running(router):
        bots["step"].release[101] = anyio.Event()
        bots["step"].release[101].set()
        await wait_until(lambda: len(bots["step"].calls) == 1)
        assert router.safe_sequences().get(0) == 101
        bots["step"].release.setdefault(102, anyio.Event()).set()


async def test_ready_starts_the_count_afresh() -> None:
    router, bots, sharder = make_router(manager_with(step=stepper()))
    for seq in (5, 6):
        sharder.dispatch(seq)
    assert router.safe_sequences().get(0) == 4
    sharder.emit("event", message(1, name="READY"), 0)  # a new session: 5 and 6 are history
    assert router.safe_sequences().get(0) is None
    sharder.dispatch(2)
    assert router.safe_sequences().get(0) == 1
    async with running(router):
        for seq in (5, 6, 2):
            bots["step"].release.setdefault(seq, anyio.Event()).set()
        await wait_until(lambda: len(bots["step"].calls) == 3)
        assert router.safe_sequences().get(0) is None


_ROUTED = (
    "TYPING_START",
    "MESSAGE_CREATE",
    "MESSAGE_UPDATE",
    "MESSAGE_DELETE",
    "GUILD_CREATE",
    "CHANNEL_CREATE",
    "PRESENCE_UPDATE",
    "INTERACTION_CREATE",
)
"""Event ``k`` goes to the plugins whose bit is set in ``k``: every subset of three."""


@given(st.data())
def test_safe_sequence_is_always_just_before_the_oldest_unfinished_event(
    data: st.DataObject,
) -> None:
    def ignore(data: Any) -> None:
        return None

    plugins = {
        f"p{bit}": plugin(
            **{f"on_{name.lower()}": ignore for k, name in enumerate(_ROUTED) if k >> bit & 1}
        )
        for bit in range(3)
    }
    router, _, sharder = make_router(
        manager_with(**plugins), capacity=2, overflow="wait", spill_limit=1 << 20
    )
    workers = list(router.workers.values())
    seq = data.draw(st.integers(1, 10**6), label="first seq")
    unfinished: dict[int, int] = {}
    try:
        for _ in range(data.draw(st.integers(1, 60), label="steps")):
            step = data.draw(st.sampled_from(["dispatch", "start", "finish"]))
            worker = data.draw(st.sampled_from(workers))
            if step == "dispatch":
                kind = data.draw(st.integers(0, 7))
                sharder.emit("event", message(seq, name=_ROUTED[kind]), 0)
                unfinished[seq] = kind.bit_count()
                seq += 1
            elif step == "start" and worker.item is None:
                if not worker.queue and worker.spilled:
                    worker._refill()
                if worker.queue:
                    worker.item = worker.queue.popleft()
            elif step == "finish" and worker.item is not None:
                unfinished[worker.item[4]] -= 1
                worker.item = None
            waiting = [s for s, count in unfinished.items() if count]
            assert router.safe_sequences().get(0) == (min(waiting) - 1 if waiting else None)
    finally:
        for worker in workers:
            assert worker.spill is not None
            worker.spill.close()


async def test_events_after_stop_are_not_delivered_nor_counted_as_done() -> None:
    router, bots, sharder = make_router(samples("greeter"))
    async with running(router):
        sharder.dispatch(1, "before")
        await wait_until(lambda: idle(router) and bool(bots["greeter"].calls))
        assert await router.stop(1.0) == []
        sharder.dispatch(2, "after stop")
    assert bots["greeter"].contents == ["before"]
    assert router.safe_sequences().get(0) == 1  # a resume replays event 2


# ---------------------------------------------------------------------------
# Which events are wanted


def test_unrouted_events_are_the_ones_no_plugin_wants() -> None:
    manager = manager_with(
        messages=plugin(on_message_create=lambda data: None),
        guilds=plugin(on_guild_create=lambda: None, on_ready=lambda: None),
    )
    router, _, _ = make_router(manager)
    unrouted = router.unrouted_events()
    assert "MESSAGE_CREATE" not in unrouted
    assert "GUILD_CREATE" not in unrouted
    assert "READY" not in unrouted
    assert "GUILD_DELETE" in unrouted
    assert "MESSAGE_DELETE" in unrouted
    assert set(unrouted) == set(DISPATCH_EVENTS) - {"MESSAGE_CREATE", "GUILD_CREATE", "READY"}


def test_no_event_is_unrouted_when_a_plugin_implements_on_event() -> None:
    manager = manager_with(
        messages=plugin(on_message_create=lambda data: None),
        everything=plugin(on_event=lambda data: None),
    )
    router, _, _ = make_router(manager)
    assert router.unrouted_events() == []


def test_a_plugin_left_out_after_startup_is_routed_no_more() -> None:
    manager = manager_with(
        messages=plugin(on_message_create=lambda data: None),
        everything=plugin(on_event=lambda data: None),
    )
    router, _, _ = make_router(manager)
    router.remove(["everything"])
    assert set(router.unrouted_events()) == set(DISPATCH_EVENTS) - {"MESSAGE_CREATE"}


# ---------------------------------------------------------------------------
# Stopping


async def test_stop_cancels_a_hung_handler_and_names_it() -> None:
    started = threading.Event()

    async def on_message_create() -> None:
        started.set()
        await anyio.sleep_forever()

    manager = manager_with(hung=plugin(on_message_create=on_message_create))
    manager.register(samples_module("greeter"), name="greeter")
    router, bots, sharder = make_router(manager)
    with anyio.fail_after(3):
        async with anyio.create_task_group() as tg:
            tg.start_soon(router.run)
            for seq in (1, 2, 3):
                sharder.dispatch(seq)
            await wait_until(lambda: started.is_set() and len(bots["greeter"].calls) == 3)
            cancelled = await router.stop(0.05)
    [description] = cancelled
    assert description.startswith("plugin 'hung' in on_message_create (running ")
    assert description.endswith("2 events still queued)")
    assert router.safe_sequences().get(0) == 0, "the cancelled and dropped events are not done"


async def test_stop_does_not_wait_for_a_hung_thread_past_its_grace() -> None:
    release, finished = threading.Event(), threading.Event()

    @in_thread
    def on_message_create() -> None:
        release.wait(5)
        finished.set()

    router, _, sharder = make_router(
        manager_with(stuck=plugin(on_message_create=on_message_create))
    )
    try:
        with anyio.fail_after(3):  # trio cannot time out an uncancellable thread: time it too
            async with anyio.create_task_group() as tg:
                tg.start_soon(router.run)
                sharder.dispatch(1)
                await wait_until(lambda: router.workers["stuck"].current is not None)
                stopping = anyio.current_time()
                cancelled = await router.stop(0.05)
            assert anyio.current_time() - stopping < 1.0
        assert not finished.is_set()
        assert [c.split(" (")[0] for c in cancelled] == ["plugin 'stuck' in on_message_create"]
    finally:
        release.set()
        await wait_until(finished.is_set)
        await anyio.sleep(0.01)  # let the abandoned thread hand back its result


async def test_stop_lets_queued_events_finish_within_the_grace() -> None:
    router, bots, sharder = make_router(samples("slow_async"))
    bots["slow_async"].gate = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(router.run)
        for seq in (1, 2, 3):
            sharder.dispatch(seq)
        await anyio.sleep(0.01)
        tg.start_soon(router.stop, 2.0)
        await anyio.sleep(0.01)
        sharder.dispatch(4)  # refused: stopping
        bots["slow_async"].gate.set()
    assert [d["seq"] for _, d, _ in bots["slow_async"].calls] == [1, 2, 3]


# ---------------------------------------------------------------------------
# Call order


def test_tryfirst_and_trylast_order_the_queueing(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def named(name: str, **options: bool) -> ModuleType:
        def on_message_create() -> None:
            calls.append(name)

        return plugin(on_message_create=hookimpl(**options)(on_message_create))

    manager = manager_with(
        late=named("late", trylast=True),
        plain_a=named("plain_a"),
        early=named("early", tryfirst=True),
        plain_b=named("plain_b"),
    )
    manager.hook.on_message_create(bot=None, data={}, shard_id=0)
    pluggy_order, calls[:] = list(calls), []
    assert pluggy_order == ["early", "plain_b", "plain_a", "late"]

    queued: list[str] = []
    original = PluginWorker.put

    def put(self: PluginWorker, item: Any) -> None:
        queued.append(self.name)
        original(self, item)

    monkeypatch.setattr(PluginWorker, "put", put)
    _, _, sharder = make_router(manager)
    sharder.dispatch(1)
    assert queued == pluggy_order


# ---------------------------------------------------------------------------
# With the real sharder


async def test_the_router_behind_a_real_sharder() -> None:
    router, bots, _ = make_router(samples("slow_async", "greeter"))
    bots["slow_async"].gate = anyio.Event()
    async with (
        emulator() as discord,
        running_sharder(discord) as (sharder, _),
        running(router),
    ):
        router.attach(sharder)
        await discord.wait_for("ready", shard_id=0)
        sent = await discord.dispatch_many(
            0, [("MESSAGE_CREATE", {"content": c, "channel_id": "1"}) for c in "ab"]
        )
        await wait_until(lambda: len(bots["greeter"].calls) == 2)
        session = sharder.get_current_sessions()[0]
        assert session["sequence"] == sent[-1]
        assert router.safe_sequences().get(0) == sent[0] - 1
        bots["slow_async"].gate.set()
        await wait_until(lambda: len(bots["slow_async"].calls) == 2)
        assert router.safe_sequences().get(0) is None
    assert bots["greeter"].contents == ["a", "b"]


def samples_module(name: str) -> ModuleType:
    """The module of one sample plugin, to register next to in-test ones."""
    module = samples(name).get_plugin(name)
    assert isinstance(module, ModuleType)
    return module
