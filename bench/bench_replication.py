"""Replication: snapshot rate and change lag, primary -> copies, on one machine over loopback.

`python -m bench.bench_replication --n 1000000 --changes 200` writes N random PDQ hashes as hex
lines and times `hashmatch list import` of them (the rate to beat), starts a primary on that
store, then times a snapshot into three copies: the durable mirror (`hashmatch mirror`'s Mirror,
its own SQLite file), a `serve --follow` server and the client's in-process ListMirror. Then it
submits and withdraws `--changes` cases on the primary, one at a time, and times, for each
withdrawal, from WithdrawCase's answer to each copy having applied its sequence: the lag a
withdrawal takes to stop matching there. Everything runs in a temporary directory.
"""
from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import tempfile
import time

import grpc
import numpy as np

from bench.bench_startup import write_hex
from bench.machine import describe
from hashmatch.clients.mirror import ListMirror
from hashmatch.server.app import ServerThread
from hashmatch.server.config import CASE_RATES_OFF, ServerConfig
from hashmatch.server.mirror import Mirror
from hashmatch.server.replica_store import open_replica_store
from hashmatch.v1 import hashmatch_pb2 as pb
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc


def wait_for(check, timeout: float = 600) -> float:
    """Polls `check` every 0.5 ms; returns the perf_counter time it became true."""
    deadline = time.perf_counter() + timeout
    while not check():
        if time.perf_counter() > deadline:
            raise TimeoutError("copy did not catch up")
        time.sleep(0.0005)
    return time.perf_counter()


def percentiles(values) -> str:
    ms = np.asarray(values) * 1000
    return f"p50 {np.percentile(ms, 50):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms, " \
           f"max {ms.max():.1f} ms"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--changes", type=int, default=200)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args(argv)
    info = describe()
    print(f"machine: {info['cpu']} ({info['cpuid']}), {info['cores']} cores, load average "
          f"{info['load_average'][0]:.1f}")
    bindir = pathlib.Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="hashmatch-replication-") as tmp:
        tmp = pathlib.Path(tmp)
        hashes = np.random.default_rng(args.seed).integers(0, 256, (args.n, 32), np.uint8)
        listing, db = tmp / "hashes.txt", str(tmp / "primary.db")
        write_hex(listing, hashes)
        t0 = time.perf_counter()
        subprocess.run([str(bindir / "hashmatch"), "list", "import", str(listing), "--db", db],
                       check=True, stdout=subprocess.DEVNULL)
        import_s = time.perf_counter() - t0
        print(f"list import of {args.n:,} hashes: {import_s:.2f} s, "
              f"{args.n / import_s:,.0f} hashes/s")
        store = open_replica_store(db)
        key = store.add_platform("bench", ["replicate", "match"])
        store.close()

        # One address submits and withdraws every case: the anonymous rate limits are off.
        primary = ServerThread(ServerConfig(db_path=db, listen="127.0.0.1:0",
                                            sync_heartbeat_s=0.5, **CASE_RATES_OFF)).start()
        target = f"127.0.0.1:{primary.port}"
        copy_store = open_replica_store(str(tmp / "mirror.db"))
        mirror = Mirror(copy_store, target, key)
        t0 = time.perf_counter()
        mirror.start()
        done = wait_for(lambda: mirror.progress.event != "starting")
        print(f"durable mirror snapshot: {done - t0:.2f} s, {args.n / (done - t0):,.0f} "
              "hashes/s (received, digest checked, written to its SQLite file)")

        t0 = time.perf_counter()
        follower = ServerThread(ServerConfig(db_path=str(tmp / "follower.db"),
                                             listen="127.0.0.1:0", follow=target,
                                             follow_api_key=key)).start()
        done = time.perf_counter()
        print(f"serve --follow to SERVING: {done - t0:.2f} s, {args.n / (done - t0):,.0f} "
              "hashes/s (snapshot into its index)")

        t0 = time.perf_counter()
        copy = ListMirror(target, key, threads=1).start(timeout=600)
        done = time.perf_counter()
        print(f"ListMirror snapshot: {done - t0:.2f} s, {args.n / (done - t0):,.0f} hashes/s")

        cases = pb_grpc.CasesStub(grpc.insecure_channel(target))
        rng = np.random.default_rng(args.seed + 1)
        lags = {"mirror": [], "follow": [], "ListMirror": []}
        for _ in range(args.changes):
            case = cases.SubmitCase(pb.SubmitCaseRequest(media=[pb.MediaHashes(
                image=pb.ImageHashes(pdq=rng.bytes(32), md5=rng.bytes(16), quality=90))]))
            cases.WithdrawCase(pb.WithdrawCaseRequest(case_id=case.case_id, pin=case.pin))
            # Anonymous answers carry no list sequence; the primary has applied the
            # withdrawal before it answered, so its own list's sequence is the one to reach.
            t0, seq = time.perf_counter(), primary.app.state.sequence
            pending = {"follow": lambda: follower.app.state.sequence,
                       "ListMirror": lambda: copy.sequence, "mirror": lambda: mirror.sequence}
            while pending:      # one loop watches all three, so each lag is its own
                now = time.perf_counter()
                for name in [n for n, sequence in pending.items() if sequence() >= seq]:
                    lags[name].append(now - t0)
                    del pending[name]
                if now - t0 > 60:
                    raise TimeoutError(f"{', '.join(pending)} did not catch up")
                time.sleep(0.0005)
        for name, values in lags.items():
            print(f"withdrawal lag to {name}: {percentiles(values)} ({len(values)} changes)")
        print(f"load average at the end: {describe()['load_average'][0]:.1f}")
        copy.stop()
        mirror.stop()
        follower.stop()
        primary.stop()
        copy_store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
