"""The load generator at toy scale: a real server, real streams, every answer checked, and the
loopback rule that keeps it from ever loading a machine that is not this one."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from hashmatch.v1 import hashmatch_pb2 as pb
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))


def test_small_run_checks_every_answer(tmp_path):
    out = tmp_path / "load.json"
    plot = tmp_path / "load.png"
    cmd = [sys.executable, "-m", "bench.load", "--list-size", "2000", "--streams", "2",
           "--batch-size", "1024", "--window", "2", "--count", "6144", "--duration", "60",
           "--match-share", "0.1", "--max-flips", "31", "--sources", "300",
           "--core-seconds", "0.2", "--quiet", "--json", str(out), "--plot", str(plot)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(out.read_text())
    result = summary["result"]
    assert result["errors"] == 0, result
    assert result["stream_errors"] == []
    assert result["sent_hashes"] == result["answered_hashes"] == 6144
    assert result["batches"] == 6
    # round(1024 * 0.1) near-duplicates in each of the 6 batches, each found exactly once
    assert result["matches_expected"] == 6 * 102
    assert result["matches_found"] == 6 * 102
    assert result["missed"] == result["unexpected"] == result["batch_errors"] == 0
    assert summary["server"]["list_size"] == 2000 and summary["server"]["managed"]
    assert 1 <= summary["server"]["window"] <= 2
    for key in ("p50", "p90", "p99", "max"):
        assert summary["latency_ms"][key] > 0
    assert summary["core"]["queries"] > 0 and summary["core"]["hashes_per_s"] > 0
    assert summary["ratio_to_core"] > 0
    assert summary["cpu"]["server_percent"] is not None
    assert summary["cpu"]["client_percent"] is not None
    cost = summary["cpu_cost"]
    # CPU per answered hash, beside the core's own on the same queries: what a busy machine
    # cannot hide. (A run this small may use less than one 10 ms tick of process CPU.)
    assert cost["server_us_per_hash"] >= 0 and cost["client_us_per_hash"] >= 0
    assert cost["core_us_per_hash"] > 0
    if cost["server_us_per_hash"]:
        assert cost["server_over_core"] == pytest.approx(
            cost["server_us_per_hash"] / cost["core_us_per_hash"])
    if cost["server_us_per_hash"] + cost["client_us_per_hash"]:
        assert cost["projected_hashes_per_s"] == pytest.approx(
            summary["machine"]["cores"] * 1e6
            / (cost["server_us_per_hash"] + cost["client_us_per_hash"]))
    assert "cpu per hash" in done.stdout
    assert summary["machine"]["cores"] >= 1 and summary["machine"]["cpu"]
    assert sum(summary["timeline"]["hashes_per_s"]) > 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "api_key" not in summary["config"]


@pytest.mark.parametrize("target", ["10.1.2.3:50051", "example.com:443", "192.168.0.1:80",
                                    "[2001:db8::1]:50051", "0.0.0.0:50051", "128.0.0.1:1"])
def test_non_loopback_target_is_refused_before_connecting(target, bench_on_path, monkeypatch,
                                                          capsys):
    def no_connection(*args, **kwargs):
        raise AssertionError(f"a connection was attempted for {target}")

    monkeypatch.setattr(socket.socket, "connect", no_connection)
    monkeypatch.setattr(socket, "getaddrinfo", no_connection)
    monkeypatch.setattr(grpc, "insecure_channel", no_connection)
    monkeypatch.setattr(grpc.aio, "insecure_channel", no_connection)
    from bench import load
    with pytest.raises(SystemExit) as exc:
        load.main(["--target", target, "--api-key", "k"])
    assert exc.value.code == 2
    assert "refusing target" in capsys.readouterr().err


@pytest.mark.parametrize("target, dialled", [
    ("127.0.0.1:5", "127.0.0.1:5"), ("127.8.9.10:5", "127.8.9.10:5"),
    ("localhost:5", "127.0.0.1:5"), ("LOCALHOST:5", "127.0.0.1:5"), ("[::1]:5", "[::1]:5"),
    ("[::ffff:127.0.0.1]:5", "127.0.0.1:5")])
def test_loopback_targets_are_accepted(target, dialled, bench_on_path):
    from bench.load_target import loopback_target
    assert loopback_target(target) == dialled


@pytest.mark.parametrize("target", ["127.0.0.1", "127.0.0.1:", "127.0.0.1:0", ":50051",
                                    "127.0.0.1:99999", "::1:5", "[::1]5"])
def test_malformed_targets_are_refused(target, bench_on_path):
    from bench.load_target import loopback_target
    with pytest.raises(ValueError):
        loopback_target(target)


def test_near_duplicates_are_at_their_stated_distance(bench_on_path):
    from bench.load_queries import QueryMaker
    rng = np.random.default_rng(3)
    sources = rng.integers(0, 256, size=(40, 32), dtype=np.uint8)
    maker = QueryMaker(sources, np.arange(40, dtype=np.uint64) + 1000, share=0.25, max_flips=31)
    batch = maker.make(1030, rng)
    assert len(batch.positions) == round(1030 * 0.25)
    assert np.all(np.diff(batch.positions) > 0)
    rows = (batch.entry_ids - 1000).astype(int)
    oracle = [sum(bin(a ^ b).count("1") for a, b in zip(q.tolist(), s.tolist()))
              for q, s in zip(batch.hashes[batch.positions], sources[rows])]
    assert oracle == batch.distances.tolist()
    assert batch.distances.max() <= 31


def test_check_answer_counts_missed_and_unexpected(bench_on_path):
    from types import SimpleNamespace

    from bench.load_queries import QueryMaker, check_answer
    rng = np.random.default_rng(4)
    sources = rng.integers(0, 256, size=(10, 32), dtype=np.uint8)
    batch = QueryMaker(sources, np.arange(10, dtype=np.uint64), 0.01, 5).make(1024, rng)
    right = [SimpleNamespace(position=int(p), entry_id=int(i), distance=int(d))
             for p, i, d in zip(batch.positions, batch.entry_ids, batch.distances)]
    assert check_answer(batch, right[::-1]).found == len(right)
    wrong_distance = SimpleNamespace(position=right[0].position, entry_id=right[0].entry_id,
                                     distance=right[0].distance + 1)
    stray = SimpleNamespace(position=int(np.setdiff1d(np.arange(1024), batch.positions)[0]),
                            entry_id=3, distance=7)
    verdict = check_answer(batch, [wrong_distance, *right[1:], stray, right[1]])
    assert (verdict.found, verdict.missed, verdict.unexpected) == (len(right) - 1, 1, 3)


def test_wrong_answers_are_counted_as_errors(bench_on_path):
    """A server that forgets one near-duplicate per batch and invents one match: both counted."""
    import asyncio

    from bench.load_queries import QueryMaker
    from bench.load_streams import LoadRun, Plan, open_channel

    rng = np.random.default_rng(5)
    sources = rng.integers(0, 256, size=(20, 32), dtype=np.uint8)
    ids = np.arange(20, dtype=np.uint64) + 500

    class Careless(pb_grpc.MatchingServicer):
        async def MatchStream(self, requests, context):
            async for request in requests:
                queries = np.frombuffer(request.hashes, np.uint8).reshape(-1, 32)
                dist = np.unpackbits(queries[:, None, :] ^ sources[None], axis=2).sum(axis=2)
                hits = [pb.Match(position=int(p), entry_id=int(ids[e]), distance=int(dist[p, e]))
                        for p, e in zip(*np.nonzero(dist <= request.threshold))]
                invented = pb.Match(position=len(queries) - 1, entry_id=1, distance=3)
                yield pb.MatchResponse(sequence=request.sequence, matches=hits[1:] + [invented])

    async def scenario():
        server = grpc.aio.server()
        pb_grpc.add_MatchingServicer_to_server(Careless(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with open_channel(f"127.0.0.1:{port}") as channel:
                plan = Plan(streams=2, batch_size=1024, window=2, count=4096, duration=60,
                            threshold=31)
                maker = QueryMaker(sources, ids, share=0.02, max_flips=31)
                return await LoadRun(channel, (), maker, plan).run()
        finally:
            await server.stop(None)

    out = asyncio.run(scenario())
    assert out.batches == 4 and out.answered_hashes == 4096
    assert out.expected_matches == 4 * round(1024 * 0.02)
    assert out.checked.missed == 4
    assert out.checked.unexpected == 4
    assert out.checked.found == out.expected_matches - 4
    assert out.errors == 8


def test_target_mode_lists_its_sources_and_withdraws_them(live_server, tmp_path):
    out = tmp_path / "target.json"
    cmd = [sys.executable, "-m", "bench.load", "--target", live_server.target,
           "--streams", "2", "--batch-size", "1024", "--count", "4096", "--sources", "150",
           "--core-seconds", "0.2", "--quiet", "--json", str(out)]
    env = {**os.environ, "HASHMATCH_API_KEY": live_server.api_key}
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(out.read_text())
    assert summary["result"]["errors"] == 0
    assert summary["result"]["matches_found"] == summary["result"]["matches_expected"] > 0
    assert not summary["server"]["managed"] and summary["server"]["list_size"] == 150
    assert summary["result"]["cleanup_error"] is None
    with live_server.channel() as channel:
        info = pb_grpc.ListInfoStub(channel).GetListInfo(
            pb.GetListInfoRequest(), metadata=[("x-api-key", live_server.api_key)], timeout=10)
    assert sum(c.count for c in info.counts) == 0


def test_several_servers_each_answer_and_add_up(tmp_path):
    out = tmp_path / "load.json"
    cmd = [sys.executable, "-m", "bench.load", "--servers", "2", "--list-size", "2000",
           "--streams", "1", "--batch-size", "1024", "--window", "2", "--count", "5120",
           "--duration", "60", "--match-share", "0.1", "--max-flips", "31", "--sources", "300",
           "--core-seconds", "0.2", "--quiet", "--json", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(out.read_text())
    result, servers = summary["result"], summary["servers"]
    assert result["errors"] == 0 and result["answered_hashes"] == 5120, result
    assert result["matches_found"] == result["matches_expected"] == 5 * 102
    assert len({s["target"] for s in servers}) == 2
    assert [s["answered_hashes"] for s in servers] == [2560, 2560]  # --count split evenly
    assert all(s["hashes_per_s"] > 0 and s["latency_ms"]["p99"] > 0 for s in servers)
    assert summary["latency_ms"]["p50"] > 0 and result["hashes_per_s"] > 0
    assert done.stdout.count("  server 127.0.0.1:") == 2


def test_several_servers_refuse_a_target(bench_on_path):
    from bench import load
    with pytest.raises(SystemExit) as exited:
        load.parse_args(["--servers", "2", "--target", "127.0.0.1:50051", "--api-key", "k"])
    assert exited.value.code == 2


def test_target_mode_waits_out_the_anonymous_rate_limit(start_server, bench_on_path):
    import asyncio

    from bench import load_streams as ls
    server = start_server(submit_rate_per_peer=1.0, submit_burst_per_peer=1, refusal_delay_s=0)
    hashes = np.random.default_rng(5).integers(0, 256, (3, 32), dtype=np.uint8)

    async def submit():
        async with ls.open_channel(server.target) as channel:
            return await ls.submit_sources(channel, hashes, per_case=1)
    ids, cases = asyncio.run(submit())
    assert len(ids) == len(set(ids.tolist())) == 3 and len(cases) == 3
    assert 'hashmatch_case_refused_total{limit="rate"}' in server.app.metrics.render()
