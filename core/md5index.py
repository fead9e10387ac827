"""Exact MD5 matching: the list of file MD5s keyed by uint64 ids, looked up by equality.

Shares the live snapshot machinery of the PDQ index (`hashmatch.core.live`): lookups read one
immutable snapshot without locking while adds and removes publish new ones.
"""
from __future__ import annotations

import numpy as np

from hashmatch.core.index import _as_ids
from hashmatch.core.live import LiveTable

MD5_BYTES = 16


def _as_md5s(md5s, name: str) -> np.ndarray:
    arr = np.asarray(md5s)
    if arr.ndim != 2 or arr.dtype != np.uint8 or arr.shape[1] != MD5_BYTES:
        raise ValueError(f"{name} must be uint8[n, {MD5_BYTES}], got {arr.dtype}{list(arr.shape)}")
    return np.ascontiguousarray(arr)


def _keys(md5s: np.ndarray) -> np.ndarray:
    return md5s[:, :8].copy().view("<u8").ravel()


class _SortedKeys:
    """Base rows ordered by the first 8 bytes of their MD5, for binary search."""

    def __init__(self, ids: np.ndarray, md5s: np.ndarray):
        keys = _keys(md5s)
        self.order = np.argsort(keys, kind="stable")
        self.keys = keys[self.order]

    def memory_bytes(self) -> int:
        return int(self.order.nbytes + self.keys.nbytes)


class Md5Index:
    """add(ids uint64[n], md5s uint8[n, 16]) (dict semantics per id); remove(ids);
    lookup(queries uint8[q, 16]) -> (offsets int64[q+1], ids uint64[m]): the ids listed with
    exactly that MD5, ascending per query; len(index)."""

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

    def lookup(self, queries):
        q = _as_md5s(queries, "queries")
        snap = self._table.snapshot()
        qkeys = _keys(q)
        eng = snap.engine
        lo = np.searchsorted(eng.keys, qkeys, "left")
        hi = np.searchsorted(eng.keys, qkeys, "right")
        counts = hi - lo
        qidx = np.repeat(np.arange(len(q)), counts)
        pos = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) \
            + np.arange(counts.sum()) if len(qidx) else np.zeros(0, np.int64)
        rows = eng.order[pos]
        ok = (snap.base_records[rows] == q[qidx]).all(axis=1) & snap.live_base_rows(rows)
        qidx_parts, id_parts = [qidx[ok]], [snap.base_ids_of(rows[ok])]
        if len(snap.delta_ids):
            eq = (snap.delta_records[None, :, :] == q[:, None, :]).all(axis=2)
            qi, r = np.nonzero(eq)
            qidx_parts.append(qi)
            id_parts.append(snap.delta_ids[r])
        qidx, ids = np.concatenate(qidx_parts), np.concatenate(id_parts)
        order = np.lexsort((ids, qidx))
        offsets = np.zeros(len(q) + 1, np.int64)
        np.cumsum(np.bincount(qidx, minlength=len(q)), out=offsets[1:])
        return offsets, ids[order]

    def items(self):
        """(ids uint64[n] ascending, records[n]): every listed id and its record."""
        return self._table.snapshot().items()

    def compact(self) -> None:
        self._table.compact()

    def wait_merged(self) -> None:
        self._table.wait_merged()
