"""Platform latency under an anonymous SubmitCase flood: `python -m bench.bench_abuse`.

Runs bench.load's platform streams against a server subprocess, first alone (the baseline),
then while another process floods SubmitCase as fast as one client can (many concurrent calls
of the largest case the server allows, never waiting for retry-after). Scenarios:
- one-client: default limits, the flood from one address (refused at the gate, mostly);
- many-addresses: per-address limits off, as if the flood came from unlimited addresses, so
  only the global limits hold it;
- no-limits: every anonymous limit off (the server before issue #13), for comparison.
It prints platform p50/p99 per scenario and what the flood achieved. Numbers depend on the
machine and its other load: the summary records the load average beside them.
"""
import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import time

import numpy as np

SCENARIOS = {
    "one-client": [],
    "many-addresses": ["--submit-rate-per-peer", "0"],
    "no-limits": ["--submit-rate-per-peer", "0", "--submit-rate-global", "0",
                  "--submit-hashes-per-s", "0", "--max-list-hashes", "2000000000"],
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.bench_abuse",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--list-size", type=int, default=100_000)
    p.add_argument("--duration", type=float, default=8.0, help="seconds of load per run")
    p.add_argument("--streams", type=int, default=2, help="platform MatchStream calls")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--rate", type=float, default=20_000.0,
                   help="platform hashes/s (fixed, so latency is compared at equal load)")
    p.add_argument("--flood-calls", type=int, default=32, help="concurrent SubmitCase calls")
    p.add_argument("--frames", type=int, default=7200, help="video frames in each flood case")
    p.add_argument("--scenario", action="append", choices=list(SCENARIOS),
                   help="run only these (repeat); default: all")
    p.add_argument("--json", metavar="PATH", help="write the summary here")
    return p.parse_args(argv)


def _flood(target: str, calls: int, frames: int, seconds: float, result) -> None:
    """SubmitCase at the maximum rate: `calls` loops, each one call after another."""
    import grpc

    from hashmatch.v1 import hashmatch_pb2 as pb
    from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc

    rng = np.random.default_rng(7)
    requests = [pb.SubmitCaseRequest(media=[pb.MediaHashes(video=pb.VideoHashes(
        frame_pdqs=rng.integers(0, 256, (frames, 32), dtype=np.uint8).tobytes(),
        frame_qualities=[90] * frames))]) for _ in range(8)]
    codes: dict[str, int] = {}
    stop_at = time.monotonic() + seconds

    async def loop(stub, i):
        n = i
        while time.monotonic() < stop_at:
            try:
                await stub.SubmitCase(requests[n % len(requests)], timeout=30)
                name = "OK"
            except grpc.aio.AioRpcError as err:
                name = err.code().name
            codes[name] = codes.get(name, 0) + 1
            n += 1

    async def main():
        async with grpc.aio.insecure_channel(
                target, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
            stub = pb_grpc.CasesStub(channel)
            await asyncio.gather(*(loop(stub, i) for i in range(calls)))

    asyncio.run(main())
    result.put(codes)


def _platform_run(args, server, list_hashes, flood: bool) -> dict:
    import psutil

    from bench import load

    load_args = load.parse_args(["--duration", str(args.duration), "--streams",
                                 str(args.streams), "--batch-size", str(args.batch_size),
                                 "--rate", str(args.rate), "--count", "100000000", "--quiet"])
    spawn = multiprocessing.get_context("spawn")  # no fork after gRPC started in this process
    flooder, codes = None, spawn.Queue()
    if flood:
        flooder = spawn.Process(target=_flood, args=(
            server.target, args.flood_calls, args.frames, args.duration + 6, codes))
        flooder.start()
        time.sleep(2)  # let the flood reach full rate before platform load starts
    try:
        summary = asyncio.run(load.drive(load_args, server.target, server.api_key, list_hashes,
                                         psutil.Process(server.process.pid)))
    finally:
        flood_codes = codes.get(timeout=60) if flooder is not None else {}
        if flooder is not None:
            flooder.join(60)
    latency = summary["latency_ms"]
    return {"p50_ms": latency["p50"], "p99_ms": latency["p99"],
            "hashes_per_s": summary["result"]["hashes_per_s"],
            "errors": summary["result"]["errors"], "flood": flood_codes,
            "server_cpu_percent": summary["cpu"]["server_percent"]}


def run(args) -> dict:
    from bench.load_server import ManagedServer, random_hashes
    from bench.machine import describe

    list_hashes = random_hashes(args.list_size, 0)
    rows = {}
    for name in args.scenario or list(SCENARIOS):
        with ManagedServer(list_hashes, SCENARIOS[name]) as server:
            if not rows:
                rows["baseline"] = _platform_run(args, server, list_hashes, flood=False)
                rows["baseline"]["load_avg"] = os.getloadavg()[0]
            rows[name] = _platform_run(args, server, list_hashes, flood=True)
            rows[name]["load_avg"] = os.getloadavg()[0]
    return {"machine": describe(), "config": vars(args), "rows": rows}


def text(summary: dict) -> str:
    lines = [f"{'run':<16} {'p50 ms':>8} {'p99 ms':>8} {'hashes/s':>9} {'load':>5}  flood calls",
             "-" * 78]
    for name, row in summary["rows"].items():
        flood = ", ".join(f"{k} {v}" for k, v in sorted(row["flood"].items())) or "-"
        lines.append(f"{name:<16} {row['p50_ms']:8.1f} {row['p99_ms']:8.1f} "
                     f"{row['hashes_per_s']:9.0f} {row['load_avg']:5.1f}  {flood}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    summary = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1, default=str)
    print(text(summary))
    return 1 if any(row["errors"] for row in summary["rows"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
