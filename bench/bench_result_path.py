"""Times one 262,144-hit batch through each layer of the result path: the engine (the compiled
tables), HashIndex.search (ids, delta merge) and the listing (ListState.match_pdq: positions,
signal kinds), so a layer that reshapes or sorts again shows as the gap between two lines.

16,384 query hashes, each with 16 listed copies 1-8 bits away (262,144 listed hashes, the
multi-index tables), threshold 8 (few candidates besides the copies, so the engine is cheap and the
layers above it show), one search thread (so all work runs on the calling thread),
fastest and median of --rounds in CPU time of that thread: wall time on a loaded machine says more about
the neighbours than about the code. Runs against whatever
`hashmatch` is importable (PYTHONPATH can point at another build to compare).
Run: .venv/bin/python bench/bench_result_path.py
"""
import argparse
import statistics
import time

import numpy as np

from hashmatch.core import HashIndex, kernels
from hashmatch.server.listing import ListState
from hashmatch.server.media import ListRows

QUERIES, COPIES, THRESHOLD = 16384, 16, 8


def listed(rng):
    queries = rng.integers(0, 256, size=(QUERIES, 32), dtype=np.uint8)
    bits = np.unpackbits(np.repeat(queries, COPIES, axis=0), axis=1)
    for k in range(8):  # flip 1..8 random bits of each copy (a bit may flip back: still close)
        rows = np.flatnonzero(np.arange(len(bits)) % 8 >= k)
        bits[rows, rng.integers(0, 256, size=len(rows))] ^= 1
    return queries, np.packbits(bits, axis=1)


def cpu_ms(call, rounds) -> tuple[float, float]:
    """(fastest, median) CPU milliseconds of the calling thread over `rounds` calls."""
    call()
    times = []
    for _ in range(rounds):
        start = time.thread_time()
        call()
        times.append((time.thread_time() - start) * 1e3)
    return min(times), statistics.median(times)


def count(result) -> int:
    return len(result[1]) if isinstance(result, tuple) else len(result)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    queries, hashes = listed(np.random.default_rng(0))
    ids = np.arange(len(hashes), dtype=np.uint64)
    index = HashIndex(threads=1)
    index.add(ids, hashes)
    index.compact()
    engine = index._table.snapshot().engine
    words = kernels.as_words(queries)
    state = ListState(search_threads=1)
    state.load(ListRows(image_ids=ids, image_hashes=hashes))
    print(f"{kernels.backend_name()}, {index.describe()['engine']}, "
          f"{count(index.search(queries, THRESHOLD))} hits")
    layers = {
        "engine (tables)": lambda: engine.tables.search(words, THRESHOLD, 1),
        "HashIndex.search": lambda: index.search(queries, THRESHOLD),
        "ListState.match_pdq": lambda: state.match_pdq(queries, THRESHOLD, False),
    }
    try:  # builds with the per-hash cap: 12 a hash, the server's default for a batch this big
        state.match_pdq(queries[:1], THRESHOLD, False, 12)
        layers["match_pdq, 12 a hash"] = lambda: state.match_pdq(queries, THRESHOLD, False, 12)
    except TypeError:
        pass
    for name, call in layers.items():
        fastest, median = cpu_ms(call, args.rounds)
        print(f"{name:22s} {fastest:7.1f} ms CPU fastest, {median:7.1f} median")


if __name__ == "__main__":
    main()
