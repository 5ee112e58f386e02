"""A Discord emulator: real gateway and REST servers on loopback, for tests and demos.

``FakeDiscord`` speaks the actual protocol (HTTP/1.1 via h11, websockets via
wsproto, JSON with zlib-stream, zstd-stream or payload compression), keeps
sessions resumable with replay buffers, enforces Discord's limits, and lets a
test inject faults and read back a timeline of what happened::

    async with FakeDiscord(shards=2, heartbeat_interval=0.5) as discord:
        ...  # point the client at discord.api_base / discord.gateway_url
        await discord.wait_for("ready", shard_id=1)
        await discord.dispatch(1, "MESSAGE_CREATE", {...})
        await discord.drop(1)
        await discord.wait_for("resumed", shard_id=1)
        assert not discord.violations

Options (seconds for durations): ``token``; ``shards`` (recommended count from
/gateway/bot); ``max_concurrency``, ``identify_window`` (one IDENTIFY per
bucket per window, else op 9 and a violation); ``session_start_total``,
``session_start_remaining``, ``reset_after`` (the daily budget);
``heartbeat_interval`` (sent in HELLO); ``heartbeat_timeout`` (opt-in: close
4009 after that long without a heartbeat); ``command_limit``,
``command_window`` (over it: close 4008); ``resume_timeout`` (how long a
detached session stays resumable); ``reconnect_close_delay`` (after op 7);
``privileged_intents_allowed`` (else 4014); ``guilds_per_shard`` (GUILD_CREATE
after READY); ``members_per_guild`` (for op 8); ``write_chunk_size`` (split
every write into TCP writes of that size); ``host``, ``port``,
``ssl_context`` (wss/https); ``replay_limit`` (events kept per session).

What is queued for a connection while it writes goes out in one write, as
from a busy gateway: events dispatched together reach the client in one read.

Run standalone with ``python -m sharder.testing --port 8080 [--chatter]``.
"""

from __future__ import annotations

from ._emulator import FakeDiscord as FakeDiscord
from ._rest import RecordedMessage as RecordedMessage
from ._sessions import SessionInfo as SessionInfo
from ._timeline import TimelineEntry as TimelineEntry

__all__ = ["FakeDiscord", "RecordedMessage", "SessionInfo", "TimelineEntry"]
