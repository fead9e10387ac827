"""The list in memory: the core indexes the servicers match against, kept in step with the store.

Three indexes (photo PDQ, video-frame PDQ, MD5) plus a per-video frame count for the vPDQ rule.
Each stores a hash once however many entries hold it (core.shared), so copies of one hash cost
one row and one capped match slot: a photo or MD5 match names one holder of the hash, the
smallest entry id not held, with how many hold it (docs/SECURITY.md). The follower
(follower.py) applies the change log here in order, under its lock; readers never take it:
each core index is safe to search while it changes. Results come back as `Matches`, built from
the core's `Hits` (ordered by position, distance, entry id), capped per query hash as the
`Query` says. Held entries are dropped inside the capped search (core.capped), so they never
take a capped place from an entry that is not held.
"""
import dataclasses
import os

import numpy as np

from hashmatch.core import HashIndex, Md5Index, backend_name
from hashmatch.core import video as vpdq
from hashmatch.core.capped import Pass, closest_kept, last_keys
from hashmatch.core.hits import Hits
from hashmatch.core.signals import SIGNAL_MD5, SIGNAL_PDQ, SIGNAL_VPDQ
from hashmatch.core.holds import EntryHolds
from hashmatch.core.replica import list_digest
from hashmatch.core.shared import SharedIndex, by_distance_and_id
from hashmatch.server.cores import CoreShare
from hashmatch.server.errors import NotReady
from hashmatch.server.media import ListRows, entry_of_frame, frame_ids


def kernel_backend() -> str:
    return backend_name()


@dataclasses.dataclass(frozen=True)
class Matches:
    """Hits of one batch: parallel arrays, ordered by position, then distance, then entry id.
    truncated[i]: query i had more matches than its cap; the closest were kept."""
    positions: np.ndarray        # int64
    entry_ids: np.ndarray        # uint64
    distances: np.ndarray        # int32
    signal_types: np.ndarray     # int8: SIGNAL_*
    truncated: np.ndarray        # bool[queries]: more matches not held than returned
    query_percent: np.ndarray | None = None     # float64, video queries only
    compared_percent: np.ndarray | None = None
    disputed: np.ndarray | None = None          # bool: hits on disputed entries (holds.py)
    holders: np.ndarray | None = None   # int64: entries not held holding the matched hash

    def __len__(self):
        return len(self.entry_ids)


# Columns of the int64[m, 2] facts each hit carries about its hash, up to Matches (see
# core.shared.one_per_hash): entries not held that hold it, and whether any is disputed.
HOLDERS, DISPUTED = 0, 1


def _facts(m: int) -> np.ndarray:
    """The facts of m hits on hashes one entry each holds, none disputed."""
    return np.repeat(np.array([[1, 0]], np.int64), m, axis=0)


def _matches(hits: Hits, signals: np.ndarray, facts: np.ndarray) -> Matches:
    """signals: the SIGNAL_* of each hit, or of each merged part (indexed by hits.part)."""
    signal_types = signals[hits.part] if hits.part is not None else np.full(len(hits), signals[0])
    disputed = facts[:, DISPUTED].astype(bool)
    return Matches(hits.positions(), hits.ids, hits.distances, signal_types.astype(np.int8),
                   hits.truncated, disputed=disputed if disputed.any() else None,
                   holders=facts[:, HOLDERS])


