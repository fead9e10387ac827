"""Anonymous abuse and key guessing, over a real channel: each limit refuses with its own status
and message, is checked before the request body is read, and leaves the server serving.

Call rates here are set per test (conftest turns them off for every other test).
"""
import contextlib
import logging
import re
import threading
import time
import types

import grpc
import numpy as np
import pytest

from hashmatch.server.buckets import peer_address
from hashmatch.server.config import CASE_RATES_OFF, from_args
from hashmatch.server.errors import RETRY_AFTER_KEY
from hashmatch.v1 import hashmatch_pb2 as pb

PDQ = pb.SIGNAL_TYPE_PDQ
RATES_OFF = {**CASE_RATES_OFF, "refusal_delay_s": 0}


def md5_case(n: int = 1) -> pb.SubmitCaseRequest:
    return pb.SubmitCaseRequest(media=[pb.MediaHashes(image=pb.ImageHashes(
        md5=bytes([i]) * 16)) for i in range(n)])


def refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


@contextlib.contextmanager
def server_log():
    """The records the server logs meanwhile (INFO and up), whatever logging setup ran before."""
    records, handler = [], logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("hashmatch.server")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def retry_after(error: grpc.RpcError) -> int:
    return int(dict(error.trailing_metadata())[RETRY_AFTER_KEY])


@pytest.mark.parametrize("limit", ["submit_rate_per_peer", "submit_rate_global"])
def test_submissions_over_the_rate_are_refused_before_the_body_is_read(start_server, connect,
                                                                       limit):
    burst = limit.replace("rate", "burst")
    stubs = connect(start_server(**{**RATES_OFF, limit: 0.01, burst: 2}))
    for _ in range(2):
        assert stubs.cases.SubmitCase(md5_case()).case_id
    error = refused(lambda: stubs.cases.SubmitCase(md5_case()))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"rate limit: {limit} (0.01 calls/s" in error.details()
    assert 50 <= retry_after(error) <= 100 and f"retry in {retry_after(error)} s" in error.details()
    # garbage bytes would be INVALID_ARGUMENT if they were decoded: the limit comes first
    raw = stubs.channel.unary_unary("/hashmatch.v1.Cases/SubmitCase")
    assert refused(lambda: raw(b"\xff\x00 not a message")).code() == \
        grpc.StatusCode.RESOURCE_EXHAUSTED
    # lookups have their own buckets, and platforms are not touched
    assert refused(lambda: stubs.cases.GetCaseStatus(pb.GetCaseStatusRequest(
        case_id="a" * 16, pin="12345678"))).code() == grpc.StatusCode.NOT_FOUND
    info = stubs.list_info.GetListInfo(pb.GetListInfoRequest(), metadata=stubs.key)
    assert {c.count for c in info.counts if c.signal_type == pb.SIGNAL_TYPE_MD5} == {2}


def test_lookups_over_the_rate_are_refused(start_server, connect):
    stubs = connect(start_server(**{**RATES_OFF, "lookup_rate_per_peer": 0.01,
                                    "lookup_burst_per_peer": 3}))
    case = stubs.cases.SubmitCase(md5_case())
    ask = pb.GetCaseStatusRequest(case_id=case.case_id, pin=case.pin)
    stubs.cases.GetCaseStatus(ask)
    stubs.cases.GetCaseStatus(ask)
    stubs.cases.WithdrawCase(pb.WithdrawCaseRequest(case_id=case.case_id, pin=case.pin))
    for call in (lambda: stubs.cases.GetCaseStatus(ask),
                 lambda: stubs.cases.WithdrawCase(pb.WithdrawCaseRequest(case_id=case.case_id,
                                                                         pin=case.pin))):
        error = refused(call)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "lookup_rate_per_peer" in error.details() and retry_after(error) >= 1
    assert stubs.cases.SubmitCase(md5_case()).case_id


