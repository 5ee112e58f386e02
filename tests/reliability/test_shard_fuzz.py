"""Property: whatever the server sends, a shard never dies and always gets back to READY.

Hypothesis feeds three real shards (no compression, zlib-stream, zstd-stream)
random and mutated server frames through the emulator, over a real loopback
websocket: random bytes and text, mutated and truncated JSON, truncated
compressed data, frames over the size limit, unknown opcodes and events, and
known payloads with the wrong types in their known fields. After each example
the emulator dispatches a probe event to the shard's current session, and the
example passes once the shard's listener got it, the shard is READY, its task
is still running and no error was reported.

The sharder runs in an event loop of its own (a blocking portal), started once
per backend, so that each example costs only what the shard needs to recover.

What the strategies leave out on purpose: a dispatch with an integer sequence
number ahead of the session's. The client trusts it (as it must trust
Discord's numbering), takes every later real event for a replayed duplicate
and drops it until the numbers catch up; that is no crash, and it is not
something Discord, behind TLS, can be made to send.
"""

from __future__ import annotations

import itertools
import json
import os
import zlib
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sharder import InternalSharder, ShardStatus
from sharder.testing import FakeDiscord
from tests.sharder.helpers import FAST_OPTIONS, TOKEN, gateway_bot

MAX_MESSAGE = 16 * 1024
SHARDS = {0: None, 1: "zlib-stream", 2: "zstd-stream"}
RECOVERY_TIMEOUT = 20.0
EXAMPLES = int(os.environ.get("BOTRUN_FUZZ_EXAMPLES", "40"))
"""Examples per backend; raise it for a longer hunt."""

# ---------------------------------------------------------------- frames


@dataclass(frozen=True)
class Raw:
    """A websocket message as is, bypassing JSON and the connection's compression."""

    data: bytes
    binary: bool

    def __repr__(self) -> str:
        shown = self.data if len(self.data) <= 80 else self.data[:80] + b"..."
        return f"Raw({shown!r}, binary={self.binary}, {len(self.data)} bytes)"


@dataclass(frozen=True)
class Payload:
    """A payload through the connection's JSON and compression (no session sequence)."""

    payload: dict[str, Any]

    def __repr__(self) -> str:
        text = json.dumps(self.payload)
        return f"Payload({text if len(text) <= 200 else text[:200] + '...'})"


@dataclass(frozen=True)
class Event:
    """A dispatch through the session: a real sequence number, any name, any ``d``."""

    name: str
    data: Any


Frame = Raw | Payload | Event

ints = st.integers(-(2**63), 2**63 - 1)  # what JSON encoders (orjson) can write
json_scalars = st.none() | st.booleans() | ints | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
not_int = json_values.filter(lambda v: type(v) is not int)
known_events = st.sampled_from(
    ["READY", "RESUMED", "MESSAGE_CREATE", "GUILD_CREATE", "GUILD_MEMBERS_CHUNK", "TYPING_START"]
)
event_names = known_events | st.text(max_size=30) | st.from_regex(r"[A-Z_]{1,30}", fullmatch=True)

TEMPLATES: list[dict[str, Any]] = [
    {"op": 0, "t": "MESSAGE_CREATE", "s": None, "d": {"content": "hi", "channel_id": "1"}},
    {"op": 10, "d": {"heartbeat_interval": 41250}},
    {"op": 11},
    {"op": 1, "d": None},
    {"op": 7, "d": None},
    {"op": 9, "d": True},
    {"op": 0, "t": "READY", "s": None, "d": {"session_id": "x", "user": {"id": "1"}}},
]


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, position, value in edits:
        if not out:
            break
        index = position % len(out)
        if kind == 0:
            out[index] = value
        elif kind == 1:
            out.insert(index, value)
        else:
            del out[index]
    return bytes(out)


@st.composite
def mutated_json(draw: st.DrawFn) -> Raw:
    template = json.dumps(draw(st.sampled_from(TEMPLATES))).encode()
    edits = draw(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 500), st.integers(0, 255))))
    data = _mutate(template, edits)
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    binary = draw(st.booleans())
    if not binary:
        data = data.decode("utf-8", "replace").encode()  # a text frame must be UTF-8
    return Raw(data, binary)


