"""JSON and transport decompression: the per-message decode path.

Each inflater turns websocket messages into complete JSON documents (bytes),
returning None while a message is still incomplete, and drops the dispatches
of disabled events on the way (``next_document``). One inflater lives for one
connection: a reconnect always starts a fresh one, since a zlib or zstd stream
cannot continue across sockets. For zlib-stream, the usual case, the
``sharder._zlibstream`` extension does it all in C where it is built.
"""

from __future__ import annotations

import contextlib
import json
import os
import zlib
from collections.abc import Callable
from typing import Any, Final, Literal, Protocol, TypeAlias

from ._constants import ZLIB_SUFFIX
from ._peek import DropMatch, drop_matcher
from ._websocket import BINARY, TEXT
from .errors import ProtocolViolation

__all__ = [
    "COMPRESSIONS",
    "JSON_LIBRARY",
    "Compression",
    "Inflater",
    "Messages",
    "PayloadInflater",
    "PlainInflater",
    "ZlibStreamInflater",
    "ZstdStreamInflater",
    "dumps",
    "loads",
    "make_inflater",
    "zstd_available",
]

Compression = Literal["zlib-stream", "zstd-stream", "payload"] | None
COMPRESSIONS: Final = ("zlib-stream", "zstd-stream", "payload", None)

# JSONDecoder sets scan_once (its C scanner) in __init__; typeshed does not list it.
_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def stdlib_loads(data: bytes) -> Any:
    """``json.loads(data)`` without its layers of Python for what Discord sends.

    ``json.loads`` of bytes guesses the encoding, skips whitespace with regular
    expressions and goes through two Python methods before its C scanner: 1.7 of
    the 3.7 µs it takes for a 1 KB message. A gateway payload is UTF-8 without
    surrounding whitespace, so the scanner gets it directly; anything else
    (whitespace, trailing data, another encoding, broken JSON) is left to
    ``json.loads``, which parses it or raises its usual error.
    """
    try:
        text = data.decode("utf-8", "surrogatepass")  # as json.loads decodes UTF-8
        value, end = _scan_json(text, 0)
    except (ValueError, StopIteration):  # not UTF-8 after all, or not JSON as it stands
        return json.loads(data)
    if end != len(text):
        return json.loads(data)
    return value


loads: Callable[[bytes], Any]
dumps: Callable[[Any], bytes]
try:
    import orjson
except ImportError:  # pragma: no cover - exercised in environments without orjson
    JSON_LIBRARY = "json"
    loads = stdlib_loads
    _encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

    def dumps(obj: Any) -> bytes:
        return _encoder.encode(obj).encode()

else:
    JSON_LIBRARY = "orjson"
    loads = orjson.loads
    dumps = orjson.dumps


def zstd_available() -> bool:
    """Whether the ``zstandard`` package is installed (needed for zstd-stream)."""
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return False
    return True


Messages: TypeAlias = list[tuple[int, bytes]]
"""A read's websocket messages: (opcode, payload), data or close."""


class Inflater(Protocol):
    """Turns received websocket messages into JSON documents."""

    def next_document(
        self, messages: Messages, index: int, disabled: frozenset[bytes]
    ) -> tuple[int, bytes | None, int, int]:
        """Feed data messages from ``messages[index]`` on until one gives a document.

        Returns ``(index, document, dropped, top)``: the document to parse and the
        index after its message, or None and the index of the first message that is
        not data (a close frame) or the end. On the way, a dispatch of an event in
        ``disabled`` is dropped unparsed (see ``sharder._peek``): ``dropped`` counts
        those, ``top`` is their highest sequence (-1 for none). An error after some
        drops is held back, so that they are returned first (document None, the index
        at the message that failed), and raised by the next call.
        """


class _Decoder:
    """``next_document`` in Python over ``feed``: every inflater but the C one.

    ``feed(data, binary)`` returns the next complete document, or None if ``data``
    ended mid-message.
    """

    __slots__ = ("_disabled", "_drop_match", "_held")

    def __init__(self) -> None:
        self._disabled: frozenset[bytes] = frozenset()
        self._drop_match: DropMatch | None = None
        self._held: ProtocolViolation | None = None

    def feed(self, data: bytes, binary: bool) -> bytes | None:
        raise NotImplementedError

    def next_document(
        self, messages: Messages, index: int, disabled: frozenset[bytes]
    ) -> tuple[int, bytes | None, int, int]:
        held = self._held
        if held is not None:
            self._held = None
            raise held
        if disabled is not self._disabled:
            self._disabled, self._drop_match = disabled, drop_matcher(disabled)
        drop_match = self._drop_match
        feed = self.feed
        dropped, top = 0, -1
        count = len(messages)
        while index < count:
            opcode, data = messages[index]
            if opcode != BINARY and opcode != TEXT:
                break
            try:
                document = feed(data, opcode == BINARY)
            except ProtocolViolation as exc:
                if not dropped:
                    raise
                self._held = exc
                break
            index += 1
            if document is None:
                continue
            if drop_match is not None:
                peeked = drop_match(document)
                if peeked is not None:
                    dropped += 1
                    seq = int(peeked[1])
                    if seq > top:
                        top = seq
                    continue
            return index, document, dropped, top
        return index, None, dropped, top


