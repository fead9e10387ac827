"""Load generator: many platform streams against one hashmatch server, every answer checked.

It starts a server on 127.0.0.1 over a temporary list of random PDQ hashes (or drives an existing
loopback server with --target), sends near-duplicates of listed entries mixed into random hashes
on concurrent MatchStream calls, and reports throughput, batch latency, CPU and errors beside the
core index's own rate on the same queries, measured in the same run.

    python -m bench.load --list-size 100000 --streams 4 --duration 20 --json out.json --plot out.png

With --servers N it starts N servers on copies of the one list and drives them all at once,
reporting each server and the total.
"""
import argparse
import asyncio
import contextlib
import copy
import os
import sys
import time

import numpy as np

from bench.load_target import NotLoopbackError, loopback_target

MIN_BATCH, MAX_BATCH = 1024, 16384


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--target", help="drive this running server (HOST:PORT, loopback only) "
                   "instead of starting one; sources are added to its list as cases and "
                   "withdrawn afterwards")
    p.add_argument("--api-key", help="platform key for --target (else $HASHMATCH_API_KEY)")
    p.add_argument("--cases-target", metavar="HOST:PORT",
                   help="submit and withdraw the sources through this port (loopback only), "
                        "when --target serves no Cases (a server's platform_listen port)")
    p.add_argument("--tls", action="store_true", help="connect with TLS (implied by --ca)")
    p.add_argument("--ca", metavar="FILE", help="TLS: PEM CA that signed the server certificate")
    p.add_argument("--cert", metavar="FILE", help="TLS: client certificate (PEM) for mTLS")
    p.add_argument("--key", metavar="FILE", help="TLS: private key (PEM) of --cert")
    p.add_argument("--list-size", type=int, default=100_000,
                   help="random PDQ hashes in the started server's list")
    p.add_argument("--servers", type=int, default=1,
                   help="start this many server processes on copies of the one list and drive "
                        "them all at once (--count and --rate split evenly; --streams each); "
                        "reports each server and the total")
    p.add_argument("--streams", type=int, default=4,
                   help="concurrent MatchStream calls (per server)")
    p.add_argument("--batch-size", type=int, default=4096,
                   help=f"hashes per batch ({MIN_BATCH}..{MAX_BATCH})")
    p.add_argument("--window", type=int, default=4,
                   help="unanswered batches per stream (capped at the server's max_in_flight)")
    p.add_argument("--count", type=int, default=2_000_000, help="stop after this many hashes")
    p.add_argument("--duration", type=float, default=30.0, help="stop sending after this many s")
    p.add_argument("--rate", type=float, help="target hashes/s over all streams "
                   "(default: as fast as the server answers)")
    p.add_argument("--threshold", type=int, default=31, help="inclusive Hamming threshold")
    p.add_argument("--match-share", type=float, default=0.05,
                   help="exact share of each batch that are near-duplicates of listed entries")
    p.add_argument("--max-flips", type=int, default=16,
                   help="near-duplicates differ from their entry in 0..this many bits")
    p.add_argument("--sources", type=int, default=4096,
                   help="listed entries that near-duplicates are made from")
    p.add_argument("--core-seconds", type=float, default=5.0,
                   help="how long to time the core index alone on the same queries")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for the started server (repeat), e.g. a limit flag")
    p.add_argument("--json", metavar="PATH", help="write the summary here")
    p.add_argument("--plot", metavar="PATH", help="write a PNG of throughput and latency")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    args.api_key = args.api_key or os.environ.get("HASHMATCH_API_KEY")
    if args.target:
        try:
            args.target = loopback_target(args.target)
        except NotLoopbackError as err:
            p.exit(2, f"{p.prog}: error: {err}\n")
        except ValueError as err:
            p.error(str(err))
        if not args.api_key:
            p.error("--target needs a platform key: --api-key or $HASHMATCH_API_KEY")
    if args.cases_target:
        if not args.target:
            p.error("--cases-target goes with --target")
        try:
            args.cases_target = loopback_target(args.cases_target)
        except NotLoopbackError as err:
            p.exit(2, f"{p.prog}: error: {err}\n")
        except ValueError as err:
            p.error(str(err))
    from hashmatch.clients.client import TlsFiles
    try:
        args.tls_files = TlsFiles.wanted(args.tls, args.ca, args.cert, args.key)
    except ValueError as err:
        p.error(str(err))
    checks = [
        (MIN_BATCH <= args.batch_size <= MAX_BATCH,
         f"--batch-size must be {MIN_BATCH}..{MAX_BATCH}, got {args.batch_size}"),
        (args.streams >= 1, "--streams must be at least 1"),
        (1 <= args.servers <= 16, "--servers must be 1..16"),
        (args.servers == 1 or not args.target, "--servers starts its own servers: not with --target"),
        (args.count >= args.servers, "--count must be at least --servers"),
        (args.window >= 1, "--window must be at least 1"),
        (args.count >= 1, "--count must be at least 1"),
        (0 < args.duration <= 24 * 3600, "--duration must be in (0, 86400] s"),
        (args.rate is None or args.rate > 0, "--rate must be positive"),
        (0 <= args.threshold <= 255, "--threshold must be 0..255"),
        (0.0 <= args.match_share <= 1.0, "--match-share must be in [0, 1]"),
        (0 <= args.max_flips <= args.threshold,
         f"--max-flips must be 0..threshold ({args.threshold}) so every near-duplicate matches"),
        (args.sources >= 1, "--sources must be at least 1"),
        (args.target or args.list_size >= 1, "--list-size must be at least 1"),
        (args.core_seconds > 0, "--core-seconds must be positive"),
    ]
    for ok, message in checks:
        if not ok:
            p.error(message)
    return args


