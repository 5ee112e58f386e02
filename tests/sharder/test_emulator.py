"""The Discord emulator, tested over loopback with a minimal raw websocket client.

The client below is deliberately not the project's shard: wsproto's client
role, an anyio TCP stream and a zlib/zstd inflater, so these tests check the
emulator against the protocol rather than against our own client.
"""

from __future__ import annotations

import json
import ssl
import zlib
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode, urlsplit

import anyio
import httpx
import pytest
import trustme
import zstandard
from anyio.abc import ByteStream
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Message,
    Ping,
    Request,
    TextMessage,
)

from sharder.testing import FakeDiscord

TOKEN = "emulator-token"
GUILD_MESSAGES = 1 << 9
STEP_TIMEOUT = 5.0
"""Seconds any single client step may take before the test fails instead of hanging."""


class ServerClosed(Exception):
    """The server sent a close frame."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"server closed with {code}: {reason}")
        self.code = code
        self.reason = reason


class RawClient:
    """Just enough of a gateway client to drive the emulator by hand."""

    def __init__(self, stream: ByteStream, compress: str | None) -> None:
        self.stream = stream
        self.compress = compress
        self.frames: list[tuple[bytes, bool]] = []
        self.reads = 0
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._events: deque[Event] = deque()
        self._zlib = zlib.decompressobj()
        self._zlib_buffer = bytearray()
        self._zstd = zstandard.ZstdDecompressor().decompressobj()

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        path: str = "/",
        query: dict[str, str] | None = None,
        compress: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> RawClient:
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        if ssl_context is None:
            stream: ByteStream = await anyio.connect_tcp(parts.hostname, parts.port)
        else:
            stream = await anyio.connect_tcp(
                parts.hostname, parts.port, ssl_context=ssl_context, tls_standard_compatible=False
            )
        client = cls(stream, compress)
        params = {"v": "10", "encoding": "json"} if query is None else dict(query)
        if compress:
            params["compress"] = compress
        target = f"{path}?{urlencode(params)}"
        await stream.send(client._ws.send(Request(host=parts.netloc, target=target)))
        assert isinstance(await client._next_event(), AcceptConnection)
        return client

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await anyio.aclose_forcefully(self.stream)

    async def send(self, payload: dict[str, Any]) -> None:
        await self.send_text(_dumps(payload))

    async def send_text(self, text: str) -> None:
        await self.stream.send(self._ws.send(TextMessage(data=text)))

    async def receive(self) -> dict[str, Any]:
        """The next payload, decompressed; raises ServerClosed on a close frame."""
        data, binary = await self._receive_message()
        self.frames.append((data, binary))
        if self.compress == "zlib-stream":
            self._zlib_buffer += data
            while not self._zlib_buffer.endswith(b"\x00\x00\xff\xff"):
                more, _ = await self._receive_message()
                self._zlib_buffer += more
            data = self._zlib.decompress(bytes(self._zlib_buffer))
            self._zlib_buffer.clear()
        elif self.compress == "zstd-stream":
            data = self._zstd.decompress(data)
        elif binary:
            data = zlib.decompress(data)
        return _loads(data)

    async def receive_until(self, *, op: int | None = None, t: str | None = None) -> dict[str, Any]:
        while True:
            payload = await self.receive()
            if (op is None or payload["op"] == op) and (t is None or payload["t"] == t):
                return payload

    async def expect_close(self) -> ServerClosed:
        """Read until the server's close frame and return it."""
        try:
            while True:
                await self.receive()
        except ServerClosed as closed:
            return closed

    async def hello(self) -> dict[str, Any]:
        payload = await self.receive()
        assert payload["op"] == 10
        return payload

    async def identify(
        self, *, token: str = TOKEN, shard: tuple[int, int] = (0, 1), **extra: Any
    ) -> None:
        d = {
            "token": token,
            "intents": GUILD_MESSAGES,
            "properties": {"os": "linux", "browser": "raw", "device": "raw"},
            "shard": list(shard),
            **extra,
        }
        await self.send({"op": 2, "d": d})

    async def resume(self, session_id: str, seq: int, token: str = TOKEN) -> None:
        await self.send({"op": 6, "d": {"token": token, "session_id": session_id, "seq": seq}})

    async def close(self, code: int) -> None:
        """Send a close frame and wait for the server's answer."""
        await self.stream.send(self._ws.send(CloseConnection(code=code)))
        while self._ws.state is not ConnectionState.CLOSED:
            await self._next_event()  # messages sent before the server saw our close
        await anyio.aclose_forcefully(self.stream)

    async def _receive_message(self) -> tuple[bytes, bool]:
        parts: list[bytes] = []
        while True:
            event = await self._next_event()
            if isinstance(event, Message):
                data = event.data
                parts.append(data.encode() if isinstance(data, str) else bytes(data))
                if event.message_finished:
                    return b"".join(parts), not isinstance(event, TextMessage)
            elif isinstance(event, Ping):
                await self.stream.send(self._ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    await self.stream.send(self._ws.send(event.response()))
                raise ServerClosed(event.code, event.reason or "")

    async def _next_event(self) -> Event:
        with anyio.fail_after(STEP_TIMEOUT):
            while not self._events:
                self._events.extend(self._ws.events())
                if not self._events:
                    self._ws.receive_data(await self.stream.receive())
                    self.reads += 1
        return self._events.popleft()


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))


