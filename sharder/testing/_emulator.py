"""``FakeDiscord``: a real gateway and REST server on loopback, and its control API.

Tests drive faults through this API (close codes, op 7, op 9, drops, zombie
connections) and assert on the timeline instead of on internals. A shard is
addressed by its shard id, meaning the most recent live session of that id.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping
from contextlib import AsyncExitStack
from types import MappingProxyType, TracebackType
from typing import Any, Literal, Self

import anyio
from anyio.abc import SocketAttribute, TaskGroup

from ._chatter import run_chatter
from ._config import EmulatorConfig
from ._gateway import GatewayConnection
from ._hub import Hub
from ._rest import RecordedMessage, RestApi
from ._rest_limits import RestFault
from ._server import ConnectionHandler
from ._sessions import Session, SessionInfo
from ._timeline import TimelineEntry

__all__ = ["FakeDiscord"]


class FakeDiscord:
    """A Discord emulator speaking the real gateway and REST protocols on loopback.

    Use it as an async context manager; all durations are in seconds. See the
    package docstring for what each option does.
    """

    def __init__(
        self,
        *,
        token: str = "emulator-token",
        shards: int = 1,
        max_concurrency: int = 1,
        session_start_total: int = 1000,
        session_start_remaining: int = 1000,
        reset_after: float = 86_400.0,
        heartbeat_interval: float = 41.25,
        heartbeat_timeout: float | None = None,
        identify_window: float = 5.0,
        command_limit: int = 120,
        command_window: float = 60.0,
        resume_timeout: float = 180.0,
        reconnect_close_delay: float = 2.0,
        privileged_intents_allowed: bool = True,
        guilds_per_shard: int = 0,
        members_per_guild: int = 2500,
        write_chunk_size: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        replay_limit: int = 100_000,
    ) -> None:
        self.config = EmulatorConfig(
            token=token, shards=shards, max_concurrency=max_concurrency,
            session_start_total=session_start_total,
            session_start_remaining=session_start_remaining, reset_after=reset_after,
            heartbeat_interval=heartbeat_interval, heartbeat_timeout=heartbeat_timeout,
            identify_window=identify_window, command_limit=command_limit,
            command_window=command_window, resume_timeout=resume_timeout,
            reconnect_close_delay=reconnect_close_delay,
            privileged_intents_allowed=privileged_intents_allowed,
            guilds_per_shard=guilds_per_shard, members_per_guild=members_per_guild,
            write_chunk_size=write_chunk_size, host=host, port=port, ssl_context=ssl_context,
            replay_limit=replay_limit,
        )  # fmt: skip
        self._hub = Hub(self.config)
        self._rest = RestApi(self._hub)
        self._stack: AsyncExitStack | None = None
        self._task_group: TaskGroup | None = None
        self.port = 0

    # -- lifetime -------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError("this FakeDiscord is already running")
        config = self.config
        async with AsyncExitStack() as stack:
            listener = await anyio.create_tcp_listener(
                local_host=config.host, local_port=config.port
            )
            stack.push_async_callback(listener.aclose)
            self.port = listener.extra(SocketAttribute.local_port)
            self._hub.set_urls(self._url("ws"), f"{self._url('http')}/api/v10")
            self._task_group = await stack.enter_async_context(anyio.create_task_group())
            handler = ConnectionHandler(self._hub, self._rest, config.ssl_context)
            self._task_group.start_soon(listener.serve, handler)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        """Reset every connection, stop serving."""
        for connection in list(self._hub.connections):
            connection.abort("emulator_exit")
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()
        stack, self._stack, self._task_group = self._stack, None, None
        if stack is None:
            return None
        try:
            return await stack.__aexit__(exc_type, exc, traceback)
        except BaseExceptionGroup as group:
            # The body runs inside the server's task group, which wraps its error;
            # let the body's own exception through as it was raised.
            if exc is not None and _leaves(group) == _leaves(exc):
                return False
            raise

    def _url(self, scheme: str) -> str:
        secure = "s" if self.config.ssl_context is not None else ""
        host = self.config.host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"{scheme}{secure}://{host}:{self.port}"

    # -- addresses and records ------------------------------------------------------

    @property
    def gateway_url(self) -> str:
        """``ws://HOST:PORT`` (``wss://`` with an ssl_context); append the query yourself."""
        return self._hub.gateway_url

    @property
    def resume_gateway_url(self) -> str:
        """What READY announces: the gateway URL with the ``/resume`` path."""
        return self._hub.resume_url

    @property
    def api_base(self) -> str:
        """``http://HOST:PORT/api/v10`` (``https://`` with an ssl_context)."""
        return self._hub.api_base

    @property
    def timeline(self) -> list[TimelineEntry]:
        return self._hub.timeline.entries

    @property
    def violations(self) -> list[str]:
        """Limits the client broke (identify concurrency, daily limit)."""
        return self._hub.violations

    @property
    def messages(self) -> list[RecordedMessage]:
        """Messages created over REST, in order."""
        return self._rest.messages

    @property
    def sessions(self) -> Mapping[str, SessionInfo]:
        """A read-only snapshot of the live sessions by session id."""
        self._hub.sessions.purge(self._hub.now())
        return MappingProxyType({s.session_id: s.info() for s in self._hub.sessions})

    def connected_shards(self) -> set[int]:
        """Shard ids whose session is attached to an open connection."""
        return {c.shard_id for c in self._hub.connections if c.attached and c.shard_id is not None}

    def entries(self, kind: str, shard_id: int | None = None) -> list[TimelineEntry]:
        return self._hub.timeline.select(kind, shard_id)

    async def wait_for(
        self,
        kind: str,
        *,
        shard_id: int | None = None,
        count: int = 1,
        timeout: float = 10.0,
        since: float | int = 0,
    ) -> list[TimelineEntry]:
        """Wait for ``count`` entries of ``kind``; ``since`` is an index (int) or a time (float).

        Raises:
            TimeoutError: listing the recent timeline kinds.
        """
        return await self._hub.timeline.wait_for(
            kind, shard_id=shard_id, count=count, timeout=timeout, since=since
        )

    def set_token(self, token: str) -> None:
        """Change the valid token (a reset token): later IDENTIFY, RESUME and REST fail."""
        self._hub.token = token

    @staticmethod
    def shard_for_guild(guild_id: int, total: int) -> int:
        return (guild_id >> 22) % total

    # -- dispatching ----------------------------------------------------------------

    async def dispatch(self, shard_id: int, name: str, data: Any) -> int:
        """Dispatch an event to a shard's session and return its seq.

        Sent at once if a connection holds the session, else buffered for replay.

        Raises:
            LookupError: the shard has no live session.
        """
        return self._session(shard_id).dispatch(name, data)

    async def dispatch_many(self, shard_id: int, events: Iterable[tuple[str, Any]]) -> list[int]:
        session = self._session(shard_id)
        return [session.dispatch(name, data) for name, data in events]

    async def run_chatter(
        self,
        *,
        guilds: int = 3,
        users: int = 5,
        interval: float = 2.0,
        messages: int | None = None,
        ping_every: int = 5,
    ) -> None:
        """Simulated users post MESSAGE_CREATEs; every ``ping_every``-th says ``!ping``.

        Runs until cancelled or ``messages`` were sent; guilds whose shard has
        no session are skipped.
        """
        if guilds < 1 or users < 1 or interval <= 0:
            raise ValueError("chatter needs at least one guild and user and a positive interval")
        await run_chatter(
            self._hub, guilds=guilds, users=users, interval=interval, messages=messages,
            ping_every=ping_every,
        )  # fmt: skip

    # -- faults ---------------------------------------------------------------------

    async def close_shard(self, shard_id: int, code: int, reason: str = "") -> None:
        """Close the shard's connection with ``code``.

        4003, 4004, 4007, 4009 and 4010-4014 also end the session, as on Discord.
        """
        self._connection(shard_id).close(code, reason)

    async def reconnect(self, shard_id: int) -> None:
        """Send op 7; close with 4000 after ``reconnect_close_delay`` unless the client did."""
        self._connection(shard_id).reconnect()

    async def invalidate(self, shard_id: int, resumable: bool) -> None:
        """Send op 9 with ``resumable``; ``False`` also ends the session."""
        self._connection(shard_id).invalid_session(resumable)

    async def drop(self, shard_id: int) -> None:
        """Reset the TCP connection (no close frame) and wait until it is gone."""
        connection = self._connection(shard_id)
        connection.abort("dropped")
        await connection.finished.wait()

    def zombify(self, shard_id: int) -> None:
        """Stop reading, writing and acking on the shard's connection, leaving it open.

        The half-open connection is reset once the client resumes the session or
        identifies the shard anew on another connection, or at exit.
        """
        self._connection(shard_id).zombify()

    async def request_heartbeat(self, shard_id: int) -> None:
        """Send a server op 1: the client must heartbeat at once."""
        connection = self._connection(shard_id)
        connection.send_op(1, None)
        self._hub.record("heartbeat_requested", shard_id, connection.session_id)

    async def send_payload(self, shard_id: int, payload: dict[str, Any]) -> None:
        """Send any payload through the connection's JSON and compression path."""
        self._connection(shard_id).send_json(payload)

    async def send_raw(self, shard_id: int, data: bytes, binary: bool) -> None:
        """Send a raw websocket message, bypassing JSON and compression."""
        self._connection(shard_id).send_raw(data, binary)

    # -- REST limits and faults -----------------------------------------------------

    def set_route_limit(
        self, route: str, *, limit: int, per: float, bucket: str | None = None
    ) -> None:
        """Allow ``limit`` requests per ``per`` seconds on ``route``, per major parameter.

        ``route`` is a key such as ``"POST /channels/{channel_id}/messages"``: each
        channel (guild, webhook) gets its own window, opened by its first request.
        Routes given the same ``bucket`` share one count, as Discord's shared
        buckets do. Over the limit, the answer is a 429 (see :attr:`rest_429s`).

        Raises:
            ValueError: an unknown route, or a limit below 1 or a period <= 0.
        """
        self._rest.limits.set_route_limit(self._route_key(route), limit, per, bucket)

    def set_global_limit(self, limit: int | None, per: float = 1.0) -> None:
        """Allow ``limit`` requests per ``per`` seconds over all routes (None: no limit)."""
        self._rest.limits.set_global_limit(limit, per)

    def inject_rest_fault(
        self,
        *,
        status: int | None = None,
        count: int = 1,
        route: str | None = None,
        retry_after: float = 1.0,
        global_: bool = False,
        scope: Literal["user", "global", "shared"] | None = None,
        drop: bool = False,
    ) -> None:
        """Answer the next ``count`` requests (to ``route``, or to any route) with a fault.

        ``status=503`` (any status) answers with that status and a JSON error.
        ``status=429`` answers "rate limited" with ``retry_after`` seconds and
        blocks the bucket (every route if ``global_``) that long, so an early
        retry gets another 429; ``scope`` sets ``X-RateLimit-Scope``.
        ``drop=True`` handles the request, then resets the connection unanswered.

        Raises:
            ValueError: neither or both of ``status`` and ``drop``, or an unknown route.
        """
        key = None if route is None else self._route_key(route)
        fault = RestFault(key, count, status, retry_after, global_, scope, drop)
        self._rest.limits.inject(fault)

    @property
    def rest_429s(self) -> int:
        """How many 429s the REST API has answered (limits exceeded, or injected)."""
        return self._rest.limits.rate_limited

    def _route_key(self, route: str) -> str:
        if route not in self._rest.router.keys:
            known = ", ".join(self._rest.router.keys)
            raise ValueError(f"unknown route {route!r}; the emulator serves: {known}")
        return route

    # -- lookups --------------------------------------------------------------------

    def _session(self, shard_id: int) -> Session:
        session = self._hub.sessions.latest(shard_id, self._hub.now())
        if session is None:
            raise LookupError(f"shard {shard_id} has no live session")
        return session

    def _connection(self, shard_id: int) -> GatewayConnection:
        connection = self._hub.holder_of(self._session(shard_id))
        if connection is None:
            raise LookupError(f"shard {shard_id} has no open connection")
        return connection


def _leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside nested exception groups (``[error]`` for a plain one)."""
    if not isinstance(error, BaseExceptionGroup):
        return [error]
    return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
