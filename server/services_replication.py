"""The Replication servicer (Sync, VerifyCopy), and the Cases servicer of a read-only mirror.

Thin: replication.py says what to send; this writes it with `await`, so a slow reader slows
only its own stream, and cuts off a reader whose stream takes no message for sync_stall_s
(RESOURCE_EXHAUSTED; it resumes from its last token). New changes are noticed from the
follower's head (no database read while idle) and on a timer, then read from the change log.
"""
import asyncio
import time

from hashmatch.server import replication
from hashmatch.server.convert import check_decoded
from hashmatch.server.errors import InvalidRequest, ReadOnlyMirror, ResyncRequired, SlowReader
from hashmatch.server.services import rpc_errors
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc

IDLE_POLL_S = 0.02      # how often an idle stream looks at the follower's head
STORE_POLL_S = 1.0      # ... and reads the log anyway (writes the follower has not seen)
GAP_WAIT_S = 2.0        # a gap in the log older than this ends the stream (never skipped)


class ReplicationService(pb_grpc.ReplicationServicer):
    def __init__(self, app):
        self.app = app

    async def _caller(self, request, context):
        caller = await self.app.auth.require(context, "replicate")
        check_decoded(request)
        return caller

    async def _write(self, context, message) -> None:
        # asyncio.wait, not wait_for: when the reader cancels, wait_for would wait for the
        # cancelled write, which a dead call never finishes, and the stream would never end.
        write = asyncio.ensure_future(context.write(message))
        try:
            done, _ = await asyncio.wait({write}, timeout=self.app.config.sync_stall_s)
        finally:
            if not write.done():
                write.cancel()
        if not done:
            raise SlowReader(f"this Sync reader took no message for sync_stall_s "
                             f"({self.app.config.sync_stall_s:g} s); resume from the last "
                             "resume_token")
        write.result()

    @rpc_errors
    async def Sync(self, request, context):
        caller = await self._caller(request, context)
        app = self.app
        mask = replication.signal_mask(request.signal_types)
        with app.limits.stream(caller.name):
            if request.resume_token:
                at = await app.run(replication.resume, app.store, request.resume_token, mask)
            else:
                at, messages = await app.run(replication.snapshot, app.store, mask)
                for message in messages:
                    await self._write(context, message)
            await self._follow(context, at)

    async def _follow(self, context, at) -> None:
        app, clock = self.app, time.monotonic
        last_write = last_read = clock()
        gap_since = None
        while True:
            known = max(app.follower.head, app.state.sequence)
            if known > at.sequence or clock() - last_read > STORE_POLL_S:
                messages, reached = await app.run(replication.changes, app.store, at,
                                                  app.config.max_message_bytes)
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
            if clock() - last_write > app.config.sync_heartbeat_s:
                await self._write(context, replication.heartbeat(at, app.follower.head))
                last_write = clock()
            await asyncio.sleep(IDLE_POLL_S)

    @rpc_errors
    async def VerifyCopy(self, request, context):
        await self._caller(request, context)
        at = replication.parse_token(request.resume_token)
        if at.mask != replication.ALL_SIGNALS:
            raise InvalidRequest("VerifyCopy checks copies of every signal type only (this "
                                 "token names some)")
        epoch = await self.app.run(self.app.store.epoch)
        state = await self.app.run(self.app.follower.digest)
        return replication.verify(state, request.resume_token, request.list_digest,
                                  request.digest_rows, epoch)


class MirrorCasesService(pb_grpc.CasesServicer):
    """Case calls on a server that follows another: refused, naming where to send them."""

    def __init__(self, app):
        self.app = app

    def _refuse(self):
        raise ReadOnlyMirror(f"this server is a read-only mirror of {self.app.config.follow}; "
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
