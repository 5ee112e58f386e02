"""Loop-lag watchdog: names the plugin whose sync handler blocks the event loop, while it blocks.

A task on the loop ticks; a daemon thread watches the ticks. When they stop
for longer than the threshold, the thread logs which plugin and hook is
running synchronously at that moment, so a handler that never returns is
named too (the worker's own timing only reports a handler once it returns).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

import anyio

__all__ = ["LoopWatchdog"]

logger = logging.getLogger("botrun.watchdog")


class _Worker(Protocol):
    name: str
    blocking: tuple[str, float] | None


class _Router(Protocol):
    @property
    def workers(self) -> Mapping[str, Any]: ...


class LoopWatchdog:
    """Reports a blocked event loop, once per blocking handler."""

    def __init__(self, router: _Router, threshold: float) -> None:
        self.router = router
        self.threshold = threshold
        self.reports = 0
        self._last_tick = time.perf_counter()
        self._stopped = threading.Event()

    async def run(self) -> None:
        """Tick until cancelled; the watching thread lives as long as this task."""
        self._stopped.clear()
        self._last_tick = time.perf_counter()
        thread = threading.Thread(target=self._watch, name="botrun-watchdog", daemon=True)
        thread.start()
        try:
            while True:
                self._last_tick = time.perf_counter()
                await anyio.sleep(self.threshold / 4)
        finally:
            self._stopped.set()

    def _watch(self) -> None:
        reported: object = None
        while not self._stopped.wait(self.threshold / 4):
            lag = time.perf_counter() - self._last_tick
            if lag < self.threshold:
                reported = None
                continue
            culprit = self._culprit()
            if culprit == reported:
                continue
            reported = culprit
            self.reports += 1
            if culprit is None:
                logger.warning("the event loop has been blocked for %.1f s, outside plugins", lag)
            else:
                name, (hook, started) = culprit
                logger.warning(
                    "plugin %r has blocked the event loop for %.1f s in %s and is still "
                    "running; make it async or mark it @in_thread",
                    name,
                    time.perf_counter() - started,
                    hook,
                )

    def _culprit(self) -> tuple[str, tuple[str, float]] | None:
        for worker in list(self.router.workers.values()):
            blocking = worker.blocking
            if blocking is not None:
                return worker.name, blocking
        return None
