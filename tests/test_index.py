"""HashIndex against the Python-int oracle: exactness at every threshold, dict semantics, live
changes, a Hypothesis state machine and concurrent searches during writes."""
import threading

import numpy as np
import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from hashmatch.core import DEFAULT_THRESHOLD, HashIndex
from hashmatch.core import index as index_module
from test_kernels_oracle import flip_bits, index_search, random_words, to_int


def as_lists(result):
    offsets, ids, dists = result.offsets, result.ids, result.distances
    assert offsets.dtype == np.int64 and ids.dtype == np.uint64 and dists.dtype == np.int32
    return [sorted(zip(dists[a:b].tolist(), ids[a:b].tolist()))
            for a, b in zip(offsets[:-1], offsets[1:])]


def ordered(result):
    """Per query [(distance, id)] in the order the index returned them."""
    offsets, ids, dists = result.offsets, result.ids, result.distances
    return [list(zip(dists[a:b].tolist(), ids[a:b].tolist()))
            for a, b in zip(offsets[:-1], offsets[1:])]


def use_tables(monkeypatch, tables: bool = True):
    """Tables: the compiled multi-index tables serve even a few hundred hashes (no scan
    fallback). Else every base is scanned."""
    monkeypatch.setattr(index_module, "MIN_INDEXED_HASHES", 0 if tables else 10**9)
    monkeypatch.setattr(index_module, "SCAN_RATIO", 0)


def make_queries(rng, words, count, max_flips=40):
    rows = rng.integers(0, len(words), size=count)
    near = np.stack([flip_bits(rng, words[r], int(rng.integers(0, max_flips + 1))) for r in rows])
    return np.concatenate([near, random_words(rng, count)])


@pytest.mark.parametrize("tables", [False, True], ids=["scan", "tables"])
@pytest.mark.parametrize("threshold", [0, 31, 47, 63, 64, 100, 256])
def test_matches_oracle_at_every_threshold(monkeypatch, threshold, tables):
    # 63 is the most the 16-slot tables serve; 64 and above are scanned.
    use_tables(monkeypatch, tables)
    rng = np.random.default_rng(threshold)
    words = random_words(rng, 300) | np.uint64(1 << 63)
    ids = rng.permutation(10**6)[:300].astype(np.uint64)
    index = HashIndex()
    index.add(ids, words.view(np.uint8))
    index.compact()
    assert index.describe()["engine"] == ("MultiIndexEngine" if tables else "BruteForceEngine")
    queries = make_queries(rng, words, 20, max_flips=threshold + 2 if threshold < 60 else 40)
    entries = {int(i): to_int(w) for i, w in zip(ids, words)}
    got = index.search(queries.view(np.uint8), threshold)
    assert ordered(got) == index_search(queries, entries, threshold)


def test_both_layouts_of_tables_match_oracle(monkeypatch):
    """layout="speed" (chain filter) and "compact" answer the same; compact takes less memory."""
    use_tables(monkeypatch)
    rng = np.random.default_rng(15)
    words = random_words(rng, 2000)
    words[1:4] = words[0]  # duplicates
    words[4], words[5] = 0, np.uint64(2**64 - 1)
    ids = np.arange(2000, dtype=np.uint64) * 3
    entries = {int(i): to_int(w) for i, w in zip(ids, words)}
    queries = np.concatenate([make_queries(rng, words, 30, max_flips=33), words[[0, 4, 5]]])
    sizes = {}
    for layout in ("speed", "compact"):
        index = HashIndex(layout=layout)
        index.add(ids, words)
        index.compact()
        assert index.describe()["chained"] == (layout == "speed")
        for threshold in (16, 31, 32):
            assert ordered(index.search(queries, threshold)) == index_search(queries, entries,
                                                                             threshold)
        sizes[layout] = index.memory_bytes()
    # 16 tables x 2 bytes a row (and 32 rows of padding a table)
    assert sizes["speed"] - sizes["compact"] == 16 * 2 * (2000 + 32)
    with pytest.raises(ValueError, match="layout must be one of speed, compact, got 'fast'"):
        HashIndex(layout="fast")


def test_exact_distances_around_default_threshold():
    rng = np.random.default_rng(1)
    query = random_words(rng, 1)[0]
    t = DEFAULT_THRESHOLD
    words = np.stack([flip_bits(rng, query, d) for d in (t - 1, t, t + 1, 0, 200)])
    index = HashIndex()
    index.add(np.arange(5, dtype=np.uint64) + 2**63, words)
    assert ordered(index.search(query[None])) == [[(0, 2**63 + 3), (t - 1, 2**63), (t, 2**63 + 1)]]


