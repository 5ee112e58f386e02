"""The benchmark suite keeps working: a quick run completes and prints its JSON lines.

No timing is asserted (the numbers come from full runs on a quiet machine, see
BENCHMARKS.md); only that every benchmark ran, printed its JSON line with the
expected keys, and that botrun's own rows measured something instead of failing.
The peers (discord.py, hikari) are optional: their rows may say "not installed".
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

EXPECTED_KEYS = {
    "machine": {"cpu", "cores", "memory_gb", "python", "frame_scan", "zlib_stream"},
    "throughput": {"events", "floor_orjson", "floor_json", "emulator", "rows"},
    "discard": {"events", "rows", "unwanted_cost", "mixed_speedup"},
    "shards": {"rows"},
    "latency": {"rate", "events", "server_rate", "rows"},
    "peers": {"events", "botrun", "peers"},
    "suite": {"seconds", "ran"},
}
ROW_KEYS = {
    "throughput": {"rate", "floor", "ratio", "peak_rss_mb", "runs"},
    "discard": {"rate", "us_per_event", "inflate_us_per_event"},
    "shards": {"kb_per_shard", "all_ready_s", "theory_s", "identifies", "pacing_violations"},
    "latency": {"p50", "p99", "p999", "max"},
}


def run_quick_suite() -> dict[str, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {line["benchmark"]: line for line in lines}


def test_quick_suite_prints_every_json_line_with_its_figures() -> None:
    results = run_quick_suite()
    assert set(results) == set(EXPECTED_KEYS)
    for name, keys in EXPECTED_KEYS.items():
        assert keys <= set(results[name]), f"{name} lacks {keys - set(results[name])}"
        assert results[name]["quick"] is True
    for name, keys in ROW_KEYS.items():
        rows = results[name]["rows"]
        assert rows, name
        for row_name, row in rows.items():
            assert "error" not in row, f"{name} / {row_name}: {row.get('error')}"
            assert keys <= set(row), f"{name} / {row_name} lacks {keys - set(row)}"
    for row_name, row in results["peers"]["botrun"].items():
        assert "rate" in row, f"peers / {row_name}: {row}"
    for row_name, row in results["peers"]["peers"].items():
        assert "rate" in row or row["error"] == "not installed", f"peers / {row_name}: {row}"


def test_spill_benchmark_measures_a_smaller_backlog_on_disk_than_in_memory() -> None:
    from benchmarks.bench_spill import measure

    rows = measure(events=3000, backlog=100)["rows"]
    in_memory, spilled = rows["in memory"], rows["spilled"]
    # A parsed MESSAGE_CREATE is kilobytes; its place in line on disk, hundreds of bytes.
    assert spilled["bytes_per_event"] * 5 < in_memory["bytes_per_event"]
    assert spilled["read_back_us"] > 0
    assert in_memory["read_back_us"] is None


def test_compare_runs_both_trees_alternately_and_measures_each(tmp_path: Path) -> None:
    # This tree against itself (a second path to it): every row must hold a measurement.
    baseline = tmp_path / "baseline"
    baseline.symlink_to(ROOT, target_is_directory=True)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.compare", str(baseline), "--quick", "--runs", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(json.loads(x) for x in done.stdout.splitlines() if x.startswith("{"))
    assert set(line["rows"]) == {
        f"{path} [orjson] {tree}"
        for path in ("listener", "runtime")
        for tree in ("baseline", "this tree")
    }
    assert all(row["ratio"] > 0 and row["cpu_us_per_event"] > 0 for row in line["rows"].values())


def test_compare_refuses_a_folder_that_is_not_a_checkout(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.compare", str(tmp_path), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "is not a botrun checkout" in done.stderr
