"""Server memory under an anonymous flood stays under the bound computed from its limits
(`abuse.memory_bound`, docs/SECURITY.md "Memory"): a real server process, flooded for a few
seconds over two connections with what costs it most: bodies of max_request_bytes of garbage
from one address (refused by the gate, held refusal_delay_s) and the largest cases from ever new
addresses (through the web bridge's header), which only the global limits and the list budget
stop. Its RSS is sampled meanwhile; the peak's growth must stay under the bound.
"""
import asyncio
import logging
import threading
import time

import grpc
import numpy as np
import psutil
import pytest

from bench.h2flood import flood
from hashmatch.server.abuse import (LIST_BYTES_PER_HASH, body_bytes, machine_memory_bytes,
                                     memory_bound, report_memory_bound)
from hashmatch.server.buckets import FORWARDED_PEER_HEADER
from hashmatch.server.config import (CASE_RATES_OFF, ServerConfig, from_args,
                                     largest_request_bytes)
from hashmatch.v1 import hashmatch_pb2 as pb

SUBMIT = "/hashmatch.v1.Cases/SubmitCase"
LIMITS = {"max_request_bytes": 2 << 20, "max_concurrent_streams": 8, "max_delayed_refusals": 8,
          "refusal_delay_s": 1, "submit_rate_per_peer": 0.05, "submit_rate_global": 2,
          "submit_burst_global": 4, "lookup_rate_per_peer": 0.5, "lookup_rate_global": 40,
          "lookup_burst_global": 4, "submit_hashes_per_s": 20_000, "case_queue": 2,
          "max_list_hashes": 30_000}
FLOOD_S, CALLS = 4.0, 32


async def _flood(target: str, seconds: float) -> dict[str, int]:
    rng = np.random.default_rng(3)
    garbage = rng.bytes(LIMITS["max_request_bytes"] - 1024)
    case = pb.SubmitCaseRequest(media=[pb.MediaHashes(video=pb.VideoHashes(
        frame_pdqs=rng.integers(0, 256, (7200, 32), dtype=np.uint8).tobytes(),
        frame_qualities=[90] * 7200))]).SerializeToString()
    codes: dict[str, int] = {}
    stop_at = time.monotonic() + seconds
    options = [("grpc.max_send_message_length", 64 << 20)]

    async def loop(submit, body, bridged):
        while time.monotonic() < stop_at:
            metadata = ((FORWARDED_PEER_HEADER, f"198.18.{rng.integers(256)}."
                                                f"{rng.integers(256)}"),) if bridged else ()
            try:
                await submit(body, metadata=metadata, timeout=20)
                code = "OK"
            except grpc.aio.AioRpcError as err:
                code = err.code().name
            codes[code] = codes.get(code, 0) + 1

    async with grpc.aio.insecure_channel(target, options=options) as one, \
            grpc.aio.insecure_channel(target, options=options) as other:
        loops = [loop(one.unary_unary(SUBMIT), garbage, False) for _ in range(CALLS)]
        loops += [loop(other.unary_unary(SUBMIT), case, True) for _ in range(CALLS)]
        await asyncio.gather(*loops)
    return codes


@pytest.mark.parametrize("bdp_probe", [True, False])
def test_an_anonymous_flood_stays_under_the_computed_memory_bound(server_process, bdp_probe):
    flags = [f"--{name.replace('_', '-')}={value}"
             for name, value in {**LIMITS, "http2_bdp_probe": bdp_probe}.items()]
    server = server_process(*flags)
    proc = psutil.Process(server.process.pid)
    time.sleep(0.5)
    before = proc.memory_info().rss
    peak, done = [before], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        codes = asyncio.run(_flood(server.target, FLOOD_S))
    finally:
        done.set()
        sampler.join(5)
    bound = memory_bound(from_args(flags), list_hashes=0, connections=2)
    growth = peak[0] - before
    # The flood met the limits: the gate's refusals, and streams gRPC refused (REFUSED_STREAM,
    # seen as UNAVAILABLE) while the server had not yet taken the calls before them.
    assert codes.get("RESOURCE_EXHAUSTED", 0) + codes.get("UNAVAILABLE", 0) > 2 * CALLS, codes
    print(f"bdp {bdp_probe}: RSS grew {growth / 2**20:.1f} MiB, bound "
          f"{sum(bound.values()) / 2**20:.1f} MiB, {codes}")
    assert growth <= sum(bound.values()), (growth, bound, codes)
    assert server.process.poll() is None


# The defaults that bound what an unread call may hold (streams, window, BDP probing off), the
# anonymous rates the test servers turn off back at theirs, and small global bursts, case queue
# and list budget: so the bound is the streams' windows, not the room for admitted calls or cases.
RAW_FLOOD_LIMITS = {**{name: getattr(ServerConfig(), name) for name in CASE_RATES_OFF},
                    "submit_burst_global": 2, "lookup_burst_global": 2, "case_queue": 2,
                    "max_anonymous_reads": 4, "max_list_hashes": 1000}


