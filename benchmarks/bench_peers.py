"""Benchmark 6: discord.py and hikari on the same server, payloads and machine, same run.

Optional (``pip install .[bench]``); a library that is not installed gets a
"not installed" row. Each library runs as its users run it, pointed at the
replay server through its REST base, with the intents for guild messages:

* discord.py: a ``Client`` with ``enable_debug_events`` counting
  ``on_socket_raw_receive`` (its raw socket event, one call per payload), and
  a plain ``Client`` counting ``on_message``. discord.py picks zstd-stream
  when ``zstandard`` is importable; it is switched to its own zlib-stream
  context (the code it runs without zstandard) so that all clients inflate
  the same bytes.
* hikari: a ``GatewayBot`` counting ``ShardPayloadEvent`` (its lowest-level
  raw payload event) with the cache switched off, so that only the raw path
  runs, and a default ``GatewayBot`` counting ``MessageCreateEvent``.

botrun's rows come from the throughput benchmark of the same invocation (or
are measured here when it was not run), and the table shows botrun's ratio to
each peer path.
"""

from __future__ import annotations

import asyncio
import importlib.util
import zlib
from typing import Any

from benchmarks._harness import Suite, emit, fmt, median, summarize, table
from benchmarks._measure import TOKEN, Tally, decode_floor, gateway_bot, peak_rss_mb, rss_mb

__all__ = ["discordpy", "hikari_bot", "run"]

_ZLIB_SUFFIX = b"\x00\x00\xff\xff"


class _DiscordZlibContext:
    """discord.py's own zlib-stream context (``discord.utils``, used without zstandard)."""

    __slots__ = ("buffer", "context")

    COMPRESSION_TYPE = "zlib-stream"

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.context = zlib.decompressobj()

    def decompress(self, data: bytes, /) -> str | None:
        self.buffer.extend(data)
        if len(data) < 4 or data[-4:] != _ZLIB_SUFFIX:
            return None
        message = self.context.decompress(self.buffer)
        self.buffer = bytearray()
        return message.decode("utf-8")


def discordpy(params: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_discordpy(params))


async def _discordpy(params: dict[str, Any]) -> dict[str, Any]:
    import discord
    import discord.http
    import discord.utils
    import yarl
    from discord.gateway import DiscordWebSocket

    gateway = gateway_bot(params["api_base"])
    discord.http.Route.BASE = params["api_base"]
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway["url"])
    discord.utils._ActiveDecompressionContext = _DiscordZlibContext
    intents = discord.Intents.none()
    intents.guilds = intents.guild_messages = intents.message_content = True
    raw = params["mode"] == "raw"
    client = discord.Client(intents=intents, enable_debug_events=raw)
    done = asyncio.Event()
    tally = Tally(params["target"], done.set)
    if raw:

        async def on_socket_raw_receive(message: str) -> None:
            if message.startswith('{"t":"MESSAGE_CREATE"'):
                tally.hit()

        client.event(on_socket_raw_receive)
    else:

        async def on_message(message: Any) -> None:
            tally.hit()

        client.event(on_message)
    before = rss_mb()
    runner = asyncio.create_task(client.start(TOKEN))
    waiter = asyncio.create_task(done.wait())
    finished, _ = await asyncio.wait(
        {runner, waiter}, timeout=params["timeout"], return_when=asyncio.FIRST_COMPLETED
    )
    if waiter not in finished:
        error = runner.exception() if runner in finished else None
        raise TimeoutError(f"discord.py got {tally.count} of {tally.target} events ({error!r})")
    result: dict[str, Any] = tally.result() | {
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_mb": before,
    }
    result["version"] = discord.__version__
    result["floor"] = decode_floor(params["spec"], params["sha256"], discord.utils._from_json)
    return result


def hikari_bot(params: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_hikari(params))


async def _hikari(params: dict[str, Any]) -> dict[str, Any]:
    import hikari
    from hikari.impl import config as hikari_config
    from hikari.internal import data_binding

    raw = params["mode"] == "raw"
    cache = hikari_config.CacheSettings(components=hikari.api.CacheComponents.NONE) if raw else None
    bot = hikari.GatewayBot(
        TOKEN,
        intents=hikari.Intents.GUILDS
        | hikari.Intents.GUILD_MESSAGES
        | hikari.Intents.MESSAGE_CONTENT,
        rest_url=params["api_base"],
        banner=None,
        logs="CRITICAL",
        cache_settings=cache,
    )
    done = asyncio.Event()
    tally = Tally(params["target"], done.set)
    if raw:

        async def on_payload(event: hikari.ShardPayloadEvent) -> None:
            if event.name == "MESSAGE_CREATE":
                tally.hit()

        bot.subscribe(hikari.ShardPayloadEvent, on_payload)
    else:

        async def on_message(event: hikari.MessageCreateEvent) -> None:
            tally.hit()

        bot.subscribe(hikari.MessageCreateEvent, on_message)
    before = rss_mb()
    await bot.start(check_for_updates=False)
    try:
        await asyncio.wait_for(done.wait(), params["timeout"])
    except TimeoutError:
        raise TimeoutError(f"hikari got {tally.count} of {tally.target} events") from None
    result: dict[str, Any] = tally.result() | {
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_mb": before,
    }
    result["version"] = hikari.__version__
    result["floor"] = decode_floor(
        params["spec"], params["sha256"], data_binding.default_json_loads
    )
    return result


