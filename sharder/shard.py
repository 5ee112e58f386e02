"""WebsocketShard: one gateway connection, kept alive across reconnects.

The shard is the I/O driver of :class:`~sharder._protocol.GatewayProtocol`. Per
connection it runs two tasks: the reader (socket -> inflate -> JSON -> protocol
-> listeners) and the timer (heartbeats and deadlines). For the shard's whole
life a third task awaits async listeners in sequence order, so that a slow
listener never holds up the reader: the reader keeps consuming ACKs, and the
heartbeat never waits for plugin code.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import logging
import math
import platform
import secrets
import ssl
import sys
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal, TypedDict
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.abc

from ._backoff import Backoff
from ._codec import COMPRESSIONS, Compression, Inflater, Messages, dumps, loads, make_inflater
from ._constants import (
    CLIENT_RESUMABLE_CLOSE_CODE,
    COMMAND_WINDOW,
    COMMANDS_PER_WINDOW,
    MAX_CLIENT_PAYLOAD,
    PRESENCE_UPDATES_PER_WINDOW,
    PRESENCE_WINDOW,
    OpCode,
)
from ._lifetime import TaskGroupOwner
from ._listeners import Listener, ListenerRegistry
from ._protocol import (
    CloseConnection,
    Debug,
    Fatal,
    GatewayProtocol,
    Outcome,
    RequestIdentify,
    SendPayload,
)
from ._ratelimit import SlidingWindowLimiter
from ._session import Session
from ._timers import Timer, TimerService
from ._transport import WebSocketConnection, open_websocket
from ._websocket import CLOSE, parse_close
from .errors import (
    ProtocolViolation,
    RateLimitedError,
    RequestTimeoutError,
    SharderError,
    TransportError,
)
from .identify import (
    ConnectGate,
    HookIdentifyQueue,
    IdentifyHook,
    IdentifyQueue,
    LocalIdentifyQueue,
)

__all__ = ["ShardOptions", "ShardStatus", "WebsocketShard"]

logger = logging.getLogger("sharder")

DEFAULT_URL: Final = "wss://gateway.discord.gg"
_READY_EVENTS: Final = {"READY": "ready", "RESUMED": "resumed"}
_NO_WINDOW: Final = (math.inf, math.inf)
"""A timer window that never opens (the protocol has no deadline pending)."""
_COLLECTED: Final = frozenset(
    {"GUILD_MEMBERS_CHUNK", "RATE_LIMITED", "VOICE_STATE_UPDATE", "VOICE_SERVER_UPDATE"}
)


@functools.lru_cache(maxsize=64)
def _shared(names: frozenset[bytes]) -> frozenset[bytes]:
    """The first set equal to ``names``: every shard with these names holds one object.

    The C inflater finds its lookup table for a set by the set's identity.
    """
    return names


class ShardStatus(enum.IntEnum):
    """The seed's ShardStatus values."""

    READY = 0
    CONNECTING = 1
    CONNECTED = 2
    CLOSING = 3
    OFFLINE = 4
    CLOSED = 5


class ShardOptions(TypedDict, total=False):
    """Options of one shard (tiny-discord's ShardOptions; durations in seconds)."""

    token: str
    intents: int
    id: int
    total: int
    large_threshold: int
    presence: dict[str, Any]
    properties: dict[str, str]
    version: int
    encoding: Literal["json"]
    compression: Compression
    url: str
    session: Mapping[str, Any] | Session
    session_id: str
    sequence: int
    resume_url: str
    identify_hook: IdentifyHook
    disabled_events: Iterable[str]
    allow_insecure: bool
    connect_timeout: float
    hello_timeout: float
    ready_timeout: float
    close_timeout: float
    send_timeout: float
    reconnect_delay: float
    max_reconnect_delay: float
    invalid_session_delay: tuple[float, float]
    max_message_size: int
    max_backlog: int
    ssl_context: ssl.SSLContext


_OPTION_NAMES: Final = frozenset(ShardOptions.__annotations__)


