"""How fast a person's device hashes: PDQ images per second (one thread and all threads) against
the pdqhash package (Meta's C++ in Cython, what python-threatexchange uses) as the named baseline
on the same decoded pixels, and seconds of 720p video hashed per second of wall time.

    .venv/bin/python -m bench.bench_hashing [--seconds 3] [--video-seconds 20]

Decoding is left out of the image numbers (both hashers get the same RGB arrays); the video
number is end to end (demux, decode, RGB conversion, PDQ), as the client runs it.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.machine import describe, usable_cores
from hashmatch.core import _pdq
from hashmatch.core.pdq import pdq_hash

CONFORMANCE = Path(__file__).resolve().parents[2] / "shared" / "conformance"


def machine() -> str:
    import av
    import PIL

    info = describe()
    return (f"{info['system']}; CPU {info['cpu']}; {info['usable_cores']} usable cores; Python "
            f"{info['python']}; NumPy {info['numpy']}; Pillow {PIL.__version__}; "
            f"PyAV {av.__version__}; hashmatch._pdq {_pdq.VERSION} (-O3, portable flags)")


def test_images() -> list[tuple[str, np.ndarray]]:
    """Decoded RGB pixels: a 12 MP phone-size photo, the corpus bridge photo and a 512x512 crop
    (generated when the corpus is not beside the repository)."""
    from PIL import Image

    images = []
    bridge = CONFORMANCE / "images/reg-test-input/dih/bridge-1-original.jpg"
    exif = CONFORMANCE / "images/reg-test-input/exif-rotn/exif-rotn-6.jpg"
    for name, path in [("4032x3024 photo", exif), ("1600x1004 photo", bridge)]:
        if path.exists():
            with Image.open(path) as img:
                images.append((name, np.asarray(img.convert("RGB"))))
    if not images:
        rng = np.random.default_rng(0)
        images = [("4032x3024 noise", rng.integers(0, 256, (3024, 4032, 3), np.uint8)),
                  ("1600x1004 noise", rng.integers(0, 256, (1004, 1600, 3), np.uint8))]
    images.append(("512x512 crop", np.ascontiguousarray(images[-1][1][:512, :512])))
    return images


def pdqhash_baseline(rgb: np.ndarray):
    import pdqhash

    return pdqhash.compute(rgb)


def rate(fn, items, seconds: float, threads: int) -> float:
    """Calls per second of fn over items, cycling, for about `seconds`."""
    fn(items[0])
    done = 0
    start = time.perf_counter()
    if threads == 1:
        while time.perf_counter() - start < seconds:
            for item in items:
                fn(item)
            done += len(items)
    else:
        with ThreadPoolExecutor(threads) as pool:
            while time.perf_counter() - start < seconds:
                batch = items * threads
                list(pool.map(fn, batch))
                done += len(batch)
    return done / (time.perf_counter() - start)


def bench_images(seconds: float) -> list[str]:
    try:
        import pdqhash  # noqa: F401
        have_baseline = True
    except ImportError:
        have_baseline = False
    cores = usable_cores()
    lines = [f"| image | ours 1 thread | ours {cores} threads | pdqhash 1 thread "
             f"| pdqhash {cores} threads | speed-up (1 thread) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, rgb in test_images():
        ours1 = rate(pdq_hash, [rgb], seconds, 1)
        oursn = rate(pdq_hash, [rgb], seconds, cores)
        if have_baseline:
            base1 = rate(pdqhash_baseline, [rgb], seconds, 1)
            basen = rate(pdqhash_baseline, [rgb], seconds, cores)
            extra = f"| {base1:.1f}/s | {basen:.1f}/s | {ours1 / base1:.1f}x |"
        else:
            extra = "| (pdqhash not installed) | | |"
        lines.append(f"| {name} | {ours1:.1f}/s | {oursn:.1f}/s {extra}")
    return lines


def make_720p_clip(path: Path, seconds: int, fps: int = 30) -> Path:
    import av

    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (90, 160, 3), np.uint8).repeat(8, 0).repeat(8, 1)
    with av.open(str(path), "w") as out:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        for i in range(seconds * fps):
            frame = np.roll(base, (i * 3) % 1280, axis=1)
            if i % fps == 0:
                base = np.roll(base, 37, axis=0)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def bench_video(video_seconds: int) -> list[str]:
    from hashmatch.clients import video

    lines = ["| video | seconds_per_hash | workers | frames hashed | wall s | video s per wall s |",
             "| --- | --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_720p_clip(Path(tmp) / "clip720p.mp4", video_seconds)
        for seconds_per_hash, workers in [(1.0, 1), (1.0, usable_cores()), (0.0, 1),
                                          (0.0, usable_cores())]:
            start = time.perf_counter()
            got = video.hash_video(clip, seconds_per_hash=seconds_per_hash, workers=workers)
            wall = time.perf_counter() - start
            lines.append(f"| 1280x720 30 fps, {video_seconds} s | {seconds_per_hash:g} | {workers} "
                         f"| {len(got.frames)} | {wall:.2f} | {video_seconds / wall:.1f} |")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per image measurement")
    parser.add_argument("--video-seconds", type=int, default=20, help="length of the 720p clip")
    args = parser.parse_args(argv)
    print(f"Machine: {machine()}\n")
    print("PDQ on decoded pixels (images hashed per second):\n")
    print("\n".join(bench_images(args.seconds)))
    print("\nvPDQ end to end on a generated 720p clip:\n")
    print("\n".join(bench_video(args.video_seconds)))


if __name__ == "__main__":
    main()
