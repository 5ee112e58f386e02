"""One gateway websocket connection: HELLO, IDENTIFY/RESUME, heartbeats, commands.

Incoming messages are handled synchronously, and everything going out passes
through one outbox drained by one writer task. That single path is what keeps
sequence numbers, replays and compression contexts in order, even when tests
dispatch from another task while the client is resuming.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Final

import anyio
from anyio.abc import TaskGroup

from sharder._constants import MAX_CLIENT_PAYLOAD, Intents, OpCode

from ._commands import COMMAND_OPCODES, BadPayload, CommandContext, run_command
from ._data import APPLICATION_ID, bot_user, guild_create
from ._encoding import (
    Codec,
    PayloadCompressionCodec,
    PlainCodec,
    dumps,
    encode_payload,
    loads,
    make_codec,
)
from ._hub import Hub
from ._limits import SlidingWindow
from ._sessions import Session
from ._websocket import Closed, Incoming, WebSocket

__all__ = ["INVALIDATING_CLOSE_CODES", "GatewayConnection"]

INVALIDATING_CLOSE_CODES: Final = frozenset({4003, 4004, 4007, 4009, 4010, 4011, 4012, 4013, 4014})
"""Server close codes after which Discord forgets the session."""
CLIENT_ENDING_CLOSE_CODES: Final = frozenset({1000, 1001})
"""Client close codes that end the session (the bot goes offline)."""
SUPPORTED_VERSIONS: Final = frozenset({"9", "10"})
CLOSE_GRACE: Final = 1.0
"""Seconds to wait for the client's answer to our close frame before dropping TCP."""
_ALL_INTENTS: Final = int(Intents.all())
_PRIVILEGED_INTENTS: Final = int(Intents.privileged())
_TRANSPORT_ERRORS: Final = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError)


@dataclass(frozen=True, slots=True)
class _Payload:
    data: bytes


@dataclass(frozen=True, slots=True)
class _Raw:
    data: bytes
    binary: bool


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


_Outgoing = _Payload | _Raw | _Close


