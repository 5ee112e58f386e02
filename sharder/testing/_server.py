"""Accepted TCP connections: TLS, HTTP/1.1 with h11, then REST or a websocket upgrade.

HTTP is parsed here with h11; an upgrade request is handed to wsproto's
server role through ``initiate_upgrade_connection``, so the websocket side is
an implementation independent of the client's.
"""

from __future__ import annotations

import ssl
from typing import Final
from urllib.parse import parse_qsl, urlsplit

import anyio
import h11
from anyio.abc import ByteStream
from anyio.streams.tls import TLSStream
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, Request
from wsproto.utilities import RemoteProtocolError as WebSocketHandshakeError

from ._gateway import GatewayConnection
from ._hub import Hub
from ._rest import HttpRequest, HttpResponse, RestApi, json_response
from ._websocket import WebSocket

__all__ = ["ConnectionHandler"]

_RECEIVE_SIZE: Final = 65536
TLS_HANDSHAKE_TIMEOUT: Final = 10.0
_STREAM_ERRORS: Final = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError)


class ConnectionHandler:
    """Serves one accepted TCP connection from start to end."""

    def __init__(self, hub: Hub, rest: RestApi, ssl_context: ssl.SSLContext | None) -> None:
        self.hub = hub
        self.rest = rest
        self.ssl_context = ssl_context

    async def __call__(self, stream: ByteStream) -> None:
        try:
            if self.ssl_context is not None:
                with anyio.fail_after(TLS_HANDSHAKE_TIMEOUT):
                    stream = await TLSStream.wrap(
                        stream, server_side=True, ssl_context=self.ssl_context,
                        standard_compatible=False,
                    )  # fmt: skip
            await self._serve_http(stream)
        except (*_STREAM_ERRORS, TimeoutError, OSError):
            pass  # the client went away or spoke garbage: nothing to answer
        finally:
            await anyio.aclose_forcefully(stream)

    async def _serve_http(self, stream: ByteStream) -> None:
        """Answer requests on a keep-alive connection until it closes or upgrades."""
        conn = h11.Connection(h11.SERVER)
        while True:
            try:
                request = await _next_event(conn, stream)
                if not isinstance(request, h11.Request):
                    return
                body = await _read_body(conn, stream)
            except h11.RemoteProtocolError as exc:
                error = {"message": f"{exc.error_status_hint}: Bad Request", "code": 0}
                await _send_response(conn, stream, json_response(exc.error_status_hint, error))
                return
            if _is_upgrade(request):
                await self._upgrade(conn, stream, request)
                return
            response = await self.rest.handle(_to_http_request(request, body))
            await _send_response(conn, stream, response)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _upgrade(
        self, conn: h11.Connection, stream: ByteStream, request: h11.Request
    ) -> None:
        """Accept the websocket with wsproto and run the gateway on it."""
        ws = WSConnection(ConnectionType.SERVER)
        target = request.target.decode("ascii", "replace")
        try:
            # wsproto re-parses the request itself: its own h11 client serializes it.
            ws.initiate_upgrade_connection(list(request.headers), target)
            accepted = any(isinstance(event, Request) for event in ws.events())
        except (WebSocketHandshakeError, h11.ProtocolError) as exc:
            hint = getattr(exc, "event_hint", None)
            status = hint.status_code if isinstance(hint, RejectConnection) else 400
            body = {"message": f"{status}: Bad websocket upgrade ({exc})", "code": 0}
            await _send_response(conn, stream, json_response(status, body))
            return
        if not accepted:
            return
        await stream.send(ws.send(AcceptConnection()))
        trailing = conn.trailing_data[0]
        if trailing:
            ws.receive_data(trailing)
        path, query = _split_target(target)
        socket = WebSocket(stream, ws, self.hub.config.write_chunk_size)
        await GatewayConnection(self.hub, socket, path, query).run()


async def _next_event(
    conn: h11.Connection, stream: ByteStream
) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
    """The next h11 event, reading as needed (never ``NEED_DATA``; EOF ends the stream)."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        try:
            data = await stream.receive(_RECEIVE_SIZE)
        except _STREAM_ERRORS:
            data = b""
        conn.receive_data(data)


async def _read_body(conn: h11.Connection, stream: ByteStream) -> bytes:
    chunks: list[bytes] = []
    while True:
        event = await _next_event(conn, stream)
        if isinstance(event, h11.Data):
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return b"".join(chunks)
        else:
            raise h11.RemoteProtocolError("connection ended inside a request body")


async def _send_response(conn: h11.Connection, stream: ByteStream, response: HttpResponse) -> None:
    headers = [*response.headers, ("content-length", str(len(response.body)))]
    events = [
        h11.Response(status_code=response.status, headers=headers),
        h11.Data(data=response.body),
        h11.EndOfMessage(),
    ]
    try:
        data = b"".join(conn.send(event) or b"" for event in events)
    except h11.LocalProtocolError:
        return  # h11 cannot answer in this state (the request line itself was garbage)
    await stream.send(data)


def _is_upgrade(request: h11.Request) -> bool:
    return any(
        name == b"upgrade" and value.lower() == b"websocket" for name, value in request.headers
    )


def _split_target(target: str) -> tuple[str, dict[str, str]]:
    """Path and query of a request target (a target urlsplit rejects is all path)."""
    try:
        url = urlsplit(target)
    except ValueError:
        return target, {}
    return url.path or "/", dict(parse_qsl(url.query, keep_blank_values=True))


def _to_http_request(request: h11.Request, body: bytes) -> HttpRequest:
    path, query = _split_target(request.target.decode("ascii", "replace"))
    return HttpRequest(
        method=request.method.decode("ascii", "replace"),
        path=path,
        query=query,
        headers={
            name.decode("latin-1"): value.decode("latin-1") for name, value in request.headers
        },
        body=body,
    )
