"""The in-memory PDQ index: ids and packed 256-bit hashes, searched by Hamming distance.

FIRST VERSION (NumPy brute force) so the server can be built against the final API; the core
helper replaces the internals with the compiled kernels and the sub-linear index.
"""
import numpy as np

HASH_BYTES = 32
DEFAULT_THRESHOLD = 31


def _as_hashes(hashes) -> np.ndarray:
    arr = np.ascontiguousarray(hashes, dtype=np.uint8)
    if arr.ndim != 2 or arr.shape[1] != HASH_BYTES:
        raise ValueError(f"hashes must have shape (n, {HASH_BYTES}), got {arr.shape}")
    return arr


class HashIndex:
    """ids uint64[n] -> hashes uint8[n, 32]; search returns CSR (offsets, ids, distances)."""

    def __init__(self):
        self._ids = np.zeros(0, np.uint64)
        self._hashes = np.zeros((0, HASH_BYTES), np.uint8)

    def __len__(self):
        return len(self._ids)

    def add(self, ids, hashes):
        ids = np.ascontiguousarray(ids, dtype=np.uint64)
        hashes = _as_hashes(hashes)
        if len(ids) != len(hashes):
            raise ValueError(f"got {len(ids)} ids for {len(hashes)} hashes")
        self._ids = np.concatenate([self._ids, ids])
        self._hashes = np.concatenate([self._hashes, hashes])

    def remove(self, ids):
        keep = ~np.isin(self._ids, np.asarray(ids, dtype=np.uint64))
        self._ids, self._hashes = self._ids[keep], self._hashes[keep]

    def search(self, queries, threshold=DEFAULT_THRESHOLD):
        queries = _as_hashes(queries)
        words = self._hashes.view("<u8")
        offsets = [0]
        out_ids, out_dist = [], []
        for q in queries.view("<u8"):
            dist = np.bitwise_count(words ^ q).sum(axis=1)
            hit = np.flatnonzero(dist <= threshold)
            order = np.argsort(dist[hit], kind="stable")
            out_ids.append(self._ids[hit][order])
            out_dist.append(dist[hit][order].astype(np.int32))
            offsets.append(offsets[-1] + len(hit))
        return (np.asarray(offsets, np.int64),
                np.concatenate(out_ids) if out_ids else np.zeros(0, np.uint64),
                np.concatenate(out_dist) if out_dist else np.zeros(0, np.int32))
