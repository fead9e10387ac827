"""Key lifecycle (issue 13): several keys per platform, rotation with a grace period, revocation
that reaches every server through the change log, roles changed live, the Admin service and the
append-only audit log.

Real servers on loopback sockets, real SQLite files and a private PostgreSQL cluster
(conftest), the CLI's own `main`. Deadlines are generous upper bounds for a loaded machine, not
timings.
"""
import json
import pathlib
import re

import grpc
import numpy as np
import pytest

from hashmatch.clients import cli
from hashmatch.server import audit, credentials
from hashmatch.server.audit import FailureDigest
from hashmatch.server.errors import InvalidRequest, NotFound
from hashmatch.server.mirror import Mirror
from hashmatch.server.platforms import EXPIRED, OP_KEYS, REVOKED, UNKNOWN
from hashmatch.server.replica_store import open_replica_store
from hashmatch.server.store import open_store
from hashmatch.v1 import hashmatch_pb2 as pb
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc
from test_feedback import new_key
from test_several_servers import wait_until

SERVER = pathlib.Path(__file__).resolve().parent.parent / "server"


def list_info(server, key: str):
    """GetListInfo with `key`; the status code (OK when it answered)."""
    stub = pb_grpc.ListInfoStub(server.channel())
    try:
        stub.GetListInfo(pb.GetListInfoRequest(), metadata=[("x-api-key", key)])
        return grpc.StatusCode.OK
    except grpc.RpcError as error:
        return error.code()


def key_log_rows(db: str) -> list[tuple]:
    store = open_store(db)
    try:
        with store._db.transaction(write=False) as tx:
            return tx.execute("SELECT seq, count, op, first_entry FROM changes WHERE op=? "
                              "ORDER BY seq", (OP_KEYS,)).fetchall()
    finally:
        store.close()


# ---------------------------------------------------------------------- the store


def test_rotate_revoke_and_roles_in_the_store(any_db):
    store = open_store(any_db)
    try:
        first = store.add_platform("acme", ["match"], actor="cli:test")
        head = store.head_sequence()
        second, second_id, seq = store.rotate_key("acme", 3600, actor="cli:test")
        assert seq == head + 1 == store.head_sequence()
        assert store.key_check(first).name == store.key_check(second).name == "acme"
        assert store.key_check(first).expires is not None      # ends with the grace period
        assert store.key_check(second).expires is None
        third, third_id, _ = store.rotate_key("acme", 0, actor="cli:test")
        assert store.key_check(first).refused == store.key_check(second).refused == EXPIRED
        assert store.key_check(third).roles == {"match"}
        roles, _ = store.set_roles("acme", ["admin", "match"], actor="cli:test")
        assert roles == ("match", "admin") and store.key_check(third).roles == set(roles)
        assert store.revoke_keys("acme", third_id, actor="cli:test")[0] == 1
        assert store.key_check(third).refused == REVOKED
        assert store.revoke_keys("acme", actor="cli:test") == (0, 0)   # none left to end
        assert store.key_check(credentials.new_api_key()).refused == UNKNOWN

        [acme] = store.platforms()
        assert [k.state(0) for k in acme.keys][-1] == "revoked"
        assert [k.id for k in acme.keys] == sorted(k.id for k in acme.keys)
        with pytest.raises(NotFound, match="no platform 'nobody'"):
            store.rotate_key("nobody")
        with pytest.raises(NotFound, match="no key 999"):
            store.revoke_keys("acme", 999)
        with pytest.raises(InvalidRequest, match="grace must be"):
            store.rotate_key("acme", -1)
        rows = store.audit_rows()
        secrets = [first, second, third] + [credentials.key_digest(k).hex()
                                            for k in (first, second, third)]
    finally:
        store.close()
    assert [r.action for r in rows] == ["platform.add", "platform.rotate", "platform.rotate",
                                        "platform.roles", "platform.revoke"]
    assert {r.actor for r in rows} == {"cli:test"} and {r.subject for r in rows} == {"acme"}
    text = repr(rows)
    assert not any(s in text or s[:16] in text for s in secrets)
    # Rotations, the role change and the revocation: one log row each, carrying only ids.
    log = key_log_rows(any_db)
    assert len(log) == 4 and all(count == 1 for _, count, _, _ in log)


