"""The emulator's settings, checked once so the rest of the code can trust them."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

__all__ = ["EmulatorConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EmulatorConfig:
    """Every knob of :class:`~sharder.testing.FakeDiscord`; durations in seconds."""

    token: str = "emulator-token"
    shards: int = 1
    max_concurrency: int = 1
    session_start_total: int = 1000
    session_start_remaining: int = 1000
    reset_after: float = 86_400.0
    heartbeat_interval: float = 41.25
    heartbeat_timeout: float | None = None
    identify_window: float = 5.0
    command_limit: int = 120
    command_window: float = 60.0
    resume_timeout: float = 180.0
    reconnect_close_delay: float = 2.0
    privileged_intents_allowed: bool = True
    guilds_per_shard: int = 0
    members_per_guild: int = 2500
    write_chunk_size: int | None = None
    host: str = "127.0.0.1"
    port: int = 0
    ssl_context: ssl.SSLContext | None = None
    replay_limit: int = 100_000

    def __post_init__(self) -> None:
        at_least_one = ("shards", "max_concurrency", "command_limit", "replay_limit")
        for name in at_least_one:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        positive = ("heartbeat_interval", "command_window", "reset_after")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.write_chunk_size is not None and self.write_chunk_size < 1:
            raise ValueError("write_chunk_size must be at least 1 byte")
        if self.heartbeat_timeout is not None and self.heartbeat_timeout <= 0:
            raise ValueError("heartbeat_timeout must be positive (or None to disable)")
        if self.members_per_guild < 1:
            raise ValueError("members_per_guild must be at least 1 (the bot itself)")
        if not self.token:
            raise ValueError("token must not be empty")