@pytest.mark.parametrize("path", ["/hashmatch.v1.Cases/SubmitCase",
                                  "/grpc.health.v1.Health/Check",        # open to anyone
                                  "/hashmatch.v1.Admin/AddPlatform"])    # keyed, no key sent
def test_a_raw_http2_flood_is_held_to_the_stream_windows(server_process, path):
    """An attacker speaking HTTP/2 itself opens every stream a connection may have and sends
    each as much as the server's windows allow, never reading: the bytes the server let it send
    on calls it had not ended stay within memory_bound's body terms, and the server's RSS growth
    within the whole bound. Fails if any of these calls had its body read before the gate let it
    through (a read grows the window to the whole request: 4 x 32 x 1.9 MiB), as health and the
    keyed services other than Matching did, or with BDP probing on."""
    flags = [f"--{name.replace('_', '-')}={value}"
             for name, value in RAW_FLOOD_LIMITS.items()]
    server = server_process(*flags)
    proc = psutil.Process(server.process.pid)
    time.sleep(0.5)
    before, peak = proc.memory_info().rss, [0]

    def sample():
        peak[0] = max(peak[0], proc.memory_info().rss)

    connections = 4
    result = flood(server.target, connections, seconds=3.0,
                   declared=ServerConfig().max_request_bytes - 100_000, path=path,
                   on_tick=sample)
    config = from_args(flags)
    bound = memory_bound(config, list_hashes=0, connections=connections)
    print(f"raw flood of {path}: {result}; bodies bound {body_bytes(bound) / 2**20:.1f} MiB, "
          f"RSS grew {(peak[0] - before) / 2**20:.1f} MiB of {sum(bound.values()) / 2**20:.1f}")
    assert result.streams_per_connection == config.max_concurrent_streams
    assert result.ended > 0 and result.closed == 0         # the server answered, kept serving
    assert result.peak_outstanding >= connections * config.max_concurrent_streams * (
        config.http2_stream_window_bytes // 2)             # the flood filled the windows
    assert result.peak_outstanding <= body_bytes(bound), (result, bound)
    assert peak[0] - before <= sum(bound.values()), (peak[0] - before, bound)
    assert server.process.poll() is None


def test_the_default_bound_fits_a_16_gib_machine():
    """docs/SECURITY.md promises the defaults keep what anonymous callers can add (on an empty
    list) under 16 GiB, and that every byte of it is counted by a named cause."""
    bound = memory_bound(ServerConfig())
    assert sum(bound.values()) < 16 * 2**30, bound
    assert all(n > 0 for cause, n in bound.items() if cause != "web page connections"), bound
    assert bound["web page connections"] == 0                     # the page is off by default
    with_page = memory_bound(ServerConfig(web_listen="127.0.0.1:0"))
    assert with_page["web page connections"] == 1000 * 128 * 1024


def test_the_bound_is_logged_at_start_and_a_warning_names_what_to_lower(caplog):
    with caplog.at_level(logging.INFO, logger="hashmatch.server"):
        report_memory_bound(ServerConfig(max_list_hashes=1000), list_hashes=0)
        report_memory_bound(ServerConfig(max_list_hashes=10**12), list_hashes=0)
    fine, over = [r for r in caplog.records if "memory" in r.getMessage()]
    assert fine.levelno == logging.INFO and fine.fields["bound_bytes"] < machine_memory_bytes()
    assert over.levelno == logging.WARNING and "lower max_list_hashes" in over.getMessage()
    assert over.fields["list_bytes"] == 10**12 * LIST_BYTES_PER_HASH


def test_max_request_bytes_must_hold_the_largest_request_the_limits_allow():
    with pytest.raises(ValueError, match="max_request_bytes .* is under the largest request"):
        ServerConfig(max_request_bytes=256 * 1024)
    assert largest_request_bytes(ServerConfig()) <= ServerConfig().max_request_bytes
    ServerConfig(max_request_bytes=256 * 1024, max_case_hashes=4000, max_batch_hashes=4096,
                 max_video_frames=3600)


def test_the_platform_port_adds_its_connections_and_nothing_else():
    one = memory_bound(ServerConfig(tls_cert="c", tls_key="k"))
    two = memory_bound(ServerConfig(tls_cert="c", tls_key="k", platform_listen="127.0.0.1:0",
                                    platform_client_ca="ca"))
    assert two["connections"] == 2 * one["connections"]
    assert {k: v for k, v in two.items() if k != "connections"} == \
        {k: v for k, v in one.items() if k != "connections"}
