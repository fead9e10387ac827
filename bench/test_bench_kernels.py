"""Micro-benchmarks of the kernel backends and the index (pytest-benchmark), each beside the
NumPy brute force as the named baseline, on the same data in the same process.

Run: `.venv/bin/python -m pytest bench/test_bench_kernels.py --benchmark-only`. The default
suite collects them too (benchmarks disabled: each runs once) and every subject must give the
baseline's answer, so a fast wrong kernel fails here. Group names say what is compared;
`extra_info` records the backend and dispatch path that produced each number.
"""
import numpy as np
import pytest

from hashmatch.core import HashIndex, _kernels, kernels

N = 100_000
Q = 64
THRESHOLD = 31


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**64, size=(N, 4), dtype=np.uint64)
    queries = rng.integers(0, 2**64, size=(Q, 4), dtype=np.uint64)
    queries[: Q // 2] = hashes[: Q // 2]
    queries[: Q // 2, 0] ^= np.uint64(0xFF)  # 8 bits away: half the queries have a hit
    return hashes, queries


@pytest.fixture(scope="module")
def baseline(data):
    """The NumPy scan's answer as [(distance, row)] per query, ordered."""
    return pairs(kernels._limited(*kernels._numpy_range_search(data[1], data[0], THRESHOLD)))


def pairs(result) -> list[list[tuple[int, int]]]:
    offsets, rows, distances = result[:3]
    return [list(zip(distances[a:b].tolist(), rows[a:b].tolist()))
            for a, b in zip(offsets[:-1], offsets[1:])]


def _backend(name, path=None):
    kernels.use_backend(name)
    if path:
        kernels.use_cpu_path(path)
    return kernels.backend_name()


@pytest.fixture(autouse=True)
def restore_backend():
    yield
    kernels.use_backend("cpp")
    kernels.use_cpu_path(kernels.supported_cpu_paths()[0])


@pytest.mark.benchmark(group=f"range_search n={N} q={Q} t={THRESHOLD}")
def test_numpy_baseline(benchmark, data, baseline):
    benchmark.extra_info["backend"] = _backend("numpy")
    got = benchmark.pedantic(kernels.range_search, args=(data[1], data[0], THRESHOLD),
                             rounds=3, iterations=1)
    assert pairs(got) == baseline and len(baseline[0]) == 1


@pytest.mark.benchmark(group=f"range_search n={N} q={Q} t={THRESHOLD}")
@pytest.mark.parametrize("path", kernels.supported_cpu_paths())
def test_cpp(benchmark, data, baseline, path):
    benchmark.extra_info["backend"] = _backend("cpp", path)
    assert pairs(benchmark(kernels.range_search, data[1], data[0], THRESHOLD)) == baseline


@pytest.mark.benchmark(group=f"range_search n={N} q={Q} t={THRESHOLD}")
def test_numba(benchmark, data, baseline):
    benchmark.extra_info["backend"] = _backend("numba")
    kernels.range_search(data[1][:1], data[0][:10], THRESHOLD)  # compile outside the timing
    got = benchmark.pedantic(kernels.range_search, args=(data[1], data[0], THRESHOLD),
                             rounds=3, iterations=1)
    assert pairs(got) == baseline


@pytest.mark.benchmark(group=f"HashIndex.search n={N} q={Q} t={THRESHOLD}")
def test_index_one_thread(benchmark, data, baseline):
    index = HashIndex(threads=1)
    index.add(np.arange(N, dtype=np.uint64), data[0])  # ids equal rows
    index.compact()
    benchmark.extra_info.update(index.describe())
    hits = benchmark(index.search, data[1], THRESHOLD)
    assert pairs((hits.offsets, hits.ids.astype(np.int64), hits.distances)) == baseline


@pytest.mark.benchmark(group=f"MihIndex.search layouts n={N} q={Q} t={THRESHOLD}")
@pytest.mark.parametrize("slots", [16, 8])
@pytest.mark.parametrize("sort_by_row", [False, True])
def test_mih_layouts(benchmark, data, baseline, slots, sort_by_row):
    # scan_ratio=0: the tables serve every query (at this size the 8-slot layout would
    # otherwise hand its queries to the scan).
    tables = _kernels.MihIndex(data[0], threads=1, slots=slots, scan_ratio=0,
                               sort_by_row=sort_by_row)
    benchmark.extra_info.update(backend=kernels.backend_name(), key_bits=tables.key_bits,
                                bytes_a_hash=tables.memory_bytes() / N)
    assert pairs(benchmark(tables.search, data[1], THRESHOLD, 1)) == baseline
