"""Two checkouts side by side, end to end: ``python -m benchmarks.compare BASELINE``.

A full run's medians move by several points from one run to the next on a
shared VM, more than most single changes gain. This runs the throughput
workers of ``BASELINE`` (another checkout, e.g. ``git worktree add
/tmp/base HEAD~1``) and of this tree against one replay server, alternating
run by run, so a slow spell of the machine hits both alike, and prints each
configuration's median ratio to the decode floor and CPU time per event::

    python -m benchmarks.compare /tmp/base [--only listener,runtime]
        [--json orjson,json] [--runs 4] [--quick]

Each worker imports the code of its own tree (it runs with that tree as its
working directory), so both must have compatible ``benchmarks`` workers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Final

from benchmarks._harness import ROOT, ReplayServer, Suite, WorkerFailed, emit, fmt, median, table

__all__ = ["main"]

_PATHS: Final[dict[str, tuple[str, dict[str, Any]]]] = {
    "listener": ("bench_throughput:botrun_listener", {"event": "MESSAGE_CREATE"}),
    "runtime": ("bench_throughput:botrun_runtime", {"plugins": ["bench_messages"]}),
}


def compare(
    suite: Suite, baseline: Path, paths: list[str], libraries: list[str]
) -> dict[str, dict[str, Any]]:
    """``{"<path> [<json>] <tree>": {"ratio", "cpu_us_per_event", "ratios"}}``."""
    count = 3_000 if suite.quick else 100_000
    spec = f"messages,n={count}"
    info = suite.server.prepare(spec)
    trees = {"baseline": baseline, "this tree": ROOT}
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(suite.runs):
        for path in paths:
            task, extra = _PATHS[path]
            params = {
                "api_base": suite.server.api_base(spec),
                "spec": spec,
                "sha256": info["sha256"],
                "timeout": 120.0,
                "target": count,
                **extra,
            }
            for library in libraries:
                for name, tree in trees.items():
                    key = f"{path} [{library}] {name}"
                    try:
                        result = suite.worker(task, params, json_library=library, tree=tree)
                    except WorkerFailed as exc:
                        print(f"{key}: {exc}", file=sys.stderr)
                        continue
                    runs.setdefault(key, []).append(result)
    return {
        key: {
            "ratio": median(r["rate"] / r["floor"]["rate"] for r in good),
            "cpu_us_per_event": median(r["cpu_us_per_event"] for r in good),
            "ratios": [round(r["rate"] / r["floor"]["rate"], 3) for r in good],
        }
        for key, good in runs.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__)
    parser.add_argument("baseline", type=Path, help="the other checkout's root folder")
    parser.add_argument("--only", default="listener,runtime", help="listener, runtime or both")
    parser.add_argument("--json", default="orjson", help="orjson, json or both (comma-separated)")
    parser.add_argument("--runs", type=int, default=4, help="alternating runs per tree")
    parser.add_argument("--quick", action="store_true", help="small counts: checks, not numbers")
    args = parser.parse_args(argv)
    paths = [p for p in args.only.split(",") if p]
    libraries = [j for j in args.json.split(",") if j]
    if not (args.baseline / "benchmarks" / "_worker.py").is_file():
        parser.error(f"{args.baseline} is not a botrun checkout with benchmarks")
    if unknown := set(paths) - set(_PATHS):
        parser.error(f"unknown path(s): {', '.join(sorted(unknown))}")
    server = ReplayServer()
    try:
        suite = Suite(quick=args.quick, runs=args.runs, server=server)
        rows = compare(suite, args.baseline.resolve(), paths, libraries)
    finally:
        server.close()
    lines = [
        [key, fmt(row["ratio"] * 100, 1, " %"), fmt(row["cpu_us_per_event"], 2), row["ratios"]]
        for key, row in rows.items()
    ]
    title = f"This tree against {args.baseline}, {args.runs} alternating runs each"
    print(table(title, ["path [JSON] tree", "of floor", "CPU us/event", "ratios"], lines))
    emit("compare", args.quick, {"baseline": str(args.baseline), "rows": rows})
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
