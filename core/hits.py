"""The one search result of every index: hits per query as CSR, born ordered.

`HashIndex.search` and `Md5Index.search` both answer with `Hits`, ordered within each query by
(distance, id) where the C++ kernels collected them; parts (base and delta of a live index,
photos and video frames) are merged by `Hits.merge` without sorting again. Callers add meaning
(positions, entries, signal kinds), never another sort.
"""
from __future__ import annotations

import dataclasses
from typing import Protocol, Sequence

import numpy as np

from hashmatch.core import _kernels


class SignalIndex(Protocol):
    """What HashIndex (PDQ) and Md5Index share, as ThreatExchange's SignalTypeIndex: a live
    id -> hash list searched in batches, answering `Hits`."""

    def add(self, ids, hashes) -> None: ...
    def remove(self, ids) -> None: ...
    def search(self, queries, threshold: int, max_per_query: int = 0) -> Hits: ...
    def __len__(self) -> int: ...


def positions_of(offsets: np.ndarray) -> np.ndarray:
    """int64[offsets[-1]]: for CSR offsets int64[q+1], the query (0..q-1) of each entry."""
    return np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))


@dataclasses.dataclass(frozen=True)
class Hits:
    """Query i's hits are ids[offsets[i]:offsets[i+1]] with their distances, ordered by
    (distance, id). truncated[i]: more listed ids matched query i than a cap let through; the
    closest were kept. part (after `merge`): which of the merged parts each hit came from."""

    offsets: np.ndarray     # int64[q + 1]
    ids: np.ndarray         # uint64[m]
    distances: np.ndarray   # int32[m]
    truncated: np.ndarray   # bool[q]
    part: np.ndarray | None = None  # uint8[m]

    def __len__(self) -> int:
        return len(self.ids)

    def positions(self) -> np.ndarray:
        """int64[m]: the query each hit belongs to."""
        return positions_of(self.offsets)

    def select(self, keep: np.ndarray, ids: np.ndarray | None = None) -> Hits:
        """The hits where the bool[m] `keep` is set, order kept; `ids` (uint64[m]) replaces
        the ids first when given (e.g. video frames mapped to their videos)."""
        kept = np.zeros(len(keep) + 1, np.int64)
        np.cumsum(keep, out=kept[1:])
        ids = self.ids if ids is None else ids
        return Hits(kept[self.offsets], ids[keep], self.distances[keep], self.truncated,
                    None if self.part is None else self.part[keep])

    @classmethod
    def merge(cls, parts: Sequence[Hits], max_per_query: int = 0) -> Hits:
        """One result from parts over the same queries, ordered by (distance, id), at most
        max_per_query a query (0: all); `part` gives each hit's index in `parts`."""
        offsets, ids, distances, truncated, part = _kernels.merge(
            [(p.offsets, p.ids, p.distances) for p in parts], max_per_query)
        for p in parts:
            truncated |= p.truncated
        return cls(offsets, ids, distances, truncated, part)
