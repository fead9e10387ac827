"""bench_index runs end to end on a tiny list: every contender built, measured in rounds with
1 and 2 threads, exact ones at recall 1, ratios and the 100M projection written to its JSON."""
import json

from bench import bench_index


def test_bench_index_runs_and_reports(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_index, "RESULTS", tmp_path)
    assert bench_index.main(["--n", "3000,6000", "--queries", "60", "--repeats", "2",
                             "--budget", "0.02", "--only", "speed,compact,brute,flat,mh"]) == 0
    report = json.loads(next(tmp_path.glob("bench_index_n3000_6000_*.json")).read_text())
    rows = {(r["dataset"], r["key"]): r for r in report["rows"]}
    assert len(rows) == 12
    for (dataset, key), row in rows.items():
        assert [(x["round"], x["threads"]) for x in row["runs"]] == [(0, 1), (0, 2), (1, 1),
                                                                     (1, 2)]
        assert all(x["qps"] > 0 for x in row["runs"])
        if key != "mh0":  # faiss's default multi-hash is inexact by design
            assert row["recall"] == 1.0, (dataset, key)
        assert row["extra_hits"] == 0
    assert rows[("random 6,000", "hashmatch-speed")]["extra"]["describe"]["engine"] in (
        "BruteForceEngine", "MultiIndexEngine")
    ratios = report["ratios"]["random 3,000, 1 thread(s)"]
    assert len(ratios["vs faiss MultiHash nflip=0"]) == 2 and len(ratios["vs best exact faiss"]) == 2
    projection = report["projection_100m"]
    assert projection["bytes_per_hash"] == 32 + 4 + 16 * 6 + 16 * 65537 * 4 / 1e8
    assert projection["qps_1_thread"] is None or projection["qps_1_thread"] > 0
