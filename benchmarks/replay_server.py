"""The replay gateway: a minimal Discord (gateway and REST) that is never the bottleneck.

Run in its own process by the benchmark suite; by hand::

    python -m benchmarks.replay_server [--host 127.0.0.1] [--port 0] [--tls-port 0]

It prints one JSON line (``{"port": ..., "tls_port": ..., "ca": "<CA PEM path>"}``)
and serves ws/http on ``port`` and wss/https on ``tls_port`` (a throwaway
certificate made at start-up with trustme) until SIGTERM (or, with
``--watch-stdin``, until stdin closes).

Scenarios live in the URL: a REST base ``http://host:port/s/<spec>/api/v10``
answers ``/gateway/bot`` with ``ws://host:port/s/<spec>/gateway``, and a
gateway connection there gets HELLO, then READY for its IDENTIFY, then the
spec's traffic (see :class:`benchmarks._payloads.Spec`), e.g.
``/s/messages,n=100000/gateway``.

What a connection costs the server per event is one ``memcpy``: floods are
pre-encoded (compressed and framed) by :mod:`benchmarks._payloads` and written
batch by batch as fast as the socket takes them. The protocol is still
honoured: HEARTBEATs are acknowledged (between two batches, where the stream
has a full flush, so the ACK can be spliced in without re-encoding anything),
IDENTIFY is answered with READY, and identifies per bucket are timed so that
the pacing benchmark can check that no bucket identified twice within
``window`` seconds. ``paced`` scenarios are encoded live instead, one
compression context per connection, with the send time (``time.monotonic_ns``,
the same clock in every process) in each MESSAGE_CREATE's ``nonce``.

Only what the benchmarked clients call is served: ``/gateway``,
``/gateway/bot``, ``/users/@me``, ``/oauth2/applications/@me`` and
``/applications/@me``, ``POST /channels/{id}/messages``; plus ``/_bench/stats``,
``/_bench/reset`` and ``/_bench/prepare/<spec>`` for the suite itself.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import re
import signal
import ssl
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from benchmarks._payloads import (
    CACHE_DIR,
    ZLIB_HEADER,
    Flood,
    Spec,
    World,
    dumps,
    frame,
    load_flood,
    raw_deflate,
)
from sharder.testing._data import APPLICATION_ID, application, bot_user

__all__ = ["main"]

_ACCEPT_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_ACK: Final = dumps({"t": None, "s": None, "op": 11, "d": None})
_SPLICED_ACK: Final = frame(raw_deflate(_ACK))
_HIGH_WATER: Final = 1 << 20
_PACING_TOLERANCE: Final = 0.002
"""Seconds by which two identifies of a bucket may look closer than ``window`` at the
server and still count as paced (the first may have spent longer in flight)."""
_PATH: Final = re.compile(r"/s/(?P<spec>[^/]+)(?P<rest>/.*)?\Z")


def _application() -> dict[str, Any]:
    """The emulator's application, with every field the peers' login parses."""
    return application() | {
        "summary": "",
        "type": None,
        "verify_key": "0" * 64,
        "owner": bot_user() | {"bot": False, "username": "owner"},
        "team": None,
        "interactions_endpoint_url": None,
        "redirect_uris": [],
        "approximate_guild_count": 0,
    }


class Stats:
    """What the server did, for ``/_bench/stats``."""

    def __init__(self) -> None:
        self.connections = 0
        self.open = 0
        self.identifies = 0
        self.heartbeats = 0
        self.acks_spliced = 0
        self.pacing_violations = 0
        self.min_bucket_gap: float | None = None
        self.first_identify: float | None = None
        self.last_identify: float | None = None
        self.floods: list[dict[str, float]] = []
        self.heartbeat_times: list[float] = []
        self.unknown_routes: list[str] = []
        self._buckets: dict[int, float] = {}

    def identify(self, shard_id: int, spec: Spec) -> None:
        now = time.monotonic()
        self.identifies += 1
        self.first_identify = self.first_identify or now
        self.last_identify = now
        bucket = shard_id % spec.max_concurrency
        last = self._buckets.get(bucket)
        if last is not None:
            gap = now - last
            self.min_bucket_gap = (
                gap if self.min_bucket_gap is None else min(self.min_bucket_gap, gap)
            )
            if gap < spec.window - _PACING_TOLERANCE:
                self.pacing_violations += 1
        self._buckets[bucket] = now

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


class Server:
    """Shared state: floods by spec, stats, where the two ports are."""

    def __init__(self, host: str, cache_dir: Path) -> None:
        self.host = host
        self.cache_dir = cache_dir
        self.port = 0
        self.tls_port = 0
        self.stats = Stats()
        self._floods: dict[str, Flood] = {}
        self._paced: dict[str, list[tuple[bytes, bytes]]] = {}
        self._guilds: dict[int, list[dict[str, Any]]] = {}

    def flood(self, spec: Spec) -> Flood:
        flood = self._floods.get(spec.flood_key)
        if flood is None:
            flood = self._floods[spec.flood_key] = load_flood(spec, self.cache_dir)
        return flood

    def paced_documents(self, spec: Spec) -> list[tuple[bytes, bytes]]:
        """MESSAGE_CREATE ``d`` documents split around their ``nonce`` (the send stamp)."""
        key = f"{spec.seed}"
        documents = self._paced.get(key)
        if documents is None:
            marker = "@STAMP@"
            documents = []
            world = World(spec.seed)
            for _, data in world.events(Spec("messages", 20_000, seed=spec.seed)):
                data["nonce"] = marker
                before, after = dumps(data).split(marker.encode())
                documents.append((before, after))
            self._paced[key] = documents
        return documents

    def guilds(self, spec: Spec) -> list[dict[str, Any]]:
        """READY's (unavailable) guilds: the ones the flood's prelude creates."""
        if spec.kind in ("idle", "paced") or not spec.count:
            return []
        guilds = self._guilds.get(spec.seed)
        if guilds is None:
            guilds = [{"id": str(g["id"]), "unavailable": True} for g in World(spec.seed).guilds]
            self._guilds[spec.seed] = guilds
        return guilds

    def gateway_url(self, secure: bool, spec: Spec) -> str:
        scheme, port = ("wss", self.tls_port) if secure else ("ws", self.port)
        return f"{scheme}://{self.host}:{port}/s/{spec}/gateway"


# --------------------------------------------------------------------------- connections


class Connection(asyncio.Protocol):
    """One TCP connection: HTTP/1.1 requests until it upgrades to a gateway websocket."""

    def __init__(self, server: Server, secure: bool) -> None:
        self.server = server
        self.secure = secure
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.gateway: Gateway | None = None
        self.paused = False
        self.drained: asyncio.Future[None] | None = None

    # -- asyncio callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=_HIGH_WATER)
        self.server.stats.connections += 1
        self.server.stats.open += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.stats.open -= 1
        if self.gateway is not None:
            self.gateway.stop()
        self.resume_writing()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    async def wait_drained(self) -> None:
        """Wait until the socket takes more (or at least let the loop read heartbeats)."""
        if self.paused:
            self.drained = asyncio.get_running_loop().create_future()
            await self.drained
        else:
            await asyncio.sleep(0)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.gateway is None:  # HTTP requests until one upgrades the connection
            if not self._handle_request():
                return
        self.gateway.receive(self.buffer)

    # -- HTTP ---------------------------------------------------------------------------

    def _handle_request(self) -> bool:
        """Handle one complete request from the buffer; False if there is none yet."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = self.buffer[:end].decode("latin-1").split("\r\n")
        method, target, _ = head[0].split(" ", 2)
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if len(self.buffer) < end + 4 + length:
            return False
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        path, _, query = target.partition("?")
        match = _PATH.match(path)
        spec = Spec.parse(match["spec"]) if match else Spec()
        rest = (match["rest"] or "/") if match else path
        if headers.get("upgrade", "").lower() == "websocket":
            self._upgrade(headers, spec, query)
        else:
            status, payload = self._route(method, rest, body, spec)
            self._respond(status, payload)
        return True

    def _respond(self, status: int, payload: Any) -> None:
        body = dumps(payload)
        reason = {200: "OK", 404: "Not Found", 400: "Bad Request"}.get(status, "OK")
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
        )
        assert self.transport is not None
        self.transport.write(head.encode() + body)

    def _route(self, method: str, path: str, body: bytes, spec: Spec) -> tuple[int, Any]:
        server = self.server
        if path.startswith("/_bench/"):
            return self._control(path)
        route = re.sub(r"^/api/v\d+", "", path)
        if method == "GET" and route == "/gateway":
            return 200, {"url": server.gateway_url(self.secure, spec)}
        if method == "GET" and route == "/gateway/bot":
            limit = {
                "total": 100_000,
                "remaining": 100_000,
                "reset_after": 86_400_000,
                "max_concurrency": spec.max_concurrency,
            }
            url = server.gateway_url(self.secure, spec)
            return 200, {"url": url, "shards": spec.shards, "session_start_limit": limit}
        if method == "GET" and route == "/users/@me":
            return 200, bot_user()
        if method == "GET" and route in ("/oauth2/applications/@me", "/applications/@me"):
            return 200, _application()
        if method == "POST" and re.fullmatch(r"/channels/\d+/messages", route):
            request = json.loads(body or b"{}")
            channel_id = route.split("/")[2]
            return 200, {
                "id": str(time.time_ns() >> 10),
                "channel_id": channel_id,
                "content": request.get("content", ""),
                "author": bot_user(),
                "timestamp": "2024-01-01T00:00:00+00:00",
                "edited_timestamp": None,
                "tts": False,
                "mention_everyone": False,
                "mentions": [],
                "mention_roles": [],
                "attachments": [],
                "embeds": [],
                "pinned": False,
                "type": 0,
            }
        server.stats.unknown_routes.append(f"{method} {path}")
        return 404, {"message": "404: Not Found", "code": 0}

    def _control(self, path: str) -> tuple[int, Any]:
        if path == "/_bench/stats":
            return 200, self.server.stats.as_dict()
        if path == "/_bench/reset":
            self.server.stats = Stats()
            return 200, {}
        if path.startswith("/_bench/prepare/"):
            spec = Spec.parse(path.removeprefix("/_bench/prepare/"))
            flood = self.server.flood(spec)
            if spec.kind == "paced":
                self.server.paced_documents(spec)
            return 200, {
                "sha256": flood.sha256,
                "count": flood.count,
                "bytes": len(flood.data),
                "prelude": flood.prelude,
                "kinds": flood.kinds,
                "json_bytes": flood.json_bytes,
            }
        return 404, {}

    def _upgrade(self, headers: dict[str, str], spec: Spec, query: str) -> None:
        assert self.transport is not None
        key = headers.get("sec-websocket-key", "")
        accept = base64.b64encode(hashlib.sha1(key.encode() + _ACCEPT_GUID).digest()).decode()
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n"
        )
        params = dict(part.partition("=")[::2] for part in query.split("&") if part)
        self.gateway = Gateway(self, spec)
        if params.get("compress") != "zlib-stream":
            self.gateway.close(4002, "the replay server only speaks compress=zlib-stream")
        else:
            self.gateway.start()


