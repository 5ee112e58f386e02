"""Startup progress: shards ready out of total, and the time the identify schedule still needs."""

from __future__ import annotations

import logging
import math
import sys
from typing import TextIO

import anyio

from sharder import InternalSharder, ShardStatus

__all__ = ["StartupProgress", "estimate_remaining"]

logger = logging.getLogger("botrun")


def estimate_remaining(waiting: int, concurrency: int, timeout: float) -> float:
    """Seconds the identify queue needs for ``waiting`` shards: one round per ``timeout``."""
    if waiting <= 0:
        return 0.0
    return max(0, math.ceil(waiting / max(concurrency, 1)) - 1) * timeout


class StartupProgress:
    """A live line on a terminal; a log line every few seconds otherwise."""

    def __init__(
        self,
        sharder: InternalSharder,
        *,
        stream: TextIO | None = None,
        interval: float = 0.5,
        log_every: float = 5.0,
    ) -> None:
        self.sharder = sharder
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.log_every = log_every

    def line(self) -> str:
        shards = self.sharder.shards.values()
        ready = sum(1 for s in shards if s.status is ShardStatus.READY)
        total = len(self.sharder.shards)
        controller = self.sharder.controller
        text = f"shards ready: {ready}/{total}"
        if controller is not None and ready < total:
            left = estimate_remaining(total - ready, controller.concurrency, controller.timeout)
            text += f", about {left:.0f} s left by the identify schedule"
        return text

    def _all_ready(self) -> bool:
        return all(s.status is ShardStatus.READY for s in self.sharder.shards.values())

    async def run(self) -> None:
        """Report until every shard is ready once."""
        live = self.stream.isatty()
        started = anyio.current_time()
        last_log = -math.inf
        while not self._all_ready():
            now = anyio.current_time()
            if live:
                self.stream.write(f"\r\x1b[K{self.line()}")
                self.stream.flush()
            elif now - last_log >= self.log_every:
                logger.info("%s", self.line())
                last_log = now
            await anyio.sleep(self.interval)
        if live:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
        logger.info(
            "all %d shards ready in %.1f s",
            len(self.sharder.shards),
            anyio.current_time() - started,
        )
