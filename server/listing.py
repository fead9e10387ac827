"""The list in memory: the core indexes the servicers match against, kept in step with the store.

Three indexes (photo PDQ, video-frame PDQ, MD5) plus a per-video frame count for the vPDQ rule.
The follower (follower.py) applies the change log here in order, under its lock; readers never
take it: each core index is safe to search while it changes. Results come back as `Matches`,
plain arrays ordered by position then distance.
"""
import dataclasses

import numpy as np

from hashmatch.core import HashIndex, Md5Index, backend_name
from hashmatch.core import video as vpdq
from hashmatch.core.holds import EntryHolds
from hashmatch.core.replica import list_digest
from hashmatch.server.errors import NotReady
from hashmatch.server.media import ListRows, entry_of_frame, frame_ids

# What a hit matched; convert.py maps these to and from hashmatch.v1.SignalType.
SIGNAL_PDQ, SIGNAL_MD5, SIGNAL_VPDQ = 1, 2, 3


def kernel_backend() -> str:
    return backend_name()


@dataclasses.dataclass(frozen=True)
class Matches:
    """Hits of one batch: parallel arrays, ordered by position then distance."""
    positions: np.ndarray        # int64
    entry_ids: np.ndarray        # uint64
    distances: np.ndarray        # int32
    signal_types: np.ndarray     # int8: SIGNAL_*
    query_percent: np.ndarray | None = None     # float64, video queries only
    compared_percent: np.ndarray | None = None
    disputed: np.ndarray | None = None          # bool: hits on disputed entries (holds.py)

    def __len__(self):
        return len(self.entry_ids)


def _matches(positions, entry_ids, distances, signal_types) -> Matches:
    order = np.lexsort((entry_ids, distances, positions))
    return Matches(np.asarray(positions, np.int64)[order], np.asarray(entry_ids, np.uint64)[order],
                   np.asarray(distances, np.int32)[order], np.asarray(signal_types, np.int8)[order])


class ListState:
    def __init__(self, search_threads: int = 0, hold_disputed: bool = False):
        """search_threads: threads one search may use (0 = all cores); see ServerConfig.
        hold_disputed: disputed entries stop matching (else they match with disputed set)."""
        self._search_threads = search_threads
        # Held and disputed entries; the follower applies the log's state ops to it.
        self.holds = EntryHolds(hold_disputed)
        self._empty()
        self.sequence = 0
        self.loaded = False

    def _empty(self) -> None:
        self._images = HashIndex(threads=self._search_threads)
        self._frames = HashIndex(threads=self._search_threads)
        self._md5 = Md5Index()
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
        """Replaces the whole list with a snapshot (start-up, or a reload after a gap)."""
        self._empty()
        self.sequence = 0
        self.apply(rows, np.zeros(0, np.uint64))
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

    def index_memory_bytes(self) -> int:
        """Bytes the in-memory PDQ indexes (photos and video frames) hold."""
        return self._images.memory_bytes() + self._frames.memory_bytes()

    def _require_loaded(self):
        if not self.loaded:
            raise NotReady("the list is still loading; try again shortly")

    def match_pdq(self, hashes: np.ndarray, threshold: int, include_video_frames: bool) -> Matches:
        self._require_loaded()
        parts = [(self._images, SIGNAL_PDQ)]
        if include_video_frames:
            parts.append((self._frames, SIGNAL_VPDQ))
        pos, ent, dist, sig = [], [], [], []
        for index, signal in parts:
            offsets, ids, distances = index.search(hashes, threshold)
            p = np.repeat(np.arange(len(hashes)), np.diff(offsets))
            e = ids
            if signal == SIGNAL_VPDQ:
                p, e, distances = _closest_per_entry(p, entry_of_frame(ids), distances)
            pos.append(p), ent.append(e), dist.append(distances)
            sig.append(np.full(len(e), signal, np.int8))
        return _matches(*(np.concatenate(x) for x in (pos, ent, dist, sig)))

    def match_md5(self, md5s: np.ndarray) -> Matches:
        self._require_loaded()
        offsets, ids = self._md5.lookup(md5s)
        p = np.repeat(np.arange(len(md5s)), np.diff(offsets))
        return _matches(p, ids, np.zeros(len(ids), np.int32), np.full(len(ids), SIGNAL_MD5))

    def match_video(self, frames: np.ndarray, qualities, threshold: int,
                    min_query: float, min_compared: float) -> Matches:
        self._require_loaded()
        found = vpdq.match_video(self._frames, frames, self._listed_frame_counts,
                                 qualities=qualities, threshold=threshold,
                                 min_query=min_query, min_compared=min_compared)
        n = len(found)
        return Matches(np.zeros(n, np.int64), found.entry_ids, found.distances,
                       np.full(n, SIGNAL_VPDQ, np.int8), found.query_percent,
                       found.compared_percent)

    def _listed_frame_counts(self, entries: np.ndarray) -> np.ndarray:
        # A video withdrawn between the search and this call counts as having no frames left.
        get = self._frame_counts.get
        return np.fromiter((get(e, 0) for e in entries.tolist()), np.int64, len(entries))


def _closest_per_entry(positions, entries, distances):
    """Keeps one hit per (position, entry): the smallest distance among a video's frames."""
    if len(entries) == 0:
        return positions, entries, distances
    order = np.lexsort((distances, entries, positions))
    positions, entries, distances = positions[order], entries[order], distances[order]
    first = np.ones(len(entries), bool)
    first[1:] = (positions[1:] != positions[:-1]) | (entries[1:] != entries[:-1])
    return positions[first], entries[first], distances[first]



def run_query(state: ListState, query) -> Matches:
    """Dispatches a validated `media.Query` to the matcher for its signal type, then drops
    hits on held entries and marks those on disputed ones."""
    if query.signal == SIGNAL_MD5:
        found = state.match_md5(query.hashes)
    elif query.signal == SIGNAL_VPDQ:
        found = state.match_video(query.hashes, query.frame_qualities, query.threshold,
                                  query.min_query_percent, query.min_compared_percent)
    else:
        found = state.match_pdq(query.hashes, query.threshold, query.include_video_frames)
    return screen(found, state.holds)


def screen(found: Matches, holds: EntryHolds) -> Matches:
    """`found` without hits on held entries, with `disputed` set when any entry is disputed."""
    keep, disputed = holds.screen(found.entry_ids)
    if keep is None:
        return found
    video = found.query_percent is not None
    return Matches(found.positions[keep], found.entry_ids[keep], found.distances[keep],
                   found.signal_types[keep], found.query_percent[keep] if video else None,
                   found.compared_percent[keep] if video else None, disputed[keep])
