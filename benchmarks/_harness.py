"""The orchestrator's side: the replay server process, worker processes, tables, JSON lines.

Every measurement runs in a fresh worker process (``python -m benchmarks._worker``),
so that peak RSS, imports and event loops never carry over from one to the next,
and the JSON library can differ per run. With two or more CPUs, the replay
server is pinned to the last one and the workers to the first, so that client
and server never compete for a core.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = ["ReplayServer", "Suite", "WorkerFailed", "fmt", "median", "table"]

ROOT: Final = Path(__file__).resolve().parent.parent
RESULT_PREFIX: Final = "RESULT "


class WorkerFailed(RuntimeError):
    """A worker process crashed, timed out or printed no result."""


def _cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return list(range(os.cpu_count() or 1))


def client_cpu() -> int | None:
    cpus = _cpus()
    return cpus[0] if len(cpus) >= 2 else None


def server_cpu() -> int | None:
    cpus = _cpus()
    return cpus[-1] if len(cpus) >= 2 else None


class ReplayServer:
    """``benchmarks.replay_server`` in its own process, and the control calls to it."""

    def __init__(self) -> None:
        command = [sys.executable, "-m", "benchmarks.replay_server", "--watch-stdin"]
        cpu = server_cpu()
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the replay server did not start")
        info = json.loads(line)
        self.port: int = info["port"]
        self.tls_port: int = info["tls_port"]
        self.ca: str = info["ca"]
        self.pid: int = info["pid"]

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _get(self, path: str, timeout: float = 300.0) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as r:
            return json.loads(r.read())

    def prepare(self, spec: str) -> dict[str, Any]:
        """Have the server encode (or load) a scenario's flood now, not on first connect."""
        result: dict[str, Any] = self._get(f"/_bench/prepare/{spec}")
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._get("/_bench/stats")
        return result

    def reset(self) -> None:
        self._get("/_bench/reset")

    def api_base(self, spec: str, *, tls: bool = False) -> str:
        scheme, port = ("https", self.tls_port) if tls else ("http", self.port)
        return f"{scheme}://127.0.0.1:{port}/s/{spec}/api/v10"

    def gateway_url(self, spec: str, *, tls: bool = False) -> str:
        scheme, port = ("wss", self.tls_port) if tls else ("ws", self.port)
        return f"{scheme}://127.0.0.1:{port}/s/{spec}/gateway"


@dataclass
class Suite:
    """What every benchmark gets: the mode, the server and a way to run workers."""

    quick: bool
    runs: int
    server: ReplayServer
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    verbose: bool = False

    def worker(
        self,
        task: str,
        params: dict[str, Any],
        *,
        json_library: str = "orjson",
        timeout: float = 300.0,
        tree: Path = ROOT,
    ) -> dict[str, Any]:
        """Run ``benchmarks.<task>`` (``module:function``) in a fresh process; its result.

        ``tree``: the checkout whose code the worker imports (``benchmarks.compare``
        runs another commit's workers against this one's server).
        """
        request = {"task": task, "params": params, "json": json_library, "cpu": client_cpu()}
        started = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks._worker", json.dumps(request)],
                capture_output=True,
                text=True,
                cwd=tree,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise WorkerFailed(f"{task} timed out after {timeout:.0f} s") from exc
        for line in done.stdout.splitlines():
            if line.startswith(RESULT_PREFIX):
                result: dict[str, Any] = json.loads(line.removeprefix(RESULT_PREFIX))
                if self.verbose:
                    took = time.monotonic() - started
                    print(f"  [{task} {params} {json_library}: {took:.1f} s]", file=sys.stderr)
                return result
        tail = (done.stderr or done.stdout).strip().splitlines()[-8:]
        raise WorkerFailed(f"{task} exited with {done.returncode}: " + " | ".join(tail))

    def repeat(
        self, configs: Sequence[tuple[str, str, dict[str, Any], str]], runs: int | None = None
    ) -> dict[str, list[dict[str, Any] | str]]:
        """Run each ``(name, task, params, json)`` ``runs`` times, interleaved.

        Interleaving spreads any slow spell of the machine over every
        configuration instead of one. A failed run is kept as its error text.
        """
        outcomes: dict[str, list[dict[str, Any] | str]] = {name: [] for name, *_ in configs}
        for _ in range(runs or self.runs):
            for name, task, params, json_library in configs:
                try:
                    outcomes[name].append(self.worker(task, params, json_library=json_library))
                except WorkerFailed as exc:
                    outcomes[name].append(f"failed: {exc}")
        return outcomes


def summarize(
    outcomes: Mapping[str, list[dict[str, Any] | str]],
    summary: Callable[[list[dict[str, Any]]], dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    """``summary`` of each configuration's successful runs; ``{"error": ...}`` if none was."""
    rows: dict[str, dict[str, Any]] = {}
    for name, runs in outcomes.items():
        good = [r for r in runs if isinstance(r, dict)]
        rows[name] = summary(good) if good else {"error": str(runs[0]) if runs else "no runs"}
    return rows


def median(values: Iterable[float]) -> float:
    return float(statistics.median(values))


def fmt(value: float | None, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{suffix}"


def table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table under a heading: readable in a terminal and in BENCHMARKS.md."""
    cells = [[str(c) for c in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([f"### {title}", "", line(cells[0]), rule, *map(line, cells[1:])])


def emit(name: str, quick: bool, figures: dict[str, Any]) -> None:
    """Print the benchmark's JSON line (one line, prefixed so it is easy to grep)."""
    print(json.dumps({"benchmark": name, "quick": quick, **figures}, sort_keys=False), flush=True)
