"""The compiled multi-index hashing tables: exact against brute force on both slot layouts,
every CPU path, thresholds below, at and above what the tables serve, and skewed data."""
import numpy as np
import pytest

from hashmatch.core import HashIndex, _kernels, kernels
from test_kernels_oracle import flip_bits, index_search, random_words, range_search, to_int

N = 5003  # not a multiple of any block size


def near_queries(rng, words, distances):
    rows = rng.integers(0, len(words), size=len(distances))
    return np.stack([flip_bits(rng, words[r], d) for r, d in zip(rows, distances)])


def reference(queries, hashes, threshold):
    """The NumPy scan, ordered as every backend answers (distance, then row)."""
    return kernels._limited(*kernels._numpy_range_search(queries, hashes, threshold))


def as_lists(result):
    offsets, rows, dists = result[:3]
    return [list(zip(rows[a:b].tolist(), dists[a:b].tolist()))
            for a, b in zip(offsets[:-1], offsets[1:])]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(2024)
    words = random_words(rng, N)
    words[::7, 3] |= np.uint64(1 << 63)
    words[100] = words[200]  # a duplicate
    distances = [0, 1, 15, 16, 17, 30, 31, 32, 33, 40, 46, 47, 48, 49, 60, 64]
    queries = np.concatenate([near_queries(rng, words, distances), random_words(rng, 4),
                              words[[100]]])
    return words, queries


@pytest.fixture(scope="module",
                params=[(16, False, 0, True), (16, False, 0, False), (16, True, 0, False),
                        (8, False, 0, False), (8, True, 0, False), (16, False, 4, True),
                        (16, True, 4, True), (8, True, 4, False)],
                ids=["16x16bit-chain", "16x16bit", "16x16bit-row-sorted", "8x32bit",
                     "8x32bit-row-sorted", "16x16bit-chain-4-byte-rows",
                     "16x16bit-chain-row-sorted-4-byte-rows", "8x32bit-row-sorted-4-byte-rows"])
def tables(request, data):
    words, _ = data
    slots, sort_by_row, row_bytes, chain = request.param
    # scan_ratio=0: the tables serve every query they can of this small list (by default 8
    # slots with radius 3 would hand most of them to the scan). sort_by_row: both verification
    # orders, whichever this machine's cache size would pick. row_bytes=4: the layout of lists
    # of 2^24 hashes and more, without building one.
    index = _kernels.MihIndex(words, threads=2, slots=slots, scan_ratio=0,
                              sort_by_row=sort_by_row, row_bytes=row_bytes, chain=chain)
    assert len(index.slot_widths) == slots and sum(index.slot_widths) == 256
    assert index.chained == chain
    assert index.sorts_by_row == sort_by_row
    assert index.row_bytes == (row_bytes or 3)
    return index


@pytest.fixture(params=kernels.supported_cpu_paths())
def cpu_path(request):
    before = kernels.cpu_path() or "avx512"
    kernels.use_cpu_path(request.param)
    yield request.param
    kernels.use_cpu_path(before)


@pytest.mark.parametrize("threshold", [0, 1, 5, 15, 16, 31, 32, 40, 47, 48, 63, 64, 130])
def test_tables_equal_brute_force(tables, data, cpu_path, threshold):
    words, queries = data
    expected = as_lists(reference(queries, words, threshold))
    assert as_lists(tables.search(queries, threshold, 2)) == expected
    assert as_lists(tables.search(queries, threshold, 1)) == expected


def test_tables_equal_python_oracle_at_default_threshold(tables, data):
    words, queries = data
    assert as_lists(tables.search(queries[:8], 31)) == range_search(queries[:8], words, 31)
    assert tables.max_indexed_threshold == 4 * len(tables.slot_widths) - 1


def test_skewed_slots_fall_back_to_scan_and_stay_exact(cpu_path):
    rng = np.random.default_rng(5)
    words = random_words(rng, 6000)
    words[:, 0] = np.uint64(0x1234_5678_9ABC_DEF0)  # 4 slots shared by every hash
    words[:3000, 1] = np.uint64(0)
    index = _kernels.MihIndex(words, threads=1)
    queries = np.concatenate([near_queries(rng, words, [3, 20, 31, 33]), random_words(rng, 3)])
    for threshold in (10, 31, 40):
        expected = as_lists(reference(queries, words, threshold))
        assert as_lists(index.search(queries, threshold, 2)) == expected


def test_bucket_starts_after_a_crowded_bucket_escape_and_stay_exact(cpu_path):
    # 8 x 32-bit slots keyed on 16 bits at this size. Word 0 (slots 0 and 1) is shared by all
    # rows but the first 999, whose slot-0 keys sit after the shared one in its 64-bucket group
    # (so their starts are beyond a byte and escape) yet 4+ bits from it, so queries near them
    # are served by the tables. Slot 2 puts 1000 rows in one bucket.
    rng = np.random.default_rng(9)
    words = random_words(rng, 70_000)
    words[999:, 0] = np.uint64(0x0123_4567_89AB_CDE7)  # keys 0xCDE7, 0x4567: mid-group
    escaping_keys = np.array([0xCDE8, 0xCDF0, 0xCDF8], np.uint64)[np.arange(999) % 3]
    words[:999, 0] = (words[:999, 0] >> np.uint64(16)) << np.uint64(16) | escaping_keys
    words[:1000, 1] = (words[:1000, 1] >> np.uint64(32)) << np.uint64(32) | np.uint64(7)
    index = _kernels.MihIndex(words, threads=2, slots=8, scan_ratio=4)
    assert index.key_bits == [16] * 8 and index.offset_bytes == [1] * 8
    escaped = index.escaped_buckets
    assert min(escaped[:3]) > 0 and escaped[3:] == [0] * 5
    assert index.memory_bytes() < 70_000 * 8 * 3 + 8 * 65_537 * 1.2 + 8 * 8 * sum(escaped)
    queries = np.concatenate([near_queries(rng, words[:999], [0, 3, 17, 25, 31, 31, 32, 40]),
                              near_queries(rng, words, [0, 31]), random_words(rng, 4)])
    for threshold in (0, 20, 31, 40):
        expected = as_lists(reference(queries, words, threshold))
        assert as_lists(index.search(queries, threshold, 2)) == expected


