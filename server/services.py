"""The gRPC servicers: a few lines per method, from request to plain types to answer.

Each servicer is given the collaborators it uses (app.py wires them once), not the App. Errors
are raised, never chosen here: `rpc_errors` maps them through errors.STATUS_CODES. Work that
blocks (store commits, scrypt, matching) runs on worker threads through the `run` it is given.
Keys and call rates were checked by the gate (gate.py) before the request was read; Matching
and ListInfo read the platform it found from `access.PLATFORM`.
"""
import dataclasses
import functools
import logging
from typing import Awaitable, Callable

import grpc

from hashmatch.server import convert
from hashmatch.server.abuse import CaseLimits
from hashmatch.server.access import PLATFORM, PlatformLimits
from hashmatch.server.audit import case_ref
from hashmatch.server.config import ServerConfig
from hashmatch.server.errors import abort, status_for
from hashmatch.server.flood import FloodBreaker
from hashmatch.server.follower import Follower
from hashmatch.server.keeper import ListKeeper
from hashmatch.server.listing import ListState, kernel_backend, run_query
from hashmatch.server.media import hash_count
from hashmatch.server.metrics import Metrics, list_hashes
from hashmatch.server.outcomes import OutcomeStore, refuse_suppressed
from hashmatch.server.streaming import match_stream
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc

log = logging.getLogger("hashmatch.server")
Run = Callable[..., Awaitable]   # `await run(fn, *args)`: fn on a worker thread (App.run)


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
            await abort(context, exc, self.metrics.count_error)
    return wrapper


@dataclasses.dataclass(eq=False)
class CasesService(pb_grpc.CasesServicer):
    config: ServerConfig
    store: OutcomeStore
    keeper: ListKeeper
    state: ListState
    case_limits: CaseLimits
    metrics: Metrics
    run_case: Run               # case threads, refused when the case queue is full

    @rpc_errors
    async def SubmitCase(self, request, context):
        # Validating up to max_case_hashes frames is numpy work: a case thread, not the loop.
        media = await self.run_case(convert.media_from_request, request, self.config)
        self.case_limits.charge_submission(hash_count(media), list_hashes(self.state))
        await self.run_case(refuse_suppressed, self.store, media,
                            self.config.suppression_threshold)
        case = await self.run_case(self.keeper.submit_case, media)
        log.info("case submitted", extra={"fields": {
            "case": case_ref(case.case_id), "items": len(media), "sequence": case.sequence}})
        return convert.submit_response(case)

    @rpc_errors
    async def GetCaseStatus(self, request, context):
        convert.check_decoded(request)
        status = await self.run_case(self.keeper.case_status, request.case_id, request.pin)
        outcomes = await self.run_case(self.store.case_outcomes, status.case_id)
        return convert.outcome_status_response(status, outcomes)

    @rpc_errors
    async def WithdrawCase(self, request, context):
        convert.check_decoded(request)
        await self.run_case(self.keeper.withdraw_case, request.case_id, request.pin)
        return convert.pb.WithdrawCaseResponse()


@dataclasses.dataclass(eq=False)
class MatchingService(pb_grpc.MatchingServicer):
    config: ServerConfig
    state: ListState
    limits: PlatformLimits
    flood: FloodBreaker
    metrics: Metrics
    run: Run                    # matching worker threads

    def answer(self, platform: str, request):
        """Validates, charges and matches one batch (on a worker thread)."""
        query = convert.query_from_request(request, self.config)
        self.limits.charge(platform, len(query.hashes))
        list_sequence = self.state.sequence
        matches = run_query(self.state, query)
        self.flood.observe_batch(query.hashes, matches)
        self.metrics.count_batch(len(query.hashes), len(matches))
        return convert.match_response(request.sequence, matches, list_sequence)

    @rpc_errors
    async def MatchBatch(self, request, context):
        return await self.run(self.answer, PLATFORM.get(), request)

    @rpc_errors
    async def MatchStream(self, request_iterator, context):
        platform = PLATFORM.get()
        with self.limits.stream(platform):
            await match_stream(self.run, self.answer, platform, context,
                               self.config.max_in_flight, self.metrics.count_error)


@dataclasses.dataclass(eq=False)
class ListInfoService(pb_grpc.ListInfoServicer):
    config: ServerConfig
    store: OutcomeStore
    state: ListState
    follower: Follower
    metrics: Metrics
    run: Run

    @rpc_errors
    async def GetListInfo(self, request, context):
        state, follower = self.state, self.follower
        digest = None
        if request.include_digest:
            digest = await self.run(follower.digest)
        response = convert.list_info_response(state.counts(), state.sequence, follower.head,
                                              self.config, kernel_backend(), digest)
        if not self.config.follow:      # what a Sync resume token may name
            epoch, response.resume_floor_sequence, _ = await self.run(self.store.bounds)
            response.list_epoch = epoch
        return response