# --------------------------------------------------------------------------- orchestration

_PEERS = [
    ("discord.py on_socket_raw_receive", "discord", "bench_peers:discordpy", "raw"),
    ("discord.py on_message", "discord", "bench_peers:discordpy", "message"),
    ("hikari ShardPayloadEvent (no cache)", "hikari", "bench_peers:hikari_bot", "raw"),
    ("hikari MessageCreateEvent", "hikari", "bench_peers:hikari_bot", "message"),
]


def _botrun_rows(suite: Suite, spec: str, info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """botrun's orjson rows from this invocation's throughput benchmark, or measured now."""
    from benchmarks.bench_throughput import _summary

    done = suite.results.get("throughput", {}).get("rows", {})
    rows = {
        "botrun sharder listener": done.get("sharder listener [orjson]"),
        "botrun runtime hook": done.get("runtime hook [orjson]"),
    }
    if all(row and "rate" in row and row.get("events") == info["count"] for row in rows.values()):
        return {k: v for k, v in rows.items() if v is not None}
    base = {"api_base": suite.server.api_base(spec), "spec": spec, "sha256": info["sha256"]}
    base |= {"timeout": 120.0, "target": info["count"]}
    configs = [
        (
            "botrun sharder listener",
            "bench_throughput:botrun_listener",
            base | {"event": "MESSAGE_CREATE"},
            "orjson",
        ),
        (
            "botrun runtime hook",
            "bench_throughput:botrun_runtime",
            base | {"plugins": ["bench_messages"]},
            "orjson",
        ),
    ]
    return summarize(suite.repeat(configs), _summary)


def run(suite: Suite) -> dict[str, Any]:
    server = suite.server
    count = 1_000 if suite.quick else 100_000
    spec = f"messages,n={count}"
    info = server.prepare(spec)
    params = {"api_base": server.api_base(spec), "spec": spec, "sha256": info["sha256"]}
    params |= {"target": count, "timeout": 60.0 if suite.quick else 300.0}
    configs = []
    rows: dict[str, dict[str, Any]] = {}
    for name, module, task, mode in _PEERS:
        if importlib.util.find_spec(module) is None:
            rows[name] = {"error": "not installed"}
        else:
            configs.append((name, task, params | {"mode": mode}, "orjson"))
    rows |= summarize(
        suite.repeat(configs),
        lambda good: {
            "rate": median(r["rate"] for r in good),
            "floor": median(r["floor"]["rate"] for r in good),
            "ratio": median(r["rate"] / r["floor"]["rate"] for r in good),
            "peak_rss_mb": median(r["peak_rss_mb"] for r in good),
            "version": good[0]["version"],
            "runs": [round(r["rate"]) for r in good],
        },
    )
    botrun = _botrun_rows(suite, spec, info)
    listener = botrun.get("botrun sharder listener", {}).get("rate")
    hook = botrun.get("botrun runtime hook", {}).get("rate")
    for row in rows.values():
        if "rate" in row:
            row["botrun_listener_x"] = listener / row["rate"] if listener else None
            row["botrun_runtime_x"] = hook / row["rate"] if hook else None
    print(_table(botrun, rows, count))
    figures = {"events": count, "botrun": botrun, "peers": rows}
    emit("peers", suite.quick, figures)
    return figures


def _table(botrun: dict[str, dict[str, Any]], peers: dict[str, dict[str, Any]], count: int) -> str:
    lines = []
    for name, row in [*botrun.items(), *peers.items()]:
        if "error" in row:
            lines.append([name, row["error"][:60], "", "", "", "", ""])
            continue
        x_listener = row.get("botrun_listener_x")
        x_hook = row.get("botrun_runtime_x")
        lines.append(
            [
                name + (f" ({row['version']})" if "version" in row else ""),
                fmt(row["rate"]),
                fmt(row["ratio"] * 100, 1, " %"),
                fmt(row["peak_rss_mb"], 1),
                "" if x_listener is None else f"{x_listener:.1f}x",
                "" if x_hook is None else f"{x_hook:.1f}x",
                " / ".join(f"{r:,}" for r in row["runs"]),
            ]
        )
    headers = [
        "client path",
        "events/s",
        "of floor",
        "peak RSS MB",
        "botrun listener ÷",
        "botrun runtime ÷",
        "runs",
    ]
    return table(f"Peers side by side: {count:,} MESSAGE_CREATE over zlib-stream", headers, lines)
