"""The sans-I/O websocket client: framing, reassembly, violations, handshake, masking."""

from __future__ import annotations

import base64
import hashlib
import itertools
import struct
import sys
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sharder._websocket
from sharder._websocket import BINARY, CLOSE, TEXT, WebSocketClient, parse_close
from sharder.errors import HandshakeError, ProtocolViolation

try:
    from sharder._framing import scan_frames as scan_frames_in_c
except ImportError:  # not built: only the Python loop is there to test
    scan_frames_in_c = None

SCANNERS = {"python": sharder._websocket._scan_frames_in_python, "c": scan_frames_in_c}


@pytest.fixture(autouse=True, params=sorted(SCANNERS))
def scanner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here runs with each implementation of the data-frame scan."""
    scan = SCANNERS[request.param]
    if scan is None:
        pytest.skip("the C extension sharder._framing is not built")
    monkeypatch.setattr(sharder._websocket, "scan_frames", scan)


PING = 9
PONG = 10
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
    length_bits: int | None = None,
) -> bytes:
    """Build a server frame; ``length_bits`` forces a (possibly non-minimal) length form."""
    n = len(payload)
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if mask is not None else 0
    bits = length_bits or (7 if n < 126 else 16 if n < 65536 else 64)
    if bits == 7:
        header = bytes((first, mask_bit | n))
    elif bits == 16:
        header = struct.pack(">BBH", first, mask_bit | 126, n)
    else:
        header = struct.pack(">BBQ", first, mask_bit | 127, n)
    if mask is not None:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        header += mask
    return header + payload


def parse_client_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Decode masked client frames (the test's own reference unmasker)."""
    out = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        assert b0 & 0x80, "client frames are never fragmented"
        assert b1 & 0x80, "client frames must be masked"
        length = b1 & 0x7F
        pos += 2
        if length == 126:
            (length,) = struct.unpack_from(">H", data, pos)
            pos += 2
        elif length == 127:
            (length,) = struct.unpack_from(">Q", data, pos)
            pos += 8
        key = data[pos : pos + 4]
        pos += 4
        body = data[pos : pos + length]
        assert len(body) == length
        out.append((b0 & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(body))))
        pos += length
    return out


def client(max_message_size: int = 64 * 1024 * 1024) -> WebSocketClient:
    return WebSocketClient("gateway.test", "/", max_message_size=max_message_size)


def feed_in_chunks(
    ws: WebSocketClient, data: bytes, cuts: list[int], limit: int = 0
) -> list[tuple[int, bytes]]:
    """Feed ``data`` cut at ``cuts``; with a ``limit``, take each read in batches as the
    transport does, checking that none is larger."""
    messages = []
    last = 0
    for cut in [*sorted(cuts), len(data)]:
        batch = ws.receive_data(data[last:cut], limit)
        while True:
            assert not limit or len(batch) <= limit
            messages += batch
            if not ws.has_unparsed:
                break
            batch = ws.next_messages(limit)
        last = cut
    return messages


# -- receiving ------------------------------------------------------------------

MIXED_STREAM = b"".join(
    [
        frame(TEXT, b'{"op":10,"d":{"heartbeat_interval":41250}}'),
        frame(BINARY, bytes(range(256)) * 2),
        frame(PING, b"hi"),
        frame(TEXT, b"frag", fin=False),
        frame(PONG, b"ignored"),
        frame(0, b"ment", fin=False),
        frame(0, b"ed", fin=True),
        frame(BINARY, b""),
        frame(TEXT, b"x" * 300),
        frame(BINARY, b"64-bit length form", length_bits=64),
    ]
)
MIXED_MESSAGES = [
    (TEXT, b'{"op":10,"d":{"heartbeat_interval":41250}}'),
    (BINARY, bytes(range(256)) * 2),
    (TEXT, b"fragmented"),
    (BINARY, b""),
    (TEXT, b"x" * 300),
    (BINARY, b"64-bit length form"),
]


def test_whole_stream_parses_in_one_call() -> None:
    ws = client()
    assert ws.receive_data(MIXED_STREAM) == MIXED_MESSAGES
    assert parse_client_frames(ws.data_to_send()) == [(PONG, b"hi")]


def test_frame_split_at_every_byte_reassembles() -> None:
    for cut in range(len(MIXED_STREAM) + 1):
        ws = client()
        halves = ws.receive_data(MIXED_STREAM[:cut]) + ws.receive_data(MIXED_STREAM[cut:])
        assert halves == MIXED_MESSAGES, cut
        assert parse_client_frames(ws.data_to_send()) == [(PONG, b"hi")]


