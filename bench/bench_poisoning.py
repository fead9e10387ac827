"""Duplicate poisoning before and after hashes are stored once, in one process (issue 13).

`python -m bench.bench_poisoning` lists random PDQ hashes, ten real entries 1-10 bits from a
poisoned hash, and `--copies` copies of the poisoned hash (the issue's attack: 201 cases of
1,000). It then matches a platform batch of hashes 1-3 bits from the poisoned one, as the server
caps it (16 a hash), on two lists side by side, interleaved batch by batch:
  before: every copy a row of a plain `HashIndex` (how the list was kept until now), searched
          with the cap as ListState did;
  after:  the server's ListState (`run_query`), which stores the copies once (core.shared).
It prints each one's index memory, median batch time and how many of the ten real entries
each query hash still sees, beside the load average (the machine may be shared).
"""
import argparse
import statistics
import time

import numpy as np

from bench.machine import describe
from hashmatch.core import HashIndex
from hashmatch.server.listing import ListState, per_hash_cap, run_query
from hashmatch.server.media import ListRows, Query

MAX_PER_HASH, MAX_PER_BATCH = 16, 200_000     # the server's defaults (config.py)


def flipped(rng, hash_: np.ndarray, count: int) -> np.ndarray:
    bits = np.unpackbits(hash_)
    bits[rng.choice(256, count, replace=False)] ^= 1
    return np.packbits(bits)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.bench_poisoning", description=__doc__)
    p.add_argument("--list-size", type=int, default=100_000)
    p.add_argument("--copies", type=int, default=201_000)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    poisoned = rng.integers(0, 256, 32, dtype=np.uint8)
    real = np.stack([flipped(rng, poisoned, d) for d in range(1, 11)])
    hashes = np.concatenate([rng.integers(0, 256, (args.list_size, 32), dtype=np.uint8), real,
                             np.repeat(poisoned[None], args.copies, axis=0)])
    ids = rng.permutation(np.arange(1, len(hashes) + 1, dtype=np.uint64) * 7919)
    real_ids = set(ids[args.list_size:args.list_size + 10].tolist())

    before = HashIndex()
    before.add(ids, hashes)
    after = ListState()
    after.load(ListRows(image_ids=ids, image_hashes=hashes, sequence=1))
    batch = np.stack([flipped(rng, poisoned, int(rng.integers(1, 4)))
                      for _ in range(args.batch_size)])
    query = Query(signal=1, hashes=batch, threshold=31, max_per_hash=MAX_PER_HASH,
                  max_per_batch=MAX_PER_BATCH)
    cap = per_hash_cap(MAX_PER_HASH, MAX_PER_BATCH, len(batch))
    runs = {"before: a row per copy (HashIndex)": lambda: before.search(batch, 31, cap),
            "after: stored once (ListState)": lambda: run_query(after, query)}
    times = {name: [] for name in runs}
    answers = {}
    for _ in range(args.rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            answers[name] = run()
            times[name].append(time.perf_counter() - start)
    memory = {runs_name: value for runs_name, value in zip(
        runs, (before.memory_bytes(), after.index_memory_bytes()))}
    machine = describe()
    print(f"{machine['cpu']}, load average {machine['load_average'][0]:.1f}; list "
          f"{args.list_size:,} random + 10 real near + {args.copies:,} copies of one hash; batch "
          f"{args.batch_size} hashes 1-3 bits from it, cap {cap} a hash; median of {args.rounds}")
    for name in runs:
        found = answers[name]
        entries = found.ids if hasattr(found, "ids") else found.entry_ids
        offsets = getattr(found, "offsets", None)
        positions = (np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
                     if offsets is not None else found.positions)
        seen = np.isin(entries, list(real_ids))
        real_seen = np.bincount(positions[seen], minlength=len(batch))
        print(f"  {name:<36} index {memory[name] / 2**20:8.1f} MiB   "
              f"{statistics.median(times[name]) * 1e3:8.2f} ms/batch   "
              f"{len(entries):7,} matches, real entries seen per query hash: "
              f"{real_seen.min()}-{real_seen.max()} of 10, truncated "
              f"{int(found.truncated.sum())}")


if __name__ == "__main__":
    main()
