"""The Numba twin of the compiled tables' speed layout (core/cpp/kernels/mih.cpp, chain filter).

The same 16 x 16-bit slot tables, next-slot bits and first-start rule in one short, readable
function, held to the brute-force oracle by the tests: a second implementation of the algorithm
the server relies on, and the numba backend's sub-linear search (HASHMATCH_KERNEL=numba).
With the 16 slot distances x_k of a query and a hash on a ring and radii r_k summing with the
slots to t + 1, a hash within t has a start k with x_k <= r_k and x_k + x_(k+1) <= r_k +
r_(k+1) + 1 (pigeonring, Qin & Xiao, PVLDB 2018); table k finds it there and reports it only if
no earlier start passes.
"""
from __future__ import annotations

import functools

import numpy as np

SLOTS = 16
MAX_RADIUS = 3  # as the compiled tables: above threshold 63 the caller scans


def radii_for(threshold: int) -> np.ndarray:
    """sum(r_k + 1) = threshold + 1, the spare bits on the first slots (as MihIndex)."""
    base, extra = divmod(threshold + 1, SLOTS)
    return np.array([base - 1 + (k < extra) for k in range(SLOTS)], np.int64)


def slot_values(words: np.ndarray) -> np.ndarray:
    """uint16[n, 16]: slot k of each hash is bits 16k..16k+15 (bit i is bit i % 64 of word i / 64)."""
    return np.ascontiguousarray(words).view(np.uint16).reshape(len(words), SLOTS)


@functools.cache
def _masks() -> tuple[np.ndarray, np.ndarray]:
    """Every 16-bit mask ordered by popcount, and upto[r]: how many have popcount <= r."""
    masks = np.arange(1 << 16, dtype=np.int64)
    weight = np.bitwise_count(masks)
    order = np.argsort(weight, kind="stable")
    return masks[order], np.cumsum(np.bincount(weight, minlength=17))


@functools.cache
def _kernel():
    import numba

    u64 = numba.uint64

    @numba.njit(inline="always")
    def popcount(x):  # x: uint64; returns int64
        x = x - ((x >> u64(1)) & u64(0x5555555555555555))
        x = (x & u64(0x3333333333333333)) + ((x >> u64(2)) & u64(0x3333333333333333))
        x = (x + (x >> u64(4))) & u64(0x0F0F0F0F0F0F0F0F)
        return numba.int64((x * u64(0x0101010101010101)) >> u64(56))

    @numba.njit(inline="always")
    def slot(w, k):  # 16-bit slot k of a hash (uint64[4]), as uint64
        return (w[k >> 2] >> u64(16 * (k & 3))) & u64(0xFFFF)

    @numba.njit(nogil=True)
    def search(queries, words, offsets, rows, nxt, radii, masks, upto, threshold):
        hit_q = np.empty(64, np.int64)
        hit_row = np.empty(64, np.int64)
        hit_d = np.empty(64, np.int32)
        found = 0
        x = np.empty(4, np.uint64)
        for qi in range(queries.shape[0]):
            q = queries[qi]
            for k in range(SLOTS):
                r = radii[k]
                if r < 0:
                    continue
                after = (k + 1) % SLOTS
                v = numba.int64(slot(q, k))
                want = slot(q, after)
                pair_limit = r + radii[after] + 1
                for p in range(upto[r]):
                    b = v ^ masks[p]
                    limit = pair_limit - popcount(u64(masks[p]))
                    for i in range(offsets[k, b], offsets[k, b + 1]):
                        if popcount(u64(nxt[k, i]) ^ want) > limit:
                            continue
                        row = rows[k, i]
                        d = 0
                        for w in range(4):
                            x[w] = q[w] ^ words[row, w]
                            d += popcount(x[w])
                        if d > threshold:
                            continue
                        first = True  # no earlier start j passes (that table reports it)
                        for j in range(k):
                            a = popcount(slot(x, j))
                            after_j = (j + 1) % SLOTS
                            if (a <= radii[j] and a + popcount(slot(x, after_j))
                                    <= radii[j] + radii[after_j] + 1):
                                first = False
                                break
                        if not first:
                            continue
                        if found == len(hit_q):
                            hit_q = np.concatenate((hit_q, np.empty(found, np.int64)))
                            hit_row = np.concatenate((hit_row, np.empty(found, np.int64)))
                            hit_d = np.concatenate((hit_d, np.empty(found, np.int32)))
                        hit_q[found], hit_row[found], hit_d[found] = qi, row, d
                        found += 1
        return hit_q[:found], hit_row[:found], hit_d[:found]

    return search


class ChainTables:
    """The speed layout's tables over words uint64[n, 4] (kept, not copied): per slot k the rows
    sorted by slot k's value, bucket starts, and slot k+1's bits beside each row."""

    def __init__(self, words: np.ndarray):
        self.words = words
        n = len(words)
        values = slot_values(words)
        self.offsets = np.zeros((SLOTS, (1 << 16) + 1), np.int64)
        self.rows = np.empty((SLOTS, n), np.int64)
        self.next = np.empty((SLOTS, n), np.uint16)
        for k in range(SLOTS):
            order = np.argsort(values[:, k], kind="stable")
            np.cumsum(np.bincount(values[:, k], minlength=1 << 16), out=self.offsets[k, 1:])
            self.rows[k] = order
            self.next[k] = values[order, (k + 1) % SLOTS]

    def memory_bytes(self) -> int:
        return int(self.offsets.nbytes + self.rows.nbytes + self.next.nbytes)

    def search(self, queries: np.ndarray, threshold: int):
        """(offsets, rows, distances) of the hits within threshold (<= 63), rows ascending by
        query only: order them with kernels._limited."""
        if threshold > SLOTS * (MAX_RADIUS + 1) - 1:
            raise ValueError(f"the tables serve thresholds up to 63, got {threshold}")
        masks, upto = _masks()
        hit_q, rows, dists = _kernel()(queries, self.words, self.offsets, self.rows, self.next,
                                       radii_for(threshold), masks, upto, threshold)
        offsets = np.zeros(len(queries) + 1, np.int64)
        np.cumsum(np.bincount(hit_q, minlength=len(queries)), out=offsets[1:])
        return offsets, rows, dists
