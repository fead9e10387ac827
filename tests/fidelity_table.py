"""How close our hashes are to Meta's published ones: the corpus helpers shared by the conformance
tests, and the script that writes the tables of docs/FIDELITY.md.

    .venv/bin/python -m tests.fidelity_table > /tmp/tables.md

The corpus is ../shared/conformance beside the repository (see its README). Every number in
docs/FIDELITY.md comes from running this script.
"""
from __future__ import annotations

import csv
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
CONFORMANCE = SHARED / "conformance"

# Meta's sources, as named in the `source` column of expected-pdq.tsv.
EXACT_SOURCES = ("PDQHasherTest.java", "signal_type/pdq/signal.py")
CPP_SOURCES = ("pdq/cpp/bin/README.md", "pdq/java/README.md", "pdq/sql/README.md")
# Images whose PDQ quality is below 50 (README: not meaningful for hashing).
LOW_QUALITY_IMAGES = {"images/reg-test-input/labelme-subset/q0003.jpg",
                      "images/reg-test-input/labelme-subset/q0004.jpg",
                      "images/misc-images/small.jpg"}
EXACT_BOUND, CPP_BOUND, OTHER_BOUND = 0, 10, 16
CPP_MIN_QUALITY, MIN_QUALITY = 80, 50
VIDEO_DISTANCE_BOUND = 31  # strict: distance < 31, Meta's regression test


@dataclass(frozen=True)
class ExpectedPdq:
    path: str
    hash: bytes
    quality: int | None
    source: str

    @property
    def kind(self) -> str:
        """'exact', 'cpp' (Meta's C++ tool, CImg decode + 512x512 resize) or 'other'."""
        if self.source.startswith("derived"):
            return "other"
        if any(s in self.source for s in EXACT_SOURCES):
            return "exact"
        if self.source.startswith(CPP_SOURCES):
            return "cpp"
        return "other"

    @property
    def short_source(self) -> str:
        s = self.source.split(" ")[0]
        return {"pdq/java/src/test/java/hasher/pdqhashing/PDQHasherTest.java": "java-test",
                "pdq/python/pdqhashing/tests/pdq_test.py": "python-test",
                "pdq/python/README.md": "python-readme",
                "pdq/cpp/bin/README.md": "cpp-readme",
                "pdq/java/README.md": "java-readme (C++ hashes)",
                "pdq/sql/README.md": "sql-readme (C++ hashes)",
                "pdq/wasm/test/TestData/PDQMD5TestData.csv": "wasm-csv",
                "python-threatexchange/threatexchange/signal_type/pdq/signal.py": "signal.py",
                "derived:": "derived (CMYK)"}.get(s, s)


def available() -> bool:
    return (CONFORMANCE / "expected-pdq.tsv").exists()


def require_corpus() -> None:
    """Stops test collection with a clear error when ../shared/conformance is missing: a
    missing corpus must fail the suite, not skip the fidelity tests quietly."""
    if not available():
        raise FileNotFoundError(f"conformance corpus not found at {CONFORMANCE}; clone the "
                                "repository with ../shared beside it")


def expected_pdq() -> list[ExpectedPdq]:
    with open(CONFORMANCE / "expected-pdq.tsv", newline="") as f:
        return [ExpectedPdq(r["path"], bytes.fromhex(r["expected_hash"]),
                            int(r["expected_quality"]) if r["expected_quality"] else None,
                            r["source"]) for r in csv.DictReader(f, delimiter="\t")]


def expected_md5() -> dict[str, str]:
    with open(CONFORMANCE / "md5.tsv", newline="") as f:
        return {r["path"]: r["md5"] for r in csv.DictReader(f, delimiter="\t")}


def bound_for(row: ExpectedPdq, quality: int) -> int | None:
    """The largest distance allowed against this row, or None when only low quality is checked."""
    if row.path in LOW_QUALITY_IMAGES:
        return None
    if row.kind == "exact":
        return EXACT_BOUND
    if row.kind == "cpp" and quality >= CPP_MIN_QUALITY:
        return CPP_BOUND
    return OTHER_BOUND if quality >= MIN_QUALITY else None


@dataclass(frozen=True)
class VpdqLine:
    frame_number: int
    quality: int
    hash: bytes
    timestamp: str


def expected_vpdq(txt: Path) -> list[VpdqLine]:
    lines = []
    for line in txt.read_text().split():
        n, q, h, ts = line.split(",")
        lines.append(VpdqLine(int(n), int(q), bytes.fromhex(h), ts))
    return lines


def sample_videos() -> list[Path]:
    return sorted((CONFORMANCE / "videos").glob("*.mp4"))


