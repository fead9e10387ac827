"""Hamming range search over packed 256-bit hashes: one contract, three backends.

The index (`hashmatch.core.index`) and the benchmarks call `range_search`; which backend runs is
chosen once at import (`HASHMATCH_KERNEL=cpp|numba|numpy` forces one, otherwise the first that
loads in that order) and reported by `backend_name()`. Asking for a backend that cannot load is
an error, never a silent fallback.

Threshold rule (settled here, once): a row matches when distance <= threshold (INCLUSIVE),
0 <= threshold <= 256.
"""
from __future__ import annotations

import functools
import os

import numpy as np

from hashmatch.core.hits import positions_of
from hashmatch.core.signals import PDQ_BYTES as HASH_BYTES

THRESHOLD_IS_INCLUSIVE = True
MAX_THRESHOLD = 256
HASH_WORDS = 4
BACKENDS = ("cpp", "numba", "numpy")
CPU_PATHS = ("avx512", "avx2", "portable")


class KernelUnavailableError(RuntimeError):
    """A backend or CPU path that was asked for by name cannot run here."""


def as_words(hashes, name: str = "hashes") -> np.ndarray:
    """Returns `hashes` as a C-contiguous uint64[n, 4] array (a view when it already is one).

    Accepts uint64[n, 4] or the packed bytes uint8[n, 32] (little-endian words). Raises ValueError
    naming the argument for any other shape or dtype.
    """
    arr = np.asarray(hashes)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-d array of hashes, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        if arr.shape[1] != HASH_BYTES:
            raise ValueError(f"{name} must have {HASH_BYTES} bytes per hash, got {arr.shape[1]}")
        return np.ascontiguousarray(arr).view("<u8")
    if arr.dtype == np.uint64:
        if arr.shape[1] != HASH_WORDS:
            raise ValueError(f"{name} must have {HASH_WORDS} uint64 words per hash, "
                             f"got {arr.shape[1]}")
        return np.ascontiguousarray(arr)
    raise ValueError(f"{name} must be uint64[n, 4] or uint8[n, 32], got dtype {arr.dtype}")


def check_threshold(threshold) -> int:
    """Returns threshold as int; ValueError unless it is an integer in [0, 256]."""
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, (int, np.integer)):
        raise ValueError(f"threshold must be an integer, got {threshold!r}")
    threshold = int(threshold)
    if not 0 <= threshold <= MAX_THRESHOLD:
        raise ValueError(f"threshold must be between 0 and {MAX_THRESHOLD} (inclusive), "
                         f"got {threshold}")
    return threshold


def _limited(offsets, rows, distances, max_per_query=0, dead=None):
    """A row-ordered CSR (the NumPy and Numba scans) as the compiled kernels answer: ordered by
    (distance, row), dead rows left out, at most max_per_query a query (after every hit was
    built: these backends are the slow, portable ones)."""
    query = positions_of(offsets)
    keep = np.ones(len(rows), bool) if dead is None else ~np.isin(rows, dead)
    order = np.lexsort((rows, distances, query))
    order = order[keep[order]]
    query, rows, distances = query[order], rows[order], distances[order]
    counts = np.bincount(query, minlength=len(offsets) - 1)
    truncated = np.zeros(len(offsets) - 1, bool)
    if max_per_query:
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        first = np.arange(len(query)) - starts < max_per_query
        truncated = counts > max_per_query
        query, rows, distances = query[first], rows[first], distances[first]
        counts = np.minimum(counts, max_per_query)
    out = np.zeros(len(offsets), np.int64)
    np.cumsum(counts, out=out[1:])
    return out, rows, distances.astype(np.int32, copy=False), truncated