MIXED_FRAMES = 10


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_a_limit_parses_a_read_in_batches_of_frames_and_leaves_the_rest_unparsed(
    limit: int,
) -> None:
    ws = client()
    first = ws.receive_data(MIXED_STREAM, limit)
    assert first == MIXED_MESSAGES[: min(limit, 2)]  # a ping follows the first two
    assert ws.has_unparsed
    rest = []
    while ws.has_unparsed:
        rest.append(ws.next_messages(limit))
    assert first + [m for batch in rest for m in batch] == MIXED_MESSAGES
    # A batch is ``limit`` frames (control frames and fragments count): never more
    # messages than that, and the stream is done in as many batches as that takes.
    assert all(len(batch) <= limit for batch in rest)
    assert 1 + len(rest) == -(-MIXED_FRAMES // limit)
    assert ws.next_messages(limit) == []
    assert parse_client_frames(ws.data_to_send()) == [(PONG, b"hi")]


def test_a_read_before_the_rest_is_parsed_keeps_the_order() -> None:
    ws = client()
    big = frame(TEXT, b"b" * 1000)
    assert ws.receive_data(big[:10]) == []  # waits for the rest of a 1,004-byte frame
    rest = big[10:] + frame(TEXT, b"1") + frame(TEXT, b"2")
    assert ws.receive_data(rest, 2) == [(TEXT, b"b" * 1000), (TEXT, b"1")]
    assert ws.receive_data(frame(TEXT, b"3")) == [(TEXT, b"2"), (TEXT, b"3")]
    assert not ws.has_unparsed


def test_a_ping_left_unparsed_is_answered_once_it_is_parsed() -> None:
    ws = client()
    data = frame(TEXT, b"one") + frame(TEXT, b"two") + frame(PING, b"late")
    assert ws.receive_data(data, 1) == [(TEXT, b"one")]
    assert ws.data_to_send() == b""
    assert ws.next_messages(5) == [(TEXT, b"two")]
    assert parse_client_frames(ws.data_to_send()) == [(PONG, b"late")]


def test_a_broken_frame_after_a_batch_spares_the_messages_before_it() -> None:
    ws = client()
    data = frame(TEXT, b"good") + frame(TEXT, b"also good") + frame(TEXT, b"x", rsv=1)
    assert ws.receive_data(data, 2) == [(TEXT, b"good"), (TEXT, b"also good")]
    with pytest.raises(ProtocolViolation):
        ws.next_messages(2)
    with pytest.raises(ProtocolViolation):
        ws.receive_data(frame(TEXT, b"more"))


def test_a_broken_frame_is_raised_after_the_messages_before_it_in_the_same_read() -> None:
    ws = client(max_message_size=100)
    data = frame(TEXT, b"ready") + frame(PING, b"p") + frame(TEXT, b"x" * 101) + frame(TEXT, b"b")
    assert ws.receive_data(data) == [(TEXT, b"ready")]
    assert parse_client_frames(ws.data_to_send()) == [(PONG, b"p")]
    assert ws.has_unparsed
    with pytest.raises(ProtocolViolation) as caught:
        ws.next_messages()
    assert caught.value.close_code == 1009
    with pytest.raises(ProtocolViolation):
        ws.receive_data(frame(TEXT, b"more"))


def test_stream_fed_one_byte_at_a_time_reassembles() -> None:
    ws = client()
    data = MIXED_STREAM
    assert [m for i in range(len(data)) for m in ws.receive_data(data[i : i + 1])] == (
        MIXED_MESSAGES
    )


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 200_000])
def test_7_16_and_64_bit_lengths_decode(size: int) -> None:
    payload = bytes(i & 0xFF for i in range(size))
    assert client().receive_data(frame(BINARY, payload)) == [(BINARY, payload)]


@pytest.mark.parametrize("bits", [16, 64])
def test_non_minimal_length_encoding_is_accepted(bits: int) -> None:
    assert client().receive_data(frame(TEXT, b"short", length_bits=bits)) == [(TEXT, b"short")]


def test_fragmented_message_with_interleaved_ping_queues_pong() -> None:
    ws = client()
    data = (
        frame(BINARY, b"one-", fin=False)
        + frame(PING, b"p1")
        + frame(0, b"two-", fin=False)
        + frame(PING, b"")
        + frame(0, b"three")
    )
    assert ws.receive_data(data) == [(BINARY, b"one-two-three")]
    assert parse_client_frames(ws.data_to_send()) == [(PONG, b"p1"), (PONG, b"")]
    assert ws.data_to_send() == b""


