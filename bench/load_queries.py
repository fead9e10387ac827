"""Makes query batches whose answers are known in advance, and checks the server's answers.

A batch is random 256-bit hashes with an exact number of near-duplicates of listed entries mixed
in (a few bits flipped, so the distance is known exactly). Every near-duplicate must come back
matching its source entry at that distance; a random hash matching anything (odds about 1e-40 at
threshold 31) or a missed near-duplicate is an error, never a statistic.
"""
from dataclasses import dataclass, field

import numpy as np

HASH_BYTES = 32
HASH_BITS = 256


@dataclass
class Batch:
    """hashes uint8[n, 32]; expected matches as parallel arrays sorted by position."""
    hashes: np.ndarray
    positions: np.ndarray   # int64[k], ascending
    entry_ids: np.ndarray   # uint64[k]
    distances: np.ndarray   # int64[k]


@dataclass
class Verdict:
    found: int = 0          # matches that were expected and came back right
    missed: int = 0         # expected matches that did not come back
    unexpected: int = 0     # matches that should not exist (wrong entry, distance or position)
    examples: list = field(default_factory=list)


class QueryMaker:
    """Draws batches from the sources (hashes uint8[s, 32] of listed entries and their ids).

    share: exact fraction of each batch that are near-duplicates (rounded per batch);
    max_flips: near-duplicates differ from their source in 0..max_flips bits (<= threshold).
    """

    def __init__(self, source_hashes, source_ids, share: float, max_flips: int):
        self.source_hashes = np.ascontiguousarray(source_hashes, dtype=np.uint8)
        self.source_ids = np.asarray(source_ids, dtype=np.uint64)
        if len(self.source_hashes) != len(self.source_ids) or not len(self.source_ids):
            raise ValueError("need one id per source hash and at least one source")
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share must be in [0, 1], got {share}")
        if not 0 <= max_flips <= HASH_BITS:
            raise ValueError(f"max_flips must be in [0, {HASH_BITS}], got {max_flips}")
        self.share = share
        self.max_flips = max_flips

    def near_count(self, batch_size: int) -> int:
        return int(round(batch_size * self.share))

    def make(self, batch_size: int, rng: np.random.Generator) -> Batch:
        hashes = rng.integers(0, 256, size=(batch_size, HASH_BYTES), dtype=np.uint8)
        k = self.near_count(batch_size)
        positions = np.sort(rng.choice(batch_size, size=k, replace=False)).astype(np.int64)
        sources = rng.integers(0, len(self.source_ids), size=k)
        # Up to max_flips random bit positions a row (a repeat flips once); the distance is
        # what was actually flipped, so it is exact whatever the draw.
        flips = rng.integers(0, self.max_flips + 1, size=k)
        cols = rng.integers(0, HASH_BITS, size=(k, self.max_flips))
        use = np.arange(self.max_flips) < flips[:, None]
        bits = np.zeros((k, HASH_BITS), bool)
        bits[np.nonzero(use)[0], cols[use]] = True
        hashes[positions] = self.source_hashes[sources] ^ np.packbits(bits, axis=1)
        return Batch(hashes, positions, self.source_ids[sources],
                     bits.sum(axis=1, dtype=np.int64))


def check_answer(batch: Batch, matches) -> Verdict:
    """Compares the answer's matches (objects with position, entry_id, distance) to the batch."""
    got = np.array([(m.position, m.entry_id, m.distance) for m in matches],
                   dtype=np.uint64).reshape(-1, 3)
    want = np.stack([batch.positions.astype(np.uint64), batch.entry_ids,
                     batch.distances.astype(np.uint64)], axis=1)
    if got.shape == want.shape:
        got = got[np.lexsort(got.T[::-1])]
        if np.array_equal(got, want):
            return Verdict(found=len(want))
    got_set = set(map(tuple, got.tolist()))
    want_set = set(map(tuple, want.tolist()))
    verdict = Verdict(found=len(got_set & want_set), missed=len(want_set - got_set),
                      unexpected=len(got) - len(got_set & want_set))
    verdict.examples = ([("missed", *t) for t in sorted(want_set - got_set)[:3]]
                        + [("unexpected", *t) for t in sorted(got_set - want_set)[:3]])
    return verdict
