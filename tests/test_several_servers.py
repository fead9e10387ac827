"""The change log as the one feed: live pickup of operator writes, several servers on one
PostgreSQL list, lag in health, and faults (PostgreSQL restarted, a server killed with kill -9).

Everything is real: servers on loopback sockets, a private PostgreSQL cluster (conftest), the
CLI's own `main`. Deadlines are generous upper bounds for a loaded machine, not timings; the
propagation benchmark (bench/bench_propagation.py) measures how fast changes really travel.
"""
import threading
import time
import types

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hashmatch.clients import cli
from hashmatch.server.listing import ListState
from hashmatch.server.store import open_store
from hashmatch.v1 import hashmatch_pb2 as pb
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc

DEADLINE_S = 20


def wait_until(predicate, what: str, timeout: float = DEADLINE_S):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def image(pdq: np.ndarray, md5=b"") -> pb.MediaHashes:
    return pb.MediaHashes(image=pb.ImageHashes(pdq=bytes(pdq), md5=md5, quality=90))


def matched(stubs, hash_: np.ndarray) -> list[int]:
    answer = stubs.matching.MatchBatch(pb.MatchRequest(signal_type=pb.SIGNAL_TYPE_PDQ,
                                                       hashes=bytes(hash_)), metadata=stubs.key)
    return [m.entry_id for m in answer.matches]


def info(stubs, digest: bool = False) -> pb.GetListInfoResponse:
    return stubs.list_info.GetListInfo(pb.GetListInfoRequest(include_digest=digest),
                                       metadata=stubs.key)


def same_list(servers: list) -> tuple[int, str]:
    """Waits until every server has applied the log's head; returns their common digest."""
    def caught_up():
        answers = [info(s, digest=True) for s in servers]
        heads = {a.head_sequence for a in answers} | {a.applied_sequence for a in answers}
        return answers if len(heads) == 1 else None
    answers = wait_until(caught_up, "every server to apply the same head")
    digests = {(a.applied_sequence, a.digest_rows, a.list_digest) for a in answers}
    assert len(digests) == 1, digests
    return answers[0].digest_rows, answers[0].list_digest


def test_list_import_into_a_running_server_is_matched_without_restart(
        start_server, connect, random_hashes, any_db, tmp_path):
    server = start_server(db_path=any_db)
    stubs = connect(server)
    before = info(stubs)
    hashes = random_hashes(3, seed=40)
    listing = tmp_path / "hashes.txt"
    listing.write_text("".join(h.tobytes().hex() + "\n" for h in hashes))
    assert cli.main(["list", "import", str(listing), "--db", any_db]) == 0
    wait_until(lambda: matched(stubs, hashes[2]), "the imported hash to match")
    after = info(stubs)
    assert after.applied_sequence == after.last_sequence == after.head_sequence == \
        before.last_sequence + 3
    assert matched(stubs, hashes[0]) and not matched(stubs, random_hashes(1, seed=41)[0])
    text = server.app.metrics.render()
    assert f"hashmatch_log_head_sequence {after.head_sequence}" in text
    assert "hashmatch_log_lag_changes 0" in text


def test_health_says_not_serving_while_the_list_lags(start_server, connect, random_hashes,
                                                     monkeypatch):
    server = start_server(max_lag_s=0.3, follow_interval_s=0.05)
    stubs = connect(server)
    health = health_pb2_grpc.HealthStub(stubs.channel)
    status = lambda: health.Check(health_pb2.HealthCheckRequest()).status  # noqa: E731
    assert status() == health_pb2.HealthCheckResponse.SERVING
    gate = threading.Event()
    apply = ListState.apply

    def slow_apply(self, added, removed):
        gate.wait(DEADLINE_S)
        apply(self, added, removed)

    monkeypatch.setattr(ListState, "apply", slow_apply)
    hashes = random_hashes(2, seed=42)
    store = open_store(server.db_path)
    store.import_pdq_hashes(hashes)
    store.close()
    wait_until(lambda: status() == health_pb2.HealthCheckResponse.NOT_SERVING,
               "NOT_SERVING while the follower is stuck behind the head")
    lagging = info(stubs)
    assert lagging.head_sequence == lagging.applied_sequence + 2
    assert "hashmatch_log_lag_changes 2" in server.app.metrics.render()
    gate.set()
    wait_until(lambda: status() == health_pb2.HealthCheckResponse.SERVING, "SERVING again")
    assert matched(stubs, hashes[1])


@pytest.fixture
def three_servers(start_server, connect, pg_url):
    servers = [start_server(db_path=pg_url) for _ in range(3)]
    return servers, [connect(s) for s in servers]