def test_pong_is_dropped_silently() -> None:
    ws = client()
    assert ws.receive_data(frame(PONG, b"late") + frame(TEXT, b"a")) == [(TEXT, b"a")]
    assert ws.data_to_send() == b""


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (frame(TEXT, b"hello", mask=b"\x01\x02\x03\x04"), "masked"),
        (frame(TEXT, b"x", rsv=4), "RSV"),
        (frame(TEXT, b"x", rsv=2), "RSV"),
        (frame(TEXT, b"x", rsv=1), "RSV"),
        (frame(PING, b"x", rsv=1), "RSV"),
        (frame(3, b"x"), "opcode"),
        (frame(0xB, b""), "opcode"),
        (frame(PING, b"x", fin=False), "fragmented control"),
        (frame(CLOSE, b"", fin=False), "fragmented control"),
        (frame(PING, b"x" * 126), "125"),
        (frame(0, b"x"), "continuation"),
        (frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"), "fragmented message is open"),
        (frame(TEXT, b"a", fin=False) + frame(BINARY, b"b", fin=False), "fragmented message"),
        (frame(CLOSE, b"\x03"), "single byte"),
        (frame(CLOSE, struct.pack(">H", 1005)), "1005"),
        (frame(CLOSE, struct.pack(">H", 999)), "999"),
        (frame(CLOSE, struct.pack(">H", 2000)), "2000"),
    ],
)
def test_violation_raises_with_close_code_1002(data: bytes, what: str) -> None:
    with pytest.raises(ProtocolViolation, match=what) as caught:
        client().receive_data(data)
    assert caught.value.close_code == 1002


def test_violation_is_sticky() -> None:
    ws = client()
    with pytest.raises(ProtocolViolation):
        ws.receive_data(frame(3, b""))
    with pytest.raises(ProtocolViolation) as again:
        ws.receive_data(frame(TEXT, b"fine"))
    assert again.value.close_code == 1002


@pytest.mark.parametrize("bits", [16, 64])
def test_oversize_detected_from_header_before_payload(bits: int) -> None:
    ws = client(max_message_size=1000)
    header = frame(BINARY, b"x" * 1001, length_bits=bits)[: 4 if bits == 16 else 10]
    with pytest.raises(ProtocolViolation) as caught:
        ws.receive_data(header)  # not one payload byte has arrived
    assert caught.value.close_code == 1009


def test_oversize_fragmented_message_detected_on_the_fragment_header() -> None:
    ws = client(max_message_size=1000)
    assert ws.receive_data(frame(TEXT, b"x" * 600, fin=False)) == []
    with pytest.raises(ProtocolViolation) as caught:
        ws.receive_data(frame(0, b"x" * 401)[:4])
    assert caught.value.close_code == 1009


def test_message_of_exactly_max_size_passes() -> None:
    ws = client(max_message_size=1000)
    assert ws.receive_data(frame(TEXT, b"x" * 1000)) == [(TEXT, b"x" * 1000)]


@pytest.mark.parametrize("size", [0, -1, sys.maxsize + 1])
def test_a_max_message_size_out_of_range_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="max_message_size must be from 1 to"):
        client(max_message_size=size)


def test_a_64_bit_length_within_the_largest_max_size_waits_for_its_payload() -> None:
    ws = client(max_message_size=sys.maxsize)
    header = struct.pack(">BBQ", 0x82, 127, sys.maxsize - 5)
    assert ws.receive_data(header + b"part") == []
    assert not ws.has_unparsed


def test_close_is_returned_and_answered_with_the_same_code() -> None:
    ws = client()
    body = struct.pack(">H", 4004) + b"authentication failed"
    assert ws.receive_data(frame(TEXT, b"last") + frame(CLOSE, body)) == [
        (TEXT, b"last"),
        (CLOSE, body),
    ]
    assert ws.closed_by_peer
    assert ws.close_sent
    assert parse_client_frames(ws.data_to_send()) == [(CLOSE, struct.pack(">H", 4004))]
    assert parse_close(body) == (4004, "authentication failed")


def test_nothing_is_parsed_after_close() -> None:
    ws = client()
    data = frame(CLOSE, b"") + frame(TEXT, b"after") + frame(3, b"invalid")
    assert ws.receive_data(data) == [(CLOSE, b"")]
    assert ws.receive_data(frame(TEXT, b"later")) == []
    assert parse_client_frames(ws.data_to_send()) == [(CLOSE, b"")]


