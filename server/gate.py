"""The gate: every hashmatch.v1 and health call is checked on the event loop before its body
is read.

A grpc.aio interceptor cannot see the caller's address, and a unary handler has its request read
and decoded before any code of ours runs. So the gate serves each unary method as a
request-streaming one: its behaviour first checks the peer and the metadata (an API key with the
service's role, the anonymous rate limits for Cases), refuses with the mapped status while the
body is still unread, and only then reads the one request and calls the servicer. The platform
name is left in `access.PLATFORM`, so Matching's servicers and workers never look at keys.

The body of a call no key vouches for (Cases, and the health service, which is open to anyone
and gated for this alone) is read under `BodyReads`: gRPC grows a stream's window to a whole
request once the server reads it, so without a bound every open anonymous call could make the
server buffer max_request_bytes. A call waiting for a read slot stays at its stream window.

A refusal by a rate limit (`RateLimited`) is answered after `refusal_delay_s`. Every refused call
still costs the event loop that platform streams share a call set-up, so the delay caps how fast
one connection can make the server refuse: at its calls in flight (at most
`max_concurrent_streams`) per delay. At most `max_delayed` refusals wait at once (more are
answered at once), and calls the web bridge forwards are never held: they share its connection.
A gated handler is built once per method and reused.
"""
import asyncio
import copy
import inspect
import logging

import grpc

from hashmatch.server.access import PLATFORM
from hashmatch.server.buckets import caller_address, peer_address
from hashmatch.server.convert import check_decoded, tolerant
from hashmatch.server.errors import (InvalidRequest, LimitExceeded, RateLimited, abort,
                                     status_for)

log = logging.getLogger("hashmatch.server")


class Gate(grpc.aio.ServerInterceptor):
    """`checks` maps a service ("hashmatch.v1.Cases") to `async check(method, metadata, peer)
    -> str | None`; a returned name is the platform; a raised error refuses the call. A call
    that passes without a platform is anonymous: its body is read under `reads`."""

    def __init__(self, checks, count_error, refusal_delay_s: float = 0.0, max_delayed: int = 0,
                 reads: "BodyReads | None" = None):
        self._checks, self._count_error = checks, count_error
        self.delay = RefusalDelay(refusal_delay_s, max_delayed)
        self.reads = reads or BodyReads(1 << 30, 1 << 30, None)
        self._gated: dict[str, grpc.RpcMethodHandler] = {}

    def twin(self) -> "Gate":
        """A gate for another gRPC server of the process: the same checks, refusal delay and
        read slots, its own cache of gated handlers (a handler is one server's service)."""
        twin = copy.copy(self)
        twin._gated = {}
        return twin

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        gated = self._gated.get(method)
        if gated is not None:
            return gated
        handler = await continuation(handler_call_details)
        service, _, name = method[1:].partition("/")
        check = self._checks.get(service)
        if handler is None or check is None:
            return handler
        gated = self._gated[method] = _gated(handler, name, check, self._count_error,
                                             self.delay, self.reads)
        return gated


async def anyone(method: str, metadata, peer: str) -> None:
    """The check of a service open to anyone: nothing to check, its body read under BodyReads."""


class BodyReads:
    """At most `most` anonymous request bodies read at once, `per_address` of them from one
    address, each within `timeout_s` (None: no limit), so a slow sender cannot keep a slot."""

    def __init__(self, most: int, per_address: int, timeout_s: float | None):
        self.most, self.per_address, self.timeout_s = most, per_address, timeout_s
        self._slots: asyncio.Semaphore | None = None    # made on the serving event loop
        self._by_address: dict[str, int] = {}

    async def read(self, context, address: str):
        if self._by_address.get(address, 0) >= self.per_address:
            raise RateLimited(f"anonymous_reads_per_address ({self.per_address}) request "
                              "bodies from this address are being read", 1)
        self._slots = self._slots or asyncio.Semaphore(self.most)
        self._by_address[address] = self._by_address.get(address, 0) + 1
        try:
            try:
                await asyncio.wait_for(self._slots.acquire(), self.timeout_s)
            except TimeoutError:
                raise RateLimited(f"server busy: max_anonymous_reads ({self.most}) request "
                                  "bodies are being read", 1) from None
            try:
                return await asyncio.wait_for(context.read(), self.timeout_s)
            except TimeoutError:
                raise LimitExceeded(f"the request body did not arrive within "
                                    f"anonymous_read_timeout_s ({self.timeout_s:g} s)") from None
            finally:
                self._slots.release()
        finally:
            left = self._by_address.pop(address) - 1
            if left:
                self._by_address[address] = left


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


def _gated(handler, method: str, check, count_error, delay: RefusalDelay, reads: BodyReads):
    async def refuse(context, exc: Exception, address: str) -> None:
        if status_for(exc) is None:
            log.exception("internal error in the gate", extra={"fields": {"method": method}})
        elif isinstance(exc, RateLimited) and address == peer_address(context.peer()):
            await delay()
        await abort(context, exc, count_error)

    async def admitted(context) -> str | None:
        """The caller's address when the call may go on (its platform set), else None."""
        metadata = context.invocation_metadata()
        address = caller_address(context.peer(), metadata)
        try:
            platform = await check(method, metadata, address)
        except Exception as exc:  # noqa: BLE001 - every refusal must become a status
            await refuse(context, exc, address)
            return None
        if platform is not None:
            PLATFORM.set(platform)
        return address

    async def read_one(context, address: str):
        """The call's one request, under `reads` when no platform vouches for the caller;
        None when the call was refused."""
        try:
            request = await (context.read() if PLATFORM.get(None) else
                             reads.read(context, address))
            check_decoded(request)
        except Exception as exc:  # noqa: BLE001 - every refusal must become a status
            await refuse(context, exc, address)
            return None
        if request is grpc.aio.EOF:
            await abort(context, InvalidRequest(f"{method} needs a request message"),
                        count_error)
        return request

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
            address = await admitted(context)
            request = None if address is None else await read_one(context, address)
            return None if request is None else await inner(request, context)
    else:
        inner = handler.unary_stream

        async def behavior(requests, context):    # health's Watch: answers by context.write
            address = await admitted(context)
            request = None if address is None else await read_one(context, address)
            if request is None:
                return
            answers = inner(request, context)
            if inspect.isasyncgen(answers):
                async for answer in answers:
                    await context.write(answer)
            else:
                await answers
    # Corrupt request bytes reach the behaviour (and a stream's servicer) as convert.Undecodable,
    # answered INVALID_ARGUMENT, not as a deserializer's exception (INTERNAL, a logged traceback).
    decode = handler.request_deserializer
    return make(behavior, decode and tolerant(decode), handler.response_serializer)
