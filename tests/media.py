"""Test media made on the fly (no binary fixtures in the repository): images with real structure,
small videos encoded with PyAV, a truncated video and an audio-only file.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def pattern_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8[height, width, 3] with structure at several scales (PDQ quality well above 50)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.zeros((height, width, 3))
    for k in range(3):
        fx, fy, phase = rng.uniform(1, 6, 3)
        img[:, :, k] = np.sin(x / width * fx * 6.28 + phase) * np.cos(y / height * fy * 6.28)
    blocks = rng.uniform(-0.5, 0.5, (8, 8, 3))
    img += blocks[(y * 8 / height).astype(int), (x * 8 / width).astype(int)]
    return np.clip(127.5 + 85 * img, 0, 255).astype(np.uint8)


def video_frames(count: int, height: int, width: int, seed: int = 0):
    """`count` frames that change scene every 10 frames and drift a little in between."""
    for i in range(count):
        base = pattern_rgb(height, width, seed=seed * 1000 + i // 10)
        yield np.roll(base, shift=i % 10, axis=1)


def make_video(path, frames, size: tuple[int, int] | None = None, fps: int = 30,
               codec: str = "mpeg4", pix_fmt: str = "yuv420p", audio: bool = False,
               colorspace: int | None = None) -> Path:
    """Encodes `frames` (an int count, or an iterable of uint8[h, w, 3]) with PyAV.

    size is (width, height) and only used when frames is a count. colorspace: an AVColorSpace
    tag for the stream (1 = BT.709). Returns the path.
    """
    import av

    path = Path(path)
    if isinstance(frames, int):
        width, height = size or (64, 48)
        frames = video_frames(frames, height, width)
    with av.open(str(path), "w") as out:
        stream = None
        audio_stream = out.add_stream("aac", rate=8000, layout="mono") if audio else None
        for rgb in frames:
            if stream is None:
                stream = out.add_stream(codec, rate=fps)
                stream.height, stream.width = rgb.shape[:2]
                stream.pix_fmt = pix_fmt
                if colorspace is not None:
                    stream.codec_context.colorspace = colorspace
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if audio_stream is not None:
            _write_tone(out, audio_stream, seconds=0.5)
    return path


def _write_tone(container, stream, seconds: float) -> None:
    import av

    rate = stream.rate
    samples = int(rate * seconds)
    t = np.arange(samples) / rate
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    pts = 0
    for start in range(0, samples, 1024):
        chunk = np.zeros((1, 1024), np.float32)
        piece = tone[start:start + 1024]
        chunk[0, :len(piece)] = piece
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = pts
        frame.time_base = Fraction(1, rate)
        pts += 1024
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def make_audio_only(path, seconds: float = 1.0) -> Path:
    """An .m4a-style MP4 with one AAC audio stream and no video."""
    import av

    path = Path(path)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=8000, layout="mono")
        _write_tone(out, stream, seconds)
    return path


def truncate(src, dst, keep: float = 0.5) -> Path:
    """Copy of `src` cut after `keep` of its bytes (a download that broke off)."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * keep)])
    return Path(dst)


def reencode(src, dst, size: tuple[int, int] | None = None, bit_rate: int | None = None,
             drop_first: int = 0, drop_last: int = 0, codec: str = "mpeg4") -> Path:
    """A copy of the video `src` as a platform might receive it: decoded and encoded again.

    size (width, height) rescales every frame (swscale); bit_rate (bits/s) sets the encoder's
    target; drop_first / drop_last frames are cut (a trimmed copy). Keeps the frame rate.
    Frames pass from decoder to encoder without an RGB round trip. Returns the path.
    """
    import av

    dst = Path(dst)
    with av.open(str(src)) as source, av.open(str(dst), "w") as out:
        stream = source.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate
        total = stream.frames
        width, height = size or (stream.codec_context.width, stream.codec_context.height)
        encoder = out.add_stream(codec, rate=rate)
        encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
        if bit_rate:
            encoder.bit_rate = bit_rate
        written = 0
        for number, frame in enumerate(source.decode(stream)):
            if number < drop_first or (total and number >= total - drop_last):
                continue
            frame = frame.reformat(width=width, height=height, format="yuv420p")
            frame.pts, frame.time_base = written, Fraction(1, rate)
            written += 1
            for packet in encoder.encode(frame):
                out.mux(packet)
        for packet in encoder.encode():
            out.mux(packet)
    return dst