class PlainInflater(_Decoder):
    """No compression: every message is a document."""

    __slots__ = ()

    def feed(self, data: bytes, binary: bool) -> bytes | None:
        return data


class PayloadInflater(_Decoder):
    """``compress: true`` in IDENTIFY: binary messages are standalone zlib streams."""

    __slots__ = ("max_size",)

    def __init__(self, max_size: int) -> None:
        super().__init__()
        self.max_size = max_size

    def feed(self, data: bytes, binary: bool) -> bytes | None:
        if not binary:
            return data
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(data, self.max_size + 1)
        except zlib.error as exc:
            raise ProtocolViolation(f"corrupt compressed payload: {exc}", 4000) from exc
        if len(out) > self.max_size:
            raise ProtocolViolation("inflated payload exceeds the size limit", 1009)
        return out


class ZlibStreamInflater(_Decoder):
    """``compress=zlib-stream``: one inflate context, messages end with ``00 00 ff ff``.

    The stream's two-byte zlib header is checked once and the rest inflated as raw
    deflate. zlib's own wrapper would also compute an Adler-32 checksum of every
    inflated byte (about 4 instructions per byte, a tenth of inflating), for the
    trailer of a stream that never ends: a zlib-stream is never finished, so the
    checksum could never be checked.
    """

    __slots__ = ("_buffer", "_decompress", "_inflater", "max_size")

    def __init__(self, max_size: int) -> None:
        super().__init__()
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._decompress: Callable[[bytes, int], bytes] = self._start
        self._buffer = bytearray()
        self.max_size = max_size

    def feed(self, data: bytes, binary: bool) -> bytes | None:
        # The hot path: a whole message in one websocket message, nothing buffered.
        if self._buffer or not data.endswith(ZLIB_SUFFIX):
            return self._feed_part(data)
        try:
            out = self._decompress(data, self.max_size)
        except zlib.error as exc:
            raise ProtocolViolation(f"corrupt zlib stream: {exc}", 4000) from exc
        inflater = self._inflater
        if inflater.eof:  # a zlib-stream never ends
            raise ProtocolViolation("corrupt zlib stream: a final block ended it", 4000)
        if inflater.unconsumed_tail:
            raise ProtocolViolation("inflated message exceeds the size limit", 1009)
        return out

    def _start(self, data: bytes, max_length: int) -> bytes:
        """Inflate the first message: check and skip the zlib header it starts with."""
        if len(data) < 2 or not _is_zlib_header(data[0], data[1]):
            raise zlib.error("incorrect header check")
        self._decompress = self._inflater.decompress
        return self._decompress(data[2:], max_length)

    def _feed_part(self, data: bytes) -> bytes | None:
        """Buffer a message split over websocket messages; inflate it once it is whole."""
        self._buffer += data
        if not data.endswith(ZLIB_SUFFIX):
            if len(self._buffer) > self.max_size:
                raise ProtocolViolation("compressed message exceeds the size limit", 1009)
            return None
        whole = bytes(self._buffer)
        self._buffer.clear()
        return self.feed(whole, True)


def _is_zlib_header(cmf: int, flg: int) -> bool:
    """RFC 1950: deflate with a window of at most 32 KiB, no preset dictionary, valid check."""
    return cmf & 0x0F == 8 and cmf >> 4 <= 7 and not flg & 0x20 and (cmf << 8 | flg) % 31 == 0


class ZstdStreamInflater(_Decoder):
    """``compress=zstd-stream``: one endless zstd frame; each message flushes a block."""

    __slots__ = ("_decompress", "max_size")

    def __init__(self, max_size: int) -> None:
        try:
            import zstandard
        except ImportError as exc:
            raise RuntimeError(
                'compression "zstd-stream" needs the zstandard package: '
                "pip install zstandard (or botrun[speed])"
            ) from exc
        super().__init__()
        self._decompress = zstandard.ZstdDecompressor().decompressobj().decompress
        self.max_size = max_size

    def feed(self, data: bytes, binary: bool) -> bytes | None:
        try:
            out: bytes = self._decompress(data)
        except Exception as exc:  # zstandard.ZstdError is not importable without the package
            raise ProtocolViolation(f"corrupt zstd stream: {exc}", 4000) from exc
        if len(out) > self.max_size:
            raise ProtocolViolation("inflated message exceeds the size limit", 1009)
        return out or None


_zlib_stream: Callable[[int], Inflater] = ZlibStreamInflater
if not os.environ.get("BOTRUN_NO_EXTENSIONS"):  # see sharder._websocket
    with contextlib.suppress(ImportError):  # built wherever a C compiler and zlib.h were
        from ._zlibstream import ZlibStream as _zlib_stream


def make_inflater(compression: Compression, max_size: int) -> Inflater:
    """A fresh inflater for one connection."""
    if compression == "zlib-stream":
        return _zlib_stream(max_size)
    if compression == "zstd-stream":
        return ZstdStreamInflater(max_size)
    if compression == "payload":
        return PayloadInflater(max_size)
    return PlainInflater()