def _loads(data: bytes) -> dict[str, Any]:
    result = json.loads(data)
    assert isinstance(result, dict)
    return result


def shard_for(guild_id: int, total: int) -> int:
    return FakeDiscord.shard_for_guild(guild_id, total)


async def _ready_client(
    discord: FakeDiscord, shard: tuple[int, int] = (0, 1), **connect: Any
) -> tuple[RawClient, dict[str, Any]]:
    client = await RawClient.connect(discord.gateway_url, **connect)
    await client.hello()
    await client.identify(shard=shard)
    ready = await client.receive_until(t="READY")
    return client, ready


@asynccontextmanager
async def _ready(
    discord: FakeDiscord, **connect: Any
) -> AsyncIterator[tuple[RawClient, dict[str, Any]]]:
    client, ready = await _ready_client(discord, **connect)
    async with client:
        yield client, ready


# -- REST -------------------------------------------------------------------------------


async def test_gateway_bot_reports_url_shards_and_session_start_limit() -> None:
    async with (
        FakeDiscord(shards=3, max_concurrency=2, session_start_remaining=7) as discord,
        httpx.AsyncClient(base_url=discord.api_base) as http,
    ):
        response = await http.get("/gateway/bot", headers={"Authorization": f"Bot {TOKEN}"})
        unauthenticated = await http.get("/gateway/bot", headers={"Authorization": "Bot nope"})
        gateway = await http.get("/gateway")
    assert response.status_code == 200
    body = response.json()
    assert body["url"] == discord.gateway_url
    assert body["shards"] == 3
    limit = body["session_start_limit"]
    assert (limit["total"], limit["remaining"], limit["max_concurrency"]) == (1000, 7, 2)
    assert 86_000_000 < limit["reset_after"] <= 86_400_000
    assert unauthenticated.status_code == 401
    assert unauthenticated.json() == {"message": "401: Unauthorized", "code": 0}
    assert gateway.json() == {"url": discord.gateway_url}


async def test_created_messages_are_recorded_without_the_authorization_header() -> None:
    async with FakeDiscord() as discord, httpx.AsyncClient(base_url=discord.api_base) as http:
        headers = {"Authorization": f"Bot {TOKEN}"}
        created = await http.post(
            "/channels/42/messages", json={"content": "pong"}, headers=headers
        )
        missing = await http.get("/nowhere", headers=headers)
    assert created.status_code == 200
    assert created.json()["content"] == "pong"
    assert created.json()["channel_id"] == "42"
    [message] = discord.messages
    assert (message.channel_id, message.body) == (42, {"content": "pong"})
    assert "authorization" not in message.headers
    assert missing.status_code == 404


# -- connecting -------------------------------------------------------------------------


