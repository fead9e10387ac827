"""Platform roles: each API key may do only what its platform's roles allow.

Roles live in the platforms table (a schema migration gives platforms registered before roles
existed the 'match' role), `hashmatch platform add --roles` sets them, and a key without the
role a service needs gets PERMISSION_DENIED naming the missing role.
"""
import json

import grpc
import pytest

from hashmatch.clients import cli
from hashmatch.server import credentials
from hashmatch.server import store as store_module
from hashmatch.server.access import Caller, require_role
from hashmatch.server.errors import InvalidRequest, PermissionDenied
from hashmatch.server.platforms import KeyCheck
from hashmatch.server.store import open_store
from hashmatch.v1 import hashmatch_pb2 as pb


def test_platforms_from_before_roles_keep_matching(any_db, monkeypatch):
    monkeypatch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:1])
    old = open_store(any_db)
    key = credentials.new_api_key()
    with old._db.transaction(write=True) as tx:    # the INSERT of a release before roles
        tx.execute("INSERT INTO platforms (name, key_sha256, created) VALUES (?,?,0)",
                   ("old", credentials.key_digest(key)))
    old.close()
    monkeypatch.undo()
    store = open_store(any_db)
    try:
        assert store.schema_version() == len(store_module.MIGRATIONS)
        assert store.key_check(key) == KeyCheck("old", frozenset({"match"}))
    finally:
        store.close()


def test_roles_are_stored_and_checked(any_db):
    store = open_store(any_db)
    try:
        key = store.add_platform("mirror-eu", ["replicate", "match"])
        plain = store.add_platform("plain")
        assert store.key_check(key) == KeyCheck("mirror-eu", frozenset({"match", "replicate"}))
        assert store.key_check(plain) == KeyCheck("plain", frozenset({"match"}))
        assert store.key_check(key + "x").refused
        with pytest.raises(InvalidRequest, match="superuser"):
            store.add_platform("bad", ["match", "superuser"])
        with pytest.raises(InvalidRequest, match="non-empty"):
            store.add_platform("none", [])
    finally:
        store.close()


def test_require_role_names_the_missing_role():
    require_role(Caller("a", frozenset({"replicate"})), "replicate")
    with pytest.raises(PermissionDenied, match="lacks the 'match' role"):
        require_role(Caller("a", frozenset({"replicate"})), "match")


def test_cli_platform_add_with_roles(capsys, tmp_path):
    db = str(tmp_path / "ops.db")
    assert cli.main(["platform", "add", "eu", "--roles", "match,replicate", "--db", db,
                     "--json"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    assert record["roles"] == ["match", "replicate"]
    store = open_store(db)
    try:
        assert store.key_check(record["api_key"]).roles == {"match", "replicate"}
    finally:
        store.close()
    assert cli.main(["platform", "add", "x", "--roles", "match,root", "--db", db]) == 2
    assert "root" in capsys.readouterr().err


def test_a_key_without_match_cannot_match_or_read_list_info(live_server, stubs):
    store = open_store(live_server.db_path)
    key = [("x-api-key", store.add_platform("replicator", ["replicate"]))]
    store.close()
    calls = [lambda: stubs.matching.MatchBatch(pb.MatchRequest(
                 signal_type=pb.SIGNAL_TYPE_PDQ, hashes=bytes(32)), metadata=key),
             lambda: stubs.list_info.GetListInfo(pb.GetListInfoRequest(), metadata=key)]
    for call in calls:
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "lacks the 'match' role" in info.value.details()
    stubs.list_info.GetListInfo(pb.GetListInfoRequest(), metadata=stubs.key)
