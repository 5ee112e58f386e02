"""A TCP byte stream for the asyncio backend that keeps reading while it is open.

anyio's asyncio ``SocketStream`` resumes its transport's reading at the start of
every ``receive`` and pauses it when the data is in, so that nothing is read
that nobody asked for: two ``epoll_ctl`` system calls and the selector's
bookkeeping per receive, and its ``send`` ends with a shielded checkpoint (a
cancel scope and a turn of the event loop). An idle shard's life is a
heartbeat sent and its ACK received every 41.25 s; with a thousand of them,
those were over a quarter of the process's idle CPU. Here the transport reads
whenever data comes, up to :data:`HIGH_WATER` bytes not yet received (then it
pauses until the reader catches up), and a send that the kernel takes at once
does not yield. A receive that finds data waiting is still a checkpoint.

The trio backend keeps anyio's stream, which reads with ``recv`` when asked,
without a pause and resume per receive; with it, 1,000 idle shards on trio
use 0.37 to 0.44 % of a core, as this stream does on asyncio (BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from contextlib import suppress
from typing import Final

import anyio
import anyio.abc
import anyio.lowlevel

__all__ = ["HIGH_WATER", "connect_tcp"]

HIGH_WATER: Final = 256 * 1024
"""Received bytes held for the reader before the transport stops reading.

One read of asyncio's transport (it reads 256 KiB at a time): a shard that
stops receiving (``pause_reading``) leaves the rest in the kernel, as before.
"""


class _Protocol(asyncio.Protocol):
    """Buffers what the transport reads; wakes the one waiting reader or writer."""

    transport: asyncio.Transport

    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.reading_paused = False
        self.eof = False
        self.lost = False
        self.exception: Exception | None = None
        self.reader: asyncio.Future[None] | None = None
        self.drained: asyncio.Future[None] | None = None
        """Set while the kernel has not taken all that was written."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # Like anyio: any unsent byte pauses writing, so a send ends once the kernel has it.
        transport.set_write_buffer_limits(0)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered >= HIGH_WATER and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def taken(self, size: int) -> None:
        """The reader took ``size`` bytes: read again once below HIGH_WATER."""
        self.buffered -= size
        if self.reading_paused and self.buffered < HIGH_WATER and not self.lost:
            self.reading_paused = False
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return True  # keep the transport open for writing: a close frame may still go out

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.exception = exc
        self._wake_reader()
        self.resume_writing()

    def pause_writing(self) -> None:
        if self.drained is None:
            self.drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drained, self.drained = self.drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _wake_reader(self) -> None:
        reader = self.reader
        if reader is not None and not reader.done():
            reader.set_result(None)


class AsyncioSocketStream(anyio.abc.SocketStream):
    """One TCP connection's byte stream (see the module's docstring)."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._closed = False

    @property
    def _raw_socket(self) -> socket.socket:
        sock: socket.socket = self._transport.get_extra_info("socket")
        return sock

    async def receive(self, max_bytes: int = 65536) -> bytes:
        protocol = self._protocol
        if protocol.reader is not None:
            raise anyio.BusyResourceError("reading from")
        if protocol.chunks:
            await anyio.lowlevel.checkpoint()
        while not protocol.chunks:
            if self._closed:
                raise anyio.ClosedResourceError
            if protocol.lost:
                if protocol.exception is not None:
                    raise anyio.BrokenResourceError from protocol.exception
                raise anyio.EndOfStream
            if protocol.eof:
                raise anyio.EndOfStream
            reader = protocol.reader = asyncio.get_running_loop().create_future()
            try:
                await reader
            finally:
                protocol.reader = None
        chunk = protocol.chunks.popleft()
        if len(chunk) > max_bytes:
            chunk, rest = chunk[:max_bytes], chunk[max_bytes:]
            protocol.chunks.appendleft(rest)
        protocol.taken(len(chunk))
        return chunk

    async def send(self, item: bytes) -> None:
        protocol = self._protocol
        if self._closed:
            raise anyio.ClosedResourceError
        if protocol.lost or self._transport.is_closing():
            raise anyio.BrokenResourceError from protocol.exception
        await self._drain()  # an earlier send was cancelled while it waited
        self._transport.write(item)
        await self._drain()

    async def _drain(self) -> None:
        """Wait until the kernel has taken all that was written (at once, usually)."""
        protocol = self._protocol
        drained = protocol.drained
        if drained is not None:
            await asyncio.shield(drained)  # a cancelled send must not cancel the next one's wait
            if protocol.lost:
                raise anyio.BrokenResourceError from protocol.exception

    async def send_eof(self) -> None:
        with suppress(OSError):
            self._transport.write_eof()

    async def aclose(self) -> None:
        self._closed = True
        self._transport.abort()
        await anyio.lowlevel.checkpoint()


async def connect_tcp(host: str, port: int) -> AsyncioSocketStream:
    """Connect like ``anyio.connect_tcp`` on asyncio (TCP_NODELAY is asyncio's default)."""
    transport, protocol = await asyncio.get_running_loop().create_connection(
        _Protocol, host, port, happy_eyeballs_delay=0.25
    )
    return AsyncioSocketStream(transport, protocol)