@st.composite
def compressed(draw: st.DrawFn) -> Raw:
    """A zlib or zstd frame from a compressor of its own: truncated, or a stream out of context."""
    template = json.dumps(draw(st.sampled_from(TEMPLATES))).encode()
    if draw(st.booleans()):
        compressor = zlib.compressobj()
        data = compressor.compress(template) + compressor.flush(zlib.Z_SYNC_FLUSH)
    else:
        import zstandard

        data = zstandard.ZstdCompressor().compress(template)
    cut = draw(st.integers(0, len(data)))
    data = data[:cut]
    if draw(st.booleans()):
        data += b"\x00\x00\xff\xff"  # the zlib-stream end of message: make the client inflate it
    return Raw(data, True)


oversize = st.integers(1, 4096).map(
    lambda extra: Raw(b'"' + b"x" * (MAX_MESSAGE + extra) + b'"', False)
)
oversize_inflated = st.integers(1, 4096).map(
    lambda extra: Payload(
        {"op": 0, "t": "MESSAGE_CREATE", "s": None, "d": {"c": "x" * (MAX_MESSAGE + extra)}}
    )
)
random_raw = st.builds(Raw, st.binary(max_size=64), st.just(True)) | st.builds(
    Raw, st.text(max_size=64).map(str.encode), st.just(False)
)
sequence_field = st.none() | not_int  # never an integer ahead of the session's (see above)

wrong_types = st.one_of(
    st.fixed_dictionaries({"op": not_int}, optional={"d": json_values, "s": sequence_field}),
    st.fixed_dictionaries(
        {"op": st.just(0), "t": json_values, "s": sequence_field}, optional={"d": json_values}
    ),
    st.fixed_dictionaries({"op": st.just(0), "t": event_names, "s": not_int.filter(bool)}),
    st.fixed_dictionaries({"op": st.just(10)}, optional={"d": json_values}),
    st.fixed_dictionaries(
        {
            "op": st.just(10),
            "d": st.fixed_dictionaries(
                {
                    "heartbeat_interval": json_values
                    | st.integers(100, 3_600_000)
                    | st.floats(100, 1e7)
                }
            ),
        }
    ),
    st.fixed_dictionaries({"op": st.sampled_from([1, 7, 9, 11])}, optional={"d": json_values}),
    st.fixed_dictionaries(
        {"op": ints.filter(lambda op: op not in (0, 1, 7, 9, 10, 11))},
        optional={"d": json_values, "t": json_values, "s": sequence_field},
    ),
    st.dictionaries(st.text(max_size=5), json_values, max_size=4),
).map(Payload)

events = st.builds(Event, event_names, json_values)
frames = st.one_of(
    random_raw, mutated_json(), compressed(), oversize, oversize_inflated, wrong_types, events
)


# ---------------------------------------------------------------- the live target


@dataclass(repr=False)
class Target:
    discord: FakeDiscord
    sharder: InternalSharder
    received: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    errors: list[tuple[int, str]] = field(default_factory=list)
    probes: Iterator[int] = field(default_factory=itertools.count)

    def __repr__(self) -> str:
        return "<the live emulator and sharder>"

    def on_message(self, data: Any, shard_id: int) -> None:
        if isinstance(data, dict) and isinstance(data.get("content"), str):
            self.received[shard_id].add(data["content"])

    def on_error(self, error: Any, shard_id: int) -> None:
        self.errors.append((shard_id, repr(error)))

    def current_session(self, shard_id: int) -> str | None:
        found = None
        for session_id, info in self.discord.sessions.items():
            if info.shard == shard_id:
                found = session_id
        return found

    async def feed(self, shard_id: int, sent: list[Frame]) -> None:
        for frame in sent:
            try:
                if isinstance(frame, Raw):
                    await self.discord.send_raw(shard_id, frame.data, frame.binary)
                elif isinstance(frame, Payload):
                    await self.discord.send_payload(shard_id, frame.payload)
                else:
                    await self.discord.dispatch(shard_id, frame.name, frame.data)
            except LookupError:
                pass  # the connection (or session) is already gone: the shard is recovering
            await anyio.sleep(0.005)
        await self.recover(shard_id)

    async def recover(self, shard_id: int) -> None:
        """Dispatch a probe to the shard's current session until its listener gets it."""
        probe = f"probe-{next(self.probes)}"
        probed: str | None = None
        shard = self.sharder.shards[shard_id]
        with anyio.fail_after(RECOVERY_TIMEOUT):
            while probe not in self.received[shard_id] or shard.status is not ShardStatus.READY:
                session = self.current_session(shard_id)
                if session is not None and session != probed:
                    # A session the shard gave up (or that Discord ended) never delivers it.
                    await self.discord.dispatch(
                        shard_id, "MESSAGE_CREATE", {"content": probe, "channel_id": "1"}
                    )
                    probed = session
                await anyio.sleep(0.01)
        assert shard._running, f"shard {shard_id}'s task ended"
        assert self.errors == [], self.errors


