"""vPDQ video matching: Meta's frame-share rule over the results of a PDQ frame search.

Pure NumPy, no I/O: the caller searches a `HashIndex` of listed video frames and hands the CSR
result here. Listed frames carry ids ``entry_id << frame_bits | frame`` so the listed video of a
hit is one shift away.

The rule (python-threatexchange's vPDQ): frames of quality < 50 are dropped and duplicate frame
hashes removed on both sides; a query frame matches a listed video when some frame of that video
is within the (inclusive) threshold;
    query %    = matched query frames / query frames            * 100
    compared % = matched listed frames / listed frames of video * 100
and the video matches when query % >= min_query (80) and compared % >= min_compared (0).
"""
import dataclasses

import numpy as np

from hashmatch.core.hits import positions_of
from hashmatch.core.pdq import MIN_TRUSTED_QUALITY as MIN_QUALITY
from hashmatch.core.signals import PDQ_BYTES

DEFAULT_MIN_QUERY_PERCENT = 80.0
DEFAULT_MIN_COMPARED_PERCENT = 0.0
FRAME_BITS = 24


def prepare_frames(frames, qualities=None, min_quality: int = MIN_QUALITY):
    """Drops frames below min_quality (when qualities are given) and repeated frame hashes.

    frames: uint8[n, 32]; qualities: int[n] or None. Returns (frames uint8[k, 32], qualities
    uint8[k] or None), first occurrence kept, in the original order.
    """
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if frames.ndim != 2 or frames.shape[1] != PDQ_BYTES:
        raise ValueError(f"frames must have shape (n, {PDQ_BYTES}), got {frames.shape}")
    if qualities is not None:
        qualities = np.asarray(qualities)
        if qualities.shape != (len(frames),):
            raise ValueError(f"got {qualities.size} qualities for {len(frames)} frames")
        keep = qualities >= min_quality
        frames, qualities = frames[keep], qualities[keep]
    _, first = np.unique(frames.view(np.dtype((np.void, PDQ_BYTES))).ravel(), return_index=True)
    first.sort()
    return frames[first], (None if qualities is None else qualities[first].astype(np.uint8))


@dataclasses.dataclass(frozen=True)
class VideoMatches:
    """One row per matching listed video, ordered by smallest distance then entry id."""
    entry_ids: np.ndarray          # uint64[k]
    query_percent: np.ndarray      # float64[k]
    compared_percent: np.ndarray   # float64[k]
    distances: np.ndarray          # int32[k]: smallest frame distance

    def __len__(self):
        return len(self.entry_ids)


def aggregate(offsets, ids, distances, listed_frame_counts, *,
              min_query: float = DEFAULT_MIN_QUERY_PERCENT,
              min_compared: float = DEFAULT_MIN_COMPARED_PERCENT,
              frame_bits: int = FRAME_BITS) -> VideoMatches:
    """Applies the frame-share rule to a frame search of ONE query video.

    offsets int64[q+1], ids uint64[m], distances int32[m]: `HashIndex.search` of the q prepared
    query frames against the listed frames. listed_frame_counts: callable mapping uint64[k]
    entry ids to int[k] frame counts (the deduplicated frames stored for each video).
    """
    offsets = np.asarray(offsets, np.int64)
    ids = np.asarray(ids, np.uint64)
    distances = np.asarray(distances, np.int32)
    n_query = len(offsets) - 1
    empty = VideoMatches(np.zeros(0, np.uint64), np.zeros(0), np.zeros(0), np.zeros(0, np.int32))
    if n_query <= 0 or len(ids) == 0:
        return empty
    query = positions_of(offsets)
    entries = ids >> np.uint64(frame_bits)
    videos, video_of_hit = np.unique(entries, return_inverse=True)
    matched_query = _count_unique_pairs(video_of_hit, query)
    matched_listed = _count_unique_pairs(video_of_hit, ids)
    smallest = np.full(len(videos), np.iinfo(np.int32).max, np.int32)
    np.minimum.at(smallest, video_of_hit, distances)
    listed = np.asarray(listed_frame_counts(videos), np.float64)
    query_pct = 100.0 * matched_query / n_query
    compared_pct = 100.0 * matched_listed / np.maximum(listed, 1)
    keep = (query_pct >= min_query) & (compared_pct >= min_compared) & (listed > 0)
    order = np.lexsort((videos[keep], smallest[keep]))
    return VideoMatches(videos[keep][order], query_pct[keep][order], compared_pct[keep][order],
                        smallest[keep][order])


def _count_unique_pairs(group: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Number of distinct `value`s per group (groups are 0..g-1, all present)."""
    pairs = np.unique(np.stack([group.astype(np.uint64), value.astype(np.uint64)]), axis=1)
    return np.bincount(pairs[0].astype(np.int64), minlength=int(group.max()) + 1)


def match_video(index, frames, listed_frame_counts, *, qualities=None, threshold: int = 31,
                min_query: float = DEFAULT_MIN_QUERY_PERCENT,
                min_compared: float = DEFAULT_MIN_COMPARED_PERCENT,
                max_per_frame: int = 0) -> VideoMatches:
    """Prepares the query frames, searches `index` (listed frames) and aggregates.

    max_per_frame: 0 counts every listed frame a query frame matches; else only the closest
    that many (the search's cost bound), so a frame that many listed videos share counts for
    the closest of them only."""
    frames, _ = prepare_frames(frames, qualities)
    if len(frames) == 0:
        raise ValueError(f"no query frame has quality >= {MIN_QUALITY}")
    hits = index.search(frames, threshold, max_per_frame)
    return aggregate(hits.offsets, hits.ids, hits.distances, listed_frame_counts,
                     min_query=min_query, min_compared=min_compared)
