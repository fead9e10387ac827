"""PDQ image hashing: the compiled port of Meta's C++ reference, behind a typed Python face.

Clients decode images and video frames (Pillow, PyAV) into RGB arrays and call `pdq_hash`; the
hashes must equal what platforms compute with Meta's reference on the same pixels, so the work is
done in C++ (`hashmatch.core._pdq`) with the reference's 32-bit float arithmetic. The GIL is
released while hashing, so a thread pool hashes several images at once.
"""
from __future__ import annotations

import numpy as np

from hashmatch.core import _pdq

HASH_BYTES: int = _pdq.HASH_BYTES
"""A PDQ hash is 256 bits = 32 bytes."""
MIN_HASHABLE_DIM: int = _pdq.MIN_HASHABLE_DIM
"""Images with fewer rows or columns hash to 32 zero bytes with quality 0, as in the reference."""
MIN_TRUSTED_QUALITY = 50
"""Hashes below this quality are not meaningful for matching (Meta's rule)."""
DIHEDRAL_NAMES = ("original", "rotate90", "rotate180", "rotate270", "flipx", "flipy",
                  "flipplus1", "flipminus1")
"""Order of the variants returned by `pdq_hash_dihedral` (the reference's order)."""


def pdq_hash(rgb: np.ndarray) -> tuple[bytes, int]:
    """PDQ hash of one image.

    rgb: uint8[height, width, 3] in R, G, B order; any strides (slices and views are fine).
    Returns (hash, quality): hash is 32 bytes in printed order (`hash.hex()` is the 64-digit
    string PDQ tools print), quality is 0..100. Raises ValueError for another dtype or shape or an
    empty image.
    """
    return _pdq.pdq_hash(np.asarray(rgb))


def pdq_hash_dihedral(rgb: np.ndarray) -> tuple[tuple[bytes, ...], int]:
    """Hashes of the image and its 7 rotations/flips (order: DIHEDRAL_NAMES) from one pass.

    Same input rules as `pdq_hash`. As in the reference, the first hash can differ from
    `pdq_hash` only for a 64x64 image (the reference skips the blur there in its single-hash path).
    """
    return _pdq.pdq_hash_dihedral(np.asarray(rgb))


def pdq_hash_luma(luma: np.ndarray) -> tuple[bytes, int]:
    """PDQ hash of a float32[height, width] luma plane (0..255 scale), for callers that already
    have luma. The input is not modified."""
    return _pdq.pdq_hash_luma(np.asarray(luma))


def luma_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """The reference's luma: float32[height, width] = 0.299f R + 0.587f G + 0.114f B in float32."""
    return _pdq.luma_from_rgb(np.asarray(rgb))


def hamming_distance(a: bytes, b: bytes) -> int:
    """Number of differing bits between two hashes of equal length."""
    if len(a) != len(b):
        raise ValueError(f"hashes must have equal length, got {len(a)} and {len(b)}")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


__all__ = ["HASH_BYTES", "MIN_HASHABLE_DIM", "MIN_TRUSTED_QUALITY", "DIHEDRAL_NAMES", "pdq_hash",
           "pdq_hash_dihedral", "pdq_hash_luma", "luma_from_rgb", "hamming_distance"]
