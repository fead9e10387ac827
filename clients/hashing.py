"""Local hashing of a person's photos and videos: only these hashes ever leave the device.

Images: MD5 of the exact file bytes and PDQ of the decoded pixels (Pillow). Videos: MD5 and vPDQ,
the PDQ of frames sampled about once a second (PyAV, see `hashmatch.clients.video`). The PDQ
itself is `hashmatch.core.pdq` (compiled, exact port of Meta's reference).

Pixel rules, chosen to reproduce what platforms compute (measured in docs/FIDELITY.md):
- full resolution, no thumbnail first (Meta's Java reference and python-threatexchange/HMA hash
  the full image; with it every such reference hash in the conformance corpus is matched exactly);
- EXIF orientation is ignored: pixels are hashed in stored order, as every reference does;
- any mode becomes 8-bit RGB: alpha is dropped (not composited), palette/grey/CMYK go through
  Pillow's conversion, 16-bit samples keep their high byte;
- animated images (GIF, APNG, WebP) are hashed by their first frame;
- HEIC/HEIF (iPhone photos) are photos, decoded by pillow-heif: hashed as a one-frame video they
  would never match the same photo sent as JPEG.
"""
from __future__ import annotations

import hashlib
import os
import struct
import warnings
from dataclasses import dataclass
from typing import Callable, Union

import numpy as np
import pillow_heif
from PIL import Image, UnidentifiedImageError

from hashmatch.core.pdq import pdq_hash, pdq_hash_dihedral

pillow_heif.register_heif_opener()

Progress = Callable[[int, Union[int, None]], None]
"""progress(frames_decoded, frames_total_or_None), called in the caller's thread after each frame."""

_CHUNK = 1 << 20
# Pillow identifies these containers but cannot decode them; they are videos to us.
_PILLOW_VIDEO_FORMATS = {"MPEG"}


@dataclass(frozen=True)
class ImageHashes:
    """Hashes of one image file: md5 (16 bytes), pdq (32 bytes), PDQ quality 0..100."""

    path: str
    md5: bytes
    pdq: bytes
    quality: int
    # With dihedral=True: the PDQ of the image and of its 7 rotations/flips (core DIHEDRAL_NAMES
    # order), so a rotated or mirrored upload can be matched; empty otherwise.
    dihedral: tuple[bytes, ...] = ()

    def __repr__(self) -> str:
        return (f"ImageHashes(path={self.path!r}, md5={self.md5.hex()}, pdq={self.pdq.hex()}, "
                f"quality={self.quality})")


@dataclass(frozen=True)
class VideoFrame:
    """One hashed frame: 0-based decoder output index, its time in seconds (frame_number / fps),
    PDQ hash (32 bytes) and quality."""

    frame_number: int
    timestamp: float
    pdq: bytes
    quality: int


@dataclass(frozen=True)
class VideoHashes:
    """Hashes of one video file: md5 (16 bytes) of the bytes, the sampled frames in order, and
    the frame rate (frames per second) used for sampling and timestamps."""

    path: str
    md5: bytes
    frames: tuple[VideoFrame, ...]
    fps: float

    def __repr__(self) -> str:
        return (f"VideoHashes(path={self.path!r}, md5={self.md5.hex()}, "
                f"frames=<{len(self.frames)} frames>, fps={self.fps})")


FileHashes = Union[ImageHashes, VideoHashes]


class UnsupportedFileError(ValueError):
    """The file cannot be hashed; the message names the file and what is wrong with it."""


def md5_file(path) -> bytes:
    """MD5 (16 bytes) of the exact file bytes, read in chunks so memory stays flat."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.digest()


def rgb_from_image(img: Image.Image) -> np.ndarray:
    """uint8[height, width, 3] of a Pillow image in stored pixel order (EXIF orientation ignored)."""
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        grey = np.asarray(img).astype(np.int64)
        grey = (np.clip(grey, 0, 65535) >> 8).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)


def _open_image(path: str) -> Image.Image | None:
    """The opened image, or None when Pillow does not recognise the content as a still image."""
    try:
        with warnings.catch_warnings():
            # Pillow warns (with its own file path) between 1x and 2x MAX_IMAGE_PIXELS; such a
            # photo is hashed like any other, and past 2x the error below says so plainly.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as e:
        raise UnsupportedFileError(f"{path}: image too large to hash safely ({e})") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, struct.error):
        # Not an image header Pillow accepts; the caller may still try it as a video.
        return None
    if img.format in _PILLOW_VIDEO_FORMATS:
        img.close()
        return None
    return img


def _hash_opened_image(path: str, img: Image.Image, dihedral: bool = False) -> ImageHashes:
    with img:
        try:
            img.load()
            rgb = rgb_from_image(img)
        except (OSError, ValueError, SyntaxError) as e:
            raise UnsupportedFileError(
                f"{path}: {img.format or 'image'} file is broken or truncated ({e})") from e
    try:
        pdq, quality = pdq_hash(rgb)
    except ValueError as e:
        raise UnsupportedFileError(f"{path}: cannot hash image of size "
                                   f"{rgb.shape[1]}x{rgb.shape[0]} ({e})") from e
    variants = pdq_hash_dihedral(rgb)[0] if dihedral else ()
    return ImageHashes(path=path, md5=md5_file(path), pdq=pdq, quality=quality, dihedral=variants)


def _check_readable(path) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UnsupportedFileError(f"{path}: is a directory, not a file")
    if os.path.getsize(path) == 0:
        raise UnsupportedFileError(f"{path}: file is empty")
    with open(path, "rb"):  # PermissionError here, not a misleading "not a video" later
        pass
    return path


def hash_image(path, dihedral: bool = False) -> ImageHashes:
    """MD5 and PDQ of an image file (any format Pillow reads, sniffed by content); with
    dihedral, also the PDQ of its 8 rotations/flips.

    Raises UnsupportedFileError when the file is not an image Pillow can decode.
    """
    path = _check_readable(path)
    img = _open_image(path)
    if img is None:
        raise UnsupportedFileError(f"{path}: not an image format this client can read")
    return _hash_opened_image(path, img, dihedral)


def hash_video(path, seconds_per_hash: float = 1.0, progress: Progress | None = None) -> VideoHashes:
    """MD5 and vPDQ of a video file: PDQ of every k-th decoded frame, k = max(1,
    int(seconds_per_hash * fps)), as Meta's vpdq does. See `hashmatch.clients.video.hash_video`."""
    from hashmatch.clients import video

    return video.hash_video(path, seconds_per_hash=seconds_per_hash, progress=progress)


def hash_file(path, progress: Progress | None = None, seconds_per_hash: float = 1.0,
              dihedral: bool = False) -> FileHashes:
    """Hashes of a photo or video, told apart by content (not by file name).

    Returns ImageHashes for a still image, VideoHashes (one frame every seconds_per_hash) for a
    video; progress is only called for videos; dihedral adds an image's 8 rotation/flip hashes. Raises UnsupportedFileError for anything else
    (including an image that is broken: it is not retried as a video), FileNotFoundError for a
    missing path.
    """
    path = _check_readable(path)
    img = _open_image(path)
    if img is not None:
        return _hash_opened_image(path, img, dihedral)
    return hash_video(path, seconds_per_hash=seconds_per_hash, progress=progress)


__all__ = ["ImageHashes", "VideoFrame", "VideoHashes", "FileHashes", "UnsupportedFileError",
           "hash_image", "hash_video", "hash_file", "md5_file", "rgb_from_image", "Progress"]
