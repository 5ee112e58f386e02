"""The anyio websocket transport against a real wsproto server on 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest
import trustme
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSAttribute, TLSStream
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)

from sharder._transport import (
    MAX_BATCH,
    WebSocketConnection,
    default_ssl_context,
    open_websocket,
)
from sharder._websocket import BINARY, CLOSE, TEXT, parse_close
from sharder.errors import HandshakeError, ProtocolViolation, TransportError

Handler = Callable[[anyio.abc.ByteStream], Awaitable[None]]


class Peer:
    """The server end of one connection, driven by wsproto."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.SERVER)
        self.pending: deque[Event] = deque()

    async def next_event(self) -> Event:
        while not self.pending:
            try:
                data: bytes | None = await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                data = None
            self.ws.receive_data(data)
            self.pending.extend(self.ws.events())
            if data is None and not self.pending:
                raise anyio.EndOfStream
        return self.pending.popleft()

    async def send(self, event: Event) -> None:
        await self.stream.send(self.ws.send(event))

    async def accept(self) -> Request:
        request = await self.next_event()
        assert isinstance(request, Request)
        await self.send(AcceptConnection())
        return request

    async def next_message(self) -> str | bytes | CloseConnection:
        """Return the next whole message, or the close event."""
        text: list[str] = []
        binary: list[bytes] = []
        while True:
            event = await self.next_event()
            if isinstance(event, CloseConnection):
                return event
            if isinstance(event, Ping):
                await self.send(event.response())
            elif isinstance(event, TextMessage):
                text.append(event.data)
                if event.message_finished:
                    return "".join(text)
            elif isinstance(event, BytesMessage):
                binary.append(bytes(event.data))
                if event.message_finished:
                    return b"".join(binary)


@asynccontextmanager
async def serve(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """Run ``handler`` for every connection to 127.0.0.1:<port>; yield the port."""

    async def guarded(raw: anyio.abc.SocketStream) -> None:
        async with raw:
            stream: anyio.abc.ByteStream = raw
            try:
                if tls is not None:
                    stream = await TLSStream.wrap(
                        raw, server_side=True, ssl_context=tls, standard_compatible=False
                    )
                await handler(stream)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass
            except (ssl.SSLError, OSError):
                pass

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, guarded)
        yield listener.extra(SocketAttribute.local_port)
        tg.cancel_scope.cancel()


async def receive_messages(conn: WebSocketConnection, count: int) -> list[tuple[int, bytes]]:
    messages: list[tuple[int, bytes]] = []
    with anyio.fail_after(5):
        while len(messages) < count:
            messages += await conn.receive()
    return messages


async def echo(stream: anyio.abc.ByteStream) -> None:
    peer = Peer(stream)
    await peer.accept()
    while True:
        message = await peer.next_message()
        if isinstance(message, CloseConnection):
            if peer.ws.state is ConnectionState.REMOTE_CLOSING:  # not after a bare EOF
                await peer.send(message.response())
            return
        await peer.send(TextMessage(message) if isinstance(message, str) else BytesMessage(message))


# -- happy paths ----------------------------------------------------------------


async def test_echo_round_trip() -> None:
    async with serve(echo) as port:
        conn = await open_websocket(f"ws://127.0.0.1:{port}/?v=10&encoding=json")
        await conn.send_text(b'{"op":1,"d":null}')
        assert await receive_messages(conn, 1) == [(TEXT, b'{"op":1,"d":null}')]
        await conn.close(1000)


async def test_query_string_host_and_extra_headers_reach_the_server() -> None:
    seen: list[Request] = []

    async def record(stream: anyio.abc.ByteStream) -> None:
        peer = Peer(stream)
        seen.append(await peer.accept())
        await peer.next_message()

    async with serve(record) as port:
        conn = await open_websocket(
            f"ws://127.0.0.1:{port}/gateway?v=10&encoding=json",
            extra_headers=[("User-Agent", "DiscordBot (botrun, 0.1)")],
        )
        await conn.close(1000)
    [request] = seen
    assert request.target == "/gateway?v=10&encoding=json"
    assert request.host == f"127.0.0.1:{port}"
    assert (b"user-agent", b"DiscordBot (botrun, 0.1)") in request.extra_headers


async def test_frames_sent_with_the_upgrade_response_are_kept() -> None:
    async def eager(stream: anyio.abc.ByteStream) -> None:
        peer = Peer(stream)
        assert isinstance(await peer.next_event(), Request)
        hello = peer.ws.send(AcceptConnection()) + peer.ws.send(Message(data='{"op":10}'))
        await stream.send(hello)  # one write: the frame rides with the 101 response
        await peer.next_message()

    async with serve(eager) as port:
        conn = await open_websocket(f"ws://127.0.0.1:{port}/")
        assert await conn.receive() == [(TEXT, b'{"op":10}')]
        await conn.abort()