async def test_identify_gets_hello_then_ready_with_shard_and_resume_url() -> None:
    async with (
        FakeDiscord(heartbeat_interval=0.25, shards=2) as discord,
        await RawClient.connect(discord.gateway_url) as client,
    ):
        hello = await client.hello()
        await client.identify(shard=(1, 2))
        ready = await client.receive_until(t="READY")
        connected = discord.connected_shards()
    assert hello == {"t": None, "s": None, "op": 10, "d": {"heartbeat_interval": 250}}
    assert client.frames[0][0].startswith(b'{"t":null,"s":null,"op":10')
    d = ready["d"]
    assert ready["s"] == 1
    assert d["shard"] == [1, 2]
    assert d["v"] == 10
    assert d["resume_gateway_url"] == f"{discord.gateway_url}/resume"
    assert d["user"]["username"] == "botrun-emulator"
    assert d["user"]["bot"] is True
    assert discord.sessions[d["session_id"]].shard == 1
    assert connected == {1}


async def test_heartbeat_is_acked_and_recorded() -> None:
    async with FakeDiscord() as discord, _ready(discord) as (client, _):
        await client.send({"op": 1, "d": 1})
        ack = await client.receive_until(op=11)
        await discord.wait_for("heartbeat_ack")
    assert ack["t"] is None
    assert ack["s"] is None
    [heartbeat] = discord.entries("heartbeat", shard_id=0)
    assert heartbeat.detail == {"seq": 1}


@pytest.mark.parametrize("compress", ["zlib-stream", "zstd-stream"])
async def test_transport_compressed_payloads_decode(compress: str) -> None:
    async with (
        FakeDiscord(guilds_per_shard=2) as discord,
        _ready(discord, shard=(1, 3), compress=compress) as (client, ready),
    ):
        creates = [await client.receive_until(t="GUILD_CREATE") for _ in range(2)]
        seq = await discord.dispatch(1, "MESSAGE_CREATE", {"content": "x" * 5000})
        message = await client.receive_until(t="MESSAGE_CREATE")
    assert len(ready["d"]["guilds"]) == 2
    assert all(shard_for(int(c["d"]["id"]), 3) == 1 for c in creates)
    assert message["s"] == seq
    assert message["d"]["content"] == "x" * 5000
    assert all(binary for _, binary in client.frames)


async def test_identify_compress_sends_big_payloads_as_standalone_zlib() -> None:
    async with FakeDiscord() as discord, await RawClient.connect(discord.gateway_url) as client:
        await client.hello()
        await client.identify(compress=True)
        await client.receive_until(t="READY")
        await discord.dispatch(0, "MESSAGE_CREATE", {"content": "y" * 2000})
        big = await client.receive_until(t="MESSAGE_CREATE")
    assert big["d"]["content"] == "y" * 2000
    assert [binary for _, binary in client.frames] == [False, False, True]


async def test_frames_written_in_small_pieces_still_decode() -> None:
    async with (
        FakeDiscord(write_chunk_size=7) as discord,
        _ready(discord, compress="zlib-stream") as (client, ready),
    ):
        await discord.dispatch(0, "TYPING_START", {"user_id": "1"})
        typing = await client.receive_until(t="TYPING_START")
    assert ready["d"]["shard"] == [0, 1]
    assert typing["d"] == {"user_id": "1"}
    assert client.reads > 2 * len(client.frames)


async def test_bad_websocket_upgrade_is_answered_with_an_http_error() -> None:
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade"}
    async with FakeDiscord() as discord, httpx.AsyncClient() as http:
        response = await http.get(f"{discord.api_base}/?v=10", headers=upgrade)
    assert response.status_code in (400, 426)
    assert discord.entries("connect") == []


async def test_invalid_version_closes_4012_after_hello_and_etf_is_refused() -> None:
    async with FakeDiscord() as discord:
        async with await RawClient.connect(discord.gateway_url, query={"v": "8"}) as client:
            await client.hello()
            version = await client.expect_close()
        etf = {"v": "10", "encoding": "etf"}
        async with await RawClient.connect(discord.gateway_url, query=etf) as client:
            encoding = await client.expect_close()
    assert version.code == 4012
    assert encoding.code == 4002
    assert "etf" in encoding.reason


