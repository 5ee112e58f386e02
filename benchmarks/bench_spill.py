"""What a plugin that falls behind costs, with and without the spill to disk.

``python -m benchmarks.bench_spill [--events 100000] [--backlog 1000]``

A ``PluginWorker`` whose handler has not started yet is handed ``--events``
parsed MESSAGE_CREATE payloads (the benchmark's realistic 1.15 KB documents),
as the router hands them over: once with ``overflow = "wait"`` and no spill
(everything stays in memory, as ``spill_limit = 0`` would keep it while the
shard is paused), once with the spill. It prints the memory held by the
backlog (tracemalloc, a separate pass from the timings), the CPU time per
``put`` (parsing excluded), and the CPU time to read the spill back.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import time
import tracemalloc
from typing import Any

from benchmarks._payloads import World
from runtime.dispatch import PluginWorker, _selector, _Session, _Target
from runtime.spill import Spill

__all__ = ["main", "measure"]


def _worker(backlog: int, spilled: bool) -> tuple[PluginWorker, _Target]:
    spill = Spill(1 << 40) if spilled else None
    worker = PluginWorker(
        "p", None, capacity=backlog, overflow="wait", slow_threshold=1.0, spill=spill
    )
    target = _Target(worker, "on_message_create", print, (1,), "sync", False, _selector((1,)))
    return worker, target


def _fill(
    worker: PluginWorker, target: _Target, documents: list[str], events: int
) -> tuple[float, float]:
    """Parse and put ``events`` documents as the shard and router do.

    Returns CPU seconds in ``put`` and in all (parsing, and the garbage
    collector's passes over everything the backlog holds, included).
    """
    session = _Session(0)
    spent = 0.0
    clock = time.process_time
    began = clock()
    for seq in range(1, events + 1):
        data = json.loads(documents[seq % len(documents)])
        started = clock()
        worker.put((target, data, 0, session, seq))
        spent += clock() - started
    return spent, clock() - began


def _drop(worker: PluginWorker) -> None:
    worker.queue.clear()
    worker.spilled.clear()
    if worker.spill is not None:
        worker.spill.close()


def measure(events: int, backlog: int) -> dict[str, Any]:
    world = World(1)
    documents = [json.dumps(world.message_create()) for _ in range(2000)]
    logging.getLogger("botrun.dispatch").disabled = True  # the falling-behind warning
    rows: dict[str, Any] = {}
    try:
        for name, spilled in (("in memory", False), ("spilled", True)):
            gc.collect()
            tracemalloc.start()
            worker, target = _worker(backlog, spilled)
            _fill(worker, target, documents, events)
            gc.collect()
            held = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            _drop(worker)
            worker, target = _worker(backlog, spilled)  # the timings, untraced
            put, total = _fill(worker, target, documents, events)
            started = time.process_time()
            while worker.spilled:
                worker.queue.clear()
                worker._refill()
            read_back = time.process_time() - started
            _drop(worker)
            rows[name] = {
                "held_mb": held / 2**20,
                "bytes_per_event": held / events,
                "put_us": put / events * 1e6,
                "parse_and_put_us": total / events * 1e6,
                "read_back_us": read_back / (events - backlog) * 1e6 if spilled else None,
            }
    finally:
        logging.getLogger("botrun.dispatch").disabled = False
    return {"benchmark": "spill", "events": events, "backlog": backlog, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_spill", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--backlog", type=int, default=1000)
    options = parser.parse_args(argv)
    result = measure(options.events, options.backlog)
    print(
        f"{options.events:,} MESSAGE_CREATE behind a plugin with a backlog of {options.backlog:,}"
    )
    print(
        "| backlog kept | memory held MB | bytes/event | put us/event "
        "| parse + put us/event | read back us/event |"
    )
    print("|---|---|---|---|---|---|")
    for name, row in result["rows"].items():
        back = "-" if row["read_back_us"] is None else f"{row['read_back_us']:.2f}"
        print(
            f"| {name} | {row['held_mb']:.1f} | {row['bytes_per_event']:,.0f} "
            f"| {row['put_us']:.2f} | {row['parse_and_put_us']:.2f} | {back} |"
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
