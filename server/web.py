"""The person's web page: static files and a gRPC-Web bridge to the Cases service, on one port.

The browser speaks gRPC-Web (binary protobuf frames over HTTP/1.1 POST). The bridge does not
decode messages: it unwraps the one request frame, forwards the bytes to this server's own gRPC
port over a local channel, and wraps the answer (or the status) back into gRPC-Web frames. So the
page reaches the very same Cases servicer, validation, limits and error mapping as every gRPC
client, and the bridge cannot drift from them. Only the Cases methods are bridged; matching and
list information stay on the gRPC port for authenticated platforms. docs/WEB.md says why this
and not a gRPC-Web library.
"""
from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import struct
import urllib.parse

import importlib.resources

import grpc
from aiohttp import web

from hashmatch.server.buckets import FORWARDED_PEER_HEADER
from hashmatch.server.errors import InvalidRequest, RequestError, status_for
from hashmatch.server.gate import BodyReads
from hashmatch.v1 import hashmatch_pb2 as pb

log = logging.getLogger("hashmatch.server.web")

STATIC_DIR = str(importlib.resources.files("hashmatch.web") / "static")
CASE_METHODS = frozenset(f"/{m.full_name.rpartition('.')[0]}/{m.name}"
                         for m in pb.DESCRIPTOR.services_by_name["Cases"].methods)
GRPC_WEB_TYPES = ("application/grpc-web", "application/grpc-web+proto")
CALL_TIMEOUT_S = 60.0
# How long stopping waits for calls in progress (aiohttp's default is 60 s).
SHUTDOWN_S = 5.0
# No inline script or style, nothing from another origin; 'wasm-unsafe-eval' lets the page compile
# its own PDQ module (same origin) and nothing else.
CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
       "img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cache-Control": "no-store",
}
FRAME_HEADER = struct.Struct(">BI")  # flags (0 = message, 0x80 = trailers), length
mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".js")


def grpc_web_frame(flags: int, payload: bytes) -> bytes:
    return FRAME_HEADER.pack(flags, len(payload)) + payload


def unwrap_request(body: bytes) -> bytes:
    """The single message of a unary gRPC-Web request body; InvalidRequest if it is not exactly
    one uncompressed message frame."""
    if len(body) < FRAME_HEADER.size:
        raise InvalidRequest("gRPC-Web body must start with a 5-byte frame header, got "
                             f"{len(body)} bytes")
    flags, length = FRAME_HEADER.unpack_from(body)
    if flags != 0:
        raise InvalidRequest("first gRPC-Web frame must be an uncompressed message, got flags "
                             f"{flags:#x}")
    if len(body) != FRAME_HEADER.size + length:
        raise InvalidRequest(f"gRPC-Web frame says {length} bytes, body has "
                             f"{len(body) - FRAME_HEADER.size} after the header")
    return body[FRAME_HEADER.size:]


def trailers(code: grpc.StatusCode, message: str = "") -> bytes:
    text = f"grpc-status:{code.value[0]}\r\n"
    if message:
        text += f"grpc-message:{urllib.parse.quote(message, safe=' ')}\r\n"
    return grpc_web_frame(0x80, text.encode())


class WebBridge:
    """Serves web/static and forwards gRPC-Web calls of the Cases service to `grpc_target`."""

    def __init__(self, grpc_target: str, max_request_bytes: int, reads: BodyReads,
                 max_connections: int = 1000, static_dir: str = STATIC_DIR):
        self.static_dir = os.path.realpath(static_dir)
        self.reads = reads      # the gRPC port's: bodies of anonymous calls read at once
        # aiohttp keeps every connection it is offered; past this many, new ones are closed.
        self.max_connections = max_connections
        self.max_body = max_request_bytes + FRAME_HEADER.size
        self.channel = grpc.aio.insecure_channel(grpc_target, options=[
            ("grpc.max_receive_message_length", max_request_bytes),
            ("grpc.max_send_message_length", max_request_bytes)])
        self.calls = {name: self.channel.unary_unary(name) for name in CASE_METHODS}
        self.app = web.Application(client_max_size=self.max_body,
                                   middlewares=[self._security_headers])
        self.app.router.add_post("/{service}/{method}", self.call)
        self.app.router.add_get("/", self.static)
        self.app.router.add_get("/{name}", self.static)
        self.runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self.port = 0

    @web.middleware
    async def _security_headers(self, request, handler):
        try:
            response = await handler(request)
        except web.HTTPException as e:
            e.headers.update(SECURITY_HEADERS)
            raise
        response.headers.update(SECURITY_HEADERS)
        return response

    async def start(self, host: str, port: int) -> int:
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=SHUTDOWN_S)
        await self.runner.setup()
        self._listener = await asyncio.get_running_loop().create_server(
            self._connection, host or "0.0.0.0", port)
        self.port = self._listener.sockets[0].getsockname()[1]
        return self.port

    def _connection(self) -> asyncio.Protocol:
        """aiohttp's handler for a new connection, or one that closes it when max_connections
        are open (a few more may slip in while a burst is being accepted)."""
        server = self.runner.server
        if len(server.connections) >= self.max_connections:
            return _Closed()
        return server()

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            await self._listener.wait_closed()
        if self.runner is not None:
            await self.runner.cleanup()
        await self.channel.close()

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name", "index.html")
        path = os.path.realpath(os.path.join(self.static_dir, name))
        if os.path.dirname(path) != self.static_dir or not os.path.isfile(path):
            raise web.HTTPNotFound(text=f"no page {name!r}")
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return web.FileResponse(path, headers={"Content-Type": content_type})

    async def call(self, request: web.Request) -> web.Response:
        method = request.path
        if method not in CASE_METHODS:
            raise web.HTTPNotFound(text=f"{method} is not served here; the web port serves only "
                                        "the Cases service")
        if request.content_type not in GRPC_WEB_TYPES:
            raise web.HTTPUnsupportedMediaType(
                text="content type must be application/grpc-web+proto, got "
                     f"{request.content_type!r}")
        try:
            message = unwrap_request(await self.reads.read(request, request.remote or "unknown"))
            # The browser's address, so the per-address limits count each person on their own
            # (the gate believes it only from loopback, where this bridge calls from).
            answer = await self.calls[method](
                message, timeout=CALL_TIMEOUT_S,
                metadata=((FORWARDED_PEER_HEADER, request.remote or "unknown"),))
            payload = grpc_web_frame(0, answer) + trailers(grpc.StatusCode.OK)
        except RequestError as e:
            payload = trailers(*status_for(e))
        except grpc.aio.AioRpcError as e:
            payload = trailers(e.code(), e.details() or "")
        return web.Response(body=payload, content_type="application/grpc-web+proto")


class _Closed(asyncio.Protocol):
    def connection_made(self, transport) -> None:
        transport.abort()


def local_target(listen: str, port: int) -> str:
    """Where the bridge reaches the gRPC port: its own host, or loopback when it binds every
    interface."""
    host = listen.rpartition(":")[0].strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def start_web(listen: str, grpc_listen: str, grpc_port: int, max_request_bytes: int,
                    reads: BodyReads, max_connections: int) -> WebBridge:
    """Starts the page and bridge on `listen` (HOST:PORT, port 0 picks one); returns the bridge,
    `bridge.port` bound."""
    host, _, port = listen.rpartition(":")
    bridge = WebBridge(local_target(grpc_listen, grpc_port), max_request_bytes, reads,
                       max_connections)
    await bridge.start(host.strip("[]"), int(port))
    log.info("web page listening", extra={"fields": {"port": bridge.port}})
    return bridge
