"""Codecs: zlib-stream, zstd-stream, payload compression and their limits; JSON."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from typing import Any

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from sharder._codec import (
    Inflater,
    PayloadInflater,
    PlainInflater,
    ZstdStreamInflater,
    dumps,
    loads,
    stdlib_loads,
)
from sharder.errors import ProtocolViolation
from tests.sharder.helpers import feed

DOCS = [
    dumps({"t": "MESSAGE_CREATE", "s": i, "op": 0, "d": {"content": "x" * i}}) for i in range(50)
]


def zlib_stream(docs: list[bytes]) -> list[bytes]:
    compressor = zlib.compressobj()
    return [compressor.compress(d) + compressor.flush(zlib.Z_SYNC_FLUSH) for d in docs]


def test_zlib_stream_inflates_every_message_with_one_context(
    zlib_inflater: Callable[..., Inflater],
) -> None:
    inflater = zlib_inflater(max_size=1 << 20)
    assert [feed(inflater, m) for m in zlib_stream(DOCS)] == DOCS


def test_zlib_stream_message_split_across_frames_waits_for_the_suffix(
    zlib_inflater: Callable[..., Inflater],
) -> None:
    inflater = zlib_inflater(max_size=1 << 20)
    [message] = zlib_stream([DOCS[20]])
    assert feed(inflater, message[:5]) is None
    assert feed(inflater, message[5:]) == DOCS[20]


def test_corrupt_zlib_stream_is_a_protocol_violation(
    zlib_inflater: Callable[..., Inflater],
) -> None:
    inflater = zlib_inflater(max_size=1 << 20)
    with pytest.raises(ProtocolViolation):
        feed(inflater, b"garbage!" + b"\x00\x00\xff\xff")


def test_zlib_message_inflating_past_the_limit_is_refused(
    zlib_inflater: Callable[..., Inflater],
) -> None:
    inflater = zlib_inflater(max_size=1000)
    [message] = zlib_stream([b"a" * 5000])
    with pytest.raises(ProtocolViolation) as info:
        feed(inflater, message)
    assert info.value.close_code == 1009


@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_zlib_stream_of_any_level_inflates_after_its_header(
    level: int, zlib_inflater: Callable[..., Inflater]
) -> None:
    compressor = zlib.compressobj(level)
    messages = [compressor.compress(d) + compressor.flush(zlib.Z_SYNC_FLUSH) for d in DOCS]
    inflater = zlib_inflater(max_size=1 << 20)
    assert [feed(inflater, m) for m in messages] == DOCS


def test_zlib_stream_header_split_across_frames_is_checked_once_whole(
    zlib_inflater: Callable[..., Inflater],
) -> None:
    inflater = zlib_inflater(max_size=1 << 20)
    first, second = zlib_stream(DOCS[:2])
    assert feed(inflater, first[:1]) is None
    assert feed(inflater, first[1:]) == DOCS[0]
    assert feed(inflater, second) == DOCS[1]


@pytest.mark.parametrize(
    "header",
    [
        b"\x78\x9d",  # check bits wrong
        b"\x79\x9c",  # not deflate
        b"\x88\x98",  # window over 32 KiB
        b"\x78\xbb",  # preset dictionary
    ],
)
def test_zlib_stream_with_a_bad_header_is_a_protocol_violation(
    header: bytes, zlib_inflater: Callable[..., Inflater]
) -> None:
    inflater = zlib_inflater(max_size=1 << 20)
    [message] = zlib_stream([DOCS[5]])
    with pytest.raises(ProtocolViolation, match="incorrect header check") as info:
        feed(inflater, header + message[2:])
    assert info.value.close_code == 4000


def test_zstd_stream_inflates_block_flushed_messages() -> None:
    compressor = zstandard.ZstdCompressor().compressobj()
    inflater = ZstdStreamInflater(max_size=1 << 20)
    for doc in DOCS:
        message = compressor.compress(doc) + compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        assert inflater.feed(message, True) == doc


def test_payload_compression_inflates_binary_and_passes_text() -> None:
    inflater = PayloadInflater(max_size=1 << 20)
    assert inflater.feed(zlib.compress(DOCS[10]), True) == DOCS[10]
    assert inflater.feed(DOCS[3], False) == DOCS[3]


def test_plain_inflater_returns_messages_as_they_are() -> None:
    assert PlainInflater().feed(DOCS[1], False) == DOCS[1]


def test_json_round_trip_is_compact() -> None:
    assert loads(dumps({"op": 1, "d": None})) == {"op": 1, "d": None}
    assert b" " not in dumps({"op": 1, "d": [1, 2]})


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _outcome(parse: Any, data: bytes) -> tuple[str, Any]:
    try:
        return "value", parse(data)
    except ValueError as exc:
        return "error", type(exc)


@given(
    _JSON_VALUES,
    st.sampled_from(["", " ", "\n\t"]),
    st.sampled_from(["", " ", "x", "{}", "\ufeff"]),
    st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32-be"]),
    st.booleans(),
)
def test_stdlib_loads_parses_and_fails_exactly_as_json_loads(
    value: Any, space: str, extra: str, encoding: str, leading: bool
) -> None:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = space + extra + text if leading else text + space + extra
    data = text.encode(encoding, "surrogatepass")
    assert _outcome(stdlib_loads, data) == _outcome(json.loads, data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b'{"a":}',
        b'{"a":1',
        b'"\xff"',
        b'["\\ud800"]',
        b'"\xed\xa0\x80"',
        b"[1]]",
        b"nul",
    ],
)
def test_stdlib_loads_agrees_with_json_loads_on_edge_cases(data: bytes) -> None:
    assert _outcome(stdlib_loads, data) == _outcome(json.loads, data)
