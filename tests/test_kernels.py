"""Every kernel backend and every CPU dispatch path against the Python-int oracle."""
import os
import subprocess
import sys

import numpy as np
import pytest

from hashmatch.core import kernels
from test_kernels_oracle import flip_bits, random_words, range_search as oracle_search

_COMBOS = [("cpp", p) for p in kernels.supported_cpu_paths()] + [("numba", None), ("numpy", None)]


@pytest.fixture(params=_COMBOS, ids=lambda c: c[0] + (f"-{c[1]}" if c[1] else ""))
def backend(request):
    name, path = request.param
    before_name = kernels.backend_name()
    before_path = kernels.cpu_path()
    kernels.use_backend(name)
    if path:
        kernels.use_cpu_path(path)
    yield request.param
    kernels.use_backend(before_name.split("-")[0])
    if before_path:
        kernels.use_cpu_path(before_path)


def reference(queries, hashes, threshold):
    """The NumPy scan, ordered as every backend answers (distance, then row)."""
    return kernels._limited(*kernels._numpy_range_search(queries, hashes, threshold))


def as_lists(result):
    offsets, rows, dists = result[:3]
    assert offsets.dtype == np.int64 and rows.dtype == np.int64 and dists.dtype == np.int32
    assert offsets[0] == 0 and len(rows) == len(dists) == offsets[-1]
    return [list(zip(rows[a:b].tolist(), dists[a:b].tolist()))
            for a, b in zip(offsets[:-1], offsets[1:])]


def check(queries, hashes, threshold, threads=1):
    got = as_lists(kernels.range_search(queries, hashes, threshold, threads))
    assert got == oracle_search(queries, hashes, threshold)
    return got


@pytest.mark.parametrize("n,q", [(0, 3), (1, 1), (3, 0), (7, 5), (33, 37), (101, 9)])
@pytest.mark.parametrize("threshold", [0, 31, 63, 127, 128, 256])
def test_random_against_oracle(backend, n, q, threshold):
    rng = np.random.default_rng(n * 1000 + q + threshold)
    hashes = random_words(rng, n)
    queries = random_words(rng, q)
    if n and q:
        queries[0] = hashes[n // 2]
    check(queries, hashes, threshold)


@pytest.mark.parametrize("threshold", [0, 1, 31, 63, 100, 255, 256])
def test_exact_distances_around_threshold(backend, threshold):
    rng = np.random.default_rng(threshold)
    query = random_words(rng, 1)[0]
    hashes = np.stack([flip_bits(rng, query, d) for d in (threshold - 1, threshold, threshold + 1)
                       if 0 <= d <= 256] * 3)
    got = check(query[None, :], hashes, threshold)[0]
    assert all(d <= threshold for _, d in got)
    assert any(d == threshold for _, d in got)


def test_duplicates_and_top_bit(backend):
    rng = np.random.default_rng(5)
    base = random_words(rng, 4) | np.uint64(1 << 63)
    hashes = np.concatenate([base, base, base[:1]])
    queries = np.concatenate([base, np.full((1, 4), 2**64 - 1, np.uint64)])
    got = check(queries, hashes, 31)
    assert [r for r, _ in got[0]] == [0, 4, 8]


def test_sizes_across_blocks_and_tiles(backend):
    rng = np.random.default_rng(9)
    n = 8192 + 37 if backend[0] != "numpy" else 1500
    hashes = random_words(rng, n)
    queries = np.stack([flip_bits(rng, hashes[i], i % 40) for i in range(0, 33 * 3, 3)]
                       + [random_words(rng, 1)[0]])
    ref = as_lists(reference(queries, hashes, 31))
    assert as_lists(kernels.range_search(queries, hashes, 31, threads=2)) == ref
    assert ref[0] == [(0, 0)] and ref[-1] == []
    assert [len(h) for h in ref[:11]] == [1] * 11


def test_non_contiguous_and_byte_inputs(backend):
    rng = np.random.default_rng(3)
    big = random_words(rng, 40)
    hashes = big[::3]
    queries = np.asfortranarray(big[1::4])
    queries[0] = hashes[2]
    check(queries, hashes, 120)
    as_bytes = big.view(np.uint8)[::2]
    check(as_bytes[:3], as_bytes, 110)
    wide = np.zeros((10, 8), np.uint64)
    wide[:, ::2] = big[:10]
    check(wide[:, ::2], wide[:, ::2], 128)


@pytest.mark.parametrize("queries,hashes,fragment", [
    (np.zeros((2, 3), np.uint64), np.zeros((2, 4), np.uint64), "queries must have 4 uint64"),
    (np.zeros((2, 4), np.uint64), np.zeros((2, 31), np.uint8), "hashes must have 32 bytes per hash, got 31"),
    (np.zeros(4, np.uint64), np.zeros((2, 4), np.uint64), "queries must be a 2-d array"),
    (np.zeros((2, 4), np.int32), np.zeros((2, 4), np.uint64), "got dtype int32"),
    (np.zeros((2, 4), np.uint64), np.zeros((2, 4), np.float64), "got dtype float64"),
])
def test_bad_shapes_raise_value_error(backend, queries, hashes, fragment):
    with pytest.raises(ValueError, match=fragment):
        kernels.range_search(queries, hashes, 31)


@pytest.mark.parametrize("threshold", [-1, 257, 31.5, True])
def test_bad_threshold(backend, threshold):
    with pytest.raises(ValueError, match="threshold must be"):
        kernels.range_search(np.zeros((1, 4), np.uint64), np.zeros((1, 4), np.uint64), threshold)


def test_compiled_module_checks_shapes_itself():
    from hashmatch.core import _kernels

    with pytest.raises(ValueError, match=r"hashes must have shape \(n, 4\).*got \(2, 3\)"):
        _kernels.range_search(np.zeros((1, 4), np.uint64), np.zeros((2, 3), np.uint64), 3)
    with pytest.raises(ValueError, match="threshold must be between 0 and 256.*got 300"):
        _kernels.range_search(np.zeros((1, 4), np.uint64), np.zeros((2, 4), np.uint64), 300)
    with pytest.raises(ValueError, match="cpu path must be one of.*got 'sse'"):
        _kernels.set_cpu_path("sse")


def test_compiled_module_reports_build_and_path():
    from hashmatch.core import _kernels

    info = _kernels.BUILD_INFO
    assert set(info["compiled_paths"]) == {"avx512", "avx2", "portable"}
    assert _kernels.cpu_path() in _kernels.supported_cpu_paths()
    assert "portable" in _kernels.supported_cpu_paths()


def _run_env(**env):
    code = "from hashmatch.core import kernels; print(kernels.backend_name())"
    full = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True)


