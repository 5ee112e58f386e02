"""Gateway sessions: sequence numbers, replay buffers, and who holds them.

A session outlives its connection: after a drop it stays resumable for
``resume_timeout`` seconds and keeps buffering dispatches, which a RESUME then
replays in order. The encoded (uncompressed) payload is stored, because each
new connection compresses with a fresh context.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ._encoding import encode_payload

__all__ = ["Holder", "Session", "SessionInfo", "SessionStore"]


class Holder(Protocol):
    """The connection a session is attached to: it receives every new dispatch."""

    def deliver(self, payload: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A read-only snapshot of a session, for tests."""

    session_id: str
    shard: int
    total: int
    seq: int
    attached: bool


class Session:
    """One gateway session and its bounded replay buffer."""

    def __init__(
        self, shard_id: int, total: int, intents: int, replay_limit: int, now: float
    ) -> None:
        self.session_id = secrets.token_hex(16)
        self.shard_id = shard_id
        self.total = total
        self.intents = intents
        self.seq = 0
        self.holder: Holder | None = None
        self.detached_at: float | None = now
        self._replay: deque[tuple[int, bytes]] = deque(maxlen=replay_limit)

    def dispatch(self, name: str, data: Any) -> int:
        """Assign the next seq, buffer the event and deliver it if attached."""
        self.seq += 1
        payload = encode_payload(0, data, name, self.seq)
        self._replay.append((self.seq, payload))
        if self.holder is not None:
            self.holder.deliver(payload)
        return self.seq

    def can_replay_from(self, seq: int) -> bool:
        """Whether every event after ``seq`` is still buffered."""
        return not self._replay or self._replay[0][0] <= seq + 1

    def replay_after(self, seq: int) -> list[bytes]:
        """Buffered payloads with a sequence greater than ``seq``, in order."""
        return [payload for s, payload in self._replay if s > seq]

    def attach(self, holder: Holder) -> None:
        self.holder = holder
        self.detached_at = None

    def detach(self, now: float) -> None:
        self.holder = None
        self.detached_at = now

    def info(self) -> SessionInfo:
        return SessionInfo(
            self.session_id, self.shard_id, self.total, self.seq, self.holder is not None
        )


class SessionStore:
    """Live sessions by id; detached ones expire after ``resume_timeout``."""

    def __init__(self, resume_timeout: float, replay_limit: int) -> None:
        self.resume_timeout = resume_timeout
        self.replay_limit = replay_limit
        self._sessions: dict[str, Session] = {}

    def create(self, shard_id: int, total: int, intents: int, now: float) -> Session:
        session = Session(shard_id, total, intents, self.replay_limit, now)
        self._sessions[session.session_id] = session
        return session

    def get(self, session_id: str, now: float) -> Session | None:
        """The session if it is still alive (attached, or detached recently enough)."""
        self.purge(now)
        return self._sessions.get(session_id)

    def latest(self, shard_id: int, now: float) -> Session | None:
        """The most recently created live session of a shard."""
        self.purge(now)
        for session in reversed(self._sessions.values()):
            if session.shard_id == shard_id:
                return session
        return None

    def invalidate(self, session: Session) -> None:
        """Forget a session: it can no longer be resumed nor dispatched to."""
        self._sessions.pop(session.session_id, None)
        session.holder = None

    def is_live(self, session: Session) -> bool:
        return self._sessions.get(session.session_id) is session

    def purge(self, now: float) -> None:
        expired = [
            s
            for s in self._sessions.values()
            if s.detached_at is not None and now - s.detached_at > self.resume_timeout
        ]
        for session in expired:
            del self._sessions[session.session_id]

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))
