"""In-process harness: botrun's per-event CPU cost against the decode floor, no sockets.

``python -m benchmarks.hotpath [--json orjson|json] [--backend asyncio|trio]
[--runs 5] [--only listener,dropped,...] [--profile OUT.prof]``

The real :class:`~sharder.WebsocketShard` and ``WebSocketConnection`` (and,
for the ``runtime-*`` scenarios, the real ``EventRouter`` and drop-in plugins)
are fed a flood's frames from memory, through a fake anyio byte stream that
hands them over in 256 KiB reads, as asyncio's transport does. The shard is
started with ``connect()``, sees HELLO, sends IDENTIFY, gets READY and then
the flood; only ``open_websocket`` is replaced. Per-event cost is
``time.process_time()`` from the first delivery to the last (as the end-to-end
benchmarks count them), best of ``--runs``; each run is followed by the decode
floor over the same messages in the same process (inflate with one zlib
context, then the same JSON ``loads``), also best of ``--runs``. CPU time in
one process is what stays stable on a shared VM, where wall-clock rates move
by ±15 % between runs.

Scenarios (``--only``):

* ``listener``: 100,000 MESSAGE_CREATE, a sharder listener on MESSAGE_CREATE.
* ``runtime``: the same through the runtime to a plugin's ``on_message_create``
  (what ``python -m benchmarks --only throughput`` calls the runtime hook).
* ``dropped`` / ``delivered``: 100,000 PRESENCE_UPDATE (first and last event
  are messages), PRESENCE_UPDATE disabled (dropped from a peek, unparsed) or
  delivered to a sharder listener.
* ``runtime-dropped`` / ``runtime-delivered``: the same stream through the
  runtime, with only the messages plugin (the router disables presences) or
  with the presences plugin too: what ``python -m benchmarks --only discard``
  compares.
* ``plain-*``: the same without transport compression (text frames, no
  inflate): ``plain-listener``, ``plain-dropped``, ``plain-delivered``,
  ``plain-runtime-dropped``, ``plain-runtime-delivered``.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["main"]

READ_SIZE: Final = 256 * 1024
SCENARIOS: Final = (
    "listener",
    "runtime",
    "dropped",
    "delivered",
    "runtime-dropped",
    "runtime-delivered",
    "plain-listener",
    "plain-dropped",
    "plain-delivered",
    "plain-runtime-dropped",
    "plain-runtime-delivered",
)
_COUNT: Final = 100_000


def _spec(scenario: str, count: int) -> str:
    if scenario.removeprefix("plain-") in ("listener", "runtime"):
        return f"messages,n={count}"
    return f"presence,n={count},pct=100"


@dataclass
class Traffic:
    """What the fake server sends: HELLO, then (after IDENTIFY) READY and the flood."""

    hello: bytes
    rest: list[bytes]
    """READY and the flood, cut into reads of at most 256 KiB."""
    timed: list[bytes]
    """The timed events' websocket payloads (compressed or not), for the floor."""
    prelude: list[bytes]
    compressed: bool
    count: int
    kinds: dict[str, int]


def _traffic(spec_text: str, compressed: bool) -> Traffic:
    from benchmarks._payloads import ZLIB_HEADER, Spec, dumps, frame, load_flood, raw_deflate

    flood = load_flood(Spec.parse(spec_text))
    messages = flood.messages()
    hello_doc = dumps({"t": None, "s": None, "op": 10, "d": {"heartbeat_interval": 41_250}})
    ready = {
        "v": 10,
        "user": {"id": "1100000000000000001", "username": "bench", "bot": True},
        "session_id": "0123456789abcdef",
        "resume_gateway_url": "ws://127.0.0.1:1",
        "guilds": [],
        "shard": [0, 1],
        "application": {"id": "1100000000000000001", "flags": 0},
    }
    ready_doc = dumps({"t": "READY", "s": 1, "op": 0, "d": ready})
    if compressed:
        hello = frame(ZLIB_HEADER + raw_deflate(hello_doc))
        stream = frame(raw_deflate(ready_doc)) + flood.data
    else:
        inflate = zlib.decompressobj(-15).decompress
        messages = [inflate(m) for m in messages]
        hello = frame(hello_doc, 0x1)
        stream = frame(ready_doc, 0x1) + b"".join(frame(doc, 0x1) for doc in messages)
    rest = [stream[i : i + READ_SIZE] for i in range(0, len(stream), READ_SIZE)]
    return Traffic(
        hello,
        rest,
        messages[flood.prelude :],
        messages[: flood.prelude],
        compressed,
        flood.count,
        flood.kinds,
    )


