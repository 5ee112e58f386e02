"""``next_document``: inflating a read's messages and dropping disabled dispatches.

Each test runs on the Python inflater and on the C one (``sharder._zlibstream``);
a hypothesis test then requires both to give the same result, document by
document and error by error, on any stream: split, corrupt, cut by close frames,
at any size limit, with any names disabled.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharder._codec import Inflater, Messages, ZlibStreamInflater, dumps
from sharder._websocket import BINARY, CLOSE, TEXT
from sharder.errors import ProtocolViolation
from tests.sharder.helpers import feed

try:
    from sharder._zlibstream import ZlibStream as ZlibStreamInC
except ImportError:  # not built: its own tests are skipped
    ZlibStreamInC = None  # type: ignore[assignment,misc]

MakeInflater = Callable[..., Inflater]
"""The ``zlib_inflater`` fixture (tests/sharder/conftest.py): each implementation."""

NOTHING: frozenset[bytes] = frozenset()
PRESENCE = frozenset({b"PRESENCE_UPDATE", b"TYPING_START"})


def dispatch(name: str, seq: int | str) -> bytes:
    return b'{"t":"%s","s":%s,"op":0,"d":{"x":1}}' % (name.encode(), str(seq).encode())


def zlib_messages(docs: list[bytes], level: int = 6) -> list[bytes]:
    compressor = zlib.compressobj(level)
    return [compressor.compress(doc) + compressor.flush(zlib.Z_SYNC_FLUSH) for doc in docs]


def binary(messages: list[bytes]) -> Messages:
    return [(BINARY, message) for message in messages]


def test_disabled_dispatches_are_dropped_and_counted_with_their_top_sequence(
    zlib_inflater: MakeInflater,
) -> None:
    docs = [
        dispatch("PRESENCE_UPDATE", 5),
        dispatch("TYPING_START", 7),
        dispatch("PRESENCE_UPDATE", 6),
        dispatch("MESSAGE_CREATE", 8),
        dispatch("PRESENCE_UPDATE", 9),
    ]
    messages = binary(zlib_messages(docs))
    inflater = zlib_inflater(max_size=1 << 20)
    assert inflater.next_document(messages, 0, PRESENCE) == (4, docs[3], 3, 7)
    assert inflater.next_document(messages, 4, PRESENCE) == (5, None, 1, 9)


def test_without_disabled_names_every_document_is_returned(
    zlib_inflater: MakeInflater,
) -> None:
    docs = [dispatch("PRESENCE_UPDATE", 5), b'{"op":11,"d":null}']
    messages = binary(zlib_messages(docs))
    inflater = zlib_inflater(max_size=1 << 20)
    assert inflater.next_document(messages, 0, NOTHING) == (1, docs[0], 0, -1)
    assert inflater.next_document(messages, 1, NOTHING) == (2, docs[1], 0, -1)


@pytest.mark.parametrize(
    "doc",
    [
        dispatch("PRESENCE_UPDATE", 10**18),  # 19 digits
        dispatch("PRESENCE_UPDATE", "null"),
        dispatch("PRESENCE", 1),
        dispatch("PRESENCE_UPDATES", 1),
        b'{"t":"PRESENCE_UPDATE","op":0,"s":1,"d":{}}',
        b'{"t": "PRESENCE_UPDATE","s":1,"op":0,"d":{}}',
        b'{"t":"PRESENCE_UPDATE","s":1}',
    ],
)
def test_what_the_peek_cannot_vouch_for_is_left_to_the_parser(
    zlib_inflater: MakeInflater, doc: bytes
) -> None:
    messages = binary(zlib_messages([doc]))
    assert zlib_inflater(max_size=1 << 20).next_document(messages, 0, PRESENCE) == (1, doc, 0, -1)


def test_a_sequence_of_eighteen_digits_is_still_peeked(
    zlib_inflater: MakeInflater,
) -> None:
    messages = binary(zlib_messages([dispatch("PRESENCE_UPDATE", "000000000000000042")]))
    assert zlib_inflater(max_size=1 << 20).next_document(messages, 0, PRESENCE) == (1, None, 1, 42)


def test_a_close_frame_stops_the_loop_where_it_is(zlib_inflater: MakeInflater) -> None:
    first, second = zlib_messages([dispatch("PRESENCE_UPDATE", 3), dispatch("READY", 4)])
    messages = [(BINARY, first), (CLOSE, b"\x03\xe8"), (TEXT, second)]
    inflater = zlib_inflater(max_size=1 << 20)
    assert inflater.next_document(messages, 0, PRESENCE) == (1, None, 1, 3)
    assert inflater.next_document(messages, 1, PRESENCE) == (1, None, 0, -1)
    assert inflater.next_document(messages, 2, PRESENCE) == (3, dispatch("READY", 4), 0, -1)


def test_a_message_split_over_websocket_messages_is_peeked_once_whole(
    zlib_inflater: MakeInflater,
) -> None:
    [message] = zlib_messages([dispatch("PRESENCE_UPDATE", 12)])
    messages = binary([message[:1], message[1:9], message[9:]])
    assert zlib_inflater(max_size=1 << 20).next_document(messages, 0, PRESENCE) == (3, None, 1, 12)


@pytest.mark.parametrize(
    ("bad", "error", "close_code"),
    [
        (b"\xff\xff\xff\xff\x00\x00\xff\xff", "corrupt zlib stream", 4000),
        (b"x" * 500, "exceeds the size limit", 1009),
    ],
)
def test_an_error_after_drops_is_held_back_until_the_next_call(
    zlib_inflater: MakeInflater, bad: bytes, error: str, close_code: int
) -> None:
    docs = [dispatch("PRESENCE_UPDATE", 3), dispatch("PRESENCE_UPDATE", 4), bad]
    messages = binary(zlib_messages(docs))
    if bad.startswith(b"\xff"):  # not deflate at all
        messages[2] = (BINARY, bad)
    inflater = zlib_inflater(max_size=100)
    assert inflater.next_document(messages, 0, PRESENCE) == (2, None, 2, 4)
    with pytest.raises(ProtocolViolation, match=error) as info:
        inflater.next_document(messages, 2, PRESENCE)
    assert info.value.close_code == close_code


def test_an_error_before_any_drop_is_raised_at_once(zlib_inflater: MakeInflater) -> None:
    with pytest.raises(ProtocolViolation, match="incorrect header check"):
        zlib_inflater(max_size=1 << 20).next_document(
            binary([b"no header\x00\x00\xff\xff"]), 0, PRESENCE
        )


def test_a_final_deflate_block_is_a_protocol_violation(
    zlib_inflater: MakeInflater,
) -> None:
    compressor = zlib.compressobj()
    ended = compressor.compress(b'{"op":11}') + compressor.flush(zlib.Z_FINISH)
    with pytest.raises(ProtocolViolation, match="a final block ended it") as info:
        feed(zlib_inflater(max_size=1 << 20), ended + b"\x00\x00\xff\xff")
    assert info.value.close_code == 4000


@pytest.mark.parametrize("size", [1, 100, 5000, 70_000])
def test_a_message_of_exactly_max_size_inflates_and_one_byte_more_is_refused(
    zlib_inflater: MakeInflater, size: int
) -> None:
    # A run of one byte inflates from long back-references: the limit falls inside one.
    doc = b"a" * size
    [message] = zlib_messages([doc])
    assert feed(zlib_inflater(max_size=size), message) == doc
    with pytest.raises(ProtocolViolation, match="exceeds the size limit") as info:
        feed(zlib_inflater(max_size=size - 1 or 1), zlib_messages([doc + b"a"])[0])
    assert info.value.close_code == 1009


def test_each_call_looks_names_up_in_the_set_it_brings(zlib_inflater: MakeInflater) -> None:
    # More sets than the C inflater keeps lookup tables for, in turn; one of them
    # large (its table probes past collisions), one holding the empty name.
    sets = [frozenset({b"NAME_%d" % i}) for i in range(6)]
    sets += [frozenset(b"EVENT_%d" % i for i in range(1000)) | {b"NAME_6"}, frozenset({b""})]
    names = [f"NAME_{i}" for i in range(7)] + [""]
    cases = [(disabled, name) for _ in range(3) for disabled in sets for name in names]
    docs = [dispatch(name, seq) for seq, (_, name) in enumerate(cases)]
    messages = binary(zlib_messages(docs))
    inflater = zlib_inflater(max_size=1 << 20)
    for seq, ((disabled, name), message) in enumerate(zip(cases, messages, strict=True)):
        step = inflater.next_document([message], 0, disabled)
        dropped = name.encode() in disabled
        assert step == ((1, None, 1, seq) if dropped else (1, docs[seq], 0, -1))


@pytest.mark.skipif(ZlibStreamInC is None, reason="the C extension is not built")
@pytest.mark.parametrize("disabled", [{b"A"}, frozenset({"A"}), None])
def test_the_c_inflater_takes_only_a_frozenset_of_bytes(disabled: Any) -> None:
    messages = binary(zlib_messages([b"{}"]))
    with pytest.raises(TypeError, match="frozenset of bytes"):
        ZlibStreamInC(max_size=10).next_document(messages, 0, disabled)


@pytest.mark.skipif(ZlibStreamInC is None, reason="the C extension is not built")
@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_the_c_inflater_is_libdeflate_and_gives_back_what_zlib_deflated(level: int) -> None:
    """A long stream of small and large documents, text and random bytes, so that
    stored, fixed and dynamic blocks occur, matches reach 32 KiB back across
    messages and the history slides and grows many times: libdeflate inflates
    every one byte for byte."""
    from sharder._zlibstream import INFLATE_LIBRARY

    assert INFLATE_LIBRARY.startswith("libdeflate ")
    rng = random.Random(level)
    words = [rng.randbytes(rng.randint(1, 12)).hex().encode() for _ in range(500)]
    docs = [
        rng.randbytes(rng.randint(1, 70_000))
        if i % 7 == 0
        else b" ".join(rng.choices(words, k=rng.randint(1, 15_000)))
        for i in range(120)
    ]
    messages = binary(zlib_messages(docs, level))
    inflater = ZlibStreamInC(max_size=1 << 20)
    inflated, index = [], 0
    while index < len(messages):
        index, document, _, _ = inflater.next_document(messages, index, NOTHING)
        inflated.append(document)
    assert inflated == docs


@pytest.mark.skipif(ZlibStreamInC is None, reason="the C extension is not built")
def test_the_c_inflater_tries_again_with_more_room_when_a_message_inflates_far() -> None:
    """Runs of one byte inflate a thousand times their size, past the first guess of
    room (8 times); each try doubles the room, up to the size limit exactly."""
    docs = [b"a" * 10, b"y" * 900_000, b'{"op":11}', b"z" * 300_000, b"y" * 900_000]
    messages = binary(zlib_messages(docs))
    inflater = ZlibStreamInC(max_size=900_000)
    inflated, index = [], 0
    while index < len(messages):
        index, document, _, _ = inflater.next_document(messages, index, NOTHING)
        inflated.append(document)
    assert inflated == docs
    tight = ZlibStreamInC(max_size=899_999)
    assert tight.next_document(messages, 0, NOTHING)[1] == docs[0]
    with pytest.raises(ProtocolViolation, match="exceeds the size limit"):
        tight.next_document(messages, 1, NOTHING)


@pytest.mark.parametrize("setting", ["", "1"])
def test_botrun_no_extensions_picks_the_python_inflater(setting: str) -> None:
    code = (
        "from sharder._codec import make_inflater as m; print(type(m('zlib-stream', 9)).__name__)"
    )
    env = {**os.environ, "BOTRUN_NO_EXTENSIONS": setting}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    python = setting == "1" or ZlibStreamInC is None
    assert done.stdout.strip() == ("ZlibStreamInflater" if python else "ZlibStream")


# ----------------------------------------------------------------- C against Python

NAMES = ["PRESENCE_UPDATE", "PRESENCE_UPDATES", "PRESENCE", "MESSAGE_CREATE", "TYPING_START", ""]


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(NAMES) | st.just("PRESENCE_UPDATE"))
    seq = draw(
        st.integers(0, 1000).map(str)
        | st.integers(10**17, 10**20).map(str)  # 18 digits and more
        | st.sampled_from(["null", "007", "-1", "1.5", ""])
    )
    shape = draw(st.integers(0, 10))
    if shape == 0:
        return draw(st.binary(max_size=40))
    if shape == 1:
        return dumps({"op": 11, "d": None})
    if shape == 10:  # inflates from long back-references: a size limit falls inside one
        return b"y" * draw(st.integers(1, 600))
    if shape == 2:
        return b'{"t":"%s","s":%s}' % (name.encode(), seq.encode())  # ends after the digits
    padding = b"x" * draw(st.sampled_from([0, 10, 300, 3000]))
    return b'{"t":"%s","s":%s,"op":0,"d":"%s"}' % (name.encode(), seq.encode(), padding)


def one_in(n: int) -> st.SearchStrategy[bool]:
    """True about once in ``n`` draws (hypothesis draws the first and last of a range often)."""
    return st.sampled_from([False] * (n - 1) + [True])


@st.composite
def zlib_reads(draw: st.DrawFn) -> tuple[list[Messages], int, frozenset[bytes], bool]:
    """A zlib stream's documents as reads of websocket messages, with whatever may go wrong.

    The last item says whether each websocket message that ends as a message does
    (``00 00 ff ff``) ends a flush, with the stream's bytes as they were deflated.
    """
    docs = draw(st.lists(documents(), min_size=2, max_size=12))
    compressor = zlib.compressobj(draw(st.sampled_from([0, 1, 6, 9])))
    messages = []
    for doc in docs:
        end = zlib.Z_FINISH if draw(one_in(81)) else zlib.Z_SYNC_FLUSH
        message = compressor.compress(doc) + compressor.flush(end)
        if end == zlib.Z_FINISH:
            message += b"\x00\x00\xff\xff"
        messages.append(message)
        if end == zlib.Z_FINISH:
            break
    flushed = True
    if draw(one_in(8)):  # corrupt one byte
        flushed = False
        which = draw(st.integers(0, len(messages) - 1))
        at = draw(st.integers(0, len(messages[which]) - 1))
        flipped = bytearray(messages[which])
        flipped[at] ^= draw(st.integers(1, 255))
        messages[which] = bytes(flipped)
    if draw(one_in(16)):  # not a zlib header
        messages[0] = b"\x78\x9d" + messages[0][2:]
    wire: Messages = []
    for message in messages:
        # Anywhere, and within the 00 00 ff ff that ends a message.
        near_end = st.integers(max(len(message) - 4, 0), len(message))
        cuts = sorted(draw(st.lists(st.integers(0, len(message)) | near_end, max_size=2)))
        for start, end in zip([0, *cuts], [*cuts, len(message)], strict=True):
            wire.append((draw(st.sampled_from([BINARY, TEXT])), message[start:end]))
            if end < len(message) and message[start:end].endswith(b"\x00\x00\xff\xff"):
                flushed = False  # a part that looks whole (level 0 stores a document's bytes)
        if draw(one_in(8)):
            wire.append((CLOSE, b""))
        if draw(one_in(81)):  # ends as a message does, but one byte short
            flushed = False
            wire.append((BINARY, draw(st.binary(max_size=8)) + b"\x01\x00\xff\xff"))
    reads, start = [], 0
    for end in [*sorted(draw(st.lists(st.integers(0, len(wire)), max_size=3))), len(wire)]:
        reads.append(wire[start:end])
        start = end
    # Limits at a document's size, and at a compressed message's (the buffer's limit).
    sizes = [len(d) + delta for d in docs + messages for delta in (-1, 0, 1)]
    near_a_size = st.sampled_from([s for s in sizes if s >= 1] or [1])
    max_size = draw(st.just(1 << 20) | near_a_size)
    names = draw(st.sets(st.sampled_from(NAMES), max_size=4)) | {"PRESENCE_UPDATE"}
    if draw(one_in(4)):
        names.discard("PRESENCE_UPDATE")
    disabled = frozenset(name.encode() for name in names)
    return reads, max_size, disabled, flushed


def run(inflater: Inflater, reads: list[Messages], disabled: frozenset[bytes]) -> list[Any]:
    """What the shard's loop would see, step by step; a close frame is stepped over."""
    seen: list[Any] = []
    for messages in reads:
        index = 0
        while index < len(messages):
            try:
                step = inflater.next_document(messages, index, disabled)
            except ProtocolViolation as exc:
                return [*seen, (type(exc), str(exc), exc.close_code)]
            seen.append(step)
            index = step[0]
            if step[1] is None and index < len(messages) and messages[index][0] == CLOSE:
                index += 1
    return seen


