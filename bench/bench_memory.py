"""What anonymous callers can make the server hold: `python -m bench.bench_memory`.

Measures, on server subprocesses, the sizes behind `abuse.memory_bound` (server RSS a hash
admitted through SubmitCase adds, an open connection, an address's token bucket), the peak RSS
of one gRPC connection flooding SubmitCase with garbage bodies of max_request_bytes (with and
without refusal_delay_s and http2_bdp_probe), and a raw HTTP/2 flood (bench/h2flood.py) from
many connections that fills every window, beside the bound abuse.memory_bound computes for
them. Numbers are for docs/SECURITY.md ("Memory").
"""
import argparse
import multiprocessing
import os
import sys
import time
import tracemalloc

import numpy as np

RATES_OFF = ["--submit-rate-per-peer=0", "--submit-rate-global=0", "--submit-hashes-per-s=0"]


def per_hash(cases: int) -> str:
    import grpc
    import psutil

    from bench.load_server import ManagedServer, random_hashes
    from hashmatch.v1 import hashmatch_pb2 as pb
    from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc

    rng = np.random.default_rng(1)
    with ManagedServer(random_hashes(100_000, 0), RATES_OFF) as server, grpc.insecure_channel(
            server.target, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        proc, stub = psutil.Process(server.process.pid), pb_grpc.CasesStub(channel)

        def submit():
            stub.SubmitCase(pb.SubmitCaseRequest(media=[pb.MediaHashes(video=pb.VideoHashes(
                frame_pdqs=rng.integers(0, 256, (7200, 32), dtype=np.uint8).tobytes(),
                frame_qualities=[90] * 7200))]))

        for _ in range(3):
            submit()
        time.sleep(1)
        before = proc.memory_info().rss
        for _ in range(cases):
            submit()
        time.sleep(1)
        grown = proc.memory_info().rss - before
    return (f"{grown / (cases * 7200):.0f} B of RSS a video frame hash admitted "
            f"({cases} cases of 7,200 frames on a list of 100,000)")


def per_connection(connections: int) -> str:
    import grpc
    import psutil
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from bench.load_server import ManagedServer, random_hashes

    with ManagedServer(random_hashes(1000, 0)) as server:
        proc = psutil.Process(server.process.pid)
        time.sleep(0.5)
        before, channels = proc.memory_info().rss, []
        for _ in range(connections):
            channel = grpc.insecure_channel(server.target,
                                            options=[("grpc.use_local_subchannel_pool", 1)])
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            channels.append(channel)
        time.sleep(1)
        grown = proc.memory_info().rss - before
        for channel in channels:
            channel.close()
    return f"{grown / connections / 1024:.1f} KB of RSS an open connection ({connections} open)"


def per_bucket(peers: int = 50_000) -> str:
    from hashmatch.server.buckets import PeerBuckets

    buckets = PeerBuckets(1, 1, max_peers=peers)
    tracemalloc.start()
    for i in range(peers):
        buckets(f"2001:db8:{i >> 16:x}:{i & 0xffff:x}::/64")
    used = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return f"{used / peers:.0f} B an address's token bucket ({peers:,} addresses)"


def garbage_flood(calls: int, body: int, seconds: float, server_args: list[str]) -> str:
    import psutil

    from bench import bench_abuse
    from bench.load_server import ManagedServer, random_hashes

    spawn = multiprocessing.get_context("spawn")
    with ManagedServer(random_hashes(100_000, 0), server_args) as server:
        ours, theirs = spawn.Pipe()
        stop = spawn.Event()
        flooder = spawn.Process(target=bench_abuse._flooder, args=(
            server.target, calls, 0, os.cpu_count() - 1, theirs, stop, body))
        flooder.start()
        time.sleep(1.5)
        proc = psutil.Process(server.process.pid)
        before = peak = proc.memory_info().rss
        cpu_before, started = sum(proc.cpu_times()[:2]), time.perf_counter()
        ours.send("go")
        while time.perf_counter() - started < seconds:
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.05)
        cpu = (sum(proc.cpu_times()[:2]) - cpu_before) / (time.perf_counter() - started)
        stop.set()
        result = ours.recv()
        ours.send("done")
        flooder.join(30)
    rate = sum(result["counts"].values()) / result["seconds"]
    return (f"{' '.join(server_args) or 'defaults'}: {rate:.0f} calls/s, peak RSS "
            f"{before / 2**20:.0f} -> {peak / 2**20:.0f} MB, server CPU {cpu:.3f} s/s")


def raw_flood(connections: int, seconds: float, server_args: list[str]) -> str:
    """`connections` HTTP/2 connections from bench.h2flood (every stream open, every window
    filled, nothing read) against a server with the anonymous rates at their defaults, beside
    abuse.memory_bound for that many connections."""
    import psutil

    from bench.h2flood import flood
    from bench.load_server import ManagedServer, random_hashes
    from hashmatch.server.abuse import memory_bound
    from hashmatch.server.config import from_args

    with ManagedServer(random_hashes(100_000, 0), server_args) as server:
        proc = psutil.Process(server.process.pid)
        time.sleep(1.0)
        before = peak = proc.memory_info().rss

        def sample():
            nonlocal peak
            peak = max(peak, proc.memory_info().rss)

        config = from_args(["--db", str(server.db_path), *server_args])
        result = flood(server.target, connections, seconds,
                       declared=config.max_request_bytes - 100_000, on_tick=sample)
    bound = memory_bound(config, list_hashes=config.max_list_hashes, connections=connections)
    return (f"{' '.join(server_args) or 'defaults'}: {connections} connections x "
            f"{result.streams_per_connection} streams, {result.ended / seconds:,.0f} calls "
            f"ended/s; held unread at most {result.peak_outstanding / 2**20:,.1f} MiB; peak RSS "
            f"{before / 2**20:.0f} -> {peak / 2**20:.0f} MiB (+{(peak - before) / 2**20:.0f}); "
            f"bound without the list {sum(bound.values()) / 2**20:,.0f} MiB")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_memory", description=__doc__)
    p.add_argument("--cases", type=int, default=40)
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--flood-calls", type=int, default=64)
    p.add_argument("--body-bytes", type=int, default=2_000_000)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--raw-connections", default="1,64,512",
                   help="connection counts for the raw HTTP/2 flood at the defaults")
    args = p.parse_args(argv)
    print(per_hash(args.cases))
    print(per_connection(args.connections))
    print(per_bucket())
    print(f"one connection, {args.flood_calls} calls of {args.body_bytes:,} garbage bytes "
          f"for {args.seconds:g} s:")
    for server_args in ([], ["--refusal-delay-s=0"], ["--http2-bdp-probe=true"]):
        print("  " + garbage_flood(args.flood_calls, args.body_bytes, args.seconds, server_args))
    print(f"raw HTTP/2 flood (bench/h2flood.py) for {args.seconds:g} s:")
    for connections in (int(n) for n in args.raw_connections.split(",")):
        print("  " + raw_flood(connections, args.seconds, []))
    print("  " + raw_flood(4, args.seconds, ["--http2-bdp-probe=true"]))
    print(f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