def _is_loopback(host: str | None) -> bool:
    if host in (None, "localhost"):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def check_option_names(options: Mapping[str, Any]) -> None:
    """Reject misspelled option names with a suggestion."""
    import difflib

    for name in options:
        if name not in _OPTION_NAMES:
            close = difflib.get_close_matches(name, _OPTION_NAMES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(f"unknown shard option {name!r}{hint}")


class WebsocketShard(TaskGroupOwner):
    """A gateway shard: connect, identify or resume, heartbeat, reconnect, dispatch.

    Use as ``async with WebsocketShard(options) as shard: await shard.connect()``,
    or let an :class:`~sharder.InternalSharder` run it.
    """

    def __init__(
        self,
        options: ShardOptions | Mapping[str, Any],
        *,
        listeners: ListenerRegistry | None = None,
        identify_queue: IdentifyQueue | None = None,
        timers: TimerService | None = None,
        connect_gate: ConnectGate | None = None,
    ) -> None:
        check_option_names(options)
        token = options.get("token")
        if not isinstance(token, str) or not token:
            raise ValueError("options['token'] must be a non-empty string")
        intents = options.get("intents")
        if not isinstance(intents, int) or isinstance(intents, bool) or intents < 0:
            raise ValueError("options['intents'] must be a non-negative integer bitfield")
        self.id: int = int(options.get("id", 0))
        self.total: int = int(options.get("total", self.id + 1))
        if not 0 <= self.id < self.total:
            raise ValueError(f"shard id {self.id} is not within total {self.total}")
        self.compression: Compression = options.get("compression", "zlib-stream")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"unknown compression {self.compression!r}")
        self.encoding: str = options.get("encoding", "json")
        if self.encoding != "json":
            raise ValueError(f"unsupported encoding {self.encoding!r}: only 'json'")
        self.version: int = int(options.get("version", 10))
        self.url: str = options.get("url") or DEFAULT_URL
        self.allow_insecure: bool = bool(options.get("allow_insecure", False))
        self._check_url_security(self.url)
        self.properties: dict[str, str] = dict(
            options.get("properties")
            or {"os": platform.system().lower(), "browser": "botrun", "device": "botrun"}
        )
        self.large_threshold: int | None = options.get("large_threshold")
        self.connect_timeout = float(options.get("connect_timeout", 10.0))
        self.close_timeout = float(options.get("close_timeout", 2.0))
        self.send_timeout = float(options.get("send_timeout", 10.0))
        self.max_message_size = int(options.get("max_message_size", 64 * 1024 * 1024))
        if not 1 <= self.max_message_size <= sys.maxsize:
            raise ValueError(f"options['max_message_size'] must be from 1 to {sys.maxsize}")
        self.max_backlog = int(options.get("max_backlog", 10_000))
        self.ssl_context: ssl.SSLContext | None = options.get("ssl_context")
        self.identify_hook: IdentifyHook | None = options.get("identify_hook")
        if identify_queue is None:
            identify_queue = (
                HookIdentifyQueue(self.identify_hook)
                if self.identify_hook is not None
                else LocalIdentifyQueue()
            )
        self._queue = identify_queue
        self._backoff = Backoff(
            base=float(options.get("reconnect_delay", 1.0)),
            cap=float(options.get("max_reconnect_delay", 20.0)),
        )
        session = options.get("session")
        if session is None and "session_id" in options:
            session = {k: options.get(k) for k in ("session_id", "sequence", "resume_url")}
        if isinstance(session, Mapping):
            session = Session.from_mapping(session)
        low, high = options.get("invalid_session_delay", (1.0, 5.0))
        self._protocol = GatewayProtocol(
            token=token,
            intents=intents,
            shard=(self.id, self.total),
            properties=self.properties,
            large_threshold=self.large_threshold,
            presence=options.get("presence"),
            compress_payloads=self.compression == "payload",
            session=session,
            hello_timeout=float(options.get("hello_timeout", 20.0)),
            ready_timeout=float(options.get("ready_timeout", 15.0)),
            invalid_session_delay=(float(low), float(high)),
        )
        self._token = token
        self._registry = listeners if listeners is not None else ListenerRegistry()
        self._handlers = self._registry.by_name
        self._disabled: frozenset[bytes] = frozenset()
        self._dropped = 0  # dispatches of disabled events dropped unparsed, all connections
        self.disabled_events = options.get("disabled_events", ())

        self.status = ShardStatus.CLOSED
        self.connected_at: float | None = None
        self.ready_at: float | None = None
        self.identified_at: float | None = None
        self.user_id: str | None = None

        self._limiter = SlidingWindowLimiter(COMMANDS_PER_WINDOW, COMMAND_WINDOW, reserved=5)
        self._presence_limiter = SlidingWindowLimiter(PRESENCE_UPDATES_PER_WINDOW, PRESENCE_WINDOW)
        self._conn: WebSocketConnection | None = None
        self._inflater: Inflater | None = None
        self._conn_scope: anyio.CancelScope | None = None
        self._conn_tg: anyio.abc.TaskGroup | None = None
        self._gate = connect_gate
        self._timers = timers if timers is not None else TimerService()
        self._owns_timers = timers is None
        self._timer: Timer | None = None
        self._wait_scope: anyio.CancelScope | None = None
        self._close_request: tuple[int, str] | None = None
        self._server_close: tuple[int | None, str] | None = None
        self._lost_reason = ""
        self._closing = False
        self._close_code = CLIENT_RESUMABLE_CLOSE_CODE
        self._running = False
        self._stopped = anyio.Event()

        self._backlog: deque[tuple[Listener, Any, str]] = deque()
        self._dispatch_wake: anyio.Event | None = None
        self._dispatch_stopping = False
        self._pause_count = 0
        self._resume_reading: anyio.Event | None = None
        self._ack_waiters: list[anyio.Event] = []
        self._collectors: list[_Collector] = []

    # ------------------------------------------------------------------ properties

    def __repr__(self) -> str:
        return f"<WebsocketShard id={self.id} total={self.total} status={self.status.name}>"

    @property
    def token(self) -> str:
        return self._token

    @property
    def intents(self) -> int:
        return self._protocol.intents

    @property
    def presence(self) -> dict[str, Any] | None:
        return self._protocol.presence

    @property
    def session(self) -> Session | None:
        """What a RESUME needs: session id, last sequence and resume URL."""
        return self._protocol.session

    @property
    def latency(self) -> float | None:
        """Seconds between the last heartbeat and its ACK (None before the first)."""
        return self._protocol.latency

    last_ping = latency

    @property
    def disabled_events(self) -> frozenset[str]:
        return frozenset(name.decode() for name in self._disabled)

    @disabled_events.setter
    def disabled_events(self, names: Iterable[str]) -> None:
        names = frozenset(names)
        for name in names:
            if '"' in name:  # the peek reads a name up to its closing quote
                raise ValueError(f"not an event name: {name!r}")
        # Never drop what the shard itself needs to see.
        self._disabled = _shared(
            frozenset(
                name.encode()
                for name in names
                if name not in _READY_EVENTS and name not in _COLLECTED
            )
        )

    def on(self, name: str, listener: Listener) -> None:
        """Call ``listener(data, shard_id)`` for event ``name``."""
        self._registry.on(name, listener)

    def off(self, name: str, listener: Listener) -> None:
        self._registry.off(name, listener)

    # ------------------------------------------------------------------ lifetime

    async def connect(self) -> None:
        """Start the shard; return once its websocket is open."""
        task_group = self._require_task_group()
        if not self._running:
            await task_group.start(self.run)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until closed or fatally disconnected; ``started`` once the socket is open."""
        if self._running:
            raise RuntimeError(f"shard {self.id} is already running")
        self._running = True
        self._closing = False
        self._dispatch_stopping = False
        self._stopped = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._dispatch_loop)
                if self._owns_timers:
                    await tg.start(self._timers.run)
                await self._connection_loop(task_status)
                self._dispatch_stopping = True
                self._wake_dispatcher()
                if self._owns_timers:
                    self._timers.stop()
        finally:
            self._leave_gate()
            self._running = False
            self.status = ShardStatus.CLOSED
            self._stopped.set()

    async def close(self, invalidate: bool = False) -> None:
        """Disconnect; with ``invalidate`` the session ends (close code 1000).

        Without it the close code (4099) keeps the session resumable, so that
        ``get_current_sessions()`` can resume it after a restart. No ``close``
        event is emitted for a manual close.
        """
        if not self._running:
            if invalidate:
                self._protocol.forget_session()
            return
        self._closing = True
        self._close_code = 1000 if invalidate else CLIENT_RESUMABLE_CLOSE_CODE
        if invalidate:
            self._protocol.forget_session()
        self.status = ShardStatus.CLOSING
        for scope in (self._conn_scope, self._wait_scope):
            if scope is not None:
                scope.cancel()
        await self._stopped.wait()

    # ------------------------------------------------------------------ connection loop

    async def _connection_loop(self, task_status: anyio.abc.TaskStatus[None]) -> None:
        started = False
        failures = 0
        while not self._closing:
            url = self._gateway_url()
            self.status = ShardStatus.OFFLINE if failures >= 2 else ShardStatus.CONNECTING
            conn: WebSocketConnection | None = None
            with anyio.CancelScope() as self._wait_scope:
                gate = self._gate
                if gate is not None and not self._protocol.resumable:
                    # Connect to identify only when the identify schedule is near.
                    if not started and not gate.admits(self.id):
                        started = True
                        task_status.started()
                    await gate.enter(self.id)
                try:
                    conn = await open_websocket(
                        url,
                        connect_timeout=self.connect_timeout,
                        ssl_context=self.ssl_context,
                        max_message_size=self.max_message_size,
                    )
                except TransportError as exc:
                    self._leave_gate()
                    failures += 1
                    self._debug(f"could not connect to {_host(url)}: {exc}")
                    if self._protocol.resume_url is not None:
                        # A dead resume URL is not retried (twilight #1942); the session may be.
                        self._protocol.resume_url = None
                    await anyio.sleep(self._backoff.next_delay(None))
            self._wait_scope = None
            if conn is None:
                continue
            failures = 0
            if not started:
                started = True
                task_status.started()
            outcome, uptime = await self._serve(conn)
            self._leave_gate()
            if outcome is None or self._closing:
                break
            if isinstance(outcome, Fatal):
                self._debug(f"stopping: {outcome.error}")
                self._emit("close", outcome.error)
                self._report_error(outcome.error, "stopped")
                break
            delay = max(outcome.delay, self._backoff.next_delay(uptime))
            self._debug(
                f"{outcome.reason}; reconnecting to "
                f"{'resume' if outcome.resume else 'identify'} in {delay:.2f} s"
            )
            with anyio.CancelScope() as self._wait_scope:
                await anyio.sleep(delay)
            self._wait_scope = None
        if not started:
            task_status.started()

    async def _serve(self, conn: WebSocketConnection) -> tuple[Outcome | None, float]:
        """Run one connection to its end; return what to do next and how long it lived."""
        proto = self._protocol
        opened = anyio.current_time()
        proto.connection_made(opened)
        self._conn = conn
        self._inflater = make_inflater(self.compression, self.max_message_size)
        self._limiter.reset()
        self._reset_ending()
        self.connected_at = time.time()
        self.status = ShardStatus.CONNECTED
        self._debug(f"connected to {_host(conn.url)}")
        self._emit("connect", None)
        try:
            async with anyio.create_task_group() as tg:
                self._conn_tg = tg
                self._conn_scope = tg.cancel_scope
                if self._closing:
                    tg.cancel_scope.cancel()
                tg.start_soon(self._timer_loop)
                await self._read_loop(conn)
                tg.cancel_scope.cancel()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await conn.abort()
            raise
        finally:
            self._conn_tg = None
            self._conn_scope = None
            self._conn = None
            self._fail_waiters()
        uptime = anyio.current_time() - opened
        with anyio.CancelScope(shield=True):
            if self._closing:
                await conn.close(self._close_code, timeout=self.close_timeout)
                return None, uptime
            if self._close_request is not None:
                code, reason = self._close_request
                await conn.close(code, timeout=self.close_timeout)
                outcome = proto.connection_lost(None)
            elif self._server_close is not None:
                code_or_none, reason = self._server_close
                await conn.close(code_or_none, timeout=self.close_timeout)
                outcome = proto.connection_lost(code_or_none, reason)
            else:
                await conn.abort()
                outcome = proto.connection_lost(None, self._lost_reason)
        self._drain_debug()
        return outcome, uptime

    def _reset_ending(self) -> None:
        """Forget how the previous connection ended."""
        self._close_request = None
        self._server_close = None
        self._lost_reason = "connection lost"

    async def _read_loop(self, conn: WebSocketConnection) -> None:
        receive = conn.receive
        handle = self._handle_messages
        proto = self._protocol
        pause = True
        while True:
            try:
                messages = await receive(pause=pause)
            except TransportError as exc:
                self._lost_reason = str(exc)
                return
            except ProtocolViolation as exc:
                await self._violation(exc)
                return
            count, dropped_before = len(messages), self._dropped
            while messages:
                try:
                    messages = handle(messages)
                except (ProtocolViolation, ValueError, TypeError, KeyError) as exc:
                    # Stop at once: delivering later events would move the sequence past
                    # this one, and the resume could then never replay it.
                    await self._violation(exc)
                    return
                if self._server_close is not None:
                    return
                if proto.actions:
                    await self._flush()
                    if self._close_request is not None:
                        return
            if self._pause_count or len(self._backlog) > self.max_backlog:
                await self._wait_until_unpaused()
            # A slice dropped whole made no work for other tasks: go on without yielding.
            pause = not count or self._dropped - dropped_before != count

    def _handle_messages(self, messages: Messages) -> Messages:
        """Decode a slice of messages and hand them on: the per-event hot path.

        The inflater gives the next document to parse, having dropped any dispatch of
        a disabled event before it unparsed (from a peek at its name and sequence);
        the protocol hears of those (their count and highest sequence: all that
        dropping one changes) before anything else happens. The loop stops after
        anything the read loop must act on first and returns the messages after it:
        a payload of another opcode (it may have queued actions to flush), or a close
        frame (which sets ``_server_close``). An exception stops it at the message
        that raised: the later ones are neither decoded nor counted.
        """
        inflater = self._inflater
        assert inflater is not None
        next_document = inflater.next_document
        disabled = self._disabled
        proto = self._protocol
        receive_dispatch = proto.receive_dispatch
        handlers = self._handlers
        call = self._call
        index, count = 0, len(messages)
        while index < count:
            index, raw, dropped, top = next_document(messages, index, disabled)
            if dropped:
                # Before a listener can see the session's sequence.
                proto.skip_dispatches(dropped, top)
                self._dropped += dropped
            if raw is None:
                if index < count and messages[index][0] == CLOSE:
                    self._server_close = parse_close(messages[index][1])
                    return []
                continue  # the end, or an error held back behind drops: the next call raises it
            payload = loads(raw)
            if payload.__class__ is not dict:
                raise ProtocolViolation(
                    f"payload is not a JSON object but {type(payload).__name__}"
                )
            if payload.get("op") == 0:
                name = receive_dispatch(payload)
                if name is not None:  # not a replayed duplicate
                    # To the ``event`` listeners, then to those of its name.
                    if name in _READY_EVENTS or self._collectors:
                        self._deliver_special(name, payload)
                        continue
                    listeners = handlers.get("event")
                    if listeners:
                        call(listeners, payload, "event")
                    listeners = handlers.get(name)
                    if listeners:
                        call(listeners, payload["d"], name)
                continue
            self._handle_control(payload)
            return messages[index:]
        return []

    def _handle_control(self, payload: dict[str, Any]) -> None:
        """A payload other than a dispatch: HELLO, heartbeats and their ACKs, op 7 and op 9."""
        proto = self._protocol
        proto.receive(payload, anyio.current_time())
        op = payload.get("op")
        if op == OpCode.HEARTBEAT_ACK and self._ack_waiters:
            for waiter in self._ack_waiters:
                waiter.set()
            self._ack_waiters.clear()
        elif op == OpCode.HELLO and proto.heartbeat_interval:
            # Room for every heartbeat of a window plus a resume or identify.
            # Capped at half the limit: a test server's tiny interval must not starve commands.
            self._limiter.reserved = min(
                math.ceil(COMMAND_WINDOW / proto.heartbeat_interval) + 2,
                self._limiter.limit // 2,
            )
        self._rearm_timer()

    def _deliver_special(self, name: str, payload: dict[str, Any]) -> None:
        """READY and RESUMED (which go to ``ready``/``resumed``), or while collecting."""
        special = _READY_EVENTS.get(name)
        if special is not None:
            self._on_session_event(name, payload)
            self._emit(special, payload["d"])
        self._emit("event", payload)
        if special is None:
            handlers = self._handlers.get(name)
            if handlers:
                self._call(handlers, payload["d"], name)
        if self._collectors and name in _COLLECTED:
            for collector in tuple(self._collectors):
                collector.feed(name, payload["d"])

    def _on_session_event(self, name: str, payload: dict[str, Any]) -> None:
        self._rearm_timer()  # the READY/RESUMED timeout is gone: no wake-up for it
        self._leave_gate()
        now = time.time()
        self.ready_at = now
        self.status = ShardStatus.READY
        if name == "READY":
            self.identified_at = now
            user = payload["d"].get("user")
            if isinstance(user, dict):
                self.user_id = str(user.get("id"))
        self._debug(f"{name.lower()} (session {self._protocol.session_id})")

    # ------------------------------------------------------------------ timer and sending

    async def _timer_loop(self) -> None:
        """Wait for the protocol's next timer window, through the shared timer service."""
        proto = self._protocol
        timer = self._timer = self._timers.timer()
        try:
            while True:
                # No window: wait until _rearm_timer gives one.
                await timer.wait(*(proto.get_timer_window() or _NO_WINDOW))
                proto.handle_timer(anyio.current_time())
                await self._flush()
        finally:
            self._timer = None

    def _rearm_timer(self) -> None:
        timer = self._timer
        if timer is not None and timer.waiting:
            timer.move(*(self._protocol.get_timer_window() or _NO_WINDOW))

    async def _flush(self) -> None:
        """Carry out what the protocol asked for."""
        proto = self._protocol
        while proto.actions:
            action = proto.actions.pop(0)
            if isinstance(action, SendPayload):
                self._debug(f"sending {action.description}")
                try:
                    await self._write(action.payload, priority=True)
                except TransportError as exc:
                    self._lost_reason = str(exc)
                    if self._conn_scope is not None:
                        self._conn_scope.cancel()
                    return
            elif isinstance(action, RequestIdentify):
                if self._conn_tg is not None:
                    self._conn_tg.start_soon(self._identify)
            elif isinstance(action, CloseConnection):
                self._close_request = (action.code, action.reason)
                proto.actions.clear()
                if self._conn_scope is not None:
                    self._conn_scope.cancel()
                return
            elif isinstance(action, Debug):
                self._debug(action.message)
        self._rearm_timer()

    def _drain_debug(self) -> None:
        for action in self._protocol.actions:
            if isinstance(action, Debug):
                self._debug(action.message)
        self._protocol.actions.clear()

    async def _identify(self) -> None:
        self._debug("waiting for an identify slot")
        await self._queue.acquire(self.id)
        if self._protocol.identify_granted(anyio.current_time()):
            await self._flush()
        self._queue.identified(self.id)  # the bucket's next slot counts from now
        # The shard leaves the connect gate on READY (or when the connection ends): the
        # next shards' handshakes then come after this wave, not between its IDENTIFYs.

    def _leave_gate(self) -> None:
        if self._gate is not None:
            self._gate.leave(self.id)

    async def _write(self, payload: Mapping[str, Any], *, priority: bool) -> None:
        conn = self._conn
        if conn is None:
            raise SharderError(f"shard {self.id} is not connected")
        await _take_slot(self._limiter, priority=priority)
        with anyio.move_on_after(self.send_timeout) as scope:
            # No local holds the encoded payload: orjson's output takes 4 KiB however
            # short, and a thousand shards identifying at once would hold 4 MiB of them.
            await conn.send_text(dumps(payload))
        if scope.cancelled_caught:
            raise TransportError(f"sending to the gateway took over {self.send_timeout} s")

    async def _violation(self, exc: Exception) -> None:
        self._debug(f"bad data from the gateway ({type(exc).__name__}: {exc}); resuming")
        self._protocol.protocol_error(f"{type(exc).__name__}: {exc}")
        await self._flush()

    # ------------------------------------------------------------------ listeners

    def _emit(self, name: str, data: Any) -> None:
        handlers = self._handlers.get(name)
        if handlers:
            self._call(handlers, data, name)

    def _call(self, handlers: tuple[tuple[Listener, bool], ...], data: Any, name: str) -> None:
        for listener, is_async in handlers:
            if is_async:
                self._backlog.append((listener, data, name))
                if self._dispatch_wake is not None:
                    self._dispatch_wake.set()
            else:
                try:
                    listener(data, self.id)
                except Exception as exc:
                    self._listener_failed(exc, name)

    def _listener_failed(self, exc: Exception, name: str) -> None:
        if name == "error":
            logger.exception("an 'error' listener of shard %s failed", self.id, exc_info=exc)
            return
        exc.add_note(f"in a listener for {name!r} on shard {self.id}")
        self._report_error(exc, f"a listener for {name!r} failed")

    def _report_error(self, exc: BaseException, what: str) -> None:
        """Emit ``error``; with no listener for it, log instead, so nothing goes unseen."""
        if self._handlers.get("error"):
            self._emit("error", exc)
        else:
            logger.error("shard %s: %s", self.id, what, exc_info=exc)

    def _debug(self, message: str) -> None:
        handlers = self._handlers.get("debug")
        if handlers:
            self._call(handlers, message, "debug")

    async def _dispatch_loop(self) -> None:
        """Await async listeners one by one, in the order events arrived."""
        backlog = self._backlog
        low_water = self.max_backlog // 2
        while True:
            while backlog:
                listener, data, name = backlog.popleft()
                try:
                    await listener(data, self.id)
                except Exception as exc:
                    self._listener_failed(exc, name)
                if self._resume_reading is not None and len(backlog) <= low_water:
                    self._maybe_resume_reading()
            if self._dispatch_stopping:
                return
            self._dispatch_wake = anyio.Event()
            await self._dispatch_wake.wait()
            self._dispatch_wake = None

    def _wake_dispatcher(self) -> None:
        if self._dispatch_wake is not None:
            self._dispatch_wake.set()

    # ------------------------------------------------------------------ flow control

    def pause_reading(self) -> None:
        """Stop reading from the socket (after the current batch) until resumed.

        For consumers that fall behind: the data waits in the kernel and on
        Discord's side instead of in memory. Heartbeats go on, and no zombie
        verdict is made while reading is paused.
        """
        self._pause_count += 1

    def resume_reading(self) -> None:
        """Undo one ``pause_reading``."""
        self._pause_count = max(0, self._pause_count - 1)
        self._maybe_resume_reading()

    def _maybe_resume_reading(self) -> None:
        event = self._resume_reading
        if event is not None and not self._pause_count and len(self._backlog) <= self.max_backlog:
            event.set()

    async def _wait_until_unpaused(self) -> None:
        self._protocol.paused = True
        try:
            while self._pause_count or len(self._backlog) > self.max_backlog:
                self._resume_reading = anyio.Event()
                await self._resume_reading.wait()
        finally:
            self._resume_reading = None
            self._protocol.paused = False

    # ------------------------------------------------------------------ commands

    async def send(self, payload: Mapping[str, Any]) -> None:
        """Send a gateway command, waiting for room in the 120-per-60 s limit.

        Five slots (more with short heartbeat intervals) stay reserved for
        heartbeats, identify and resume, so commands can never cause a 4008.
        """
        if self._conn is None:
            raise SharderError(f"shard {self.id} is not connected")
        if len(dumps(payload)) > MAX_CLIENT_PAYLOAD:
            raise ValueError(f"gateway commands are limited to {MAX_CLIENT_PAYLOAD} bytes")
        await self._write(payload, priority=False)

    async def ping(self, timeout: float = 10.0) -> float:
        """Measure latency now with an extra heartbeat; returns seconds."""
        waiter = anyio.Event()
        self._ack_waiters.append(waiter)
        self._protocol.send_heartbeat(anyio.current_time())
        await self._flush()
        try:
            with anyio.fail_after(timeout):
                await waiter.wait()
        except TimeoutError:
            raise RequestTimeoutError(f"no HEARTBEAT_ACK within {timeout} s") from None
        latency = self._protocol.latency
        assert latency is not None
        return latency

    async def update_presence(self, presence: Mapping[str, Any]) -> None:
        """Change status and activities (at most 5 updates per 20 s; waits for room)."""
        status = presence.get("status", "online")
        data = {
            "since": presence.get("since", int(time.time() * 1000) if status == "idle" else None),
            "activities": list(presence.get("activities", [])),
            "status": status,
            "afk": bool(presence.get("afk", False)),
        }
        await _take_slot(self._presence_limiter, priority=False)
        await self.send({"op": OpCode.PRESENCE_UPDATE, "d": data})
        self._protocol.presence = data

    async def update_voice_state(
        self,
        guild_id: str | int,
        channel_id: str | int | None = None,
        *,
        self_mute: bool = False,
        self_deaf: bool = False,
        wait_for_server: bool = False,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """Join, move or leave voice; returns the bot's voice state.

        With ``wait_for_server`` (joining or moving only) the result also has
        ``token`` and ``endpoint`` from VOICE_SERVER_UPDATE.
        """
        collector = _VoiceCollector(
            str(guild_id), self.user_id, wait_for_server and channel_id is not None
        )
        payload = {
            "op": OpCode.VOICE_STATE_UPDATE,
            "d": {
                "guild_id": str(guild_id),
                "channel_id": None if channel_id is None else str(channel_id),
                "self_mute": self_mute,
                "self_deaf": self_deaf,
            },
        }
        return await self._collect(collector, payload, timeout)

    async def request_guild_members(
        self,
        guild_id: str | int,
        *,
        query: str | None = None,
        limit: int | None = None,
        user_ids: Iterable[str | int] | None = None,
        presences: bool = False,
        nonce: str | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """Request members and return every GUILD_MEMBERS_CHUNK combined.

        Returns ``{guild_id, members, presences, not_found}``. ``timeout`` restarts
        with every chunk. A RATE_LIMITED answer raises RateLimitedError.
        """
        nonce = nonce or secrets.token_hex(8)
        if len(nonce.encode()) > 32:
            raise ValueError("nonce must be at most 32 bytes (Discord drops longer ones)")
        data: dict[str, Any] = {"guild_id": str(guild_id), "presences": presences, "nonce": nonce}
        if user_ids is not None:
            data["user_ids"] = [str(u) for u in user_ids]
        else:
            data["query"] = query or ""
            data["limit"] = 0 if limit is None else limit
        collector = _MembersCollector(str(guild_id), nonce)
        payload = {"op": OpCode.REQUEST_GUILD_MEMBERS, "d": data}
        return await self._collect(collector, payload, timeout)

    async def _collect(
        self, collector: _Collector, payload: Mapping[str, Any], timeout: float
    ) -> dict[str, Any]:
        self._collectors.append(collector)
        try:
            await self.send(payload)
            while collector.result is None:
                try:
                    with anyio.fail_after(timeout):
                        await collector.progress()
                except TimeoutError:
                    raise RequestTimeoutError(
                        f"no answer to opcode {payload['op']} within {timeout} s"
                    ) from None
                if collector.error is not None:
                    raise collector.error
            return collector.result
        finally:
            self._collectors.remove(collector)

    def _fail_waiters(self) -> None:
        self._ack_waiters.clear()

    # ------------------------------------------------------------------ urls

    def _gateway_url(self) -> str:
        proto = self._protocol
        base = self.url
        if proto.resumable and proto.resume_url:
            if self._url_is_secure_enough(proto.resume_url):
                base = proto.resume_url
            else:
                self._debug("ignoring an unencrypted resume URL to a non-loopback host")
        parts = urlsplit(base if "://" in base else f"wss://{base}")
        query = f"v={self.version}&encoding={self.encoding}"
        if self.compression in ("zlib-stream", "zstd-stream"):
            query += f"&compress={self.compression}"
        return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))

    def _url_is_secure_enough(self, url: str) -> bool:
        parts = urlsplit(url if "://" in url else f"wss://{url}")
        return parts.scheme == "wss" or self.allow_insecure or _is_loopback(parts.hostname)

    def _check_url_security(self, url: str) -> None:
        if not self._url_is_secure_enough(url):
            raise ValueError(
                f"refusing to send the token over unencrypted {urlsplit(url).scheme}:// to "
                f"{urlsplit(url).hostname}; use wss:// or set allow_insecure"
            )


