"""The Admin servicer: platforms, roles, keys and the audit log over gRPC, for a key with the
'admin' role, so operators need not touch the database file.

Thin: the store (platforms.py, audit.py) does the work in one transaction with its audit row
and change-log row; after a key change the follower applies that row here before the call
answers (other servers within their poll interval). Gets its collaborators, not the app.
"""
import dataclasses
import logging
import time

from hashmatch.server import convert
from hashmatch.server.access import Authenticator
from hashmatch.server.follower import Follower
from hashmatch.server.metrics import Metrics
from hashmatch.server.platforms import DEFAULT_GRACE_S, DEFAULT_ROLES
from hashmatch.server.services import Run, rpc_errors
from hashmatch.server.store import Store
from hashmatch.v1 import hashmatch_pb2 as pb
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc

log = logging.getLogger("hashmatch.server")


@dataclasses.dataclass(eq=False)
class AdminService(pb_grpc.AdminServicer):
    """store: platforms and audit; follower: applies the change log (here before answering)."""
    store: Store
    auth: Authenticator
    follower: Follower
    metrics: Metrics
    run: Run

    async def _admin(self, request, context) -> str:
        """The actor for the audit log, once the key has 'admin' and the request decoded."""
        caller = await self.auth.require(context, "admin")
        convert.check_decoded(request)
        return f"admin:{caller.name}"

    async def _applied(self, sequence: int, action: str, actor: str, name: str) -> None:
        log.info("platform changed", extra={"fields": {
            "action": action, "platform": name, "by": actor, "sequence": sequence}})
        if sequence:
            await self.run(self.follower.catch_up, sequence)

    @rpc_errors
    async def ListPlatforms(self, request, context):
        await self._admin(request, context)
        now = time.time()
        return pb.ListPlatformsResponse(platforms=[
            pb.PlatformInfo(name=p.name, roles=p.roles, created_unix=p.created, keys=[
                pb.PlatformKey(key_id=k.id, created_unix=k.created, expires_unix=k.expires or 0,
                               revoked_unix=k.revoked or 0, state=k.state(now))
                for k in p.keys])
            for p in await self.run(self.store.platforms)])

    @rpc_errors
    async def AddPlatform(self, request, context):
        actor = await self._admin(request, context)
        key = await self.run(self.store.add_platform, request.name,
                             list(request.roles) or DEFAULT_ROLES, actor)
        await self._applied(0, "add", actor, request.name)
        return pb.AddPlatformResponse(api_key=key)

    @rpc_errors
    async def RotateKey(self, request, context):
        actor = await self._admin(request, context)
        grace = request.grace_s if request.HasField("grace_s") else DEFAULT_GRACE_S
        key, key_id, sequence = await self.run(self.store.rotate_key, request.name, grace, actor)
        await self._applied(sequence, "rotate", actor, request.name)
        return pb.RotateKeyResponse(api_key=key, key_id=key_id, sequence=sequence)

    @rpc_errors
    async def RevokeKey(self, request, context):
        actor = await self._admin(request, context)
        revoked, sequence = await self.run(self.store.revoke_keys, request.name,
                                           request.key_id or None, actor)
        await self._applied(sequence, "revoke", actor, request.name)
        return pb.RevokeKeyResponse(revoked=revoked, sequence=sequence)

    @rpc_errors
    async def SetRoles(self, request, context):
        actor = await self._admin(request, context)
        roles, sequence = await self.run(self.store.set_roles, request.name,
                                         list(request.roles), actor)
        await self._applied(sequence, "roles", actor, request.name)
        return pb.SetRolesResponse(roles=roles, sequence=sequence)

    @rpc_errors
    async def ListAudit(self, request, context):
        await self._admin(request, context)
        rows = await self.run(self.store.audit_rows, request.since_unix, request.after_id,
                              request.limit)
        return pb.ListAuditResponse(records=[
            pb.AuditRecord(id=r.id, at_unix=r.at, actor=r.actor, action=r.action,
                           subject=r.subject, detail=r.detail) for r in rows])
