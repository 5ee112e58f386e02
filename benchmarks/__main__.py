"""Run the benchmark suite: ``python -m benchmarks [--quick] [--only NAME[,NAME...]]``.

Starts the replay server in its own process, runs each benchmark (every
measurement in a fresh worker process), prints each benchmark's table and its
JSON line, and stops everything. ``--quick`` uses small counts (CI checks that
the suite keeps working with it); the published numbers come from full runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import bench_discard, bench_latency, bench_peers, bench_shards, bench_throughput
from benchmarks._harness import ReplayServer, Suite, emit

BENCHMARKS: dict[str, Callable[[Suite], dict[str, Any]]] = {
    "throughput": bench_throughput.run,
    "discard": bench_discard.run,
    "shards": bench_shards.run,
    "latency": bench_latency.run,
    "peers": bench_peers.run,
}


def _machine() -> dict[str, Any]:
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        **_receive_path(),
    }


def _receive_path() -> dict[str, str]:
    """Which frame scan and zlib-stream inflater botrun runs: its C extensions or Python."""
    from sharder import _codec, _websocket

    python_scan = _websocket.scan_frames is _websocket._scan_frames_in_python
    if _codec._zlib_stream is _codec.ZlibStreamInflater:
        inflater = f"Python (zlib {zlib.ZLIB_RUNTIME_VERSION})"
    else:
        from sharder._zlibstream import INFLATE_LIBRARY

        inflater = f"C ({INFLATE_LIBRARY})"
    return {"frame_scan": "Python" if python_scan else "C", "zlib_stream": inflater}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts: checks, not numbers")
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}"
    )
    parser.add_argument("--runs", type=int, help="runs per configuration (default 3; quick 1)")
    parser.add_argument("--output", type=Path, help="also write every JSON line to this file")
    parser.add_argument("--verbose", action="store_true", help="log each worker run to stderr")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    machine = _machine()
    emit("machine", args.quick, machine)
    server = ReplayServer()
    suite = Suite(
        quick=args.quick,
        runs=args.runs or (1 if args.quick else 3),
        server=server,
        verbose=args.verbose,
    )
    started = time.monotonic()
    try:
        for name in names:
            print(flush=True)
            suite.results[name] = BENCHMARKS[name](suite)
    finally:
        server.close()
    seconds = round(time.monotonic() - started, 1)
    load = [round(x, 2) for x in os.getloadavg()]
    emit("suite", args.quick, {"seconds": seconds, "ran": names, "load_average": load})
    if args.output is not None:
        record = {"machine": machine, "quick": args.quick, "results": suite.results}
        args.output.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
