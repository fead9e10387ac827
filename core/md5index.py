"""Exact MD5 matching: the list of file MD5s keyed by uint64 ids, looked up by equality.

Shares the live snapshot machinery of the PDQ index (`hashmatch.core.live`): lookups read one
immutable snapshot without locking while adds and removes publish new ones.
"""
from __future__ import annotations

import numpy as np

from hashmatch.core.hits import Hits, positions_of
from hashmatch.core.index import _as_ids
from hashmatch.core.live import LiveTable
from hashmatch.core.signals import MD5_BYTES


def _as_md5s(md5s, name: str) -> np.ndarray:
    arr = np.asarray(md5s)
    if arr.ndim != 2 or arr.dtype != np.uint8 or arr.shape[1] != MD5_BYTES:
        raise ValueError(f"{name} must be uint8[n, {MD5_BYTES}], got {arr.dtype}{list(arr.shape)}")
    return np.ascontiguousarray(arr)


def _keys(md5s: np.ndarray) -> np.ndarray:
    """Each MD5 as one 16-byte item, so equal digests (not only equal prefixes) sort together."""
    return np.ascontiguousarray(md5s).view(np.dtype((np.void, MD5_BYTES))).ravel()


class _SortedKeys:
    """Base rows ordered by MD5 (then by row, so by id), for binary search: the rows holding
    one digest are one run, ascending by id."""

    def __init__(self, ids: np.ndarray, md5s: np.ndarray):
        keys = _keys(md5s)
        self.order = np.argsort(keys, kind="stable")
        self.keys = keys[self.order]

    def memory_bytes(self) -> int:
        return int(self.order.nbytes + self.keys.nbytes)


class Md5Index:
    """add(ids uint64[n], md5s uint8[n, 16]) (dict semantics per id); remove(ids);
    search(queries uint8[q, 16], threshold=0, max_per_query=0) -> Hits: the ids listed with
    exactly that MD5, ascending per query (distances all 0), at most max_per_query of them (0:
    all): HashIndex's protocol (hits.SignalIndex); an MD5 matches exactly, so the threshold must
    be 0; len(index)."""

    def __init__(self):
        self._table = LiveTable(_SortedKeys, np.zeros((0, MD5_BYTES), np.uint8))

    def __len__(self) -> int:
        return len(self._table.snapshot())

    def __repr__(self) -> str:
        return f"Md5Index({len(self)} md5s)"

    def add(self, ids, md5s) -> None:
        ids = _as_ids(ids)
        md5s = _as_md5s(md5s, "md5s")
        if len(ids) != len(md5s):
            raise ValueError(f"ids and md5s must have the same length, got {len(ids)} ids "
                             f"and {len(md5s)} md5s")
        if len(ids):
            self._table.add(ids, md5s)

    def remove(self, ids) -> None:
        ids = _as_ids(ids)
        if len(ids):
            self._table.remove(ids)

    def search(self, queries, threshold: int = 0, max_per_query: int = 0) -> Hits:
        q = _as_md5s(queries, "queries")
        if threshold != 0:
            raise ValueError(f"an MD5 matches exactly: threshold must be 0, got {threshold}")
        if max_per_query < 0:
            raise ValueError(f"max_per_query must be >= 0, got {max_per_query}")
        snap = self._table.snapshot()
        eng = snap.engine
        qkeys = _keys(q)
        lo = np.searchsorted(eng.keys, qkeys, "left")
        counts = np.searchsorted(eng.keys, qkeys, "right") - lo
        # With a cap, only the first cap + (removed rows) of a digest's run can be kept: a run
        # ascends by id and at most len(dead) of it are removed.
        clipped = np.minimum(counts, max_per_query + len(snap.dead)) if max_per_query else counts
        starts = np.zeros(len(q) + 1, np.int64)
        np.cumsum(clipped, out=starts[1:])
        qidx = positions_of(starts)
        pos = (lo - starts[:-1])[qidx] + np.arange(starts[-1])
        rows = eng.order[pos]
        base = Hits(starts, snap.base_ids_of(rows), np.zeros(len(rows), np.int32),
                    clipped < counts).select(snap.live_base_rows(rows))
        parts = [base]
        if len(snap.delta_ids):
            qi, r = np.nonzero((snap.delta_records[None, :, :] == q[:, None, :]).all(axis=2))
            offsets = np.zeros(len(q) + 1, np.int64)
            np.cumsum(np.bincount(qi, minlength=len(q)), out=offsets[1:])
            parts.append(Hits(offsets, snap.delta_ids[r], np.zeros(len(r), np.int32),
                              np.zeros(len(q), bool)))
        merged = Hits.merge(parts, max_per_query)
        return Hits(merged.offsets, merged.ids, merged.distances, merged.truncated)

    def items(self):
        """(ids uint64[n] ascending, records[n]): every listed id and its record."""
        return self._table.snapshot().items()

    def compact(self) -> None:
        self._table.compact()

    def wait_merged(self) -> None:
        self._table.wait_merged()