async def _take_slot(limiter: SlidingWindowLimiter, *, priority: bool) -> None:
    """Sleep until ``limiter`` allows a send, then count it."""
    # Polling is exact here: the limiter computes when the next slot frees up.
    while (delay := limiter.delay(anyio.current_time(), priority=priority)) > 0:  # noqa: ASYNC110
        await anyio.sleep(delay)
    limiter.record(anyio.current_time())


def _host(url: str) -> str:
    return urlsplit(url).netloc


class _Collector:
    """Gathers the dispatches that answer one command."""

    __slots__ = ("_event", "error", "result")

    def __init__(self) -> None:
        self.result: dict[str, Any] | None = None
        self.error: Exception | None = None
        self._event = anyio.Event()

    async def progress(self) -> None:
        await self._event.wait()
        self._event = anyio.Event()

    def _changed(self) -> None:
        self._event.set()

    def feed(self, name: str, data: Any) -> None:
        raise NotImplementedError


class _MembersCollector(_Collector):
    __slots__ = ("_chunks", "_combined", "guild_id", "nonce")

    def __init__(self, guild_id: str, nonce: str) -> None:
        super().__init__()
        self.guild_id = guild_id
        self.nonce = nonce
        self._chunks: set[int] = set()
        self._combined: dict[str, Any] = {
            "guild_id": guild_id,
            "members": [],
            "presences": [],
            "not_found": [],
        }

    def feed(self, name: str, data: Any) -> None:
        if not isinstance(data, dict):
            return
        if name == "RATE_LIMITED":
            meta = data.get("meta") or {}
            if data.get("opcode") == 8 and meta.get("nonce") == self.nonce:
                self.error = RateLimitedError(float(data.get("retry_after", 0)))
                self._changed()
            return
        if name != "GUILD_MEMBERS_CHUNK" or data.get("nonce") != self.nonce:
            return
        combined = self._combined
        combined["members"].extend(data.get("members") or ())
        combined["presences"].extend(data.get("presences") or ())
        combined["not_found"].extend(data.get("not_found") or ())
        self._chunks.add(int(data.get("chunk_index", 0)))
        if len(self._chunks) >= int(data.get("chunk_count", 1)):
            self.result = combined
        self._changed()


class _VoiceCollector(_Collector):
    __slots__ = ("_server", "_state", "guild_id", "user_id", "wait_for_server")

    def __init__(self, guild_id: str, user_id: str | None, wait_for_server: bool) -> None:
        super().__init__()
        self.guild_id = guild_id
        self.user_id = user_id
        self.wait_for_server = wait_for_server
        self._state: dict[str, Any] | None = None
        self._server: dict[str, Any] | None = None

    def feed(self, name: str, data: Any) -> None:
        if not isinstance(data, dict) or str(data.get("guild_id")) != self.guild_id:
            return
        if name == "VOICE_STATE_UPDATE":
            if self.user_id is None or str(data.get("user_id")) == self.user_id:
                self._state = data
        elif name == "VOICE_SERVER_UPDATE":
            self._server = data
        else:
            return
        if self._state is not None and (self._server is not None or not self.wait_for_server):
            result = dict(self._state)
            if self._server is not None:
                result["token"] = self._server.get("token")
                result["endpoint"] = self._server.get("endpoint")
            self.result = result
        self._changed()