def test_submitted_hashes_per_second_are_bounded(start_server, connect):
    server = start_server(**{**RATES_OFF, "submit_hashes_per_s": 0.01, "max_case_hashes": 5})
    stubs = connect(server)
    assert stubs.cases.SubmitCase(md5_case(3)).case_id
    error = refused(lambda: stubs.cases.SubmitCase(md5_case(3)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "submit_hashes_per_s (0.01 hashes/s from everyone)" in error.details()
    assert stubs.cases.SubmitCase(md5_case(2)).case_id
    assert 'hashmatch_case_refused_total{limit="hash_rate"} 1' in server.app.metrics.render()


def test_the_list_budget_refuses_new_cases_with_one_warning(start_server, connect):
    server = start_server(**RATES_OFF, max_list_hashes=4)
    stubs = connect(server)
    with server_log() as records:
        assert stubs.cases.SubmitCase(md5_case(3)).case_id
        for _ in range(3):
            error = refused(lambda: stubs.cases.SubmitCase(md5_case(2)))
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "the list holds 3 hashes and this case adds 2, over max_list_hashes (4)" \
                in error.details()
        assert stubs.cases.SubmitCase(md5_case(1)).case_id
    warnings = [r for r in records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "list hash budget reached: SubmitCase refused until max_list_hashes is raised"]
    text = server.app.metrics.render()
    assert 'hashmatch_case_refused_total{limit="budget"} 3' in text
    assert "hashmatch_list_hashes 4\n" in text and "hashmatch_list_hashes_budget 4\n" in text
    assert 'hashmatch_memory_bound_bytes{cause="list"} 0\n' in text     # the budget is spent
    assert re.search(r'hashmatch_memory_bound_bytes\{cause="bodies of open calls"\} [1-9]', text)
    assert re.search(r"hashmatch_resident_bytes [1-9]", text)


def test_case_calls_beyond_the_queue_are_refused_at_once(start_server, connect):
    server = start_server(**RATES_OFF, case_queue=1)
    stubs = connect(server)
    release = threading.Event()
    busy = [server.app.case_pool.submit(release.wait, 30) for _ in range(2)]  # both case threads
    try:
        calls = [stubs.cases.SubmitCase.future(md5_case(), timeout=20) for _ in range(2)]
        deadline = time.monotonic() + 10
        while not any(call.done() for call in calls) and time.monotonic() < deadline:
            time.sleep(0.01)
        (first,) = [call for call in calls if call.done()]
        error = first.exception()
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "case_queue (1) case calls are already waiting" in error.details()
        (waiting,) = [call for call in calls if call is not first]
        assert not waiting.done()
    finally:
        release.set()
    assert waiting.result(timeout=10).case_id and all(f.result() for f in busy)
    assert stubs.cases.SubmitCase(md5_case()).case_id


def test_failing_keys_slow_the_peer_but_never_a_known_key(start_server, connect):
    server = start_server(auth_failure_burst=3, auth_failure_rate_per_s=0.01, worker_threads=1,
                          refusal_delay_s=1)
    stubs = connect(server)
    batch = pb.MatchRequest(signal_type=PDQ, hashes=np.random.default_rng(0).integers(
        0, 256, 32, dtype=np.uint8).tobytes())
    assert stubs.matching.MatchBatch(batch, metadata=stubs.key).matches == []  # now known
    secret = "hm_guessed-key-that-must-never-be-logged"
    # the one matching worker is busy: key checks must not need it
    release = threading.Event()
    busy = server.app.pool.submit(release.wait, 30)
    with server_log() as records:
        for _ in range(3):
            error = refused(lambda: stubs.matching.MatchBatch(
                batch, metadata=[("x-api-key", secret)], timeout=10))
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        raw = stubs.channel.unary_unary("/hashmatch.v1.Matching/MatchBatch")
        error = refused(lambda: raw(b"\xff garbage", metadata=[("x-api-key", secret)],
                                    timeout=10))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "too many failed API keys from this address" in error.details()
        assert retry_after(error) >= 50
        error = refused(lambda: stubs.list_info.GetListInfo(pb.GetListInfoRequest(),
                                                            timeout=10))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    release.set()
    busy.result()
    assert stubs.matching.MatchBatch(batch, metadata=stubs.key).matches == []
    assert "hashmatch_auth_failures_total 3\n" in server.app.metrics.render()
    refusals = [r for r in records if r.getMessage().startswith("API key refused")]
    assert len(refusals) == 3 and refusals[-1].levelno == logging.WARNING
    assert all(r.fields["peer"] == "127.0.0.1" for r in refusals)
    assert not any(secret in str(vars(r)) for r in records)


def test_the_client_library_reports_when_to_retry(start_server):
    from hashmatch.clients.client import HashmatchClient, HashmatchError
    server = start_server(**{**RATES_OFF, "submit_rate_per_peer": 0.01,
                             "submit_burst_per_peer": 1})
    with HashmatchClient(server.target, timeout=10) as client:
        media = [types.SimpleNamespace(md5=b"m" * 16, pdq=None, quality=0)]
        client.submit_case(media)
        with pytest.raises(HashmatchError) as caught:
            client.submit_case(media)
    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert 50 <= caught.value.retry_after_s <= 100


@pytest.mark.parametrize("peer, key", [
    ("ipv4:203.0.113.9:5123", "203.0.113.9"),
    ("ipv6:[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:443", "2001:db8:1:2::/64"),
    ("ipv6:[2001:db8:1:2::7]:80", "2001:db8:1:2::/64"),
    ("unix:/tmp/socket", "unix"),
    ("", "unknown"),
])
def test_peers_are_counted_by_ip_and_ipv6_by_64(peer, key):
    assert peer_address(peer) == key


def test_boolean_settings_parse_from_flags():
    assert from_args(["--reflection", "true"]).reflection is True
    assert from_args(["--reflection", "off"]).reflection is False
    with pytest.raises(SystemExit):
        from_args(["--reflection", "maybe"])


def test_web_bridge_callers_are_limited_one_by_one(start_server, connect):
    """The page's bridge calls from loopback and forwards the browser's address: each person
    has their own per-address bucket, and the header counts for nothing from another address."""
    from hashmatch.server.buckets import FORWARDED_PEER_HEADER, caller_address

    stubs = connect(start_server(**{**RATES_OFF, "submit_rate_per_peer": 0.01,
                                    "submit_burst_per_peer": 1}))

    def submit(browser: str):
        return stubs.cases.SubmitCase(md5_case(), metadata=[(FORWARDED_PEER_HEADER, browser)])

    assert submit("203.0.113.7").case_id and submit("203.0.113.8").case_id
    assert refused(lambda: submit("203.0.113.7")).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caller_address("ipv4:198.51.100.1:4000", [(FORWARDED_PEER_HEADER, "1.2.3.4")]) \
        == "198.51.100.1"
    assert caller_address("ipv6:[::1]:4000", [(FORWARDED_PEER_HEADER, "2001:db8::5")]) \
        == "2001:db8::/64"


def test_a_refusal_by_a_rate_waits_so_a_connection_cannot_spin_the_server(start_server, connect):
    """Refused calls are held refusal_delay_s (the deadline runs out first here), at most
    max_delayed_refusals of them; more, and the bridge's forwarded calls, are answered at once."""
    from hashmatch.server.buckets import FORWARDED_PEER_HEADER

    server = start_server(**{**RATES_OFF, "submit_rate_per_peer": 0.01,
                             "submit_burst_per_peer": 1, "refusal_delay_s": 60,
                             "max_delayed_refusals": 1})
    stubs = connect(server)
    assert stubs.cases.SubmitCase(md5_case()).case_id
    held = stubs.cases.SubmitCase.future(md5_case(), timeout=30)
    deadline = time.monotonic() + 10
    while not _waiting(server) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _waiting(server) == 1 and not held.done()
    error = refused(lambda: stubs.cases.SubmitCase(md5_case(), timeout=10))  # no place left
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "submit_rate_per_peer" in error.details()
    held.cancel()
    while _waiting(server) and time.monotonic() < deadline:   # a cancelled call lets go
        time.sleep(0.01)
    assert _waiting(server) == 0
    error = refused(lambda: stubs.cases.SubmitCase(md5_case(), timeout=2))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    bridged = [(FORWARDED_PEER_HEADER, "203.0.113.7")]
    assert stubs.cases.SubmitCase(md5_case(), metadata=bridged).case_id
    error = refused(lambda: stubs.cases.SubmitCase(md5_case(), metadata=bridged, timeout=10))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def _waiting(server) -> int:
    return server.app.gate.delay.waiting


def test_case_threads_run_at_a_lower_priority_than_matching(start_server):
    import os

    from hashmatch.server.abuse import CASE_NICE

    server = start_server()
    nice = lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())  # noqa: E731
    assert server.app.case_pool.submit(nice).result(10) == max(CASE_NICE, nice())
    assert server.app.pool.submit(nice).result(10) == nice()
