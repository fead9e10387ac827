"""The list in memory: the core indexes the servicers match against, kept in step with the store.

Three indexes (photo PDQ, video-frame PDQ, MD5) plus a per-video frame count for the vPDQ rule.
Writers (store commits) apply `ListRows` here in change-log order under one lock; readers never
take it: each core index is safe to search while it changes. Results come back as `Matches`,
plain arrays ordered by position then distance.
"""
import dataclasses
import threading

import numpy as np

from hashmatch.core import HashIndex, Md5Index, backend_name
from hashmatch.core import video as vpdq
from hashmatch.server.errors import NotReady
from hashmatch.server.media import ListRows, entry_of_frame

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

    def __len__(self):
        return len(self.entry_ids)


def _matches(positions, entry_ids, distances, signal_types) -> Matches:
    order = np.lexsort((entry_ids, distances, positions))
    return Matches(np.asarray(positions, np.int64)[order], np.asarray(entry_ids, np.uint64)[order],
                   np.asarray(distances, np.int32)[order], np.asarray(signal_types, np.int8)[order])


class ListState:
    def __init__(self, search_threads: int = 0):
        """search_threads: threads one search may use (0 = all cores); see ServerConfig."""
        self._images = HashIndex(threads=search_threads)
        self._frames = HashIndex(threads=search_threads)
        self._md5 = Md5Index()
        self._frame_counts: dict[int, int] = {}
        self._write_lock = threading.Lock()
        self.sequence = 0
        self.loaded = False

    # ------------------------------------------------------------ writes

    def apply_added(self, rows: ListRows) -> None:
        with self._write_lock:
            if len(rows.image_ids):
                self._images.add(rows.image_ids, rows.image_hashes)
            if len(rows.frame_ids):
                self._frame_counts.update(zip(rows.video_entries.tolist(),
                                              rows.video_frame_counts.tolist()))
                self._frames.add(rows.frame_ids, rows.frame_hashes)
            if len(rows.md5_ids):
                self._md5.add(rows.md5_ids, rows.md5s)
            self.sequence = max(self.sequence, rows.sequence)

    def apply_removed(self, rows: ListRows) -> None:
        with self._write_lock:
            if len(rows.image_ids):
                self._images.remove(rows.image_ids)
            if len(rows.frame_ids):
                self._frames.remove(rows.frame_ids)
                for entry in rows.video_entries.tolist():
                    self._frame_counts.pop(entry, None)
            if len(rows.md5_ids):
                self._md5.remove(rows.md5_ids)
            self.sequence = max(self.sequence, rows.sequence)

    def load(self, rows: ListRows) -> None:
        self.apply_added(rows)
        self.loaded = True

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
    """Dispatches a validated `media.Query` to the matcher for its signal type."""
    if query.signal == SIGNAL_MD5:
        return state.match_md5(query.hashes)
    if query.signal == SIGNAL_VPDQ:
        return state.match_video(query.hashes, query.frame_qualities, query.threshold,
                                 query.min_query_percent, query.min_compared_percent)
    return state.match_pdq(query.hashes, query.threshold, query.include_video_frames)