@asynccontextmanager
async def live_target() -> AsyncIterator[Target]:
    async with FakeDiscord(
        token=TOKEN,
        shards=len(SHARDS),
        max_concurrency=len(SHARDS),
        heartbeat_interval=0.5,
        identify_window=0.05,
        session_start_total=100_000,
        session_start_remaining=100_000,
        reconnect_close_delay=0.2,
    ) as discord:
        info = await gateway_bot(discord)
        options = {
            **FAST_OPTIONS,
            "token": TOKEN,
            "intents": 513 | 32768,
            "url": info["url"],
            "max_message_size": MAX_MESSAGE,
            "max_reconnect_delay": 0.2,
            "ready_timeout": 3.0,
            "hello_timeout": 3.0,
            "disabled_events": ["TYPING_START"],
        }
        async with InternalSharder(
            total=len(SHARDS),
            options=options,
            shard_options={i: {"compression": c} for i, c in SHARDS.items()},
            session_start_limit=info["session_start_limit"],
            timeout=0.06,
        ) as sharder:
            target = Target(discord, sharder)
            sharder.on("MESSAGE_CREATE", target.on_message)
            sharder.on("error", target.on_error)
            await sharder.connect()
            for shard_id in SHARDS:
                await target.recover(shard_id)
            yield target


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def live(request: pytest.FixtureRequest) -> Iterator[tuple[BlockingPortal, Target]]:
    with (
        start_blocking_portal(request.param) as portal,
        portal.wrap_async_context_manager(live_target()) as target,
    ):
        yield portal, target


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(shard_id=st.sampled_from(sorted(SHARDS)), sent=st.lists(frames, min_size=1, max_size=4))
def test_bad_server_frames_never_kill_the_shard_and_it_always_gets_back_to_ready(
    live: tuple[BlockingPortal, Target], shard_id: int, sent: list[Frame]
) -> None:
    portal, target = live
    portal.call(target.feed, shard_id, sent)


def test_each_kind_of_bad_frame_on_each_shard(live: tuple[BlockingPortal, Target]) -> None:
    """The kinds the issue names, once each on every shard, whatever hypothesis picked."""
    portal, target = live
    compressor = zlib.compressobj()
    zlib_frame = compressor.compress(b'{"op":11}') + compressor.flush(zlib.Z_SYNC_FLUSH)
    cases: list[Frame] = [
        Raw(b"{not json", False),
        Raw(b"\x00\xff\x10garbage", True),
        Payload({"op": "10", "d": {"heartbeat_interval": "soon"}}),
        Payload({"op": 0, "t": 7, "s": "1", "d": []}),
        Payload({"op": 10, "d": {"heartbeat_interval": -5}}),
        Raw(zlib_frame[: len(zlib_frame) // 2], True),
        Raw(zlib_frame[: len(zlib_frame) // 2] + b"\x00\x00\xff\xff", True),
        Raw(b'"' + b"x" * (MAX_MESSAGE + 10) + b'"', False),
        Payload({"op": 0, "t": "MESSAGE_CREATE", "s": None, "d": {"c": "x" * (MAX_MESSAGE + 10)}}),
        Payload({"op": 42, "d": {"what": "unknown opcode"}}),
        Event("SOME_EVENT_FROM_2030", {"shiny": True}),
        Event("MESSAGE_CREATE", "not an object"),
        Event("READY", {"session_id": 5}),
    ]
    for shard_id in SHARDS:
        for case in cases:
            portal.call(target.feed, shard_id, [case])