async def drive(args, target, api_key, list_hashes, server_proc) -> dict:
    """Sets up sources, runs the streams, and returns the end-to-end part of the summary."""
    import grpc
    import psutil
    from tqdm import tqdm

    from bench import load_streams as ls
    from bench.load_cpu import process_cpu
    from bench.load_queries import QueryMaker
    from bench.load_server import SOURCE_STREAM

    metadata = (("x-api-key", api_key),)
    rng = np.random.default_rng([args.seed, SOURCE_STREAM])
    async with contextlib.AsyncExitStack() as opened:
        channel = await opened.enter_async_context(ls.open_channel(target, args.tls_files))
        cases_channel = channel if not args.cases_target else await opened.enter_async_context(
            ls.open_channel(args.cases_target, args.tls_files))
        info = await ls.list_info(channel, metadata)
        if info.max_batch_hashes and args.batch_size > info.max_batch_hashes:
            raise RuntimeError(f"--batch-size {args.batch_size} is above the server's "
                               f"max_batch_hashes {info.max_batch_hashes}")
        window = min(args.window, info.max_in_flight) if info.max_in_flight else args.window
        chunk = min(info.max_batch_hashes or MAX_BATCH, MAX_BATCH)
        cases = []
        if list_hashes is not None:
            rows = rng.choice(len(list_hashes), size=min(args.sources, len(list_hashes)),
                              replace=False)
            source_hashes = list_hashes[rows]
            source_ids = await ls.discover_ids(channel, metadata, source_hashes, chunk)
        else:
            source_hashes = rng.integers(0, 256, size=(args.sources, 32), dtype=np.uint8)
            source_ids, cases = await ls.submit_sources(cases_channel, source_hashes)
            info = await ls.list_info(channel, metadata)
        maker = QueryMaker(source_hashes, source_ids, args.match_share, args.max_flips)
        plan = ls.Plan(streams=args.streams, batch_size=args.batch_size, window=window,
                       count=args.count, duration=args.duration, threshold=args.threshold,
                       rate=args.rate, seed=args.seed)
        bar = tqdm(total=args.count, unit="hash", unit_scale=True, file=sys.stderr,
                   disable=args.quiet, desc="matching")
        me = psutil.Process()
        cpu_before = (process_cpu(server_proc), process_cpu(me, children=False))
        wall_before = time.perf_counter()
        try:
            out = await ls.LoadRun(channel, metadata, maker, plan, bar.update).run()
        finally:
            bar.close()
        wall = time.perf_counter() - wall_before
        cpu_after = (process_cpu(server_proc), process_cpu(me, children=False))
        cleanup_error = None
        if cases:
            try:
                await ls.withdraw_cases(cases_channel, cases)
            except grpc.RpcError as err:
                cleanup_error = f"withdrawing the source cases failed: {err.code().name}"

    from bench import load_report as report
    seconds = out.finished - out.started if out.batches else 0.0
    counts = {c.signal_type: c.count for c in info.counts}
    list_size = int(counts.get(1, 0)) or (0 if list_hashes is None else len(list_hashes))
    return {
        "server": {"target": target, "managed": list_hashes is not None,
                   "list_size": list_size, "kernel_backend": info.kernel_backend,
                   "max_in_flight": info.max_in_flight,
                   "max_batch_hashes": info.max_batch_hashes, "window": window},
        "result": {
            "sent_hashes": out.sent_hashes, "answered_hashes": out.answered_hashes,
            "batches": out.batches, "seconds": seconds,
            "hashes_per_s": out.answered_hashes / seconds if seconds else 0.0,
            "matches_expected": out.expected_matches, "matches_found": out.checked.found,
            "missed": out.checked.missed, "unexpected": out.checked.unexpected,
            "batch_errors": out.batch_errors, "stream_errors": out.stream_errors,
            "errors": out.errors, "examples": [list(map(str, e)) for e in out.checked.examples],
            "cleanup_error": cleanup_error,
        },
        "latency_ms": report.latency_ms(out.samples),
        "cpu": {"server_percent": report.cpu_share(cpu_before[0], cpu_after[0], wall),
                "client_percent": report.cpu_share(cpu_before[1], cpu_after[1], wall),
                "server_s": report.cpu_used(cpu_before[0], cpu_after[0]),
                "client_s": report.cpu_used(cpu_before[1], cpu_after[1]),
                "wall_s": wall},
        "timeline": report.timeline(out.samples, out.started),
        "_retained": out.retained,
        "_run": out,
    }


