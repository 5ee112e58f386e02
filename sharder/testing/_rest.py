"""The REST side of the emulator: a tiny router and the routes a bot needs to start.

Routes are ``(method, pattern)`` pairs with ``{name}`` placeholders for
snowflakes. Every request that reaches a route (and passes its token check)
goes through :class:`RestLimits` (``_rest_limits``) first: it answers 429 when
a rate limit is exceeded, plays injected faults, and adds the ``X-RateLimit-*``
headers to the response.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from typing import Any, Final

from ._data import application, bot_user, iso_timestamp, new_snowflake
from ._encoding import dumps, loads
from ._hub import Hub
from ._rest_limits import RestLimits

__all__ = [
    "API_PREFIXES",
    "MAJOR_PARAMETERS",
    "ConnectionDropped",
    "HttpRequest",
    "HttpResponse",
    "RecordedMessage",
    "RestApi",
    "Router",
    "json_response",
]

logger = logging.getLogger("sharder.testing")

API_PREFIXES: Final = ("/api/v10", "/api/v9")
MAJOR_PARAMETERS: Final = ("channel_id", "guild_id", "webhook_id")
"""Path parameters that split a rate limit, as on Discord (top-level resources)."""
MAX_CONTENT_LENGTH: Final = 2000
_MESSAGE_PARTS: Final = ("content", "embeds", "sticker_ids", "components", "poll", "attachments")


class ConnectionDropped(ConnectionResetError):
    """Raised by a handler to reset the connection without answering (an injected drop).

    The server treats it like any connection error: it closes the stream.
    """


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A parsed request; header names are lower-case."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RecordedMessage:
    """A message a bot created through ``POST /channels/{id}/messages``."""

    channel_id: int
    body: Any
    headers: dict[str, str]
    """The request headers, minus ``authorization``."""
    time: float
    files: tuple[tuple[str, bytes], ...] = ()
    """``(filename, content)`` of each ``files[n]`` part of a multipart request."""


Handler = Callable[[HttpRequest, dict[str, int]], Awaitable[HttpResponse]]


def json_response(status: int, body: Any) -> HttpResponse:
    return HttpResponse(status, dumps(body), [("content-type", "application/json")])


def _error(status: int, message: str, code: int = 0) -> HttpResponse:
    return json_response(status, {"message": message, "code": code})


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: bool
    key: str
    """``"METHOD /template"``, the name rate limits and faults use."""


class Router:
    """Maps ``(method, path)`` under an API prefix to a handler, within rate limits."""

    def __init__(
        self, token: Callable[[], str], limits: RestLimits, now: Callable[[], float]
    ) -> None:
        self._token = token
        self._routes: list[_Route] = []
        self.limits = limits
        self._now = now

    def add(self, method: str, template: str, handler: Handler, *, auth: bool = False) -> None:
        """Register a handler; ``{name}`` in ``template`` matches a snowflake."""
        key = f"{method} {template}"
        self._routes.append(_Route(method, _compile(template), handler, auth, key))

    @property
    def keys(self) -> list[str]:
        """Every route key, as :meth:`RestLimits.set_route_limit` and faults take them."""
        return [route.key for route in self._routes]

    async def handle(self, request: HttpRequest) -> HttpResponse:
        path = _strip_prefix(request.path)
        if path is None:
            return _error(404, "404: Not Found")
        allowed = False
        for route in self._routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            if route.method != request.method:
                allowed = True
                continue
            if route.auth and request.headers.get("authorization") != f"Bot {self._token()}":
                return _error(401, "401: Unauthorized")
            params = {name: int(value) for name, value in match.groupdict().items()}
            return await self._limited(route, request, params)
        return _error(405, "405: Method Not Allowed") if allowed else _error(404, "404: Not Found")

    async def _limited(
        self, route: _Route, request: HttpRequest, params: dict[str, int]
    ) -> HttpResponse:
        """Run the handler if the limits (and faults) allow, with rate-limit headers."""
        major = next((str(params[name]) for name in MAJOR_PARAMETERS if name in params), "")
        verdict = self.limits.admit(route.key, major, self._now())
        if verdict.status is not None:
            response = json_response(verdict.status, verdict.body)
        else:
            response = await route.handler(request, params)
            if verdict.drop:
                raise ConnectionDropped(f"injected drop on {route.key}")
        return HttpResponse(response.status, response.body, [*response.headers, *verdict.headers])


def _compile(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)  # literal, name, literal, name, ...
    regex = "".join(
        f"(?P<{part}>[0-9]+)" if index % 2 else re.escape(part) for index, part in enumerate(parts)
    )
    return re.compile(regex + r"\Z")


def _strip_prefix(path: str) -> str | None:
    for prefix in API_PREFIXES:
        if path.startswith(prefix + "/"):
            return path[len(prefix) :]
    return None


class RestApi:
    """The emulator's REST routes, over the shared hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.messages: list[RecordedMessage] = []
        self.limits = RestLimits()
        self.router = Router(lambda: hub.token, self.limits, hub.now)
        self.router.add("GET", "/gateway", self._gateway)
        self.router.add("GET", "/gateway/bot", self._gateway_bot, auth=True)
        self.router.add("GET", "/users/@me", self._current_user, auth=True)
        self.router.add("GET", "/oauth2/applications/@me", self._application, auth=True)
        self.router.add("POST", "/channels/{channel_id}/messages", self._create_message, auth=True)

    async def handle(self, request: HttpRequest) -> HttpResponse:
        return await self.router.handle(request)

    async def _gateway(self, request: HttpRequest, params: dict[str, int]) -> HttpResponse:
        return json_response(200, {"url": self.hub.gateway_url})

    async def _gateway_bot(self, request: HttpRequest, params: dict[str, int]) -> HttpResponse:
        hub, now = self.hub, self.hub.now()
        gate = hub.identify_gate
        limit = {
            "total": gate.total,
            "remaining": gate.remaining(now),
            "reset_after": int(gate.reset_after(now) * 1000),
            "max_concurrency": gate.max_concurrency,
        }
        body = {"url": hub.gateway_url, "shards": hub.config.shards, "session_start_limit": limit}
        return json_response(200, body)

    async def _current_user(self, request: HttpRequest, params: dict[str, int]) -> HttpResponse:
        return json_response(200, bot_user())

    async def _application(self, request: HttpRequest, params: dict[str, int]) -> HttpResponse:
        return json_response(200, application())

    async def _create_message(self, request: HttpRequest, params: dict[str, int]) -> HttpResponse:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            body, files = _form(content_type, request.body)
        else:
            body, files = _json_body(request.body), ()
        problem = _message_problem(body, files)
        if problem is not None:
            return problem
        assert isinstance(body, dict)  # _message_problem refused anything else
        channel_id = params["channel_id"]
        headers = {k: v for k, v in request.headers.items() if k != "authorization"}
        record = RecordedMessage(channel_id, body, headers, self.hub.now(), files)
        self.messages.append(record)
        logger.info("emulator: the bot posted %r in channel %s", body.get("content"), channel_id)
        return json_response(200, _message(channel_id, body, files))