async def test_wss_and_https_work_with_an_ssl_context() -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    async with FakeDiscord(ssl_context=server_context) as discord:
        assert discord.gateway_url.startswith("wss://")
        async with _ready(discord, ssl_context=client_context) as (_, ready):
            assert ready["d"]["resume_gateway_url"].startswith("wss://")
        async with httpx.AsyncClient(verify=client_context) as http:
            response = await http.get(f"{discord.api_base}/gateway")
    assert response.json() == {"url": discord.gateway_url}


# -- identify rules ---------------------------------------------------------------------


async def test_bad_token_closes_with_4004() -> None:
    async with FakeDiscord() as discord, await RawClient.connect(discord.gateway_url) as client:
        await client.hello()
        await client.identify(token="wrong")
        closed = await client.expect_close()
    assert closed.code == 4004
    assert not discord.sessions
    assert all("wrong" not in repr(entry) for entry in discord.timeline)


async def test_same_bucket_identify_too_early_is_a_violation_answered_with_op9_false() -> None:
    async with (
        FakeDiscord(shards=2, max_concurrency=1) as discord,
        _ready(discord, shard=(0, 2)),
        await RawClient.connect(discord.gateway_url) as second,
    ):
        await second.hello()
        await second.identify(shard=(1, 2))
        invalid = await second.receive()
    assert invalid == {"t": None, "s": None, "op": 9, "d": False}
    [violation] = discord.violations
    assert violation.startswith("identify-concurrency")
    assert [e.detail["bucket"] for e in discord.entries("identify")] == [0, 0]
    assert discord.entries("invalid_session_sent")[0].detail == {"resumable": False}


async def test_identify_without_session_starts_left_is_a_violation() -> None:
    async with (
        FakeDiscord(shards=2, max_concurrency=2, session_start_remaining=1) as discord,
        _ready(discord, shard=(0, 2)),
        await RawClient.connect(discord.gateway_url) as second,
    ):
        await second.hello()
        await second.identify(shard=(1, 2))
        invalid = await second.receive()
    assert invalid["op"] == 9
    assert invalid["d"] is False
    assert [v.split(":")[0] for v in discord.violations] == ["daily-limit"]


async def test_different_buckets_may_identify_together() -> None:
    async with (
        FakeDiscord(shards=2, max_concurrency=2) as discord,
        _ready(discord, shard=(0, 2)),
        _ready(discord, shard=(1, 2)),
    ):
        assert discord.connected_shards() == {0, 1}
    assert discord.violations == []


@pytest.mark.parametrize(
    ("identify", "code"),
    [
        ({"shard": [2, 2]}, 4010),
        ({"intents": 1 << 17}, 4013),
        ({"intents": 1 << 1}, 4014),
    ],
)
async def test_invalid_identify_closes_with_its_code(identify: dict[str, Any], code: int) -> None:
    async with (
        FakeDiscord(privileged_intents_allowed=False) as discord,
        await RawClient.connect(discord.gateway_url) as client,
    ):
        await client.hello()
        await client.identify(**identify)
        closed = await client.expect_close()
    assert closed.code == code


async def test_second_identify_on_one_connection_closes_with_4005() -> None:
    async with FakeDiscord(identify_window=0.0) as discord, _ready(discord) as (client, _):
        await client.identify()
        closed = await client.expect_close()
    assert closed.code == 4005


# -- resuming ---------------------------------------------------------------------------


