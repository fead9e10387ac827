"""What the flood breaker and the held-entry screen cost the match path, in one process.

`python -m bench.bench_flood` builds a ListState of random PDQ hashes and batches with a share of
near-duplicates (as bench.load makes them), then times, interleaved batch by batch, the match of
a batch (`run_query`), the breaker's bookkeeping for its hits (`FloodBreaker.observe_batch`) and
the screen that drops hits on 1,000 held entries, and prints each part's median beside the
search's. The end-to-end load generator cannot resolve a few percent on a shared machine; the
parts timed on their own can.
"""
import argparse
import statistics
import time

import numpy as np

from bench.machine import describe
from hashmatch.server.flood import FloodBreaker
from hashmatch.core.holds import EntryHolds
from hashmatch.server.listing import ListState, run_query, screen
from hashmatch.server.media import ListRows, Query


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.bench_flood", description=__doc__)
    p.add_argument("--list-size", type=int, default=100_000)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--match-share", type=float, default=0.05)
    p.add_argument("--rounds", type=int, default=30)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    listed = rng.integers(0, 256, (args.list_size, 32), dtype=np.uint8)
    state = ListState(search_threads=1)
    state.load(ListRows(image_ids=np.arange(1, args.list_size + 1, dtype=np.uint64),
                        image_hashes=listed, sequence=1))
    batches = [_batch(rng, listed, args) for _ in range(8)]
    breaker = FloodBreaker(10**9, 60.0, lambda entry, count: None)   # counts, never trips
    held = rng.choice(args.list_size, 1000, replace=False).astype(np.uint64) + 1
    found = [state.match_pdq(q.hashes, q.threshold, False) for q in batches]
    blocking = EntryHolds()
    blocking.load(held, ())
    parts = {
        "search (run_query, nothing held)": lambda i: run_query(state, batches[i]),
        "flood breaker (observe_batch)": lambda i: breaker.observe_batch(batches[i].hashes,
                                                                        found[i]),
        "screen, 1,000 entries held": lambda i: screen(found[i], blocking),
    }
    times = {name: [] for name in parts}
    for _ in range(args.rounds):            # interleaved, so noise hits every part alike
        for name, part in parts.items():
            for i in range(len(batches)):
                start = time.perf_counter()
                part(i)
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(samples) for name, samples in times.items()}
    base = medians["search (run_query, nothing held)"]
    hits = statistics.mean(len(f) for f in found)
    print(f"{describe()['cpu']}, list {args.list_size:,}, batch {args.batch_size} with "
          f"{args.match_share:.0%} near-duplicates ({hits:.0f} hits), median of "
          f"{args.rounds * len(batches)} batches each")
    for name, median in medians.items():
        print(f"  {name:<34} {median * 1e3:9.3f} ms/batch   {100 * median / base:6.2f}% of "
              "the search")


def _batch(rng, listed, args) -> Query:
    hashes = rng.integers(0, 256, (args.batch_size, 32), dtype=np.uint8)
    near = int(args.batch_size * args.match_share)
    rows = rng.choice(len(listed), near, replace=False)
    bits = np.unpackbits(listed[rows], axis=1)
    flips = rng.random(bits.shape) < 0.03
    hashes[:near] = np.packbits(bits ^ flips, axis=1)
    return Query(signal=1, hashes=hashes, threshold=31)


if __name__ == "__main__":
    main()
