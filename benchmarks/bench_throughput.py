"""Benchmarks 1 and 2: the decode floor, and one shard's throughput against it.

100,000 MESSAGE_CREATE (about 1.2 KB of JSON each, varied) over zlib-stream to
one shard, delivered (a) to a sharder listener and (b) through the runtime to a
plugin's ``on_message_create``; with orjson and with the standard library's
json. Each run is a fresh process that measures, after the client, the decode
floor on the very bytes the server sent: inflate with one zlib context and
parse with the same JSON library, in a tight loop. The ratio is computed per
run, and the table shows medians of three runs. A mixed stream (messages,
presences, typing, reactions and large GUILD_CREATEs) and the emulator's own
send rate (to a client that reads and discards) complete the picture.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import anyio

from benchmarks._botrun import make_sharder, runtime, wait
from benchmarks._harness import Suite, emit, fmt, median, summarize, table
from benchmarks._measure import Tally, decode_floor, gateway_bot, peak_rss_mb, rss_mb

__all__ = ["botrun_listener", "botrun_runtime", "run", "sink"]


# --------------------------------------------------------------------------- workers


def botrun_listener(params: dict[str, Any]) -> dict[str, Any]:
    """A sharder listener on ``params["event"]`` (``"event"``: every dispatch but READY)."""
    return anyio.run(_botrun_listener, params)


async def _botrun_listener(params: dict[str, Any]) -> dict[str, Any]:
    from sharder._codec import JSON_LIBRARY, loads

    gateway = gateway_bot(params["api_base"])
    done = anyio.Event()
    tally = Tally(params["target"], done.set)
    sharder = make_sharder(gateway)
    if params["event"] == "event":
        after = params["prelude"] + 1  # READY is 1, then one GUILD_CREATE per guild

        def on_event(payload: dict[str, Any], shard_id: int) -> None:
            if payload["s"] > after:
                tally.hit()

        sharder.on("event", on_event)
    else:
        sharder.on(params["event"], tally.hit)
    before = rss_mb()
    async with sharder:
        await sharder.connect()
        await wait(done, params["timeout"], f"{params['target']} events")
    result: dict[str, Any] = tally.result()
    result |= {"peak_rss_mb": peak_rss_mb(), "rss_before_mb": before, "json": JSON_LIBRARY}
    result["floor"] = decode_floor(params["spec"], params["sha256"], loads)
    return result


def botrun_runtime(params: dict[str, Any]) -> dict[str, Any]:
    """The runtime, with ``params["plugins"]`` from ``benchmarks/plugins`` counting deliveries."""
    return anyio.run(_botrun_runtime, params)


async def _botrun_runtime(params: dict[str, Any]) -> dict[str, Any]:
    from sharder._codec import JSON_LIBRARY, loads

    gateway = gateway_bot(params["api_base"])
    done = anyio.Event()
    tally = Tally(params["target"], done.set, events=params.get("events"))
    before = rss_mb()
    async with runtime(gateway, params["plugins"], {"tally": tally}) as (_, router):
        await wait(done, params["timeout"], f"{params['target']} hook calls")
        errors = sum(stats["errors"] for stats in router.stats().values())
    result: dict[str, Any] = tally.result()
    result |= {"peak_rss_mb": peak_rss_mb(), "rss_before_mb": before, "json": JSON_LIBRARY}
    result |= {"hook_errors": errors}
    result["floor"] = decode_floor(params["spec"], params["sha256"], loads)
    return result


def sink(params: dict[str, Any]) -> dict[str, Any]:
    """Identify over a raw socket, then read and discard the flood: the server's own rate."""
    connection = socket.create_connection(("127.0.0.1", params["port"]))
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    path = f"/s/{params['spec']}/gateway?v=10&encoding=json&compress=zlib-stream"
    connection.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += connection.recv(4096)
    identify = b'{"op":2,"d":{"token":"bench-token","intents":1,"properties":{},"shard":[0,1]}}'
    buffer = bytearray(1 << 20)
    received, expected = 0, params["bytes"]
    started = time.perf_counter()  # the flood follows READY, which answers this IDENTIFY
    connection.sendall(bytes((0x81, 0x80 | len(identify))) + b"\0\0\0\0" + identify)
    while received < expected:
        count = connection.recv_into(buffer)
        if not count:
            raise ConnectionError("the server closed the connection mid-flood")
        received += count
    seconds = time.perf_counter() - started
    connection.close()
    return {"rate": params["events"] / seconds, "mb_per_s": received / seconds / 2**20}


