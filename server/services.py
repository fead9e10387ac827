"""The gRPC servicers: a few lines per method, from request to plain types to answer.

Errors are raised, never chosen here: `rpc_errors` maps them through errors.STATUS_CODES. Work
that blocks (store commits, scrypt, matching) runs on the app's worker threads. Keys and call
rates were checked by the gate (gate.py) before the request was read; Matching and ListInfo
read the platform it found from `access.PLATFORM`.
"""
import functools
import logging

import grpc

from hashmatch.server import convert
from hashmatch.server.access import PLATFORM
from hashmatch.server.errors import abort, status_for
from hashmatch.server.listing import kernel_backend, run_query
from hashmatch.server.media import hash_count
from hashmatch.server.metrics import list_hashes
from hashmatch.server.outcomes import refuse_suppressed
from hashmatch.server.streaming import match_stream
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc

log = logging.getLogger("hashmatch.server")


def rpc_errors(method):
    """Turns a raised error into the call's status (INTERNAL, without details, for bugs)."""
    @functools.wraps(method)
    async def wrapper(self, request, context):
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - every error must become a status
            if status_for(exc) is None:
                log.exception("internal error", extra={"fields": {"method": method.__name__}})
            await abort(context, exc, self.count_error if hasattr(self, "count_error")
                        else self.app.metrics.count_error)
    return wrapper


class TolerantDecoding(grpc.aio.ServerInterceptor):
    """Lets hashmatch.v1 methods see corrupt request bytes as `convert.Undecodable`."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if (handler is None or handler.request_deserializer is None
                or not handler_call_details.method.startswith("/hashmatch.v1.")):
            return handler
        return handler._replace(request_deserializer=convert.tolerant(handler.request_deserializer))


class CasesService(pb_grpc.CasesServicer):
    def __init__(self, app):
        self.app = app

    @rpc_errors
    async def SubmitCase(self, request, context):
        # Validating up to max_case_hashes frames is numpy work: a case thread, not the loop.
        media = await self.app.run_case(convert.media_from_request, request, self.app.config)
        self.app.case_limits.charge_submission(hash_count(media), list_hashes(self.app.state))
        await self.app.run_case(refuse_suppressed, self.app.store, media,
                                self.app.config.suppression_threshold)
        case = await self.app.run_case(self.app.keeper.submit_case, media)
        log.info("case submitted", extra={"fields": {
            "case_id": case.case_id, "items": len(media), "sequence": case.sequence}})
        return convert.submit_response(case)

    @rpc_errors
    async def GetCaseStatus(self, request, context):
        convert.check_decoded(request)
        status = await self.app.run_case(self.app.keeper.case_status, request.case_id, request.pin)
        outcomes = await self.app.run_case(self.app.store.case_outcomes, request.case_id)
        return convert.outcome_status_response(status, outcomes)

    @rpc_errors
    async def WithdrawCase(self, request, context):
        convert.check_decoded(request)
        sequence = await self.app.run_case(self.app.keeper.withdraw_case, request.case_id,
                                           request.pin)
        log.info("case withdrawn", extra={"fields": {"case_id": request.case_id,
                                                     "sequence": sequence}})
        return convert.pb.WithdrawCaseResponse()


class MatchingService(pb_grpc.MatchingServicer):
    def __init__(self, app):
        self.app = app

    def answer(self, platform: str, request):
        """Validates, charges and matches one batch (on a worker thread)."""
        query = convert.query_from_request(request, self.app.config)
        self.app.limits.charge(platform, len(query.hashes))
        list_sequence = self.app.state.sequence
        matches = run_query(self.app.state, query)
        self.app.flood.observe_batch(query.hashes, matches)
        self.app.metrics.count_batch(len(query.hashes), len(matches))
        return convert.match_response(request.sequence, matches, list_sequence)

    @rpc_errors
    async def MatchBatch(self, request, context):
        return await self.app.run(self.answer, PLATFORM.get(), request)

    @rpc_errors
    async def MatchStream(self, request_iterator, context):
        platform = PLATFORM.get()
        with self.app.limits.stream(platform):
            await match_stream(self.app, self.answer, platform, context)


class ListInfoService(pb_grpc.ListInfoServicer):
    def __init__(self, app):
        self.app = app

    @rpc_errors
    async def GetListInfo(self, request, context):
        state, follower = self.app.state, self.app.follower
        digest = None
        if request.include_digest:
            digest = await self.app.run(follower.digest)
        response = convert.list_info_response(state.counts(), state.sequence, follower.head,
                                              self.app.config, kernel_backend(), digest)
        if not self.app.config.follow:      # what a Sync resume token may name
            epoch, response.resume_floor_sequence, _ = await self.app.run(self.app.store.bounds)
            response.list_epoch = epoch
        return response
