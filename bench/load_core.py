"""The baseline every load run is judged against: the core index alone, in this process, on
the same queries and list size, with all CPU threads, and no gRPC. End-to-end / core says how
much of the index's speed the server delivers."""
import os
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from itertools import cycle, islice

import numpy as np


def kernel_backend() -> str:
    try:
        from hashmatch.core.kernels import backend_name
        return backend_name()
    except ImportError:
        return "unknown"


def build_info() -> dict:
    """What the compiled kernels say they were built with (compiler, compiled CPU paths)."""
    try:
        from hashmatch.core import _kernels
        return {k: v if isinstance(v, (str, int, float)) else list(v)
                for k, v in dict(_kernels.BUILD_INFO).items()}
    except (ImportError, AttributeError, TypeError):
        return {}


def _timed(index, batches: list, threshold: int, seconds: float, workers: int) -> dict:
    """`workers` concurrent searches of `batches` (cycled) for about `seconds`."""
    searched = matches = 0
    cpu_before = time.process_time()
    started = time.perf_counter()
    deadline = started + seconds
    with ThreadPoolExecutor(workers) as pool:
        todo = cycle(batches)
        running = {pool.submit(index.search, b, threshold) for b in islice(todo, workers)}
        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                offsets = future.result().offsets
                searched += len(offsets) - 1
                matches += int(offsets[-1])
                # Keep every worker busy until the time is up, then let the rest drain.
                if time.perf_counter() < deadline and (batch := next(todo, None)) is not None:
                    running.add(pool.submit(index.search, batch, threshold))
    elapsed = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_before
    return {"hashes_per_s": searched / elapsed if elapsed else 0.0, "queries": searched,
            "matches": matches, "seconds": elapsed, "workers": workers, "cpu_s": cpu_s,
            "cpu_us_per_hash": 1e6 * cpu_s / searched if searched else None}


def core_rate(list_hashes: np.ndarray, batches: list, threshold: int, seconds: float) -> dict:
    """The core index's best rate on `batches` (uint8[b, 32] each) over `list_hashes`, using
    every CPU two ways, each for about `seconds`: one search at a time that spreads over all
    threads itself (HashIndex(threads=0), as the server builds it), and one single-threaded
    search per CPU at once (HashIndex(threads=1)). The faster is the baseline.

    Returns hashes_per_s, queries, matches, seconds, cpu_us_per_hash (CPU time of this
    process, all threads, per query: what a busy machine cannot hide), threads, the `ways`
    measured, backend, build (what the kernels were compiled with) and build_s (index add)."""
    from hashmatch.core import HashIndex
    cpus = os.cpu_count() or 1
    ways = []
    for index_threads, workers in ((0, 1), (1, cpus)):
        t0 = time.perf_counter()
        index = HashIndex(threads=index_threads)
        index.add(np.arange(len(list_hashes), dtype=np.uint64), list_hashes)
        getattr(index, "wait_merged", lambda: None)()
        build_s = time.perf_counter() - t0
        if batches:
            index.search(batches[0][:1], threshold)  # first-call costs stay out of the timing
        way = _timed(index, batches, threshold, seconds, workers)
        ways.append({**way, "index_threads": index_threads, "build_s": build_s})
        del index
    best = max(ways, key=lambda w: w["hashes_per_s"])
    return {**best, "threads": cpus, "ways": ways, "backend": kernel_backend(),
            "build": build_info()}