def test_close_after_our_close_gets_no_reply_and_pings_no_pong() -> None:
    ws = client()
    ws.send_close(4000)
    assert ws.receive_data(frame(PING, b"p") + frame(CLOSE, struct.pack(">H", 4000))) == [
        (CLOSE, struct.pack(">H", 4000))
    ]
    assert ws.data_to_send() == b""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", (None, "")),
        (struct.pack(">H", 1000), (1000, "")),
        (struct.pack(">H", 4009) + b"session timed out", (4009, "session timed out")),
        (struct.pack(">H", 4000) + b"\xff\xfe", (4000, "\ufffd\ufffd")),
    ],
)
def test_parse_close(body: bytes, expected: tuple[int | None, str]) -> None:
    assert parse_close(body) == expected


# -- sending --------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 125, 126, 65535, 65536, 100_003])
def test_masking_round_trips(size: int) -> None:
    ws = client()
    payload = bytes((i * 7) & 0xFF for i in range(size))
    assert parse_client_frames(ws.send_text(payload)) == [(TEXT, payload)]
    assert parse_client_frames(ws.send_binary(payload)) == [(BINARY, payload)]


def test_each_frame_gets_a_fresh_mask_key() -> None:
    ws = client()
    keys = {ws.send_text(b"same")[2:6] for _ in range(20)}
    assert len(keys) > 1


def test_ping_frames_and_rejects_long_payloads() -> None:
    ws = client()
    assert parse_client_frames(ws.send_ping(b"x" * 125)) == [(PING, b"x" * 125)]
    with pytest.raises(ValueError, match="125"):
        ws.send_ping(b"x" * 126)


def test_send_close_encodes_code_and_reason_once() -> None:
    assert not client().close_sent
    ws = client()
    data = ws.send_close(4099, "resume later")
    assert parse_client_frames(data) == [(CLOSE, struct.pack(">H", 4099) + b"resume later")]
    assert ws.close_sent
    assert ws.send_close(1000) == b""


def test_send_close_without_code_has_empty_body() -> None:
    assert parse_client_frames(client().send_close(None)) == [(CLOSE, b"")]


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1005, ""), (1006, ""), (999, ""), (5000, ""), (None, "why"), (1000, "x" * 124)],
)
def test_send_close_rejects_unsendable_bodies(code: int | None, reason: str) -> None:
    ws = client()
    with pytest.raises(ValueError):  # noqa: PT011 - several distinct messages
        ws.send_close(code, reason)
    assert not ws.close_sent


# -- handshake ------------------------------------------------------------------


def request_key(request: bytes) -> str:
    for line in request.decode().split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "sec-websocket-key":
            return value.strip()
    raise AssertionError("no Sec-WebSocket-Key")


def response(key: str, *, status: str = "101 Switching Protocols", extra: str = "") -> bytes:
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    return (
        f"HTTP/1.1 {status}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    ).encode()


def test_handshake_request_has_the_upgrade_headers() -> None:
    ws = WebSocketClient(
        "gateway.discord.gg",
        "/?v=10&encoding=json",
        extra_headers=[("User-Agent", "botrun/0.1")],
    )
    request = ws.handshake_request()
    assert request.startswith(b"GET /?v=10&encoding=json HTTP/1.1\r\n")
    assert request.endswith(b"\r\n\r\n")
    lines = request.decode().split("\r\n")
    for header in (
        "Host: gateway.discord.gg",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
        "User-Agent: botrun/0.1",
    ):
        assert header in lines
    assert len(base64.b64decode(request_key(request), validate=True)) == 16


def test_handshake_keys_are_random() -> None:
    ws = client()
    assert request_key(ws.handshake_request()) != request_key(ws.handshake_request())


@pytest.mark.parametrize("bad", ["a\r\nInjected: 1", "a\nb", "nul\0"])
def test_header_injection_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="line break"):
        WebSocketClient("h", "/", extra_headers=[("X-Test", bad)])


def test_good_101_completes_and_returns_leftover_frame_bytes() -> None:
    ws = client()
    key = request_key(ws.handshake_request())
    first = frame(TEXT, b'{"op":10}')
    leftover = ws.receive_handshake(response(key) + first[:3])
    assert leftover == first[:3]
    assert ws.receive_data(leftover) == []
    assert ws.receive_data(first[3:]) == [(TEXT, b'{"op":10}')]


def test_good_101_with_nothing_after_returns_empty_bytes() -> None:
    ws = client()
    key = request_key(ws.handshake_request())
    assert ws.receive_handshake(response(key)) == b""


def test_handshake_head_split_at_every_byte() -> None:
    probe = client()
    key = request_key(probe.handshake_request())
    data = response(key, extra="Connection: keep-alive\r\nServer: test\r\n") + b"\x81\x00"
    for cut in range(1, len(data)):
        ws = client()
        ws._key = key  # same key so one response fits every client
        first = ws.receive_handshake(data[:cut])
        if first is None:
            first = ws.receive_handshake(data[cut:])
        else:
            first += data[cut:]
        assert first == b"\x81\x00", cut


