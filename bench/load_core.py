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


def core_rate(list_hashes: np.ndarray, batches: list, threshold: int, seconds: float,
              threads: int | None = None) -> dict:
    """Searches `batches` (uint8[b, 32] each, cycled) in a HashIndex of `list_hashes` with
    `threads` workers (default: every CPU) for about `seconds`, at least one batch a thread.

    Returns hashes_per_s, queries, matches, seconds, threads (concurrent searches),
    index_threads (HashIndex's own setting; 0 = all), backend, build and build_s (index add)."""
    from hashmatch.core import HashIndex
    threads = threads or os.cpu_count() or 1
    t0 = time.perf_counter()
    index = HashIndex()
    index.add(np.arange(len(list_hashes), dtype=np.uint64), list_hashes)
    build_s = time.perf_counter() - t0
    if batches:
        index.search(batches[0][:1], threshold)  # first-call costs stay out of the timing
    searched = matches = 0
    started = time.perf_counter()
    deadline = started + seconds
    with ThreadPoolExecutor(threads) as pool:
        todo = cycle(batches)
        running = {pool.submit(index.search, b, threshold) for b in islice(todo, threads)}
        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                offsets = future.result()[0]
                searched += len(offsets) - 1
                matches += int(offsets[-1])
                # Keep every thread busy until the time is up, then let the rest drain.
                if time.perf_counter() < deadline and (batch := next(todo, None)) is not None:
                    running.add(pool.submit(index.search, batch, threshold))
    elapsed = time.perf_counter() - started
    return {"hashes_per_s": searched / elapsed if elapsed else 0.0, "queries": searched,
            "matches": matches, "seconds": elapsed, "threads": threads,
            "index_threads": getattr(index, "threads", None), "backend": kernel_backend(),
            "build": build_info(), "build_s": build_s}