def test_empty_index_and_empty_queries():
    index = HashIndex()
    hits = index.search(np.zeros((3, 32), np.uint8))
    assert hits.offsets.tolist() == [0, 0, 0, 0] and len(hits) == 0 and len(hits.distances) == 0
    assert hits.truncated.tolist() == [False] * 3
    index.add([7], np.zeros((1, 32), np.uint8))
    hits = index.search(np.zeros((0, 32), np.uint8))
    assert hits.offsets.tolist() == [0] and len(hits.ids) == 0
    assert len(index) == 1


def test_dict_semantics_replace_and_last_wins():
    rng = np.random.default_rng(2)
    a, b, c = random_words(rng, 3)
    index = HashIndex()
    index.add([1, 2, 1], np.stack([a, b, c]))
    assert len(index) == 2
    assert ordered(index.search(np.stack([a, c]), 0)) == [[], [(0, 1)]]
    index.add([2], a[None])
    assert ordered(index.search(np.stack([a, b]), 0)) == [[(0, 2)], []]
    index.remove([2, 99])
    assert len(index) == 1
    assert ordered(index.search(a[None], 0)) == [[]]


def test_duplicate_hashes_under_different_ids():
    rng = np.random.default_rng(3)
    h = random_words(rng, 1)
    index = HashIndex()
    index.add([5, 3, 9], np.repeat(h, 3, axis=0))
    assert ordered(index.search(h, 0)) == [[(0, 3), (0, 5), (0, 9)]]


def test_sliced_non_contiguous_inputs():
    rng = np.random.default_rng(4)
    words = random_words(rng, 50)
    ids = np.arange(100, dtype=np.uint64)[::2]
    index = HashIndex()
    index.add(ids, words.view(np.uint8)[:, :][::1])
    got = index.search(words[::7], 10)
    assert ordered(got) == [[(0, int(ids[i]))] for i in range(0, 50, 7)]


@pytest.mark.parametrize("call,fragment", [
    (lambda ix: ix.add([1, 2], np.zeros((1, 32), np.uint8)), "same length, got 2 ids and 1 hashes"),
    (lambda ix: ix.add([1], np.zeros((1, 31), np.uint8)), "32 bytes per hash, got 31"),
    (lambda ix: ix.add([-1], np.zeros((1, 32), np.uint8)), "non-negative"),
    (lambda ix: ix.add([[1]], np.zeros((1, 32), np.uint8)), "ids must be a 1-d array"),
    (lambda ix: ix.add([1.5], np.zeros((1, 32), np.uint8)), "got dtype float64"),
    (lambda ix: ix.search(np.zeros((1, 32), np.uint8), -1), "threshold must be between 0 and 256"),
    (lambda ix: ix.search(np.zeros((1, 32), np.uint8), 257), "got 257"),
    (lambda ix: ix.search(np.zeros(32, np.uint8)), "queries must be a 2-d array"),
])
def test_bad_input_raises_value_error(call, fragment):
    index = HashIndex()
    with pytest.raises(ValueError, match=fragment):
        call(index)


def test_background_merge_keeps_results_exact():
    rng = np.random.default_rng(5)
    index = HashIndex()
    index._table.delta_limit = 16
    entries = {}
    for step in range(12):
        words = random_words(rng, 23)
        ids = rng.integers(0, 200, size=23).astype(np.uint64)
        index.add(ids, words)
        entries.update({int(i): to_int(w) for i, w in zip(ids, words)})
        gone = rng.integers(0, 200, size=5).astype(np.uint64)
        index.remove(gone)
        for g in gone.tolist():
            entries.pop(g, None)
        queries = words[:4]
        assert ordered(index.search(queries, 40)) == index_search(queries, entries, 40)
    index.wait_merged()
    assert index._table.merges > 0
    assert len(index) == len(entries)