_INVALID_JSON: Final = object()


def _json_body(data: bytes) -> Any:
    try:
        return loads(data)
    except ValueError:
        return _INVALID_JSON


def _form(content_type: str, data: bytes) -> tuple[Any, tuple[tuple[str, bytes], ...]]:
    """``payload_json`` and the ``files[n]`` parts of a multipart/form-data body."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1")
    form = BytesParser().parsebytes(head + data)
    body: Any = {}
    files: list[tuple[str, bytes]] = []
    for part in form.get_payload() if form.is_multipart() else []:
        assert isinstance(part, Message)
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        content = payload if isinstance(payload, bytes) else b""
        if name == "payload_json":
            body = _json_body(content)
        elif isinstance(name, str) and name.startswith("files["):
            files.append((str(part.get_filename() or name), content))
    return body, tuple(files)


def _message_problem(body: Any, files: tuple[tuple[str, bytes], ...]) -> HttpResponse | None:
    """Discord's 400 for a message it would refuse, or None."""
    if body is _INVALID_JSON:
        return _error(400, "The request body contains invalid JSON.", 50109)
    if not isinstance(body, dict):
        return _error(400, "Invalid Form Body", 50035)
    content = body.get("content")
    if isinstance(content, str) and len(content) > MAX_CONTENT_LENGTH:
        detail = f"Must be {MAX_CONTENT_LENGTH} or fewer in length."
        errors = {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": detail}]}}
        return json_response(400, {"message": "Invalid Form Body", "code": 50035, "errors": errors})
    if not files and not any(body.get(part) for part in _MESSAGE_PARTS):
        return _error(400, "Cannot send an empty message", 50006)
    return None


def _message(
    channel_id: int, body: dict[str, Any], files: tuple[tuple[str, bytes], ...] = ()
) -> dict[str, Any]:
    """The message object Discord returns for a created message."""
    attachments = [
        {"id": str(new_snowflake()), "filename": name, "size": len(content)}
        for name, content in files
    ]
    return {
        "id": str(new_snowflake()),
        "channel_id": str(channel_id),
        "author": bot_user(),
        "content": body.get("content", ""),
        "timestamp": iso_timestamp(),
        "edited_timestamp": None,
        "tts": bool(body.get("tts", False)),
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": attachments,
        "embeds": body.get("embeds", []),
        "components": body.get("components", []),
        "pinned": False,
        "type": 0,
        "flags": body.get("flags", 0),
        "nonce": body.get("nonce"),
    }
