"""A deliberately dumb reference for Hamming matching: Python ints and bit_count, nothing else."""
import numpy as np


def to_int(hash_row) -> int:
    """One hash (uint64[4] or uint8[32], little-endian) as a Python int."""
    return int.from_bytes(np.ascontiguousarray(hash_row).tobytes(), "little")


def range_search(queries, hashes, threshold):
    """[[ (row, distance), ... ordered by (distance, row) ] per query] by a plain double loop."""
    qs = [to_int(q) for q in queries]
    hs = [to_int(h) for h in hashes]
    out = []
    for q in qs:
        hits = []
        for row, h in enumerate(hs):
            d = (q ^ h).bit_count()
            if d <= threshold:
                hits.append((row, d))
        out.append(sorted(hits, key=lambda hit: (hit[1], hit[0])))
    return out


def index_search(queries, entries: dict, threshold):
    """entries: id -> int hash. Hits per query as [(distance, id)] sorted."""
    out = []
    for q in (to_int(x) for x in queries):
        out.append(sorted(((q ^ h).bit_count(), i) for i, h in entries.items()
                          if (q ^ h).bit_count() <= threshold))
    return out


def random_words(rng, n):
    return rng.integers(0, 2**64, size=(n, 4), dtype=np.uint64, endpoint=False)


def flip_bits(rng, words_row, count):
    """A copy of one hash (uint64[4]) with exactly `count` distinct bits flipped."""
    out = words_row.copy()
    for bit in rng.choice(256, size=count, replace=False):
        out[bit // 64] ^= np.uint64(1) << np.uint64(bit % 64)
    return out
