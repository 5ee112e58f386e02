"""Run the emulator standalone: ``python -m sharder.testing --port 8080 [--chatter]``.

For the offline demo and for poking at a bot by hand; it prints where to
connect and serves until interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence

import anyio

from . import FakeDiscord

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sharder.testing", description="Run the botrun Discord emulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--token", default="emulator-token", help="the only valid bot token")
    parser.add_argument("--shards", type=int, default=1, help="recommended shard count")
    parser.add_argument("--max-concurrency", type=int, default=1)
    parser.add_argument("--heartbeat-interval", type=float, default=41.25, help="seconds")
    parser.add_argument("--guilds-per-shard", type=int, default=0)
    parser.add_argument("--chatter", action="store_true", help="simulate users sending messages")
    parser.add_argument("--chatter-interval", type=float, default=2.0, help="seconds")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    async with FakeDiscord(
        token=args.token,
        shards=args.shards,
        max_concurrency=args.max_concurrency,
        heartbeat_interval=args.heartbeat_interval,
        guilds_per_shard=args.guilds_per_shard,
        host=args.host,
        port=args.port,
    ) as discord:
        print(f"gateway:  {discord.gateway_url}", flush=True)
        print(f"api base: {discord.api_base}", flush=True)
        print(f"token:    {args.token}", flush=True)
        if args.chatter:
            await discord.run_chatter(interval=args.chatter_interval)
        else:
            await anyio.sleep_forever()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(_serve, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
