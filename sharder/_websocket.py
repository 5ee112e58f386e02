"""Sans-I/O RFC 6455 client: the HTTP upgrade and the frame codec, no sockets.

This is the hot receive path of the gateway (every event of every shard passes
through :meth:`WebSocketClient.receive_data`), so the parser is written for one
case above all others: a run of complete, unfragmented, unmasked text or binary
frames. That run is taken by :func:`scan_frames`, in C when the optional
``sharder._framing`` extension is built (a Python loop with the same contract
otherwise): per frame a few byte reads, one payload copy and one tuple. Per
``receive_data`` call the buffer is copied once into an immutable snapshot
(slicing ``bytes`` is one copy, slicing ``bytearray`` then converting is two)
and trimmed once at the end. Everything else (control frames, fragments,
errors) is parsed and validated here, one frame at a time.

Deliberate omissions: no extensions are offered (so RSV bits are always an
error) and text payloads are not UTF-8 validated (the caller decodes JSON
from bytes and fails on bad text anyway).
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Final

from .errors import HandshakeError, ProtocolViolation

__all__ = ["BINARY", "CLOSE", "TEXT", "WebSocketClient", "parse_close"]

CONTINUATION: Final = 0
TEXT: Final = 1
BINARY: Final = 2
CLOSE: Final = 8
PING: Final = 9
PONG: Final = 10

MAX_HANDSHAKE_HEAD: Final = 64 * 1024
"""Largest HTTP response head accepted before the upgrade is declared broken."""

_ACCEPT_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_unpack_u64 = struct.Struct(">Q").unpack_from
_pack_16 = struct.Struct(">BBH").pack
_pack_64 = struct.Struct(">BBQ").pack
_urandom = os.urandom


def _frame_header(data: bytes, pos: int) -> tuple[int, int, int]:
    """The frame at ``pos``: its first byte, its payload's length and where that starts.

    Raises ``IndexError`` or ``struct.error`` while the header is cut short (see
    :func:`_header_size`), and :class:`ProtocolViolation` for a masked frame, known
    from its second byte alone: a server must not mask.
    """
    b0 = data[pos]
    length = data[pos + 1]
    if length < 126:
        return b0, length, pos + 2
    if length == 126:
        return b0, (data[pos + 2] << 8) | data[pos + 3], pos + 4
    if length == 127:
        return b0, _unpack_u64(data, pos + 2)[0], pos + 10
    raise ProtocolViolation("server frames must not be masked")


def _header_size(data: bytes, pos: int) -> int:
    """Bytes the header at ``pos`` takes: what a header cut short needs to be whole."""
    if len(data) - pos < 2:
        return 2
    return {126: 4, 127: 10}.get(data[pos + 1], 2)


def _scan_frames_in_python(
    data: bytes, pos: int, frames: int, max_size: int, out: list[tuple[int, bytes]]
) -> tuple[int, int, int]:
    """Append ``(opcode, payload)`` of up to ``frames`` whole data frames from ``pos``.

    Takes consecutive whole, unmasked, unfragmented text or binary frames of at
    most ``max_size`` bytes; stops at any other frame (left to the caller) and
    returns ``(pos, need, parsed)``: where it stopped, the bytes from there that a
    frame cut short needs (0 if none) and how many frames it took. The C
    extension's ``scan_frames`` does exactly this.
    """
    if pos < 0 or frames < 0 or max_size < 0:
        raise ValueError("scan_frames: a negative argument")
    n = len(data)
    append = out.append
    need = parsed = 0
    for parsed in range(frames):  # noqa: B007 - read after a break: the frames taken
        try:  # a header cut short raises, once per read, instead of a check per frame
            b0, length, start = _frame_header(data, pos)
        except (IndexError, struct.error):
            need = _header_size(data, pos)
            break
        except ProtocolViolation:  # masked: the caller's validation says so
            break
        if (b0 != 0x81 and b0 != 0x82) or length > max_size:
            break
        end = start + length
        if end > n:
            need = end - pos
            break
        append((b0 & 0x0F, data[start:end]))
        pos = end
    else:
        parsed = frames
    return pos, need, parsed


scan_frames: Callable[[bytes, int, int, int, list[tuple[int, bytes]]], tuple[int, int, int]]
if os.environ.get("BOTRUN_NO_EXTENSIONS"):  # as aiohttp's AIOHTTP_NO_EXTENSIONS: to compare, or
    scan_frames = _scan_frames_in_python  # to rule the C part out when chasing a bug
else:
    try:
        from ._framing import scan_frames
    except ImportError:  # pragma: no cover - the extension is optional (no compiler at install)
        scan_frames = _scan_frames_in_python


def parse_close(body: bytes) -> tuple[int | None, str]:
    """Split a close frame body into ``(code, reason)``.

    An empty body means "no status received" (RFC 6455's 1005), returned as
    ``None`` so that nobody mistakes it for a code that could be sent. The
    reason is decoded leniently: it is only ever logged.
    """
    if len(body) < 2:
        return None, ""
    return int.from_bytes(body[:2], "big"), body[2:].decode("utf-8", errors="replace")


def _close_code_allowed(code: int) -> bool:
    """Whether ``code`` may appear in a close frame on the wire (RFC 6455 §7.4)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _accept_token(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _ACCEPT_GUID).digest()).decode()