async def test_resume_replays_exactly_the_missed_events_then_resumed() -> None:
    async with FakeDiscord() as discord:
        client, ready = await _ready_client(discord)
        session_id = ready["d"]["session_id"]
        async with client:
            await discord.dispatch(0, "TYPING_START", {"n": 1})
            seen = await client.receive_until(t="TYPING_START")
            await client.close(4099)
        missed = await discord.dispatch_many(0, [("TYPING_START", {"n": n}) for n in (2, 3)])
        resume_url = ready["d"]["resume_gateway_url"]
        async with await RawClient.connect(resume_url, path="/resume") as again:
            await again.hello()
            await again.resume(session_id, seen["s"])
            replayed = [await again.receive() for _ in range(3)]
    assert [p["s"] for p in replayed] == [*missed, missed[-1] + 1]
    assert [p["d"] for p in replayed[:2]] == [{"n": 2}, {"n": 3}]
    assert replayed[2]["t"] == "RESUMED"
    [resumed] = discord.entries("resumed", shard_id=0)
    assert resumed.detail == {"replayed": 2}
    assert discord.entries("connect")[-1].detail["path"] == "/resume"
    assert discord.entries("resume")[0].detail == {"seq": seen["s"], "path": "/resume"}


async def test_client_close_1000_invalidates_the_session_while_4099_keeps_it() -> None:
    async with FakeDiscord(identify_window=0.0) as discord:
        client, kept = await _ready_client(discord)
        await client.close(4099)
        await discord.wait_for("disconnect")
        assert discord.sessions[kept["d"]["session_id"]].attached is False
        client, ended = await _ready_client(discord, shard=(0, 1))
        await client.close(1000)
        await discord.wait_for("disconnect", count=2)
        assert ended["d"]["session_id"] not in discord.sessions
        async with await RawClient.connect(discord.gateway_url) as late:
            await late.hello()
            await late.resume(ended["d"]["session_id"], 1)
            invalid = await late.receive()
    assert invalid["op"] == 9
    assert invalid["d"] is False
    codes = [e.detail["code"] for e in discord.entries("client_close")]
    assert codes == [4099, 1000]


async def test_dispatch_while_detached_is_replayed_on_resume() -> None:
    async with FakeDiscord(identify_window=0.0) as discord:
        client, ready = await _ready_client(discord)
        async with client:
            await discord.drop(0)
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await client.receive()
        assert discord.connected_shards() == set()
        seq = await discord.dispatch(0, "MESSAGE_CREATE", {"content": "while away"})
        async with await RawClient.connect(discord.gateway_url) as again:
            await again.hello()
            await again.resume(ready["d"]["session_id"], ready["s"])
            message = await again.receive()
            resumed = await again.receive()
    assert (message["s"], message["d"]["content"]) == (seq, "while away")
    assert resumed["t"] == "RESUMED"
    assert resumed["s"] == seq + 1


async def test_resume_with_a_future_seq_closes_4007_and_ends_the_session() -> None:
    async with FakeDiscord() as discord:
        client, ready = await _ready_client(discord)
        await client.close(4099)
        async with await RawClient.connect(discord.gateway_url) as again:
            await again.hello()
            await again.resume(ready["d"]["session_id"], 99)
            closed = await again.expect_close()
    assert closed.code == 4007
    assert not discord.sessions


async def test_zombified_connection_is_reset_when_the_client_resumes() -> None:
    async with FakeDiscord() as discord:
        client, ready = await _ready_client(discord)
        async with client:
            discord.zombify(0)
            await client.send({"op": 1, "d": 1})
            await discord.dispatch(0, "TYPING_START", {})
            async with await RawClient.connect(discord.gateway_url) as again:
                await again.hello()
                await again.resume(ready["d"]["session_id"], ready["s"])
                replay = await again.receive()
                await again.receive_until(t="RESUMED")
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await client.receive()
    assert replay["t"] == "TYPING_START"
    assert discord.entries("heartbeat_ack") == []
    assert "replaced" in [e.detail["reason"] for e in discord.entries("disconnect")]


# -- server faults ----------------------------------------------------------------------


async def test_server_close_4009_ends_the_session_while_4000_keeps_it() -> None:
    async with FakeDiscord(identify_window=0.0) as discord:
        async with _ready(discord) as (client, ready):
            await discord.close_shard(0, 4000)
            assert (await client.expect_close()).code == 4000
        assert ready["d"]["session_id"] in discord.sessions
        async with _ready(discord) as (client, ready):
            await discord.close_shard(0, 4009, "timed out")
            closed = await client.expect_close()
        assert (closed.code, closed.reason) == (4009, "timed out")
        assert ready["d"]["session_id"] not in discord.sessions