class Gateway:
    """The gateway side of one websocket: HELLO, READY, heartbeat ACKs and the flood."""

    def __init__(self, connection: Connection, spec: Spec) -> None:
        self.connection = connection
        self.transport = connection.transport
        self.server = connection.server
        self.spec = spec
        self.pending_acks = 0
        self.flooding = False
        self.closed = False
        self.task: asyncio.Task[None] | None = None
        self._fragments = bytearray()
        if spec.kind == "paced":
            compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15)
            compress, flush = compressor.compress, compressor.flush
            self.pack: Callable[[bytes], bytes] = lambda doc: frame(
                compress(doc) + flush(zlib.Z_SYNC_FLUSH)
            )
            self.ack = b""
        else:
            # Every live message is self-contained, so that floods may be spliced between them.
            first = [True]

            def pack(doc: bytes) -> bytes:
                header = ZLIB_HEADER if first[0] else b""
                first[0] = False
                return frame(header + raw_deflate(doc))

            self.pack = pack
            self.ack = _SPLICED_ACK

    def start(self) -> None:
        hello = {"heartbeat_interval": self.spec.heartbeat_ms, "_trace": ["replay"]}
        self.write(self.pack(dumps({"t": None, "s": None, "op": 10, "d": hello})))

    def write(self, data: bytes | memoryview) -> None:
        if not self.closed and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send_ack(self) -> None:
        self.pending_acks -= 1
        self.write(self.ack or self.pack(_ACK))

    def close(self, code: int, reason: str = "") -> None:
        if self.closed:
            return
        self.write(frame(code.to_bytes(2, "big") + reason.encode(), 0x8))
        self.closed = True
        if self.transport is not None:
            asyncio.get_running_loop().call_later(1.0, self.transport.close)

    def stop(self) -> None:
        self.closed = True
        if self.task is not None:
            self.task.cancel()

    # -- receiving ----------------------------------------------------------------------

    def receive(self, buffer: bytearray) -> None:
        """Parse the client's (masked) frames out of ``buffer``."""
        while len(buffer) >= 6:
            b0, b1 = buffer[0], buffer[1]
            length, pos = b1 & 0x7F, 2
            if length == 126:
                length, pos = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                length, pos = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < pos + 4 + length:
                return
            mask = bytes(buffer[pos : pos + 4])
            data = bytes(buffer[pos + 4 : pos + 4 + length])
            del buffer[: pos + 4 + length]
            if b1 & 0x80 and length:
                key = int.from_bytes((mask * (length // 4 + 1))[:length], "big")
                data = (int.from_bytes(data, "big") ^ key).to_bytes(length, "big")
            self._on_frame(b0, data)

    def _on_frame(self, b0: int, data: bytes) -> None:
        opcode = b0 & 0x0F
        if opcode == 0x8:
            if not self.closed:
                self.write(frame(data[:2], 0x8))
                self.closed = True
            if self.transport is not None:
                self.transport.close()
        elif opcode == 0x9:
            self.write(frame(data, 0xA))
        elif opcode in (0x0, 0x1, 0x2):
            self._fragments += data
            if b0 & 0x80:
                message, self._fragments = bytes(self._fragments), bytearray()
                self._on_payload(json.loads(message))

    def _on_payload(self, payload: dict[str, Any]) -> None:
        op, data = payload.get("op"), payload.get("d")
        stats = self.server.stats
        if op == 1:
            stats.heartbeats += 1
            stats.heartbeat_times.append(time.monotonic())
            self.pending_acks += 1
            if not self.flooding:
                self.send_ack()
        elif op == 2:
            shard_id, total = (data or {}).get("shard") or (0, 1)
            stats.identify(shard_id, self.spec)
            self._ready(shard_id, total)
        elif op == 6:
            self.write(self.pack(dumps({"t": None, "s": None, "op": 9, "d": False})))

    def _ready(self, shard_id: int, total: int) -> None:
        secure = self.connection.secure
        ready = {
            "v": 10,
            "user_settings": {},
            "user": bot_user(),
            "session_type": "normal",
            "session_id": os.urandom(16).hex(),
            "resume_gateway_url": self.server.gateway_url(secure, self.spec),
            "relationships": [],
            "private_channels": [],
            "presences": [],
            "guilds": self.server.guilds(self.spec),
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["rotterdam"],
            "shard": [shard_id, total],
            "application": {"id": str(APPLICATION_ID), "flags": 0},
            "_trace": ["replay"],
        }
        self.write(self.pack(dumps({"t": "READY", "s": 1, "op": 0, "d": ready})))
        if self.spec.kind == "paced":
            self.task = asyncio.ensure_future(self._paced())
        elif self.spec.count:
            self.task = asyncio.ensure_future(self._flood())

    # -- sending ------------------------------------------------------------------------

    async def _flood(self) -> None:
        flood = self.server.flood(self.spec)
        self.flooding = True
        started = time.monotonic()
        sent = 0
        try:
            for batch in flood.batches():
                while self.pending_acks:
                    self.send_ack()
                    self.server.stats.acks_spliced += 1
                self.write(batch)
                sent += len(batch)
                await self.connection.wait_drained()
                if self.closed:
                    return
        finally:
            self.flooding = False
            self.server.stats.floods.append(
                {"events": flood.count, "bytes": sent, "seconds": time.monotonic() - started}
            )
        while self.pending_acks:
            self.send_ack()

    async def _paced(self) -> None:
        """Send MESSAGE_CREATEs at ``rate``, one at a time, each stamped as it is encoded.

        Sleeps while more than 2 ms ahead, then spins on ``sleep(0)`` (which still
        lets heartbeats in): this process has a core of its own, and asyncio's
        millisecond timer would otherwise send bursts instead of single events.
        """
        documents = self.server.paced_documents(self.spec)
        spec = self.spec
        interval = 1 / spec.rate
        started = due = time.monotonic()
        sent = 0
        for index in range(spec.count):
            while (ahead := due - time.monotonic()) > 0:  # noqa: ASYNC110 - a pacing loop
                await asyncio.sleep(ahead - 0.001 if ahead > 0.002 else 0)
            if self.closed:
                return
            while self.pending_acks:
                self.send_ack()
            before, after = documents[index % len(documents)]
            stamp = b"%d" % time.monotonic_ns()
            document = b'{"t":"MESSAGE_CREATE","s":%d,"op":0,"d":%b%b%b}' % (
                index + 2,
                before,
                stamp,
                after,
            )
            self.write(self.pack(document))
            sent += 1
            due += interval
        seconds = time.monotonic() - started
        self.server.stats.floods.append({"events": sent, "bytes": 0, "seconds": seconds})


# --------------------------------------------------------------------------- main


def _tls_context(directory: Path) -> tuple[ssl.SSLContext, Path]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_path = directory / "replay-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    return context, ca_path


async def serve(host: str, port: int, tls_port: int, cache_dir: Path, watch_stdin: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="botrun-bench-tls-") as tls_dir:
        await _serve(host, port, tls_port, cache_dir, watch_stdin, Path(tls_dir))


async def _serve(
    host: str, port: int, tls_port: int, cache_dir: Path, watch_stdin: bool, tls_dir: Path
) -> None:
    server = Server(host, cache_dir)
    loop = asyncio.get_running_loop()
    plain = await loop.create_server(lambda: Connection(server, False), host, port, backlog=4096)
    context, ca_path = _tls_context(tls_dir)
    secure = await loop.create_server(
        lambda: Connection(server, True), host, tls_port, ssl=context, backlog=4096
    )
    server.port = plain.sockets[0].getsockname()[1]
    server.tls_port = secure.sockets[0].getsockname()[1]
    info = {
        "port": server.port,
        "tls_port": server.tls_port,
        "ca": str(ca_path),
        "pid": os.getpid(),
    }
    print(json.dumps(info), flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    if watch_stdin:  # the suite closes our stdin to stop us, even if it dies
        loop.add_reader(sys.stdin.fileno(), lambda: None if os.read(0, 1 << 16) else stop.set())
    await stop.wait()
    plain.close()
    secure.close()


def main(argv: list[str] | None = None) -> None:
    import resource

    # A thousand shards need a thousand sockets: lift the soft limit to the hard one.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replay_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-port", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=CACHE_DIR)
    parser.add_argument("--watch-stdin", action="store_true", help="stop when stdin closes")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.tls_port, args.cache, args.watch_stdin))


if __name__ == "__main__":
    main()
