"""How fast a list change travels between servers that share one PostgreSQL list.

Starts a private PostgreSQL cluster (bench/pgcluster.py) unless --db-url names one, and three
`python -m hashmatch.server` processes on loopback. Then, N times: submit a case (one random
PDQ hash) on server A and, from A's answer, poll servers B and C with MatchBatch until the hash
matches; withdraw it on A and poll until it no longer matches. Reports p50/p99/max propagation
per kind of change, and the time A took to answer (commit + its own apply). With
--revocations N it also, N times, registers a platform, has B and C cache its key, revokes it
in the store (as `hashmatch platform revoke` does) and polls B and C with GetListInfo until they
refuse it: the revocation's travel through the change log.

    .venv/bin/python -m bench.bench_propagation --changes 200 --revocations 50

The baseline beside it is A itself: a change is visible on A when A answers (the follower is
caught up before the answer), so A's answer time is what the same write costs without travel.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from bench import machine
from bench.pgcluster import PrivateCluster
from hashmatch.server.config import CASE_RATES_OFF
from hashmatch.v1 import hashmatch_pb2 as pb
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc

SERVERS = 3
VISIBLE_TIMEOUT_S = 30.0


def start_servers(url: str, workdir: Path, n: int) -> list[tuple[subprocess.Popen, str]]:
    procs = []
    for i in range(n):
        port_file = workdir / f"port-{i}"
        log = open(workdir / f"server-{i}.log", "wb")
        procs.append((subprocess.Popen(
            [sys.executable, "-m", "hashmatch.server", "--db", url, "--listen", "127.0.0.1:0",
             "--port-file", str(port_file), "--worker-threads", "2",
             # The bench is one address: its cases and withdrawals must not meet the anonymous
             # rate limits, and revoked keys it polls until refused must not slow it.
             "--auth-failure-rate-per-s", "0",
             *(f"--{name.replace('_', '-')}={value}" for name, value in CASE_RATES_OFF.items())],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL), port_file))
    deadline = time.monotonic() + 120
    servers = []
    for proc, port_file in procs:
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start; see {workdir}")
            time.sleep(0.05)
        servers.append((proc, f"127.0.0.1:{port_file.read_text().strip()}"))
    return servers


def visible_after(stub, key, hash_: bytes, want: bool) -> float:
    """Polls until the hash matches (want) or stops matching; returns the monotonic time."""
    request = pb.MatchRequest(signal_type=pb.SIGNAL_TYPE_PDQ, hashes=hash_, threshold=0)
    deadline = time.monotonic() + VISIBLE_TIMEOUT_S
    while True:
        answer = stub.MatchBatch(request, metadata=key)
        if bool(answer.matches) == want:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError("change not visible after "
                               f"{VISIBLE_TIMEOUT_S} s")


def refused_after(stub, key) -> float:
    """Polls GetListInfo until `key` is refused; returns the monotonic time."""
    deadline = time.monotonic() + VISIBLE_TIMEOUT_S
    while True:
        try:
            stub.GetListInfo(pb.GetListInfoRequest(), metadata=key)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAUTHENTICATED:
                raise
            return time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError(f"revoked key still accepted after {VISIBLE_TIMEOUT_S} s")


def revocation_travel(url: str, channels, n: int) -> tuple[list[float], list[float]]:
    """(ms from the revoking commit to each other server's refusal, ms of the commit)."""
    from hashmatch.server.store import open_store
    store = open_store(url)
    travel, commit_ms = [], []
    try:
        others = [pb_grpc.ListInfoStub(c) for c in channels[1:]]
        for i in range(n):
            name = f"revoked-{os.getpid()}-{i}"
            key = [("x-api-key", store.add_platform(name))]
            for stub in others:
                stub.GetListInfo(pb.GetListInfoRequest(), metadata=key)    # cached now
            t0 = time.monotonic()
            store.revoke_keys(name, actor="bench")
            acked = time.monotonic()
            commit_ms.append((acked - t0) * 1000)
            travel += [(refused_after(stub, key) - acked) * 1000 for stub in others]
    finally:
        store.close()
    return travel, commit_ms


def summary(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2), "max_ms": round(float(a.max()), 2)}


def run(url: str, changes: int, workdir: Path, revocations: int = 0) -> dict:
    from hashmatch.server.store import open_store
    store = open_store(url)
    key = [("x-api-key", store.add_platform(f"bench-{os.getpid()}-{time.time_ns()}"))]
    store.close()
    servers = start_servers(url, workdir, SERVERS)
    channels = [grpc.insecure_channel(target) for _, target in servers]
    try:
        cases = pb_grpc.CasesStub(channels[0])
        others = [pb_grpc.MatchingStub(c) for c in channels[1:]]
        hashes = np.random.default_rng(1).integers(0, 256, (changes, 32), np.uint8)
        travel = {"add": [], "withdraw": []}
        answer_ms = {"add": [], "withdraw": []}
        for h in hashes:
            h = h.tobytes()
            t0 = time.monotonic()
            case = cases.SubmitCase(pb.SubmitCaseRequest(media=[pb.MediaHashes(
                image=pb.ImageHashes(pdq=h, quality=90))]))
            acked = time.monotonic()
            answer_ms["add"].append((acked - t0) * 1000)
            for stub in others:
                travel["add"].append((visible_after(stub, key, h, True) - acked) * 1000)
            t0 = time.monotonic()
            cases.WithdrawCase(pb.WithdrawCaseRequest(case_id=case.case_id, pin=case.pin))
            acked = time.monotonic()
            answer_ms["withdraw"].append((acked - t0) * 1000)
            for stub in others:
                travel["withdraw"].append((visible_after(stub, key, h, False) - acked) * 1000)
        if revocations:
            travel["revoke"], answer_ms["revoke"] = revocation_travel(url, channels, revocations)
    finally:
        for c in channels:
            c.close()
        for proc, _ in servers:
            proc.terminate()
        for proc, _ in servers:
            proc.wait(30)
    return {"servers": SERVERS, "changes": changes,
            "propagation": {k: summary(v) for k, v in travel.items()},
            "answer_on_A": {k: summary(v) for k, v in answer_ms.items()}}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--changes", type=int, default=200, help="cases submitted and withdrawn")
    p.add_argument("--db-url", help="postgresql:// URL of an empty database (default: start a "
                                    "private cluster)")
    p.add_argument("--revocations", type=int, default=0,
                   help="platform keys revoked after the cases (default 0)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hashmatch-prop-") as tmp:
        if args.db_url:
            result = run(args.db_url, args.changes, Path(tmp), args.revocations)
        else:
            with PrivateCluster() as pg:
                result = run(pg.create_database("propagation"), args.changes, Path(tmp),
                             args.revocations)
    result["machine"] = machine.describe()
    result["load_average"] = os.getloadavg()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
