"""The gate: every hashmatch.v1 call is checked on the event loop before its body is read.

A grpc.aio interceptor cannot see the caller's address, and a unary handler has its request read
and decoded before any code of ours runs. So the gate serves each unary method as a
request-streaming one: its behaviour first checks the peer and the metadata (the API key for
Matching and ListInfo, the anonymous rate limits for Cases), refuses with the mapped status while
the body is still unread, and only then reads the one request and calls the servicer. For
Matching and ListInfo the platform name is left in `access.PLATFORM`, so servicers and matching
workers never look at keys.

A refusal by a rate limit (`RateLimited`) is answered after `refusal_delay_s`. Every refused call
still costs the event loop that platform streams share a call set-up, so the delay caps how fast
one connection can make the server refuse: at its calls in flight (at most
`max_concurrent_streams`) per delay. At most `max_delayed` refusals wait at once (more are
answered at once), and calls the web bridge forwards are never held: they share its connection.
A gated handler is built once per method and reused.
"""
import asyncio
import logging

import grpc

from hashmatch.server.access import PLATFORM
from hashmatch.server.buckets import caller_address, peer_address
from hashmatch.server.errors import InvalidRequest, RateLimited, abort, status_for

log = logging.getLogger("hashmatch.server")
PREFIX = "/hashmatch.v1."


class Gate(grpc.aio.ServerInterceptor):
    """`checks` maps a service ("Cases") to `async check(method, metadata, peer) -> str | None`;
    a returned name is the platform; a raised error refuses the call."""

    def __init__(self, checks, count_error, refusal_delay_s: float = 0.0, max_delayed: int = 0):
        self._checks, self._count_error = checks, count_error
        self.delay = RefusalDelay(refusal_delay_s, max_delayed)
        self._gated: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        gated = self._gated.get(method)
        if gated is not None:
            return gated
        handler = await continuation(handler_call_details)
        if handler is None or not method.startswith(PREFIX):
            return handler
        service, _, name = method[len(PREFIX):].partition("/")
        check = self._checks.get(service)
        if check is None:
            return handler
        gated = self._gated[method] = _gated(handler, name, check, self._count_error,
                                             self.delay)
        return gated


class RefusalDelay:
    """Holds a refusal for `seconds` before it is answered, at most `most` at once."""

    def __init__(self, seconds: float, most: int):
        self.seconds, self.most, self.waiting = seconds, most, 0

    async def __call__(self) -> None:
        if not self.seconds or self.waiting >= self.most:
            return
        self.waiting += 1
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.waiting -= 1


def _gated(handler, method: str, check, count_error, delay: RefusalDelay):
    async def admitted(context) -> bool:
        metadata = context.invocation_metadata()
        peer = context.peer()
        address = caller_address(peer, metadata)
        try:
            platform = await check(method, metadata, address)
        except Exception as exc:  # noqa: BLE001 - every refusal must become a status
            if status_for(exc) is None:
                log.exception("internal error in the gate", extra={"fields": {"method": method}})
            elif isinstance(exc, RateLimited) and address == peer_address(peer):
                await delay()
            await abort(context, exc, count_error)
            return False
        if platform is not None:
            PLATFORM.set(platform)
        return True

    make = (grpc.stream_stream_rpc_method_handler if handler.response_streaming
            else grpc.stream_unary_rpc_method_handler)
    if handler.request_streaming:
        inner = handler.stream_stream or handler.stream_unary

        async def behavior(requests, context):
            if await admitted(context):
                return await inner(requests, context)
    elif handler.unary_unary:
        inner = handler.unary_unary

        async def behavior(requests, context):
            if not await admitted(context):
                return None
            request = await context.read()
            if request is grpc.aio.EOF:
                await abort(context, InvalidRequest(f"{method} needs a request message"),
                            count_error)
            return await inner(request, context)
    else:
        raise TypeError(f"the gate cannot serve unary-stream method {method}")
    return make(behavior, handler.request_deserializer, handler.response_serializer)
