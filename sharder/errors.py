"""Exceptions raised by the sharder.

::

    SharderError
    ├── TransportError            the TCP/TLS/websocket connection failed or broke
    │   └── HandshakeError        the HTTP upgrade was refused (carries the status)
    ├── ProtocolViolation         the server sent something we cannot accept
    ├── GatewayClosedError        the gateway closed with a code that ends this shard
    ├── RateLimitedError          a command would exceed the gateway send limit
    └── RequestTimeoutError       a member or voice request got no answer in time

None of them ever carries the token: messages are built from codes and URLs only.
"""

from __future__ import annotations

__all__ = [
    "GatewayClosedError",
    "HandshakeError",
    "ProtocolViolation",
    "RateLimitedError",
    "RequestTimeoutError",
    "SharderError",
    "TransportError",
]


class SharderError(Exception):
    """Base class of every error the sharder raises."""


class TransportError(SharderError):
    """Raised when the connection cannot be opened or breaks while in use."""


class HandshakeError(TransportError):
    """Raised when the server answers the websocket upgrade with another status."""

    def __init__(self, status: int, message: str = "") -> None:
        self.status = status
        super().__init__(message or f"websocket upgrade refused with HTTP {status}")


class ProtocolViolation(SharderError):
    """Raised when a frame or payload from the server breaks the protocol.

    ``close_code`` is the websocket close code to answer with.
    """

    def __init__(self, message: str, close_code: int = 1002) -> None:
        self.close_code = close_code
        super().__init__(message)


class GatewayClosedError(SharderError):
    """The gateway closed the connection with a code after which the shard stops.

    Emitted through the ``close`` and ``error`` events; ``code`` and ``reason``
    are what the server sent.
    """

    def __init__(self, code: int | None, reason: str = "", description: str = "") -> None:
        self.code = code
        self.reason = reason
        detail = description or reason or "no reason given"
        super().__init__(f"gateway closed the connection with code {code}: {detail}")


class RateLimitedError(SharderError):
    """A command was refused because the gateway send limit would be exceeded."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"gateway send limit reached; retry in {retry_after:.2f} s")


class RequestTimeoutError(SharderError, TimeoutError):
    """A request that waits for gateway events got none in time."""
