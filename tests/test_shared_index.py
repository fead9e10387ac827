"""SharedIndex against a plain dict oracle on random data full of duplicates: each distinct hash
stored once under its smallest id, every holder found again by `expand`, dict semantics kept
through adds, re-adds and removals (over the scan and the compiled tables, and over MD5s)."""
import threading

import numpy as np
import pytest

from hashmatch.core import HashIndex, Md5Index
from hashmatch.core import index as index_module
from hashmatch.core.shared import SharedIndex, group_labels
from test_kernels_oracle import flip_bits, random_words, to_int


def oracle_hits(queries, entries: dict, threshold):
    """Per query: {hash: sorted ids} of listed hashes within threshold, with distances."""
    out = []
    for q in (to_int(x) for x in queries):
        found = {}
        for i, h in entries.items():
            d = (q ^ h).bit_count()
            if d <= threshold:
                found.setdefault((d, h), []).append(i)
        out.append({key: sorted(ids) for key, ids in found.items()})
    return out


def check(index: SharedIndex, entries: dict, queries, threshold):
    ids, records = index.items()
    assert ids.tolist() == sorted(entries)
    assert [to_int(r) for r in records] == [entries[i] for i in sorted(entries)]
    assert len(index) == len(entries)
    assert index.stored() == len(set(entries.values()))
    hits = index.search(queries, threshold)
    full = index.expand(hits)
    for q, want in enumerate(oracle_hits(queries, entries, threshold)):
        a, b = hits.offsets[q:q + 2]
        # One hit per stored hash, named by the smallest id holding it, (distance, id) order.
        assert list(zip(hits.distances[a:b].tolist(), hits.ids[a:b].tolist())) == sorted(
            (d, ids[0]) for (d, _), ids in want.items())
        a, b = full.offsets[q:q + 2]
        assert list(zip(full.distances[a:b].tolist(), full.ids[a:b].tolist())) == [
            (d, i) for (d, _), ids in sorted(want.items(), key=lambda kv: (kv[0][0], kv[1][0]))
            for i in ids]
        assert not full.truncated[q]


@pytest.mark.parametrize("tables", [False, True], ids=["scan", "tables"])
def test_random_adds_and_removes_with_duplicates_match_the_oracle(monkeypatch, tables):
    monkeypatch.setattr(index_module, "MIN_INDEXED_HASHES", 0 if tables else 10**9)
    monkeypatch.setattr(index_module, "SCAN_RATIO", 0)
    rng = np.random.default_rng(13)
    pool = random_words(rng, 12)
    pool[1, 1:] = pool[0, 1:]           # same last 24 bytes, different first word
    pool[2, 0] = pool[0, 0]             # same first word, different rest
    index = SharedIndex(HashIndex())
    entries: dict[int, int] = {}
    queries = np.concatenate([np.stack([flip_bits(rng, w, 3) for w in pool[:6]]),
                              random_words(rng, 2)])
    for step in range(40):
        n = int(rng.integers(1, 30))
        ids = rng.integers(0, 2**63, size=n, dtype=np.uint64)
        if entries and step % 3 == 0:   # re-add present ids, some with another hash
            ids[: n // 2] = rng.choice(np.fromiter(entries, np.uint64), n // 2)
        words = pool[rng.integers(0, len(pool), size=n)]
        index.add(ids, words)
        entries.update((int(i), to_int(w)) for i, w in zip(ids, words))
        if step % 2:
            present = np.fromiter(entries, np.uint64)
            gone = rng.choice(present, size=min(len(present), int(rng.integers(1, 12))),
                              replace=False)
            index.remove(np.concatenate([gone, rng.integers(0, 2**63, 3, dtype=np.uint64)]))
            for i in gone.tolist():
                del entries[i]
        if step % 10 == 9:
            index.compact()
        check(index, entries, queries, 8)
    check(index, entries, queries, 256)


def test_removing_holders_one_by_one_keeps_the_hash_until_the_last():
    rng = np.random.default_rng(1)
    word = random_words(rng, 1)
    ids = np.array([900, 15, 7000, 3], np.uint64)
    index = SharedIndex(HashIndex())
    index.add(ids, np.repeat(word, 4, axis=0))
    assert (index.stored(), len(index)) == (1, 4)
    for left in ([15, 900, 7000], [900, 7000], [7000], []):
        index.remove([min(set(index.items()[0].tolist()))])
        hits = index.search(word, 0)
        assert index.expand(hits).ids.tolist() == left
        assert hits.ids.tolist() == left[:1]
    assert (index.stored(), len(index), index.shared()) == (0, 0, False)
    assert not index._records and not len(index._members.member)


def test_expand_caps_ids_per_query_and_flags_the_cut():
    rng = np.random.default_rng(2)
    words = random_words(rng, 3)
    index = SharedIndex(HashIndex())
    index.add(np.arange(10, dtype=np.uint64), words[[0] * 6 + [1] * 3 + [2]])
    queries = np.concatenate([words, random_words(rng, 1)])
    hits = index.search(queries, 0)
    capped = index.expand(hits, 4)
    assert [capped.ids[a:b].tolist() for a, b in zip(capped.offsets[:-1], capped.offsets[1:])] \
        == [[0, 1, 2, 3], [6, 7, 8], [9], []]
    assert capped.truncated.tolist() == [True, False, False, False]


def test_md5s_are_stored_once_too():
    md5 = np.frombuffer(bytes(range(16)), np.uint8).reshape(1, 16)
    other = md5[:, ::-1].copy()
    index = SharedIndex(Md5Index())
    index.add([5, 2, 9], np.concatenate([md5, md5, other]))
    index.add([1], md5)
    assert index.stored() == 2
    hits = index.search(np.concatenate([md5, other]), 0)
    assert hits.ids.tolist() == [1, 9]
    assert index.expand(hits).ids.tolist() == [1, 2, 5, 9]


def test_group_labels_compare_whole_rows():
    rows = np.zeros((4, 32), np.uint8)
    rows[1, 31] = 1                    # same first 8 bytes as row 0, different hash
    rows[3] = rows[1]
    labels = group_labels(rows).tolist()
    assert labels[0] == labels[2] and labels[1] == labels[3] and labels[0] != labels[1]


def test_sharing_names_every_id_with_the_same_record():
    rng = np.random.default_rng(3)
    words = random_words(rng, 2)
    index = SharedIndex(HashIndex())
    index.add([8, 3, 5, 1, 2], words[[0, 0, 0, 1, 1]])
    assert index.sharing([5]).tolist() == [3, 5, 8]
    assert index.sharing([3, 2]).tolist() == [1, 2, 3, 5, 8]
    assert index.sharing([77]).tolist() == [77]


def test_a_search_during_writes_never_misses_a_listed_hash():
    """While one writer keeps handing a hash from holder to holder (smaller ids taking over,
    primaries leaving), a search in another thread always finds it."""
    rng = np.random.default_rng(5)
    word = random_words(rng, 1)
    index = SharedIndex(HashIndex())
    index.add([50], word)
    missed, done = [], threading.Event()

    def search():
        while not done.is_set():
            if not len(index.search(word, 0)):
                missed.append(1)

    reader = threading.Thread(target=search)
    reader.start()
    try:
        for i in range(300):
            index.add([40 - i % 40], word)      # a smaller id takes the hash over
            index.remove([40 - i % 40])         # and leaves: 50 inherits it again
    finally:
        done.set()
        reader.join()
    assert missed == [] and index.items()[0].tolist() == [50]
