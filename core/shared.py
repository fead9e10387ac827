"""A list where identical hashes are stored once: many ids may hold one stored hash.

Anyone may submit a case, so one hash can arrive a thousand times. Stored a thousand times it
costs a thousand index rows and a near query finds a thousand hits that crowd the real matches
out of a capped answer. `SharedIndex` wraps a `HashIndex` or `Md5Index` (the inner index) that
holds each distinct record once, under its *primary*: the smallest id holding it. The other ids
holding it (*members*) live in two flat arrays sorted by (primary, member), 16 bytes each, plus
one copy of the record per shared hash (to re-store it when its primary leaves). A list without
duplicates pays nothing but two empty arrays.

Searches answer per stored hash (`Hits` whose ids are primaries); `answer` names one entry per
stored hash (the smallest not held, see `one_per_hash`), `owners` and `expand` every id holding
it. Ids follow dict semantics as in the inner index.
"""
from __future__ import annotations

import numpy as np

from hashmatch.core.hits import Hits
from hashmatch.core.index import _as_ids
from hashmatch.core.live import last_wins

_NO_IDS = np.zeros(0, np.uint64)


def _as_bytes(records) -> np.ndarray:
    """records as C-contiguous uint8[n, width] (uint64 words are viewed as their bytes)."""
    arr = np.ascontiguousarray(records)
    if arr.ndim != 2:
        raise ValueError(f"records must be a 2-d array, got shape {arr.shape}")
    return arr.view(np.uint8).reshape(len(arr), -1)


def group_labels(records: np.ndarray) -> np.ndarray:
    """int64[n]: a label per row of uint8[n, width], equal for equal rows only. Sorts the first
    8 bytes (fast); only rows sharing them are compared whole."""
    if not len(records):
        return np.zeros(0, np.int64)
    first = records[:, :8].copy().view("<u8").ravel()
    _, labels, counts = np.unique(first, return_inverse=True, return_counts=True)
    labels = labels.astype(np.int64).ravel()
    ambiguous = np.flatnonzero(counts[labels] > 1)
    if len(ambiguous):
        whole = records[ambiguous].view(np.dtype((np.void, records.shape[1]))).ravel()
        _, exact = np.unique(whole, return_inverse=True)
        labels[ambiguous] = len(counts) + exact.ravel()
    return labels


def _distinct(records: np.ndarray) -> bool:
    """Whether no two rows share their first 8 bytes (so no two rows are equal)."""
    first = np.sort(records[:, :8].copy().view("<u8").ravel())
    return bool((first[1:] != first[:-1]).all())


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """int64[sum(counts)]: starts[i], starts[i] + 1, ... counts[i] values for each i."""
    total = int(counts.sum())
    offsets = np.cumsum(counts) - counts
    return np.repeat(starts - offsets, counts) + np.arange(total, dtype=np.int64)


def one_per_hash(offsets: np.ndarray, owners: np.ndarray, holds):
    """(chosen uint64[k], holders int64[k], disputed bool[k]) for k stored hashes whose holders
    (entry ids, ascending) are owners[offsets[i]:offsets[i+1]]: the entry a match names, the
    smallest not held (all held: the smallest, which the caller's screen then drops); how many
    holders are not held; whether any of those is disputed. A held entry never hides one that
    is not, and copies cannot dodge a dispute: it is a verdict on the picture they share.
    holds: a core.holds.EntryHolds."""
    counts = np.diff(offsets)
    keep, disputed = holds.screen(owners)
    if keep is None:
        return owners[offsets[:-1]], counts, np.zeros(len(counts), bool)
    hash_of = np.repeat(np.arange(len(counts)), counts)
    order = np.lexsort((~keep, hash_of))     # stable: ties stay ascending by entry id
    holders = np.bincount(hash_of, weights=keep, minlength=len(counts)).astype(np.int64)
    flagged = np.bincount(hash_of, weights=keep & disputed, minlength=len(counts)) > 0
    return owners[order[offsets[:-1]]], holders, flagged


def _entry_order(hits: Hits) -> np.ndarray:
    """The order that sorts `hits` by (distance, id) within each query."""
    return np.lexsort((hits.ids, hits.distances, hits.positions()))


def by_distance_and_id(hits: Hits) -> Hits:
    """`hits` ordered by (distance, id) within each query (e.g. after ids were replaced)."""
    order = _entry_order(hits)
    return Hits(hits.offsets, hits.ids[order], hits.distances[order], hits.truncated)


