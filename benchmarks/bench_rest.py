"""How much ``RestClient`` costs per request, next to a bare ``httpx.AsyncClient``.

Both clients make the same calls to the emulator (``python -m sharder.testing``,
started here on a free loopback port, in its own process so that its CPU time
is not counted) with no rate limits set:

* throughput: ``--requests`` calls at ``--concurrency``, as ``POST
  /channels/{id}/messages`` over ``--channels`` channels (RestClient sends each
  channel's messages one at a time, in order) and as ``GET /users/@me``;
* overhead: the latency of sequential requests, against the emulator and
  against an ``httpx.MockTransport`` that answers at once (no network, no
  server: only client code); the difference is what rate-limit bookkeeping,
  ordering, retries and error mapping add on top of httpx.

Prints a table, then one JSON line. Bounded: at most ``--requests`` calls per
phase and ``--time-limit`` seconds overall.

    python benchmarks/bench_rest.py [--requests 2000] [--concurrency 50] [--backend asyncio]
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime.rest import RestClient

TOKEN = "bench-token"
WARMUP = 200
ROUNDS = 5
THROUGHPUT_ROUNDS = 3

Call = Callable[[int], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Result:
    client: str
    phase: str
    requests: int
    seconds: float
    cpu: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def wall_us(self) -> float:
        return self.seconds / self.requests * 1e6

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.requests * 1e6


def start_emulator() -> tuple[subprocess.Popen[str], str]:
    """Run the emulator in its own process; returns it and its API base."""
    process = subprocess.Popen(
        [sys.executable, "-m", "sharder.testing", "--port", "0", "--token", TOKEN],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("api base:"):
            return process, line.split(":", 1)[1].strip()
        if not line and process.poll() is not None:
            break
    process.kill()
    raise SystemExit("the emulator did not start")


async def run_phase(call: Call, requests: int, concurrency: int) -> tuple[float, float]:
    """Make ``requests`` calls with ``concurrency`` workers; returns (wall, cpu) seconds."""
    counter = itertools.count()

    async def worker() -> None:
        for index in counter:
            if index >= requests:
                return
            await call(index)

    start_wall, start_cpu = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return time.perf_counter() - start_wall, time.process_time() - start_cpu


def bare_calls(http: httpx.AsyncClient, base: str, channels: int) -> dict[str, Call]:
    """What a plugin would write with httpx alone: encode, send, check, decode."""

    async def post(index: int) -> Any:
        body = orjson.dumps({"content": f"message {index}"})
        url = f"{base}/channels/{1000 + index % channels}/messages"
        response = await http.post(url, content=body, headers={"Content-Type": "application/json"})
        response.raise_for_status()
        return orjson.loads(response.content)

    async def get(index: int) -> Any:
        response = await http.get(f"{base}/users/@me")
        response.raise_for_status()
        return orjson.loads(response.content)

    return {"post": post, "get": get}


def rest_calls(rest: RestClient, channels: int) -> dict[str, Call]:
    async def post(index: int) -> Any:
        path = f"/channels/{1000 + index % channels}/messages"
        return await rest.post(path, {"content": f"message {index}"})

    async def get(index: int) -> Any:
        return await rest.get("/users/@me")

    return {"post": post, "get": get}


async def throughput(
    bare: dict[str, Call], ours: dict[str, Call], args: argparse.Namespace
) -> list[Result]:
    """Best of interleaved rounds per client and phase: pool state and drift hit both alike."""
    best: dict[tuple[str, str], Result] = {}
    for phase in bare:
        for _ in range(THROUGHPUT_ROUNDS):
            for name, calls in (("httpx", bare), ("RestClient", ours)):
                await run_phase(calls[phase], WARMUP, args.concurrency)
                wall, cpu = await run_phase(calls[phase], args.requests, args.concurrency)
                result = Result(name, f"{phase} c={args.concurrency}", args.requests, wall, cpu)
                if (name, phase) not in best or result.rps > best[name, phase].rps:
                    best[name, phase] = result
    return sorted(best.values(), key=lambda r: (r.client != "httpx", r.phase))


async def overhead(bare: Call, ours: Call, requests: int) -> tuple[float, float]:
    """Sequential µs/request of each client: best of interleaved rounds, to cancel drift."""
    best = [float("inf"), float("inf")]
    per_round = max(requests // ROUNDS, 1)
    await run_phase(bare, WARMUP, 1)
    await run_phase(ours, WARMUP, 1)
    for _ in range(ROUNDS):
        for index, call in enumerate((bare, ours)):
            wall, _ = await run_phase(call, per_round, 1)
            best[index] = min(best[index], wall / per_round * 1e6)
    return best[0], best[1]


def mock_transport() -> httpx.MockTransport:
    """Answers at once, with the headers Discord sends: only client code is measured."""
    body = orjson.dumps({"id": "1", "channel_id": "1000", "content": "message"})
    headers = {
        "content-type": "application/json",
        "x-ratelimit-bucket": "bench",
        "x-ratelimit-limit": "1000000",
        "x-ratelimit-remaining": "999999",
        "x-ratelimit-reset": "1700000000.000",
        "x-ratelimit-reset-after": "1.000",
    }
    return httpx.MockTransport(lambda request: httpx.Response(200, content=body, headers=headers))


async def bench(base: str, args: argparse.Namespace) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    headers = {"Authorization": f"Bot {TOKEN}", "User-Agent": "DiscordBot (bench, 0)"}
    options: dict[str, Any] = {"global_limit": 1_000_000}
    with anyio.fail_after(args.time_limit):
        async with (
            httpx.AsyncClient(headers=headers, limits=limits) as http,
            RestClient(TOKEN, api_base=base, **options) as rest,
        ):
            bare, ours = bare_calls(http, base, args.channels), rest_calls(rest, args.channels)
            loopback = await overhead(bare["post"], ours["post"], args.requests)
            results = await throughput(bare, ours, args)
            if rest.invalid_requests:
                raise SystemExit(f"unexpected invalid requests: {rest.invalid_requests}")
        mock_base = "https://discord.invalid/api/v10"
        async with (
            httpx.AsyncClient(headers=headers, transport=mock_transport()) as http,
            RestClient(TOKEN, api_base=mock_base, transport=mock_transport(), **options) as rest,
        ):
            bare, ours = bare_calls(http, mock_base, args.channels), rest_calls(rest, args.channels)
            isolated = await overhead(bare["post"], ours["post"], args.requests * 5)
    return {"results": results, "loopback": loopback, "isolated": isolated}


def report(measured: dict[str, Any], args: argparse.Namespace) -> None:
    results: list[Result] = measured["results"]
    print(f"{'client':<11} {'phase':<10} {'requests':>8} {'req/s':>8} {'wall µs':>8} {'cpu µs':>7}")
    for r in results:
        print(
            f"{r.client:<11} {r.phase:<10} {r.requests:>8} {r.rps:>8.0f} "
            f"{r.wall_us:>8.0f} {r.cpu_us:>7.0f}"
        )
    by = {(r.client, r.phase.split()[0]): r for r in results}
    (bare_loop, ours_loop), (bare_mock, ours_mock) = measured["loopback"], measured["isolated"]
    print(
        f"\nsequential POST, µs/request (best of {ROUNDS} interleaved rounds):\n"
        f"  loopback emulator: httpx {bare_loop:.1f}, RestClient {ours_loop:.1f}, "
        f"overhead {ours_loop - bare_loop:+.1f}\n"
        f"  MockTransport:     httpx {bare_mock:.1f}, RestClient {ours_mock:.1f}, "
        f"overhead {ours_mock - bare_mock:+.1f}"
    )
    summary = {
        "benchmark": "rest",
        "backend": args.backend,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "channels": args.channels,
        "rest_rps_post": round(by[("RestClient", "post")].rps),
        "httpx_rps_post": round(by[("httpx", "post")].rps),
        "rest_rps_get": round(by[("RestClient", "get")].rps),
        "httpx_rps_get": round(by[("httpx", "get")].rps),
        "rest_us_loopback": round(ours_loop, 1),
        "httpx_us_loopback": round(bare_loop, 1),
        "overhead_us_loopback": round(ours_loop - bare_loop, 1),
        "rest_us_mock": round(ours_mock, 1),
        "httpx_us_mock": round(bare_mock, 1),
        "overhead_us_mock": round(ours_mock - bare_mock, 1),
    }
    print(json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="calls per phase")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--channels", type=int, default=50, help="channels POSTs go to")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds, overall")
    args = parser.parse_args()
    if not 1 <= args.requests <= 100_000 or not 1 <= args.concurrency <= 500:
        parser.error("--requests must be 1..100000 and --concurrency 1..500")
    process, base = start_emulator()
    try:
        measured = anyio.run(bench, base, args, backend=args.backend)
    finally:
        process.terminate()
        process.wait(timeout=10)
    report(measured, args)


if __name__ == "__main__":
    main()