@pytest.mark.parametrize("kernel,cpu,expected", [
    ("numpy", "", "numpy"), ("cpp", "portable", "cpp-portable"), ("", "avx2", "cpp-avx2")])
def test_environment_forces_backend(kernel, cpu, expected):
    if cpu and cpu not in kernels.supported_cpu_paths():
        pytest.fail(f"this machine lacks {cpu}; the test needs an x86-64 with it")
    result = _run_env(HASHMATCH_KERNEL=kernel, HASHMATCH_CPU=cpu)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


@pytest.mark.parametrize("env,message", [
    ({"HASHMATCH_KERNEL": "cuda"}, "HASHMATCH_KERNEL must be one of cpp, numba, numpy, got 'cuda'"),
    ({"HASHMATCH_CPU": "neon"}, "HASHMATCH_CPU must be one of avx512, avx2, portable, got 'neon'"),
    ({"HASHMATCH_KERNEL": "numpy", "HASHMATCH_CPU": "avx2"}, "needs the cpp backend"),
])
def test_environment_rejects_what_cannot_run(env, message):
    result = _run_env(**env)
    assert result.returncode != 0
    assert message in result.stderr


def test_unavailable_cpu_path_is_an_error(monkeypatch):
    from hashmatch.core import _kernels

    monkeypatch.setattr(_kernels, "set_cpu_path",
                        lambda name: (_ for _ in ()).throw(ValueError("not supported by this CPU")))
    with pytest.raises(kernels.KernelUnavailableError, match="not supported by this CPU"):
        kernels.use_cpu_path("avx512")


def test_numpy_and_numba_agree_on_larger_random_data():
    rng = np.random.default_rng(11)
    hashes = random_words(rng, 3000)
    queries = np.concatenate([hashes[:20] ^ np.uint64(0xFFFF), random_words(rng, 5)])
    ref = as_lists(reference(queries, hashes, 60))
    kernels.use_backend("numba")
    try:
        assert as_lists(kernels.range_search(queries, hashes, 60)) == ref
    finally:
        kernels.use_backend("cpp")
    assert as_lists(kernels.range_search(queries, hashes, 60, threads=0)) == ref
