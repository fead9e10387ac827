"""The Feedback servicer (platforms report what they did) and the Review servicer (admins).

Thin, like services.py: outcomes.py stores and decides, convert.py translates; every change of an
entry's matching state is a change-log row, which this server's follower applies before the call
answers (others within their poll interval). Also the flood breaker's trip: the server that sees
the flood writes the hold, logs it and counts it.
"""
import dataclasses
import logging

import grpc

from hashmatch.server import convert
from hashmatch.server.access import Authenticator, PlatformLimits
from hashmatch.server.config import ServerConfig
from hashmatch.server.errors import LimitExceeded, StoreUnavailable
from hashmatch.server.follower import Follower
from hashmatch.server.listing import ListState
from hashmatch.server.metrics import Metrics
from hashmatch.server.outcomes import FLOOD, OutcomeStore
from hashmatch.server.services import Run, rpc_errors
from hashmatch.v1 import hashmatch_pb2 as pb
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc

log = logging.getLogger("hashmatch.server")
MAX_REPORTS_PER_STREAM = 1_000_000   # one ReportActions stream; open another for more


@dataclasses.dataclass(eq=False)
class FeedbackService(pb_grpc.FeedbackServicer):
    config: ServerConfig
    store: OutcomeStore
    follower: Follower
    auth: Authenticator
    limits: PlatformLimits
    metrics: Metrics
    run: Run

    def _report(self, platform: str, request) -> pb.ReportAck:
        """Stores one report (on a worker thread) and applies the dispute it may cause."""
        ack = self.store.report_action(platform, convert.report_from_request(request),
                                       self.config.dispute_platforms)
        if ack.sequence:
            log.warning("entry disputed", extra={"fields": {
                "entry": request.entry_id, "sequence": ack.sequence,
                "platforms": self.config.dispute_platforms}})
            self.follower.catch_up(ack.sequence)
        return convert.ack_response(ack)

    @rpc_errors
    async def ReportAction(self, request, context):
        caller = await self.auth.require(context, "feedback")
        return await self.run(self._report, caller.name, request)

    @rpc_errors
    async def ReportActions(self, request_iterator, context):
        caller = await self.auth.require(context, "feedback")
        with self.limits.stream(caller.name):
            for _ in range(MAX_REPORTS_PER_STREAM):
                request = await context.read()
                if request is grpc.aio.EOF:
                    return
                await context.write(await self.run(self._report, caller.name, request))
            raise LimitExceeded(f"{MAX_REPORTS_PER_STREAM} reports on one stream is the most; "
                                "open another")


@dataclasses.dataclass(eq=False)
class ReviewService(pb_grpc.ReviewServicer):
    config: ServerConfig
    store: OutcomeStore
    state: ListState
    follower: Follower
    auth: Authenticator
    metrics: Metrics
    run: Run

    @rpc_errors
    async def ListHeld(self, request, context):
        await self.auth.require(context, "admin")
        return convert.held_response(await self.run(self.store.held_entries))

    @rpc_errors
    async def Decide(self, request, context):
        caller = await self.auth.require(context, "admin")
        decision = convert.decision_from_request(request)
        sequence = await self.run(self.store.decide, request.entry_id, decision,
                                  caller.name, request.note)
        log.info("review decision", extra={"fields": {
            "entry": request.entry_id, "decision": decision, "by": caller.name,
            "sequence": sequence}})
        await self.run(self.follower.catch_up, sequence)
        return pb.DecideResponse(sequence=sequence)

    @rpc_errors
    async def Suppress(self, request, context):
        caller = await self.auth.require(context, "admin")
        hashes = convert.suppressed_from_request(request, self.config)
        # Every entry holding a hash found, not one per hash: all of them are this picture.
        found = await self.run(lambda: self.state.match_pdq(
            hashes, self.config.suppression_threshold, True, every_entry=True))
        added, sequence = await self.run(self.store.suppress, hashes, caller.name,
                                         request.note, found.entry_ids.tolist())
        held = sorted(set(found.entry_ids.tolist()))
        log.info("suppression list extended", extra={"fields": {
            "hashes": added, "held": len(held), "by": caller.name}})
        if sequence:
            await self.run(self.follower.catch_up, sequence)
        return pb.SuppressResponse(added=added, sequence=sequence,
                                   held_entries=held)


    @rpc_errors
    async def History(self, request, context):
        await self.auth.require(context, "admin")
        convert.check_decoded(request)
        return convert.history_response(await self.run(self.store.decisions,
                                                       request.entry_id))


def flood_tripped(config: ServerConfig, store: OutcomeStore, state: ListState,
                  follower: Follower, metrics: Metrics, entry: int, count: int) -> None:
    """The flood breaker's trip (on the matching thread that saw it): hold the entry, and every
    entry holding the same hash (a match names one of them, so the next would flood in turn),
    on every server through the change log, tell the operator, count it. app.py binds the
    first five."""
    detail = (f"matched {count} distinct uploads within {config.flood_window_s:g} s "
              f"(flood_limit {config.flood_limit})")
    try:
        sequence = store.hold(state.same_hash_entries(entry), FLOOD, detail)
    except StoreUnavailable as exc:
        log.error("flood breaker could not hold an entry", extra={"fields": {
            "entry": entry, "error": str(exc)}})
        return
    metrics.count_flood_hold()
    log.warning("flood breaker held an entry for review", extra={"fields": {
        "entry": entry, "uploads": count, "window_s": config.flood_window_s,
        "sequence": sequence}})
    if sequence:
        follower.catch_up(sequence)
