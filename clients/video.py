"""vPDQ hashing of a video file, as Meta's vpdq does it, with PyAV instead of its C++ FFmpeg loop.

The rules, from vpdq's filehasher/ffmpegwrapper:
- the first video stream; fps = its average frame rate, else its real (guessed) rate;
- every k-th frame in decoder output order is hashed, k = max(1, int(seconds_per_hash * fps));
- frame_number is the 0-based index of the frame in decoder output, timestamp = frame_number / fps
  (divided in 32-bit floats, as vpdq does, so printed timestamps agree to the last digit);
- each sampled frame is converted to RGB24 at full size by swscale with AREA interpolation,
  reading YUV as BT.601 whatever the colour tags say (vpdq's swscale context never sees them),
  then hashed with plain PDQ.

Streaming: frames are decoded one at a time (FFmpeg's own decode threads) and only a bounded
window of sampled frames waits for the hashing pool, so memory stays flat however long the video
is. PDQ releases the GIL, so the pool's threads hash in parallel.
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from fractions import Fraction

import av
import numpy as np

from hashmatch.clients.hashing import (
    Progress,
    UnsupportedFileError,
    VideoFrame,
    VideoHashes,
    _check_readable,
    md5_file,
)
from hashmatch.core.pdq import pdq_hash

# FFmpeg also "decodes" text files (tty demuxer, ANSI art codecs) and lone still images; none of
# them is a video.
_TEXT_FORMATS = {"tty"}
_TEXT_CODECS = {"ansi", "bintext", "xbin", "idf"}
_STILL_IMAGE_FORMATS = {"image2"}

# How many sampled frames may wait for the pool per worker before decoding pauses.
_WINDOW_PER_WORKER = 2


def default_workers() -> int:
    """Hashing threads: the cores this process may use, at most 8 (decode is the bottleneck)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def frame_rate(stream) -> Fraction | None:
    """The stream's average frame rate, else its real frame rate (vpdq's rule); None if neither."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return Fraction(rate)
    return None


def vpdq_timestamp(frame_number: int, fps: float) -> float:
    """Seconds of a frame, computed as vpdq does: float32(frame_number) / float32(fps)."""
    return float(np.float32(frame_number) / np.float32(fps))


def _legacy_yuv_options(fmt) -> dict:
    """vpdq converts with sws_getContext + sws_scale, which never see the frame's colour tags:
    YUV is read with the BT.601 matrix, full range only for the yuvj* formats. PyAV's
    sws_scale_frame would honour the tags (BT.709 for most HD and phone video, about 18 bits away
    on a tagged test clip), so the legacy reading is requested explicitly."""
    if fmt.is_rgb or fmt.has_palette or len(fmt.components) < 3:
        return {}
    return {"src_colorspace": "ITU601", "dst_colorspace": "ITU601",
            "src_color_range": "JPEG" if fmt.name.startswith("yuvj") else "MPEG"}


def frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """uint8[height, width, 3]: swscale to RGB24 at full size with AREA interpolation, reading
    YUV as vpdq's legacy swscale context does (see _legacy_yuv_options)."""
    return frame.to_ndarray(format="rgb24", interpolation="AREA", threads=1,
                            **_legacy_yuv_options(frame.format))


def _hash_frame(frame: av.VideoFrame) -> tuple[bytes, int]:
    return pdq_hash(frame_to_rgb(frame))


def _open(path: str):
    try:
        return av.open(path, mode="r")
    except av.FFmpegError as e:
        raise UnsupportedFileError(
            f"{path}: neither an image nor a video this client can read (unknown, broken "
            f"or truncated file: {getattr(e, 'strerror', None) or e})") from e


def _video_stream(path: str, container):
    if not container.streams.video:
        if not container.streams:
            raise UnsupportedFileError(f"{path}: contains no audio or video stream (broken or "
                                       f"truncated file?)")
        if container.streams.audio:
            raise UnsupportedFileError(f"{path}: has audio but no video stream; nothing to hash")
        raise UnsupportedFileError(f"{path}: contains no video stream (not a video, or broken "
                                   f"or truncated)")
    stream = container.streams.video[0]
    fmt = container.format.name
    if fmt in _TEXT_FORMATS or stream.codec_context.name in _TEXT_CODECS:
        raise UnsupportedFileError(f"{path}: looks like a text file, not a video")
    if fmt in _STILL_IMAGE_FORMATS or fmt.endswith("_pipe"):
        raise UnsupportedFileError(
            f"{path}: not a readable image (Pillow cannot decode it; FFmpeg "
            f"guessed {fmt} from its name) and not a video")
    if not stream.codec_context.width or not stream.codec_context.height:
        raise UnsupportedFileError(f"{path}: video stream has no frame size (width or height 0)")
    return stream


