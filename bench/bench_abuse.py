"""Platform latency under an anonymous SubmitCase flood: `python -m bench.bench_abuse`.

Runs bench.load's platform streams against a server subprocess in interleaved phases, several
short rounds of A (platform load alone) then B (the same load while one other process floods
SubmitCase as fast as it can), so that a shared machine's drifting background load hits both
alike; it reports each round's pair and the median and spread of the p99 ratio B/A.

The flooding client is made as cheap per call as a client can be: its requests (the largest
case the server allows) are serialised once, sent as bytes through a raw generic stub, with many
calls in flight on one channel and no wait for retry-after, so it sends at the maximum rate one
client process reaches. Per phase it records the flood's call rate and where its calls were
refused (the gate's rate limits before the body is read, the case queue, the hash rate or the
list budget after it), the server's CPU seconds per second and RSS, health-check latency (the
server's event loop, shared with platform streams) and the load average.
Scenarios (each on a fresh server):
- one-client: default limits, the flood from one address;
- many-addresses: per-address limits off, as if the flood came from unlimited addresses;
- no-limits: every anonymous limit off (the server before issue #13), for comparison.
"""
import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import time

import numpy as np

SCENARIOS = {
    "one-client": [],
    "many-addresses": ["--submit-rate-per-peer", "0"],
    "no-limits": ["--submit-rate-per-peer", "0", "--submit-rate-global", "0",
                  "--submit-hashes-per-s", "0", "--max-list-hashes", "2000000000"],
}
SUBMIT = "/hashmatch.v1.Cases/SubmitCase"
# Where a refused flood call was stopped, from the limit its message names (server/abuse.py).
REFUSED_BY = (("_rate_per_peer", "gate: per-address rate"), ("_rate_global", "gate: global rate"),
              ("case_queue", "case queue"), ("submit_hashes_per_s", "hash rate"),
              ("max_list_hashes", "list budget"))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.bench_abuse",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--list-size", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=4, help="A/B pairs per scenario")
    p.add_argument("--phase-s", type=float, default=5.0, help="seconds of platform load a phase")
    p.add_argument("--streams", type=int, default=2, help="platform MatchStream calls")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--rate", type=float, default=20_000.0,
                   help="platform hashes/s (fixed, so latency is compared at equal load)")
    p.add_argument("--flood-calls", type=int, default=32, help="SubmitCase calls in flight")
    p.add_argument("--frames", type=int, default=7200, help="video frames in each flood case")
    p.add_argument("--garbage-bytes", type=int, default=0,
                   help="flood with bodies of this many random bytes instead of cases (the "
                        "gate refuses over-rate calls before decoding, so any bytes will do)")
    p.add_argument("--flood-cpu", type=int, default=os.cpu_count() - 1,
                   help="pin the flooding process to this CPU (-1: not pinned)")
    p.add_argument("--scenario", action="append", choices=list(SCENARIOS),
                   help="run only these (repeat); default: one-client")
    p.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for the server (repeat)")
    p.add_argument("--json", metavar="PATH", help="write the summary here")
    return p.parse_args(argv)


def refused_by(code: str, details: str) -> str:
    """The row a flood call's outcome is counted under."""
    if code == "RESOURCE_EXHAUSTED":
        for key, where in REFUSED_BY:
            if key in details:
                return where
    return code