class SharedIndex:
    """inner: an empty HashIndex or Md5Index. add(ids, records), remove(ids), len (ids held),
    items() and search(...) as the inner index's, except that a search answers each stored hash
    once, under its primary id. `stored()`: distinct hashes held."""

    def __init__(self, inner):
        self.inner = inner
        self._group = _NO_IDS      # primary of each member, ascending (then by member)
        self._member = _NO_IDS
        self._records: dict[int, np.ndarray] = {}   # primary -> record, for shared hashes

    def __len__(self) -> int:
        return len(self.inner) + len(self._member)

    def stored(self) -> int:
        return len(self.inner)

    def shared(self) -> bool:
        """Whether any stored hash is held by more than one id."""
        return bool(len(self._member))

    # ------------------------------------------------------------ writes

    def add(self, ids, records) -> None:
        ids = _as_ids(ids)
        records = _as_bytes(records)
        if len(ids) != len(records):
            raise ValueError(f"ids and records must have the same length, got {len(ids)} ids "
                             f"and {len(records)} records")
        if not len(ids):
            return
        ids, records = last_wins(ids, records)
        if len(self):
            self.remove(ids)        # a present id is replaced
        if _distinct(records):      # the common case: no copies within the batch
            starts = np.ones(len(ids), bool)
            head_ids, head_records = ids, records
        else:
            labels = group_labels(records)
            order = np.lexsort((ids, labels))
            ids, labels, records = ids[order], labels[order], records[order]
            starts = np.r_[True, labels[1:] != labels[:-1]]
            head_ids, head_records = ids[starts], records[starts]
        group_of_row = np.cumsum(starts) - 1
        old = np.zeros(len(head_ids), np.uint64)
        has = np.zeros(len(head_ids), bool)
        if len(self.inner):
            found = self.inner.search(head_records, 0, 1)
            has = np.diff(found.offsets) > 0
            old[has] = found.ids
        primary = np.where(has, np.minimum(head_ids, old), head_ids)
        demoted = has & (head_ids < old)        # a smaller id takes over a stored hash
        if demoted.any():
            self.inner.remove(old[demoted])
            self._rekey(old[demoted], primary[demoted])
        fresh = ~has | demoted
        if fresh.any():
            self.inner.add(primary[fresh], head_records[fresh])
        joined = ids != primary[group_of_row]
        self._store(np.concatenate([self._group, primary[group_of_row[joined]],
                                    primary[demoted]]),
                    np.concatenate([self._member, ids[joined], old[demoted]]))
        sharing = demoted.copy()
        sharing[group_of_row[joined]] = True
        for p, record in zip(primary[sharing].tolist(), head_records[sharing]):
            self._records[p] = record.copy()

    def remove(self, ids) -> None:
        ids = np.unique(_as_ids(ids))
        if not len(ids):
            return
        if len(self._member):
            gone = np.isin(self._member, ids)
            if gone.any():
                self._store(self._group[~gone], self._member[~gone], ordered=True)
            leaving = np.intersect1d(ids, np.fromiter(self._records, np.uint64,
                                                      len(self._records)))
            self.inner.remove(ids)
            if len(leaving):
                self._promote(leaving)
            self._forget_unshared()
        else:
            self.inner.remove(ids)

    def _promote(self, leaving: np.ndarray) -> None:
        """Primaries `leaving` (ascending) left the inner index: each group's smallest member
        becomes its primary and its record is stored again under it."""
        records = [self._records.pop(p) for p in leaving.tolist()]
        pos = np.searchsorted(self._group, leaving)
        has = pos < len(self._group)
        has[has] = self._group[pos[has]] == leaving[has]
        if not has.any():
            return
        heirs = self._member[pos[has]]
        keep = np.ones(len(self._member), bool)
        keep[pos[has]] = False
        self._store(self._group[keep], self._member[keep], ordered=True)
        self._rekey(leaving[has], heirs)
        kept = [r for r, h in zip(records, has.tolist()) if h]
        self.inner.add(heirs, np.stack(kept))
        for p, record in zip(heirs.tolist(), kept):
            self._records[p] = record

    def _rekey(self, old: np.ndarray, new: np.ndarray) -> None:
        """Members of primaries `old` now belong to `new` (parallel arrays); records move too."""
        order = np.argsort(old)
        old, new = old[order], new[order]
        pos = np.searchsorted(old, self._group)
        pos[pos == len(old)] = 0
        hit = old[pos] == self._group
        if hit.any():
            group = self._group.copy()
            group[hit] = new[pos[hit]]
            self._store(group, self._member)
        for o, n in zip(old.tolist(), new.tolist()):
            if o in self._records:
                self._records[n] = self._records.pop(o)

    def _store(self, groups: np.ndarray, members: np.ndarray, ordered: bool = False) -> None:
        if not ordered and len(members):
            order = np.lexsort((members, groups))
            groups, members = groups[order], members[order]
        self._group, self._member = groups, members

    def _forget_unshared(self) -> None:
        """Drops the kept record of primaries left without members."""
        if len(self._records) > len(self._group):
            shared = set(np.unique(self._group).tolist())
            for p in [p for p in self._records if p not in shared]:
                del self._records[p]

    # ------------------------------------------------------------ reads

    def search(self, queries, threshold: int, max_per_query: int = 0) -> Hits:
        """The inner search: each stored hash once, under its primary (the smallest id holding
        it), ordered by (distance, primary), at most max_per_query stored hashes a query."""
        return self.inner.search(queries, threshold, max_per_query)

    def holders(self, primaries: np.ndarray) -> np.ndarray:
        """int64[k]: how many ids hold each stored hash, named by its primary."""
        primaries = np.asarray(primaries, np.uint64)
        return (np.searchsorted(self._group, primaries, "right")
                - np.searchsorted(self._group, primaries, "left") + 1)

    def owners(self, primaries: np.ndarray, limit: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(offsets int64[k+1], ids uint64[n]): the ids holding each stored hash, named by its
        primary: the primary first, then its members ascending (so ascending throughout);
        only the first limit[i] of them for hash i when `limit` is given."""
        primaries = np.asarray(primaries, np.uint64)
        lo = np.searchsorted(self._group, primaries, "left")
        counts = self.holders(primaries)
        if limit is not None:
            counts = np.minimum(counts, limit)
        offsets = np.zeros(len(primaries) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        firsts = offsets[:-1][counts > 0]
        ids = np.empty(int(offsets[-1]), np.uint64)
        ids[firsts] = primaries[counts > 0]
        is_member = np.ones(len(ids), bool)
        is_member[firsts] = False
        ids[is_member] = self._member[_ranges(lo, np.maximum(counts - 1, 0))]
        return offsets, ids

    def answer(self, hits: Hits, holds, entry_of=None) -> tuple[Hits, np.ndarray, np.ndarray]:
        """`hits` of `search` as one hit per stored hash naming the entry `one_per_hash`
        chooses, ordered by (distance, entry) within each query: (hits, holders int64[m],
        disputed bool[m]). holds: a core.holds.EntryHolds; entry_of maps ids to entries (video
        frames to their video), ascending with them."""
        ids = hits.ids if entry_of is None else entry_of(hits.ids)
        holders = np.ones(len(hits), np.int64)
        disputed = np.zeros(len(hits), bool)
        shared = np.flatnonzero(self.holders(hits.ids) > 1) if len(self._member) else []
        if not len(shared):
            if entry_of is not None:
                hits = hits.select(np.ones(len(hits), bool), ids)
            return hits, holders, disputed
        # Once per shared hash found, not per hit: a batch of hashes near one copied a
        # thousand times costs its thousand holders once.
        stored, hit_of = np.unique(hits.ids[shared], return_inverse=True)
        offsets, owners = self.owners(stored)
        if entry_of is not None:
            owners = entry_of(owners)
        chosen, holders[shared], disputed[shared] = (
            a[hit_of] for a in one_per_hash(offsets, owners, holds))
        moved = (chosen != ids[shared]).any()
        ids = ids.copy()
        ids[shared] = chosen
        hits = hits.select(np.ones(len(hits), bool), ids)
        if not moved:
            return hits, holders, disputed
        order = _entry_order(hits)
        return (Hits(hits.offsets, hits.ids[order], hits.distances[order], hits.truncated),
                holders[order], disputed[order])

    def sharing(self, ids) -> np.ndarray:
        """uint64, ascending: `ids` and every id holding the same record as one of them."""
        ids = _as_ids(ids)
        member = np.isin(self._member, ids)
        primaries = np.union1d(ids, self._group[member])
        return np.union1d(primaries, self._member[np.isin(self._group, primaries)])

    def expand(self, hits: Hits, max_per_query: int = 0) -> Hits:
        """`hits` of `search` with every id holding each stored hash, ordered by (distance,
        primary, id), at most max_per_query ids a query (truncated set where some were cut);
        the cost is the ids kept, however many hold a hash."""
        if not len(self._member):
            return hits
        counts = self.holders(hits.ids)
        truncated = hits.truncated.copy()
        limit = None
        if max_per_query:
            # ids a query gets before each of its hits
            prefix = np.zeros(len(counts) + 1, np.int64)
            np.cumsum(counts, out=prefix[1:])
            before = prefix[:-1] - np.repeat(prefix[hits.offsets[:-1]], np.diff(hits.offsets))
            limit = np.clip(max_per_query - before, 0, None)
            truncated[np.unique(hits.positions()[counts > limit])] = True
        offsets, ids = self.owners(hits.ids, limit)
        counts = np.diff(offsets)
        query = np.repeat(hits.positions(), counts)
        new_offsets = np.zeros(len(hits.offsets), np.int64)
        np.cumsum(np.bincount(query, minlength=len(hits.offsets) - 1), out=new_offsets[1:])
        return Hits(new_offsets, ids, np.repeat(hits.distances, counts), truncated)

    def items(self):
        """(ids uint64[n] ascending, records[n]): every id held and its record."""
        ids, records = self.inner.items()
        if not len(self._member):
            return ids, records
        rows = np.searchsorted(ids, self._group)
        all_ids = np.concatenate([ids, self._member])
        order = np.argsort(all_ids, kind="stable")
        return all_ids[order], np.concatenate([records, records[rows]])[order]

    def memory_bytes(self) -> int:
        """Bytes of the inner index, the member arrays and the kept records."""
        kept = sum(r.nbytes + 100 for r in self._records.values())
        return int(self.inner.memory_bytes() + self._group.nbytes + self._member.nbytes + kept)

    def compact(self) -> None:
        self.inner.compact()

    def wait_merged(self) -> None:
        self.inner.wait_merged()