async def test_a_read_is_handed_over_a_slice_at_a_time_with_a_checkpoint_between() -> None:
    # Unless the caller says its last slice gave other tasks nothing to do. A cancelled
    # scope shows which calls checkpoint: a checkpoint is where it strikes.
    async def burst(stream: anyio.abc.ByteStream) -> None:
        peer = Peer(stream)
        await peer.accept()
        frames = [peer.ws.send(Message(data=b"%d" % i)) for i in range(3 * MAX_BATCH)]
        await stream.send(b"".join(frames))  # one write: one read
        await peer.next_message()

    async with serve(burst) as port:
        conn = await open_websocket(f"ws://127.0.0.1:{port}/")
        first = await receive_messages(conn, 1)
        assert len(first) == MAX_BATCH
        second: list[tuple[int, bytes]] = []
        with anyio.CancelScope() as scope:
            scope.cancel()
            second = await conn.receive(pause=False)
            await conn.receive()
        assert len(second) == MAX_BATCH  # handed over without a checkpoint
        assert scope.cancelled_caught  # the next call checkpointed
        third = await conn.receive()
        assert [p for _, p in first + second + third] == [b"%d" % i for i in range(3 * MAX_BATCH)]
        await conn.abort()


async def test_server_ping_gets_our_pong() -> None:
    pongs: list[bytes] = []

    async def pinger(stream: anyio.abc.ByteStream) -> None:
        peer = Peer(stream)
        await peer.accept()
        await peer.send(Ping(payload=b"are you there"))
        event = await peer.next_event()
        assert isinstance(event, Pong)
        pongs.append(bytes(event.payload))
        await peer.send(Message(data=b"pong seen"))
        await peer.next_message()

    async with serve(pinger) as port:
        conn = await open_websocket(f"ws://127.0.0.1:{port}/")
        assert await receive_messages(conn, 1) == [(BINARY, b"pong seen")]
        await conn.abort()
    assert pongs == [b"are you there"]


async def test_concurrent_senders_never_interleave_frames() -> None:
    payloads = [bytes([65 + task]) * size for task in range(3) for size in (10, 300, 20_000) * 4]

    async with serve(echo) as port:
        conn = await open_websocket(f"ws://127.0.0.1:{port}/")

        async def sender(task: int) -> None:
            for payload in payloads:
                if payload[0] == 65 + task:
                    await conn.send_text(payload)

        async with anyio.create_task_group() as tg:
            for task in range(3):
                tg.start_soon(sender, task)
            echoed = await receive_messages(conn, len(payloads))
        await conn.close(1000)
    assert sorted(payload for _, payload in echoed) == sorted(payloads)


# -- closing --------------------------------------------------------------------


async def test_server_close_is_returned_with_its_code_and_echoed() -> None:
    replies: list[int | None] = []

    async def closer(stream: anyio.abc.ByteStream) -> None:
        peer = Peer(stream)
        await peer.accept()
        await peer.send(CloseConnection(code=4004, reason="Authentication failed."))
        event = await peer.next_event()
        assert isinstance(event, CloseConnection)
        replies.append(event.code)

    async with serve(closer) as port:
        conn = await open_websocket(f"ws://127.0.0.1:{port}/")
        [(opcode, body)] = await receive_messages(conn, 1)
        assert opcode == CLOSE
        assert parse_close(body) == (4004, "Authentication failed.")
        with pytest.raises(TransportError), anyio.fail_after(5):
            await conn.receive()  # the server hangs up after our reply
        with pytest.raises(TransportError, match="closing"):
            await conn.send_text(b"too late")
        await conn.close(4000)
    assert replies == [4004]


async def test_our_close_completes_the_closing_handshake() -> None:
    closes: list[tuple[int, str | None]] = []

    async def answerer(stream: anyio.abc.ByteStream) -> None:
        peer = Peer(stream)
        await peer.accept()
        event = await peer.next_message()
        assert isinstance(event, CloseConnection)
        closes.append((event.code, event.reason))
        await peer.send(event.response())

    async with serve(answerer) as port:
        conn = await open_websocket(f"ws://127.0.0.1:{port}/")
        with anyio.fail_after(1):  # far below the 5 s timeout: the reply ended it
            await conn.close(4000, "zombie", timeout=5)
        await conn.close(4000)  # idempotent
        with pytest.raises(TransportError):
            await conn.receive()
        with pytest.raises(TransportError):
            await conn.send_text(b"{}")
    assert closes == [(4000, "zombie")]


async def test_close_takes_over_from_a_task_blocked_in_receive() -> None:
    async with serve(echo) as port:
        conn = await open_websocket(f"ws://127.0.0.1:{port}/")
        seen: list[object] = []

        async def reader() -> None:
            try:
                while True:
                    seen.extend(await conn.receive())
            except TransportError as exc:
                seen.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.wait_all_tasks_blocked()
            with anyio.fail_after(1):
                await conn.close(4000, timeout=5)
    assert isinstance(seen[-1], TransportError)


async def test_close_gives_up_after_timeout_when_the_server_ignores_it() -> None:
    async def deaf(stream: anyio.abc.ByteStream) -> None:
        await Peer(stream).accept()
        await anyio.sleep_forever()

    async with serve(deaf) as port:
        conn = await open_websocket(f"ws://127.0.0.1:{port}/")
        with anyio.fail_after(2):
            await conn.close(4000, timeout=0.2)