def test_nothing_updates_or_deletes_audit_rows():
    """The audit table is append-only: no SQL in the server names it in an UPDATE, a DELETE or
    a DROP, and no table-emptying loop lists it."""
    sql = {path.name: path.read_text() for path in SERVER.glob("*.py")}
    wrong = [name for name, text in sql.items()
             if re.search(r"(UPDATE|DELETE\s+FROM|DROP\s+TABLE|TRUNCATE)\s+(IF\s+EXISTS\s+)?"
                          r"audit\b", text, re.IGNORECASE)
             or re.search(r"for table in \([^)]*\"audit\"", text)]
    assert not wrong, f"audit rows changed or deleted in {wrong}"
    assert "INSERT INTO audit" in sql["audit.py"]


def test_failure_digest_writes_one_row_per_peer_per_window_and_a_bounded_number():
    digest = FailureDigest(window_s=60, most=3)
    assert digest.note("10.0.0.1", "MatchBatch", UNKNOWN, 0.0) == (
        "peer 10.0.0.1", "key.refused", "MatchBatch",
        "1 x unknown API key (at most one row per address per 60 s)")
    assert all(digest.note("10.0.0.1", "MatchBatch", r, t) is None for r, t in
               [(UNKNOWN, 1.0), (REVOKED, 2.0), (UNKNOWN, 59.0)])
    _, _, methods, detail = digest.note("10.0.0.1", "GetListInfo", UNKNOWN, 61.0)
    assert methods == "GetListInfo,MatchBatch"      # the ones counted since, and this one
    assert detail.startswith("1 x revoked API key; 3 x unknown API key")
    assert digest.note("10.0.0.2", "MatchBatch", UNKNOWN, 62.0)
    # 2 rows in this window: the third and last is kept for every other address together
    assert digest.note("10.0.0.3", "MatchBatch", UNKNOWN, 63.0) is None
    assert digest.note("10.0.0.4", "MatchBatch", UNKNOWN, 64.0) is None
    [others] = digest.flush(65.0)
    assert others[0] == audit.OTHER_PEERS and others[3].startswith("2 x unknown API key")
    assert digest.note("10.0.0.4", "MatchBatch", UNKNOWN, 66.0) is None
    assert digest.flush(67.0) == []                 # no fourth row in this window
    assert digest.note("10.0.0.4", "MatchBatch", UNKNOWN, 122.0) is not None   # a new window


# ---------------------------------------------------------------------- every server


def test_revocation_and_expiry_reach_every_server_through_the_log(start_server, any_db,
                                                                  capsys):
    a = start_server(db_path=any_db)
    b = start_server(db_path=any_db)
    old = b.api_key         # platform-1's key works on both servers
    assert list_info(a, old) == list_info(b, old) == grpc.StatusCode.OK    # cached on both
    assert cli.main(["platform", "rotate", "platform-1", "--grace", "2", "--db", any_db,
                     "--json"]) == 0
    new = json.loads(capsys.readouterr().out)["api_key"]
    assert list_info(a, new) == list_info(b, new) == grpc.StatusCode.OK
    # The old key ends 2 s after the rotation, with no further change in the log.
    for server in (a, b):
        wait_until(lambda: list_info(server, old) == grpc.StatusCode.UNAUTHENTICATED,
                   "the rotated key to expire")
    assert list_info(a, new) == list_info(b, new) == grpc.StatusCode.OK
    # Revoked with the CLI: every server refuses the key within its poll interval.
    assert cli.main(["platform", "revoke", "platform-1", "--db", any_db]) == 0
    for server in (a, b):
        wait_until(lambda: list_info(server, new) == grpc.StatusCode.UNAUTHENTICATED,
                   "the revoked key to be refused", timeout=10)
    assert list_info(a, a.api_key) == list_info(b, a.api_key) == grpc.StatusCode.OK