# --------------------------------------------------------------------------- orchestration


def _summary(good: list[dict[str, Any]]) -> dict[str, Any]:
    ratios = [r["rate"] / r["floor"]["rate"] for r in good]
    return {
        "events": good[0]["events"],
        "rate": median(r["rate"] for r in good),
        "floor": median(r["floor"]["rate"] for r in good),
        "inflate_rate": median(r["floor"]["inflate_rate"] for r in good),
        "ratio": median(ratios),
        "cpu_us_per_event": median(r["cpu_us_per_event"] for r in good),
        "peak_rss_mb": median(r["peak_rss_mb"] for r in good),
        "rss_before_mb": median(r["rss_before_mb"] for r in good),
        "runs": [round(r["rate"]) for r in good],
        "ratios": [round(x, 3) for x in ratios],
    }


def run(suite: Suite) -> dict[str, Any]:
    server = suite.server
    count = 3_000 if suite.quick else 100_000
    mixed_count = 3_000 if suite.quick else 50_000
    spec, mixed = f"messages,n={count}", f"mixed,n={mixed_count}"
    info, mixed_info = server.prepare(spec), server.prepare(mixed)
    timeout = 120.0

    def params(spec_text: str, prepared: dict[str, Any], **extra: Any) -> dict[str, Any]:
        base = {"api_base": server.api_base(spec_text), "spec": spec_text}
        return base | {"sha256": prepared["sha256"], "timeout": timeout} | extra

    listener = params(spec, info, event="MESSAGE_CREATE", target=count)
    hook = params(spec, info, plugins=["bench_messages"], target=count)
    configs = [
        ("sharder listener", "bench_throughput:botrun_listener", listener, "orjson"),
        ("sharder listener", "bench_throughput:botrun_listener", listener, "json"),
        ("runtime hook", "bench_throughput:botrun_runtime", hook, "orjson"),
        ("runtime hook", "bench_throughput:botrun_runtime", hook, "json"),
        (
            "sharder listener, mixed",
            "bench_throughput:botrun_listener",
            params(
                mixed, mixed_info, event="event", target=mixed_count, prelude=mixed_info["prelude"]
            ),
            "orjson",
        ),
    ]
    keyed = [(f"{name} [{lib}]", task, p, lib) for name, task, p, lib in configs]
    outcomes = suite.repeat(keyed)
    rows = summarize(outcomes, _summary)

    server.reset()
    sink_params = {"port": server.port, "spec": spec, "bytes": info["bytes"], "events": count}
    sink_runs = [suite.worker("bench_throughput:sink", sink_params) for _ in range(suite.runs)]
    floods = server.stats()["floods"]
    server_rate = median(f["events"] / f["seconds"] for f in floods) if floods else None
    emulator = {"sink_rate": median(r["rate"] for r in sink_runs), "server_write_rate": server_rate}

    print(_table(rows, count, mixed_count, emulator, info))
    figures = {
        "events": count,
        "mixed_events": mixed_count,
        "wire_bytes_per_event": info["bytes"] / count,
        "floor_orjson": rows["sharder listener [orjson]"].get("floor"),
        "floor_json": rows["sharder listener [json]"].get("floor"),
        "emulator": emulator,
        "rows": rows,
    }
    emit("throughput", suite.quick, figures)
    return figures


def _table(
    rows: dict[str, dict[str, Any]],
    count: int,
    mixed_count: int,
    emulator: dict[str, Any],
    info: dict[str, Any],
) -> str:
    lines = []
    for name, row in rows.items():
        if "error" in row:
            lines.append([name, row["error"][:60], "", "", "", "", ""])
            continue
        lines.append(
            [
                name,
                fmt(row["rate"]),
                fmt(row["floor"]),
                fmt(row["ratio"] * 100, 1, " %"),
                fmt(row["cpu_us_per_event"], 2),
                fmt(row["peak_rss_mb"], 1),
                " / ".join(f"{r:,}" for r in row["runs"]),
            ]
        )
    lines.append(
        ["emulator send rate (raw socket sink)", fmt(emulator["sink_rate"]), "", "", "", "", ""]
    )
    title = (
        f"Single-shard throughput: {count:,} MESSAGE_CREATE over zlib-stream "
        f"({info['bytes'] / count:.0f} wire bytes each; mixed stream: {mixed_count:,} events)"
    )
    headers = [
        "path [JSON]",
        "events/s",
        "floor events/s",
        "of floor",
        "CPU us/event",
        "peak RSS MB",
        "runs",
    ]
    return table(title, headers, lines)
