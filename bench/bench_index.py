"""Index benchmark: hashmatch's HashIndex against faiss on the same data, interleaved in one run.

`python -m bench.bench_index --n 1000000,10000000` builds, for each list size, one list of random
256-bit hashes (and, with --pdq-n, one of PDQ hashes of generated pictures), one query set per
list (half random, half near-duplicates of listed hashes with 0..40 bits flipped), then every
contender: hashmatch (speed and compact layouts), the brute-force scan, faiss IndexBinaryFlat and
IndexBinaryMultiHash(256, 16, 16) with nflip 0 (faiss's default, inexact) and 1 (exact at 31).
It then measures them in rounds (--repeats), each round every contender with 1 thread and with
2, so the ratios come from neighbouring measurements on a shared machine; the load average is
noted beside each one. Recall is against the brute-force truth (distance <= threshold). faiss's
binary range_search keeps distances < radius, so it is given threshold + 1; IndexFlatL2 over 0/1
floats (--only ...,l2) gets threshold + 0.5. With two list sizes it also projects 100M hashes
(memory from the layout, rate from a line through the two measured sizes). Everything goes to
bench/results/*.json.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import pathlib
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from bench.machine import describe
from hashmatch.core import HashIndex, kernels

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


@dataclass
class Contender:
    """One index under test: how it was built, and every timed measurement of it."""
    dataset: str
    key: str
    label: str
    path: str
    n: int
    build_s: float = 0.0
    bytes_per_hash: float | None = None
    memory_note: str = ""
    note: str = ""
    chunk: int = 0
    recall: float | None = None
    extra_hits: int | None = None
    queries_timed: int = 0
    runs: list = field(default_factory=list)  # {"round", "threads", "qps", "load"}
    extra: dict = field(default_factory=dict)
    search: Callable | None = field(default=None, repr=False)  # (queries, threads) -> [set]

    def qps(self, threads: int) -> list[float]:
        return [r["qps"] for r in self.runs if r["threads"] == threads]


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


def hashmatch_contender(name, listed, threshold, layout) -> Contender:
    ids = np.arange(len(listed), dtype=np.uint64)
    gc.collect()
    before = rss_bytes()
    t0 = time.perf_counter()
    index = HashIndex(layout=layout)
    index.add(ids, listed)
    index.compact()
    build = time.perf_counter() - t0
    rss = rss_bytes() - before
    info = index.describe()
    slots = len(info.get("slot_widths", []))
    how = f"{slots} slots" + (", chain filter" if info.get("chained") else "")
    c = Contender(name, f"hashmatch-{layout}", f"hashmatch HashIndex, {layout} layout",
                  f"{info['kernel']}, {info['engine']} {how}", len(listed), build,
                  index.memory_bytes() / len(listed),
                  f"counted: hashes+ids+tables; RSS delta {rss / len(listed):.1f} B/hash",
                  extra={"describe": info})

    def search(part, threads):
        index.threads = threads
        hits = index.search(part, threshold)
        return csr_sets(hits.offsets, hits.ids)

    c.search = search
    return c


def brute_contender(name, listed, threshold) -> Contender:
    words = kernels.as_words(listed)
    c = Contender(name, "brute", "hashmatch brute-force scan", kernels.backend_name(),
                  len(listed), 0.0, 32.0, "the hashes only")

    def search(part, threads):
        o, rows = kernels.range_search(part, words, threshold, threads)[:2]
        return csr_sets(o, rows)

    c.search = search
    return c


def faiss_contenders(name, kind, listed, threshold) -> list[Contender]:
    """kind flat, mh (one multi-hash index searched with nflip 0 and with nflip 1) or l2."""
    import faiss

    n = len(listed)
    path = "faiss " + faiss.__version__ + " " + " ".join(faiss.get_compile_options().split())
    gc.collect()
    before = rss_bytes()
    t0 = time.perf_counter()
    if kind == "flat":
        index = faiss.IndexBinaryFlat(256)
        index.add(listed)
    elif kind == "mh":
        index = faiss.IndexBinaryMultiHash(256, 16, 16)
        index.add(listed)
    else:
        index = faiss.IndexFlatL2(256)
        for start in range(0, n, 1 << 18):
            index.add(np.unpackbits(listed[start:start + (1 << 18)], axis=1).astype(np.float32))
    build = time.perf_counter() - t0
    rss = (rss_bytes() - before) / n
    if kind == "l2":
        size, note = 256 * 4.0, f"float vectors; RSS delta {rss:.1f} B/hash"
    else:
        size = faiss.serialize_index_binary(index).nbytes / n
        note = (f"serialized size (hash maps' own overhead not counted; faiss numbers rows "
                f"itself, no ids); RSS delta {rss:.1f} B/hash")

    def searcher(nflip):
        def search(part, threads):
            faiss.omp_set_num_threads(threads)
            if kind == "l2":
                lims, _, labels = index.range_search(
                    np.unpackbits(part, axis=1).astype(np.float32), threshold + 0.5)
            else:
                if nflip is not None:
                    index.nflip = nflip
                lims, _, labels = index.range_search(part, threshold + 1)
            return csr_sets(lims, labels)
        return search

    if kind == "flat":
        variants = [("flat", "faiss IndexBinaryFlat", None)]
    elif kind == "mh":
        variants = [("mh0", "faiss IndexBinaryMultiHash(256,16,16) nflip=0", 0),
                    ("mh1", "faiss IndexBinaryMultiHash(256,16,16) nflip=1", 1)]
    else:
        variants = [("l2", "faiss IndexFlatL2 (0/1 floats)", None)]
    out = []
    for key, label, nflip in variants:
        c = Contender(name, key, label, path, n, build, size, note)
        c.search = searcher(nflip)
        out.append(c)
    return out


def fit_chunk(c: Contender, queries, budget, chunk) -> None:
    """Two small untimed searches (the first warms up) size the chunks: every contender gets
    `chunk` queries a call where one such call fits the budget, the slow ones chunks that fit a
    quarter of it (at 10M, 1,024 queries take faiss IndexBinaryFlat minutes)."""
    c.search(queries[:16], 1)
    t0 = time.perf_counter()
    c.search(queries[16:80], 1)
    rate = 64 / max(time.perf_counter() - t0, 1e-9)
    c.chunk = chunk if chunk <= rate * budget else int(max(8, rate * budget / 4))


def measure(contenders, queries, expected, rounds, threads, budget) -> None:
    for rnd in range(rounds):
        for c in contenders:
            for t in threads:
                load = os.getloadavg()[0]
                qps, timed, sets = timed_search(lambda part: c.search(part, t), queries, budget,
                                                c.chunk)
                c.runs.append({"round": rnd, "threads": t, "qps": qps, "load": round(load, 2)})
                if rnd == 0 and t == threads[0]:
                    c.queries_timed = timed
                    c.recall, c.extra_hits = recall_of(sets, expected[:timed])
                print(f"   round {rnd + 1} {c.label}: {t} thread(s) {qps:,.0f} q/s "
                      f"(load {load:.1f})", flush=True)


def ratios(rows: list[Contender], threads: int) -> dict:
    """Per round: hashmatch speed over faiss nflip=0, and over the fastest exact faiss index."""
    by = {c.key: c for c in rows}
    out = {}
    if "hashmatch-speed" not in by:
        return out
    ours = by["hashmatch-speed"].qps(threads)
    if "mh0" in by:
        out["vs faiss MultiHash nflip=0"] = [a / b for a, b in zip(ours, by["mh0"].qps(threads))]
    exact = [by[k].qps(threads) for k in ("flat", "mh1", "l2") if k in by]
    if exact:
        best = [max(v) for v in zip(*exact)]
        out["vs best exact faiss"] = [a / b for a, b in zip(ours, best)]
    return out


def fmt(v, spec):
    if v is None:
        width = "".join(c for c in spec.split(".")[0].split(",")[0] if c.isdigit())
        return "-".rjust(int(width or 1))
    return format(v, spec)


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return (f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"
            if len(values) > 1 else f"{values[0]:,.0f}")


def print_table(rows: list[Contender], info: dict, threshold: int, threads) -> None:
    l3 = f", L3 {info['l3_bytes'] / 2**20:.0f} MiB" if info.get("l3_bytes") else ""
    print(f"\nmachine: {info['cpu']} ({info['cpuid']}{l3}), {info['cores']} cores; threshold "
          f"{threshold} (inclusive); q/s: median (min-max) over the rounds")
    head = (f"{'dataset':<18} {'contender':<48} {'build s':>7} {'B/hash':>6} "
            + " ".join(f"{f'q/s {t} thr':>25}" for t in threads)
            + f" {'recall':>7} {'load':>9}")
    print(head)
    print("-" * len(head))
    for r in rows:
        loads = [x["load"] for x in r.runs]
        load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "-"
        print(f"{r.dataset:<18} {r.label:<48} {fmt(r.build_s, '7.2f')} "
              f"{fmt(r.bytes_per_hash, '6.1f')} "
              + " ".join(f"{spread(r.qps(t)):>25}" for t in threads)
              + f" {fmt(r.recall, '7.4f')} {load:>9}")


def project_100m(speed: dict[int, Contender]) -> dict | None:
    """100M hashes on paper from the speed layout measured at two sizes: memory from the layout
    (rows grow from 3 to 4 bytes at 2^24), time a query on the line through the two sizes."""
    if len(speed) < 2:
        return None
    (n1, a), (n2, b) = sorted(speed.items())[:2]
    t1, t2 = 1 / statistics.median(a.qps(1)), 1 / statistics.median(b.qps(1))
    per_hash = (t2 - t1) / (n2 - n1)
    n = 100_000_000
    t = t1 + per_hash * (n - n1)
    offsets = 16 * 65537 * 4 / n
    memory = 32 + 4 + 16 * (4 + 2) + offsets
    if per_hash <= 0:  # tiny lists or a load spike: no line to extend
        return {"n": n, "bytes_per_hash": memory, "gb": memory * n / 1e9, "qps_1_thread": None,
                "arithmetic": f"memory {memory:.1f} B/hash; no rate: a query took no longer "
                              f"at {n2:,} hashes than at {n1:,}"}
    return {
        "n": n, "bytes_per_hash": memory, "gb": memory * n / 1e9, "qps_1_thread": 1 / t,
        "arithmetic": (f"memory: 32 (hash) + 4 (id) + 16 tables x (4-byte row + 2-byte next "
                       f"slot) + 16 x 65,537 x 4-byte bucket starts / 1e8 = {memory:.1f} B/hash"
                       f" = {memory * n / 1e9:.1f} GB; time a query: {t1 * 1e6:.1f} us at "
                       f"{n1:,} and {t2 * 1e6:.1f} us at {n2:,} (medians, 1 thread) give "
                       f"{per_hash * 1e15:.2f} us per 1e9 listed hashes, so {t1 * 1e6:.1f} + "
                       f"{per_hash * 1e6:.3e} x {n - n1:,} = {t * 1e6:.0f} us = "
                       f"{1 / t:,.0f} q/s (the buckets hold 10x the rows of 10M: the filter's "
                       f"scan and its survivors grow with n)")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", default="1000000",
                    help="listed hashes of the random lists, comma list (e.g. 1000000,10000000)")
    ap.add_argument("--queries", type=int, default=4000)
    ap.add_argument("--threshold", type=int, default=31)
    ap.add_argument("--pdq-n", type=int, default=0,
                    help="also a list of PDQ hashes of generated pictures (about 1 ms each to "
                         "draw and hash), measured like the random ones")
    ap.add_argument("--budget", type=float, default=1.5, help="seconds per timed measurement")
    ap.add_argument("--chunk", type=int, default=500, help="queries per search call, at most")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of measurements")
    ap.add_argument("--threads", default="1,2", help="thread counts measured, comma list")
    ap.add_argument("--faiss-l2-max-bytes", type=float, default=4e9)
    ap.add_argument("--only", default="",
                    help="comma list: speed,compact,brute,flat,mh,l2 (mh: nflip 0 and 1); "
                         "default all but l2")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    chosen = set(filter(None, args.only.split(","))) or {"speed", "compact", "brute", "flat",
                                                         "mh"}
    threads = [int(t) for t in args.threads.split(",")]
    rng = np.random.default_rng(args.seed)
    info = describe()
    datasets = [(f"random {int(n):,}", int(n), "random") for n in args.n.split(",")]
    if args.pdq_n:
        datasets.append((f"pdq {args.pdq_n:,}", args.pdq_n, "pdq"))
    rows: list[Contender] = []
    speed: dict[int, Contender] = {}
    for name, n, kind in datasets:
        t0 = time.perf_counter()
        if kind == "random":
            listed, how = random_list(rng, n), "uniform random bits"
        else:
            listed, how = pdq_list(rng, n)
        print(f"\n== {name}: {how} ({time.perf_counter() - t0:.0f} s to make)", flush=True)
        queries = make_queries(rng, listed, args.queries)
        expected = truth(listed, queries, args.threshold)
        print(f"   {sum(map(len, expected))} true hits for {len(queries)} queries", flush=True)
        here: list[Contender] = []
        for key in ("speed", "compact"):
            if key in chosen:
                here.append(hashmatch_contender(name, listed, args.threshold, key))
        if "brute" in chosen:
            here.append(brute_contender(name, listed, args.threshold))
        for key in ("flat", "mh", "l2"):
            if key not in chosen:
                continue
            if key == "l2" and n * 1024 > args.faiss_l2_max_bytes:
                print(f"   faiss IndexFlatL2 skipped: {n * 1024 / 1e9:.1f} GB of floats")
                continue
            here.extend(faiss_contenders(name, key, listed, args.threshold))
        for c in here:
            fit_chunk(c, queries, args.budget, args.chunk)
            print(f"   built {c.label}: {c.build_s:.2f} s, {fmt(c.bytes_per_hash, '.1f')} B/hash,"
                  f" chunk {c.chunk}", flush=True)
        measure(here, queries, expected, args.repeats, threads, args.budget)
        for t in threads:
            for what, values in ratios(here, t).items():
                print(f"   {name}, {t} thread(s): hashmatch speed {what}: "
                      + ", ".join(f"{v:.1f}x" for v in values), flush=True)
        if kind == "random" and here and here[0].key == "hashmatch-speed":
            speed[n] = here[0]
        for c in here:
            c.search = None
        rows.extend(here)
        del here
        gc.collect()
    info["load_average_end"] = os.getloadavg()
    print_table(rows, info, args.threshold, threads)
    summary = {f"{name}, {t} thread(s)": ratios([r for r in rows if r.dataset == name], t)
               for name, _, _ in datasets for t in threads}
    projection = project_100m(speed)
    if projection:
        print(f"\n100M on paper: {projection['arithmetic']}")
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"bench_index_n{args.n.replace(',', '_')}_{stamp}.json"
    out.write_text(json.dumps({"machine": info, "args": vars(args), "ratios": summary,
                               "projection_100m": projection,
                               "rows": [asdict(r) for r in rows]}, indent=1, default=str))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
