"""Running a sharder against the emulator, recording what its listeners saw; feeding an inflater."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx

from sharder import InternalSharder
from sharder._codec import Inflater
from sharder._websocket import BINARY
from sharder.testing import FakeDiscord

TOKEN = "test-token.very-secret-part.xyz"

FAST_OPTIONS: dict[str, Any] = {
    "reconnect_delay": 0.02,
    "invalid_session_delay": (0.05, 0.1),
    "close_timeout": 0.3,
    "connect_timeout": 3.0,
}
"""Shard options that keep reconnects quick in tests."""

RECORDED = (
    "connect",
    "ready",
    "resumed",
    "close",
    "debug",
    "error",
    "event",
    "MESSAGE_CREATE",
)


class Recorder:
    """Every (data, shard_id) a listener got, by event name."""

    def __init__(self) -> None:
        self.events: dict[str, list[tuple[Any, int]]] = defaultdict(list)

    def listen(self, sharder: InternalSharder, names: tuple[str, ...] = RECORDED) -> None:
        for name in names:
            sharder.on(name, self._listener(name))

    def _listener(self, name: str) -> Callable[[Any, int], None]:
        def record(data: Any, shard_id: int) -> None:
            self.events[name].append((data, shard_id))

        return record

    def contents(self, shard_id: int = 0) -> list[str]:
        return [d["content"] for d, s in self.events["MESSAGE_CREATE"] if s == shard_id]

    def debug_lines(self) -> list[str]:
        return [line for line, _ in self.events["debug"]]

    async def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        with anyio.fail_after(timeout):
            while not predicate():  # noqa: ASYNC110 - listeners are plain functions here
                await anyio.sleep(0.01)


async def gateway_bot(discord: FakeDiscord, token: str = TOKEN) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"{discord.api_base}/gateway/bot", headers={"Authorization": f"Bot {token}"}
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


@asynccontextmanager
async def running_sharder(
    discord: FakeDiscord,
    *,
    total: int = 1,
    timeout: float = 0.25,
    connect: bool = True,
    recorder: Recorder | None = None,
    shard_options: dict[int, dict[str, Any]] | None = None,
    connect_ahead: int | None = None,
    **options: Any,
) -> AsyncIterator[tuple[InternalSharder, Recorder]]:
    """A connected sharder whose listeners record everything."""
    info = await gateway_bot(discord)
    recorder = recorder or Recorder()
    merged = {"token": TOKEN, "intents": 513, "url": info["url"], **FAST_OPTIONS, **options}
    kwargs: dict[str, Any] = {}
    if "identify_hook" not in merged:
        kwargs["session_start_limit"] = info["session_start_limit"]
    async with InternalSharder(
        total=total,
        options=merged,
        shard_options=shard_options,
        timeout=timeout,
        connect_ahead=connect_ahead,
        **kwargs,
    ) as sharder:
        recorder.listen(sharder)
        if connect:
            await sharder.connect()
        yield sharder, recorder


def emulator(**options: Any) -> FakeDiscord:
    defaults: dict[str, Any] = {"token": TOKEN, "heartbeat_interval": 0.5, "identify_window": 0.2}
    return FakeDiscord(**{**defaults, **options})


async def send_messages(discord: FakeDiscord, shard_id: int, contents: list[str]) -> list[int]:
    return await discord.dispatch_many(
        shard_id, [("MESSAGE_CREATE", {"content": c, "channel_id": "1"}) for c in contents]
    )


def feed(inflater: Inflater, message: bytes) -> bytes | None:
    """One binary message through ``next_document``: its document, None if incomplete."""
    return inflater.next_document([(BINARY, message)], 0, frozenset())[1]