def frame_share(query, compared, threshold=VIDEO_DISTANCE_BOUND - 1, min_quality=MIN_QUALITY):
    """Meta's frame-share rule (python-threatexchange form: quality filter, dedupe, inclusive
    threshold): (query %, compared %) where a frame matches if some frame on the other side is
    within `threshold`. Inputs are sequences of (hash bytes, quality)."""
    q = list({h for h, qual in query if qual >= min_quality})
    c = list({h for h, qual in compared if qual >= min_quality})
    if not q or not c:
        return 0.0, 0.0
    qa = np.unpackbits(np.frombuffer(b"".join(q), np.uint8).reshape(-1, 32), axis=1)
    ca = np.unpackbits(np.frombuffer(b"".join(c), np.uint8).reshape(-1, 32), axis=1)
    dist = (qa[:, None, :] != ca[None, :, :]).sum(axis=2)
    close = dist <= threshold
    return 100.0 * close.any(axis=1).mean(), 100.0 * close.any(axis=0).mean()


# ---- the script -------------------------------------------------------------------------------

def _distance(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def _image_tables() -> list[str]:
    import pdqhash
    from PIL import Image

    from hashmatch.clients.hashing import hash_image, rgb_from_image
    from hashmatch.core.pdq import pdq_hash

    def package(rgb):
        bits, q = pdqhash.compute(np.ascontiguousarray(rgb))
        return np.packbits(bits.astype(np.uint8)).tobytes(), q

    rows = expected_pdq()
    ours, pkg, thumb = {}, {}, {}
    for path in dict.fromkeys(r.path for r in rows):
        ours[path] = hash_image(CONFORMANCE / path)
        with Image.open(CONFORMANCE / path) as img:
            rgb = rgb_from_image(img)
            pkg[path] = package(rgb)
            img.thumbnail((512, 512))
            thumb[path] = pdq_hash(rgb_from_image(img))

    out = ["| image | q | source | kind | bound | ours (full res) | thumbnail 512 first |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    worst: dict[str, int] = {}
    for r in rows:
        h = ours[r.path]
        bound = bound_for(r, h.quality)
        d_full, d_thumb = _distance(h.pdq, r.hash), _distance(thumb[r.path][0], r.hash)
        if bound is not None:
            key = r.short_source
            worst[key] = max(worst.get(key, 0), d_full)
        out.append(f"| {r.path.removeprefix('images/')} | {h.quality} | {r.short_source} | {r.kind} "
                   f"| {'q<50: not checked' if bound is None else '<= ' + str(bound)} "
                   f"| {d_full} | {d_thumb} |")
    out += ["", "Largest distance per source (rows with a bound):", "",
            "| source | max distance |", "| --- | --- |"]
    out += [f"| {k} | {v} |" for k, v in sorted(worst.items())]
    from PIL import ImageOps

    exif_path = "images/reg-test-input/exif-rotn/exif-rotn-6.jpg"
    exif_rows = [r for r in rows if r.path == exif_path]
    if exif_rows:
        with Image.open(CONFORMANCE / exif_path) as img:
            rotated = pdq_hash(rgb_from_image(ImageOps.exif_transpose(img)))[0]
        out += ["", f"EXIF orientation applied before hashing instead (exif-rotn-6.jpg): distance "
                    f"{_distance(rotated, exif_rows[0].hash)} to the C++ row, against "
                    f"{_distance(ours[exif_path].pdq, exif_rows[0].hash)} in stored order."]
    out += ["", "Float32 luma (ours, as Meta's C++) against the pdqhash package (float64 luma "
            "rounded to float32) on the same Pillow pixels:", "",
            "| image | distance | quality ours / pdqhash |", "| --- | --- | --- |"]
    for path in ours:
        out.append(f"| {path.removeprefix('images/')} | {_distance(ours[path].pdq, pkg[path][0])} "
                   f"| {ours[path].quality} / {pkg[path][1]} |")
    return out


def _video_tables() -> list[str]:
    from hashmatch.clients.hashing import hash_video

    out = ["| video | fps | frames hashed | exact | exact share | max distance (both q >= 50) "
           "| frames with a quality off by > 1 | frame share vs expected 1-fps subset |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for mp4 in sample_videos():
        got = hash_video(mp4)
        expected = [ln for ln in expected_vpdq(mp4.with_suffix(".txt"))
                    if ln.frame_number % int(got.fps) == 0]
        exact = sum(f.pdq == e.hash for f, e in zip(got.frames, expected))
        dists = [_distance(f.pdq, e.hash) for f, e in zip(got.frames, expected)
                 if f.quality >= MIN_QUALITY and e.quality >= MIN_QUALITY]
        qual_off = sum(abs(f.quality - e.quality) > 1 for f, e in zip(got.frames, expected))
        share = frame_share([(f.pdq, f.quality) for f in got.frames],
                            [(e.hash, e.quality) for e in expected])
        out.append(f"| {mp4.name} | {got.fps:g} | {len(got.frames)} (expected {len(expected)}) "
                   f"| {exact} | {100 * exact / max(len(expected), 1):.0f}% "
                   f"| {max(dists, default=0)} | {qual_off} "
                   f"| {share[0]:.0f}% / {share[1]:.0f}% |")
    return out


def _swscale_tables() -> list[str]:
    """Every frame of each sample video, converted with vpdq's flags (AREA) and with AREA plus
    ACCURATE_RND, against all lines of the expected file."""
    import av
    from av.video.reformatter import Interpolation

    from hashmatch.clients.video import _legacy_yuv_options
    from hashmatch.core.pdq import pdq_hash

    flags = {"AREA (ours, vpdq's flags)": Interpolation.AREA,
             "AREA + ACCURATE_RND": Interpolation.AREA | Interpolation.ACCURATE_RND}
    out = ["| video | conversion | exact frames | max distance (both q >= 50) |",
           "| --- | --- | --- | --- |"]
    for mp4 in sample_videos():
        expected = expected_vpdq(mp4.with_suffix(".txt"))
        for name, flag in flags.items():
            exact, worst = 0, 0
            with av.open(str(mp4)) as c:
                for i, frame in enumerate(c.decode(video=0)):
                    h, q = pdq_hash(frame.to_ndarray(format="rgb24", interpolation=flag,
                                                     **_legacy_yuv_options(frame.format)))
                    d = _distance(h, expected[i].hash)
                    exact += d == 0
                    if q >= MIN_QUALITY and expected[i].quality >= MIN_QUALITY:
                        worst = max(worst, d)
            out.append(f"| {mp4.name} | {name} | {exact}/{len(expected)} "
                       f"({100 * exact / len(expected):.0f}%) | {worst} |")
    return out


def _luma_precision_table(count: int = 300) -> list[str]:
    """Our float32 luma (Meta's C++) against pdqhash's float64 luma rounded to float32, on the same
    generated pixels. Luma values differ in the last bit often; the hash only where the blur
    averages little (tiny images) or where coefficients crowd the median (flat, smooth images)."""
    import pdqhash

    from hashmatch.core.pdq import luma_from_rgb, pdq_hash
    from tests.media import pattern_rgb

    rng = np.random.default_rng(2024)

    def sizes(lo, hi):
        return int(rng.integers(lo, hi)), int(rng.integers(lo, hi))

    kinds = {
        "noise, 5..63 px a side": lambda: rng.integers(0, 256, (*sizes(5, 64), 3), np.uint8),
        "patterns, 64..399 px": lambda: pattern_rgb(*sizes(64, 400), seed=int(rng.integers(1e9))),
        "near-flat 100x100 (one value +0/1)": lambda: (
            np.full((100, 100, 3), int(rng.integers(0, 255)), np.uint8)
            + rng.integers(0, 2, (100, 100, 3), np.uint8)),
        "smooth gradient 200x150": lambda: np.clip(
            np.add.outer(np.arange(200), np.arange(150))[:, :, None] * rng.uniform(0.2, 1.5, 3),
            0, 255).astype(np.uint8),
    }
    out = ["| images | luma values that differ | hashes that differ | max distance "
           "| max quality of a differing hash |", "| --- | --- | --- | --- | --- |"]
    for name, make in kinds.items():
        luma_differs = pixels = differ = worst = 0
        worst_quality = None
        for _ in range(count):
            rgb = make()
            theirs_luma = (rgb[:, :, 0] * 0.299 + rgb[:, :, 1] * 0.587
                           + rgb[:, :, 2] * 0.114).astype(np.float32)
            luma_differs += int((luma_from_rgb(rgb) != theirs_luma).sum())
            pixels += rgb.shape[0] * rgb.shape[1]
            bits, _ = pdqhash.compute(rgb)
            ours, quality = pdq_hash(rgb)
            d = _distance(ours, np.packbits(bits.astype(np.uint8)).tobytes())
            if d:
                differ += 1
                worst = max(worst, d)
                worst_quality = max(worst_quality or 0, quality)
        out.append(f"| {count} {name} | {100 * luma_differs / pixels:.1f}% | {differ} | {worst} "
                   f"| {'-' if worst_quality is None else worst_quality} |")
    return out


def main() -> None:
    import av
    import PIL

    print(f"Generated by `python -m tests.fidelity_table` on {platform.platform()}, "
          f"Python {sys.version.split()[0]}, Pillow {PIL.__version__}, PyAV {av.__version__} "
          f"(FFmpeg {'.'.join(map(str, av.library_versions['libavcodec']))} libavcodec).\n")
    print("## Images\n")
    print("\n".join(_image_tables()))
    print("\n### Float32 against float64 luma\n")
    print("\n".join(_luma_precision_table()))
    print("\n## Videos (1 frame a second)\n")
    print("\n".join(_video_tables()))
    print("\n### Every frame, two swscale settings\n")
    print("\n".join(_swscale_tables()))


if __name__ == "__main__":
    main()