class FakeStream:
    """An anyio ByteStream that replays :class:`Traffic`; READY waits for IDENTIFY."""

    def __init__(self, traffic: Traffic) -> None:
        import anyio

        self._chunks = [traffic.hello]
        self._rest = traffic.rest
        self._identified = anyio.Event()
        self._at = 0

    async def receive(self, max_bytes: int = 65536) -> bytes:
        import anyio
        import anyio.lowlevel

        await anyio.lowlevel.checkpoint()
        if self._at == 1 and self._chunks is not self._rest:
            await self._identified.wait()
            self._chunks, self._at = self._rest, 0
        if self._at >= len(self._chunks):
            raise anyio.EndOfStream
        chunk = self._chunks[self._at]
        self._at += 1
        return chunk

    async def send(self, item: bytes) -> None:
        if b'"op":2' in _unmask(item):
            self._identified.set()

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    @property
    def extra_attributes(self) -> dict[Any, Callable[[], Any]]:
        return {}


def _unmask(frame: bytes) -> bytes:
    length, pos = frame[1] & 0x7F, 2
    if length == 126:
        length, pos = int.from_bytes(frame[2:4], "big"), 4
    elif length == 127:
        length, pos = int.from_bytes(frame[2:10], "big"), 10
    key = frame[pos : pos + 4] * (length // 4 + 1)
    return bytes(a ^ b for a, b in zip(frame[pos + 4 :], key, strict=False))


@asynccontextmanager
async def _patched_open(traffic: Traffic) -> AsyncIterator[None]:
    import sharder.shard
    from sharder._transport import WebSocketConnection
    from sharder._websocket import WebSocketClient
    from sharder.errors import TransportError

    original = getattr(sharder.shard, "open_websocket")  # noqa: B009 - not re-exported
    used = [False]

    async def open_websocket(url: str, **options: Any) -> WebSocketConnection:
        if used[0]:
            raise TransportError("the harness serves one connection")
        used[0] = True
        ws = WebSocketClient("127.0.0.1", "/", max_message_size=options["max_message_size"])
        return WebSocketConnection(url, "127.0.0.1:1", FakeStream(traffic), ws)  # type: ignore[arg-type]

    setattr(sharder.shard, "open_websocket", open_websocket)  # noqa: B010 - patched for the run
    try:
        yield
    finally:
        setattr(sharder.shard, "open_websocket", original)  # noqa: B010


class _OneShard:
    """What ``EventRouter.attach`` needs of a sharder, for one bare shard."""

    def __init__(self, shard: Any) -> None:
        self.shards = {shard.id: shard}
        self.on = shard.on


async def _run_shard(scenario: str, traffic: Traffic) -> dict[str, float]:
    import anyio

    from benchmarks._botrun import INTENTS, TOKEN
    from benchmarks._measure import PLUGIN_DIR, Tally
    from sharder import WebsocketShard

    done = anyio.Event()
    base = scenario.removeprefix("plain-")
    runtime = base.startswith("runtime")
    delivered = base.endswith("delivered")
    messages = traffic.kinds.get("MESSAGE_CREATE", 0)
    target = traffic.count if delivered or base in ("listener", "runtime") else messages
    tally = Tally(target, done.set, events=traffic.count)
    options: dict[str, Any] = {
        "token": TOKEN,
        "intents": INTENTS,
        "url": "ws://127.0.0.1:1",
        "compression": "zlib-stream" if traffic.compressed else None,
    }
    async with anyio.create_task_group() as tg, _patched_open(traffic):
        if runtime:
            from runtime.config import Config, PluginsConfig
            from runtime.context import PluginContext
            from runtime.dispatch import EventRouter
            from runtime.plugins import load_plugins

            plugins = ["bench_messages", "bench_presences"] if delivered else ["bench_messages"]
            config = Config(
                plugins=PluginsConfig(
                    paths=(PLUGIN_DIR,),
                    enabled=tuple(plugins),
                    strict=True,
                    settings={name: {"tally": tally} for name in plugins},
                )
            )
            plugin_set = load_plugins(config, environ={})
            contexts = {
                p.name: PluginContext(p.name, p.settings, config=config, rest=None, task_group=tg)
                for p in plugin_set.loaded
            }
            router = EventRouter(plugin_set.manager, dict(contexts))
            options["disabled_events"] = router.unrouted_events()
            shard = WebsocketShard(options)
            router.attach(_OneShard(shard))  # type: ignore[arg-type]
            tg.start_soon(router.run)
        else:
            if not delivered and base != "listener":
                options["disabled_events"] = ["PRESENCE_UPDATE"]
            shard = WebsocketShard(options)
            shard.on("MESSAGE_CREATE", tally.hit)
            if delivered:
                shard.on("PRESENCE_UPDATE", tally.hit)
        async with shard:
            await shard.connect()
            with anyio.fail_after(120):
                await done.wait()
        tg.cancel_scope.cancel()
    return tally.result()


def _floor(traffic: Traffic, loads: Callable[[bytes], Any]) -> tuple[float, float]:
    """(inflate + loads, inflate only) in µs per timed event."""

    timed = traffic.timed
    if not traffic.compressed:
        started = time.process_time()
        for message in timed:
            loads(message)
        return (time.process_time() - started) / len(timed) * 1e6, 0.0
    from benchmarks._measure import time_decode

    parsed, inflated = (
        time_decode(traffic.prelude, timed, parser, time.process_time) / len(timed) * 1e6
        for parser in (loads, None)
    )
    return parsed, inflated


def _measure(scenario: str, runs: int, backend: str, count: int) -> dict[str, Any]:
    import anyio

    from sharder._codec import loads

    traffic = _traffic(_spec(scenario, count), not scenario.startswith("plain-"))
    shard_us, floor_us, inflate_us = [], [], []
    for _ in range(runs):
        gc.collect()
        result = anyio.run(_run_shard, scenario, traffic, backend=backend)
        shard_us.append(result["cpu_us_per_event"])
        gc.collect()
        floor, inflate = _floor(traffic, loads)
        floor_us.append(floor)
        inflate_us.append(inflate)
    best, floor = min(shard_us), min(floor_us)
    return {
        "scenario": scenario,
        "us_per_event": best,
        "floor_us": floor,
        "inflate_us": min(inflate_us),
        "above_floor_us": best - floor,
        "of_floor": floor / best,
        "runs_us": [round(x, 3) for x in shard_us],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hotpath", description=__doc__)
    parser.add_argument("--json", choices=("orjson", "json"), default="orjson")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default="listener,dropped,runtime-dropped,runtime-delivered")
    parser.add_argument("--count", type=int, default=_COUNT, help="events per flood")
    parser.add_argument("--profile", help="cProfile one run of the first scenario into this file")
    parser.add_argument(
        "--once",
        action="store_true",
        help="one run of the first scenario, no floor (for instruction counts under valgrind)",
    )
    args = parser.parse_args(argv)
    if args.json == "json":
        sys.modules["orjson"] = None  # type: ignore[assignment]
    names = [n for n in args.only.split(",") if n]
    for name in names:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    if args.once or args.profile:
        import anyio

        traffic = _traffic(_spec(names[0], args.count), not names[0].startswith("plain-"))
        if args.once:
            anyio.run(_run_shard, names[0], traffic, backend=args.backend)
            return 0
        import cProfile

        cProfile.runctx(
            "anyio.run(_run_shard, name, traffic, backend=backend)",
            {"anyio": anyio, "_run_shard": _run_shard},
            {"name": names[0], "traffic": traffic, "backend": args.backend},
            args.profile,
        )
        return 0
    results = {}
    for name in names:
        row = _measure(name, args.runs, args.backend, args.count)
        results[name] = row
        print(
            f"{name:24} [{args.json}, {args.backend}] {row['us_per_event']:6.3f} us/event; "
            f"floor {row['floor_us']:6.3f} (inflate {row['inflate_us']:.3f}); "
            f"+{row['above_floor_us']:.3f} us; of floor {row['of_floor'] * 100:.1f} %; "
            f"runs {row['runs_us']}",
            flush=True,
        )
    pairs = [("dropped", "delivered"), ("runtime-dropped", "runtime-delivered")]
    for prefix in ("", "plain-"):
        for low, high in pairs:
            a, b = results.get(prefix + low), results.get(prefix + high)
            if a and b:
                ratio = a["us_per_event"] / b["us_per_event"]
                print(f"{prefix + low} / {prefix + high}: {ratio:.3f}")
    print("RESULT " + json.dumps({"json": args.json, "backend": args.backend, "rows": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