@pytest.mark.skipif(ZlibStreamInC is None, reason="the C extension is not built")
@settings(max_examples=300, deadline=None)
@given(case=zlib_reads())
def test_the_c_inflater_and_the_python_one_agree_on_any_flushed_stream(
    case: tuple[list[Messages], int, frozenset[bytes], bool],
) -> None:
    """On a stream whose messages each end a flush, as Discord sends them, both give
    the same steps. On any other they agree until one of them refuses the stream:
    the C one inflates a whole message at a time and refuses one that leaves a
    deflate block open, where zlib returns what it has and goes on into the next
    message; zlib refuses the length and distance codes that no compressor uses
    (286-287, 30-31), which libdeflate reads as the longest match."""
    reads, max_size, disabled, flushed = case
    expected = run(ZlibStreamInflater(max_size), reads, disabled)
    seen = run(ZlibStreamInC(max_size), reads, disabled)
    if flushed or seen == expected:
        assert seen == expected
        return
    pairs = enumerate(zip(seen, expected, strict=False))
    parted = next((i for i, (a, b) in pairs if a != b), min(len(seen), len(expected)))
    assert seen[:parted] == expected[:parted]
    # At the step where they part, or the one after it when drops held the error back.
    assert refuses(seen, parted) or refuses(expected, parted)


def refuses(steps: list[Any], at: int) -> bool:
    return any(step[0] is ProtocolViolation for step in steps[at : at + 2])
