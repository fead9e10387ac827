"""Start-up at scale: bulk import, then a server that loads the list and reports SERVING.

`python -m bench.bench_startup --n 10000000` writes N random PDQ hashes as hex lines, runs
`hashmatch list import` on them (time, peak memory), then `python -m hashmatch.server` on that
store and waits for its port file, which the server writes only once it serves. It prints the
seconds to SERVING, the server's resident and peak memory then, its "serving" log line (load
time, index bytes) and one exact match through the gRPC client as a check that the list is live.
Everything runs in a temporary directory that is deleted afterwards.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench.machine import describe


def write_hex(path: pathlib.Path, hashes: np.ndarray) -> None:
    with open(path, "w") as out:
        for start in range(0, len(hashes), 1 << 18):
            part = hashes[start:start + (1 << 18)]
            out.write("\n".join(bytes(row).hex() for row in part) + "\n")


def proc_status_kb(pid: int, field: str) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args(argv)
    bindir = pathlib.Path(sys.executable).parent
    info = describe()
    print(f"machine: {info['cpu']} ({info['cpuid']}), {info['cores']} cores, load average "
          f"{info['load_average'][0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="hashmatch-startup-") as tmp:
        tmp = pathlib.Path(tmp)
        hashes = np.random.default_rng(args.seed).integers(0, 256, (args.n, 32), np.uint8)
        listing, db = tmp / "hashes.txt", tmp / "list.db"
        write_hex(listing, hashes)
        t0 = time.perf_counter()
        subprocess.run([str(bindir / "hashmatch"), "list", "import", str(listing), "--db",
                        str(db)], check=True, stdout=subprocess.DEVNULL)
        import_s = time.perf_counter() - t0
        import_peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"list import of {args.n:,} hex lines: {import_s:.1f} s, peak {import_peak_mb:.0f} "
              f"MB, store {db.stat().st_size / 1e6:.0f} MB")
        from hashmatch.server.store import Store

        store = Store(str(db))
        api_key = store.add_platform("startup-bench")
        store.close()
        port_file, log_path = tmp / "port", tmp / "server.log"
        with open(log_path, "wb") as log:
            t0 = time.perf_counter()
            server = subprocess.Popen(
                [sys.executable, "-m", "hashmatch.server", "--db", str(db), "--listen",
                 "127.0.0.1:0", "--port-file", str(port_file)], stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            while not port_file.exists():
                if server.poll() is not None:
                    raise SystemExit(f"server exited:\n{log_path.read_text()}")
                time.sleep(0.02)
            ready_s = time.perf_counter() - t0
            rss_mb = proc_status_kb(server.pid, "VmRSS") / 1024
            peak_mb = proc_status_kb(server.pid, "VmHWM") / 1024
            print(f"server SERVING after {ready_s:.1f} s: {rss_mb:.0f} MB resident, "
                  f"{peak_mb:.0f} MB peak")
            for line in log_path.read_text().splitlines():
                if '"msg": "serving"' in line:
                    record = json.loads(line)
                    print(f"serving log: load_s {record['load_s']}, index_bytes "
                          f"{record['index_bytes']:,} ({record['index_bytes'] / args.n:.1f} "
                          f"B/hash over photos and video frames), pdq {record['pdq']:,}")
            from hashmatch.clients.client import HashmatchClient

            port = port_file.read_text().strip()
            with HashmatchClient(f"127.0.0.1:{port}", api_key=api_key) as client:
                hits = client.match_batch("pdq", hashes[args.n // 2:args.n // 2 + 1], threshold=0)
            print(f"match of listed hash #{args.n // 2:,}: {len(hits)} hit(s) at distance "
                  f"{[h.distance for h in hits]}")
        finally:
            server.terminate()
            server.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
