"""The gateway state machine, apart from any I/O (sans-I/O, after h11 and aioquic).

Theory of operation
-------------------
The driver (``shard.py``) owns sockets and the clock; this module owns every
decision. The driver feeds it decoded payloads (``receive`` / ``receive_dispatch``),
timer expiries (``handle_timer(now)`` within ``get_timer_window()``), identify grants and
connection losses, and carries out the actions it queues in ``actions``:

* ``SendPayload``: write a gateway payload (always a priority command here);
* ``RequestIdentify``: wait for an identify slot, then call ``identify_granted``;
* ``CloseConnection``: close the socket with that code, then call ``connection_lost``;
* ``Debug``: a line for the ``debug`` event.

``connection_lost`` answers what happens next: ``Reconnect(resume, delay)`` or
``Fatal(error)``. The table behind it is §5 of the protocol reference:
resumable codes resume, 4003/4007/4009 identify anew, 4004 and 4010-4014 stop.

Timers are windows (``get_timer_window``): a heartbeat may be sent up to
``heartbeat_slack`` seconds before it is due (a fortieth of the interval, at most
a second), so that a driver running many shards can send the beats that fall
due close together in one wake-up; timeouts are exact.

Heartbeats follow Discord's rules (first beat jittered, then every interval) with
one refinement against false zombie verdicts: when a beat falls due and the last
one is unacknowledged, the verdict waits for a grace period (a quarter interval
plus however late the timer fired), and any payload processed meanwhile proves
the link alive. A loop blocked by a slow listener therefore never kills a healthy
connection: the ACK that sat in the socket buffer gets read first.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ._constants import (
    CLIENT_RESUMABLE_CLOSE_CODE,
    FATAL_CLOSE_CODES,
    NEW_SESSION_CLOSE_CODES,
    OpCode,
)
from ._session import Session
from .errors import GatewayClosedError, ProtocolViolation

__all__ = [
    "Action",
    "CloseConnection",
    "Debug",
    "Fatal",
    "GatewayProtocol",
    "Outcome",
    "Phase",
    "Reconnect",
    "RequestIdentify",
    "SendPayload",
]

GRACE_FRACTION: Final = 0.25
"""Share of the heartbeat interval an overdue ACK gets before the zombie verdict."""

EARLY_FRACTION: Final = 0.025
"""Share of the heartbeat interval by which a heartbeat may go early (Discord allows early
beats, never late ones): the window in which a driver may coalesce many shards' beats."""

MAX_EARLY: Final = 1.0
"""Seconds by which a heartbeat may go early at most (1 s of Discord's 41.25 s)."""

MAX_FAILED_RESUMES: Final = 2
"""Resumes that may fail in a row before falling back to IDENTIFY (no endless loop)."""

_SESSION_EVENTS: Final = frozenset({"READY", "RESUMED"})

_CLOSE_DESCRIPTIONS: Final = {
    4004: "authentication failed: the bot token is invalid",
    4010: "invalid shard: the shard id or count is wrong",
    4011: "sharding required: this shard holds too many guilds, use more shards",
    4012: "invalid API version",
    4013: "invalid intents: the intents bitfield is not valid",
    4014: "disallowed intents: enable the privileged intents in the Developer Portal",
}


class Phase(enum.Enum):
    """Where the connection is in the gateway handshake."""

    DISCONNECTED = "disconnected"
    AWAITING_HELLO = "awaiting hello"
    AWAITING_IDENTIFY = "awaiting identify slot"
    IDENTIFYING = "identifying"
    RESUMING = "resuming"
    READY = "ready"


@dataclass(frozen=True, slots=True)
class SendPayload:
    """Write this payload on the current connection."""

    payload: dict[str, Any]
    description: str


@dataclass(frozen=True, slots=True)
class RequestIdentify:
    """Acquire an identify slot, then call ``identify_granted``."""


