"""Refused keys in the audit log (issue 13): every counted refusal reaches the table, those of
the per-address slow-down included, aggregated per address, with addresses written readably
(IPv4 and IPv6, as gRPC reports them percent-encoded).

Real servers on loopback sockets (127.0.0.1 and ::1) and real SQLite files. The digest's window
is shortened per test (audit.FAILURE_WINDOW_S) so a quiet address's count is seen to arrive
without waiting a minute; deadlines are generous upper bounds, not timings.
"""
import collections
import re
import socket

import grpc
import pytest

from hashmatch.server import audit, credentials
from hashmatch.server.audit import FailureDigest
from hashmatch.server.buckets import FORWARDED_PEER_HEADER, caller_address, peer_address
from hashmatch.server.platforms import UNKNOWN
from hashmatch.server.store import open_store
from hashmatch.v1 import hashmatch_pb2 as pb
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc
from test_abuse import refused, server_log
from test_several_servers import wait_until

NO_DELAY = {"refusal_delay_s": 0}


def refusal_rows(db: str) -> list[tuple[str, str]]:
    """(actor, detail) of the key.refused rows in the store at `db`."""
    store = open_store(db)
    try:
        return [(r.actor, r.detail) for r in store.audit_rows() if r.action == "key.refused"]
    finally:
        store.close()


def counted(rows) -> collections.Counter:
    """Refusals that (actor, detail) rows report, by (actor, reason); a detail reads
    "3 x unknown API key; 1 x revoked API key (at most one row ...)"."""
    total = collections.Counter()
    for actor, detail in rows:
        for n, reason in re.findall(r"(\d+) x ([^;(]+?)(?:;| \()", detail):
            total[actor, reason] += int(n)
    return total


def call_with_key(channel, key: str) -> grpc.StatusCode:
    stub = pb_grpc.ListInfoStub(channel)
    return refused(lambda: stub.GetListInfo(pb.GetListInfoRequest(),
                                            metadata=[("x-api-key", key)], timeout=10)).code()


def test_the_digest_hands_out_every_count_and_stays_bounded():
    digest = FailureDigest(window_s=60, most=4, max_peers=3)
    rows = []       # (minute, row)
    for t in range(200):      # 10 addresses, at most 3 counted apart: the rest summed as others
        row = digest.note(f"10.0.0.{t % 10}", "MatchBatch", UNKNOWN, float(t))
        rows += [(t // 60, r) for r in [row] + digest.flush(t + 0.5) if r]
    assert digest.pending
    rows += [(4, r) for r in digest.flush(260.0)]    # two windows after the last refusal
    assert not digest.pending
    assert sum(counted((r[0], r[3]) for _, r in rows).values()) == 200
    assert max(collections.Counter(minute for minute, _ in rows).values()) == 4   # `most`
    assert audit.OTHER_PEERS in {r[0] for _, r in rows}
    # an address failing again within its window is written by the flush at shutdown
    assert digest.note("10.0.0.1", "MatchBatch", UNKNOWN, 330.0) is not None
    assert digest.note("10.0.0.1", "MatchBatch", UNKNOWN, 331.0) is None
    assert digest.flush(332.0) == []
    [last] = digest.flush(333.0, final=True)
    assert last[0] == "peer 10.0.0.1" and last[3].startswith("1 x unknown API key")


def test_a_quiet_address_and_the_slow_downs_refusals_reach_the_audit_log(start_server,
                                                                         monkeypatch):
    """3 refused keys then 4 calls refused by the slow-down, and the address goes quiet: all
    7 are in the table a window later, in 2 rows, while the server keeps running."""
    monkeypatch.setattr(audit, "FAILURE_WINDOW_S", 1.0)
    server = start_server(auth_failure_burst=3, auth_failure_rate_per_s=0.01, **NO_DELAY)
    bad = credentials.new_api_key()
    with server.channel() as channel:
        codes = [call_with_key(channel, bad) for _ in range(7)]
    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 3 + [
        grpc.StatusCode.RESOURCE_EXHAUSTED] * 4
    expected = {("peer 127.0.0.1", UNKNOWN): 3, ("peer 127.0.0.1", audit.SLOWED): 4}
    wait_until(lambda: counted(refusal_rows(server.db_path)) == expected,
               "every refusal in the audit log")
    rows = refusal_rows(server.db_path)
    assert len(rows) == 2 and bad not in repr(rows)


def test_refusals_still_counted_at_shutdown_are_written(start_server):
    server = start_server(**NO_DELAY)
    bad = credentials.new_api_key()
    with server.channel() as channel:
        assert {call_with_key(channel, bad) for _ in range(5)} == {
            grpc.StatusCode.UNAUTHENTICATED}
    wait_until(lambda: refusal_rows(server.db_path), "the first refusal's row")
    server.stop()
    rows = refusal_rows(server.db_path)
    assert counted(rows) == {("peer 127.0.0.1", UNKNOWN): 5} and len(rows) == 2


@pytest.mark.parametrize("peer, address", [
    ("ipv6:%5B::1%5D:60968", "::/64"),
    ("ipv6:%5B2001:db8:1:2:aaaa:bbbb:cccc:dddd%5D:443", "2001:db8:1:2::/64"),
    ("ipv6:%5Bfe80::1%25eth0%5D:443", "fe80::/64"),
    ("ipv4:203.0.113.9:5123", "203.0.113.9"),
])
def test_percent_encoded_peers_are_decoded(peer, address):
    assert peer_address(peer) == address


def test_a_percent_encoded_loopback_peer_is_the_web_bridge():
    assert caller_address("ipv6:%5B::1%5D:4000", [(FORWARDED_PEER_HEADER, "2001:db8::5")]) \
        == "2001:db8::/64"


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("host, address", [
    ("127.0.0.1", "127.0.0.1"),
    pytest.param("[::1]", "::/64", marks=pytest.mark.skipif(
        not ipv6_loopback(), reason="this machine cannot bind the IPv6 loopback ::1")),
])
def test_a_peer_is_one_address_in_limits_logs_and_the_audit_log(start_server, host, address):
    """Each new connection has a new port: the slow-down still counts them as one address,
    and the log line and the audit row name that address, never gRPC's encoded peer."""
    server = start_server(listen=f"{host}:0", auth_failure_burst=2,
                          auth_failure_rate_per_s=0.01, **NO_DELAY)
    bad = credentials.new_api_key()
    codes = []
    with server_log() as records:
        for _ in range(3):
            with grpc.insecure_channel(f"{host}:{server.port}") as channel:
                codes.append(call_with_key(channel, bad))
    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 2 + [grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert [r.fields["peer"] for r in records if r.getMessage().startswith("API key refused")] \
        == [address, address]
    server.stop()
    assert counted(refusal_rows(server.db_path)) == {
        (f"peer {address}", UNKNOWN): 2, (f"peer {address}", audit.SLOWED): 1}
