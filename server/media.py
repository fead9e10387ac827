"""The plain (protobuf-free) shapes of what a person submits and what the list holds.

`convert.py` builds `Image`/`Video` from requests; `store.py` persists them and answers with
`ListRows`, the one shape used to load, add to and remove from the in-memory list.
Photo and MD5 index ids are entry ids. Video frame ids pack the entry and the frame:
``entry_id << FRAME_BITS | frame``, so a frame hit maps back to its entry with one shift and no
per-hash table. (Photo ids stay unshifted so that they fit the 4 bytes HashIndex stores them in
below 2**32.)
"""
import dataclasses

import numpy as np

from hashmatch.core.signals import MD5_BYTES, PDQ_BYTES
from hashmatch.core.replica import frame_ids  # noqa: F401  (re-exported)
from hashmatch.core.video import FRAME_BITS

KIND_IMAGE = 1
KIND_VIDEO = 2


@dataclasses.dataclass(frozen=True)
class Image:
    md5: bytes | None
    pdq: bytes | None
    quality: int


@dataclasses.dataclass(frozen=True)
class Video:
    md5: bytes | None
    frames: np.ndarray      # uint8[n, 32]: quality >= 50 only, duplicates removed, in order
    qualities: np.ndarray   # uint8[n]


def hash_count(media) -> int:
    """Hashes a case adds to the list: a photo's PDQ and MD5, a video's kept frames and MD5."""
    return sum((item.md5 is not None) + (len(item.frames) if isinstance(item, Video)
                                         else item.pdq is not None) for item in media)


def entry_of_frame(ids: np.ndarray) -> np.ndarray:
    return np.asarray(ids, np.uint64) >> np.uint64(FRAME_BITS)


@dataclasses.dataclass
class ListRows:
    """A set of list rows: a snapshot at start-up, the rows a case added, or the ids it removed.

    Hash arrays may be empty (zero rows) for removals, where only the ids matter.
    """
    image_ids: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.uint64))
    image_hashes: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros((0, PDQ_BYTES), np.uint8))
    frame_ids: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.uint64))
    frame_hashes: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros((0, PDQ_BYTES), np.uint8))
    video_entries: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.uint64))
    video_frame_counts: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(0, np.int64))
    md5_ids: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.uint64))
    md5s: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, MD5_BYTES), np.uint8))
    sequence: int = 0
    # A snapshot's entries held back from matching, and its disputed ones (core/holds.py).
    held_entries: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.uint64))
    disputed_entries: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(0, np.uint64))


@dataclasses.dataclass(frozen=True)
class Query:
    """One validated match batch. signal: core.signals SIGNAL_PDQ, SIGNAL_MD5 or SIGNAL_VPDQ.
    max_per_hash, max_per_batch: the server's caps on matches (0: none), see ServerConfig."""
    signal: int
    hashes: np.ndarray                  # uint8[n, 32] (PDQ, VPDQ) or uint8[n, 16] (MD5)
    threshold: int
    include_video_frames: bool = False
    frame_qualities: np.ndarray | None = None
    min_query_percent: float = 80.0
    min_compared_percent: float = 0.0
    max_per_hash: int = 0
    max_per_batch: int = 0
