"""Index benchmark: hashmatch's HashIndex against faiss on the same data, in one run.

`python -m bench.bench_index --n 1000000` (and `--n 10000000`, a longer run) builds one list of
random 256-bit hashes and one of PDQ hashes of generated pictures, one query set per list (half
random, half near-duplicates of listed hashes with 0..40 bits flipped), and measures for every
contender: build time, memory per hash, queries/s with one thread and with all threads, and
recall against the brute-force truth (distance <= threshold). faiss's binary range_search keeps
distances < radius, so it is given threshold + 1; IndexFlatL2 over 0/1 floats gets threshold +
0.5 (its squared L2 distance is the Hamming distance). Each number is printed beside the machine
and the code path that produced it, and everything goes to bench/results/*.json.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import pathlib
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from bench.machine import describe
from hashmatch.core import HashIndex, kernels

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    dataset: str
    contender: str
    path: str
    n: int
    build_s: float | None = None
    bytes_per_hash: float | None = None
    memory_note: str = ""
    qps_1_thread: float | None = None
    qps_all_threads: float | None = None
    queries_timed: int = 0
    recall: float | None = None
    extra_hits: int | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)


def rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def random_list(rng, n) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 32), dtype=np.uint8)


def generated_picture(rng, size=64) -> np.ndarray:
    """A synthetic RGB picture: smooth blobs, a gradient and a few flat shapes."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.zeros((size, size, 3), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        fx, fy, phase = rng.uniform(0.5, 6, 2).tolist() + [rng.uniform(0, 6.3)]
        img += np.sin(fx * 6.3 * x + fy * 6.3 * y + phase)[..., None] * rng.uniform(20, 80, 3)
    img += (x[..., None] * rng.uniform(-100, 100, 3) + y[..., None] * rng.uniform(-100, 100, 3))
    for _ in range(int(rng.integers(0, 4))):
        x0, y0 = rng.integers(0, size - 8, 2)
        w, h = rng.integers(4, size // 2, 2)
        img[y0:y0 + h, x0:x0 + w] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img + 128, 0, 255).astype(np.uint8)


def pdq_list(rng, n) -> tuple[np.ndarray, str]:
    """PDQ hashes of n generated pictures, or (if hashmatch.core.pdq is missing) None."""
    from hashmatch.core import pdq

    out = np.empty((n, 32), np.uint8)
    for i in range(n):
        digest, _quality = pdq.pdq_hash(generated_picture(rng))
        out[i] = np.frombuffer(digest, np.uint8)
    return out, "hashmatch.core.pdq.pdq_hash of generated 64x64 pictures"


def make_queries(rng, listed: np.ndarray, count: int, max_flips: int = 40) -> np.ndarray:
    half = count // 2
    near = listed[rng.integers(0, len(listed), size=half)].copy()
    bits = np.unpackbits(near, axis=1)
    for i, flips in enumerate(rng.integers(0, max_flips + 1, size=half)):
        pos = rng.choice(256, size=int(flips), replace=False)
        bits[i, pos] ^= 1
    near = np.packbits(bits, axis=1)
    return np.concatenate([near, random_list(rng, count - half)])


def truth(listed, queries, threshold):
    o, rows = kernels.range_search(queries, listed, threshold, threads=0)[:2]
    return [set(rows[o[i]:o[i + 1]].tolist()) for i in range(len(queries))]


def recall_of(found: list[set], expected: list[set]) -> tuple[float, int]:
    want = sum(len(e) for e in expected)
    got = sum(len(f & e) for f, e in zip(found, expected))
    extra = sum(len(f - e) for f, e in zip(found, expected))
    return (got / want if want else 1.0), extra


def csr_sets(offsets, labels) -> list[set]:
    return [set(labels[offsets[i]:offsets[i + 1]].tolist()) for i in range(len(offsets) - 1)]


def timed_search(search, queries, budget_s, chunk):
    """Runs search on chunks of queries until all ran or budget_s passed; returns (q/s, n, sets)."""
    sets, done, spent = [], 0, 0.0
    while done < len(queries) and (spent < budget_s or done == 0):
        part = queries[done:done + chunk]
        t0 = time.perf_counter()
        result = search(part)
        spent += time.perf_counter() - t0
        sets.extend(result)
        done += len(part)
    return done / spent, done, sets


def time_one_and_all_threads(row: Row, search, queries, expected, budget, chunk) -> Row:
    """Fills row's q/s with one thread and with all, and its recall from the one-thread run.
    search(part, threads) answers one set of listed rows per query; threads 0 means all."""
    for threads in (1, 0):
        qps, timed, sets = timed_search(lambda part: search(part, threads), queries, budget,
                                        chunk)
        if threads == 1:
            row.qps_1_thread, row.queries_timed = qps, timed
            row.recall, row.extra_hits = recall_of(sets, expected[:timed])
        else:
            row.qps_all_threads = qps
    return row