def test_ids_below_2_32_are_stored_in_4_bytes_and_returned_as_uint64():
    rng = np.random.default_rng(3)
    words = random_words(rng, 1000)
    ids = rng.choice(2**32, size=1000, replace=False).astype(np.uint64)
    index = HashIndex()
    index.add(ids, words)
    index.compact()
    assert index._table.snapshot().base_ids.dtype == np.uint32
    assert index.memory_bytes() == 1000 * (32 + 4) + index._table.snapshot().engine.memory_bytes()
    # Ids the narrow base cannot hold are simply not there; a stored one is removed.
    index.remove(np.array([2**32 + int(ids[0]), 2**64 - 1, int(ids[1])], np.uint64))
    index.add(np.array([2**63], np.uint64), words[2:3])
    entries = {int(i): to_int(w) for i, w in zip(ids, words)}
    del entries[int(ids[1])]
    entries[2**63] = to_int(words[2])
    queries = np.concatenate([words[:3], make_queries(rng, words, 5)])
    assert ordered(index.search(queries)) == index_search(queries, entries, DEFAULT_THRESHOLD)
    index.compact()  # 2**63 does not fit: the merged base goes back to uint64
    assert index._table.snapshot().base_ids.dtype == np.uint64
    assert ordered(index.search(queries)) == index_search(queries, entries, DEFAULT_THRESHOLD)


_HASH_POOL = random_words(np.random.default_rng(77), 12)


def _machine_id(i: int) -> int:
    """Small ids and a few above 2**32, so bases are stored narrow and wide in turn."""
    return i if i < 26 else 2**40 + i


class IndexMachine(RuleBasedStateMachine):
    """Applies the same adds/removes to HashIndex and to a plain dict, and compares searches."""

    @initialize(delta_limit=st.sampled_from([2, 5, 1000]), tables=st.booleans())
    def start(self, delta_limit, tables):
        # tables: build the compiled multi-index tables even for these few hashes.
        self.saved = index_module.MIN_INDEXED_HASHES, index_module.SCAN_RATIO
        index_module.MIN_INDEXED_HASHES = 0 if tables else 10**9
        index_module.SCAN_RATIO = 0
        self.index = HashIndex()
        self.index._table.delta_limit = delta_limit
        self.model = {}

    @rule(ids=st.lists(st.integers(0, 30), max_size=6), pool=st.lists(st.integers(0, 11), min_size=6, max_size=6),
          flips=st.lists(st.integers(0, 40), min_size=6, max_size=6), seed=st.integers(0, 1000))
    def add(self, ids, pool, flips, seed):
        rng = np.random.default_rng(seed)
        words = np.stack([flip_bits(rng, _HASH_POOL[p], f) for p, f in zip(pool, flips)])[:len(ids)]
        ids = [_machine_id(i) for i in ids]
        self.index.add(np.array(ids, np.uint64), words.reshape(-1, 4))
        for i, w in zip(ids, words):
            self.model[i] = to_int(w)

    @rule(ids=st.lists(st.integers(0, 35), max_size=4))
    def remove(self, ids):
        ids = [_machine_id(i) for i in ids]
        self.index.remove(np.array(ids, np.uint64))
        for i in ids:
            self.model.pop(i, None)

    @rule()
    def compact(self):
        self.index.compact()

    @rule(threshold=st.sampled_from([0, 15, 31, 32, 47, 63, 256]), pool=st.integers(0, 11),
          flips=st.integers(0, 40), seed=st.integers(0, 1000))
    def search(self, threshold, pool, flips, seed):
        query = flip_bits(np.random.default_rng(seed), _HASH_POOL[pool], flips)[None]
        assert ordered(self.index.search(query, threshold)) == index_search(query, self.model, threshold)

    @invariant()
    def same_size(self):
        assert len(self.index) == len(self.model)

    def teardown(self):
        if hasattr(self, "index"):
            self.index.wait_merged()
            index_module.MIN_INDEXED_HASHES, index_module.SCAN_RATIO = self.saved


TestIndexMachine = IndexMachine.TestCase
TestIndexMachine.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)


@pytest.mark.parametrize("tables", [False, True], ids=["scan", "tables"])
def test_concurrent_searches_see_whole_states(monkeypatch, tables):
    use_tables(monkeypatch, tables)
    rng = np.random.default_rng(8)
    pool = random_words(rng, 40)
    queries = np.stack([flip_bits(rng, pool[i], i % 20) for i in range(0, 40, 4)])
    # States the writer moves through: each batch of changes is applied by one add/remove call.
    steps, states, entries = [], [], {}
    for k in range(30):
        ids = rng.integers(0, 60, size=6).astype(np.uint64)
        rows = rng.integers(0, 40, size=6)
        if k % 3 == 2:
            steps.append(("remove", ids, None))
            for i in ids.tolist():
                entries.pop(i, None)
        else:
            steps.append(("add", ids, pool[rows]))
            for i, r in zip(ids.tolist(), rows.tolist()):
                entries[i] = to_int(pool[r])
        states.append(dict(entries))
    expected = [index_search(queries, s, 31) for s in [{}] + states]
    index = HashIndex(threads=1)
    index._table.delta_limit = 8
    done = threading.Event()
    seen, errors = [], []

    def reader():
        try:
            while not done.is_set():
                seen.append(as_lists(index.search(queries, 31)))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for op, ids, words in steps:
        if op == "add":
            index.add(ids, words)
        else:
            index.remove(ids)
    index.wait_merged()
    index.compact()  # the final answer comes from the base (the tables, where they are named)
    final = as_lists(index.search(queries, 31))
    done.set()
    for t in threads:
        t.join()
    assert not errors
    assert final == expected[-1]
    assert len(seen) > 0
    for result in seen:
        assert result in expected