def _rotated_key(db: str, name: str) -> str:
    """Rotates `name`'s key (the old ones end now) and returns the new one."""
    store = open_store(db)
    try:
        return store.rotate_key(name, 0, actor="test")[0]
    finally:
        store.close()


def test_key_changes_travel_through_sync_as_no_ops(start_server, tmp_path):
    """A `serve --follow` copy and a durable mirror apply the key rows of the primary's log
    harmlessly: they keep following, at the primary's sequence and digest. The copy's own keys
    (in its own store) are revoked there and refused too."""
    primary = start_server()
    replicate = new_key(primary.db_path, "mirror", ["replicate"])
    copy = start_server(db_path=str(tmp_path / "copy.db"), follow=primary.target,
                        follow_api_key=replicate)
    durable = Mirror(open_replica_store(str(tmp_path / "mirror.db")), primary.target, replicate)
    thread = durable.start()
    try:
        wait_until(lambda: durable.token, "the durable mirror's snapshot, before the key change")
        _rotated_key(primary.db_path, "platform-0")
        [(key_change, *_)] = key_log_rows(primary.db_path)
        pb_grpc.CasesStub(primary.channel()).SubmitCase(pb.SubmitCaseRequest(media=[
            pb.MediaHashes(image=pb.ImageHashes(pdq=np.random.default_rng(3).bytes(32),
                                                quality=90))]))
        assert primary.app.state.sequence == key_change + 1     # the case, after the key row
        for sequence in (lambda: copy.app.state.sequence, lambda: durable.sequence):
            wait_until(lambda: sequence() == primary.app.state.sequence,
                       "the copies to reach the primary's sequence past the key change")
        assert copy.app.state.digest() == durable.digest() == primary.app.state.digest()
        assert key_log_rows(str(tmp_path / "mirror.db")) == key_log_rows(primary.db_path)
    finally:
        durable.stop()
        thread.join(10)
        durable.store.close()
    assert list_info(copy, copy.api_key) == grpc.StatusCode.OK
    store = open_store(copy.db_path)
    try:
        store.revoke_keys("platform-1")
    finally:
        store.close()
    wait_until(lambda: list_info(copy, copy.api_key) == grpc.StatusCode.UNAUTHENTICATED,
               "the copy to refuse a key revoked in its own store", timeout=10)


# ---------------------------------------------------------------------- Admin over gRPC