async def drive_servers(args, servers, list_hashes) -> dict:
    """--servers N: one drive per server, all at once, the count (and rate) split evenly."""
    import psutil

    from bench import load_report as report

    n = len(servers)
    drives = []
    for number, server in enumerate(servers):
        share = copy.copy(args)
        share.count = args.count // n + (number < args.count % n)
        share.rate = args.rate / n if args.rate else None
        share.quiet = args.quiet or number > 0  # one progress bar is enough
        drives.append(drive(share, server.target, server.api_key, list_hashes,
                            psutil.Process(server.process.pid)))
    return report.combine(await asyncio.gather(*drives))


def run(args) -> dict:
    from bench import load_report as report
    from bench.load_core import core_rate
    from bench.load_cpu import listening_process
    from bench.load_server import ManagedServer, random_hashes
    from bench.machine import describe

    machine = describe()  # before the run, so the load average is the background's

    with contextlib.ExitStack() as stack:
        if args.target:
            list_hashes = None
            summary = asyncio.run(drive(args, args.target, args.api_key, None,
                                        listening_process(args.target)))
        else:
            import psutil
            list_hashes = random_hashes(args.list_size, args.seed)
            print(f"filling a list of {args.list_size:,} random hashes and starting the server",
                  file=sys.stderr)
            servers = [stack.enter_context(ManagedServer(list_hashes, args.server_arg,
                                                         progress=not args.quiet))]
            servers += [stack.enter_context(ManagedServer(list_hashes, args.server_arg,
                                                          copy_of=servers[0]))
                        for _ in range(args.servers - 1)]
            if len(servers) > 1:
                summary = asyncio.run(drive_servers(args, servers, list_hashes))
            else:
                summary = asyncio.run(drive(args, servers[0].target, servers[0].api_key,
                                            list_hashes, psutil.Process(servers[0].process.pid)))
    summary.pop("_run")
    retained = summary.pop("_retained")
    if list_hashes is None:
        list_hashes = random_hashes(summary["server"]["list_size"], args.seed)
    summary["core"] = core_rate(list_hashes, retained, args.threshold, args.core_seconds)
    core = summary["core"]["hashes_per_s"]
    summary["ratio_to_core"] = summary["result"]["hashes_per_s"] / core if core else None
    summary["cpu_cost"] = report.cpu_cost(summary, machine["cores"])
    summary["machine"] = machine
    summary["config"] = {k: v for k, v in vars(args).items() if k not in ("api_key", "tls_files")}
    return summary


def main(argv=None) -> int:
    args = parse_args(argv)
    from bench import load_report as report
    import grpc
    try:
        summary = run(args)
    except (RuntimeError, grpc.RpcError) as err:
        detail = f"{err.code().name}: {err.details()}" if isinstance(err, grpc.RpcError) else err
        print(f"load generator could not run: {detail}", file=sys.stderr)
        return 2
    if args.json:
        report.write_json(summary, args.json)
    if args.plot:
        report.write_plot(summary, args.plot)
    print(report.text(summary))
    return 1 if summary["result"]["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
