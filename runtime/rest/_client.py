"""The REST client: one pooled ``httpx.AsyncClient``, Discord's rate limits, retries.

Theory of operation. Each request maps to a :class:`~._routes.Route`. Requests
with the same route *and* major parameters form a queue guarded by a fair
(FIFO) lock held for the whole exchange, retries included: they reach Discord
one at a time and in the order they were made, and the first response of a
fresh route teaches its bucket before the second request leaves, so a burst of
a hundred requests to an unknown route never provokes a 429. Queues of
different routes or channels never wait for each other.

Bucket state (:class:`~._buckets.BucketState`) is keyed by the bucket hash
Discord sends plus the major parameters, so routes that Discord groups into one
bucket share one count. A route whose responses carry no bucket headers has no
per-route limit: its requests stop queueing. Every request also holds a slot
of the :class:`~._buckets.GlobalLimiter` while it is sent.

Waiting happens before sending: a bucket with no requests left waits for its
reset, so under steady load the client is never told 429. 429s still happen
(limits shared with other bots, a restart with stale state) and are retried
after ``retry_after``; a global one pauses every route.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, Final, TypeAlias
from urllib.parse import quote

import anyio
import httpx

from .. import __version__
from ._buckets import (
    BucketState,
    GlobalLimiter,
    InvalidRequestCounter,
    RateLimitHeaders,
    RetryAfter,
)
from ._retry import backoff_delay, may_retry_error, may_retry_status
from ._routes import Route, route_for
from .errors import NetworkError, RestError, TokenRejectedError, error_for_status

__all__ = ["DEFAULT_API_BASE", "DEFAULT_PLUGIN", "FileSpec", "PluginRest", "RestClient"]

_dumps: Callable[[Any], bytes]
_loads: Callable[[bytes], Any]
try:
    import orjson
except ImportError:  # pragma: no cover - orjson is an optional speed-up
    import json

    _loads = json.loads
    _encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

    def _dumps(obj: Any) -> bytes:
        return _encoder.encode(obj).encode()

else:
    _dumps = orjson.dumps
    _loads = orjson.loads

logger = logging.getLogger("botrun.rest")

DEFAULT_API_BASE: Final = "https://discord.com/api/v10"
DEFAULT_PLUGIN: Final = "botrun"
"""The name untagged requests (the runtime's own) are counted under."""
PROJECT_URL: Final = "https://github.com/botrun/botrun"

FileSpec: TypeAlias = tuple[str, bytes | IO[bytes]] | tuple[str, bytes | IO[bytes], str]
"""An attachment: ``(filename, content)`` or ``(filename, content, content_type)``."""
Params: TypeAlias = Mapping[str, str | int | float | bool]

_JSON_HEADERS: Final = {"Content-Type": "application/json"}
_SWEEP_MIN: Final = 1024
_BUCKET: Final = "x-ratelimit-bucket"


class _Queue:
    """Requests of one route and major parameters: one at a time, in order."""

    __slots__ = ("bucket", "lock", "state", "unlimited")

    def __init__(self, state: BucketState, bucket: str | None) -> None:
        self.lock = anyio.Lock(fast_acquire=True)
        self.state = state
        self.bucket = bucket
        """The bucket hash ``state`` belongs to; None until Discord names it."""
        self.unlimited = False
        """Discord sent no bucket headers for this route: no need to queue."""


class _Api:
    """The request methods, shared by :class:`RestClient` and its plugin views."""

    __slots__ = ("_client", "_plugin")

    _client: RestClient
    _plugin: str

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Params | None = None,
        files: Sequence[FileSpec] | None = None,
        reason: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send ``method path`` (relative to the API base) and return the parsed JSON.

        Waits as the rate limits require, retries what is safe to retry (see
        :mod:`runtime.rest._retry`), and returns None for an empty answer (204).

        Args:
            json: the JSON body; with ``files``, it is sent as ``payload_json``.
            params: the query string.
            files: attachments, sent as ``files[0]``, ``files[1]``... in a
                multipart/form-data body.
            reason: the audit-log reason (``X-Audit-Log-Reason``), any text.
            headers: extra request headers.

        Raises:
            HTTPError: Discord answered with an error status (Unauthorized,
                Forbidden and NotFound for 401, 403 and 404).
            TokenRejectedError: an earlier request got a 401; nothing was sent.
            NetworkError: no answer (after the retries that were safe).
        """
        return await self._client._request(
            self._plugin, method, path, json, params, files, reason, headers
        )

    async def get(
        self,
        path: str,
        *,
        params: Params | None = None,
        reason: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """``GET path``; see :meth:`request`."""
        return await self.request("GET", path, params=params, reason=reason, headers=headers)

    async def post(
        self,
        path: str,
        json: Any = None,
        *,
        params: Params | None = None,
        files: Sequence[FileSpec] | None = None,
        reason: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """``POST path`` with a JSON body (positional, as in ``rest.post(path, body)``)."""
        return await self.request(
            "POST", path, json=json, params=params, files=files, reason=reason, headers=headers
        )

    async def put(
        self,
        path: str,
        json: Any = None,
        *,
        params: Params | None = None,
        files: Sequence[FileSpec] | None = None,
        reason: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """``PUT path``; see :meth:`request`."""
        return await self.request(
            "PUT", path, json=json, params=params, files=files, reason=reason, headers=headers
        )

    async def patch(
        self,
        path: str,
        json: Any = None,
        *,
        params: Params | None = None,
        files: Sequence[FileSpec] | None = None,
        reason: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """``PATCH path``; see :meth:`request`."""
        return await self.request(
            "PATCH", path, json=json, params=params, files=files, reason=reason, headers=headers
        )

    async def delete(
        self,
        path: str,
        json: Any = None,
        *,
        params: Params | None = None,
        reason: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """``DELETE path``; see :meth:`request`."""
        return await self.request(
            "DELETE", path, json=json, params=params, reason=reason, headers=headers
        )

    async def get_gateway_bot(self) -> dict[str, Any]:
        """``GET /gateway/bot``: the gateway URL, shard count and session start limit."""
        info = await self.get("/gateway/bot")
        if not isinstance(info, dict):
            raise RestError(f"GET /gateway/bot: expected a JSON object, got {type(info).__name__}")
        return info


class PluginRest(_Api):
    """A :class:`RestClient` seen by one plugin: same client, buckets and counters.

    Requests made through it are counted under the plugin's name in
    :attr:`RestClient.invalid_requests`, so a plugin that hammers Discord with
    failing requests is named in the warning.
    """

    __slots__ = ()

    def __init__(self, client: RestClient, plugin: str) -> None:
        self._client = client
        self._plugin = plugin

    def __repr__(self) -> str:
        return f"<PluginRest {self._plugin!r} {self._client.api_base}>"

    @property
    def plugin(self) -> str:
        return self._plugin


class RestClient(_Api):
    """Discord's HTTP API for the runtime and its plugins.

    Use it as an async context manager (or call :meth:`aclose`): it holds one
    ``httpx.AsyncClient``, whose pooled keep-alive connections all requests share.

    Args:
        token: the bot token (sent as ``Authorization: Bot TOKEN``, never shown).
        api_base: the API root; the emulator's for tests.
        timeout: seconds each step of an attempt may take: connecting, sending,
            and each wait for data (httpx's timeouts; a total deadline per
            request would cost a cancel scope, ~20 µs, on every request).
        max_retries: further attempts after a 429, a 5xx or a network error
            (where safe); 0 sends each request once.
        global_limit: requests per second over all routes.
        allow_insecure: allow ``http://`` to a host that is not loopback.
        user_agent: text appended to ``DiscordBot (URL, VERSION)``.
        transport: an httpx transport (``httpx.MockTransport`` in tests).
        backoff_base, backoff_cap: the first retry delay after a network error
            or 5xx, and its ceiling (it doubles per retry, with jitter).

    Raises:
        ValueError: an empty token, or an ``http://`` base that is not loopback
            without ``allow_insecure``.
    """

    __slots__ = (
        "_backoff",
        "_base",
        "_global",
        "_hashes",
        "_http",
        "_invalid",
        "_max_retries",
        "_queues",
        "_rejected",
        "_slot_freed",
        "_states",
        "_sweep_at",
        "_timeout",
    )

    def __init__(
        self,
        token: str,
        *,
        api_base: str = DEFAULT_API_BASE,
        timeout: float = 15.0,
        max_retries: int = 5,
        global_limit: int = 50,
        allow_insecure: bool = False,
        user_agent: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 10.0,
    ) -> None:
        token = token.removeprefix("Bot ").strip()
        if not token:
            raise ValueError("the bot token is empty")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self._client = self
        self._plugin = DEFAULT_PLUGIN
        self._base = _checked_base(api_base, allow_insecure)
        self._timeout = timeout
        self._max_retries = max_retries
        self._backoff = (backoff_base, backoff_cap)
        self._global = GlobalLimiter(global_limit)
        self._invalid = InvalidRequestCounter()
        self._queues: dict[str, _Queue] = {}
        self._states: dict[str, BucketState] = {}
        self._hashes: dict[str, str] = {}
        self._sweep_at = _SWEEP_MIN
        self._rejected: str | None = None
        self._slot_freed: anyio.Event | None = None
        """Set when a global slot comes free; made only when someone waits for one."""
        agent = f"DiscordBot ({PROJECT_URL}, {__version__})"
        if user_agent:
            agent = f"{agent} {user_agent}"
        self._http = httpx.AsyncClient(
            headers={"Authorization": f"Bot {token}", "User-Agent": agent},
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"<RestClient {self._base}>"

    async def __aenter__(self) -> RestClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._http.aclose()

    @property
    def api_base(self) -> str:
        return self._base

    @property
    def invalid_requests(self) -> dict[str, int]:
        """401, 403 and (non-shared) 429 answers per plugin in the last ten minutes.

        Discord bans the IP for a while at 10,000 of them in ten minutes;
        requests made directly on the client count under ``"botrun"``.
        """
        return self._invalid.counts(time.monotonic())

    def for_plugin(self, name: str) -> PluginRest:
        """A view of this client whose requests are counted under ``name``."""
        return PluginRest(self, name)

    # ------------------------------------------------------------ one request

    async def _request(
        self,
        plugin: str,
        method: str,
        path: str,
        json: Any,
        params: Params | None,
        files: Sequence[FileSpec] | None,
        reason: str | None,
        headers: Mapping[str, str] | None,
    ) -> Any:
        method = method.upper()
        route = route_for(method, path)
        self._check_token(method, route)
        request = self._build(method, path, json, params, files, reason, headers)
        queue = self._queues.get(route.queue) or self._add_queue(route)
        if queue.unlimited:
            response = await self._exchange(queue, route, request, plugin)
        else:
            async with queue.lock:
                response = await self._exchange(queue, route, request, plugin)
        return self._result(response, route, plugin)

    def _build(
        self,
        method: str,
        path: str,
        json: Any,
        params: Params | None,
        files: Sequence[FileSpec] | None,
        reason: str | None,
        headers: Mapping[str, str] | None,
    ) -> httpx.Request:
        extra: dict[str, str] = {}
        if reason:
            extra["X-Audit-Log-Reason"] = quote(reason)
        if headers:
            extra.update(headers)
        url = self._base + path
        if files:
            parts = _multipart(json, files)
            return self._http.build_request(method, url, params=params, headers=extra, files=parts)
        if json is None:
            return self._http.build_request(method, url, params=params, headers=extra or None)
        extra = {**_JSON_HEADERS, **extra}
        return self._http.build_request(
            method, url, params=params, headers=extra, content=_dumps(json)
        )

    async def _exchange(
        self, queue: _Queue, route: Route, request: httpx.Request, plugin: str
    ) -> httpx.Response:
        """Send until there is an answer to return (or an error to raise)."""
        method = request.method
        attempt = 0
        while True:
            attempt += 1
            final = attempt > self._max_retries
            await self._wait_turn(queue, method, route)
            try:
                response = await self._send(request)
            except httpx.TransportError as exc:
                if final or not may_retry_error(method, exc):
                    raise NetworkError(method, route.path, _describe(exc, self._timeout)) from exc
                await anyio.sleep(backoff_delay(attempt, *self._backoff))
                continue
            self._learn(queue, route, response)
            status = response.status_code
            if status == 429:
                self._rate_limited(queue, route, response, plugin)
                if not final:
                    continue
            elif status >= 502 and not final and may_retry_status(method, status):
                await anyio.sleep(self._server_error_delay(response, route, attempt))
                continue
            return response

    async def _wait_turn(self, queue: _Queue, method: str, route: Route) -> None:
        """Wait until the bucket has a request left, then take a global slot."""
        self._check_token(method, route)
        while (delay := queue.state.acquire(anyio.current_time())) > 0:
            await anyio.sleep(delay)
            self._check_token(method, route)
        await self._take_global_slot()
        try:
            self._check_token(method, route)
        except TokenRejectedError:
            self._release_global()
            raise

    async def _take_global_slot(self) -> None:
        while (delay := self._global.acquire(anyio.current_time())) != 0.0:
            if delay is not None:
                await anyio.sleep(delay)
                continue
            if self._slot_freed is None:
                self._slot_freed = anyio.Event()
            await self._slot_freed.wait()  # every slot is in flight: wait for an answer

    def _release_global(self) -> None:
        self._global.release(anyio.current_time())
        if self._slot_freed is not None:
            self._slot_freed.set()
            self._slot_freed = None

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """Send on a global slot taken by :meth:`_wait_turn`, and free it however it ends."""
        try:
            return await self._http.send(request)
        finally:
            self._release_global()

    def _check_token(self, method: str, route: Route) -> None:
        if self._rejected is not None:
            raise TokenRejectedError(method, route.path, self._rejected)

    # ----------------------------------------------------- what answers teach

    def _add_queue(self, route: Route) -> _Queue:
        if len(self._queues) >= self._sweep_at:
            self._sweep(anyio.current_time())
        bucket = self._hashes.get(route.key)
        state = BucketState() if bucket is None else self._state(bucket, route)
        queue = self._queues[route.queue] = _Queue(state, bucket)
        return queue

    def _state(self, bucket: str, route: Route) -> BucketState:
        key = f"{bucket} {route.major}"
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = BucketState()
        return state

    def _learn(self, queue: _Queue, route: Route, response: httpx.Response) -> None:
        """Update the bucket from the answer's ``X-RateLimit-*`` headers."""
        raw = response.headers
        # One pass over the headers instead of five case-insensitive lookups.
        headers = RateLimitHeaders.parse(dict(raw.multi_items())) if _BUCKET in raw else None
        if headers is None:
            status = response.status_code
            if queue.bucket is None and status < 500 and status != 429:
                queue.unlimited = True
            return
        queue.unlimited = False
        if queue.bucket != headers.bucket:
            self._hashes[route.key] = headers.bucket
            key = f"{headers.bucket} {route.major}"
            queue.state = self._states.setdefault(key, queue.state)
            queue.bucket = headers.bucket
        queue.state.update(headers, anyio.current_time())

    def _rate_limited(
        self, queue: _Queue, route: Route, response: httpx.Response, plugin: str
    ) -> None:
        """Pause what a 429 says to pause, and count it unless its scope is shared."""
        retry = RetryAfter.parse(response.headers, _json_or_none(response))
        now = anyio.current_time()
        if retry.is_global:
            self._global.pause(retry.delay, now)
        else:
            queue.state.pause(retry.delay, now)
        level = logging.INFO if retry.scope == "shared" else logging.WARNING
        logger.log(
            level,
            "429 on %s %s (%s, scope %s): waiting %.3f s",
            response.request.method,
            route.path,
            "global" if retry.is_global else f"bucket {queue.bucket}",
            retry.scope,
            retry.delay,
        )
        if retry.scope != "shared":
            self._count_invalid(plugin)

    def _server_error_delay(self, response: httpx.Response, route: Route, attempt: int) -> float:
        """Retry-After if the answer has one (within the backoff cap), else the backoff."""
        delay = backoff_delay(attempt, *self._backoff)
        if "retry-after" in response.headers:
            delay = min(RetryAfter.parse(response.headers, None).delay, self._backoff[1])
        logger.info(
            "%d on %s %s: retrying in %.3f s",
            response.status_code,
            response.request.method,
            route.path,
            delay,
        )
        return delay

    def _result(self, response: httpx.Response, route: Route, plugin: str) -> Any:
        status = response.status_code
        if status < 400:
            if status == 204 or not response.content:
                return None
            try:
                return _loads(response.content)
            except ValueError:
                return response.text
        if status in (401, 403):
            self._count_invalid(plugin)
        method = response.request.method
        if status == 401 and not route.token_auth and self._rejected is None:
            self._rejected = f"{method} {route.path}"
            logger.error("Discord rejected the bot token (401 on %s %s)", method, route.path)
        body = _json_or_none(response)
        raise error_for_status(status, method, route.path, body, url_token=route.token_auth)

    def _count_invalid(self, plugin: str) -> None:
        reached = self._invalid.add(plugin, time.monotonic())
        if reached is not None:
            logger.warning(
                "plugin %r made %d invalid requests in 10 minutes; Discord bans the IP at 10,000",
                plugin,
                reached,
            )

    def _sweep(self, now: float) -> None:
        """Forget queues and buckets that are idle, so a bot in many channels stays small."""
        self._queues = {
            key: queue
            for key, queue in self._queues.items()
            if queue.lock.locked() or not queue.state.idle(now)
        }
        used = {id(queue.state) for queue in self._queues.values()}
        self._states = {
            key: state
            for key, state in self._states.items()
            if id(state) in used or not state.idle(now)
        }
        self._sweep_at = max(_SWEEP_MIN, 2 * len(self._queues))


def _checked_base(api_base: str, allow_insecure: bool) -> str:
    url = httpx.URL(api_base)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"api_base must be an http(s) URL, got {api_base!r}")
    if url.scheme == "http" and not allow_insecure and not _is_loopback(url.host):
        raise ValueError(
            f"refusing to send the bot token unencrypted to {url.host!r} (api_base "
            f"{api_base!r}): use https://, or allow_insecure for a trusted network"
        )
    return api_base.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _multipart(json: Any, files: Sequence[FileSpec]) -> list[tuple[str, Any]]:
    """The form Discord expects: ``payload_json`` and ``files[n]``.

    File objects are read at once, so that a retry sends the same bytes again.
    """
    parts: list[tuple[str, Any]] = []
    if json is not None:
        parts.append(("payload_json", (None, _dumps(json), "application/json")))
    for index, spec in enumerate(files):
        content = spec[1] if isinstance(spec[1], bytes) else spec[1].read()
        parts.append((f"files[{index}]", (spec[0], content, *spec[2:])))
    return parts


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return _loads(response.content) if response.content else None
    except ValueError:
        return None


def _describe(error: Exception, timeout: float) -> str:
    if isinstance(error, httpx.TimeoutException):
        return f"{type(error).__name__}: nothing for {timeout:g} s"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