def test_concurrent_writers_lose_nothing():
    rng = np.random.default_rng(12)
    pool = random_words(rng, 64)
    index = HashIndex(threads=1)
    index._table.delta_limit = 4
    models = [{}, {}]
    errors = []

    def writer(w):
        try:
            write(w)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    def write(w):
        local = np.random.default_rng(w)
        base = w * 1000
        for step in range(40):
            if step % 10 == 9:  # a batch larger than the base: rebuilt directly
                count = len(index) + 5
            else:
                count = int(local.integers(1, 6))
            ids = (base + local.integers(0, 200, size=count)).astype(np.uint64)
            rows = local.integers(0, 64, size=count)
            index.add(ids, pool[rows])
            for i, r in zip(ids.tolist(), rows.tolist()):
                models[w][i] = to_int(pool[r])
            gone = (base + local.integers(0, 200, size=3)).astype(np.uint64)
            index.remove(gone)
            for g in gone.tolist():
                models[w].pop(g, None)

    threads = [threading.Thread(target=writer, args=(w,)) for w in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    index.wait_merged()
    assert not errors
    entries = {**models[0], **models[1]}
    assert len(index) == len(entries)
    assert ordered(index.search(pool, 40)) == index_search(pool, entries, 40)


@pytest.mark.parametrize("tables", [False, True], ids=["scan", "tables"])
@pytest.mark.parametrize("cap", [1, 16, 999, 5000])
def test_cap_keeps_the_closest_of_1000_copies(monkeypatch, tables, cap):
    """1,000 copies of one hash among near and unrelated ones, spread over base, delta and
    tombstones: each query keeps exactly the oracle's first `cap` (distance, then id) and is
    flagged when the oracle has more."""
    use_tables(monkeypatch, tables)
    rng = np.random.default_rng(21)
    h = random_words(rng, 1)[0]
    words = np.concatenate([np.repeat(h[None], 1000, axis=0),
                            np.stack([flip_bits(rng, h, 1 + i % 5) for i in range(200)]),
                            random_words(rng, 300)])
    # Base ids below the delta's: the closest (ties by id) come from the tables.
    ids = np.sort(rng.permutation(10**6)[:len(words)]).astype(np.uint64)
    words = words[rng.permutation(len(words))]
    index = HashIndex()
    index.add(ids[:1200], words[:1200])
    index.compact()
    index.add(ids[1200:], words[1200:])  # the delta
    gone = ids[rng.choice(1500, size=100, replace=False)]
    index.remove(gone)
    assert index.describe()["delta"] > 0 and index.describe()["tombstones"] > 0
    entries = {int(i): to_int(w) for i, w in zip(ids, words) if i not in set(gone.tolist())}
    queries = np.stack([h, flip_bits(rng, h, 2), flip_bits(rng, h, 7), random_words(rng, 1)[0]])
    full = index_search(queries, entries, 31)
    got = index.search(queries, 31, max_per_query=cap)
    assert ordered(got) == [hits[:cap] for hits in full]
    assert got.truncated.tolist() == [len(hits) > cap for hits in full]
    assert got.truncated[:3].all() == (cap < 5000) and not got.truncated[3]


def test_cap_zero_keeps_every_hit_and_negative_is_refused():
    rng = np.random.default_rng(22)
    h = random_words(rng, 1)
    index = HashIndex()
    index.add(np.arange(40, dtype=np.uint64), np.repeat(h, 40, axis=0))
    got = index.search(h, 0)
    assert len(got) == 40 and not got.truncated.any()
    with pytest.raises(ValueError, match="max_per_query must be >= 0, got -1"):
        index.search(h, 0, max_per_query=-1)
