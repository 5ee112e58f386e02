"""Server-side payload encoding: JSON in Discord's key order, then compression.

Discord writes ``{"t":...,"s":...,"op":...,"d":...}`` in that order and clients
peek at the ``"t"`` bytes before parsing, so the order is part of the contract.
Each connection gets its own :class:`Codec`, because zlib-stream and
zstd-stream keep one compression context for the whole connection.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from typing import Any, Final, Protocol

__all__ = [
    "PAYLOAD_COMPRESSION_THRESHOLD",
    "Codec",
    "PayloadCompressionCodec",
    "PlainCodec",
    "ZlibStreamCodec",
    "ZstdStreamCodec",
    "dumps",
    "encode_payload",
    "loads",
    "make_codec",
]

PAYLOAD_COMPRESSION_THRESHOLD: Final = 1024
"""Payloads larger than this are zlib-compressed when IDENTIFY asked for ``compress``."""


def _stdlib_dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


dumps: Callable[[Any], bytes]
"""Serialize compactly, keeping dict insertion order."""
loads: Callable[[bytes], Any]
"""Parse JSON; raises ``ValueError`` on malformed input (both backends)."""
try:
    import orjson
except ImportError:  # pragma: no cover - orjson is an optional speed-up
    dumps, loads = _stdlib_dumps, json.loads
else:
    dumps, loads = orjson.dumps, orjson.loads


def encode_payload(op: int, d: Any, t: str | None = None, s: int | None = None) -> bytes:
    """Encode one gateway payload with the keys in Discord's order."""
    return dumps({"t": t, "s": s, "op": op, "d": d})


class Codec(Protocol):
    """Turns an encoded payload into one websocket message: ``(data, binary)``."""

    def pack(self, payload: bytes) -> tuple[bytes, bool]: ...


class PlainCodec:
    """No compression: every payload is a text message."""

    def pack(self, payload: bytes) -> tuple[bytes, bool]:
        return payload, False


class PayloadCompressionCodec:
    """IDENTIFY ``compress: true``: big payloads become standalone zlib streams."""

    def pack(self, payload: bytes) -> tuple[bytes, bool]:
        if len(payload) > PAYLOAD_COMPRESSION_THRESHOLD:
            return zlib.compress(payload), True
        return payload, False


class ZlibStreamCodec:
    """zlib-stream: one deflate context per connection, each message sync-flushed."""

    def __init__(self) -> None:
        self._compressor = zlib.compressobj()

    def pack(self, payload: bytes) -> tuple[bytes, bool]:
        compressor = self._compressor
        return compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH), True


class ZstdStreamCodec:
    """zstd-stream: one never-ending zstd frame per connection, block-flushed per message."""

    def __init__(self) -> None:
        import zstandard

        self._flush_mode = zstandard.COMPRESSOBJ_FLUSH_BLOCK
        self._compressor = zstandard.ZstdCompressor().compressobj()

    def pack(self, payload: bytes) -> tuple[bytes, bool]:
        compressor = self._compressor
        return compressor.compress(payload) + compressor.flush(self._flush_mode), True


def make_codec(compress: str | None) -> Codec:
    """The transport codec for a ``compress`` query value (``None``: none).

    Raises:
        ValueError: for an unknown value, or zstd-stream without ``zstandard``.
    """
    if compress is None:
        return PlainCodec()
    if compress == "zlib-stream":
        return ZlibStreamCodec()
    if compress == "zstd-stream":
        try:
            return ZstdStreamCodec()
        except ImportError:
            raise ValueError("zstd-stream needs the zstandard package") from None
    raise ValueError(f"unsupported compress value {compress!r}")
