"""Video benchmark for issue 3: how fast a device hashes 720p video, and how fast a vPDQ query is
answered against 10,000 listed videos, each beside a named baseline in the same run.

    .venv/bin/python -m bench.bench_video [--videos 10000] [--queries 200] [--numpy-queries 30]

1. Hashing: a generated 1280x720, 30 fps clip (`bench_hashing.make_720p_clip`) hashed end to
   end by `hashmatch.clients.video.hash_video` (demux, decode, RGB, PDQ) at 1 frame a second and
   at every frame, with 1 hashing thread and with all cores. Baseline: decoding the same clip
   with PyAV and nothing else (the floor any hasher on this decoder pays).
2. Matching: a list of `--videos` videos of 30..120 frame hashes each (see `make_list`) stored in
   a SQLite store through `Store.submit_case` and loaded (a) into a core `HashIndex` with the
   frame-share rule of `hashmatch.core.video` in this process, the code the server runs, and
   (b) by a real server subprocess queried over loopback gRPC with
   `HashmatchClient.match_video`. Baselines on the same queries: the compiled scan
   (`kernels.range_search` over every listed frame) and a NumPy brute force (XOR + popcount
   over every listed frame), both followed by the same aggregation. Every answer of every
   contender is compared with the compiled scan's; a difference is an error (exit 1).

Latency is per video query (all of its frames in one call), one query at a time. Each number is
printed with the machine and kernel backend; everything goes to bench/results/*.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.machine import describe, usable_cores
from hashmatch.core import HashIndex, kernels
from hashmatch.core import video as vpdq

RESULTS = Path(__file__).resolve().parent / "results"
EXPECTED_VPDQ = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "expected-vpdq"
THRESHOLD = 31


def stamp(info: dict) -> str:
    return (f"[{info['cpu']}, {info['usable_cores']} usable cores, load "
            f"{os.getloadavg()[0]:.1f}, kernel {kernels.backend_name()}]")


# ---------------------------------------------------------------------- hashing


def bench_hashing(clip_seconds: int, info: dict) -> list[dict]:
    import av

    from bench.bench_hashing import make_720p_clip
    from hashmatch.clients.video import hash_video

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_720p_clip(Path(tmp) / "clip720p.mp4", clip_seconds)
        start = time.perf_counter()
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            decoded = sum(1 for _ in container.decode(stream))
        wall = time.perf_counter() - start
        rows.append({"contender": "baseline: PyAV decode only", "seconds_per_hash": None,
                     "threads": "ffmpeg auto", "frames_hashed": 0, "frames_decoded": decoded,
                     "wall_s": wall, "video_s_per_s": clip_seconds / wall})
        for seconds_per_hash in (1.0, 0.0):
            for workers in sorted({1, usable_cores()}):
                hash_video(clip, seconds_per_hash=seconds_per_hash, workers=workers)  # warm
                start = time.perf_counter()
                got = hash_video(clip, seconds_per_hash=seconds_per_hash, workers=workers)
                wall = time.perf_counter() - start
                rows.append({"contender": "hashmatch hash_video", "threads": workers,
                             "seconds_per_hash": seconds_per_hash,
                             "frames_hashed": len(got.frames), "frames_decoded": decoded,
                             "wall_s": wall, "video_s_per_s": clip_seconds / wall})
    print(f"\nHashing a generated 1280x720 30 fps clip of {clip_seconds} s {stamp(info)}:\n")
    print("| contender | sampling | hashing threads | frames hashed | wall s "
          "| video s per wall s |\n| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        sampling = ("-" if r["seconds_per_hash"] is None else
                    "every frame" if r["seconds_per_hash"] == 0 else
                    f"1 per {r['seconds_per_hash']:g} s")
        print(f"| {r['contender']} | {sampling} | {r['threads']} | {r['frames_hashed']} "
              f"| {r['wall_s']:.2f} | {r['video_s_per_s']:.1f} |")
    return rows


# ---------------------------------------------------------------------- the list


def real_sequences() -> list[np.ndarray]:
    """Every frame of quality >= 50 of Meta's published vPDQ files (full size only), as
    uint8[n, 32] each: real PDQ content with its real frame-to-frame drift."""
    sequences = []
    for path in sorted(EXPECTED_VPDQ.glob("*.txt")):
        if path.stem.endswith("-128x128"):
            continue
        rows = [line.split(",") for line in path.read_text().splitlines() if line.strip()]
        frames = [bytes.fromhex(r[2]) for r in rows if int(r[1]) >= vpdq.MIN_QUALITY]
        sequences.append(np.frombuffer(b"".join(frames), np.uint8).reshape(-1, 32))
    return sequences


def flip_bits(hashes: np.ndarray, bits: np.ndarray, rng) -> np.ndarray:
    """Each row with about bits[i] of its 256 bits flipped (each bit independently)."""
    mask = rng.random((len(hashes), 256)) < (np.asarray(bits, float)[:, None] / 256)
    return hashes ^ np.packbits(mask, axis=1)


def random_walk(length: int, step_bits: int, rng) -> np.ndarray:
    """A random start hash, then each frame the previous one with about step_bits flipped: a
    video whose content drifts, as consecutive 1-per-second frames do."""
    start = rng.integers(0, 256, (1, 32), np.uint8)
    steps = flip_bits(np.zeros((length, 32), np.uint8), np.full(length, step_bits), rng)
    steps[0] = 0
    return np.bitwise_xor.accumulate(steps, axis=0) ^ start


def make_list(n_videos: int, derived_share: float, seed: int = 0):
    """`n_videos` listed videos of 30..120 frames: `derived_share` of them are windows of the
    real sequences with 0..12 bits flipped per frame (many near-duplicates of the same content,
    as when several people list one video); the rest random walks with 8..64 bits per step.
    Returns (list of uint8[k, 32] prepared frames, list of kinds)."""
    rng = np.random.default_rng(seed)
    sources = real_sequences()
    videos, kinds = [], []
    for _ in range(n_videos):
        length = int(rng.integers(30, 121))
        if sources and rng.random() < derived_share:
            source = sources[int(rng.integers(len(sources)))]
            length = min(length, len(source))
            first = int(rng.integers(0, len(source) - length + 1))
            frames = flip_bits(source[first:first + length],
                               rng.integers(0, 13, length), rng)
            kinds.append("derived")
        else:
            frames = random_walk(length, int(rng.integers(8, 65)), rng)
            kinds.append("random walk")
        videos.append(vpdq.prepare_frames(frames)[0])
    return videos, kinds


def make_queries(videos: list[np.ndarray], kinds: list[str], n_queries: int, seed: int = 1):
    """Half copies of listed videos (a window of 50..100% of the frames, 0..10 bits flipped per
    frame: should match), half unlisted random walks (should not). Returns [(kind, listed
    position or -1, uint8[q, 32])]."""
    rng = np.random.default_rng(seed)
    queries = []
    for i in range(n_queries):
        if i % 2 == 0:
            position = int(rng.integers(len(videos)))
            frames = videos[position]
            length = max(1, int(len(frames) * rng.uniform(0.5, 1.0)))
            first = int(rng.integers(0, len(frames) - length + 1))
            queries.append((f"copy of a {kinds[position]} video", position,
                            flip_bits(frames[first:first + length],
                                      rng.integers(0, 11, length), rng)))
        else:
            queries.append(("unlisted", -1, random_walk(int(rng.integers(30, 121)),
                                                        int(rng.integers(8, 65)), rng)))
    return queries


# ---------------------------------------------------------------------- contenders


class FrameList:
    """The listed frames as the server holds them: ids `entry << FRAME_BITS | frame`."""

    def __init__(self, entry_ids: np.ndarray, videos: list[np.ndarray]):
        counts = np.array([len(v) for v in videos], np.int64)
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        frame = (np.arange(counts.sum()) - starts).astype(np.uint64)
        self.ids = (np.repeat(entry_ids.astype(np.uint64), counts)
                    << np.uint64(vpdq.FRAME_BITS)) | frame
        self.hashes = np.concatenate(videos)
        self.words = kernels.as_words(self.hashes, "hashes")
        self.counts = dict(zip(entry_ids.tolist(), counts.tolist()))

    def frame_counts(self, entries: np.ndarray) -> np.ndarray:
        get = self.counts.get
        return np.fromiter((get(e, 0) for e in entries.tolist()), np.int64, len(entries))


def search_scan(frame_list: FrameList, frames: np.ndarray):
    offsets, rows, distances, _ = kernels.range_search(kernels.as_words(frames, "frames"),
                                                       frame_list.words, THRESHOLD, threads=0)
    return offsets, frame_list.ids[rows], distances


def search_numpy(frame_list: FrameList, frames: np.ndarray):
    """Brute force in NumPy: XOR and popcount of each query frame against every listed frame."""
    words = kernels.as_words(frames, "frames")
    offsets, ids, distances = [0], [], []
    for q in words:
        d = np.bitwise_count(frame_list.words ^ q).sum(axis=1, dtype=np.int32)
        rows = np.flatnonzero(d <= THRESHOLD)
        ids.append(frame_list.ids[rows])
        distances.append(d[rows])
        offsets.append(offsets[-1] + len(rows))
    return (np.asarray(offsets, np.int64), np.concatenate(ids),
            np.concatenate(distances).astype(np.int32))


def aggregate_with(search, frame_list: FrameList, frames: np.ndarray):
    prepared, _ = vpdq.prepare_frames(frames)
    offsets, ids, distances = search(frame_list, prepared)
    return vpdq.aggregate(offsets, ids, distances, frame_list.frame_counts)


def answer(found) -> list[tuple]:
    return [(int(e), float(np.float32(q)), float(np.float32(c)), int(d)) for e, q, c, d in zip(
        found.entry_ids, found.query_percent, found.compared_percent, found.distances)]


def timed_interleaved(contenders: dict, queries, truth) -> dict:
    """Runs every contender on query 0, then on query 1, ... (order rotating per query), so
    noise from other work on the machine falls on all of them alike. A contender given as
    (fn, limit) runs only on the first `limit` queries. Returns {name: (seconds per query,
    answers that differ from truth)}."""
    results = {name: ([], 0) for name in contenders}
    names = list(contenders)
    for i, (_, _, frames) in enumerate(queries):
        for name in names[i % len(names):] + names[:i % len(names)]:
            fn, limit = contenders[name]
            if i >= limit:
                continue
            start = time.perf_counter()
            got = fn(frames)
            elapsed = time.perf_counter() - start
            latencies, wrong = results[name]
            latencies.append(elapsed)
            results[name] = (latencies, wrong + (answer(got) != truth[i]))
    return results


def summary(name: str, latencies: list[float], wrong: int, note: str = "",
            queries=None) -> dict:
    ms = np.asarray(latencies) * 1000
    out = {"contender": name, "queries": len(ms), "p50_ms": float(np.percentile(ms, 50)),
           "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()),
           "mean_ms": float(ms.mean()), "answers_differing_from_scan": wrong, "note": note,
           "by_query_kind": {}}
    for kind in sorted({q[0] for q in queries or ()}):
        mine = ms[[i for i, q in enumerate(queries) if q[0] == kind]]
        out["by_query_kind"][kind] = {"queries": len(mine),
                                      "p50_ms": float(np.percentile(mine, 50)),
                                      "p99_ms": float(np.percentile(mine, 99))}
    return out


# ---------------------------------------------------------------------- the server


def store_list(db_path: str, videos: list[np.ndarray]) -> tuple[np.ndarray, str]:
    """Stores the videos as cases of up to 1000 (the server's max_case_items); returns their
    entry ids and a platform API key."""
    from hashmatch.server.media import Video
    from hashmatch.server.store import Store

    store = Store(db_path)
    try:
        api_key = store.add_platform("bench-video")
        entry_ids = []
        for start in range(0, len(videos), 1000):
            media = [Video(md5=None, frames=v, qualities=np.full(len(v), 100, np.uint8))
                     for v in videos[start:start + 1000]]
            entry_ids += store.submit_case(media).entry_ids
    finally:
        store.close()
    return np.asarray(entry_ids, np.uint64), api_key


UNCAPPED = 100_000  # matches a query may get from the benchmark's server


def start_server(db_path: str, workdir: Path):
    port_file = workdir / "port"
    with open(workdir / "server.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "hashmatch.server", "--db", db_path, "--listen",
             "127.0.0.1:0", "--port-file", str(port_file),
             # The default cap (16 matches a query) would cut the answers of copies of
             # derived videos, which match dozens of listed ones: compare whole answers.
             "--max-matches-per-hash", str(UNCAPPED)], stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    started = time.perf_counter()
    while not port_file.exists():
        if process.poll() is not None or time.perf_counter() - started > 300:
            process.kill()
            raise RuntimeError(f"server did not start:\n{(workdir / 'server.log').read_text()}")
        time.sleep(0.05)
    return process, f"127.0.0.1:{port_file.read_text().strip()}", time.perf_counter() - started


def server_contender(target: str, api_key: str):
    from hashmatch.clients.client import HashmatchClient

    client = HashmatchClient(target, api_key=api_key, timeout=60)

    def match(frames):
        hits = client.match_video(frames, qualities=[100] * len(frames))
        order = sorted(hits, key=lambda h: (h.distance, h.entry_id))
        return vpdq.VideoMatches(
            np.array([h.entry_id for h in order], np.uint64),
            np.array([h.query_match_percent for h in order]),
            np.array([h.compared_match_percent for h in order]),
            np.array([h.distance for h in order], np.int32))
    return client, match


# ---------------------------------------------------------------------- run


def bench_matching(args, info: dict) -> dict:
    started = time.perf_counter()
    videos, kinds = make_list(args.videos, args.derived_share)
    queries = make_queries(videos, kinds, args.queries)
    frames_listed = sum(len(v) for v in videos)
    print(f"\nList: {len(videos)} videos, {frames_listed} frame hashes "
          f"({kinds.count('derived')} derived from Meta's vPDQ files, the rest random walks); "
          f"{len(queries)} queries of {min(len(q[2]) for q in queries)}.."
          f"{max(len(q[2]) for q in queries)} frames, half copies of listed videos, half "
          f"unlisted; made in {time.perf_counter() - started:.1f} s")

    with tempfile.TemporaryDirectory() as tmp:
        db_path = str(Path(tmp) / "list.db")
        start = time.perf_counter()
        entry_ids, api_key = store_list(db_path, videos)
        store_s = time.perf_counter() - start
        frame_list = FrameList(entry_ids, videos)

        start = time.perf_counter()
        index = HashIndex()
        index.add(frame_list.ids, frame_list.hashes)
        index.compact()
        build_s = time.perf_counter() - start
        described = index.describe()

        def subject(frames):
            return vpdq.match_video(index, frames, frame_list.frame_counts, threshold=THRESHOLD)

        def scan(frames):
            return aggregate_with(search_scan, frame_list, frames)

        for _, _, frames in queries[:5]:
            subject(frames), scan(frames)
        truth = [answer(scan(frames)) for _, _, frames in queries]
        expected_ok = sum(
            (position >= 0 and int(entry_ids[position]) in {t[0] for t in truth[i]})
            or (position < 0 and not truth[i]) for i, (_, position, _) in enumerate(queries))

        def subject_one_thread(frames):
            return vpdq.match_video(index_one_thread, frames, frame_list.frame_counts,
                                    threshold=THRESHOLD)

        index_one_thread = HashIndex(threads=1)
        index_one_thread.add(frame_list.ids, frame_list.hashes)
        index_one_thread.compact()

        process, target, load_s = start_server(db_path, Path(tmp))
        try:
            client, match = server_contender(target, api_key)
            with client:
                for _, _, frames in queries[:5]:
                    match(frames), subject_one_thread(frames)
                engine = f"engine {described['engine']}"
                everything = len(queries)
                contenders = {
                    "hashmatch in process: HashIndex + core.video, all threads":
                        ((subject, everything), engine),
                    "hashmatch in process, 1 search thread":
                        ((subject_one_thread, everything), engine),
                    "hashmatch server over loopback gRPC (HashmatchClient.match_video)":
                        ((match, everything),
                         f"server start incl. list load {load_s:.1f} s"),
                    "baseline: compiled scan (kernels.range_search, all threads) + core.video":
                        ((scan, everything), ""),
                    "baseline: NumPy brute force (XOR + bitwise_count) + core.video":
                        ((lambda f: aggregate_with(search_numpy, frame_list, f),
                          args.numpy_queries),
                         f"first {min(args.numpy_queries, everything)} queries only"),
                }
                measured = timed_interleaved({n: c for n, (c, _) in contenders.items()},
                                             queries, truth)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        rows = [summary(name, *measured[name], note, queries[:len(measured[name][0])])
                for name, (_, note) in contenders.items()]

    print(f"\nvPDQ query latency, {len(videos)} listed videos ({frames_listed} frames), "
          f"threshold {THRESHOLD}, one query at a time {stamp(info)}:\n")
    print("| contender | queries | p50 ms | p99 ms | max ms | answers differing from scan "
          "| note |\n| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['contender']} | {r['queries']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
              f"| {r['max_ms']:.2f} | {r['answers_differing_from_scan']} | {r['note']} |")
    print("\nBy query kind (p50 / p99 ms):\n")
    for r in rows:
        if r["by_query_kind"]:
            print(f"- {r['contender']}: " + "; ".join(
                f"{kind} ({v['queries']}): {v['p50_ms']:.2f} / {v['p99_ms']:.2f}"
                for kind, v in r["by_query_kind"].items()))
    print(f"\nStore load {store_s:.1f} s; index build {build_s:.1f} s "
          f"({described}); queries whose answer is what they were made to be: "
          f"{expected_ok}/{len(queries)}")
    return {"videos": len(videos), "frames": frames_listed,
            "derived_videos": kinds.count("derived"), "queries": len(queries),
            "query_frames": [len(q[2]) for q in queries], "store_s": store_s,
            "build_s": build_s, "index": described, "expected_answers": expected_ok,
            "rows": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clip-seconds", type=int, default=20, help="length of the 720p clip")
    parser.add_argument("--videos", type=int, default=10_000, help="listed videos")
    parser.add_argument("--derived-share", type=float, default=0.1,
                        help="share of listed videos derived from real vPDQ files")
    parser.add_argument("--queries", type=int, default=200, help="video queries timed")
    parser.add_argument("--numpy-queries", type=int, default=30,
                        help="queries timed for the (slow) NumPy baseline")
    parser.add_argument("--skip-hashing", action="store_true")
    args = parser.parse_args(argv)
    info = describe()
    print(f"Machine: {platform.platform()}; CPU {info['cpu']}; {info['usable_cores']} usable "
          f"cores; load average {info['load_average']}; Python {info['python']}; "
          f"NumPy {info['numpy']}; kernel backend {info['kernel_backend']}")
    print("The machine may be shared: compare numbers within one run, not across runs.")
    result = {"machine": info, "args": vars(args),
              "when": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    if not args.skip_hashing:
        result["hashing"] = bench_hashing(args.clip_seconds, info)
    result["matching"] = bench_matching(args, info)
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.mkdir(exist_ok=True)
    name = (f"bench_video_n{args.videos}_"
            f"{datetime.datetime.now(datetime.timezone.utc):%Y%m%dT%H%M%SZ}.json")
    (RESULTS / name).write_text(json.dumps(result, indent=2))
    print(f"\nWrote bench/results/{name}")
    wrong = sum(r["answers_differing_from_scan"] for r in result["matching"]["rows"])
    if wrong:
        print(f"ERROR: {wrong} answers differ from the compiled scan's", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
