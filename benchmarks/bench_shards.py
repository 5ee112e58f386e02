"""Benchmark 4: a thousand shards in one process, READY and heartbeating.

* memory: process RSS once every shard is READY, minus the same process's RSS
  before the sharder was even built, divided by the shard count; over ws and
  over wss (one shared SSL context, which botrun uses by default);
* idle CPU: process CPU time over an idle minute (heartbeats at Discord's
  41.25 s interval, acknowledged by the server), as a share of one core;
* time to all-READY with ``max_concurrency`` 1,000 (one identify wave);
* idle CPU on trio as well (the same 1,000 shards over ws);
* identify pacing: with ``max_concurrency`` 16, time to all-READY against the
  theoretical minimum ``(ceil(N / C) - 1) x timeout``; the identify timeout is
  shortened from Discord's 5 s to 0.5 s to keep the run short, and the replay
  server checks that no bucket identified twice within it (arrival times, with
  2 ms of tolerance).

For scale, the same idle window is also spent by a bare asyncio loop that
only wakes up as often as the shards' heartbeats did, sending a few bytes over
a socket pair and waking again for the reply (the heartbeat and its ACK): the
price of a wake-up on this machine, which no client can avoid except by waking
less often.
"""

from __future__ import annotations

import asyncio
import gc
import math
import socket
import ssl
import time
from typing import Any

import anyio

from benchmarks._botrun import make_sharder, wait
from benchmarks._harness import Suite, WorkerFailed, emit, fmt, table
from benchmarks._measure import cpu_seconds, gateway_bot, rss_mb

__all__ = ["bare_wakeups", "many_shards", "run"]


def many_shards(params: dict[str, Any]) -> dict[str, Any]:
    return anyio.run(_many_shards, params, backend=params.get("backend", "asyncio"))


async def _many_shards(params: dict[str, Any]) -> dict[str, Any]:
    count = params["shards"]
    context = ssl.create_default_context(cafile=params["ca"]) if params["tls"] else None
    gateway = gateway_bot(params["api_base"])
    if params["tls"]:
        gateway["url"] = params["wss_url"]
    gc.collect()
    before = rss_mb()
    ready = anyio.Event()
    seen: set[int] = set()

    def on_ready(data: Any, shard_id: int) -> None:
        seen.add(shard_id)
        if len(seen) == count:
            ready.set()

    sharder = make_sharder(gateway, total=count, timeout=params["window"], ssl_context=context)
    sharder.on("ready", on_ready)
    started_monotonic = time.monotonic()  # the replay server's clock too: one per machine
    started = time.perf_counter()
    async with sharder:
        await sharder.connect()
        connected = time.perf_counter() - started
        await wait(ready, params["timeout"], f"{count} shards to be READY")
        all_ready = time.perf_counter() - started
        await anyio.sleep(0.5)  # let the last READYs' garbage go
        gc.collect()
        after = rss_mb()
        cpu_before, idle_started = cpu_seconds(), time.perf_counter()
        idle_from = time.monotonic()
        await anyio.sleep(params["idle"])
        idle_cpu = cpu_seconds() - cpu_before
        idle_wall = time.perf_counter() - idle_started
        idle_to = time.monotonic()
        after_idle = rss_mb()
    return {
        "shards": count,
        "started_monotonic": started_monotonic,
        "connected_s": connected,
        "all_ready_s": all_ready,
        "rss_before_mb": before,
        "rss_ready_mb": after,
        "rss_after_idle_mb": after_idle,
        "kb_per_shard": (after - before) * 1024 / count,
        "idle_seconds": idle_wall,
        "idle_window": [idle_from, idle_to],
        "idle_cpu_percent": idle_cpu / idle_wall * 100 if params["idle"] else None,
    }


def bare_wakeups(params: dict[str, Any]) -> dict[str, Any]:
    """An asyncio loop doing nothing but ``rate`` heartbeat-like round trips per second."""
    return asyncio.run(_bare_wakeups(params["rate"], params["seconds"]))


