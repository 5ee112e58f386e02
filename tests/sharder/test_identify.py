"""Identify queues: bucket pacing, the daily limit, and the external hook."""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import pytest
import trio.testing

from sharder.identify import ConnectGate, HookIdentifyQueue, IdentifyQueue, LocalIdentifyQueue


async def identify_all(queue: IdentifyQueue, shard_ids: list[int]) -> dict[int, float]:
    granted: dict[int, float] = {}
    start = anyio.current_time()

    async def one(shard_id: int) -> None:
        await queue.acquire(shard_id)
        granted[shard_id] = anyio.current_time() - start

    async with anyio.create_task_group() as tg:
        for shard_id in shard_ids:
            tg.start_soon(one, shard_id)
    return granted


async def test_buckets_run_in_parallel_one_identify_per_timeout() -> None:
    queue = LocalIdentifyQueue(concurrency=2, timeout=0.2, total=1000, remaining=1000)
    granted = await identify_all(queue, [0, 1, 2, 3, 4, 5])
    by_bucket: dict[int, list[float]] = {0: [], 1: []}
    for shard_id, at in granted.items():
        by_bucket[shard_id % 2].append(at)
    for times in by_bucket.values():
        times.sort()
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(gap >= 0.2 - 0.01 for gap in gaps), gaps
    # ceil(6 / 2) - 1 = 2 waits
    assert max(granted.values()) == pytest.approx(0.4, abs=0.08)


async def test_remaining_is_counted_down_locally() -> None:
    queue = LocalIdentifyQueue(concurrency=4, timeout=0.0, total=1000, remaining=10)
    await identify_all(queue, [0, 1, 2])
    assert queue.remaining == 7
    assert queue.as_dict()["concurrency"] == 4


def test_controller_reads_session_start_limit_in_milliseconds() -> None:
    limit = {"total": 1000, "remaining": 990, "reset_after": 3_600_000, "max_concurrency": 16}
    queue = LocalIdentifyQueue.from_session_start_limit(limit, timeout=5.5)
    assert (queue.total, queue.remaining, queue.concurrency, queue.timeout) == (1000, 990, 16, 5.5)
    assert queue.reset_timestamp is not None


async def test_hook_is_awaited_before_every_identify() -> None:
    calls: list[int] = []

    async def hook(shard_id: int) -> None:
        calls.append(shard_id)

    queue = HookIdentifyQueue(hook)
    await queue.acquire(3)
    await queue.acquire(3)
    assert calls == [3, 3]


async def test_hook_answer_with_time_and_ask_is_honoured() -> None:
    answers: list[dict[str, Any]] = [{"time": 0.05, "ask": True}, {"time": 0}]

    def hook(shard_id: int) -> dict[str, Any]:
        return answers.pop(0)

    start = anyio.current_time()
    await HookIdentifyQueue(hook).acquire(0)
    assert anyio.current_time() - start >= 0.05
    assert answers == []


class TestVirtualTime:
    """Hours of waiting, run in milliseconds on trio's virtual clock."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, Any]]:
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})

    async def test_exhausted_daily_limit_waits_for_the_reset(self) -> None:
        queue = LocalIdentifyQueue(concurrency=1, timeout=5.5, total=1000, remaining=1)
        queue.reset_timestamp = None
        await queue.acquire(0)
        assert queue.remaining == 0
        start = anyio.current_time()
        await queue.acquire(1)
        assert anyio.current_time() - start >= 5.5
        assert queue.remaining == 999

    async def test_sixteen_shards_at_concurrency_four_take_three_waits(self) -> None:
        queue = LocalIdentifyQueue(concurrency=4, timeout=5.5, total=1000, remaining=1000)
        granted = await identify_all(queue, list(range(16)))
        assert max(granted.values()) == pytest.approx(3 * 5.5)


# ---------------------------------------------------------------- pacing from the sent IDENTIFY


class TestPacingFromTheSentIdentify:
    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, Any]]:
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})

    async def test_next_slot_of_a_bucket_counts_from_the_identify_sent_not_the_grant(
        self,
    ) -> None:
        queue = LocalIdentifyQueue(concurrency=2, timeout=5.0, total=1000, remaining=1000)
        start = anyio.current_time()
        await queue.acquire(0)
        await anyio.sleep(0.3)  # a busy loop between the grant and the send
        queue.identified(0)
        await queue.acquire(2)  # the same bucket
        assert anyio.current_time() - start == pytest.approx(5.3)

    async def test_other_buckets_are_not_held_up_by_a_late_identify(self) -> None:
        queue = LocalIdentifyQueue(concurrency=2, timeout=5.0, total=1000, remaining=1000)
        await queue.acquire(0)
        start = anyio.current_time()
        await queue.acquire(1)
        assert anyio.current_time() == start


# ---------------------------------------------------------------- the connect gate


async def test_connect_gate_admits_in_shard_id_order_whatever_the_arrival_order() -> None:
    gate = ConnectGate(2)
    for shard_id in (0, 1, 2, 3, 4, 5):
        gate.expect(shard_id)
    admitted: list[int] = []

    async def one(shard_id: int) -> None:
        await gate.enter(shard_id)
        admitted.append(shard_id)

    async with anyio.create_task_group() as tg:
        for shard_id in (5, 3, 4, 1, 0, 2):  # tasks run in whatever order
            tg.start_soon(one, shard_id)
        await anyio.sleep(0.05)
        assert sorted(admitted) == [0, 1]
        assert gate.admitted == 2
        for expected in ([0, 1, 2], [0, 1, 2, 3], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5]):
            gate.leave(admitted[len(expected) - 3])
            await anyio.sleep(0.01)
            assert sorted(admitted) == expected
            assert gate.admitted == 2 if len(expected) < 6 else gate.admitted <= 2


async def test_connect_gate_passes_on_the_place_of_a_cancelled_or_departed_shard() -> None:
    gate = ConnectGate(1)
    await gate.enter(7)
    assert not gate.admits(9)
    with anyio.move_on_after(0.05):
        await gate.enter(8)  # withdrawn while queued
    gate.leave(7)
    assert gate.admits(9)
    await gate.enter(9)
    assert gate.is_admitted(9)
    gate.leave(9)
    gate.leave(9)  # idempotent
    assert gate.admitted == 0