def test_crowded_buckets_take_plain_starts():
    rng = np.random.default_rng(4)
    words = random_words(rng, 65_536 * 40)[:, :1].repeat(4, axis=1)  # 40 rows a 16-bit bucket
    index = _kernels.MihIndex(np.ascontiguousarray(words), threads=2, slots=16)
    assert index.offset_bytes == [4] * 16 and index.escaped_buckets == [0] * 16
    queries = np.concatenate([words[:3], random_words(rng, 3)])
    expected = as_lists(reference(queries, words, 31))
    assert as_lists(index.search(queries, 31, 2)) == expected


def test_batches_of_queries_cross_kmaxbatch_without_mixing_queries():
    """A search of more than 2^20 queries (kMaxBatch, the queries one candidate batch can
    address) on one thread: the hits of queries on both sides of each boundary stay theirs."""
    rng = np.random.default_rng(20)
    words = random_words(rng, 1000)
    tables = _kernels.MihIndex(words, threads=1, scan_ratio=0)
    boundary = 1 << 20
    queries = random_words(rng, boundary + 5)
    planted = {0: 7, boundary - 2: 11, boundary - 1: 13, boundary: 17, boundary + 1: 19,
               boundary + 4: 23}
    for position, row in planted.items():
        queries[position] = words[row]
    offsets, rows, distances, truncated = tables.search(queries, 0, 1)
    hit = np.flatnonzero(np.diff(offsets))
    assert dict(zip(hit.tolist(), rows.tolist())) == planted
    assert not distances.any() and not truncated.any()


def test_row_bytes_knob_is_checked():
    with pytest.raises(ValueError, match="row_bytes must be 0 .automatic., 3 or 4, got 5"):
        _kernels.MihIndex(np.zeros((2, 4), np.uint64), row_bytes=5)


def test_tables_reject_bad_input(tables):
    with pytest.raises(ValueError, match=r"queries must have shape \(n, 4\)"):
        tables.search(np.zeros((2, 2), np.uint64), 31)
    with pytest.raises(ValueError, match="threshold must be between 0 and 256.*got -1"):
        tables.search(np.zeros((2, 4), np.uint64), -1)
    with pytest.raises(ValueError, match="slots must be 0 .automatic., 8 or 16, got 12"):
        _kernels.MihIndex(np.zeros((2, 4), np.uint64), slots=12)


def test_empty_and_single_row_tables():
    for n in (0, 1):
        words = random_words(np.random.default_rng(n), n)
        index = _kernels.MihIndex(words)
        q = np.concatenate([words, np.zeros((1, 4), np.uint64)])
        assert as_lists(index.search(q, 31)) == range_search(q, words, 31)


def test_hash_index_uses_tables_and_matches_oracle(monkeypatch):
    from hashmatch.core import index as index_module

    monkeypatch.setattr(index_module, "MIN_INDEXED_HASHES", 4096)
    rng = np.random.default_rng(7)
    words = random_words(rng, N)
    ids = rng.choice(2**62, size=N, replace=False).astype(np.uint64)
    index = HashIndex()
    index.add(ids, words.view(np.uint8))
    assert index.describe()["delta"] == N  # small adds wait in the delta for a merge
    index.compact()
    info = index.describe()
    assert info["engine"] == "MultiIndexEngine" and info["base"] == N
    # A live change on top of the tables: replace one, remove one, add one.
    index.add(ids[:1], words[1:2])
    index.remove(ids[2:3])
    index.add(np.array([2**64 - 1], np.uint64), words[3:4])
    entries = {int(i): to_int(w) for i, w in zip(ids, words)}
    entries[int(ids[0])] = to_int(words[1])
    del entries[int(ids[2])]
    entries[2**64 - 1] = to_int(words[3])
    queries = np.concatenate([words[:4], near_queries(rng, words, [10, 30, 31, 32, 45])])
    for threshold in (31, 47, 70):
        hits = index.search(queries, threshold)
        offsets, got_ids, dists = hits.offsets, hits.ids, hits.distances
        got = [list(zip(dists[a:b].tolist(), got_ids[a:b].tolist()))
               for a, b in zip(offsets[:-1], offsets[1:])]
        assert got == index_search(queries, entries, threshold)
    assert index.memory_bytes() > N * 40


def test_bucket_group_over_65535_rows_keeps_wide_offsets():
    rng = np.random.default_rng(6)
    words = random_words(rng, 70_000)
    words[:, 0] &= np.uint64(0xFFFF_FFFF_FFFF_0000)  # slot 0 is 0 in every hash
    skewed = _kernels.MihIndex(words, threads=1)
    plain = _kernels.MihIndex(random_words(rng, 70_000), threads=1)
    assert skewed.memory_bytes() > plain.memory_bytes()  # slot 0 kept 4-byte offsets
    queries = np.concatenate([near_queries(rng, words, [0, 5, 31, 32]), random_words(rng, 2)])
    queries[-1, 0] |= np.uint64(0xFFFF)  # far from every hash in slot 0
    for threshold in (0, 31, 40):
        expected = as_lists(reference(queries, words, threshold))
        assert as_lists(skewed.search(queries, threshold, 2)) == expected