def test_a_case_on_one_server_matches_on_another_and_withdrawal_travels_back(three_servers,
                                                                             random_hashes):
    _, (a, b, c) = three_servers
    listed = random_hashes(1, seed=50)[0]
    case = a.cases.SubmitCase(pb.SubmitCaseRequest(media=[image(listed)]))
    entry = case.entry_ids[0]
    wait_until(lambda: matched(b, listed) == [entry], "B to match a case submitted on A")
    wait_until(lambda: matched(c, listed) == [entry], "C to match it")
    b.cases.WithdrawCase(pb.WithdrawCaseRequest(case_id=case.case_id, pin=case.pin))
    assert matched(b, listed) == [], "the withdrawing server stops before it answers"
    wait_until(lambda: matched(a, listed) == [], "A to stop matching a case withdrawn on B")
    same_list([a, b, c])


def test_concurrent_writes_on_several_servers_end_in_one_list(three_servers, random_hashes):
    _, stubs = three_servers
    errors, kept = [], []

    def write(server_stubs, seed):
        try:
            hashes = random_hashes(8, seed=seed)
            for i, h in enumerate(hashes):
                case = server_stubs.cases.SubmitCase(pb.SubmitCaseRequest(
                    media=[image(h, md5=bytes([seed, i]) * 8)]))
                if i % 2:
                    stubs[(seed + i) % 3].cases.WithdrawCase(pb.WithdrawCaseRequest(
                        case_id=case.case_id, pin=case.pin))
                else:
                    kept.append(case.entry_ids[0])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, 60 + n)) for n, s in enumerate(stubs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows, _ = same_list(stubs)
    assert rows == 2 * len(kept) == 2 * 3 * 4   # a PDQ and an MD5 row per kept case
    assert info(stubs[0]).applied_sequence == 3 * (8 + 4)


def test_postgres_restart_keeps_matching_fails_writes_clearly_then_recovers(
        three_servers, pg_cluster, random_hashes):
    _, (a, b, _c) = three_servers
    listed = random_hashes(3, seed=70)
    acknowledged = [a.cases.SubmitCase(pb.SubmitCaseRequest(media=[image(listed[0])]))]
    wait_until(lambda: matched(b, listed[0]), "B to see the first case")
    assert matched(a, listed[0]), "each platform key is checked once (then cached) before"
    pg_cluster.stop_server()
    try:
        assert matched(b, listed[0]) == acknowledged[0].entry_ids, "matching goes on from memory"
        with pytest.raises(grpc.RpcError) as refused:
            a.cases.SubmitCase(pb.SubmitCaseRequest(media=[image(listed[1])]))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "unreachable" in refused.value.details() and "try again" in refused.value.details()
        assert matched(a, listed[0]) == acknowledged[0].entry_ids
    finally:
        pg_cluster.start()

    def submit():
        try:
            return b.cases.SubmitCase(pb.SubmitCaseRequest(media=[image(listed[2])]))
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE, error
            return None
    acknowledged.append(wait_until(submit, "writes to succeed once PostgreSQL is back"))
    wait_until(lambda: matched(a, listed[2]) == acknowledged[1].entry_ids,
               "A to see the write made on B after the restart")
    assert not matched(a, listed[1]), "the refused write left nothing behind"
    rows, _ = same_list([a, b])
    assert rows == 2


def test_a_server_killed_with_kill_9_catches_up_to_the_same_list(
        start_server, connect, server_process, pg_url, random_hashes):
    a, b = (connect(start_server(db_path=pg_url)) for _ in range(2))
    victim = server_process(db_path=pg_url)
    stop = threading.Event()
    written, withdrawn, errors = [], [], []

    def write(server_stubs, seed):
        try:
            for i, h in enumerate(random_hashes(200, seed=seed)):
                if stop.is_set():
                    return
                case = server_stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[image(h)]))
                written.append(case)
                if i % 3 == 0:
                    server_stubs.cases.WithdrawCase(pb.WithdrawCaseRequest(
                        case_id=case.case_id, pin=case.pin))
                    withdrawn.append(case)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    writers = [threading.Thread(target=write, args=(s, 80 + n)) for n, s in enumerate((a, b))]
    for t in writers:
        t.start()
    wait_until(lambda: len(written) >= 6, "some writes before the kill")
    victim.kill()
    wait_until(lambda: len(written) >= 12, "writes while the victim is down")
    restarted = server_process(db_path=pg_url)
    wait_until(lambda: len(written) >= 18, "writes after the restart")
    stop.set()
    for t in writers:
        t.join()
    assert not errors
    channel = grpc.insecure_channel(restarted.target)
    try:
        c = types.SimpleNamespace(key=[("x-api-key", restarted.api_key)],
                                  list_info=pb_grpc.ListInfoStub(channel))
        rows, _ = same_list([a, b, c])
        assert rows == len(written) - len(withdrawn) > 0
    finally:
        channel.close()