def test_admin_service(start_server):
    server = start_server()
    admin_key = new_key(server.db_path, "ops", ["admin"])
    admin = pb_grpc.AdminStub(server.channel())
    as_admin = [("x-api-key", admin_key)]

    def refused(call, request, metadata):
        with pytest.raises(grpc.RpcError) as info:
            call(request, metadata=metadata)
        return info.value.code(), info.value.details()

    assert refused(admin.ListPlatforms, pb.ListPlatformsRequest(), [("x-api-key",
                   server.api_key)])[0] == grpc.StatusCode.PERMISSION_DENIED
    assert refused(admin.ListAudit, pb.ListAuditRequest(), [])[0] == \
        grpc.StatusCode.UNAUTHENTICATED

    added = admin.AddPlatform(pb.AddPlatformRequest(name="newco"), metadata=as_admin)
    assert list_info(server, added.api_key) == grpc.StatusCode.OK
    rotated = admin.RotateKey(pb.RotateKeyRequest(name="newco", grace_s=0), metadata=as_admin)
    # The servicer applies the change before answering: the old key is refused at once.
    assert list_info(server, added.api_key) == grpc.StatusCode.UNAUTHENTICATED
    assert list_info(server, rotated.api_key) == grpc.StatusCode.OK
    kept = admin.RotateKey(pb.RotateKeyRequest(name="newco"), metadata=as_admin)   # 24 h grace
    assert list_info(server, rotated.api_key) == list_info(server, kept.api_key) == \
        grpc.StatusCode.OK

    roles = admin.SetRoles(pb.SetRolesRequest(name="newco", roles=["feedback"]),
                           metadata=as_admin)
    assert list(roles.roles) == ["feedback"] and roles.sequence
    assert list_info(server, kept.api_key) == grpc.StatusCode.PERMISSION_DENIED   # no 'match'
    code, details = refused(admin.SetRoles, pb.SetRolesRequest(name="newco", roles=["root"]),
                            as_admin)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "root" in details
    code, details = refused(admin.RevokeKey, pb.RevokeKeyRequest(name="ghost"), as_admin)
    assert code == grpc.StatusCode.NOT_FOUND and "ghost" in details
    revoked = admin.RevokeKey(pb.RevokeKeyRequest(name="newco"), metadata=as_admin)
    assert revoked.revoked == 2 and revoked.sequence
    assert list_info(server, kept.api_key) == grpc.StatusCode.UNAUTHENTICATED

    listed = admin.ListPlatforms(pb.ListPlatformsRequest(), metadata=as_admin)
    newco = {p.name: p for p in listed.platforms}["newco"]
    assert [k.state for k in newco.keys] == ["expired", "revoked", "revoked"]
    wire = listed.SerializeToString()
    for key in (added.api_key, rotated.api_key, kept.api_key):
        assert key.encode() not in wire and credentials.key_digest(key) not in wire

    records = admin.ListAudit(pb.ListAuditRequest(), metadata=as_admin).records
    mine = [(r.actor, r.action) for r in records if r.subject == "newco"]
    assert mine == [("admin:ops", a) for a in ("platform.add", "platform.rotate",
                                               "platform.rotate", "platform.roles",
                                               "platform.revoke")]
    page = admin.ListAudit(pb.ListAuditRequest(after_id=records[0].id, limit=2),
                           metadata=as_admin).records
    assert [r.id for r in page] == [r.id for r in records[1:3]]
    code, details = refused(admin.AddPlatform, pb.AddPlatformRequest(name="x" * 101), as_admin)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "1..100 printable" in details
    raw = server.channel().unary_unary("/hashmatch.v1.Admin/RotateKey")
    with pytest.raises(grpc.RpcError) as info:
        raw(b"\xff\xff\xff", metadata=as_admin)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list_info(server, server.api_key) == grpc.StatusCode.OK     # still serving


# ---------------------------------------------------------------------- the audit log


def test_refused_keys_and_withdrawals_are_audited_without_secrets(start_server):
    server = start_server()
    bad = credentials.new_api_key()
    for _ in range(5):
        assert list_info(server, bad) == grpc.StatusCode.UNAUTHENTICATED
    cases = pb_grpc.CasesStub(server.channel())
    case = cases.SubmitCase(pb.SubmitCaseRequest(media=[pb.MediaHashes(image=pb.ImageHashes(
        pdq=np.random.default_rng(5).bytes(32), quality=90))]))
    cases.WithdrawCase(pb.WithdrawCaseRequest(case_id=case.case_id, pin=case.pin))

    def rows():
        store = open_store(server.db_path)
        try:
            return store.audit_rows()
        finally:
            store.close()
    refused = wait_until(lambda: [r for r in rows() if r.action == "key.refused"],
                         "the refused key's audit row")
    [row] = refused          # five refusals from one peer: one row
    assert row.actor.startswith("peer ") and row.detail.startswith("1 x unknown API key")
    [withdrawal] = [r for r in rows() if r.action == "case.withdraw"]
    assert withdrawal.subject == audit.case_ref(case.case_id)
    text = repr(rows())
    for secret in (bad, credentials.key_digest(bad).hex(), case.case_id, case.pin):
        assert secret not in text


