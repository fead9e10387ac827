"""The chain filter (pigeonring, next slot's bits beside each row) stays exact where it is
tightest: hashes whose 16 slot distances sit on the filter's bound (sum exactly 31 or 32, one
start on the ring passing, the pass wrapping from slot 15 to slot 0), edge hashes (all zero,
all ones, duplicates) and PDQ-like skewed slots, on every CPU path, against brute force."""
import numpy as np
import pytest

from hashmatch.core import _kernels, kernels
from test_index_mih import as_lists, cpu_path, reference  # noqa: F401 (cpu_path: a fixture)
from test_kernels_oracle import random_words, range_search

# Slot distance patterns (slot 0 first) and how many starts k pass at threshold 31 (radius 1 a
# slot, pair bound 3: x_k <= 1 and x_k + x_(k+1) <= 3). A sum-31 pattern with one start is found
# by one table only; "crowded-front" by many, yet reported once; each sum-32 pattern is one bit
# too far and passes no start.
TIGHT = {
    "twos-then-one": ([2] * 15 + [1], 1),            # start 15, its pair wraps to slot 0
    "one-three-ring": ([1, 3] * 7 + [1, 2], 1),      # only start 14 passes
    "one-then-twos": ([1] + [2] * 15, 1),            # start 0: 1 + 2 = 3
    "zero-then-three": ([0, 3] + [2] * 14, 1),       # start 0 with a pair of exactly 3
    "crowded-front": ([1, 1, 1, 1] + [3] * 9 + [0, 0, 0], 6),
    "all-twos": ([2] * 16, 0),
    "one-three-32": ([1, 3] * 8, 0),                 # every pair is 4
    "three-one-32": ([3, 1] * 8, 0),
}


