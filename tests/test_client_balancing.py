"""Clients over several servers that hold the same list (each its own copy of one SQLite file).

Proves, over real loopback gRPC: unary calls are spread by round_robin and skip a server whose
health says NOT_SERVING; a stream cut by the server's maximum connection age reconnects with no
answer lost; and StreamingMatcher, one stream per server, re-sends the batches in flight on a
server killed with SIGKILL so every hash still gets exactly one correct answer.
"""
import shutil
import signal
import threading

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2

from hashmatch.clients.client import HashmatchClient, channel_target, server_addresses
from hashmatch.clients.streaming import StreamingMatcher
from hashmatch.server.config import ServerConfig
from hashmatch.server.store import Store

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def shared_list(tmp_path, random_hashes):
    """make(n_servers, list_size) -> (db paths, api key, listed uint8[n, 32]): one store filled
    once (list + platform), copied for each server, as servers sharing one list would hold."""
    def make(servers: int, list_size: int):
        listed = random_hashes(list_size, seed=90)
        original = tmp_path / "shared.db"
        store = Store(str(original))
        try:
            store.import_pdq_hashes(listed)
            api_key = store.add_platform("several-servers")
        finally:
            store.close()
        paths = []
        for number in range(servers):
            paths.append(str(tmp_path / f"server-{number}.db"))
            shutil.copy(original, paths[-1])
        return paths, api_key, listed
    return make


def set_health(server, status) -> None:
    server.thread._call(server.app.health.set("", status))


def batches_by_server(servers) -> list[int]:
    return [server.app.metrics.batches for server in servers]


