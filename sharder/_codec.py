"""JSON and transport decompression: the per-message decode path.

Each inflater turns websocket messages into complete JSON documents (bytes),
returning None while a message is still incomplete. One inflater lives for
one connection: a reconnect always starts a fresh one, since a zlib or zstd
stream cannot continue across sockets.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from typing import Any, Final, Literal, Protocol

from ._constants import ZLIB_SUFFIX
from .errors import ProtocolViolation

__all__ = [
    "COMPRESSIONS",
    "JSON_LIBRARY",
    "Compression",
    "Inflater",
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


class Inflater(Protocol):
    """Turns received websocket messages into JSON documents."""

    def feed(self, data: bytes, binary: bool) -> bytes | None:
        """Return the next complete document, or None if ``data`` ended mid-message."""


class PlainInflater:
    """No compression: every message is a document."""

    __slots__ = ()

    def feed(self, data: bytes, binary: bool) -> bytes | None:
        return data


class PayloadInflater:
    """``compress: true`` in IDENTIFY: binary messages are standalone zlib streams."""

    __slots__ = ("max_size",)

    def __init__(self, max_size: int) -> None:
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


class ZlibStreamInflater:
    """``compress=zlib-stream``: one inflate context, messages end with ``00 00 ff ff``.

    The stream's two-byte zlib header is checked once and the rest inflated as raw
    deflate. zlib's own wrapper would also compute an Adler-32 checksum of every
    inflated byte (about 4 instructions per byte, a tenth of inflating), for the
    trailer of a stream that never ends: a zlib-stream is never finished, so the
    checksum could never be checked.
    """

    __slots__ = ("_buffer", "_decompress", "_inflater", "max_size")

    def __init__(self, max_size: int) -> None:
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
        if self._inflater.unconsumed_tail:
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


class ZstdStreamInflater:
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


def make_inflater(compression: Compression, max_size: int) -> Inflater:
    """A fresh inflater for one connection."""
    if compression == "zlib-stream":
        return ZlibStreamInflater(max_size)
    if compression == "zstd-stream":
        return ZstdStreamInflater(max_size)
    if compression == "payload":
        return PayloadInflater(max_size)
    return PlainInflater()
