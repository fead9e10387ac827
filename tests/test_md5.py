"""Md5Index: exact lookups with dict semantics per id, against a plain dict model."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hashmatch.core import Md5Index


def lists(result):
    offsets, ids = result.offsets, result.ids
    assert not result.distances.any()
    return [ids[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:])]


def test_lookup_add_replace_remove():
    rng = np.random.default_rng(0)
    md5s = rng.integers(0, 256, size=(4, 16), dtype=np.uint8)
    near = md5s[0].copy()
    near[15] ^= 1  # same first 8 bytes, different digest
    index = Md5Index()
    index.add([10, 11, 12], md5s[:3])
    index.add([13], md5s[:1])
    assert len(index) == 4
    assert lists(index.search(np.stack([md5s[0], md5s[3], near]))) == [[10, 13], [], []]
    index.add([10], md5s[3:4])
    index.remove([13, 999])
    assert lists(index.search(np.stack([md5s[0], md5s[3]]))) == [[], [10]]
    assert len(index) == 3


def test_threshold_must_be_zero():
    with pytest.raises(ValueError, match="threshold must be 0, got 3"):
        Md5Index().search(np.zeros((1, 16), np.uint8), 3)


def test_empty():
    index = Md5Index()
    hits = index.search(np.zeros((2, 16), np.uint8))
    assert hits.offsets.tolist() == [0, 0, 0] and hits.ids.dtype == np.uint64


@pytest.mark.parametrize("md5s,fragment", [
    (np.zeros((1, 15), np.uint8), r"md5s must be uint8\[n, 16\], got uint8\[1, 15\]"),
    (np.zeros((1, 16), np.int64), "got int64"),
])
def test_bad_shapes(md5s, fragment):
    with pytest.raises(ValueError, match=fragment):
        Md5Index().add([1], md5s)


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), st.lists(st.integers(0, 20), max_size=5),
                              st.lists(st.integers(0, 5), min_size=5, max_size=5)), max_size=25),
       delta_limit=st.sampled_from([1, 3, 100]))
def test_against_dict_model(ops, delta_limit):
    pool = np.random.default_rng(1).integers(0, 256, size=(6, 16), dtype=np.uint8)
    pool[1, :8] = pool[0, :8]
    index = Md5Index()
    index._table.delta_limit = delta_limit
    model = {}
    for is_add, ids, which in ops:
        if is_add:
            index.add(np.array(ids, np.uint64), pool[which[:len(ids)]])
            for i, w in zip(ids, which):
                model[i] = w
        else:
            index.remove(np.array(ids, np.uint64))
            for i in ids:
                model.pop(i, None)
        assert len(index) == len(model)
    want = [sorted(i for i, w in model.items() if w == k) for k in range(6)]
    assert lists(index.search(pool)) == want
    capped = index.search(pool, 0, max_per_query=2)
    assert lists(capped) == [ids[:2] for ids in want]
    assert capped.truncated.tolist() == [len(ids) > 2 for ids in want]
    index.wait_merged()