@dataclass(frozen=True, slots=True)
class CloseConnection:
    """Close the current connection with ``code``; then call ``connection_lost``."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Debug:
    """A line for the ``debug`` event."""

    message: str


Action = SendPayload | RequestIdentify | CloseConnection | Debug


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Open a new connection after ``delay`` seconds, resuming if ``resume``."""

    resume: bool
    delay: float
    reason: str


@dataclass(frozen=True, slots=True)
class Fatal:
    """Stop: reconnecting cannot help."""

    error: GatewayClosedError


Outcome = Reconnect | Fatal


class GatewayProtocol:
    """Decides what a shard sends and when, for one shard across its connections."""

    def __init__(
        self,
        *,
        token: str,
        intents: int,
        shard: tuple[int, int],
        properties: Mapping[str, str],
        large_threshold: int | None = None,
        presence: Mapping[str, Any] | None = None,
        compress_payloads: bool = False,
        session: Session | None = None,
        hello_timeout: float = 20.0,
        ready_timeout: float = 15.0,
        invalid_session_delay: tuple[float, float] = (1.0, 5.0),
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._token = token
        self.intents = intents
        self.shard = shard
        self.properties = dict(properties)
        self.large_threshold = large_threshold
        self.presence: dict[str, Any] | None = dict(presence) if presence else None
        self.compress_payloads = compress_payloads
        self.hello_timeout = hello_timeout
        self.ready_timeout = ready_timeout
        self.invalid_session_delay = invalid_session_delay
        self._rng = rng

        self.session_id: str | None = session.session_id if session else None
        self.sequence: int | None = session.sequence if session else None
        self.resume_url: str | None = session.resume_url if session else None

        self.actions: list[Action] = []
        self.phase = Phase.DISCONNECTED
        self.paused = False
        """Set by the driver while it stops reading (backpressure): no zombie verdicts then."""
        self.heartbeat_interval: float | None = None
        self.heartbeat_slack = 0.0
        """Seconds by which a heartbeat may go before it is due (set from HELLO)."""
        self.latency: float | None = None
        self._dispatches = 0
        """Dispatches processed, on every connection (a resume's replay is counted from it)."""
        self._others = 0
        """Payloads of other opcodes processed, on every connection."""
        self._connected_mark = 0
        self._failed_resumes = 0
        self._planned: Reconnect | None = None
        self._reset_connection_state()

    @property
    def received(self) -> int:
        """Payloads processed on this connection: proof of life for the zombie check."""
        return self._dispatches + self._others - self._connected_mark

    def _reset_connection_state(self) -> None:
        self._hello_deadline: float | None = None
        self._ready_deadline: float | None = None
        self._ready_mark = 0
        self._beat_due: float | None = None
        self._grace_deadline: float | None = None
        self._received_mark = 0
        self._awaiting_ack = False
        self._sent_at = 0.0
        self._resume_mark = 0

    # ------------------------------------------------------------------ queries

    @property
    def resumable(self) -> bool:
        """Whether the next connection can RESUME instead of IDENTIFY."""
        return self.session_id is not None and self.sequence is not None

    @property
    def session(self) -> Session | None:
        if self.session_id is None or self.sequence is None:
            return None
        return Session(self.session_id, self.sequence, self.resume_url)

    def get_timer_window(self) -> tuple[float, float] | None:
        """``(earliest, latest)``: from ``earliest`` on, ``handle_timer`` has something to do,
        and it must run by ``latest`` (None: no deadline pending).

        Only a heartbeat has a window wider than a point: it may go
        ``heartbeat_slack`` seconds early. A zombie check needs no timer of its
        own: it is made when the next heartbeat falls due.
        """
        earliest = latest = math.inf
        for deadline in (self._hello_deadline, self._ready_deadline, self._grace_deadline):
            if deadline is not None and deadline < latest:
                latest = deadline
        if latest < earliest:
            earliest = latest
        beat_due = self._beat_due
        if beat_due is not None and self._grace_deadline is None:
            early = beat_due - self.heartbeat_slack
            if early < earliest:
                earliest = early
            if beat_due < latest:
                latest = beat_due
        return None if latest == math.inf else (earliest, latest)

    def _heartbeat_deadline(self) -> float | None:
        """When the heartbeat schedule next wants ``handle_timer`` (a beat early by the slack)."""
        if self._grace_deadline is not None:
            return self._grace_deadline
        if self._beat_due is not None:
            return self._beat_due - self.heartbeat_slack
        return None

    # ------------------------------------------------------------------ inputs

    def connection_made(self, now: float) -> None:
        """A websocket is open: wait for HELLO."""
        self._reset_connection_state()
        self.phase = Phase.AWAITING_HELLO
        self._connected_mark = self._dispatches + self._others
        self.paused = False
        self._planned = None
        self._hello_deadline = now + self.hello_timeout

    def receive_dispatch(self, payload: dict[str, Any]) -> str | None:
        """Record an op 0 payload; its event name if listeners should see it, None if it
        is a replayed duplicate.

        This is the per-event hot path: no clock, no allocation, as few steps as it takes.
        """
        self._dispatches += 1
        seq = payload.get("s")
        if seq.__class__ is int:  # bool is not: its class is bool
            last = self.sequence
            if last is not None and seq <= last:
                return None
            self.sequence = seq
        elif seq is not None:
            raise ProtocolViolation(f"dispatch sequence is not an integer: {seq!r}")
        name = payload.get("t")
        if name.__class__ is not str:
            raise ProtocolViolation(f"dispatch event name is not a string: {name!r}")
        if name in _SESSION_EVENTS:
            if name == "READY":
                self._on_ready(payload.get("d"))
            else:
                self._on_resumed(payload)
        return name

    def skip_dispatches(self, count: int, highest: int) -> None:
        """Record ``count`` dispatches dropped before parsing, ``highest`` their top sequence.

        A dropped dispatch (a disabled event) only counts as received and moves the
        sequence forward, never back (a replayed duplicate does not move it), so a
        run of them comes down to its count and its maximum.
        """
        self._dispatches += count
        last = self.sequence
        if last is None or highest > last:
            self.sequence = highest

    def receive(self, payload: dict[str, Any], now: float) -> bool:
        """Handle any payload; True if it is a dispatch for listeners."""
        op = payload.get("op")
        if op == OpCode.DISPATCH:
            return self.receive_dispatch(payload) is not None
        self._others += 1
        if op == OpCode.HEARTBEAT_ACK:
            self._on_heartbeat_ack(now)
        elif op == OpCode.HEARTBEAT:
            self._send_heartbeat(now, requested=True)
        elif op == OpCode.HELLO:
            self._on_hello(payload.get("d"), now)
        elif op == OpCode.RECONNECT:
            self._plan_reconnect(resume=self.resumable, reason="server asked to reconnect (op 7)")
        elif op == OpCode.INVALID_SESSION:
            self._on_invalid_session(payload.get("d") is True, now)
        else:
            self.actions.append(Debug(f"ignored unknown opcode {op!r}"))
        return False

    def identify_granted(self, now: float) -> bool:
        """An identify slot was acquired: send IDENTIFY if this connection still wants it."""
        if self.phase is not Phase.AWAITING_IDENTIFY:
            return False
        self.phase = Phase.IDENTIFYING
        self.sequence = None
        self.session_id = None
        self._ready_deadline = now + self.ready_timeout
        self._ready_mark = self._dispatches
        data: dict[str, Any] = {
            "token": self._token,
            "intents": self.intents,
            "properties": self.properties,
            "shard": list(self.shard),
            "compress": self.compress_payloads,
        }
        if self.large_threshold is not None:
            data["large_threshold"] = self.large_threshold
        if self.presence is not None:
            data["presence"] = self.presence
        self.actions.append(
            SendPayload(
                {"op": OpCode.IDENTIFY, "d": data},
                f"IDENTIFY shard {list(self.shard)} intents {self.intents}",
            )
        )
        return True

    def handle_timer(self, now: float) -> None:
        """Act on whatever deadline has passed."""
        if self._hello_deadline is not None and now >= self._hello_deadline:
            self._hello_deadline = None
            self._plan_reconnect(resume=self.resumable, reason="no HELLO in time")
            return
        if self._ready_deadline is not None and now >= self._ready_deadline:
            if self.phase is Phase.RESUMING and self._dispatches != self._ready_mark:
                # Replay is still flowing: a long replay is not a stuck resume.
                self._ready_mark = self._dispatches
                self._ready_deadline = now + self.ready_timeout
            else:
                self._ready_deadline = None
                stuck = "READY" if self.phase is Phase.IDENTIFYING else "RESUMED"
                if self.phase is Phase.RESUMING:
                    self._count_failed_resume()
                self._plan_reconnect(resume=self.resumable, reason=f"no {stuck} in time")
                return
        deadline = self._heartbeat_deadline()
        if deadline is not None and now >= deadline:
            self._heartbeat_due(now)

    def connection_lost(self, code: int | None, reason: str = "") -> Outcome:
        """The socket is gone; ``code`` is the server's close code (None: no close frame).

        A close this protocol asked for (``CloseConnection``) returns its own plan.
        """
        was_resuming = self.phase is Phase.RESUMING
        self.phase = Phase.DISCONNECTED
        self._reset_connection_state()
        if self._planned is not None:
            planned, self._planned = self._planned, None
            return planned
        if was_resuming:
            self._count_failed_resume()
        if code in FATAL_CLOSE_CODES:
            assert code is not None
            return Fatal(GatewayClosedError(code, reason, _CLOSE_DESCRIPTIONS.get(code, "")))
        shown = f"code {code}" if code is not None else "no close code"
        if code in NEW_SESSION_CLOSE_CODES:
            self._drop_session()
            return Reconnect(False, 0.0, f"closed with {shown} {reason!r}: new session")
        return Reconnect(self.resumable, 0.0, f"closed with {shown} {reason!r}")

    def protocol_error(self, reason: str) -> None:
        """The server sent something unusable: reconnect and resume, so replay fills the gap.

        A replay that fails again counts as a failed resume, so an event that can
        never be decoded ends in a new session instead of a resume loop.
        """
        if self.phase is Phase.RESUMING:
            self._count_failed_resume()
        self._plan_reconnect(resume=self.resumable, reason=f"protocol error: {reason}")

    def forget_session(self) -> None:
        """Drop the session (a manual close that invalidates it)."""
        self._drop_session()

    # ------------------------------------------------------------------ handlers

    def _on_hello(self, data: Any, now: float) -> None:
        if not isinstance(data, dict):
            raise ProtocolViolation(f"HELLO without data: {data!r}")
        interval_ms = data.get("heartbeat_interval")
        if (
            not isinstance(interval_ms, int | float)
            or isinstance(interval_ms, bool)
            or not 0 < interval_ms < 3_600_000
        ):
            raise ProtocolViolation(f"HELLO has an invalid heartbeat_interval: {interval_ms!r}")
        self._hello_deadline = None
        interval = interval_ms / 1000
        self.heartbeat_interval = interval
        self.heartbeat_slack = min(MAX_EARLY, interval * EARLY_FRACTION)
        self._beat_due = now + interval * self._rng()
        self._grace_deadline = None
        self._awaiting_ack = False
        if self.resumable:
            self._send_resume(now)
        else:
            self.phase = Phase.AWAITING_IDENTIFY
            self.actions.append(RequestIdentify())

    def _send_resume(self, now: float) -> None:
        assert self.session_id is not None
        self.phase = Phase.RESUMING
        self._resume_mark = self._dispatches
        self._ready_deadline = now + self.ready_timeout
        self._ready_mark = self._dispatches
        self.actions.append(
            SendPayload(
                {
                    "op": OpCode.RESUME,
                    "d": {
                        "token": self._token,
                        "session_id": self.session_id,
                        "seq": self.sequence,
                    },
                },
                f"RESUME session {self.session_id} at sequence {self.sequence}",
            )
        )

    def _on_ready(self, data: Any) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("session_id"), str):
            raise ProtocolViolation("READY without a session_id")
        self.session_id = data["session_id"]
        resume_url = data.get("resume_gateway_url")
        self.resume_url = resume_url if isinstance(resume_url, str) and resume_url else None
        if self.sequence is None:
            self.sequence = 0
        self.phase = Phase.READY
        self._ready_deadline = None
        self._failed_resumes = 0

    def _on_resumed(self, payload: dict[str, Any]) -> None:
        data = payload.get("d")
        if not isinstance(data, dict):
            data = {}
            payload["d"] = data
        data["replayed"] = self._dispatches - self._resume_mark - 1
        self.phase = Phase.READY
        self._ready_deadline = None
        self._failed_resumes = 0

    def _on_invalid_session(self, resumable: bool, now: float) -> None:
        if resumable and self.resumable:
            self.actions.append(Debug("invalid session (resumable): resuming on this connection"))
            self._send_resume(now)
            return
        self._drop_session()
        low, high = self.invalid_session_delay
        delay = low + (high - low) * self._rng()
        self._plan_reconnect(resume=False, reason="invalid session: identifying anew", delay=delay)

    def _on_heartbeat_ack(self, now: float) -> None:
        if not self._awaiting_ack:
            return
        self._awaiting_ack = False
        self.latency = now - self._sent_at
        if self._grace_deadline is not None:
            # The beat that fell due while we waited for this ACK goes now.
            self._grace_deadline = None
            self._send_heartbeat(now)

    def _heartbeat_due(self, now: float) -> None:
        interval = self.heartbeat_interval
        assert interval is not None
        if not self._awaiting_ack or self.paused:
            # While the driver does not read (backpressure), the ACK may sit unread in
            # the socket: judge nothing, but keep beating on schedule, or Discord ends
            # the session of a connection whose heartbeats stop (4009, events lost).
            self._send_heartbeat(now)
            return
        if self._grace_deadline is None:
            lag = max(0.0, now - (self._beat_due or now))
            self._grace_deadline = now + interval * GRACE_FRACTION + lag
            self._received_mark = self.received
            return
        if self.received != self._received_mark:
            # Payloads arrived since the ACK fell due: the link is alive.
            self._received_mark = self.received
            self._grace_deadline = now + interval * GRACE_FRACTION
            return
        self._plan_reconnect(resume=self.resumable, reason="no HEARTBEAT_ACK: zombie connection")

    def _send_heartbeat(self, now: float, *, requested: bool = False) -> None:
        self._awaiting_ack = True
        self._sent_at = now
        if not requested and self.heartbeat_interval is not None:
            self._beat_due = now + self.heartbeat_interval
            self._grace_deadline = None
        description = "HEARTBEAT (requested by the server)" if requested else "HEARTBEAT"
        self.actions.append(SendPayload({"op": OpCode.HEARTBEAT, "d": self.sequence}, description))

    def send_heartbeat(self, now: float) -> None:
        """Beat now, outside the schedule (a latency measurement)."""
        self._send_heartbeat(now, requested=True)

    # ------------------------------------------------------------------ helpers

    def _plan_reconnect(self, *, resume: bool, reason: str, delay: float = 0.0) -> None:
        self._planned = Reconnect(resume and self.resumable, delay, reason)
        self._hello_deadline = None
        self._ready_deadline = None
        self._beat_due = None
        self._grace_deadline = None
        self.actions.append(CloseConnection(CLIENT_RESUMABLE_CLOSE_CODE, reason))

    def _count_failed_resume(self) -> None:
        self._failed_resumes += 1
        if self._failed_resumes >= MAX_FAILED_RESUMES:
            self.actions.append(
                Debug(f"{self._failed_resumes} resumes failed in a row: identifying anew")
            )
            self._drop_session()
            self._failed_resumes = 0

    def _drop_session(self) -> None:
        self.session_id = None
        self.sequence = None
        self.resume_url = None