def _numpy_range_search(queries, hashes, threshold, threads=1):
    offsets = np.zeros(len(queries) + 1, np.int64)
    rows, dists = [], []
    step = max(1, (1 << 22) // max(1, len(hashes)))
    for q0 in range(0, len(queries), step):
        d = np.bitwise_count(queries[q0:q0 + step, None, :] ^ hashes[None, :, :]).sum(
            axis=2, dtype=np.int32)
        qi, r = np.nonzero(d <= threshold)
        rows.append(r.astype(np.int64))
        dists.append(d[qi, r])
        offsets[q0 + 1:q0 + 1 + len(d)] = np.bincount(qi, minlength=len(d))
    np.cumsum(offsets, out=offsets)
    if not rows:
        return offsets, np.zeros(0, np.int64), np.zeros(0, np.int32)
    return offsets, np.concatenate(rows), np.concatenate(dists).astype(np.int32)


@functools.cache
def _load_numba():
    import numba

    @numba.njit(inline="always")
    def _popcount(x):
        x = x - ((x >> numba.uint64(1)) & numba.uint64(0x5555555555555555))
        x = (x & numba.uint64(0x3333333333333333)) + ((x >> numba.uint64(2))
                                                      & numba.uint64(0x3333333333333333))
        x = (x + (x >> numba.uint64(4))) & numba.uint64(0x0F0F0F0F0F0F0F0F)
        return (x * numba.uint64(0x0101010101010101)) >> numba.uint64(56)

    @numba.njit(nogil=True)
    def _count(queries, hashes, threshold, counts):
        for i in range(queries.shape[0]):
            c = 0
            for j in range(hashes.shape[0]):
                d = 0
                for w in range(4):
                    d += _popcount(queries[i, w] ^ hashes[j, w])
                if d <= threshold:
                    c += 1
            counts[i] = c

    @numba.njit(nogil=True)
    def _fill(queries, hashes, threshold, offsets, rows, dists):
        for i in range(queries.shape[0]):
            k = offsets[i]
            for j in range(hashes.shape[0]):
                d = 0
                for w in range(4):
                    d += _popcount(queries[i, w] ^ hashes[j, w])
                if d <= threshold:
                    rows[k] = j
                    dists[k] = d
                    k += 1

    def range_search(queries, hashes, threshold, threads=1):
        counts = np.zeros(len(queries), np.int64)
        _count(queries, hashes, threshold, counts)
        offsets = np.zeros(len(queries) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        rows = np.empty(offsets[-1], np.int64)
        dists = np.empty(offsets[-1], np.int32)
        _fill(queries, hashes, threshold, offsets, rows, dists)
        return offsets, rows, dists

    return range_search


def _load_cpp():
    from hashmatch.core import _kernels

    if not hasattr(_kernels, "range_search"):
        raise ImportError("hashmatch.core._kernels is an old build without range_search")
    return _kernels


class _State:
    name: str = ""
    impl = None
    cpp = None


_state = _State()


def _load(name: str):
    try:
        if name == "cpp":
            cpp = _load_cpp()
            return None, cpp
        if name == "numba":
            return _load_numba(), None
        if name == "numpy":
            return _numpy_range_search, None
    except ImportError as exc:
        raise KernelUnavailableError(f"kernel backend {name!r} cannot load: {exc}") from exc
    raise KernelUnavailableError(f"HASHMATCH_KERNEL must be one of {', '.join(BACKENDS)}, "
                                 f"got {name!r}")


def use_backend(name: str) -> None:
    """Switches every later call to backend `name`; KernelUnavailableError if it cannot load."""
    impl, cpp = _load(name)
    _state.name, _state.impl, _state.cpp = name, impl, cpp


def use_cpu_path(name: str) -> None:
    """Forces the C++ dispatch path (avx512, avx2, portable); ValueError if the CPU lacks it."""
    from hashmatch.core import _kernels

    if name not in CPU_PATHS:
        raise ValueError(f"HASHMATCH_CPU must be one of {', '.join(CPU_PATHS)}, got {name!r}")
    try:
        _kernels.set_cpu_path(name)
    except ValueError as exc:
        raise KernelUnavailableError(str(exc)) from exc


def cpu_path() -> str | None:
    """The C++ dispatch path in use, or None when the C++ module is not loaded."""
    return _state.cpp.cpu_path() if _state.cpp is not None else None


def supported_cpu_paths() -> list[str]:
    from hashmatch.core import _kernels

    return list(_kernels.supported_cpu_paths())


def backend_name() -> str:
    """What runs: "cpp-avx512", "cpp-avx2", "cpp-portable", "numba" or "numpy"."""
    return f"cpp-{_state.cpp.cpu_path()}" if _state.cpp is not None else _state.name


def available_backends() -> list[str]:
    """Backends that load in this process (the order of preference)."""
    out = []
    for name in BACKENDS:
        try:
            _load(name)
        except KernelUnavailableError:
            continue
        out.append(name)
    return out


def range_search(queries, hashes, threshold: int, threads: int = 1, max_per_query: int = 0,
                 dead=None):
    """All rows within `threshold` (inclusive) of each query, as CSR.

    queries: uint64[q, 4] (or uint8[q, 32]); hashes: uint64[n, 4] (or uint8[n, 32]).
    threshold: int in [0, 256]; a row matches when popcount(query ^ hash) <= threshold.
    threads: C++ backend only; <= 0 means one per hardware thread.
    max_per_query: 0 keeps every hit, else the closest that many (distance, then row).
    dead: ascending int64 rows to leave out, or None.
    Returns (offsets int64[q+1], rows int64[m], distances int32[m], truncated bool[q]): the hits
    of query i are rows[offsets[i]:offsets[i+1]] ordered by (distance, row), with their
    distances; truncated[i] when query i had more than max_per_query.
    """
    q = as_words(queries, "queries")
    h = as_words(hashes, "hashes")
    t = check_threshold(threshold)
    if max_per_query < 0:
        raise ValueError(f"max_per_query must be >= 0, got {max_per_query}")
    if _state.cpp is not None:
        return _state.cpp.range_search(q, h, t, threads, max_per_query, dead)
    return _limited(*_state.impl(q, h, t, threads), max_per_query, dead)


def _init_from_env() -> None:
    # Tests only (tests/test_index_faults.py): makes the compiled index drop its hits, to prove
    # that the tests naming the tables fail when the tables are wrong.
    fault = os.environ.get("HASHMATCH_TEST_FAULT", "").strip()
    if fault:
        from hashmatch.core import _kernels

        _kernels.set_test_fault(fault)
    forced = os.environ.get("HASHMATCH_KERNEL", "").strip()
    if forced:
        use_backend(forced)
    else:
        for name in BACKENDS:
            try:
                use_backend(name)
                break
            except KernelUnavailableError:
                continue
    cpu = os.environ.get("HASHMATCH_CPU", "").strip()
    if cpu:
        if _state.cpp is None:
            raise KernelUnavailableError(f"HASHMATCH_CPU={cpu} needs the cpp backend, "
                                         f"but {_state.name!r} is loaded")
        use_cpu_path(cpu)


_init_from_env()
