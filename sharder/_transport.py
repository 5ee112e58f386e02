"""The sharder's only socket code: a client websocket over an anyio byte stream.

Framing lives in :mod:`sharder._websocket`; this module moves its bytes and
turns every foreign failure (``OSError``, ``ssl.SSLError``, anyio's stream
errors, timeouts) into :class:`~sharder.errors.TransportError` at the boundary,
with the ``host:port`` in the message and the original as ``__cause__``.

A shard process keeps about a thousand of these open, so a connection holds no
preallocated buffers: one shared :class:`ssl.SSLContext`, anyio's memory-BIO
TLS stream (it grows with what is in flight, unlike ``asyncio``'s SSL
transport and its fixed 256 KiB read buffer), and the parser's own buffer,
which is empty between messages. On asyncio the TCP stream under them is
:mod:`sharder._asyncio_stream`'s, which costs an idle connection less CPU.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Final
from urllib.parse import urlsplit

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.tls import TLSStream

from . import _asyncio_stream
from ._websocket import WebSocketClient
from .errors import ProtocolViolation, TransportError

__all__ = ["RECEIVE_SIZE", "WebSocketConnection", "default_ssl_context", "open_websocket"]

RECEIVE_SIZE: Final = 256 * 1024
"""Bytes asked of the stream per read.

As much as asyncio's transport hands over at once (256 KiB chunks), so that
anyio never splits a chunk (each split copies the rest of it) and a burst is
parsed in one call of the frame parser; the read allocation is transient, so
idle shards hold none of it. TLS hands out one 16 KiB record per read anyway.
The read is framed :data:`MAX_BATCH` messages at a time, so each batch's
payloads are cut out of it just before they are used.
"""

MAX_BATCH: Final = 64
"""Frames :meth:`WebSocketConnection.receive` parses per call (so at most as many
messages); the rest wait.

