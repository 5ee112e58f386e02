"""The loop-lag watchdog names a blocking sync handler while it still blocks."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import anyio
import pytest

from runtime.watchdog import LoopWatchdog


async def test_watchdog_names_the_plugin_and_hook_blocking_the_loop_while_it_blocks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = SimpleNamespace(name="hog", blocking=None)
    watchdog = LoopWatchdog(SimpleNamespace(workers={"hog": worker}), threshold=0.2)
    caplog.set_level(logging.WARNING, logger="botrun.watchdog")
    async with anyio.create_task_group() as tg:
        tg.start_soon(watchdog.run)
        await anyio.sleep(0.1)
        worker.blocking = ("on_message_create", time.perf_counter())
        time.sleep(0.8)  # noqa: ASYNC251 - the handler blocks the whole loop
        during = [record.getMessage() for record in caplog.records]
        worker.blocking = None
        tg.cancel_scope.cancel()
    [message] = during
    assert "'hog'" in message
    assert "on_message_create" in message
    assert "still running" in message


async def test_watchdog_stays_quiet_while_the_loop_runs() -> None:
    watchdog = LoopWatchdog(SimpleNamespace(workers={}), threshold=0.1)
    with anyio.move_on_after(0.5):
        await watchdog.run()
    assert watchdog.reports == 0
