"""A server websocket: wsproto over an anyio byte stream.

The client side of the project has its own websocket code; this one is built
independently on wsproto's server role so the two cannot share a bug. It
reassembles fragmented messages, answers pings, completes the close handshake
and can cut each write (one frame or several) into small pieces to exercise the
client's reassembly.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from dataclasses import dataclass
from typing import Final, Literal

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream, SocketAttribute
from wsproto import WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Event, Message, Ping, TextMessage

__all__ = ["MAX_CLOSE_REASON", "Closed", "Incoming", "WebSocket"]

_RECEIVE_SIZE: Final = 65536
MAX_CLOSE_REASON: Final = 123
"""Bytes of reason a close frame can carry (125 minus the 2-byte code)."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """A complete message from the client (text is kept as UTF-8 bytes)."""

    data: bytes
    binary: bool


@dataclass(frozen=True, slots=True)
class Closed:
    """The websocket closed. ``origin`` says how.

    ``"client"``: the client started the close handshake (already answered);
    ``"reply"``: the client answered our close frame;
    ``"invalid"``: the client broke the framing, and we sent ``code`` ourselves.
    """

    code: int
    reason: str
    origin: Literal["client", "reply", "invalid"]


class WebSocket:
    """One accepted websocket connection; sends are serialized by a lock."""

    def __init__(self, stream: ByteStream, ws: WSConnection, chunk_size: int | None) -> None:
        self._stream = stream
        self._ws = ws
        self._chunk_size = chunk_size
        self._send_lock = anyio.Lock()

    @property
    def open(self) -> bool:
        """Whether messages can still be sent (no close frame sent or received)."""
        return self._ws.state is ConnectionState.OPEN

    async def send_messages(self, messages: list[tuple[bytes, bool]]) -> None:
        """Send ``(data, binary)`` messages in one write; dropped silently once the
        close handshake started."""
        if self.open:
            events: list[Event] = [
                BytesMessage(data=data) if binary else TextMessage(data=data.decode())
                for data, binary in messages
            ]
            await self._send(*events)

    async def send_close(self, code: int, reason: str = "") -> bool:
        """Start the close handshake; ``False`` if it had already started.

        The reason is cut to the 123 bytes a close frame can carry.
        """
        reason = reason.encode()[:MAX_CLOSE_REASON].decode(errors="ignore")
        return await self._send(CloseConnection(code, reason))

    async def receive(self) -> Incoming | Closed:
        """The next complete message, or how the websocket closed.

        Raises:
            anyio.EndOfStream, anyio.BrokenResourceError: the TCP connection ended
                without a close frame.
        """
        parts: list[bytes] = []
        while True:
            for event in self._ws.events():
                if isinstance(event, Message):
                    parts.append(event.data.encode() if isinstance(event.data, str) else event.data)
                    if event.message_finished:
                        return Incoming(b"".join(parts), isinstance(event, BytesMessage))
                elif isinstance(event, Ping):
                    await self._send(event.response())
                elif isinstance(event, CloseConnection):
                    return await self._closed(event)
            self._ws.receive_data(await self._stream.receive(_RECEIVE_SIZE))

    async def aclose(self) -> None:
        """Close the TCP connection (after the close handshake, or to give up on it)."""
        await anyio.aclose_forcefully(self._stream)

    async def abort(self) -> None:
        """Reset the TCP connection: no close frame, no FIN, like a dying network."""
        raw = self._stream.extra(SocketAttribute.raw_socket, None)
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await anyio.aclose_forcefully(self._stream)

    async def _closed(self, event: CloseConnection) -> Closed:
        state = self._ws.state
        if state is ConnectionState.REMOTE_CLOSING:
            await self._send(event.response(), required=ConnectionState.REMOTE_CLOSING)
            return Closed(event.code, event.reason or "", "client")
        if state is ConnectionState.CLOSED:
            return Closed(event.code, event.reason or "", "reply")
        # wsproto reports a framing error as a CloseConnection it wants us to send.
        await self._send(CloseConnection(event.code, event.reason))
        return Closed(event.code, event.reason or "", "invalid")

    async def _send(self, *events: Event, required: ConnectionState = ConnectionState.OPEN) -> bool:
        """Send events, in one write, if the connection is still in ``required`` state.

        The state is checked under the lock: the reader and the writer both
        send, and either may have moved the close handshake on meanwhile.
        """
        async with self._send_lock:
            if self._ws.state is not required:
                return False
            data = b"".join(map(self._ws.send, events))
            size = self._chunk_size
            if size is None or len(data) <= size:
                await self._stream.send(data)
                return True
            for start in range(0, len(data), size):
                if start:
                    await anyio.lowlevel.checkpoint()
                await self._stream.send(data[start : start + size])
        return True