def plant(rng, base, distances):
    """A copy of hash `base` with distances[k] distinct bits flipped inside 16-bit slot k."""
    out = base.copy()
    for k, d in enumerate(distances):
        for bit in rng.choice(16, size=d, replace=False):
            out[k // 4] ^= np.uint64(1) << np.uint64(16 * (k % 4) + int(bit))
    return out


@pytest.fixture(scope="module")
def edge_list():
    rng = np.random.default_rng(31)
    words = random_words(rng, 3000)
    words[10] = 0
    words[11] = np.uint64(2**64 - 1)
    words[20:25] = words[5]  # five duplicates of row 5
    words[2000:2600, 0] = np.uint64(0x00FF_00FF_00FF_00FF)  # 600 rows share 4 slots (skew)
    queries = [np.zeros(4, np.uint64), np.full(4, 2**64 - 1, np.uint64), words[5], words[2100]]
    for pattern, _ in TIGHT.values():
        for row in (5, 10, 11, 2100):
            queries.append(plant(rng, words[row], pattern))
            queries.append(plant(rng, words[row], pattern[::-1]))
    return words, np.stack(queries)


def test_tight_patterns_sit_on_the_bound():
    for name, (pattern, starts) in TIGHT.items():
        assert sum(pattern) == (32 if name.endswith("32") or name == "all-twos" else 31), name
        passing = [k for k in range(16)
                   if pattern[k] <= 1 and pattern[k] + pattern[(k + 1) % 16] <= 3]
        assert len(passing) == starts, (name, passing)
        reverse = pattern[::-1]  # the planted reverse too: same sum, starts move
        assert any(reverse[k] <= 1 and reverse[k] + reverse[(k + 1) % 16] <= 3
                   for k in range(16)) == (starts > 0), name


@pytest.mark.parametrize("threshold", [0, 1, 2, 15, 16, 20, 30, 31, 32, 33, 47, 63, 64])
def test_chain_tables_equal_brute_force_on_edge_data(edge_list, cpu_path, threshold):
    words, queries = edge_list
    index = _kernels.MihIndex(words, threads=2, scan_ratio=0, chain=True)
    assert index.chained and index.slot_widths == [16] * 16
    expected = as_lists(reference(queries, words, threshold))
    assert sum(map(len, expected)) > 0 or threshold < 2
    assert as_lists(index.search(queries, threshold, 1)) == expected
    assert as_lists(index.search(queries, threshold, 2)) == expected


def test_tight_patterns_found_once_at_31_and_not_at_32(edge_list, cpu_path):
    words, queries = edge_list
    index = _kernels.MihIndex(words, threads=1, scan_ratio=0, chain=True)
    got = as_lists(index.search(queries, 31, 1))
    assert got == range_search(queries, words, 31)
    found = {(q, row): d for q, hits in enumerate(got) for row, d in hits}
    for q in range(4, len(queries)):  # the planted queries, 8 per pattern
        pattern = list(TIGHT.values())[(q - 4) // 8][0]
        source = (5, 10, 11, 2100)[((q - 4) % 8) // 2]
        copies = [5, 20, 21, 22, 23, 24] if source == 5 else [source]
        for row in copies:
            assert found.get((q, row)) == (31 if sum(pattern) == 31 else None), (q, row)


def test_chain_on_wide_lists_and_skewed_slots_stays_exact(cpu_path):
    """A list past kWideFrom's rule would pick 8 slots; chain=True keeps 16 at any size (here
    forced small with duplicates and a slot every hash shares)."""
    rng = np.random.default_rng(77)
    words = random_words(rng, 40_000)
    words[:, 1] &= np.uint64(0xFFFF_FFFF_0000_FFFF)  # slot 5 is 0 in every hash
    words[::3, 2] = words[0, 2]  # a third of the list shares slots 8-11
    words[100:200] = words[50]
    index = _kernels.MihIndex(words, threads=2, chain=True)
    queries = np.concatenate([np.stack([plant(rng, words[r], p) for r in (0, 50, 99)
                                        for p, _ in TIGHT.values()]), random_words(rng, 5)])
    for threshold in (7, 31, 32):
        expected = as_lists(reference(queries, words, threshold))
        assert as_lists(index.search(queries, threshold, 2)) == expected


def test_chain_needs_sixteen_slots():
    with pytest.raises(ValueError, match="the chain filter needs 16 slots, got slots 8"):
        _kernels.MihIndex(np.zeros((2, 4), np.uint64), slots=8, chain=True)


@pytest.mark.parametrize("threshold", [0, 15, 20, 31, 32, 47, 63])
def test_numba_twin_equals_brute_force_on_edge_data(edge_list, threshold):
    from hashmatch.core.mih_numba import ChainTables

    words, queries = edge_list
    twin = ChainTables(words)
    expected = as_lists(reference(queries, words, threshold))
    assert as_lists(kernels._limited(*twin.search(queries, threshold))) == expected
    compiled = _kernels.MihIndex(words, threads=1, scan_ratio=0, chain=True)
    assert as_lists(compiled.search(queries, threshold, 1)) == expected


def test_numba_twin_finds_tight_patterns_once():
    from hashmatch.core.mih_numba import ChainTables

    rng = np.random.default_rng(3)
    words = random_words(rng, 500)
    queries = np.stack([plant(rng, words[7], p) for p, _ in TIGHT.values()])
    got = as_lists(kernels._limited(*ChainTables(words).search(queries, 31)))
    assert got == range_search(queries, words, 31)
    assert [(7, 31) in hits for hits in got] == [s > 0 for _, s in TIGHT.values()]


def test_hash_index_on_the_numba_backend_uses_the_twin(monkeypatch):
    from hashmatch.core import HashIndex
    from hashmatch.core import index as index_module
    from test_kernels_oracle import index_search, to_int

    monkeypatch.setattr(index_module, "MIN_INDEXED_HASHES", 0)
    rng = np.random.default_rng(8)
    words = random_words(rng, 800)
    ids = rng.permutation(10**6)[:800].astype(np.uint64)
    entries = {int(i): to_int(w) for i, w in zip(ids, words)}
    queries = np.concatenate([np.stack([plant(rng, words[r], TIGHT["twos-then-one"][0])
                                        for r in range(5)]), words[:3], random_words(rng, 2)])
    before = kernels.backend_name()
    kernels.use_backend("numba")
    try:
        index = HashIndex()
        index.add(ids, words)
        index.compact()
        assert index.describe()["engine"] == "NumbaChainEngine"
        for threshold in (31, 64):
            hits = index.search(queries, threshold)
            got = [sorted(zip(hits.distances[a:b].tolist(), hits.ids[a:b].tolist()))
                   for a, b in zip(hits.offsets[:-1], hits.offsets[1:])]
            assert got == index_search(queries, entries, threshold)
    finally:
        kernels.use_backend("cpp" if before.startswith("cpp") else before)
