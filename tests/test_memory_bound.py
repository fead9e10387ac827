"""Server memory under an anonymous flood stays under the bound computed from its limits
(`abuse.memory_bound`, docs/SECURITY.md "Memory"): a real server process, flooded for a few
seconds over two connections with what costs it most: bodies of max_message_bytes of garbage
from one address (refused by the gate, held refusal_delay_s) and the largest cases from ever new
addresses (through the web bridge's header), which only the global limits and the list budget
stop. Its RSS is sampled meanwhile; the peak's growth must stay under the bound.
"""
import asyncio
import threading
import time

import grpc
import numpy as np
import psutil
import pytest

from hashmatch.server.abuse import memory_bound
from hashmatch.server.buckets import FORWARDED_PEER_HEADER
from hashmatch.server.config import from_args
from hashmatch.v1 import hashmatch_pb2 as pb

SUBMIT = "/hashmatch.v1.Cases/SubmitCase"
LIMITS = {"max_message_bytes": 2 << 20, "max_concurrent_streams": 8, "max_delayed_refusals": 8,
          "refusal_delay_s": 1, "submit_rate_per_peer": 0.05, "submit_rate_global": 2,
          "submit_burst_global": 4, "lookup_rate_per_peer": 0.5, "lookup_rate_global": 40,
          "lookup_burst_global": 4, "submit_hashes_per_s": 20_000, "case_queue": 2,
          "max_list_hashes": 30_000}
FLOOD_S, CALLS = 4.0, 32


async def _flood(target: str, seconds: float) -> dict[str, int]:
    rng = np.random.default_rng(3)
    garbage = rng.bytes(LIMITS["max_message_bytes"] - 1024)
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
    assert codes.get("RESOURCE_EXHAUSTED", 0) > 2 * CALLS, codes   # the flood met the limits
    print(f"bdp {bdp_probe}: RSS grew {growth / 2**20:.1f} MiB, bound "
          f"{sum(bound.values()) / 2**20:.1f} MiB, {codes}")
    assert growth <= sum(bound.values()), (growth, bound, codes)
    assert server.process.poll() is None
