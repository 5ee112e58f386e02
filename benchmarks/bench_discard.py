"""Benchmark 3: early discard of events no plugin wants.

A PRESENCE_UPDATE flood (90 %) with MESSAGE_CREATE mixed in, through the
runtime: once with a plugin for messages only (the runtime passes the
unrouted PRESENCE_UPDATE to the sharder as a disabled event, which drops it
after inflating, from a peek at its first bytes, without parsing it), and
once with a second plugin that listens to presences. Events per second
count every event of the stream, handled or dropped.

The cost of one unwanted event against one parsed and delivered is measured
on a pure presence stream (its first and last events are messages, to time
it), dropped and delivered; the inflate-only cost of the same bytes is shown,
since no client can skip inflating a zlib stream.
"""

from __future__ import annotations

from typing import Any

from benchmarks._harness import Suite, emit, fmt, median, summarize, table

__all__ = ["run"]


def run(suite: Suite) -> dict[str, Any]:
    server = suite.server
    count = 3_000 if suite.quick else 100_000
    mixed, pure = f"presence,n={count},pct=90", f"presence,n={count},pct=100"
    mixed_info, pure_info = server.prepare(mixed), server.prepare(pure)

    def params(spec: str, info: dict[str, Any], plugins: list[str]) -> dict[str, Any]:
        messages = info["kinds"].get("MESSAGE_CREATE", 0)
        target = count if "bench_presences" in plugins else messages
        return {
            "api_base": server.api_base(spec),
            "spec": spec,
            "sha256": info["sha256"],
            "timeout": 120.0,
            "plugins": plugins,
            "target": target,
            "events": count,
        }

    task = "bench_throughput:botrun_runtime"
    only_messages, both = ["bench_messages"], ["bench_messages", "bench_presences"]
    configs = [
        ("90 % presence, dropped", task, params(mixed, mixed_info, only_messages), "orjson"),
        ("90 % presence, delivered", task, params(mixed, mixed_info, both), "orjson"),
        ("100 % presence, dropped", task, params(pure, pure_info, only_messages), "orjson"),
        ("100 % presence, delivered", task, params(pure, pure_info, both), "orjson"),
    ]
    rows = summarize(
        suite.repeat(configs),
        lambda good: {
            "rate": median(r["rate"] for r in good),
            "us_per_event": median(1e6 / r["rate"] for r in good),
            "floor": median(r["floor"]["rate"] for r in good),
            "inflate_us_per_event": median(1e6 / r["floor"]["inflate_rate"] for r in good),
            "runs": [round(r["rate"]) for r in good],
        },
    )
    dropped, delivered = rows["100 % presence, dropped"], rows["100 % presence, delivered"]
    cost = None
    if "error" not in dropped and "error" not in delivered:
        cost = {
            "dropped_us": dropped["us_per_event"],
            "delivered_us": delivered["us_per_event"],
            "inflate_us": dropped["inflate_us_per_event"],
            "ratio": dropped["us_per_event"] / delivered["us_per_event"],
        }
    speedup = None
    a, b = rows["90 % presence, dropped"], rows["90 % presence, delivered"]
    if "error" not in a and "error" not in b:
        speedup = a["rate"] / b["rate"]
    print(_table(rows, count, cost, speedup))
    figures = {"events": count, "rows": rows, "unwanted_cost": cost, "mixed_speedup": speedup}
    emit("discard", suite.quick, figures)
    return figures


def _table(
    rows: dict[str, dict[str, Any]],
    count: int,
    cost: dict[str, float] | None,
    speedup: float | None,
) -> str:
    lines = []
    for name, row in rows.items():
        if "error" in row:
            lines.append([name, row["error"][:60], "", "", ""])
            continue
        lines.append(
            [
                name,
                fmt(row["rate"]),
                fmt(row["us_per_event"], 2),
                fmt(row["inflate_us_per_event"], 2),
                " / ".join(f"{r:,}" for r in row["runs"]),
            ]
        )
    title = (
        f"Early discard: {count:,} events through the runtime (PRESENCE_UPDATE + MESSAGE_CREATE)"
    )
    text = table(
        title, ["stream, presences", "events/s", "us/event", "inflate us/event", "runs"], lines
    )
    if cost is not None:
        text += (
            f"\n\nAn unwanted PRESENCE_UPDATE costs {cost['dropped_us']:.2f} us, a parsed and "
            f"delivered one {cost['delivered_us']:.2f} us: {cost['ratio']:.2f} of it "
            f"(inflating alone: {cost['inflate_us']:.2f} us)."
        )
    if speedup is not None:
        text += (
            f"\nWith 90 % presences, dropping them unparsed handles {speedup:.2f}x the events/s."
        )
    return text