A 256 KiB read holds about 900 events. Handed over all at once, their payloads
would all be parsed before any plugin worker ran, and would pile up in the
workers' queues: the garbage collector then runs over thousands of young
objects per read and promotes them to older generations (whose collections
cost milliseconds), and the payloads have left the CPU cache by the time a
worker touches them. In slices of 64, with a checkpoint between them, workers,
heartbeats and other shards run in between and each slice's garbage dies young.
Framing a slice only when it is due (rather than the whole read at once, which
held a copy of every payload of the read meanwhile) gained 1.7 to 6 points of
the decode floor on the listener paths end to end, where the replay server's
copying on the other CPU competes for the cache (``python -m benchmarks.compare``;
no difference in process).
"""

_STREAM_ERRORS: Final = (
    OSError,  # includes ssl.SSLError, ConnectionFailed and socket.gaierror
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """Return the process-wide client context (certificate checks on).

    Built once: each context parses the system CA store (0.4-0.8 MB of RSS
    depending on the store), which at a thousand shards would be most of a
    gigabyte of identical copies.
    """
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH)


@contextmanager
def _mapped_errors(where: str, action: str) -> Iterator[None]:
    """Re-raise stream failures as TransportError naming ``where``."""
    try:
        yield
    except _STREAM_ERRORS as exc:
        raise _transport_error(where, action, exc) from exc


def _transport_error(where: str, action: str, exc: BaseException) -> TransportError:
    if isinstance(exc, anyio.EndOfStream):
        return TransportError(f"{where}: connection closed by the server while {action}")
    text = str(exc)
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return TransportError(f"{where}: {action} failed: {detail}")


class WebSocketConnection:
    """An open client websocket over an anyio ByteStream.

    One task reads (:meth:`receive`); any number of tasks may send, because
    writes are serialized by a lock so frames never interleave. Either side
    ending the connection surfaces as :class:`TransportError` on the next call.
    """

    __slots__ = (
        "_close_wait",
        "_closing",
        "_leftover",
        "_reading",
        "_send_broken",
        "_send_lock",
        "_stream",
        "_where",
        "_ws",
        "url",
    )

    def __init__(
        self,
        url: str,
        where: str,
        stream: anyio.abc.ByteStream,
        ws: WebSocketClient,
        leftover: bytes = b"",
    ) -> None:
        self.url = url
        self._where = where
        self._stream = stream
        self._ws = ws
        self._leftover = leftover  # frame bytes that came with the handshake response
        # Uncontended (the common case: one heartbeat or command at a time), taking it
        # need not yield to the loop: the send right after is a checkpoint anyway.
        self._send_lock = anyio.Lock(fast_acquire=True)
        self._closing = False
        self._reading = False
        self._send_broken = False  # a send was interrupted mid-frame: stream unusable
        self._close_wait: anyio.Event | None = None

    async def receive(self, *, pause: bool = True) -> list[tuple[int, bytes]]:
        """Return the next complete messages (at most :data:`MAX_BATCH`; possibly none).

        Reads only when the messages of the previous read are all returned;
        until then each call is a checkpoint, so that other tasks run between
        slices, unless ``pause`` is false (the caller's previous slice made no
        work for them: its messages were all dropped unparsed). Each read is a
        checkpoint either way, so no task goes on for more than a read's worth
        of messages without one. Queued pongs and the close reply are sent
        before returning; if that fails, the next call reports the broken stream.

        Raises:
            TransportError: EOF, a broken stream, or :meth:`close` was called.
            ProtocolViolation: the server broke RFC 6455; the caller picks the
                close code (``close_code``) and closes.
        """
        if self._closing:
            raise TransportError(f"{self._where}: connection is closed")
        ws = self._ws
        if ws.has_unparsed:
            if pause:
                await anyio.lowlevel.checkpoint()
            messages = ws.next_messages(MAX_BATCH)
            await self._flush()
            return messages
        if self._leftover:
            data, self._leftover = self._leftover, b""
            messages = ws.receive_data(data, MAX_BATCH)
            await self._flush()  # a ping may have come with the upgrade response
            if messages:
                return messages
        self._reading = True
        try:  # inline rather than _mapped_errors: this runs once per read on the hot path
            data = await self._stream.receive(RECEIVE_SIZE)
        except _STREAM_ERRORS as exc:
            raise _transport_error(self._where, "receiving", exc) from exc
        finally:
            self._reading = False
            if self._close_wait is not None:
                self._close_wait.set()
        messages = ws.receive_data(data, MAX_BATCH)
        await self._flush()
        return messages

    async def _flush(self) -> None:
        out = self._ws.data_to_send()
        if out and not self._send_broken:
            # A failure here is reported by the next receive(), on the same broken stream.
            with suppress(TransportError):
                await self._send(out)

    async def _send(self, frame: bytes) -> None:
        async with self._send_lock:
            if self._send_broken:
                raise TransportError(f"{self._where}: connection is broken")
            completed = False
            try:
                with _mapped_errors(self._where, "sending"):
                    await self._stream.send(frame)
                completed = True
            finally:
                if not completed:  # a partial frame may be on the wire
                    self._send_broken = True

    async def send_text(self, payload: bytes) -> None:
        """Send one text message (``payload`` is UTF-8, not checked).

        Raises:
            TransportError: the stream failed, or the connection is closing.
        """
        if self._closing or self._ws.close_sent:
            raise TransportError(f"{self._where}: connection is closing")
        frame = self._ws.send_text(payload)
        del payload  # framed: the caller's buffer need not live while the frame is sent
        await self._send(frame)

    async def close(self, code: int | None, reason: str = "", *, timeout: float = 2.0) -> None:
        """Close politely: send a close frame, await the server's, drop the stream.

        Bounded by ``timeout``; never raises for a connection that is already
        broken, and later calls return at once. If another task is inside
        :meth:`receive`, its read finishes first (its messages still reach it),
        then this method reads and discards until the server's close or EOF;
        from then on :meth:`receive` raises :class:`TransportError`.

        Raises:
            ValueError: ``code`` may not be sent (1005, 1006, 1015, ...).
        """
        if self._closing:
            return
        frame = self._ws.send_close(code, reason)  # a bad code raises before anything changes
        self._closing = True
        try:
            with anyio.move_on_after(timeout):
                await self._close_handshake(frame)
        except (TransportError, ProtocolViolation):
            pass  # the stream is going away anyway; nothing left to report
        finally:
            await anyio.aclose_forcefully(self._stream)

    async def _close_handshake(self, frame: bytes) -> None:
        ws = self._ws
        if frame and not self._send_broken:
            await self._send(frame)
        if self._reading:  # let the reader's in-flight read land before taking over
            self._close_wait = anyio.Event()
            await self._close_wait.wait()
        if self._leftover:
            ws.receive_data(self._leftover)
            self._leftover = b""
        while not ws.closed_by_peer:
            with _mapped_errors(self._where, "closing"):
                data = await self._stream.receive(RECEIVE_SIZE)
            ws.receive_data(data)

    async def abort(self) -> None:
        """Drop the TCP connection now, without a close frame. Idempotent."""
        self._closing = True
        await anyio.aclose_forcefully(self._stream)


async def _connect_tcp(host: str, port: int) -> anyio.abc.ByteStream:
    """TCP, through :mod:`sharder._asyncio_stream` on asyncio, anyio's stream on trio."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # not asyncio
        return await anyio.connect_tcp(host, port)
    return await _asyncio_stream.connect_tcp(host, port)


