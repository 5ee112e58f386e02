"""State shared by every connection of one emulator: token, sessions, limits, records.

The server, the gateway connections, the REST routes and the control API all
read and change this one object, so each rule (the identify gate, the member
request limit) holds across connections exactly as it does on Discord.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from ._config import EmulatorConfig
from ._data import guild_ids_for_shard
from ._limits import IdentifyGate, MemberRequestLimiter
from ._sessions import Session, SessionStore
from ._timeline import Timeline

if TYPE_CHECKING:
    from ._gateway import GatewayConnection

__all__ = ["Hub"]


class Hub:
    """Everything one emulator knows, with small helpers over it."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.token = config.token
        self.timeline = Timeline()
        self.violations: list[str] = []
        self.sessions = SessionStore(config.resume_timeout, config.replay_limit)
        self.identify_gate = IdentifyGate(
            max_concurrency=config.max_concurrency,
            window=config.identify_window,
            total=config.session_start_total,
            remaining=config.session_start_remaining,
            reset_after=config.reset_after,
        )
        self.member_limiter = MemberRequestLimiter()
        self.connections: set[GatewayConnection] = set()
        self.gateway_url = ""
        self.resume_url = ""
        self.api_base = ""

    def set_urls(self, gateway_url: str, api_base: str) -> None:
        self.gateway_url = gateway_url
        self.resume_url = f"{gateway_url}/resume"
        self.api_base = api_base

    def record(
        self, kind: str, shard_id: int | None, session_id: str | None, /, **detail: Any
    ) -> None:
        self.timeline.record(kind, shard_id, session_id, **detail)

    def violation(self, message: str, shard_id: int | None) -> None:
        """Note a limit the client broke; tests assert there were none."""
        self.violations.append(message)
        self.record("violation", shard_id, None, message=message)

    def holder_of(self, session: Session) -> GatewayConnection | None:
        """The open connection a session is attached to, if any."""
        for connection in self.connections:
            if session.holder is connection:
                return connection
        return None

    def guild_ids(self, shard_id: int, total: int) -> list[int]:
        return guild_ids_for_shard(shard_id, total, self.config.guilds_per_shard)

    def now(self) -> float:
        return anyio.current_time()
