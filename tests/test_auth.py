"""Platform API keys and secrets hygiene: who may match, and that no PIN or key leaks.

Matching and ListInfo need a registered key in `x-api-key`; Cases need none. Keys are stored as
SHA-256 and PINs as salted scrypt, and neither appears in the logs or the database in clear.
"""
import hashlib
import logging
import pathlib
import sqlite3

import grpc
import pytest

from hashmatch.server.store import Store
from hashmatch.v1 import hashmatch_pb2 as pb

PDQ = pb.SIGNAL_TYPE_PDQ


def calls_needing_a_key(stubs):
    request = pb.MatchRequest(signal_type=PDQ, hashes=bytes(32))
    return {
        "MatchBatch": lambda md: stubs.matching.MatchBatch(request, metadata=md),
        "MatchStream": lambda md: list(stubs.matching.MatchStream(iter([request]), metadata=md)),
        "GetListInfo": lambda md: stubs.list_info.GetListInfo(pb.GetListInfoRequest(),
                                                              metadata=md),
    }


@pytest.mark.parametrize("metadata, words", [
    ([], "missing x-api-key"),
    ([("x-api-key", "")], "missing x-api-key"),
    ([("x-api-key", "hm_not-a-real-key")], "unknown API key"),
])
def test_matching_and_list_info_need_a_known_key(stubs, metadata, words):
    for name, call in calls_needing_a_key(stubs).items():
        with pytest.raises(grpc.RpcError) as info:
            call(metadata)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
        assert words in info.value.details(), name
    for call in calls_needing_a_key(stubs).values():
        call(stubs.key)


def test_cases_need_no_key(stubs):
    case = stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[
        pb.MediaHashes(image=pb.ImageHashes(md5=b"m" * 16))]))
    stubs.cases.GetCaseStatus(pb.GetCaseStatusRequest(case_id=case.case_id, pin=case.pin))


def test_a_platform_added_while_serving_is_accepted(live_server, stubs):
    store = Store(live_server.db_path)
    key = store.add_platform("late-comer")
    store.close()
    info = stubs.list_info.GetListInfo(pb.GetListInfoRequest(), metadata=[("x-api-key", key)])
    assert info.max_batch_hashes > 0


def test_keys_are_stored_as_sha256_only(live_server):
    con = sqlite3.connect(live_server.db_path)
    rows = con.execute("SELECT key_sha256 FROM platforms").fetchall()
    con.close()
    assert hashlib.sha256(live_server.api_key.encode()).digest() in [r[0] for r in rows]
    assert live_server.api_key.encode() not in database_bytes(live_server.db_path)


def database_bytes(db_path: str) -> bytes:
    return b"".join(p.read_bytes() for p in pathlib.Path(db_path).parent.glob(
        pathlib.Path(db_path).name + "*"))


def test_no_pin_or_key_in_logs_or_database(live_server, stubs, caplog):
    caplog.set_level(logging.DEBUG)
    pins = []
    for _ in range(3):
        case = stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[
            pb.MediaHashes(image=pb.ImageHashes(md5=b"m" * 16))]))
        pins.append(case.pin)
        stubs.cases.GetCaseStatus(pb.GetCaseStatusRequest(case_id=case.case_id, pin=case.pin))
        with pytest.raises(grpc.RpcError):
            stubs.cases.GetCaseStatus(pb.GetCaseStatusRequest(case_id=case.case_id,
                                                              pin="99999999x"))
    stubs.cases.WithdrawCase(pb.WithdrawCaseRequest(case_id=case.case_id, pin=case.pin))
    stubs.matching.MatchBatch(pb.MatchRequest(signal_type=PDQ, hashes=bytes(32)),
                              metadata=stubs.key)
    with pytest.raises(grpc.RpcError):
        stubs.matching.MatchBatch(pb.MatchRequest(signal_type=PDQ, hashes=bytes(32)),
                                  metadata=[("x-api-key", "hm_wrong-key-123")])
    assert "case submitted" in caplog.text
    secrets = [*pins, "99999999x", live_server.api_key, "hm_wrong-key-123"]
    assert [s for s in secrets if s in caplog.text] == []
    stored = database_bytes(live_server.db_path)
    assert [p for p in pins if p.encode() in stored] == []