def hash_video(path, seconds_per_hash: float = 1.0, progress: Progress | None = None,
               workers: int | None = None) -> VideoHashes:
    """MD5 and vPDQ of a video file.

    seconds_per_hash: about how often to hash a frame (0 = every frame). progress: optional
    callable(frames_decoded, frames_total_or_None), called after each decoded frame. workers:
    hashing threads (default: usable cores, at most 8).
    Raises UnsupportedFileError for files without a decodable video stream (audio only, unknown
    container, broken or truncated data), FileNotFoundError for a missing path.
    """
    if not seconds_per_hash >= 0:
        raise ValueError(f"seconds_per_hash must be >= 0, got {seconds_per_hash}")
    path = _check_readable(path)
    md5 = md5_file(path)
    workers = workers or default_workers()
    with _open(path) as container:
        stream = _video_stream(path, container)
        fps = frame_rate(stream)
        if fps is None:
            raise UnsupportedFileError(f"{path}: video stream has no frame rate")
        stream.thread_type = "AUTO"
        step = max(1, int(seconds_per_hash * float(fps)))
        total = stream.frames or None
        frames = _decode_and_hash(path, container, stream, step, float(fps), total, progress,
                                  workers)
    if not frames:
        raise UnsupportedFileError(f"{path}: no video frame could be decoded (broken or "
                                   f"truncated file)")
    return VideoHashes(path=path, md5=md5, frames=tuple(frames), fps=float(fps))


def _decode_and_hash(path, container, stream, step, fps, total, progress, workers):
    frames: list[VideoFrame] = []
    pending: deque[tuple[int, Future]] = deque()

    def collect_one():
        number, future = pending.popleft()
        pdq, quality = future.result()
        frames.append(VideoFrame(frame_number=number, timestamp=vpdq_timestamp(number, fps),
                                 pdq=pdq, quality=quality))

    decoded = 0
    last_time = None
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vpdq") as pool:
        try:
            for frame in container.decode(stream):
                number = decoded
                decoded += 1
                last_time = frame.time if frame.time is not None else last_time
                if number % step == 0:
                    pending.append((number, pool.submit(_hash_frame, frame)))
                    while len(pending) > _WINDOW_PER_WORKER * workers:
                        collect_one()
                if progress is not None:
                    progress(decoded, total)
        except av.FFmpegError as e:
            for _, future in pending:
                future.cancel()
            raise UnsupportedFileError(
                f"{path}: video data is broken or truncated after {decoded} frames ({e})") from e
        while pending:
            collect_one()
    _check_complete(path, container, stream, decoded, last_time, fps)
    return frames


def _check_complete(path, container, stream, decoded, last_time, fps) -> None:
    """FFmpeg decodes what it can of a cut file without an error; compare what was decoded with
    what the container announces (frame count, or duration of the video stream) and refuse a
    file that ends much earlier, so a partial video is never submitted as the whole one."""
    if stream.frames and decoded < stream.frames - max(2, stream.frames // 50):
        raise UnsupportedFileError(f"{path}: video is truncated or broken: decoded {decoded} of "
                                   f"the {stream.frames} frames it announces")
    duration = None
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration and len(container.streams) == 1:
        duration = container.duration / 1_000_000
    if duration is None or last_time is None:
        return
    start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
    covered = last_time - start + 1 / fps
    if covered < duration - max(2 / fps, 0.05 * duration):
        raise UnsupportedFileError(f"{path}: video is truncated or broken: frames stop at "
                                   f"{covered:.2f} s of the {duration:.2f} s it announces")


__all__ = ["hash_video", "frame_rate", "frame_to_rgb", "default_workers", "vpdq_timestamp"]
