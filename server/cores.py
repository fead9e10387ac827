"""Both cores on one batch, without oversubscription: how the server shares its cores.

Each search runs on one thread (the core's threads=1), because splitting every search over all
cores while `worker_threads` searches already run cost about 14% more CPU a hash at full load
(bench.load, 100k list). A batch that starts while cores are idle is instead cut into query
slices, one an idle core, searched at once and joined in order; at full load every batch gets
one core. Threads in use never exceed the cores (plus a brief overlap when batches race).
"""
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

MIN_SLICE = 256   # queries: below this a slice costs more in calls than it saves


class CoreShare:
    """Hands out `cores` among the searches running at once. `take(queries)` gives a search
    the idle cores it can use (at least 1); `map` runs its slices on them."""

    def __init__(self, cores: int):
        self.cores = max(1, cores)
        self._busy = 0
        self._lock = threading.Lock()
        self._helpers = (ThreadPoolExecutor(self.cores - 1, thread_name_prefix="hashmatch-slice")
                         if self.cores > 1 else None)

    @contextlib.contextmanager
    def take(self, queries: int):
        """Yields how many slices a batch of `queries` should be cut into: the idle cores, at
        most one a MIN_SLICE queries, at least 1. They count as busy until the block ends."""
        with self._lock:
            n = max(1, min(self.cores - self._busy, queries // MIN_SLICE))
            self._busy += n
        try:
            yield n
        finally:
            with self._lock:
                self._busy -= n

    def map(self, fn, parts: list) -> list:
        """[fn(p) for p in parts], the first on this thread and the rest on helper threads at
        the same time; the first error is raised here once every part has finished."""
        if len(parts) > self.cores:
            raise ValueError(f"{len(parts)} parts for {self.cores} cores")
        futures = [self._helpers.submit(fn, p) for p in parts[1:]]
        try:
            first = fn(parts[0])
        finally:
            for future in futures:
                future.exception()  # waits; the error, if any, is raised by result() below
        return [first] + [future.result() for future in futures]
