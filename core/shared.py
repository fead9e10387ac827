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

from typing import NamedTuple

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


class _Members(NamedTuple):
    """The holders beside the primaries, published as one value so a reader never pairs one
    version's groups with another's members."""
    group: np.ndarray       # uint64: the primary of each member, ascending (then by member)
    member: np.ndarray      # uint64


def _members(group: np.ndarray, member: np.ndarray) -> _Members:
    order = np.lexsort((member, group))
    return _Members(group[order], member[order])


def _renamed(group: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """`group` with each value old[i] replaced by new[i]."""
    order = np.argsort(old)
    old, new = old[order], new[order]
    pos = np.searchsorted(old, group)
    pos[pos == len(old)] = 0
    hit = old[pos] == group
    group = group.copy()
    group[hit] = new[pos[hit]]
    return group


class SharedIndex:
    """inner: an empty HashIndex or Md5Index. add(ids, records), remove(ids), len (ids held),
    items() and search(...) as the inner index's, except that a search answers each stored hash
    once, under its primary id. `stored()`: distinct hashes held.

    One writer at a time (the caller serialises writes); searches may run meanwhile. A writer
    stores a hash's new primary before it removes the old one, so a search running meanwhile
    may see a hash twice for an instant but never misses a listed one."""

    def __init__(self, inner):
        self.inner = inner
        self._members = _Members(_NO_IDS, _NO_IDS)
        self._records: dict[int, np.ndarray] = {}   # primary -> record, for shared hashes

    def __len__(self) -> int:
        return len(self.inner) + len(self._members.member)

    def stored(self) -> int:
        return len(self.inner)

    def shared(self) -> bool:
        """Whether any stored hash is held by more than one id."""
        return bool(len(self._members.member))

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
        fresh = ~has | demoted
        if fresh.any():
            self.inner.add(primary[fresh], head_records[fresh])
        group, member = self._members
        if demoted.any():
            group = _renamed(group, old[demoted], primary[demoted])
            for o in old[demoted].tolist():
                self._records.pop(o, None)
        joined = ids != primary[group_of_row]
        self._members = _members(
            np.concatenate([group, primary[group_of_row[joined]], primary[demoted]]),
            np.concatenate([member, ids[joined], old[demoted]]))
        if demoted.any():
            self.inner.remove(old[demoted])
        sharing = demoted.copy()
        sharing[group_of_row[joined]] = True
        for p, record in zip(primary[sharing].tolist(), head_records[sharing]):
            self._records[p] = record.copy()

    def remove(self, ids) -> None:
        ids = np.unique(_as_ids(ids))
        if not len(ids):
            return
        group, member = self._members
        if len(member):
            gone = np.isin(member, ids)
            group, member = group[~gone], member[~gone]
            # Primaries leaving with members left: the smallest member inherits the hash.
            leaving = np.intersect1d(ids, group)
            if len(leaving):
                first = np.searchsorted(group, leaving)
                heirs = member[first]
                records = np.stack([self._records.pop(p) for p in leaving.tolist()])
                self.inner.add(heirs, records)
                self._records.update(zip(heirs.tolist(), records))
                keep = np.ones(len(member), bool)
                keep[first] = False
                group, member = _renamed(group[keep], leaving, heirs), member[keep]
            self._members = _members(group, member)
        self.inner.remove(ids)
        if len(self._records) > len(group):     # primaries left without members
            shared = set(np.unique(group).tolist())
            for p in [p for p in self._records if p not in shared]:
                del self._records[p]

    # ------------------------------------------------------------ reads

    def search(self, queries, threshold: int, max_per_query: int = 0) -> Hits:
        """The inner search: each stored hash once, under its primary (the smallest id holding
        it), ordered by (distance, primary), at most max_per_query stored hashes a query."""
        return self.inner.search(queries, threshold, max_per_query)

    def holders(self, primaries: np.ndarray, members: _Members | None = None) -> np.ndarray:
        """int64[k]: how many ids hold each stored hash, named by its primary."""
        group = (members or self._members).group
        primaries = np.asarray(primaries, np.uint64)
        return (np.searchsorted(group, primaries, "right")
                - np.searchsorted(group, primaries, "left") + 1)

    def owners(self, primaries: np.ndarray, limit: np.ndarray | None = None,
               members: _Members | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(offsets int64[k+1], ids uint64[n]): the ids holding each stored hash, named by its
        primary: the primary first, then its members ascending (so ascending throughout);
        only the first limit[i] of them for hash i when `limit` is given."""
        members = members or self._members
        primaries = np.asarray(primaries, np.uint64)
        lo = np.searchsorted(members.group, primaries, "left")
        counts = self.holders(primaries, members)
        if limit is not None:
            counts = np.minimum(counts, limit)
        offsets = np.zeros(len(primaries) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        firsts = offsets[:-1][counts > 0]
        ids = np.empty(int(offsets[-1]), np.uint64)
        ids[firsts] = primaries[counts > 0]
        is_member = np.ones(len(ids), bool)
        is_member[firsts] = False
        ids[is_member] = members.member[_ranges(lo, np.maximum(counts - 1, 0))]
        return offsets, ids

    def answer(self, hits: Hits, holds, entry_of=None) -> tuple[Hits, np.ndarray, np.ndarray]:
        """`hits` of `search` as one hit per stored hash naming the entry `one_per_hash`
        chooses, ordered by (distance, entry) within each query: (hits, holders int64[m],
        disputed bool[m]). holds: a core.holds.EntryHolds; entry_of maps ids to entries (video
        frames to their video), ascending with them."""
        ids = hits.ids if entry_of is None else entry_of(hits.ids)
        holders = np.ones(len(hits), np.int64)
        disputed = np.zeros(len(hits), bool)
        members = self._members
        shared = (np.flatnonzero(self.holders(hits.ids, members) > 1) if len(members.member)
                  else [])
        if not len(shared):
            if entry_of is not None:
                hits = hits.select(np.ones(len(hits), bool), ids)
            return hits, holders, disputed
        # Once per shared hash found, not per hit: a batch of hashes near one copied a
        # thousand times costs its thousand holders once.
        stored, hit_of = np.unique(hits.ids[shared], return_inverse=True)
        offsets, owners = self.owners(stored, members=members)
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
        group, member = self._members
        primaries = np.union1d(ids, group[np.isin(member, ids)])
        return np.union1d(primaries, member[np.isin(group, primaries)])

    def expand(self, hits: Hits, max_per_query: int = 0) -> Hits:
        """`hits` of `search` with every id holding each stored hash, ordered by (distance,
        primary, id), at most max_per_query ids a query (truncated set where some were cut);
        the cost is the ids kept, however many hold a hash."""
        return self.expand_named(hits, max_per_query)[0]

    def expand_named(self, hits: Hits, max_per_query: int = 0) -> tuple[Hits, np.ndarray]:
        """(expand(hits, max_per_query), uint64[m]: the primary of each id's stored hash)."""
        members = self._members
        if not len(members.member):
            return hits, hits.ids
        counts = self.holders(hits.ids, members)
        truncated = hits.truncated.copy()
        limit = None
        if max_per_query:
            # ids a query gets before each of its hits
            prefix = np.zeros(len(counts) + 1, np.int64)
            np.cumsum(counts, out=prefix[1:])
            before = prefix[:-1] - np.repeat(prefix[hits.offsets[:-1]], np.diff(hits.offsets))
            limit = np.clip(max_per_query - before, 0, None)
            truncated[np.unique(hits.positions()[counts > limit])] = True
        offsets, ids = self.owners(hits.ids, limit, members)
        counts = np.diff(offsets)
        query = np.repeat(hits.positions(), counts)
        new_offsets = np.zeros(len(hits.offsets), np.int64)
        np.cumsum(np.bincount(query, minlength=len(hits.offsets) - 1), out=new_offsets[1:])
        return (Hits(new_offsets, ids, np.repeat(hits.distances, counts), truncated),
                np.repeat(hits.ids, counts))

    def items(self):
        """(ids uint64[n] ascending, records[n]): every id held and its record."""
        group, member = self._members
        ids, records = self.inner.items()
        if not len(member):
            return ids, records
        rows = np.searchsorted(ids, group)
        all_ids = np.concatenate([ids, member])
        order = np.argsort(all_ids, kind="stable")
        return all_ids[order], np.concatenate([records, records[rows]])[order]

    def memory_bytes(self) -> int:
        """Bytes of the inner index, the member arrays and the kept records."""
        kept = sum(r.nbytes + 100 for r in self._records.values())
        return int(self.inner.memory_bytes() + sum(a.nbytes for a in self._members) + kept)

    def compact(self) -> None:
        self.inner.compact()

    def wait_merged(self) -> None:
        self.inner.wait_merged()
