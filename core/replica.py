"""The list as it travels between copies: packed row fields, and the one canonical digest.

A primary, a durable mirror and an in-process copy must agree byte for byte on what "the same
list" means, and clients may not import the server, so both live here (plain NumPy, no gRPC).
Rows travel as little-endian packed bytes: photo ids and hashes, video entries with their frame
counts and frame hashes (frame ids are derived: entry << FRAME_BITS | frame), md5 ids and md5s.
"""
import hashlib

import numpy as np

from hashmatch.core.video import FRAME_BITS

# (field, dtype, bytes per row) of every packed field, in wire order.
FIELDS = (("image_ids", "<u8", 8), ("image_hashes", np.uint8, 32),
          ("video_entries", "<u8", 8), ("video_frame_counts", "<i8", 8),
          ("frame_hashes", np.uint8, 32), ("md5_ids", "<u8", 8), ("md5s", np.uint8, 16))


def frame_ids(entry_ids, frames_per_entry) -> np.ndarray:
    """uint64 frame index ids: `frames_per_entry[i]` consecutive ids for video entry i."""
    entry_ids = np.asarray(entry_ids, np.uint64)
    counts = np.asarray(frames_per_entry, np.int64)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    frame = np.arange(counts.sum(), dtype=np.int64) - starts
    return (np.repeat(entry_ids, counts) << np.uint64(FRAME_BITS)) | frame.astype(np.uint64)


def pack_rows(rows) -> dict[str, bytes]:
    """The FIELDS of `rows` (any object with those array attributes) as packed bytes."""
    return {name: np.ascontiguousarray(getattr(rows, name), dtype).tobytes()
            for name, dtype, _ in FIELDS}


def unpack_rows(fields) -> dict[str, np.ndarray]:
    """Arrays from packed FIELDS (a mapping, or a message with those attributes), plus
    `frame_ids`; ValueError when a field's length is not whole rows or the parts disagree."""
    get = fields.get if isinstance(fields, dict) else (lambda name: getattr(fields, name))
    out = {}
    for name, dtype, width in FIELDS:
        data = get(name) or b""
        if len(data) % width:
            raise ValueError(f"{name} has {len(data)} bytes, not a multiple of {width}")
        array = np.frombuffer(data, dtype)
        out[name] = (array.reshape(-1, width) if width in (16, 32) and dtype is np.uint8
                     else array.astype(np.uint64 if dtype == "<u8" else np.int64))
    for ids, values in (("image_ids", "image_hashes"), ("video_entries", "video_frame_counts"),
                        ("md5_ids", "md5s")):
        if len(out[ids]) != len(out[values]):
            raise ValueError(f"{ids} has {len(out[ids])} rows but {values} has "
                             f"{len(out[values])}")
    counts = out["video_frame_counts"]
    if (counts < 0).any() or counts.sum() != len(out["frame_hashes"]):
        raise ValueError("video_frame_counts do not add up to the frame_hashes sent")
    out["frame_ids"] = frame_ids(out["video_entries"], counts)
    return out


def list_digest(images, frames, md5s) -> tuple[int, str]:
    """(rows, SHA-256 hex) of a list given as (ids, records) pairs for photo PDQ, video-frame PDQ
    and MD5, in any order: each part is sorted by id, so equal lists give equal digests."""
    sha = hashlib.sha256()
    count = 0
    for name, (ids, records) in (("pdq", images), ("frames", frames), ("md5", md5s)):
        ids = np.asarray(ids, np.uint64)
        order = np.argsort(ids, kind="stable")
        sha.update(name.encode() + len(ids).to_bytes(8, "little"))
        records = np.ascontiguousarray(records)     # any dtype: its bytes, row by row
        sha.update(ids[order].astype("<u8").tobytes()
                   + (np.ascontiguousarray(records[order]).tobytes() if len(ids) else b""))
        count += len(ids)
    return count, sha.hexdigest()


def rows_digest(rows) -> tuple[int, str]:
    """list_digest of a set of rows (image_ids/hashes, frame_ids/hashes, md5_ids/md5s)."""
    return list_digest((rows.image_ids, rows.image_hashes), (rows.frame_ids, rows.frame_hashes),
                       (rows.md5_ids, rows.md5s))
