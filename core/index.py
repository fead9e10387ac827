"""The in-memory PDQ list: ids and packed 256-bit hashes, searched by Hamming distance.

`HashIndex` is what the server's matcher and embedding platforms use. It is exact (the same
answer as brute force for every threshold), live (add/remove without rebuild, see
`hashmatch.core.live`) and thread-safe: searches run on an immutable snapshot with the GIL
released, so several threads search at once while writers change the list.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from hashmatch.core import kernels
from hashmatch.core.hits import Hits
from hashmatch.core.live import LiveTable

DEFAULT_THRESHOLD = 31


def _as_ids(ids, name: str = "ids") -> np.ndarray:
    """ids as a contiguous uint64[n]; ValueError for other shapes, signs or dtypes."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-d array, got shape {arr.shape}")
    if len(arr) == 0:
        return np.zeros(0, np.uint64)
    if arr.dtype.kind == "i":
        if arr.min() < 0:
            raise ValueError(f"{name} must be non-negative (uint64), got {int(arr.min())}")
    elif arr.dtype.kind != "u":
        raise ValueError(f"{name} must be unsigned integers (uint64), got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.uint64)


class _BruteForceEngine:
    """Searches a base by the kernel scan; used when the sub-linear index does not apply.

    An engine's search(queries, threshold, threads, max_per_query, dead) answers as
    `kernels.range_search` does: (offsets, rows, distances, truncated), (distance, row) order."""

    def __init__(self, words: np.ndarray):
        self.words = words

    def search(self, queries: np.ndarray, threshold: int, threads: int, max_per_query: int,
               dead: np.ndarray):
        return kernels.range_search(queries, self.words, threshold, threads, max_per_query, dead)

    def memory_bytes(self) -> int:
        return 0


class _MultiIndexEngine:
    """The compiled multi-index hashing tables (`_kernels.MihIndex`): exact, sub-linear for
    thresholds up to `max_indexed_threshold`, a scan above it or where probing would cost more.
    layout: see LAYOUTS."""

    def __init__(self, words: np.ndarray, layout: str = "speed"):
        from hashmatch.core import _kernels

        self.words = words
        self.tables = _kernels.MihIndex(words, threads=0, scan_ratio=SCAN_RATIO,
                                        chain=layout == "speed")

    def search(self, queries: np.ndarray, threshold: int, threads: int, max_per_query: int,
               dead: np.ndarray):
        return self.tables.search(queries, threshold, threads, max_per_query, dead)

    def memory_bytes(self) -> int:
        return int(self.tables.memory_bytes())


class _NumbaChainEngine:
    """The Numba twin of the speed layout (`hashmatch.core.mih_numba`), for the numba backend:
    exact, sub-linear up to threshold 63, a scan above."""

    def __init__(self, words: np.ndarray):
        from hashmatch.core.mih_numba import ChainTables

        self.words = words
        self.tables = ChainTables(words)

    def search(self, queries: np.ndarray, threshold: int, threads: int, max_per_query: int,
               dead: np.ndarray):
        if threshold > 63:
            return kernels.range_search(queries, self.words, threshold, threads, max_per_query,
                                        dead)
        return kernels._limited(*self.tables.search(queries, threshold), max_per_query, dead)

    def memory_bytes(self) -> int:
        return self.tables.memory_bytes()


# Below this many hashes a scan is as fast as the tables (measured: scan 141k q/s, tables 110k
# at 20k hashes; tables 2.4x faster at 100k) and needs no memory for them.
MIN_INDEXED_HASHES = 32768
# A query whose probes would visit more than n / SCAN_RATIO rows is scanned instead. Tests that
# name the tables set MIN_INDEXED_HASHES = 0 and SCAN_RATIO = 0 (never scan what the tables can
# serve) so a few hundred hashes reach them; else the scan answers most queries of a small list.
SCAN_RATIO = 64

# How the tables trade memory for speed (bytes a hash counted by memory_bytes(), hashes and ids
# included; bench/README.md has the measurements). The rule: "speed" unless the list does not
# fit the memory the deployment gives it at that layout's bytes a hash; then "compact".
#   speed:   16 x 16-bit slots with the chain filter at every size: 117.6 B/hash at 1M, 116.4 at
#            10M, 132 from 2^24 hashes (4-byte rows).
#   compact: 16 x 16-bit slots without it below 8M hashes (85.6 B/hash at 1M), 8 x 32-bit slots
#            from 8M (63.6 at 10M); 7-17x slower than speed in bench_index.
LAYOUTS = ("speed", "compact")


def _build_engine(ids: np.ndarray, words: np.ndarray, layout: str = "speed"):
    if len(words) >= MIN_INDEXED_HASHES:
        if kernels.backend_name().startswith("cpp"):
            return _MultiIndexEngine(words, layout)
        if kernels.backend_name() == "numba" and layout == "speed":
            return _NumbaChainEngine(words)
    return _BruteForceEngine(words)


class HashIndex:
    """A live list of PDQ hashes keyed by uint64 ids.

    add(ids uint64[n], hashes uint8[n, 32] or uint64[n, 4]): adds or replaces (dict semantics;
        within one call the last occurrence of an id wins). Visible to searches that start after
        it returns.
    remove(ids uint64[k]): unknown ids are ignored.
    search(queries uint8[q, 32] or uint64[q, 4], threshold=31, max_per_query=0) -> Hits: for
        query i, ids[offsets[i]:offsets[i+1]] are ALL listed ids whose hash is within
        `threshold` (inclusive, 0..256) of it, ordered by (distance, id); with max_per_query
        > 0 only the closest that many (ties by id), truncated[i] set where more matched.
        The cap holds while hits are collected, so a query's cost in memory is bounded.
    threads: threads one search may use (0: one per hardware thread).
    layout: "speed" (default) or "compact", the memory the tables take (see LAYOUTS).

    Bases of MIN_INDEXED_HASHES or more are searched through the compiled multi-index tables
    when the C++ kernels are loaded, through their Numba twin (speed layout) with
    HASHMATCH_KERNEL=numba; otherwise every search is a scan by the backend (same answers,
    linear time).
    """

    def __init__(self, threads: int = 0, layout: str = "speed"):
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        self.threads = threads
        self.layout = layout
        self._table = LiveTable(functools.partial(_build_engine, layout=layout),
                                np.zeros((0, kernels.HASH_WORDS), np.uint64))

    def __len__(self) -> int:
        return len(self._table.snapshot())

    def __repr__(self) -> str:
        return f"HashIndex({len(self)} hashes, kernel {kernels.backend_name()})"

    def add(self, ids, hashes) -> None:
        ids = _as_ids(ids)
        words = kernels.as_words(hashes, "hashes")
        if len(ids) != len(words):
            raise ValueError(f"ids and hashes must have the same length, got {len(ids)} ids "
                             f"and {len(words)} hashes")
        if len(ids):
            self._table.add(ids, words)

    def remove(self, ids) -> None:
        ids = _as_ids(ids)
        if len(ids):
            self._table.remove(ids)

    def search(self, queries, threshold: int = DEFAULT_THRESHOLD, max_per_query: int = 0) -> Hits:
        q = kernels.as_words(queries, "queries")
        t = kernels.check_threshold(threshold)
        if max_per_query < 0:
            raise ValueError(f"max_per_query must be >= 0, got {max_per_query}")
        snap = self._table.snapshot()
        # Base rows ascend with their ids and so do delta rows (see live.Snapshot), so each
        # part's (distance, row) order is (distance, id).
        o, rows, dist, trunc = snap.engine.search(q, t, self.threads, max_per_query, snap.dead)
        base = Hits(o, snap.base_ids_of(rows), dist, trunc)
        if not len(snap.delta_ids):
            return base
        o, rows, dist, trunc = kernels.range_search(q, snap.delta_records, t, 1, max_per_query)
        merged = Hits.merge([base, Hits(o, snap.delta_ids[rows], dist, trunc)], max_per_query)
        return dataclasses.replace(merged, part=None)

    def items(self):
        """(ids uint64[n] ascending, records[n]): every listed id and its record."""
        return self._table.snapshot().items()

    def compact(self) -> None:
        """Folds pending changes into a freshly built base now (readers are not blocked)."""
        self._table.compact()

    def wait_merged(self) -> None:
        """Waits until a background merge, if one runs, has published its base."""
        self._table.wait_merged()

    def describe(self) -> dict:
        """What serves searches now: engine, slot widths, kernel backend, sizes."""
        s = self._table.snapshot()
        out = {"kernel": kernels.backend_name(), "engine": type(s.engine).__name__.strip("_"),
               "base": len(s.base_ids), "delta": len(s.delta_ids), "tombstones": len(s.dead),
               "memory_bytes": self.memory_bytes()}
        if isinstance(s.engine, _MultiIndexEngine):
            out["slot_widths"] = list(s.engine.tables.slot_widths)
            out["key_bits"] = list(s.engine.tables.key_bits)
            out["offset_bytes"] = list(s.engine.tables.offset_bytes)
            out["escaped_buckets"] = list(s.engine.tables.escaped_buckets)
            out["sorts_by_row"] = s.engine.tables.sorts_by_row
            out["chained"] = s.engine.tables.chained
            out["max_indexed_threshold"] = s.engine.tables.max_indexed_threshold
        return out

    def memory_bytes(self) -> int:
        """Bytes held by the current snapshot: hashes, ids, index tables, tombstones, delta."""
        s = self._table.snapshot()
        return int(s.base_ids.nbytes + s.base_records.nbytes + s.engine.memory_bytes()
                   + s.dead.nbytes + s.delta_ids.nbytes + s.delta_records.nbytes)