def test_connection_header_token_list_and_case_are_accepted() -> None:
    ws = client()
    key = request_key(ws.handshake_request())
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    data = (
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\n"
        f"connection: keep-alive, upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
    ).encode()
    assert ws.receive_handshake(data) == b""


def test_wrong_accept_is_a_protocol_violation() -> None:
    ws = client()
    ws.handshake_request()
    with pytest.raises(ProtocolViolation, match="Sec-WebSocket-Accept"):
        ws.receive_handshake(response("dGhlIHNhbXBsZSBub25jZQ=="))


@pytest.mark.parametrize(
    ("mangle", "what"),
    [
        (lambda r: r.replace(b"Upgrade: websocket", b"Upgrade: h2c"), "Upgrade"),
        (lambda r: r.replace(b"Connection: Upgrade", b"Connection: close"), "Connection"),
        (lambda r: r.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: x\r\n\r\n"), "extension"),
        (lambda r: r.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Protocol: x\r\n\r\n"), "subprotocol"),
        (lambda r: r.replace(b"HTTP/1.1 101", b"HTTP/1.1 1O1"), "status line"),
        (lambda r: r.replace(b"\r\nUpgrade:", b"\r\nno colon here\r\nUpgrade:"), "header line"),
    ],
)
def test_bad_upgrade_response_is_a_protocol_violation(
    mangle: Callable[[bytes], bytes], what: str
) -> None:
    ws = client()
    key = request_key(ws.handshake_request())
    with pytest.raises(ProtocolViolation, match=what):
        ws.receive_handshake(mangle(response(key)))


@pytest.mark.parametrize(("status", "code"), [("401 Unauthorized", 401), ("429 Too Many", 429)])
def test_non_101_status_raises_handshake_error(status: str, code: int) -> None:
    ws = client()
    key = request_key(ws.handshake_request())
    with pytest.raises(HandshakeError, match=str(code)) as caught:
        ws.receive_handshake(response(key, status=status) + b'{"message": "401: Unauthorized"}')
    assert caught.value.status == code


def test_response_head_over_64_kib_is_refused() -> None:
    ws = client()
    ws.handshake_request()
    assert ws.receive_handshake(b"HTTP/1.1 101 Switching Protocols\r\n") is None
    padding = b"X-Padding: " + b"a" * 1000 + b"\r\n"
    assert ws.receive_handshake(padding * 60) is None
    with pytest.raises(ProtocolViolation, match="64 KiB"):
        ws.receive_handshake(padding * 5)


# -- property -------------------------------------------------------------------

Pong = tuple[int, bytes]


@st.composite
def pings(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, bytes]], list[Pong]]:
    payload = draw(st.binary(max_size=125))
    return frame(PING, payload), [], [(PONG, payload)]


@st.composite
def data_messages(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, bytes]], list[Pong]]:
    """One text or binary message, randomly fragmented, with pings between fragments."""
    opcode = draw(st.sampled_from([TEXT, BINARY]))
    payload = draw(st.binary(max_size=700))
    bits = draw(st.sampled_from([None, 16, 64]))
    cuts = draw(st.lists(st.integers(0, len(payload)), max_size=4))
    bounds = [0, *sorted(cuts), len(payload)]
    wire = b""
    pongs: list[Pong] = []
    for i, (start, end) in enumerate(itertools.pairwise(bounds)):
        last = i == len(bounds) - 2
        wire += frame(opcode if i == 0 else 0, payload[start:end], fin=last, length_bits=bits)
        if not last and draw(st.booleans()):
            ping_payload = draw(st.binary(max_size=10))
            wire += frame(PING, ping_payload)
            pongs.append((PONG, ping_payload))
    return wire, [(opcode, payload)], pongs


@settings(max_examples=300, deadline=None)
@given(items=st.lists(st.one_of(pings(), data_messages()), max_size=12), data=st.data())
def test_random_frame_sequences_in_random_chunks_yield_expected_messages(
    items: list[tuple[bytes, list[tuple[int, bytes]], list[Pong]]], data: st.DataObject
) -> None:
    wire = b"".join(item[0] for item in items)
    expected_messages = [message for item in items for message in item[1]]
    expected_pongs = [pong for item in items for pong in item[2]]
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=20), label="chunk cuts")
    limit = data.draw(st.integers(0, 4), label="messages per batch (0: all)")
    ws = client()
    assert feed_in_chunks(ws, wire, cuts, limit) == expected_messages
    assert parse_client_frames(ws.data_to_send()) == expected_pongs
