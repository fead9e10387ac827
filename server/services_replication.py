"""The Replication servicer (Sync, VerifyCopy), and the Cases servicer of a read-only mirror.

Thin: replication.py says what to send; this writes it with `await`, so a slow reader slows
only its own stream, and cuts off a reader whose stream takes no message for sync_stall_s
(RESOURCE_EXHAUSTED; it resumes from its last token). New changes are noticed from the
follower's head (no database read while idle) and on a timer, then read from the change log.
"""
import asyncio
import dataclasses
import time

from hashmatch.server import replication
from hashmatch.server.access import Authenticator, PlatformLimits
from hashmatch.server.config import ServerConfig
from hashmatch.server.convert import check_decoded
from hashmatch.server.errors import InvalidRequest, ReadOnlyMirror, ResyncRequired, SlowReader
from hashmatch.server.follower import Follower
from hashmatch.server.listing import ListState
from hashmatch.server.metrics import Metrics
from hashmatch.server.outcomes import OutcomeStore
from hashmatch.server.services import Run, rpc_errors
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc

IDLE_POLL_S = 0.02      # how often an idle stream looks at the follower's head
STORE_POLL_S = 1.0      # ... and reads the log anyway (writes the follower has not seen)
GAP_WAIT_S = 2.0        # a gap in the log older than this ends the stream (never skipped)


@dataclasses.dataclass(eq=False)
class ReplicationService(pb_grpc.ReplicationServicer):
    config: ServerConfig
    store: OutcomeStore
    state: ListState
    follower: Follower
    auth: Authenticator
    limits: PlatformLimits
    metrics: Metrics
    run: Run

    async def _caller(self, request, context):
        caller = await self.auth.require(context, "replicate")
        check_decoded(request)
        return caller

    async def _write(self, context, message) -> None:
        # asyncio.wait, not wait_for: when the reader cancels, wait_for would wait for the
        # cancelled write, which a dead call never finishes, and the stream would never end.
        write = asyncio.ensure_future(context.write(message))
        try:
            done, _ = await asyncio.wait({write}, timeout=self.config.sync_stall_s)
        finally:
            if not write.done():
                write.cancel()
        if not done:
            raise SlowReader(f"this Sync reader took no message for sync_stall_s "
                             f"({self.config.sync_stall_s:g} s); resume from the last "
                             "resume_token")
        write.result()

    @rpc_errors
    async def Sync(self, request, context):
        caller = await self._caller(request, context)
        mask = replication.signal_mask(request.signal_types)
        with self.limits.stream(caller.name):
            if request.resume_token:
                at = await self.run(replication.resume, self.store, request.resume_token, mask)
            else:
                at, messages = await self.run(replication.snapshot, self.store, mask)
                for message in messages:
                    await self._write(context, message)
            await self._follow(context, at)

    async def _follow(self, context, at) -> None:
        clock = time.monotonic
        last_write = last_read = clock()
        gap_since = None
        while True:
            known = max(self.follower.head, self.state.sequence)
            if known > at.sequence or clock() - last_read > STORE_POLL_S:
                messages, reached = await self.run(replication.changes, self.store, at,
                                                   self.config.max_message_bytes)
                last_read = clock()
                if messages:
                    for message in messages:
                        await self._write(context, message)
                    at = replication.Position(at.epoch, reached, at.mask)
                    last_write, gap_since = clock(), None
                    continue
                if reached < 0:
                    gap_since = gap_since or clock()
                    if clock() - gap_since > GAP_WAIT_S:
                        raise ResyncRequired(
                            f"the change log has a gap after sequence {at.sequence}; "
                            f"{replication.SNAPSHOT_AGAIN}")
            if clock() - last_write > self.config.sync_heartbeat_s:
                await self._write(context, replication.heartbeat(at, self.follower.head))
                last_write = clock()
            await asyncio.sleep(IDLE_POLL_S)

    @rpc_errors
    async def VerifyCopy(self, request, context):
        await self._caller(request, context)
        at = replication.parse_token(request.resume_token)
        if at.mask != replication.ALL_SIGNALS:
            raise InvalidRequest("VerifyCopy checks copies of every signal type only (this "
                                 "token names some)")
        epoch = await self.run(self.store.epoch)
        state = await self.run(self.follower.digest)
        return replication.verify(state, request.resume_token, request.list_digest,
                                  request.digest_rows, epoch)


@dataclasses.dataclass(eq=False)
class MirrorCasesService(pb_grpc.CasesServicer):
    """Case calls on a server that follows another: refused, naming where to send them."""
    source: str                 # the server this one follows (--follow)
    metrics: Metrics

    def _refuse(self):
        raise ReadOnlyMirror(f"this server is a read-only mirror of {self.source}; "
                             "send case calls to that server")

    @rpc_errors
    async def SubmitCase(self, request, context):
        self._refuse()

    @rpc_errors
    async def GetCaseStatus(self, request, context):
        self._refuse()

    @rpc_errors
    async def WithdrawCase(self, request, context):
        self._refuse()