async def test_opt_in_heartbeat_timeout_closes_4009_and_ends_the_session() -> None:
    async with (
        FakeDiscord(heartbeat_timeout=0.1) as discord,
        _ready(discord) as (client, ready),
    ):
        closed = await client.expect_close()
    assert closed.code == 4009
    assert ready["d"]["session_id"] not in discord.sessions


async def test_reconnect_sends_op7_then_closes_if_the_client_stays() -> None:
    async with FakeDiscord(reconnect_close_delay=0.05) as discord, _ready(discord) as (client, _):
        await discord.reconnect(0)
        reconnect = await client.receive()
        closed = await client.expect_close()
    assert reconnect["op"] == 7
    assert closed.code == 4000


async def test_invalidate_request_heartbeat_send_payload_and_send_raw_reach_the_client() -> None:
    async with FakeDiscord() as discord, _ready(discord) as (client, _):
        await discord.request_heartbeat(0)
        await discord.send_payload(0, {"op": 99, "d": {"x": 1}})
        await discord.send_raw(0, b'{"t":null,"s":null,"op":11,"d":null}', binary=False)
        await discord.invalidate(0, resumable=True)
        received = [await client.receive() for _ in range(4)]
    assert [p["op"] for p in received] == [1, 99, 11, 9]
    assert received[3]["d"] is True


async def _dispatch_without_session() -> None:
    async with FakeDiscord() as discord:
        await discord.dispatch(0, "READY", {})


async def test_dispatch_without_session_raises_lookup_error_through_the_context() -> None:
    with pytest.raises(LookupError, match="shard 0 has no live session"):
        await _dispatch_without_session()


# -- client faults ----------------------------------------------------------------------


async def test_command_flood_closes_with_4008() -> None:
    async with FakeDiscord(command_limit=5) as discord, _ready(discord) as (client, _):
        for n in range(6):
            await client.send({"op": 1, "d": n})
        closed = await client.expect_close()
    assert closed.code == 4008
    assert len(discord.entries("rate_limited")) == 1
    assert discord.entries("server_close")[0].detail["code"] == 4008


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("not json", 4002),
        ('{"op": 1, "d": "' + "x" * 4100 + '"}', 4002),
        ('{"op": 12, "d": null}', 4001),
    ],
)
async def test_bad_client_payloads_close_the_connection(message: str, code: int) -> None:
    async with FakeDiscord() as discord, _ready(discord) as (client, _):
        await client.send_text(message)
        closed = await client.expect_close()
    assert closed.code == code


async def test_commands_before_identify_close_with_4003() -> None:
    async with FakeDiscord() as discord, await RawClient.connect(discord.gateway_url) as client:
        await client.hello()
        await client.send({"op": 3, "d": {"status": "online", "activities": [], "afk": False}})
        closed = await client.expect_close()
    assert closed.code == 4003


# -- requests ---------------------------------------------------------------------------


async def test_member_requests_are_chunked_and_rate_limited_per_guild() -> None:
    async with FakeDiscord(guilds_per_shard=1) as discord, _ready(discord) as (client, ready):
        guild_id = ready["d"]["guilds"][0]["id"]
        request = {"guild_id": guild_id, "query": "", "limit": 0, "nonce": "n1"}
        await client.send({"op": 8, "d": request})
        chunks = [await client.receive_until(t="GUILD_MEMBERS_CHUNK") for _ in range(3)]
        await client.send({"op": 8, "d": request | {"nonce": "n2"}})
        limited = await client.receive_until(t="RATE_LIMITED")
    assert [c["d"]["chunk_index"] for c in chunks] == [0, 1, 2]
    assert {c["d"]["chunk_count"] for c in chunks} == {3}
    assert sum(len(c["d"]["members"]) for c in chunks) == 2500
    assert all(c["d"]["nonce"] == "n1" for c in chunks)
    assert limited["d"]["opcode"] == 8
    assert limited["d"]["meta"] == {"guild_id": guild_id, "nonce": "n2"}
    assert 29 < limited["d"]["retry_after"] <= 30