def per_hash_cap(max_per_hash: int, max_per_batch: int, hashes: int) -> int:
    """Matches each of `hashes` query hashes may get: max_per_hash, lowered so the batch holds
    at most max_per_batch (each hash keeps at least 1); 0 in either means no cap from it."""
    caps = [c for c in (max_per_hash, max_per_batch and max(1, max_per_batch // max(hashes, 1)))
            if c]
    return min(caps) if caps else 0


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class ListState:
    def __init__(self, search_threads: int = 0, hold_disputed: bool = False,
                 cores: int | None = None, layout: str = "speed"):
        """search_threads: threads one search may use; 0 = one, with a batch cut into slices
        over the cores idle when it starts (cores.py; `cores`, default: those this process
        may use). See ServerConfig.
        hold_disputed: disputed entries stop matching (else they match with disputed set).
        layout: the PDQ indexes' tables (core.index.LAYOUTS)."""
        self._search_threads, self._layout = search_threads, layout
        self._cores = CoreShare((cores or usable_cores()) if search_threads == 0 else 1)
        # Held and disputed entries; the follower applies the log's state ops to it.
        self.holds = EntryHolds(hold_disputed)
        self._empty()
        self.sequence = 0
        self.loaded = False

    def _empty(self) -> None:
        self._images = SharedIndex(HashIndex(self._search_threads or 1, self._layout))
        self._frames = SharedIndex(HashIndex(self._search_threads or 1, self._layout))
        self._md5 = SharedIndex(Md5Index())
        self._frame_counts: dict[int, int] = {}

    # ------------------------------------------------------------ writes (follower.py only)

    def apply(self, added: ListRows, removed_entries: np.ndarray) -> None:
        """Applies a stretch of the change log up to `added.sequence`: the rows its ADDs still
        have, and the entry ids its REMOVEs name. Both are idempotent (adding a present id
        replaces it, removing an absent one does nothing), so replaying the log is safe."""
        if len(removed_entries):
            entries = np.asarray(removed_entries, np.uint64)
            self._images.remove(entries)
            self._md5.remove(entries)
            videos = [e for e in entries.tolist() if e in self._frame_counts]
            if videos:
                counts = [self._frame_counts[e] for e in videos]
                self._frames.remove(frame_ids(videos, counts))
                for e in videos:
                    del self._frame_counts[e]
        if len(added.image_ids):
            self._images.add(added.image_ids, added.image_hashes)
        if len(added.frame_ids):
            self._frame_counts.update(zip(added.video_entries.tolist(),
                                          added.video_frame_counts.tolist()))
            self._frames.add(added.frame_ids, added.frame_hashes)
        if len(added.md5_ids):
            self._md5.add(added.md5_ids, added.md5s)
        self.sequence = max(self.sequence, added.sequence)

    def load(self, rows: ListRows) -> None:
        """Replaces the whole list with a snapshot (start-up, or a reload after a gap), built
        aside and swapped in, so searches never see it half loaded."""
        # Only its indexes are kept: cores=1 spares it a slice pool of its own.
        fresh = ListState(self._search_threads, cores=1, layout=self._layout)
        fresh.apply(rows, np.zeros(0, np.uint64))
        self._images, self._frames, self._md5, self._frame_counts = (
            fresh._images, fresh._frames, fresh._md5, fresh._frame_counts)
        self.sequence = rows.sequence
        self.holds.load(rows.held_entries, rows.disputed_entries)
        self.loaded = True

    def digest(self) -> tuple[int, str]:
        """(rows, SHA-256 hex) of the list in the canonical form of core.replica (sorted by id,
        per index), so two servers that applied the same log, and any copy, give the same pair."""
        return list_digest(self._images.items(), self._frames.items(), self._md5.items())

    # ------------------------------------------------------------ reads

    def counts(self) -> dict[str, int]:
        return {"pdq": len(self._images), "md5": len(self._md5),
                "vpdq": len(self._frame_counts), "video_frames": len(self._frames)}

    def stored_counts(self) -> dict[str, int]:
        """Distinct hashes each index stores (counts() counts the entries holding them)."""
        return {"pdq": self._images.stored(), "md5": self._md5.stored(),
                "video_frames": self._frames.stored()}

    def same_hash_entries(self, entry: int) -> list[int]:
        """`entry` and every entry holding its photo PDQ or MD5 hash: what a verdict on the
        picture (a flood hold) applies to. Videos answer for themselves (vPDQ)."""
        found = np.union1d(self._images.sharing([entry]), self._md5.sharing([entry]))
        return found.tolist()

    def index_memory_bytes(self) -> int:
        """Bytes the in-memory PDQ indexes (photos and video frames) hold."""
        return self._images.memory_bytes() + self._frames.memory_bytes()

    def _require_loaded(self):
        if not self.loaded:
            raise NotReady("the list is still loading; try again shortly")

    def match_pdq(self, hashes: np.ndarray, threshold: int, include_video_frames: bool,
                  max_per_hash: int = 0, every_entry: bool = False) -> Matches:
        """Photo (and video frame) hits on entries not held, at most max_per_hash distinct
        listed hashes a query hash, one match each (core.shared.one_per_hash); every_entry: a
        match for every entry holding a hash found, held or not (no cap on them), as a
        suppression needs to hold them all.
        The batch is cut into query slices over the idle cores (cores.py), each slice searching
        the list as it is when the slice starts; the slices' hits are joined in query order."""
        self._require_loaded()
        signals = np.array([SIGNAL_PDQ, SIGNAL_VPDQ] if include_video_frames else [SIGNAL_PDQ])

        def search(rows: tuple[int, int]) -> tuple[Hits, np.ndarray]:
            part = hashes[rows[0]:rows[1]]
            parts = [self._closest(self._images, part, threshold, max_per_hash, every_entry)]
            if include_video_frames:
                parts.append(_closest_per_entry(*self._closest(
                    self._frames, part, threshold, max_per_hash, every_entry, entry_of_frame)))
            if len(parts) == 1:
                return parts[0]
            hits = Hits.merge([p[0] for p in parts], max_per_hash)
            return hits, np.concatenate([p[1] for p in parts])[_sources(hits,
                                                                        [p[0] for p in parts])]

        with self._cores.take(len(hashes)) as slices:
            cuts = np.linspace(0, len(hashes), slices + 1).astype(np.int64).tolist()
            found = self._cores.map(search, list(zip(cuts[:-1], cuts[1:])))
        return _matches(_joined([hits for hits, _ in found]), signals,
                        np.concatenate([facts for _, facts in found]))

    def match_md5(self, md5s: np.ndarray, max_per_hash: int = 0) -> Matches:
        self._require_loaded()
        hits, facts = self._closest(self._md5, md5s, 0, max_per_hash)
        return _matches(hits, np.array([SIGNAL_MD5]), facts)

    def _closest(self, index: SharedIndex, queries: np.ndarray, threshold: int, cap: int,
                 every_entry: bool = False, entry_of=None) -> tuple[Hits, np.ndarray]:
        """(hits, facts) as _holders_of gives them: the closest `cap` stored hashes a query
        (0: all) with a holder not held, each naming one (core.capped: held entries take no
        capped place, and truncated says whether more such hashes are in reach)."""
        if every_entry:
            return self._holders_of(index, index.search(queries, threshold, cap), True, entry_of)

        def search(rows: np.ndarray, limit: int) -> Pass:
            found = index.search(queries[rows], threshold, limit)
            ids = found.ids if entry_of is None else entry_of(found.ids)
            hits, facts = self._holders_of(index, found, entry_of=entry_of)
            keep, disputed = self.holds.screen(hits.ids)
            if keep is not None:
                facts[:, DISPUTED] |= disputed
                hits, facts = hits.select(keep), facts[keep]
            return Pass(hits, facts, (hits.distances, hits.ids), found.truncated,
                        last_keys(found.offsets, found.distances, ids))

        return closest_kept(search, len(queries), cap)

    def _holders_of(self, index: SharedIndex, hits: Hits, every_entry: bool = False,
                    entry_of=None) -> tuple[Hits, np.ndarray]:
        """(hits, facts int64[m, 2]): `index`'s hits on stored hashes as entry hits, ordered
        by (distance, entry id) within each query (SharedIndex.answer); entry_of maps index
        ids to entries."""
        if every_entry:
            hits = index.expand(hits)
            if entry_of is not None:
                hits = hits.select(np.ones(len(hits), bool), entry_of(hits.ids))
            return by_distance_and_id(hits), _facts(len(hits))
        hits, holders, disputed = index.answer(hits, self.holds, entry_of)
        return hits, np.stack([holders, disputed.astype(np.int64)], axis=1)

    def match_video(self, frames: np.ndarray, qualities, threshold: int, min_query: float,
                    min_compared: float, max_videos: int = 0, max_per_frame: int = 0) -> Matches:
        """One query video; at most max_videos listed videos not held (closest first) in the
        answer, each query frame counting at most its max_per_frame closest listed frames of
        videos not held."""
        self._require_loaded()
        found = vpdq.match_video(_EveryHolder(self._frames, self.holds), frames,
                                 self._listed_frame_counts,
                                 qualities=qualities, threshold=threshold,
                                 min_query=min_query, min_compared=min_compared,
                                 max_per_frame=max_per_frame)
        n = min(len(found), max_videos) if max_videos else len(found)
        return screen(Matches(np.zeros(n, np.int64), found.entry_ids[:n], found.distances[:n],
                              np.full(n, SIGNAL_VPDQ, np.int8), np.array([n < len(found)]),
                              found.query_percent[:n], found.compared_percent[:n],
                              holders=np.ones(n, np.int64)), self.holds)

    def _listed_frame_counts(self, entries: np.ndarray) -> np.ndarray:
        # A video withdrawn between the search and this call counts as having no frames left.
        get = self._frame_counts.get
        return np.fromiter((get(e, 0) for e in entries.tolist()), np.int64, len(entries))


def _joined(parts: list[Hits]) -> Hits:
    """The hits of consecutive query slices as one result over all their queries."""
    if len(parts) == 1:
        return parts[0]
    ends = np.cumsum([len(p) for p in parts[:-1]])
    offsets = [parts[0].offsets] + [p.offsets[1:] + end for p, end in zip(parts[1:], ends)]
    return Hits(np.concatenate(offsets), np.concatenate([p.ids for p in parts]),
                np.concatenate([p.distances for p in parts]),
                np.concatenate([p.truncated for p in parts]),
                None if parts[0].part is None else np.concatenate([p.part for p in parts]))


class _EveryHolder:
    """A SharedIndex of video frames searched as one row per holder not held: vPDQ judges each
    listed video on its own frames, so a frame hash two videos hold counts for both (the
    closest max_per_query holders a query, ordered by distance, stored hash, frame id; frames
    of held videos take no place, core.capped)."""

    def __init__(self, index: SharedIndex, holds: EntryHolds):
        self._index, self._holds = index, holds

    def search(self, queries, threshold: int, max_per_query: int = 0) -> Hits:
        def search(rows: np.ndarray, limit: int) -> Pass:
            hits, primaries = self._index.expand_named(
                self._index.search(queries[rows], threshold, limit), limit)
            keys = (hits.distances, primaries, hits.ids)
            bound = last_keys(hits.offsets, *keys)
            keep, _ = self._holds.screen(entry_of_frame(hits.ids))
            if keep is not None:
                hits, keys = hits.select(keep), tuple(k[keep] for k in keys)
            return Pass(hits, np.zeros((len(hits), 0)), keys, hits.truncated, bound)

        return closest_kept(search, len(queries), max_per_query)[0]


def _sources(merged: Hits, parts: list[Hits]) -> np.ndarray:
    """int64[m]: for each hit of Hits.merge(parts), its index in the concatenation of the
    parts' hits (merge keeps each part's order, and a capped part keeps a prefix per query)."""
    positions = merged.positions()
    source = np.empty(len(merged), np.int64)
    start = 0
    for k, part in enumerate(parts):
        mine = np.flatnonzero(merged.part == k)
        query = positions[mine]
        rank = np.arange(len(mine)) - np.searchsorted(query, query, "left")
        source[mine] = start + part.offsets[query] + rank
        start += len(part)
    return source


def _closest_per_entry(hits: Hits, facts: np.ndarray) -> tuple[Hits, np.ndarray]:
    """Frame hits (ids: video entries, ordered by distance then entry) one per (query, entry):
    the first, which is the closest."""
    if len(hits) == 0:
        return hits, facts
    pairs = np.stack([hits.positions().astype(np.uint64), hits.ids], axis=1)
    _, first = np.unique(pairs, axis=0, return_index=True)
    keep = np.zeros(len(hits), bool)
    keep[first] = True
    return hits.select(keep), facts[keep]


def run_query(state: ListState, query) -> Matches:
    """Dispatches a validated `media.Query` to the matcher for its signal type, with the
    per-hash cap its batch size allows (see per_hash_cap). The matchers leave out held entries
    before they cap (a held entry never takes a capped place) and mark disputed ones."""
    cap = per_hash_cap(query.max_per_hash, query.max_per_batch, len(query.hashes))
    if query.signal == SIGNAL_VPDQ:
        found = state.match_video(query.hashes, query.frame_qualities, query.threshold,
                                  query.min_query_percent, query.min_compared_percent,
                                  max_videos=query.max_per_hash,
                                  max_per_frame=per_hash_cap(0, query.max_per_batch,
                                                             len(query.hashes)))
    elif query.signal == SIGNAL_MD5:
        found = state.match_md5(query.hashes, cap)
    else:
        found = state.match_pdq(query.hashes, query.threshold, query.include_video_frames, cap)
    return found


def screen(found: Matches, holds: EntryHolds) -> Matches:
    """`found` without hits on held entries, with `disputed` set when any entry is disputed
    (or, from core.shared.one_per_hash, another holder of the hash is)."""
    keep, disputed = holds.screen(found.entry_ids)
    if keep is None:
        return found
    if found.disputed is not None:
        disputed |= found.disputed
    video = found.query_percent is not None
    return dataclasses.replace(
        found, positions=found.positions[keep], entry_ids=found.entry_ids[keep],
        distances=found.distances[keep], signal_types=found.signal_types[keep],
        query_percent=found.query_percent[keep] if video else None,
        compared_percent=found.compared_percent[keep] if video else None,
        disputed=disputed[keep],
        holders=None if found.holders is None else found.holders[keep])