def set_faiss_threads(n):
    import faiss

    faiss.omp_set_num_threads(n)


def bench_hashmatch(name, listed, queries, expected, threshold, budget, chunk) -> Row:
    ids = np.arange(len(listed), dtype=np.uint64)
    gc.collect()
    before = rss_bytes()
    t0 = time.perf_counter()
    index = HashIndex()
    index.add(ids, listed)
    index.compact()
    build = time.perf_counter() - t0
    rss = rss_bytes() - before
    info = index.describe()
    row = Row(name, "hashmatch HashIndex", f"{info['kernel']}, {info['engine']} "
              f"slots {len(info.get('slot_widths', []))}", len(listed), build,
              index.memory_bytes() / len(listed),
              f"counted: hashes+ids+tables; RSS delta {rss / len(listed):.1f} B/hash",
              extra={"describe": info})

    def search(part, threads):
        index.threads = threads
        hits = index.search(part, threshold)
        return csr_sets(hits.offsets, hits.ids)

    return time_one_and_all_threads(row, search, queries, expected, budget, chunk)


def bench_wide_layout(name, listed, queries, expected, threshold, budget, chunk) -> Row:
    """The compiled tables with the 8 x 32-bit layout HashIndex uses from 8M hashes, forced at
    this size: how the wide slots fare on a list (such as PDQ's) whose slot values cluster."""
    from hashmatch.core import _kernels

    words = kernels.as_words(listed)
    t0 = time.perf_counter()
    tables = _kernels.MihIndex(words, threads=0, slots=8)
    row = Row(name, "hashmatch MihIndex, 8 x 32-bit slots forced", kernels.backend_name(),
              len(listed), time.perf_counter() - t0,
              (words.nbytes + 4 * len(words) + tables.memory_bytes()) / len(words),
              f"hashes + 4-byte ids + tables; key bits {tables.key_bits[0]}, bucket starts "
              f"{tables.offset_bytes} bytes, escaped buckets {tables.escaped_buckets}")
    def search(part, threads):
        o, rows, _, _ = tables.search(kernels.as_words(part), threshold, threads)
        return csr_sets(o, rows)

    return time_one_and_all_threads(row, search, queries, expected, budget, chunk)


def bench_brute(name, listed, queries, expected, threshold, budget, chunk) -> Row:
    words = kernels.as_words(listed)
    row = Row(name, "hashmatch brute force (baseline)", kernels.backend_name(), len(listed), 0.0,
              32.0, "the hashes only")
    def search(part, threads):
        o, rows = kernels.range_search(part, words, threshold, threads)[:2]
        return csr_sets(o, rows)

    return time_one_and_all_threads(row, search, queries, expected, budget, chunk)


