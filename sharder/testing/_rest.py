"""The REST side of the emulator: a tiny router and the routes a bot needs to start.

Routes are ``(method, pattern)`` pairs with ``{name}`` placeholders for
snowflakes, so later routes (rate-limit headers, 429s, injected 5xx) are one
``add`` call, or a wrapper around :meth:`Router.handle`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from ._data import application, bot_user, iso_timestamp, new_snowflake
from ._encoding import dumps, loads
from ._hub import Hub

__all__ = [
    "API_PREFIXES",
    "HttpRequest",
    "HttpResponse",
    "RecordedMessage",
    "RestApi",
    "Router",
    "json_response",
]

API_PREFIXES: Final = ("/api/v10", "/api/v9")


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


class Router:
    """Maps ``(method, path)`` under an API prefix to a handler."""

    def __init__(self, token: Callable[[], str]) -> None:
        self._token = token
        self._routes: list[_Route] = []

    def add(self, method: str, template: str, handler: Handler, *, auth: bool = False) -> None:
        """Register a handler; ``{name}`` in ``template`` matches a snowflake."""
        self._routes.append(_Route(method, _compile(template), handler, auth))

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
            return await route.handler(request, params)
        return _error(405, "405: Method Not Allowed") if allowed else _error(404, "404: Not Found")


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
        self.router = Router(lambda: hub.token)
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
        try:
            body = loads(request.body)
        except ValueError:
            return _error(400, "The request body contains invalid JSON.", 50109)
        if not isinstance(body, dict):
            return _error(400, "Invalid Form Body", 50035)
        channel_id = params["channel_id"]
        headers = {k: v for k, v in request.headers.items() if k != "authorization"}
        self.messages.append(RecordedMessage(channel_id, body, headers, self.hub.now()))
        return json_response(200, _message(channel_id, body))


def _message(channel_id: int, body: dict[str, Any]) -> dict[str, Any]:
    """The message object Discord returns for a created message."""
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
        "attachments": [],
        "embeds": body.get("embeds", []),
        "components": body.get("components", []),
        "pinned": False,
        "type": 0,
        "flags": body.get("flags", 0),
        "nonce": body.get("nonce"),
    }