def test_cli_platform_lifecycle_and_audit_list(capsys, tmp_path):
    db = str(tmp_path / "ops.db")

    def run(*argv) -> list[dict]:
        assert cli.main([*argv, "--db", db, "--json"]) == 0
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    [added] = run("platform", "add", "eu")
    [rotated] = run("platform", "rotate", "eu", "--grace", "30m")
    assert rotated["grace_s"] == 1800 and rotated["api_key"] != added["api_key"]
    [roles] = run("platform", "roles", "eu", "--roles", "match,feedback")
    assert roles["roles"] == ["match", "feedback"]
    [revoked] = run("platform", "revoke", "eu", "--key-id", str(rotated["key_id"]))
    assert revoked["revoked"] == 1
    [listed] = run("platform", "list")
    assert [k["state"] for k in listed["keys"]] == ["valid", "revoked"]
    assert listed["keys"][0]["expires"] is not None and listed["roles"] == roles["roles"]
    assert cli.main(["platform", "list", "--db", db]) == 0
    shown = capsys.readouterr().out
    assert "key 1: valid" in shown and "key 2: revoked" in shown
    assert added["api_key"] not in shown and rotated["api_key"] not in shown
    actions = [r["action"] for r in run("audit", "list", "--since", "1h")]
    assert actions == ["platform.add", "platform.rotate", "platform.roles", "platform.revoke"]
    assert run("audit", "list", "--since", "2999-01-01") == []

    assert cli.main(["platform", "rotate", "nobody", "--db", db]) == 2
    assert "no platform 'nobody'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["platform", "rotate", "eu", "--grace", "soon", "--db", db])
    assert "invalid duration value" in capsys.readouterr().err


def test_cli_admin_commands_over_grpc(live_server, capsys):
    admin_key = new_key(live_server.db_path, "ops", ["admin"])
    flags = ["--server", live_server.target, "--api-key", admin_key, "--json"]

    def run(*argv) -> list[dict]:
        assert cli.main([*argv, *flags]) == 0
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    [added] = run("admin", "add", "beta", "--roles", "match,feedback")
    assert added["roles"] == ["match", "feedback"] and added["api_key"].startswith("hm_")
    [rotated] = run("admin", "rotate", "beta")                  # the server's 24 h grace
    assert list_info(live_server, added["api_key"]) == grpc.StatusCode.OK
    [roles] = run("admin", "roles", "beta", "--roles", "feedback")
    assert roles["roles"] == ["feedback"]
    [revoked] = run("admin", "revoke", "beta", "--key-id", str(rotated["key_id"]))
    assert revoked["revoked"] == 1
    beta = {p["platform"]: p for p in run("admin", "platforms")}["beta"]
    assert [k["state"] for k in beta["keys"]] == ["valid", "revoked"]
    assert beta["keys"][0]["expires"] and beta["roles"] == ["feedback"]
    audit_rows = run("admin", "audit", "--since", "1h")
    assert [(r["actor"], r["action"]) for r in audit_rows if r["subject"] == "beta"] == [
        ("admin:ops", a) for a in ("platform.add", "platform.rotate", "platform.roles",
                                   "platform.revoke")]
    assert cli.main(["admin", "platforms", "--server", live_server.target, "--api-key",
                     live_server.api_key]) == 1       # a key without 'admin'
    assert "lacks the 'admin' role" in capsys.readouterr().err


def test_review_actions_are_audited(live_server):
    from tests.test_feedback import near, platform_key, submit_photo
    channel = live_server.channel()
    case, pdq = submit_photo(channel, 6)
    admin = platform_key(live_server.db_path, "reviewer", ("admin",))
    review = pb_grpc.ReviewStub(channel)
    review.Suppress(pb.SuppressRequest(pdq_hashes=near(pdq, 3)), metadata=admin)
    review.Decide(pb.DecideRequest(entry_id=case.entry_ids[0], decision=pb.DECISION_REINSTATE),
                  metadata=admin)
    records = pb_grpc.AdminStub(channel).ListAudit(pb.ListAuditRequest(), metadata=admin).records
    assert [(r.actor, r.action, r.subject) for r in records if r.action.startswith("review.")] \
        == [("admin:reviewer", "review.suppress", "1 hash(es)"),
            ("admin:reviewer", "review.reinstate", f"entry {case.entry_ids[0]}")]