def bench_faiss(name, kind, listed, queries, expected, threshold, budget, chunk,
                max_bytes) -> Row:
    import faiss

    n = len(listed)
    path = "faiss " + faiss.__version__ + " " + " ".join(faiss.get_compile_options().split())
    label = {"flat": "faiss IndexBinaryFlat", "mh0": "faiss IndexBinaryMultiHash(256,16,16)",
             "mh1": "faiss IndexBinaryMultiHash(256,16,16) nflip=1",
             "l2": "faiss IndexFlatL2 (0/1 floats)"}[kind]
    row = Row(name, label, path, n)
    if kind == "l2" and n * 256 * 4 > max_bytes:
        row.note = (f"skipped: needs {n * 1024 / 1e9:.1f} GB of float vectors "
                    f"(over --faiss-l2-max-bytes); shared machine")
        return row
    gc.collect()
    before = rss_bytes()
    t0 = time.perf_counter()
    if kind == "flat":
        index = faiss.IndexBinaryFlat(256)
        index.add(listed)
    elif kind in ("mh0", "mh1"):
        index = faiss.IndexBinaryMultiHash(256, 16, 16)
        index.nflip = 0 if kind == "mh0" else 1
        index.add(listed)
    else:
        index = faiss.IndexFlatL2(256)
        for start in range(0, n, 1 << 18):
            index.add(np.unpackbits(listed[start:start + (1 << 18)], axis=1).astype(np.float32))
    row.build_s = time.perf_counter() - t0
    rss = (rss_bytes() - before) / n
    if kind == "l2":
        row.bytes_per_hash = float(256 * 4)
        row.memory_note = f"float vectors; RSS delta {rss:.1f} B/hash"
    else:
        row.bytes_per_hash = faiss.serialize_index_binary(index).nbytes / n
        row.memory_note = (f"serialized size (hash maps' own overhead not counted; faiss "
                           f"numbers rows itself, no ids); RSS delta {rss:.1f} B/hash")

    def search(part, threads):
        set_faiss_threads(threads or os.cpu_count() or 1)
        if kind == "l2":
            lims, _, labels = index.range_search(
                np.unpackbits(part, axis=1).astype(np.float32), threshold + 0.5)
        else:
            lims, _, labels = index.range_search(part, threshold + 1)
        return csr_sets(lims, labels)

    time_one_and_all_threads(row, search, queries, expected, budget,
                             max(1, chunk // 20) if kind == "l2" else chunk)
    del index
    gc.collect()
    return row


def fmt(v, spec):
    if v is None:
        width = "".join(c for c in spec.split(".")[0].split(",")[0] if c.isdigit())
        return "-".rjust(int(width or 1))
    return format(v, spec)


def print_table(rows: list[Row], info: dict, threshold: int) -> None:
    l3 = f", L3 {info['l3_bytes'] / 2**20:.0f} MiB" if info.get("l3_bytes") else ""
    print(f"\nmachine: {info['cpu']} ({info['cpuid']}{l3}), {info['cores']} cores, load average at start "
          f"{info['load_average'][0]:.1f}; threshold {threshold} (inclusive)")
    head = (f"{'dataset':<22} {'contender':<45} {'build s':>8} {'B/hash':>7} {'q/s 1 thr':>10} "
            f"{'q/s all':>10} {'timed q':>7} {'recall':>7}  path / note")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r.dataset:<22} {r.contender:<45} {fmt(r.build_s, '8.2f')} "
              f"{fmt(r.bytes_per_hash, '7.1f')} {fmt(r.qps_1_thread, '10,.0f')} "
              f"{fmt(r.qps_all_threads, '10,.0f')} {r.queries_timed:>7} "
              f"{fmt(r.recall, '7.4f')}  {r.path}{'; ' + r.note if r.note else ''}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="listed hashes (random dataset)")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--threshold", type=int, default=31)
    ap.add_argument("--pdq-n", type=int, default=20_000,
                    help="PDQ hashes of generated pictures (about 1 ms each to draw and hash)")
    ap.add_argument("--budget", type=float, default=4.0, help="seconds per timed measurement")
    ap.add_argument("--chunk", type=int, default=500, help="queries per search call")
    ap.add_argument("--faiss-l2-max-bytes", type=float, default=4e9)
    ap.add_argument("--only", default="",
                    help="comma list: hashmatch,wide,brute,flat,mh0,mh1,l2 (wide: the 8-slot "
                         "layout forced below 8M; off unless named)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    chosen = set(filter(None, args.only.split(","))) or {"hashmatch", "brute", "flat", "mh0",
                                                         "mh1", "l2"}
    rng = np.random.default_rng(args.seed)
    info = describe()
    datasets = [(f"random n={args.n:,}", random_list(rng, args.n), "uniform random bits")]
    if args.pdq_n:
        try:
            t0 = time.perf_counter()
            hashes, how = pdq_list(rng, args.pdq_n)
            datasets.append((f"pdq n={args.pdq_n:,}", hashes,
                             f"{how} ({time.perf_counter() - t0:.0f} s to hash)"))
        except ImportError as exc:
            print(f"no PDQ dataset: {exc}")
    rows: list[Row] = []
    for name, listed, how in datasets:
        print(f"\n== {name}: {how}", flush=True)
        queries = make_queries(rng, listed, args.queries)
        expected = truth(listed, queries, args.threshold)
        print(f"   {sum(map(len, expected))} true hits for {len(queries)} queries", flush=True)
        steps = [("hashmatch", bench_hashmatch), ("wide", bench_wide_layout),
                 ("brute", bench_brute)]
        for key in ("flat", "mh0", "mh1", "l2"):
            steps.append((key, lambda *a, key=key: bench_faiss(
                a[0], key, *a[1:], max_bytes=args.faiss_l2_max_bytes)))
        for key, fn in steps:
            if key not in chosen:
                continue
            row = fn(name, listed, queries, expected, args.threshold, args.budget, args.chunk)
            rows.append(row)
            print(f"   {row.contender}: 1 thread {fmt(row.qps_1_thread, ',.0f')} q/s, all "
                f"{fmt(row.qps_all_threads, ',.0f')} q/s, recall {fmt(row.recall, '.4f')}, "
                f"build {fmt(row.build_s, '.2f')} s, {fmt(row.bytes_per_hash, '.1f')} B/hash "
                f"{row.note}", flush=True)
    info["load_average_end"] = os.getloadavg()
    print_table(rows, info, args.threshold)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"bench_index_n{args.n}_{stamp}.json"
    out.write_text(json.dumps({"machine": info, "args": vars(args),
                               "rows": [asdict(r) for r in rows]}, indent=1, default=str))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