def _split_url(url: str) -> tuple[bool, str, int, str, str]:
    """Return ``(secure, host, port, Host header, request path)`` for a ws(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"websocket URL must start with ws:// or wss://: {url!r}")
    host = parts.hostname
    if not host:
        raise ValueError(f"websocket URL has no host: {url!r}")
    secure = parts.scheme == "wss"
    default_port = 443 if secure else 80
    port = parts.port or default_port
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default_port else f"{shown}:{port}"
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return secure, host, port, host_header, path


async def open_websocket(
    url: str,
    *,
    connect_timeout: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
    max_message_size: int = 64 * 1024 * 1024,
    extra_headers: Sequence[tuple[str, str]] = (),
) -> WebSocketConnection:
    """Connect, do TLS for ``wss://``, and upgrade; all within ``connect_timeout``.

    ``TCP_NODELAY`` is set on both backends (asyncio's transport sets it on every
    TCP socket, anyio's ``connect_tcp`` on trio), which matters because
    heartbeats are small writes that must not wait for an ACK.

    Raises:
        ValueError: ``url`` is not a ws:// or wss:// URL.
        HandshakeError: the server answered the upgrade with another status.
        ProtocolViolation: the upgrade response is malformed.
        TransportError: connecting, TLS or the upgrade failed or timed out.
    """
    secure, host, port, host_header, path = _split_url(url)
    where = f"{host}:{port}"
    ws = WebSocketClient(
        host_header, path, max_message_size=max_message_size, extra_headers=extra_headers
    )
    stream: anyio.abc.ByteStream | None = None
    try:
        with anyio.fail_after(connect_timeout), _mapped_errors(where, "opening the websocket"):
            stream = await _connect_tcp(host, port)
            if secure:
                stream = await TLSStream.wrap(
                    stream,
                    server_side=False,
                    hostname=host,
                    ssl_context=ssl_context or default_ssl_context(),
                    standard_compatible=False,
                )
            await stream.send(ws.handshake_request())
            leftover = None
            while leftover is None:
                leftover = ws.receive_handshake(await stream.receive(RECEIVE_SIZE))
    except TimeoutError:
        if stream is not None:
            await anyio.aclose_forcefully(stream)
        raise TransportError(
            f"{where}: timed out after {connect_timeout} s opening the websocket"
        ) from None
    except BaseException:
        if stream is not None:
            await anyio.aclose_forcefully(stream)
        raise
    return WebSocketConnection(url, where, stream, ws, leftover)