def test_addresses_become_one_balanced_target():
    assert server_addresses(["127.0.0.1:1,127.0.0.1:2", " 127.0.0.1:3", "127.0.0.1:1"]) == [
        "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
    assert channel_target(["127.0.0.1:1", "127.0.0.1:2"]) == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert channel_target(["[::1]:1", "[::1]:2"]) == "ipv6:[::1]:1,[::1]:2"
    assert channel_target(["localhost:7", "127.0.0.2:8"]) == "ipv4:127.0.0.1:7,127.0.0.2:8"
    assert server_addresses("dns:///list.example:50051") == ["dns:///list.example:50051"]
    assert channel_target(["dns:///list.example:50051"]) == "dns:///list.example:50051"
    with pytest.raises(ValueError, match="must be the only server address"):
        server_addresses(["dns:///list.example:50051", "127.0.0.1:1"])
    with pytest.raises(ValueError, match="HOST:PORT"):
        channel_target(["127.0.0.1:1", "127.0.0.1"])
    with pytest.raises(ValueError, match="all IPv4 or all IPv6"):
        channel_target(["127.0.0.1:1", "[::1]:2"])
    with pytest.raises(ValueError, match="at least one server address"):
        server_addresses(" , ")


def test_unary_calls_are_spread_and_skip_a_server_that_is_not_serving(
        start_server, shared_list, random_hashes):
    paths, api_key, _ = shared_list(3, 1000)
    servers = [start_server(db_path=path) for path in paths]
    set_health(servers[1], NOT_SERVING)
    queries = random_hashes(50, seed=91)
    with HashmatchClient([s.target for s in servers], api_key=api_key, timeout=10) as client:
        before = batches_by_server(servers)
        for _ in range(600):  # until round_robin has seen both SERVING servers (a loaded
            client.match_batch("pdq", queries)  # machine may report one late)
            calls = [after - was for after, was in zip(batches_by_server(servers), before)]
            if calls[0] and calls[2]:
                break
        assert calls[0] > 0 and calls[2] > 0, f"round_robin should use both others: {calls}"
        for _ in range(60):
            client.match_batch("pdq", queries)
        calls = [after - was for after, was in zip(batches_by_server(servers), before)]
        assert calls[1] == 0, f"a NOT_SERVING server got calls: {calls}"
        assert calls[0] >= 20 and calls[2] >= 20, f"round_robin alternates: {calls}"

        # Back to SERVING: the client's health watch sees it and sends it calls again.
        set_health(servers[1], SERVING)
        for _ in range(600):
            before = batches_by_server(servers)[1]
            client.match_batch("pdq", queries)
            if batches_by_server(servers)[1] > before:
                break
        else:
            pytest.fail("the server back to SERVING never got a call")


@pytest.mark.timeout(120)
def test_a_stream_cut_at_the_max_connection_age_reconnects_and_loses_nothing(
        start_server, random_hashes):
    server = start_server(imported=random_hashes(500, seed=92), max_connection_age_s=0.5,
                          max_connection_age_grace_s=0.3)
    listed = random_hashes(500, seed=92)
    stop = threading.Event()
    with HashmatchClient(server.target, api_key=server.api_key, timeout=10) as client:
        matcher = StreamingMatcher(client, "pdq", batch_size=10, linger=0.005, max_in_flight=2)
        answered: dict[int, list] = {}
        reader = threading.Thread(target=lambda: [
            answered.setdefault(item_id, []).append(outcome)
            for outcome in matcher.results() for item_id in outcome.item_ids], daemon=True)
        reader.start()
        item = 0
        while matcher.streams_opened < 3 and item < 3000:  # goes on until the age cut twice
            matcher.add(item, listed[item % 500])
            item += 1
            stop.wait(0.002)
        matcher.close()
        reader.join(60)
    assert matcher.streams_opened >= 3, "the server never closed the aged connection"
    assert matcher.error is None
    assert sorted(answered) == list(range(item))
    assert all(len(outcomes) == 1 and outcomes[0].error is None for outcomes in answered.values())


def test_server_config_checks_the_connection_age():
    from hashmatch.server.app import _grpc_options
    options = dict(_grpc_options(ServerConfig(max_connection_age_s=300,
                                              max_connection_age_grace_s=30)))
    assert options["grpc.max_connection_age_ms"] == 300_000
    assert options["grpc.max_connection_age_grace_ms"] == 30_000
    assert "grpc.max_connection_age_ms" not in dict(_grpc_options(
        ServerConfig(max_connection_age_s=0)))
    with pytest.raises(ValueError, match="max_connection_age_s must be 0..86400"):
        ServerConfig(max_connection_age_s=-1)


@pytest.mark.timeout(120)
def test_streams_survive_a_server_killed_mid_stream(server_process, shared_list, random_hashes):
    """Three server processes; 200k hashes streamed; one server frozen when about a third is
    answered, then killed with SIGKILL: every hash gets exactly one answer, and each is right."""
    paths, api_key, listed = shared_list(3, 20_000)
    servers = [server_process(db_path=path) for path in paths]
    count = 200_000
    queries = random_hashes(count, seed=93)
    rows = np.random.default_rng(94).choice(len(listed), size=count // 10, replace=False)
    positions = np.arange(0, count, 10)
    queries[positions] = listed[rows]
    with HashmatchClient(servers[0].target, api_key=api_key) as one:
        first_entry = one.match_batch("pdq", listed[:1], threshold=0)[0].entry_id
        assert [hit.entry_id for hit in one.match_batch("pdq", listed[:5], threshold=0)] == [
            first_entry + row for row in range(5)]
    expected = {int(position): first_entry + int(row) for position, row in zip(positions, rows)}

    outcomes_by_item: dict[int, int] = {}
    found: dict[int, list] = {}
    errors = []
    victim = servers[1]
    stopped_at = killed_after = None

    def others_answered(matcher) -> int:
        return sum(n for server, n in matcher.answered_per_server().items()
                   if server != victim.target)

    with HashmatchClient([s.target for s in servers], api_key=api_key) as client:
        matcher = StreamingMatcher(client, "pdq", batch_size=1000)
        for outcome in matcher.match(zip(range(count), queries)):
            if outcome.error is not None:
                errors.append(outcome.error)
            for item_id in outcome.item_ids:
                outcomes_by_item[item_id] = outcomes_by_item.get(item_id, 0) + 1
            for item_id, hit in outcome.matches:
                found.setdefault(item_id, []).append((hit.entry_id, hit.distance))
            if stopped_at is None and len(outcomes_by_item) >= count // 3:
                # Frozen first, so its window fills with batches that only a re-send can answer.
                victim.process.send_signal(signal.SIGSTOP)
                stopped_at = others_answered(matcher)
            elif (killed_after is None and stopped_at is not None
                  and others_answered(matcher) >= stopped_at + 20):
                victim.kill()
                killed_after = matcher.answered_per_server()
    answered = matcher.answered_per_server()
    assert not errors
    assert victim.process.returncode == -9
    assert killed_after[victim.target] > 0, "the killed server should have been in use"
    assert all(answered[s.target] > killed_after[s.target] for s in (servers[0], servers[2]))
    assert matcher.resent_batches > 0, "no batch was in flight on the killed server"
    assert len(outcomes_by_item) == count and set(outcomes_by_item.values()) == {1}
    assert found == {item: [(entry, 0)] for item, entry in expected.items()}


def cli_info(capsys, *argv):
    from hashmatch.clients import cli
    code = cli.main(["info", "--timeout", "5", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_takes_several_servers_and_uses_the_one_that_answers(capsys, monkeypatch,
                                                                  start_server):
    live = start_server()
    dead = "127.0.0.1:1"  # nothing listens there: round_robin must route around it
    monkeypatch.delenv("HASHMATCH_SERVER", raising=False)
    monkeypatch.setenv("HASHMATCH_API_KEY", live.api_key)
    code, _, err = cli_info(capsys, "--server", dead)
    assert code == 1 and "cannot reach the hashmatch server at 127.0.0.1:1" in err
    for argv in (["--server", dead, "--server", live.target], ["--server", f"{dead},{live.target}"]):
        code, out, err = cli_info(capsys, *argv)
        assert code == 0 and "in flight per stream" in out, (argv, out, err)
    monkeypatch.setenv("HASHMATCH_SERVER", f"{dead}, {live.target}")
    code, out, err = cli_info(capsys)
    assert code == 0 and "in flight per stream" in out, err
    code, out, err = cli_info(capsys, "--server", f"dns:///localhost:{live.port}")
    assert code == 0 and "in flight per stream" in out, err
    code, _, err = cli_info(capsys, "--server", "dns:///localhost:1", "--server", live.target)
    assert code == 2 and "must be the only server address" in err


@pytest.mark.timeout(120)
def test_the_only_server_killed_ends_the_stream_with_every_item_accounted_for(
        server_process, shared_list, random_hashes):
    paths, api_key, _ = shared_list(1, 100)
    server = server_process(db_path=paths[0])
    count = 50_000
    seen: dict[int, int] = {}
    errors = []
    with HashmatchClient(server.target, api_key=api_key) as client:
        matcher = StreamingMatcher(client, "pdq", batch_size=500, reconnect_s=0.5)
        with pytest.raises(Exception) as raised:
            for outcome in matcher.match(zip(range(count), random_hashes(count, seed=95))):
                for item_id in outcome.item_ids:
                    seen[item_id] = seen.get(item_id, 0) + 1
                if outcome.error is not None:
                    errors.append(outcome.error)
                if server.process.poll() is None and len(seen) >= count // 4:
                    server.kill()
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    assert errors and all(error.code == grpc.StatusCode.UNAVAILABLE for error in errors)
    assert matcher.error is raised.value
    # Items never fed (the feeder stopped at the error) have no outcome; no item has two.
    assert set(seen.values()) == {1} and sorted(seen) == list(range(len(seen)))
