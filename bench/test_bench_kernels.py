"""Micro-benchmarks of the kernel backends and the index (pytest-benchmark), each beside the
NumPy brute force as the named baseline, on the same data in the same process.

Run: `.venv/bin/python -m pytest bench/test_bench_kernels.py --benchmark-only`
(not collected by the test suite: it lives in bench/). Group names say what is compared;
`extra_info` records the backend and dispatch path that produced each number.
"""
import numpy as np
import pytest

from hashmatch.core import HashIndex, kernels

N = 100_000
Q = 64
THRESHOLD = 31


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**64, size=(N, 4), dtype=np.uint64)
    queries = rng.integers(0, 2**64, size=(Q, 4), dtype=np.uint64)
    queries[: Q // 2] = hashes[: Q // 2] ^ np.uint64(0xFF)
    return hashes, queries


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
def test_numpy_baseline(benchmark, data):
    benchmark.extra_info["backend"] = _backend("numpy")
    benchmark.pedantic(kernels.range_search, args=(data[1], data[0], THRESHOLD),
                       rounds=3, iterations=1)


@pytest.mark.benchmark(group=f"range_search n={N} q={Q} t={THRESHOLD}")
@pytest.mark.parametrize("path", kernels.supported_cpu_paths())
def test_cpp(benchmark, data, path):
    benchmark.extra_info["backend"] = _backend("cpp", path)
    benchmark(kernels.range_search, data[1], data[0], THRESHOLD)


@pytest.mark.benchmark(group=f"range_search n={N} q={Q} t={THRESHOLD}")
def test_numba(benchmark, data):
    benchmark.extra_info["backend"] = _backend("numba")
    kernels.range_search(data[1][:1], data[0][:10], THRESHOLD)  # compile outside the timing
    benchmark.pedantic(kernels.range_search, args=(data[1], data[0], THRESHOLD),
                       rounds=3, iterations=1)


@pytest.mark.benchmark(group=f"HashIndex.search n={N} q={Q} t={THRESHOLD}")
def test_index_one_thread(benchmark, data):
    index = HashIndex(threads=1)
    index.add(np.arange(N, dtype=np.uint64), data[0])
    index.compact()
    benchmark.extra_info.update(index.describe())
    benchmark(index.search, data[1], THRESHOLD)


@pytest.mark.benchmark(group=f"HashIndex.search n={N} q={Q} t={THRESHOLD}")
def test_index_numpy_baseline(benchmark, data):
    benchmark.extra_info["backend"] = _backend("numpy")
    benchmark.pedantic(kernels.range_search, args=(data[1], data[0], THRESHOLD),
                       rounds=3, iterations=1)


@pytest.mark.benchmark(group=f"MihIndex.search layouts n={N} q={Q} t={THRESHOLD}")
@pytest.mark.parametrize("slots", [16, 8])
@pytest.mark.parametrize("sort_by_row", [False, True])
def test_mih_layouts(benchmark, data, slots, sort_by_row):
    from hashmatch.core import _kernels

    # scan_ratio=1: at this size the 8-slot layout would otherwise hand its queries to the scan.
    tables = _kernels.MihIndex(data[0], threads=1, slots=slots, scan_ratio=1,
                               sort_by_row=sort_by_row)
    benchmark.extra_info.update(backend=kernels.backend_name(), key_bits=tables.key_bits,
                                bytes_a_hash=tables.memory_bytes() / N)
    benchmark(tables.search, data[1], THRESHOLD, 1)


@pytest.mark.benchmark(group=f"MihIndex.search layouts n={N} q={Q} t={THRESHOLD}")
def test_mih_layouts_numpy_baseline(benchmark, data):
    benchmark.extra_info["backend"] = _backend("numpy")
    benchmark.pedantic(kernels.range_search, args=(data[1], data[0], THRESHOLD),
                       rounds=3, iterations=1)
