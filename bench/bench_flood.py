"""What the flood breaker and the held-entry screen cost the match path, in one process.

`python -m bench.bench_flood` builds a ListState of random PDQ hashes and batches with a share of
near-duplicates (as bench.load makes them), then times, interleaved batch by batch, the match of
a batch (`run_query`, with the server's default caps), the breaker's bookkeeping for its hits
(`FloodBreaker.observe_batch`) and the match of the same batch with 1,000 entries held (left out
inside the capped search, core/capped.py), and prints each part's median beside the search's.
Then the worst case of that screen: a batch whose every hash lies near 1,000 held near-variants
of one hash, which the capped search must walk past (core/capped.py's cost), beside the same
batch with the variants listed and not held. The end-to-end load generator cannot resolve a few percent on a shared machine; the
parts timed on their own can.
"""
import argparse
import statistics
import time

import numpy as np

from bench.machine import describe
from hashmatch.server.flood import FloodBreaker
from hashmatch.server.config import ServerConfig
from hashmatch.server.listing import ListState, run_query
from hashmatch.server.media import ListRows, Query


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.bench_flood", description=__doc__)
    p.add_argument("--list-size", type=int, default=100_000)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--match-share", type=float, default=0.05)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--crowded-rounds", type=int, default=5)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    listed = rng.integers(0, 256, (args.list_size, 32), dtype=np.uint8)
    ids = np.arange(1, args.list_size + 1, dtype=np.uint64)
    held = rng.choice(args.list_size, 1000, replace=False).astype(np.uint64) + 1
    state, holding = ListState(search_threads=1), ListState(search_threads=1)
    state.load(ListRows(image_ids=ids, image_hashes=listed, sequence=1))
    holding.load(ListRows(image_ids=ids, image_hashes=listed, sequence=1, held_entries=held))
    batches = [_batch(rng, listed, args) for _ in range(8)]
    breaker = FloodBreaker(10**9, 60.0, lambda entry, count: None)   # counts, never trips
    found = [run_query(state, q) for q in batches]
    parts = {
        "search (run_query, nothing held)": lambda i: run_query(state, batches[i]),
        "flood breaker (observe_batch)": lambda i: breaker.observe_batch(batches[i].hashes,
                                                                        found[i]),
        "search, 1,000 entries held": lambda i: run_query(holding, batches[i]),
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
    _crowded(rng, listed, ids, args.crowded_rounds)


def _crowded(rng, listed, ids, rounds: int, variants: int = 1000, batch: int = 1000) -> None:
    target = rng.integers(0, 256, 32, dtype=np.uint8)
    near = np.stack([_flipped(rng, target, 1 + i % 3) for i in range(variants)])
    real = _flipped(rng, target, 6)
    rows = dict(image_ids=np.arange(1, len(ids) + variants + 2, dtype=np.uint64),
                image_hashes=np.concatenate([listed, near, real[None]]), sequence=1)
    queries = np.stack([_flipped(rng, target, 1 + i % 2) for i in range(batch)])
    defaults = ServerConfig()
    query = Query(signal=1, hashes=queries, threshold=31,
                  max_per_hash=defaults.max_matches_per_hash,
                  max_per_batch=defaults.max_matches_per_batch)
    states = {"variants listed, not held": ListState(search_threads=1),
              f"variants held ({variants:,})": ListState(search_threads=1)}
    held = rows["image_ids"][len(ids):len(ids) + variants]
    for state, holds in zip(states.values(), ([], held)):
        state.load(ListRows(**rows, held_entries=np.asarray(holds, np.uint64)))
    times = {name: [] for name in states}
    for _ in range(rounds):
        for name, state in states.items():
            start = time.perf_counter()
            run_query(state, query)
            times[name].append(time.perf_counter() - start)
    print(f"crowded: a batch of {batch:,} hashes 1-2 bits from a hash with {variants:,} "
          f"near-variants (1-3 bits) listed, cap {query.max_per_hash}, median of {rounds}")
    for name, state in states.items():
        found = run_query(state, query)
        print(f"  {name:<34} {statistics.median(times[name]) * 1e3:9.1f} ms/batch   "
              f"{len(found) / batch:.0f} matches a hash, {found.truncated.sum():,} truncated")


def _flipped(rng, hash_: np.ndarray, bits: int) -> np.ndarray:
    out = np.unpackbits(hash_.copy())
    out[rng.choice(256, bits, replace=False)] ^= 1
    return np.packbits(out)


def _batch(rng, listed, args) -> Query:
    hashes = rng.integers(0, 256, (args.batch_size, 32), dtype=np.uint8)
    near = int(args.batch_size * args.match_share)
    rows = rng.choice(len(listed), near, replace=False)
    bits = np.unpackbits(listed[rows], axis=1)
    flips = rng.random(bits.shape) < 0.03
    hashes[:near] = np.packbits(bits ^ flips, axis=1)
    defaults = ServerConfig()
    return Query(signal=1, hashes=hashes, threshold=31,
                 max_per_hash=defaults.max_matches_per_hash,
                 max_per_batch=defaults.max_matches_per_batch)


if __name__ == "__main__":
    main()
