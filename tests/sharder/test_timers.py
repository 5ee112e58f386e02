"""The shared timer service: windows that overlap are served by one wake-up."""

from __future__ import annotations

import math

import anyio
import pytest

from sharder._timers import TimerService


async def fire_times(service: TimerService, windows: list[tuple[float, float]]) -> list[float]:
    """Wait on one timer per ``(earliest, latest)`` (relative to now); when each fired."""
    start = anyio.current_time()
    fired: list[float] = [math.nan] * len(windows)

    async def one(index: int, earliest: float, latest: float) -> None:
        await service.timer().wait(start + earliest, start + latest)
        fired[index] = anyio.current_time() - start

    async with anyio.create_task_group() as tg:
        await tg.start(service.run)
        async with anyio.create_task_group() as waiters:
            for index, (earliest, latest) in enumerate(windows):
                waiters.start_soon(one, index, earliest, latest)
        service.stop()
    return fired


async def test_overlapping_windows_fire_together_in_one_wakeup() -> None:
    service = TimerService()
    fired = await fire_times(service, [(0.10, 0.30), (0.15, 0.35), (0.20, 0.40), (0.25, 0.45)])
    assert service.wakeups == 1
    assert all(f == pytest.approx(0.30, abs=0.05) for f in fired), fired


async def test_timer_never_fires_before_its_window_opens() -> None:
    service = TimerService()
    fired = await fire_times(service, [(0.05, 0.10), (0.30, 0.40)])
    assert fired[0] == pytest.approx(0.10, abs=0.05)
    assert fired[1] >= 0.30
    assert fired[1] == pytest.approx(0.40, abs=0.05)
    assert service.wakeups == 2


async def test_a_timer_added_during_a_long_sleep_cuts_it_short() -> None:
    service = TimerService()
    fired = await fire_times(service, [(0.6, 0.6), (0.05, 0.05)])
    assert fired[1] == pytest.approx(0.05, abs=0.05)
    assert fired[0] >= 0.6


async def test_moving_a_waiting_timer_earlier_wakes_it_then() -> None:
    service = TimerService()
    async with anyio.create_task_group() as tg:
        await tg.start(service.run)
        timer = service.timer()
        start = anyio.current_time()
        done = anyio.Event()

        async def wait() -> None:
            await timer.wait(start + 10.0, start + 10.0)
            done.set()

        tg.start_soon(wait)
        await anyio.sleep(0.02)
        assert timer.waiting
        timer.move(start + 0.1, start + 0.1)
        with anyio.fail_after(2):
            await done.wait()
        assert 0.1 <= anyio.current_time() - start < 0.5
        service.stop()


async def test_cancelled_timer_is_forgotten() -> None:
    service = TimerService()
    async with anyio.create_task_group() as tg:
        await tg.start(service.run)
        timer = service.timer()
        with anyio.move_on_after(0.05):
            await timer.wait(anyio.current_time() + 10.0, anyio.current_time() + 10.0)
        assert not timer.waiting
        assert service.waiting == 0
        service.stop()


def test_heartbeat_window_opens_a_fortieth_of_the_interval_early_and_ends_when_due() -> None:
    from sharder._protocol import GatewayProtocol

    proto = GatewayProtocol(token="t", intents=0, shard=(0, 1), properties={}, rng=lambda: 0.5)
    proto.connection_made(0.0)
    proto.receive({"op": 10, "d": {"heartbeat_interval": 41_250}}, 0.0)
    proto.actions.clear()
    proto.identify_granted(0.0)
    proto.receive_dispatch({"op": 0, "t": "READY", "s": 1, "d": {"session_id": "s"}})
    proto.actions.clear()
    due = 41.25 * 0.5
    assert proto.get_timer_window() == pytest.approx((due - 1.0, due))  # at most 1 s early
    proto.handle_timer(due - 1.5)  # before the window: nothing
    assert not proto.actions
    proto.handle_timer(due - 0.9)  # inside it: the beat goes now, and the next one is
    assert [a.payload for a in proto.actions] == [{"op": 1, "d": 1}]  # type: ignore[union-attr]
    window = proto.get_timer_window()
    assert window is not None
    assert window[1] == pytest.approx(due - 0.9 + 41.25)  # one interval on
