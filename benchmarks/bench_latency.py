"""Benchmark 5: how long after a frame arrives its hook is called, at 10,000 events/s.

The replay server sends MESSAGE_CREATEs one at a time at a steady 10,000 per
second (zlib-stream, one context, encoded live), each stamped with
``time.monotonic_ns()`` in its ``nonce`` as it is encoded: the same clock in
every process of the machine. Two figures per delivery:

* arrival to hook: from the moment the socket read that brought the frame
  returned (clocked by a thin wrapper around the frame parser, which runs
  right after every read) to the hook call: botrun's own latency;
* stamp to hook: from the server's stamp, so including the server's encoding
  (~20 us), the loopback transfer and the wake-up of an idle client; the same
  figure for a raw socket reader that only reads and inflates shows how much
  of it is not botrun's.

The first 2 % of events (warm-up) are left out of the percentiles.
"""

from __future__ import annotations

import socket
import time
import zlib
from array import array
from collections.abc import Callable
from typing import Any

import anyio

from benchmarks._botrun import make_sharder, runtime, wait
from benchmarks._harness import Suite, emit, fmt, median, summarize, table
from benchmarks._measure import gateway_bot

__all__ = ["botrun_latency", "raw_latency", "run"]

_NONCE = b'"nonce":"'


class Latencies:
    """Records ``now - stamp`` and ``now - arrival`` (ns) per delivery; ``done`` at ``target``."""

    __slots__ = ("arrival", "done", "since_arrival", "target", "values")

    def __init__(self, target: int, done: Callable[[], None]) -> None:
        self.values = array("q")
        self.since_arrival = array("q")
        self.arrival = 0
        self.target = target
        self.done = done

    def hit(self, data: dict[str, Any], shard_id: int | None = None) -> None:
        now = time.monotonic_ns()
        self.values.append(now - int(data["nonce"]))
        self.since_arrival.append(now - self.arrival)
        if len(self.values) == self.target:
            self.done()

    def clock_reads(self) -> None:
        """Note the time every socket read returns (the parser runs right after each)."""
        from sharder import _websocket

        parse = _websocket.WebSocketClient.receive_data

        def receive_data(client: _websocket.WebSocketClient, data: bytes, limit: int = 0) -> Any:
            self.arrival = time.monotonic_ns()
            return parse(client, data, limit)

        _websocket.WebSocketClient.receive_data = receive_data  # type: ignore[method-assign,assignment]


def _percentiles(values: array[int]) -> dict[str, float]:
    ordered = sorted(values[len(values) // 50 :])
    last = len(ordered) - 1

    def at(q: float) -> float:
        return ordered[min(last, round(q * last))] / 1000

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "p999": at(0.999), "max": at(1.0)}


def botrun_latency(params: dict[str, Any]) -> dict[str, Any]:
    return anyio.run(_botrun_latency, params)


async def _botrun_latency(params: dict[str, Any]) -> dict[str, Any]:
    gateway = gateway_bot(params["api_base"])
    done = anyio.Event()
    latencies = Latencies(params["count"], done.set)
    latencies.clock_reads()
    timeout = params["count"] / params["rate"] + 60
    if params["mode"] == "listener":
        sharder = make_sharder(gateway)
        sharder.on("MESSAGE_CREATE", latencies.hit)
        async with sharder:
            await sharder.connect()
            await wait(done, timeout, "the paced events")
    else:
        async with runtime(gateway, ["bench_messages"], {"tally": latencies}):
            await wait(done, timeout, "the paced events")
    arrival = {f"arrival_{k}": v for k, v in _percentiles(latencies.since_arrival).items()}
    return _percentiles(latencies.values) | arrival


def raw_latency(params: dict[str, Any]) -> dict[str, Any]:
    """Read, parse frames and inflate on a raw socket; stamp each read as it returns."""
    connection = socket.create_connection(("127.0.0.1", params["port"]))
    path = f"/s/{params['spec']}/gateway?v=10&encoding=json&compress=zlib-stream"
    connection.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    buffer = bytearray()
    while b"\r\n\r\n" not in buffer:
        buffer += connection.recv(4096)
    del buffer[: buffer.index(b"\r\n\r\n") + 4]
    identify = b'{"op":2,"d":{"token":"bench-token","intents":1,"properties":{},"shard":[0,1]}}'
    connection.sendall(bytes((0x81, 0x80 | len(identify))) + b"\0\0\0\0" + identify)
    decompress = zlib.decompressobj().decompress
    values: array[int] = array("q")
    while len(values) < params["count"]:
        chunk = connection.recv(1 << 16)
        now = time.monotonic_ns()
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buffer += chunk
        while len(buffer) >= 2:
            size, start = buffer[1] & 0x7F, 2
            if size == 126:
                size, start = int.from_bytes(buffer[2:4], "big"), 4
            if len(buffer) < start + size:
                break
            document = decompress(bytes(buffer[start : start + size]))
            del buffer[: start + size]
            at = document.find(_NONCE)
            if at >= 0:
                stamp = document[at + len(_NONCE) : document.index(b'"', at + len(_NONCE))]
                values.append(now - int(stamp))
    connection.close()
    return _percentiles(values)


def run(suite: Suite) -> dict[str, Any]:
    server = suite.server
    rate = 2_000 if suite.quick else 10_000
    count = 1_000 if suite.quick else 100_000
    spec = f"paced,n={count},rate={rate}"
    server.prepare(spec)
    base = {"api_base": server.api_base(spec), "spec": spec, "port": server.port}
    base |= {"count": count, "rate": rate}
    configs = [
        ("raw socket reader (read + inflate)", "bench_latency:raw_latency", base, "orjson"),
        ("sharder listener", "bench_latency:botrun_latency", base | {"mode": "listener"}, "orjson"),
        ("runtime hook", "bench_latency:botrun_latency", base | {"mode": "runtime"}, "orjson"),
    ]
    server.reset()
    outcomes = suite.repeat(configs)
    floods = server.stats()["floods"]
    sent_rate = median(f["events"] / f["seconds"] for f in floods) if floods else None
    rows = summarize(outcomes, lambda good: {k: median(r[k] for r in good) for k in good[0]})
    print(_table(rows, rate, count, sent_rate))
    figures = {"rate": rate, "events": count, "server_rate": sent_rate, "rows": rows}
    emit("latency", suite.quick, figures)
    return figures


def _table(rows: dict[str, dict[str, Any]], rate: int, count: int, sent_rate: float | None) -> str:
    lines = []
    for name, row in rows.items():
        if "error" in row:
            lines.append([name, row["error"][:60], "", "", "", "", ""])
            continue
        lines.append(
            [
                name,
                fmt(row.get("arrival_p50"), 0) if "arrival_p50" in row else "-",
                fmt(row.get("arrival_p99"), 0) if "arrival_p99" in row else "-",
                fmt(row["p50"], 0),
                fmt(row["p99"], 0),
                fmt(row["p999"], 0),
                fmt(row["max"], 0),
            ]
        )
    title = (
        f"Hook latency at {rate:,} events/s ({count:,} MESSAGE_CREATE, sent one by one at "
        f"{fmt(sent_rate)}/s), microseconds"
    )
    headers = [
        "delivered to",
        "arrival to hook p50",
        "arrival to hook p99",
        "stamp to hook p50",
        "p99",
        "p99.9",
        "max",
    ]
    return table(title, headers, lines)