async def test_close_of_a_dropped_connection_does_not_raise() -> None:
    async def dropper(stream: anyio.abc.ByteStream) -> None:
        await Peer(stream).accept()

    async with serve(dropper) as port:
        conn = await open_websocket(f"ws://127.0.0.1:{port}/")
        with pytest.raises(TransportError, match="closed by the server"):
            await receive_messages(conn, 1)
        await conn.close(4000)


async def test_abort_drops_tcp_without_a_close_frame() -> None:
    seen: list[int] = []
    done = anyio.Event()

    async def watcher(stream: anyio.abc.ByteStream) -> None:
        peer = Peer(stream)
        await peer.accept()
        event = await peer.next_event()
        assert isinstance(event, CloseConnection)
        seen.append(event.code)
        done.set()

    async with serve(watcher) as port:
        conn = await open_websocket(f"ws://127.0.0.1:{port}/")
        await conn.abort()
        await conn.abort()
        with anyio.fail_after(5):
            await done.wait()
        with pytest.raises(TransportError):
            await conn.receive()
    assert seen == [1006]  # wsproto's code for "EOF without a close frame"


async def test_masked_server_frame_raises_protocol_violation() -> None:
    async def rogue(stream: anyio.abc.ByteStream) -> None:
        await Peer(stream).accept()
        await stream.send(b"\x81\x82abcd" + bytes(x ^ y for x, y in zip(b"hi", b"ab", strict=True)))
        await anyio.sleep_forever()

    async with serve(rogue) as port:
        conn = await open_websocket(f"ws://127.0.0.1:{port}/")
        with pytest.raises(ProtocolViolation) as caught, anyio.fail_after(5):
            await receive_messages(conn, 1)
        assert caught.value.close_code == 1002
        await conn.close(caught.value.close_code, timeout=0.1)


# -- failing to connect ---------------------------------------------------------


async def test_connection_refused_raises_transport_error() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(SocketAttribute.local_port)
    await listener.aclose()
    with pytest.raises(TransportError, match=f"127.0.0.1:{port}"):
        await open_websocket(f"ws://127.0.0.1:{port}/")


async def test_server_that_never_answers_the_upgrade_times_out() -> None:
    async def silent(stream: anyio.abc.ByteStream) -> None:
        await anyio.sleep_forever()

    async with serve(silent) as port:
        with anyio.fail_after(2), pytest.raises(TransportError, match="timed out"):
            await open_websocket(f"ws://127.0.0.1:{port}/", connect_timeout=0.3)


async def test_refused_upgrade_raises_handshake_error_with_status() -> None:
    async def rejecter(stream: anyio.abc.ByteStream) -> None:
        peer = Peer(stream)
        assert isinstance(await peer.next_event(), Request)
        await peer.send(RejectConnection(status_code=401))

    async with serve(rejecter) as port:
        with pytest.raises(HandshakeError) as caught:
            await open_websocket(f"ws://127.0.0.1:{port}/")
    assert caught.value.status == 401


@pytest.mark.parametrize("url", ["http://127.0.0.1/", "ws:///path", "wss://"])
async def test_non_websocket_url_raises_value_error(url: str) -> None:
    with pytest.raises(ValueError, match="websocket URL"):
        await open_websocket(url)


# -- TLS and socket options -----------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


async def test_wss_with_a_trusted_ca_round_trips(
    ca: trustme.CA, server_tls: ssl.SSLContext
) -> None:
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    async with serve(echo, tls=server_tls) as port:
        conn = await open_websocket(f"wss://127.0.0.1:{port}/?v=10", ssl_context=client_tls)
        # Like HTTP: EOF without close_notify is an ordinary end, and closing never waits.
        assert conn._stream.extra(TLSAttribute.standard_compatible) is False
        await conn.send_text(b"x" * 50_000)  # spans several TLS records
        assert await receive_messages(conn, 1) == [(TEXT, b"x" * 50_000)]
        await conn.close(1000)


async def test_wss_with_the_default_context_rejects_an_untrusted_cert(
    server_tls: ssl.SSLContext,
) -> None:
    async with serve(echo, tls=server_tls) as port:
        with pytest.raises(TransportError, match=f"127.0.0.1:{port}") as caught:
            await open_websocket(f"wss://127.0.0.1:{port}/")
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)


def test_default_ssl_context_is_shared_and_verifies() -> None:
    context = default_ssl_context()
    assert default_ssl_context() is context
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


@pytest.mark.parametrize("secure", [False, True])
async def test_tcp_nodelay_is_on(secure: bool, ca: trustme.CA, server_tls: ssl.SSLContext) -> None:
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    scheme = "wss" if secure else "ws"
    async with serve(echo, tls=server_tls if secure else None) as port:
        conn = await open_websocket(f"{scheme}://127.0.0.1:{port}/", ssl_context=client_tls)
        raw = conn._stream.extra(SocketAttribute.raw_socket)
        assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        await conn.abort()