async def _bare_wakeups(rate: float, seconds: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    loop.add_reader(theirs.fileno(), lambda: theirs.send(theirs.recv(64)))  # the "server"
    replies = 0

    def on_reply() -> None:
        nonlocal replies
        ours.recv(64)
        replies += 1

    loop.add_reader(ours.fileno(), on_reply)
    cpu_before, started = cpu_seconds(), time.perf_counter()
    beats = 0
    while (elapsed := time.perf_counter() - started) < seconds:
        await asyncio.sleep(max(0.0, (beats + 1) / rate - elapsed))
        ours.send(b'{"op":1,"d":251}')
        beats += 1
    cpu = cpu_seconds() - cpu_before
    wall = time.perf_counter() - started
    return {"rate": rate, "beats": beats, "replies": replies, "cpu_percent": cpu / wall * 100}


def run(suite: Suite) -> dict[str, Any]:
    server = suite.server
    quick = suite.quick
    count = 20 if quick else 1000
    idle = 2.0 if quick else 60.0
    paced_count, concurrency, window = (24, 4, 0.05) if quick else (1000, 16, 0.5)
    configs: list[tuple[str, bool, int, int, float, float]] = [
        ("ws, max_concurrency = shards", False, count, count, 5.0, idle),
        ("wss, max_concurrency = shards", True, count, count, 5.0, idle),
        (f"ws, max_concurrency {concurrency}", False, paced_count, concurrency, window, 0.0),
        ("ws, max_concurrency = shards, trio", False, count, count, 5.0, idle),
    ]
    rows: dict[str, dict[str, Any]] = {}
    for name, tls, shards, mc, timeout, idle_s in configs:
        backend = "trio" if name.endswith(", trio") else "asyncio"
        spec = f"idle,mc={mc},shards={shards},window={timeout}"
        limit = 120.0 + math.ceil(shards / mc) * timeout
        params: dict[str, Any] = {
            "api_base": server.api_base(spec),
            "wss_url": server.gateway_url(spec, tls=True),
            "ca": server.ca,
            "tls": tls,
            "shards": shards,
            "window": timeout,
            "idle": idle_s,
            "timeout": limit,
            "backend": backend,
        }
        server.reset()
        try:
            row = suite.worker("bench_shards:many_shards", params, timeout=limit + 120)
        except WorkerFailed as exc:
            rows[name] = {"error": str(exc)}
            continue
        stats = server.stats()
        theory = (math.ceil(shards / mc) - 1) * timeout
        first, last = stats["first_identify"], stats["last_identify"]
        start, end = row["idle_window"]
        beats = sum(start <= t <= end for t in stats["heartbeat_times"])
        row |= {
            "idle_heartbeats": beats,
            "first_identify_s": first - row["started_monotonic"] if first else None,
            "last_identify_s": last - row["started_monotonic"] if last else None,
            "max_concurrency": mc,
            "identify_timeout": timeout,
            "theory_s": theory,
            "over_theory_percent": (row["all_ready_s"] - theory) / theory * 100 if theory else None,
            "identifies": stats["identifies"],
            "pacing_violations": stats["pacing_violations"],
            "min_bucket_gap_s": stats["min_bucket_gap"],
            "heartbeats": stats["heartbeats"],
        }
        rows[name] = row
    baseline = None
    first_row = next(iter(rows.values()))
    if first_row.get("idle_heartbeats"):
        rate = first_row["idle_heartbeats"] / first_row["idle_seconds"]
        baseline = suite.worker("bench_shards:bare_wakeups", {"rate": rate, "seconds": idle})
    print(_table(rows, baseline))
    figures = {"rows": rows, "bare_wakeups": baseline}
    emit("shards", quick, figures)
    return figures


def _table(rows: dict[str, dict[str, Any]], baseline: dict[str, Any] | None) -> str:
    lines = []
    for name, row in rows.items():
        if "error" in row:
            lines.append([name, row["error"][:60], "", "", "", "", ""])
            continue
        theory = row["theory_s"]
        ready = fmt(row["all_ready_s"], 2, " s")
        if theory:
            ready += (
                f" (theory {theory:.2f} s, +{row['over_theory_percent']:.1f} %; identifies from "
                f"{row['first_identify_s']:.2f} to {row['last_identify_s']:.2f} s)"
            )
        cpu = row["idle_cpu_percent"]
        lines.append(
            [
                f"{row['shards']:,} shards, {name}",
                fmt(row["kb_per_shard"], 1),
                fmt(row["rss_ready_mb"] - row["rss_before_mb"], 1),
                "-" if cpu is None else f"{cpu:.2f} % ({cpu * 0.6:.2f} s/min)",
                ready,
                f"{row['identifies']} / {row['pacing_violations']}",
                row["idle_heartbeats"] if cpu is not None else "-",
            ]
        )
    if baseline is not None:
        cpu = baseline["cpu_percent"]
        label = f"bare asyncio loop, {baseline['rate']:.1f} wake-up pairs/s (reference)"
        lines.append([label, "", "", f"{cpu:.2f} % ({cpu * 0.6:.2f} s/min)", "", "", ""])
    headers = [
        "configuration",
        "KB/shard",
        "RSS added MB",
        "idle CPU (1 core)",
        "all READY after",
        "identifies / pacing violations",
        "heartbeats while idle",
    ]
    return table("Many shards in one process", headers, lines)