async def test_voice_state_update_answers_with_state_and_server_updates() -> None:
    async with FakeDiscord() as discord, _ready(discord) as (client, ready):
        voice = {"guild_id": "1", "channel_id": "2", "self_mute": False, "self_deaf": True}
        await client.send({"op": 4, "d": voice})
        state = await client.receive()
        server = await client.receive()
    assert state["t"] == "VOICE_STATE_UPDATE"
    assert state["d"]["session_id"] == ready["d"]["session_id"]
    assert state["d"]["channel_id"] == "2"
    assert state["d"]["self_deaf"] is True
    assert server["t"] == "VOICE_SERVER_UPDATE"
    assert server["d"]["endpoint"] == "127.0.0.1:1"
    assert discord.entries("command")[0].detail["op"] == 4


async def test_soundboard_and_channel_info_requests_are_answered_per_guild() -> None:
    async with FakeDiscord() as discord, _ready(discord) as (client, _):
        await client.send({"op": 31, "d": {"guild_ids": ["10", "20"]}})
        sounds = [await client.receive_until(t="SOUNDBOARD_SOUNDS") for _ in range(2)]
        await client.send({"op": 43, "d": {"guild_id": "10", "fields": ["status"]}})
        info = await client.receive_until(t="CHANNEL_INFO")
    assert [s["d"]["guild_id"] for s in sounds] == ["10", "20"]
    assert all(s["d"]["soundboard_sounds"] for s in sounds)
    assert info["d"]["guild_id"] == "10"
    assert all(set(channel) == {"id", "status"} for channel in info["d"]["channels"])


# -- timeline ---------------------------------------------------------------------------


async def test_timeline_tells_the_story_of_a_connection_without_the_token() -> None:
    async with FakeDiscord() as discord:
        client, _ = await _ready_client(discord)
        await client.send({"op": 1, "d": 1})
        await client.receive_until(op=11)
        await client.close(4099)
        await discord.wait_for("disconnect")
    kinds = [entry.kind for entry in discord.timeline]
    assert kinds == [
        "connect",
        "identify",
        "ready",
        "heartbeat",
        "heartbeat_ack",
        "client_close",
        "disconnect",
    ]
    identify = discord.entries("identify")[0]
    assert "token" not in identify.detail
    assert identify.detail["bucket"] == 0
    assert TOKEN not in repr(discord.timeline)


async def test_wait_for_times_out_naming_the_recent_timeline() -> None:
    async with FakeDiscord() as discord, _ready(discord):
        with pytest.raises(TimeoutError, match=r"'resumed'.*connect.*ready"):
            await discord.wait_for("resumed", timeout=0.05)


async def test_chatter_routes_messages_to_the_owning_shard() -> None:
    received: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
    all_received = anyio.Event()

    async def collect(client: RawClient, shard_id: int) -> None:
        while True:
            received[shard_id].append(await client.receive_until(t="MESSAGE_CREATE"))
            if len(received[0]) + len(received[1]) == 10:
                all_received.set()

    async with (
        FakeDiscord(shards=2, max_concurrency=2) as discord,
        _ready(discord, shard=(0, 2)) as (zero, _),
        _ready(discord, shard=(1, 2)) as (one, _),
        anyio.create_task_group() as readers,
    ):
        readers.start_soon(collect, zero, 0)
        readers.start_soon(collect, one, 1)
        await discord.run_chatter(guilds=4, interval=0.001, messages=10, ping_every=5)
        with anyio.fail_after(STEP_TIMEOUT):
            await all_received.wait()
        readers.cancel_scope.cancel()
    messages = received[0] + received[1]
    assert sum(payload["d"]["content"] == "!ping" for payload in messages) == 2
    for shard_id, payloads in received.items():
        assert all(shard_for(int(p["d"]["guild_id"]), 2) == shard_id for p in payloads)
    assert received[0]
    assert received[1]
