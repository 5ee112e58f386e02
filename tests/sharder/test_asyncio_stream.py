"""The asyncio TCP stream that keeps reading while open, against a server on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest
from anyio.abc import SocketAttribute

from sharder._asyncio_stream import HIGH_WATER, AsyncioSocketStream, connect_tcp

pytestmark = pytest.mark.parametrize("anyio_backend", ["asyncio"])

Handler = Callable[[anyio.abc.SocketStream], Awaitable[None]]


@asynccontextmanager
async def connected(handler: Handler) -> AsyncIterator[AsyncioSocketStream]:
    """A client stream to a server that runs ``handler`` on its end of the connection."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handler)
        stream = await connect_tcp("127.0.0.1", listener.extra(SocketAttribute.local_port))
        try:
            yield stream
        finally:
            await stream.aclose()
            tg.cancel_scope.cancel()


async def receive_exactly(stream: AsyncioSocketStream, size: int) -> bytes:
    data = bytearray()
    with anyio.fail_after(10):
        while len(data) < size:
            data += await stream.receive(1 << 20)
    return bytes(data)


async def test_what_comes_while_nobody_receives_is_kept_up_to_the_high_water_mark(
    anyio_backend: str,
) -> None:
    payload = bytes(range(256)) * (16 * 1024)  # 4 MiB

    async def flood(peer: anyio.abc.SocketStream) -> None:
        await peer.send(payload)
        await anyio.sleep_forever()

    async with connected(flood) as stream:
        await anyio.sleep(0.3)  # nobody receives: the transport reads, then stops reading
        protocol = stream._protocol
        assert HIGH_WATER <= protocol.buffered < HIGH_WATER + 256 * 1024
        assert protocol.reading_paused
        assert await receive_exactly(stream, len(payload)) == payload
        assert protocol.buffered == 0
        assert not protocol.reading_paused


async def test_a_receive_returns_at_most_max_bytes_and_keeps_the_rest(anyio_backend: str) -> None:
    async def send_once(peer: anyio.abc.SocketStream) -> None:
        await peer.send(b"0123456789")
        await anyio.sleep_forever()

    async with connected(send_once) as stream:
        first = await stream.receive(1)
        assert first == b"0"
        assert await receive_exactly(stream, 9) == b"123456789"


async def test_the_peer_closing_ends_the_stream_after_its_last_bytes(anyio_backend: str) -> None:
    async def say_and_close(peer: anyio.abc.SocketStream) -> None:
        await peer.send(b"bye")
        await peer.aclose()

    async with connected(say_and_close) as stream:
        assert await receive_exactly(stream, 3) == b"bye"
        with pytest.raises(anyio.EndOfStream):
            await stream.receive()


async def test_a_reset_connection_is_a_broken_resource(anyio_backend: str) -> None:
    async def reset(peer: anyio.abc.SocketStream) -> None:
        raw = peer.extra(SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        await peer.aclose()

    async with connected(reset) as stream:
        with anyio.fail_after(5), pytest.raises(anyio.BrokenResourceError):
            await stream.receive()
        with pytest.raises(anyio.BrokenResourceError):
            await stream.send(b"x")


async def test_sends_arrive_in_order_and_a_big_one_waits_for_the_kernel(
    anyio_backend: str,
) -> None:
    received = bytearray()
    done = anyio.Event()
    big = b"x" * (8 << 20)  # more than the socket buffers hold: the send waits

    async def collect(peer: anyio.abc.SocketStream) -> None:
        await anyio.sleep(0.2)  # let the big send fill the buffers first
        while len(received) < len(big) + 5:
            received.extend(await peer.receive(1 << 20))
        done.set()

    async with connected(collect) as stream:
        await stream.send(big)
        assert stream._protocol.drained is None  # returned once the kernel had it all
        await stream.send(b"after")
        with anyio.fail_after(10):
            await done.wait()
    assert bytes(received) == big + b"after"


async def test_a_closed_stream_refuses_to_receive_and_send(anyio_backend: str) -> None:
    async def idle(peer: anyio.abc.SocketStream) -> None:
        await anyio.sleep_forever()

    async with connected(idle) as stream:
        await stream.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await stream.receive()
        with pytest.raises(anyio.ClosedResourceError):
            await stream.send(b"x")


async def test_two_readers_at_once_are_refused(anyio_backend: str) -> None:
    async def idle(peer: anyio.abc.SocketStream) -> None:
        await anyio.sleep_forever()

    async with connected(idle) as stream, anyio.create_task_group() as tg:
        tg.start_soon(stream.receive)
        await anyio.sleep(0.05)
        with pytest.raises(anyio.BusyResourceError):
            await stream.receive()
        tg.cancel_scope.cancel()


async def test_it_reports_its_socket_like_anyios_stream(anyio_backend: str) -> None:
    async def idle(peer: anyio.abc.SocketStream) -> None:
        await anyio.sleep_forever()

    async with connected(idle) as stream:
        raw = stream.extra(SocketAttribute.raw_socket)
        assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert stream.extra(SocketAttribute.remote_address)[0] == "127.0.0.1"