def _flooder(target: str, calls: int, frames: int, cpu: int, conn, stop,
             garbage_bytes: int = 0) -> None:
    """A separate process: on each "go", floods until `stop` is set, then sends its counts."""
    import grpc

    from hashmatch.v1 import hashmatch_pb2 as pb

    if cpu >= 0:
        os.sched_setaffinity(0, {cpu})
    rng = np.random.default_rng(7)
    bodies = [pb.SubmitCaseRequest(media=[pb.MediaHashes(video=pb.VideoHashes(
        frame_pdqs=rng.integers(0, 256, (frames, 32), dtype=np.uint8).tobytes(),
        frame_qualities=[90] * frames))]).SerializeToString() for _ in range(8)]
    if garbage_bytes:
        bodies = [rng.bytes(garbage_bytes) for _ in range(8)]

    async def loop(submit, i, counts, said):
        n = i
        while not stop.is_set():
            try:
                await submit(bodies[n % len(bodies)], timeout=30)
                where = "OK"
            except grpc.aio.AioRpcError as err:
                where = refused_by(err.code().name, err.details() or "")
                said.setdefault(where, err.details())
            counts[where] = counts.get(where, 0) + 1
            n += 1

    async def main():
        async with grpc.aio.insecure_channel(
                target, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
            submit = channel.unary_unary(SUBMIT)     # bytes in, bytes out: nothing to build
            while conn.recv() == "go":
                counts, said = {}, {}
                cpu_at, started = time.process_time(), time.perf_counter()
                await asyncio.gather(*(loop(submit, i, counts, said) for i in range(calls)))
                conn.send({"counts": counts, "seconds": time.perf_counter() - started,
                           "cpu_s": time.process_time() - cpu_at, "said": said})

    asyncio.run(main())


async def _probe_health(target: str, until: asyncio.Event, proc, rss: list) -> list[float]:
    """Health/Check latency (ms) every 0.1 s: the server's event loop delay plus one call;
    appends the server's RSS (bytes) to `rss` at each probe."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    times = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while not until.is_set():
            started = time.perf_counter()
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
            times.append((time.perf_counter() - started) * 1e3)
            rss.append(proc.memory_info().rss)
            await asyncio.sleep(0.1)
    return times


def _phase(args, server, list_hashes, flooder) -> dict:
    """One phase of platform load; with `flooder` (its pipe and stop event) under a flood."""
    import psutil

    from bench import load

    load_args = load.parse_args(["--duration", str(args.phase_s), "--streams",
                                 str(args.streams), "--batch-size", str(args.batch_size),
                                 "--rate", str(args.rate), "--count", "100000000", "--quiet"])
    proc = psutil.Process(server.process.pid)
    if flooder is not None:
        flooder[1].clear()
        flooder[0].send("go")
        time.sleep(1.0)  # let the flood reach its full rate first

    async def measured():
        until = asyncio.Event()
        probe = asyncio.create_task(_probe_health(server.target, until, proc, rss))
        try:
            summary = await load.drive(load_args, server.target, server.api_key, list_hashes,
                                       proc)
        finally:
            until.set()
        return summary, await probe

    rss = [proc.memory_info().rss]
    rss_before, cpu_before, wall_before = proc.memory_info().rss, sum(proc.cpu_times()[:2]), \
        time.perf_counter()
    summary, health = asyncio.run(measured())
    wall = time.perf_counter() - wall_before
    server_cpu = (sum(proc.cpu_times()[:2]) - cpu_before) / wall
    flood = {}
    if flooder is not None:
        flooder[1].set()
        flood = flooder[0].recv()
    latency = summary["latency_ms"]
    return {"p50_ms": latency["p50"], "p99_ms": latency["p99"],
            "hashes_per_s": summary["result"]["hashes_per_s"],
            "errors": summary["result"]["errors"],
            "health_p50_ms": float(np.percentile(health, 50)) if health else None,
            "health_p99_ms": float(np.percentile(health, 99)) if health else None,
            "server_cpu_s_per_s": server_cpu,
            "rss_mb": (rss_before / 2**20, proc.memory_info().rss / 2**20),
            "rss_peak_mb": max(rss) / 2**20,
            "load_avg": os.getloadavg()[0], "flood": flood}


def run_scenario(args, name: str, list_hashes) -> dict:
    from bench.load_server import ManagedServer

    spawn = multiprocessing.get_context("spawn")  # no fork after gRPC started in this process
    with ManagedServer(list_hashes, SCENARIOS[name] + args.server_arg) as server:
        ours, theirs = spawn.Pipe()
        stop = spawn.Event()
        process = spawn.Process(target=_flooder, args=(
            server.target, args.flood_calls, args.frames, args.flood_cpu, theirs, stop,
            args.garbage_bytes))
        process.start()
        rounds = []
        try:
            for _ in range(args.rounds):
                rounds.append({"baseline": _phase(args, server, list_hashes, None),
                               "flood": _phase(args, server, list_hashes, (ours, stop))})
        finally:
            ours.send("done")
            process.join(30)
    ratios = [r["flood"]["p99_ms"] / r["baseline"]["p99_ms"] for r in rounds]
    flood = [r["flood"]["flood"] for r in rounds]
    return {"rounds": rounds, "p99_ratio_median": statistics.median(ratios),
            "p99_ratio_min": min(ratios), "p99_ratio_max": max(ratios),
            # server CPU seconds a second the flood added, paired round by round
            "flood_cpu_s_per_s_median": statistics.median(
                r["flood"]["server_cpu_s_per_s"] - r["baseline"]["server_cpu_s_per_s"]
                for r in rounds),
            "flood_calls_per_s_median": statistics.median(
                sum(f["counts"].values()) / f["seconds"] for f in flood)}


def run(args) -> dict:
    from bench.load_server import random_hashes
    from bench.machine import describe

    list_hashes = random_hashes(args.list_size, 0)
    machine = describe()
    scenarios = {name: run_scenario(args, name, list_hashes)
                 for name in args.scenario or ["one-client"]}
    return {"machine": machine, "config": vars(args), "scenarios": scenarios}


def text(summary: dict) -> str:
    lines = []
    for name, scenario in summary["scenarios"].items():
        lines += [f"{name}: platform p99 flood/baseline median {scenario['p99_ratio_median']:.2f}"
                  f" (rounds {scenario['p99_ratio_min']:.2f}..{scenario['p99_ratio_max']:.2f}); "
                  f"flood {scenario['flood_calls_per_s_median']:,.0f} calls/s cost the server "
                  f"{scenario['flood_cpu_s_per_s_median']:.3f} CPU s/s (medians)",
                  f"{'round':<11} {'p50 ms':>7} {'p99 ms':>7} {'health p99':>10} "
                  f"{'hashes/s':>8} {'srv cpu/s':>9} {'rss MB (peak)':>17} {'load':>5}  flood",
                  "-" * 100]
        for i, pair in enumerate(scenario["rounds"], 1):
            for phase, row in pair.items():
                flood = row["flood"]
                said = "-"
                if flood:
                    said = (f"{sum(flood['counts'].values()) / flood['seconds']:,.0f} calls/s "
                            f"(client cpu {flood['cpu_s'] / flood['seconds']:.2f}/s): " + ", ".join(
                                f"{k} {v}" for k, v in sorted(flood["counts"].items())))
                lines.append(f"{i} {phase:<9} {row['p50_ms']:7.1f} {row['p99_ms']:7.1f} "
                             f"{row['health_p99_ms'] or 0:10.1f} {row['hashes_per_s']:8.0f} "
                             f"{row['server_cpu_s_per_s']:9.2f} "
                             f"{row['rss_mb'][0]:5.0f}>{row['rss_mb'][1]:<5.0f}"
                             f"({row['rss_peak_mb']:4.0f}) "
                             f"{row['load_avg']:5.1f}  {said}")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    summary = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1, default=str)
    print(text(summary))
    return 1 if any(row["errors"] for s in summary["scenarios"].values()
                    for pair in s["rounds"] for row in pair.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