class GatewayConnection:
    """The server side of one gateway connection; control methods are synchronous."""

    def __init__(self, hub: Hub, ws: WebSocket, path: str, query: dict[str, str]) -> None:
        self.hub = hub
        self.ws = ws
        self.path = path
        self.query = query
        self.session: Session | None = None
        self.shard_id: int | None = None
        self.version = 10
        self.zombie = False
        self.finished = anyio.Event()
        self._codec: Codec = PlainCodec()
        self._commands = SlidingWindow(hub.config.command_limit, hub.config.command_window)
        self._outbox_in, self._outbox_out = anyio.create_memory_object_stream[_Outgoing](math.inf)
        self._closing_code: int | None = None
        self._end_session = False
        self._aborted = False
        self._end_reason = "eof"
        self._scope = anyio.CancelScope()
        self._read_scope = anyio.CancelScope()
        self._task_group: TaskGroup | None = None
        self._last_heartbeat = 0.0

    # -- control (called by FakeDiscord and other connections) ---------------------

    @property
    def session_id(self) -> str | None:
        return None if self.session is None else self.session.session_id

    @property
    def attached(self) -> bool:
        """Whether this connection holds a live session."""
        return self.session is not None and self.session.holder is self

    def deliver(self, payload: bytes) -> None:
        """Queue an encoded payload (a session dispatch or a replay)."""
        self._enqueue(_Payload(payload))

    def send_op(self, op: int, d: Any) -> None:
        """Queue a non-dispatch payload."""
        self.deliver(encode_payload(op, d))

    def send_json(self, payload: dict[str, Any]) -> None:
        """Queue any payload, encoded as given (keys in the caller's order)."""
        self.deliver(dumps(payload))

    def send_raw(self, data: bytes, binary: bool) -> None:
        """Queue a websocket message that bypasses JSON and compression.

        Raises:
            ValueError: a text message that is not UTF-8 (websockets cannot carry it).
        """
        if not binary:
            data.decode()
        self._enqueue(_Raw(data, binary))

    def close(self, code: int, reason: str = "") -> None:
        """Queue a close frame; codes Discord treats as fatal to the session end it now."""
        if self._closing_code is not None:
            return
        self._closing_code = code
        if code in INVALIDATING_CLOSE_CODES and self.session is not None:
            self.hub.sessions.invalidate(self.session)
        self._enqueue(_Close(code, reason))

    def abort(self, reason: str) -> None:
        """Drop the TCP connection at once, without a close frame."""
        self._aborted = True
        self._end_reason = reason
        self._scope.cancel()

    def zombify(self) -> None:
        """Stop reading and writing but keep the socket open (a half-open connection)."""
        self.zombie = True
        self._read_scope.cancel()
        self._record("zombified")

    def reconnect(self) -> None:
        """Send op 7, then close (keeping the session) unless the client did it first."""
        self.send_op(OpCode.RECONNECT, None)
        self._record("reconnect_sent")
        if self._task_group is not None:
            self._task_group.start_soon(self._close_after, self.hub.config.reconnect_close_delay)

    def invalid_session(self, resumable: bool) -> None:
        """Send op 9; ``False`` also forgets the session."""
        self.send_op(OpCode.INVALID_SESSION, resumable)
        self._record("invalid_session_sent", resumable=resumable)
        if not resumable:
            if self.session is not None:
                self.hub.sessions.invalidate(self.session)
            self.session = None

    # -- lifetime -------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until either side closes it or it is aborted."""
        self.hub.connections.add(self)
        self._last_heartbeat = self.hub.now()
        self._record("connect", path=self.path, query=dict(self.query))
        try:
            with self._scope:
                async with anyio.create_task_group() as task_group:
                    self._task_group = task_group
                    task_group.start_soon(self._write_loop)
                    if self._open() and self.hub.config.heartbeat_timeout is not None:
                        task_group.start_soon(self._watchdog, self.hub.config.heartbeat_timeout)
                    await self._read_loop()
                    task_group.cancel_scope.cancel()
        finally:
            await self._finish()

    async def _finish(self) -> None:
        self.hub.connections.discard(self)
        self._release_session()
        self._outbox_in.close()
        self._outbox_out.close()
        with anyio.CancelScope(shield=True):
            await (self.ws.abort() if self._aborted else self.ws.aclose())
        self._record("disconnect", reason=self._end_reason)
        self.finished.set()

    def _release_session(self) -> None:
        session = self.session
        if session is None or session.holder is not self:
            return
        if self._end_session:
            self.hub.sessions.invalidate(session)
        else:
            session.detach(self.hub.now())

    def _open(self) -> bool:
        """Check the query string and send HELLO; ``False`` if the connection is refused."""
        encoding = self.query.get("encoding", "json")
        if encoding != "json":
            unsupported = "etf encoding is unsupported by the emulator"
            self.close(4002, unsupported if encoding == "etf" else "Invalid encoding.")
            return False
        try:
            self._codec = make_codec(self.query.get("compress"))
        except ValueError as exc:
            self.close(4002, str(exc))
            return False
        interval_ms = round(self.hub.config.heartbeat_interval * 1000)
        self.send_op(OpCode.HELLO, {"heartbeat_interval": interval_ms})
        version = self.query.get("v")
        if version not in SUPPORTED_VERSIONS:
            self.close(4012, "Invalid API version.")
            return False
        self.version = int(version)
        return True

    async def _read_loop(self) -> None:
        with self._read_scope:
            while True:
                try:
                    message = await self.ws.receive()
                except _TRANSPORT_ERRORS:
                    return
                if isinstance(message, Closed):
                    self._on_closed(message)
                    return
                if self._closing_code is None:
                    self._on_message(message)
        if self.zombie:
            await anyio.sleep_forever()

    async def _write_loop(self) -> None:
        """Send queued items in order; after a close frame, drop the rest.

        What was queued meanwhile goes out in one write, as from a busy server:
        a burst of events reaches the client in one read.
        """
        outbox = self._outbox_out
        try:
            async for first in outbox:
                items = [first]
                with contextlib.suppress(anyio.WouldBlock):
                    while True:
                        items.append(outbox.receive_nowait())
                messages: list[tuple[bytes, bool]] = []
                for item in items:
                    if self.zombie or not self.ws.open:
                        continue
                    if isinstance(item, _Close):
                        await self._send_messages(messages)
                        messages = []
                        await self._send_close(item)
                    elif isinstance(item, _Raw):
                        messages.append((item.data, item.binary))
                    else:
                        messages.append(self._codec.pack(item.data))
                await self._send_messages(messages)
        except _TRANSPORT_ERRORS:
            self._end_reason = "broken"
            self._scope.cancel()

    async def _send_messages(self, messages: list[tuple[bytes, bool]]) -> None:
        if messages and not self.zombie and self.ws.open:
            await self.ws.send_messages(messages)

    async def _send_close(self, item: _Close) -> None:
        if await self.ws.send_close(item.code, item.reason):
            self._record("server_close", code=item.code, reason=item.reason)
            self._end_reason = "server_close"
            if self._task_group is not None:
                self._task_group.start_soon(self._close_timeout)

    async def _close_timeout(self) -> None:
        """Drop TCP if the client never answers our close frame."""
        await anyio.sleep(CLOSE_GRACE)
        self._end_reason = "close_timeout"
        self._scope.cancel()

    async def _watchdog(self, timeout: float) -> None:
        while True:
            await anyio.sleep_until(self._last_heartbeat + timeout)
            if self.hub.now() >= self._last_heartbeat + timeout:
                break
        if not self.zombie:
            self.close(4009, "Session timed out.")

    async def _close_after(self, delay: float) -> None:
        await anyio.sleep(delay)
        if self.ws.open:
            self.close(4000, "Reconnect requested.")

    def _on_closed(self, closed: Closed) -> None:
        if closed.origin == "invalid":
            self._record("server_close", code=closed.code, reason=closed.reason)
            self._end_reason = "invalid_frame"
            return
        reply = closed.origin == "reply"
        self._record("client_close", code=closed.code, reason=closed.reason, reply=reply)
        self._end_reason = "server_close" if reply else "client_close"
        if not reply and closed.code in CLIENT_ENDING_CLOSE_CODES:
            self._end_session = True

    # -- incoming payloads --------------------------------------------------------------

    def _on_message(self, message: Incoming) -> None:
        if not self._commands.hit(self.hub.now()):
            config = self.hub.config
            self._record("rate_limited", limit=config.command_limit, window=config.command_window)
            self.close(4008, "Rate limited.")
            return
        if len(message.data) > MAX_CLIENT_PAYLOAD:
            self.close(4002, "Payload too large.")
            return
        try:
            payload = loads(message.data)
        except ValueError:
            self.close(4002, "Error while decoding payload.")
            return
        if not isinstance(payload, dict) or type(payload.get("op")) is not int:
            self.close(4002, "Error while decoding payload.")
            return
        self._on_payload(payload["op"], payload.get("d"))

    def _on_payload(self, op: int, d: Any) -> None:
        if op == OpCode.HEARTBEAT:
            self._on_heartbeat(d)
        elif op == OpCode.IDENTIFY:
            self._on_identify(d)
        elif op == OpCode.RESUME:
            self._on_resume(d)
        elif op in COMMAND_OPCODES:
            self._on_command(op, d)
        else:
            self.close(4001, "Unknown opcode.")

    def _on_heartbeat(self, d: Any) -> None:
        if d is not None and type(d) is not int:
            self.close(4002, "Invalid heartbeat sequence.")
            return
        self._last_heartbeat = self.hub.now()
        self._record("heartbeat", seq=d)
        self.send_op(OpCode.HEARTBEAT_ACK, None)
        self._record("heartbeat_ack")

    def _on_command(self, op: int, d: Any) -> None:
        session = self.session
        if session is None:
            self.close(4003, "Not authenticated.")
            return
        context = CommandContext(
            session.session_id,
            self.hub.config.members_per_guild,
            self.hub.member_limiter,
            self.hub.now(),
        )
        try:
            events = run_command(op, d, context)
        except BadPayload as exc:
            self.close(4001, str(exc))
            return
        self._record("command", op=op, d=d)
        for name, data in events:
            if name == "RATE_LIMITED":
                self._record("rate_limited", opcode=op, guild_id=data["meta"]["guild_id"])
            session.dispatch(name, data)

    # -- identify and resume ----------------------------------------------------------

    def _on_identify(self, d: Any) -> None:
        if not isinstance(d, dict):
            self.close(4002, "Error while decoding payload.")
            return
        shard = _parse_shard(d.get("shard", [0, 1]))
        shard_id = None if shard is None else shard[0]
        detail = {key: value for key, value in d.items() if key != "token"}
        detail["bucket"] = None if shard_id is None else self.hub.identify_gate.bucket(shard_id)
        self.hub.record("identify", shard_id, None, **detail)
        if self.session is not None:
            self.close(4005, "Already authenticated.")
        elif d.get("token") != self.hub.token:
            self.close(4004, "Authentication failed.")
        elif shard is None:
            self.close(4010, "Invalid shard.")
        elif (reason := self._intents_error(d.get("intents"))) is not None:
            self.close(*reason)
        elif (violation := self.hub.identify_gate.admit(shard[0], self.hub.now())) is not None:
            self.hub.violation(violation, shard[0])
            self.invalid_session(False)
        else:
            if d.get("compress") is True and isinstance(self._codec, PlainCodec):
                self._codec = PayloadCompressionCodec()
            self._start_session(shard[0], shard[1], d["intents"])

    def _intents_error(self, intents: Any) -> tuple[int, str] | None:
        if type(intents) is not int or intents < 0 or intents & ~_ALL_INTENTS:
            return 4013, "Invalid intent(s)."
        if intents & _PRIVILEGED_INTENTS and not self.hub.config.privileged_intents_allowed:
            return 4014, "Disallowed intent(s)."
        return None

    def _start_session(self, shard_id: int, total: int, intents: int) -> None:
        hub = self.hub
        for other in list(hub.connections):
            if other is not self and other.zombie and other.shard_id == shard_id:
                other.abort("replaced")
        session = hub.sessions.create(shard_id, total, intents, hub.now())
        self._attach(session)
        guild_ids = hub.guild_ids(shard_id, total)
        session.dispatch("READY", self._ready(session, guild_ids))
        self._record("ready", guilds=len(guild_ids), resume_gateway_url=hub.resume_url)
        for guild_id in guild_ids:
            session.dispatch("GUILD_CREATE", guild_create(guild_id, hub.config.members_per_guild))

    def _ready(self, session: Session, guild_ids: list[int]) -> dict[str, Any]:
        return {
            "v": self.version,
            "user": bot_user(),
            "guilds": [{"id": str(guild_id), "unavailable": True} for guild_id in guild_ids],
            "session_id": session.session_id,
            "resume_gateway_url": self.hub.resume_url,
            "shard": [session.shard_id, session.total],
            "application": {"id": str(APPLICATION_ID), "flags": 0},
        }

    def _on_resume(self, d: Any) -> None:
        hub = self.hub
        if not isinstance(d, dict) or not isinstance(d.get("session_id"), str):
            self.close(4002, "Error while decoding payload.")
            return
        seq = d.get("seq")
        session = hub.sessions.get(d["session_id"], hub.now())
        shard_id = None if session is None else session.shard_id
        hub.record("resume", shard_id, d["session_id"], seq=seq, path=self.path)
        if d.get("token") != hub.token:
            self.close(4004, "Authentication failed.")
        elif session is None or (type(seq) is int and not session.can_replay_from(seq)):
            self.invalid_session(False)
        elif type(seq) is not int or seq > session.seq:
            hub.sessions.invalidate(session)
            self.close(4007, "Invalid seq.")
        else:
            self._resume(session, seq)

    def _resume(self, session: Session, seq: int) -> None:
        self._attach(session)
        missed = session.replay_after(seq)
        for payload in missed:
            self.deliver(payload)
        session.dispatch("RESUMED", {})
        self._record("resumed", replayed=len(missed))

    def _attach(self, session: Session) -> None:
        """Make this connection the session's holder, dropping any previous holder."""
        previous = self.hub.holder_of(session)
        if previous is not None and previous is not self:
            previous.abort("replaced")
        if self.session is not None and self.session is not session and self.attached:
            self.session.detach(self.hub.now())
        session.attach(self)
        self.session = session
        self.shard_id = session.shard_id

    # -- helpers ------------------------------------------------------------------------

    def _enqueue(self, item: _Outgoing) -> None:
        # Once the connection is gone, the session's replay buffer still has the event.
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._outbox_in.send_nowait(item)

    def _record(self, kind: str, **detail: Any) -> None:
        self.hub.record(kind, self.shard_id, self.session_id, **detail)


def _parse_shard(value: Any) -> tuple[int, int] | None:
    """``(shard_id, total)`` from IDENTIFY's ``shard``, or ``None`` if invalid (4010)."""
    if not isinstance(value, list) or len(value) != 2:
        return None
    shard_id, total = value
    if type(shard_id) is not int or type(total) is not int:
        return None
    if total < 1 or not 0 <= shard_id < total:
        return None
    return shard_id, total