def _encode_frame(opcode: int, payload: bytes) -> bytes:
    """Build one final client frame, masked with a fresh key as RFC 6455 requires."""
    length = len(payload)
    first = 0x80 | opcode
    if length < 126:
        header = bytes((first, 0x80 | length))
    elif length < 0x10000:
        header = _pack_16(first, 0xFE, length)
    else:
        header = _pack_64(first, 0xFF, length)
    key = _urandom(4)
    if not length:
        return header + key
    # XOR as two big integers: one C-level pass instead of a Python byte loop.
    mask = (key * ((length + 3) >> 2))[:length]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")
    return header + key + masked.to_bytes(length, "big")


def _check_header_value(text: str) -> None:
    if "\r" in text or "\n" in text or "\0" in text:
        raise ValueError(f"header name or value contains a line break or NUL: {text!r}")
    text.encode("latin-1")  # HTTP/1.1 header bytes; raises UnicodeEncodeError (a ValueError)


class WebSocketClient:
    """One client side of a websocket connection, as a pure state machine.

    Feed it what the socket read and write what it returns; it never performs
    I/O. The handshake comes first (:meth:`handshake_request`,
    :meth:`receive_handshake`), then :meth:`receive_data` for every read and
    the ``send_*`` methods for every frame to write.
    """

    __slots__ = (
        "_buffer",
        "_close_sent",
        "_closed_by_peer",
        "_extra_headers",
        "_failure",
        "_fragment_opcode",
        "_fragment_size",
        "_fragments",
        "_head",
        "_host",
        "_key",
        "_max_message_size",
        "_need",
        "_outgoing",
        "_path",
        "_stopped",
        "_unparsed",
        "_unparsed_at",
    )

    def __init__(
        self,
        host: str,
        path: str,
        *,
        max_message_size: int = 64 * 1024 * 1024,
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Prepare a client for ``host`` (the ``Host`` header) and ``path`` (with query).

        Raises:
            ValueError: a header or the path would break the request framing.
        """
        for text in (host, path, *(part for pair in extra_headers for part in pair)):
            _check_header_value(text)
        if " " in path:
            raise ValueError(f"request path contains a space: {path!r}")
        if not 1 <= max_message_size <= sys.maxsize:  # sizes are C integers (zlib, the scan)
            raise ValueError(f"max_message_size must be from 1 to {sys.maxsize}")
        self._host = host
        self._path = path or "/"
        self._extra_headers = tuple(extra_headers)
        self._max_message_size = max_message_size
        self._key: str | None = None
        self._head = bytearray()
        self._buffer = bytearray()
        self._need = 0  # bytes the buffer must hold before parsing is worth trying
        self._fragment_opcode = 0  # opcode of the open fragmented message, 0 if none
        self._fragments: list[bytes] = []
        self._fragment_size = 0
        self._outgoing = bytearray()
        self._closed_by_peer = False
        self._close_sent = False
        self._unparsed: bytes | None = None  # input a limit left for next_messages
        self._unparsed_at = 0
        self._stopped = False  # closed by peer or failed: parse nothing more
        # (message, close code), not the exception, whose traceback would pin the buffers
        self._failure: tuple[str, int] | None = None

    # -- handshake ---------------------------------------------------------------

    def handshake_request(self) -> bytes:
        """Return the HTTP upgrade request, with a new random ``Sec-WebSocket-Key``."""
        self._key = key = base64.b64encode(_urandom(16)).decode("ascii")
        lines = [
            f"GET {self._path} HTTP/1.1",
            f"Host: {self._host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        lines.extend(f"{name}: {value}" for name, value in self._extra_headers)
        lines.append("\r\n")
        return "\r\n".join(lines).encode("latin-1")

    def receive_handshake(self, data: bytes) -> bytes | None:
        """Buffer the upgrade response; check it once the whole head has arrived.

        Returns:
            ``None`` while the head is incomplete, then the bytes that followed
            it (possibly ``b""``): the start of the first frame.

        Raises:
            HandshakeError: the status is not 101 (``status`` says which).
            ProtocolViolation: the head is malformed, over 64 KiB, or does not
                confirm the upgrade with the right ``Sec-WebSocket-Accept``.
        """
        if self._key is None:
            raise RuntimeError("receive_handshake() called before handshake_request()")
        head = self._head
        search_from = max(len(head) - 3, 0)
        head += data
        end = head.find(b"\r\n\r\n", search_from)
        if end < 0 and len(head) <= MAX_HANDSHAKE_HEAD:
            return None
        if end < 0 or end + 4 > MAX_HANDSHAKE_HEAD:
            raise ProtocolViolation("websocket upgrade response head exceeds 64 KiB")
        rest = bytes(head[end + 4 :])
        self._head = bytearray()
        self._check_response(head[:end].decode("latin-1"), self._key)
        return rest

    @staticmethod
    def _check_response(head: str, key: str) -> None:
        status_line, *header_lines = head.split("\r\n")
        version, _, rest = status_line.partition(" ")
        code = rest.partition(" ")[0]
        if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise ProtocolViolation(f"malformed HTTP status line: {status_line[:100]!r}")
        headers: dict[str, str] = {}
        for line in header_lines:
            name, colon, value = line.partition(":")
            if not colon:
                raise ProtocolViolation(f"malformed HTTP header line: {line[:100]!r}")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        status = int(code)
        if status != 101:
            raise HandshakeError(status, f"websocket upgrade refused with HTTP {rest}".strip())
        if headers.get("upgrade", "").lower() != "websocket":
            raise ProtocolViolation("upgrade response lacks 'Upgrade: websocket'")
        tokens = {token.strip() for token in headers.get("connection", "").lower().split(",")}
        if "upgrade" not in tokens:
            raise ProtocolViolation("upgrade response lacks 'Connection: Upgrade'")
        if headers.get("sec-websocket-accept") != _accept_token(key):
            raise ProtocolViolation("upgrade response has a wrong Sec-WebSocket-Accept")
        if headers.get("sec-websocket-extensions"):
            raise ProtocolViolation("server accepted an extension that was never offered")
        if headers.get("sec-websocket-protocol"):
            raise ProtocolViolation("server chose a subprotocol that was never offered")

    # -- receiving ---------------------------------------------------------------

    def receive_data(self, data: bytes, limit: int = 0) -> list[tuple[int, bytes]]:
        """Parse what is complete; return the messages in order.

        Each message is ``(TEXT, payload)``, ``(BINARY, payload)`` or
        ``(CLOSE, body)``; pings are answered through :meth:`data_to_send` and
        pongs dropped. After a close message the rest of the input is ignored.

        With a positive ``limit``, at most that many frames are parsed (so at
        most that many messages; control frames and fragments count too); the
        rest of the input waits, neither parsed nor copied, for
        :meth:`next_messages` (:attr:`has_unparsed` says whether any does), so
        that a large read's payloads are cut out of it just before they are used.

        Raises:
            ProtocolViolation: with ``close_code`` 1002 for a broken frame and
                1009 for a message over ``max_message_size`` (known from the
                header, before its payload is buffered). If the call parsed
                messages before the broken frame, it returns them and the next
                call (:meth:`next_messages`; :attr:`has_unparsed` is true)
                raises: a READY just before it still starts the session that a
                resume needs. The connection is unusable, and every later call
                raises again.
        """
        if self._stopped:
            return self._after_stop()
        buf = self._buffer
        if self._unparsed is not None:  # not expected: a caller that reads before finishing
            buf += memoryview(self._unparsed)[self._unparsed_at :]
            self._unparsed = None
        if buf:
            buf += data
            if len(buf) < self._need:
                return []
            data = bytes(buf)
            buf.clear()
        return self._parse(data, 0, limit)

    @property
    def has_unparsed(self) -> bool:
        """Whether :meth:`next_messages` has something to give: input left by a
        ``limit``, or a violation held back behind the messages before it."""
        return self._unparsed is not None or self._failure is not None

    def next_messages(self, limit: int = 0) -> list[tuple[int, bytes]]:
        """Parse on where a ``limit`` stopped :meth:`receive_data` or an earlier call."""
        if self._stopped:
            return self._after_stop()
        view = self._unparsed
        if view is None:
            return []
        self._unparsed = None
        return self._parse(view, self._unparsed_at, limit)

    def _parse(self, view: bytes, pos: int, limit: int) -> list[tuple[int, bytes]]:
        """Parse frames of ``view`` from ``pos``; buffer an incomplete last one.

        Runs of whole data frames go to :func:`scan_frames`; any other frame (or
        every frame while a fragmented message is open) is parsed and validated
        here, then the scan goes on after it.
        """
        n = len(view)
        need = 0
        messages: list[tuple[int, bytes]] = []
        max_size = self._max_message_size
        frames = limit if limit > 0 else n  # without a limit: a frame takes 2 bytes at least
        try:
            while True:
                if not self._fragment_opcode:
                    pos, need, parsed = scan_frames(view, pos, frames, max_size, messages)
                    frames -= parsed
                    if need:
                        break
                if not frames:
                    if pos < n:  # stopped at the limit: the rest waits for next_messages
                        self._unparsed, self._unparsed_at = view, pos
                        self._need = 0  # what is left may hold whole frames
                    return messages
                try:
                    b0, length, start = _frame_header(view, pos)
                except (IndexError, struct.error):
                    need = _header_size(view, pos)
                    break
                self._check_frame_header(b0, length)
                end = start + length
                if end > n:
                    need = end - pos
                    break
                frames -= 1
                if self._handle_frame(b0, view[start:end], messages):
                    return messages
                pos = end
        except ProtocolViolation as exc:
            self._stopped = True
            self._failure = (str(exc), exc.close_code)
            self._buffer.clear()
            if not messages:
                raise
            return messages  # the next call raises (has_unparsed says one is due)
        self._need = need
        if pos < n:
            self._buffer += memoryview(view)[pos:]
        return messages

    def _after_stop(self) -> list[tuple[int, bytes]]:
        if self._failure is not None:
            raise ProtocolViolation(*self._failure)
        return []

    def _check_frame_header(self, b0: int, length: int) -> None:
        """Validate a frame the fast path did not take, before its payload arrives."""
        opcode = b0 & 0x0F
        if b0 & 0x70:
            raise ProtocolViolation("RSV bits set but no extension was negotiated")
        if opcode >= CLOSE:
            if opcode > PONG:
                raise ProtocolViolation(f"unknown opcode {opcode:#x}")
            if not b0 & 0x80:
                raise ProtocolViolation("fragmented control frame")
            if length > 125:
                raise ProtocolViolation("control frame payload over 125 bytes")
        elif opcode == CONTINUATION:
            if not self._fragment_opcode:
                raise ProtocolViolation("continuation frame without a message to continue")
            total = self._fragment_size + length
            if total > self._max_message_size:
                raise ProtocolViolation(_too_big(total, self._max_message_size), 1009)
        elif opcode in (TEXT, BINARY):
            if self._fragment_opcode:
                raise ProtocolViolation("new data frame while a fragmented message is open")
            if length > self._max_message_size:
                raise ProtocolViolation(_too_big(length, self._max_message_size), 1009)
        else:
            raise ProtocolViolation(f"unknown opcode {opcode:#x}")

    def _handle_frame(self, b0: int, payload: bytes, messages: list[tuple[int, bytes]]) -> bool:
        """Apply a validated frame off the fast path; return True after a close."""
        opcode = b0 & 0x0F
        if opcode == PING:
            if not self._close_sent:
                self._outgoing += _encode_frame(PONG, payload)
        elif opcode == CLOSE:
            self._receive_close(payload)
            messages.append((CLOSE, payload))
            return True
        elif opcode != PONG:
            fragments = self._fragments
            if opcode:  # first fragment (an unfragmented frame never gets here)
                self._fragment_opcode = opcode
                self._fragment_size = 0
            fragments.append(payload)
            self._fragment_size += len(payload)
            if b0 & 0x80:
                messages.append((self._fragment_opcode, b"".join(fragments)))
                fragments.clear()
                self._fragment_opcode = 0
                self._fragment_size = 0
        return False

    def _receive_close(self, body: bytes) -> None:
        if len(body) == 1:
            raise ProtocolViolation("close frame body of a single byte")
        code, _ = parse_close(body)
        if code is not None and not _close_code_allowed(code):
            raise ProtocolViolation(f"close code {code} may not be sent on the wire")
        self._closed_by_peer = True
        self._stopped = True
        if not self._close_sent:
            # Echo the code (RFC 6455 §5.5.1) so the server can end the TCP connection.
            self._close_sent = True
            self._outgoing += _encode_frame(CLOSE, body[:2])

    def data_to_send(self) -> bytes:
        """Return and forget the bytes queued by parsing: pongs and the close reply."""
        if not self._outgoing:
            return b""
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out

    @property
    def closed_by_peer(self) -> bool:
        """Whether the server's close frame has been received."""
        return self._closed_by_peer

    @property
    def close_sent(self) -> bool:
        """Whether a close frame has been produced, by :meth:`send_close` or as a reply."""
        return self._close_sent

    # -- sending -----------------------------------------------------------------

    def send_text(self, payload: bytes) -> bytes:
        """Frame ``payload`` (UTF-8 bytes, not checked) as one text message."""
        return _encode_frame(TEXT, payload)

    def send_binary(self, payload: bytes) -> bytes:
        """Frame ``payload`` as one binary message."""
        return _encode_frame(BINARY, payload)

    def send_ping(self, payload: bytes = b"") -> bytes:
        """Frame a ping; the server's pong is swallowed by :meth:`receive_data`."""
        if len(payload) > 125:
            raise ValueError("ping payload over 125 bytes")
        return _encode_frame(PING, payload)

    def send_close(self, code: int | None = 1000, reason: str = "") -> bytes:
        """Frame a close and mark the connection closing.

        Returns ``b""`` if a close frame was already produced (ours or the
        automatic reply to the server's), so calling it twice is harmless.

        Raises:
            ValueError: ``code`` may not be sent, or the body exceeds 125 bytes.
        """
        if self._close_sent:
            return b""
        if code is None:
            if reason:
                raise ValueError("a close reason needs a close code")
            body = b""
        else:
            if not _close_code_allowed(code):
                raise ValueError(f"close code {code} may not be sent")
            body = code.to_bytes(2, "big") + reason.encode("utf-8")
            if len(body) > 125:
                raise ValueError("close reason over 123 bytes")
        self._close_sent = True
        return _encode_frame(CLOSE, body)


def _too_big(size: int, limit: int) -> str:
    return f"message of {size} bytes exceeds max_message_size ({limit})"
