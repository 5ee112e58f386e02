"""Worker-side helpers: counting deliveries, memory and CPU, the decode floor, botrun setups."""

from __future__ import annotations

import gc
import json
import resource
import time
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import psutil

from benchmarks._payloads import Spec, load_flood

__all__ = [
    "PLUGIN_DIR",
    "TOKEN",
    "Tally",
    "decode_floor",
    "gateway_bot",
    "peak_rss_mb",
    "rss_mb",
]

PLUGIN_DIR: Final = Path(__file__).resolve().parent / "plugins"
TOKEN: Final = "MTEwMDAwMDAwMDAwMDAwMDAwMQ.GbEnch.bench-token-bench-token-bench-tok"
"""Shaped like a real token (hikari parses the bot id out of it); the server takes any."""
_process = psutil.Process()


def rss_mb() -> float:
    return float(_process.memory_info().rss) / 2**20


def peak_rss_mb() -> float:
    """The process's high-water RSS so far (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User plus system CPU time of this process, to the nanosecond.

    ``time.process_time`` reads the scheduler's own count; psutil's figures come
    from ``/proc`` in 10 ms ticks, a tenth of an idle minute's 0.3 s."""
    return time.process_time()


class Tally:
    """Counts deliveries; times the first and the ``target``-th, then calls ``done``.

    Rate is ``(events - 1) / (last - first)``: from the first delivery to the
    last, so connecting and identifying are not counted, and neither is the
    time before the first frame arrives. ``events`` is how many events of the
    stream that span holds (more than ``target`` when some are not delivered).
    """

    __slots__ = ("count", "cpu_first", "cpu_last", "done", "events", "first", "last", "target")

    def __init__(self, target: int, done: Callable[[], None], events: int | None = None) -> None:
        self.target = target
        self.events = events or target
        self.done = done
        self.count = 0
        self.first = self.last = 0.0
        self.cpu_first = self.cpu_last = 0.0

    def hit(self, data: Any = None, shard_id: int | None = None) -> None:
        """Count one delivery; the signature fits a hook and a sharder listener."""
        count = self.count = self.count + 1
        if count == 1:
            self.first = time.perf_counter()
            self.cpu_first = time.process_time()  # nanosecond clock; psutil counts 10 ms ticks
        if count == self.target:
            self.last = time.perf_counter()
            self.cpu_last = time.process_time()
            self.done()

    def result(self) -> dict[str, float]:
        seconds = self.last - self.first
        spans = max(self.events - 1, 1)
        return {
            "events": self.events,
            "seconds": seconds,
            "rate": spans / seconds if seconds > 0 else 0.0,
            "cpu_us_per_event": (self.cpu_last - self.cpu_first) / spans * 1e6,
        }


def time_decode(
    prelude: list[bytes],
    timed: list[bytes],
    loads: Callable[[bytes], Any] | None,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Seconds (by ``clock``) to inflate ``timed``, and parse it unless ``loads`` is None.

    One inflate context, raw deflate after the stream's two-byte header, as botrun
    inflates: the cheapest correct way (zlib's wrapper adds an Adler-32 of every
    byte). ``prelude`` is inflated first, untimed.
    """
    decompress = zlib.decompressobj(-zlib.MAX_WBITS).decompress
    for message in prelude:
        decompress(message)
    started = clock()
    if loads is not None:
        for message in timed:
            loads(decompress(message))
    else:
        for message in timed:
            decompress(message)
    return clock() - started


def decode_floor(
    spec_text: str, sha256: str, loads: Callable[[bytes], Any], passes: int = 2
) -> dict[str, float]:
    """Inflate (one zlib context) and parse the flood's messages in a tight loop.

    These are the very bytes the replay server sends (the same cache file,
    checked against the server's hash); the prelude (GUILD_CREATEs, untimed by
    the clients too) is inflated first, untimed. Returns the best of
    ``passes`` rates, and the inflate-only rate for reference.
    """
    flood = load_flood(Spec.parse(spec_text))
    if flood.sha256 != sha256:
        raise RuntimeError(f"the cached flood differs from the server's ({spec_text})")
    messages = flood.messages()
    prelude, timed = messages[: flood.prelude], messages[flood.prelude :]
    del flood, messages
    gc.collect()
    best = inflate_best = 0.0
    for _ in range(passes):
        for parse in (True, False):
            rate = len(timed) / time_decode(prelude, timed, loads if parse else None)
            if parse:
                best = max(best, rate)
            else:
                inflate_best = max(inflate_best, rate)
    return {"rate": best, "inflate_rate": inflate_best}


def gateway_bot(api_base: str) -> dict[str, Any]:
    """``GET /gateway/bot`` the way a bot does at start-up (no library involved)."""
    request = urllib.request.Request(
        f"{api_base}/gateway/bot", headers={"Authorization": f"Bot {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        result: dict[str, Any] = json.loads(response.read())
    return result
