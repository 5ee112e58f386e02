"""Exceptions raised by the REST client.

::

    BotrunError
    └── RestError                 a request to Discord's HTTP API failed
        ├── HTTPError             Discord answered with an error status (4xx/5xx)
        │   ├── Unauthorized      401: the bot token was rejected
        │   ├── Forbidden         403: the bot lacks a permission or access
        │   └── NotFound          404: no such resource (or route)
        ├── TokenRejectedError    not sent: an earlier request got a 401 with this token
        └── NetworkError          no answer: the connection failed or timed out

Messages and attributes never hold the bot token, and paths show webhook and
interaction tokens as ``***``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from runtime.errors import BotrunError

__all__ = [
    "Forbidden",
    "HTTPError",
    "NetworkError",
    "NotFound",
    "RestError",
    "TokenRejectedError",
    "Unauthorized",
    "error_for_status",
]


class RestError(BotrunError):
    """Raised when a request to Discord's HTTP API fails."""


class HTTPError(RestError):
    """Raised when Discord answers with an error status.

    Attributes:
        status: the HTTP status (400, 403, 429, 500...).
        code: Discord's JSON error code (50006, 10003...), 0 if the body had none.
        message: Discord's JSON error message, or the reason phrase.
        errors: the ``errors`` tree of a form-body error (400, code 50035), else None.
        method: the request method.
        path: the request path, relative to the API base.
    """

    def __init__(
        self,
        status: int,
        method: str,
        path: str,
        *,
        code: int = 0,
        message: str = "",
        errors: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message or _phrase(status)
        self.errors = errors
        self.method = method
        self.path = path
        super().__init__(self._describe())

    def _describe(self) -> str:
        code = f" (code {self.code})" if self.code else ""
        status = f"{self.status} {_phrase(self.status)}"
        return f"{self.method} {self.path}: {status}: {self.message}{code}"


class Unauthorized(HTTPError):
    """Raised on a 401: the bot token is wrong, or was reset.

    The client sends nothing more with the token afterwards (see
    :class:`TokenRejectedError`). On webhook and interaction routes, whose URL
    carries its own token, a 401 is about that token (``bot_token`` is False).
    """

    bot_token = True

    def _describe(self) -> str:
        if not self.bot_token:
            return f"{self.method} {self.path}: 401 Unauthorized: {self.message} (the URL's token)"
        return (
            f"{self.method} {self.path}: the bot token was rejected (401 Unauthorized): "
            "check the token or reset it in the Developer Portal "
            "(https://discord.com/developers/applications, Bot page)"
        )


class Forbidden(HTTPError):
    """Raised on a 403: the bot lacks a permission, or access to that resource."""

    def _describe(self) -> str:
        return (
            f"{self.method} {self.path}: 403 Forbidden: the bot lacks a permission or access "
            f"for this resource: {self.message}" + (f" (code {self.code})" if self.code else "")
        )


class NotFound(HTTPError):
    """Raised on a 404: the resource does not exist, or the bot cannot see it."""


class TokenRejectedError(RestError):
    """Raised instead of sending once Discord has rejected the bot token (401).

    Every further request would be another 401, and invalid requests count
    toward Discord's ban of the IP; a rejected token stays rejected until the
    bot is restarted with a good one.
    """

    def __init__(self, method: str, path: str, first: str) -> None:
        self.method = method
        self.path = path
        super().__init__(
            f"{method} {path}: not sent: Discord rejected the bot token earlier "
            f"({first} answered 401 Unauthorized); restart with a valid token"
        )


class NetworkError(RestError):
    """Raised when no answer came: connection refused or dropped, or a timeout.

    The cause is chained (``__cause__``); for a POST or PATCH it may have been
    executed by Discord, so it was not retried (see :mod:`runtime.rest._retry`).
    """

    def __init__(self, method: str, path: str, reason: str) -> None:
        self.method = method
        self.path = path
        super().__init__(f"{method} {path}: no answer from Discord: {reason}")


_ERRORS: dict[int, type[HTTPError]] = {401: Unauthorized, 403: Forbidden, 404: NotFound}


class _UrlTokenUnauthorized(Unauthorized):
    bot_token = False


def error_for_status(
    status: int, method: str, path: str, body: object, *, url_token: bool = False
) -> HTTPError:
    """The exception for an error response, with Discord's code and message if any.

    ``url_token``: the route authenticates with a token in its URL (webhooks,
    interactions), so a 401 does not mean the bot token is bad.
    """
    fields = body if isinstance(body, dict) else {}
    code = fields.get("code")
    message = fields.get("message")
    errors = fields.get("errors")
    cls = _UrlTokenUnauthorized if status == 401 and url_token else _ERRORS.get(status, HTTPError)
    return cls(
        status,
        method,
        path,
        code=code if isinstance(code, int) and not isinstance(code, bool) else 0,
        message=message if isinstance(message, str) else "",
        errors=errors if isinstance(errors, dict) else None,
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
