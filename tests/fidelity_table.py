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


def main() -> None:
    import av
    import PIL

    print(f"Generated by `python -m tests.fidelity_table` on {platform.platform()}, "
          f"Python {sys.version.split()[0]}, Pillow {PIL.__version__}, PyAV {av.__version__} "
          f"(FFmpeg {'.'.join(map(str, av.library_versions['libavcodec']))} libavcodec).\n")
    print("## Images\n")
    print("\n".join(_image_tables()))
    print("\n## Videos (1 frame a second)\n")
    print("\n".join(_video_tables()))


if __name__ == "__main__":
    main()
