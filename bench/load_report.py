"""Turns a load run into what a reader needs: a one-screen summary, a JSON record naming the
machine and backend that produced the numbers, and a plot of throughput and latency over time."""
import json

import numpy as np


def latency_ms(samples) -> dict:
    """p50/p90/p99/max/mean of per-batch latency (send to answer) in milliseconds."""
    if not samples:
        return {k: None for k in ("p50", "p90", "p99", "max", "mean")}
    lat = np.array([s[1] for s in samples]) * 1000.0
    p50, p90, p99 = np.percentile(lat, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99),
            "max": float(lat.max()), "mean": float(lat.mean())}


def timeline(samples, started: float, bucket_s: float = 0.5) -> dict:
    """Per `bucket_s` of answers: time (s from start), hashes/s, p50 and p99 latency (ms)."""
    if not samples:
        return {"t": [], "hashes_per_s": [], "p50_ms": [], "p99_ms": []}
    t = np.array([s[0] for s in samples]) - started
    lat = np.array([s[1] for s in samples]) * 1000.0
    n = np.array([s[2] for s in samples])
    bucket = (t // bucket_s).astype(int)
    rows = {"t": [], "hashes_per_s": [], "p50_ms": [], "p99_ms": []}
    last = bucket.max()
    for b in np.unique(bucket):
        sel = bucket == b
        # The last bucket is cut short by the end of the run; rate it over what it covers.
        width = max(t.max() - b * bucket_s, 1e-3) if b == last else bucket_s
        rows["t"].append(float(b * bucket_s + width))
        rows["hashes_per_s"].append(float(n[sel].sum() / width))
        rows["p50_ms"].append(float(np.percentile(lat[sel], 50)))
        rows["p99_ms"].append(float(np.percentile(lat[sel], 99)))
    return rows


def combine(parts: list[dict]) -> dict:
    """One summary for drives of several servers at once (each a `drive` summary with its
    `_run`): counts summed, the time from the first send to the last answer, latency over all
    batches; each server's own figures under "servers"."""
    runs = [part["_run"] for part in parts]
    total = dict(parts[0])
    result = dict(parts[0]["result"])
    for key in ("sent_hashes", "answered_hashes", "batches", "matches_expected",
                "matches_found", "missed", "unexpected", "batch_errors", "errors"):
        result[key] = sum(part["result"][key] for part in parts)
    result["stream_errors"] = [e for part in parts for e in part["result"]["stream_errors"]]
    result["examples"] = [e for part in parts for e in part["result"]["examples"]][:5]
    result["cleanup_error"] = next((part["result"]["cleanup_error"] for part in parts
                                    if part["result"]["cleanup_error"]), None)
    answered = [run for run in runs if run.batches]
    started = min((run.started for run in answered), default=0.0)
    result["seconds"] = max((run.finished for run in answered), default=0.0) - started
    result["hashes_per_s"] = (result["answered_hashes"] / result["seconds"]
                              if result["seconds"] else 0.0)
    samples = [sample for run in runs for sample in run.samples]
    server_cpu = [part["cpu"]["server_percent"] for part in parts]
    server_s = [part["cpu"]["server_s"] for part in parts]
    total.update(
        result=result, latency_ms=latency_ms(samples), timeline=timeline(samples, started),
        cpu=dict(parts[0]["cpu"], server_percent=None if None in server_cpu else sum(server_cpu),
                 server_s=None if None in server_s else sum(server_s)),
        servers=[{"target": part["server"]["target"],
                  "hashes_per_s": part["result"]["hashes_per_s"],
                  "answered_hashes": part["result"]["answered_hashes"],
                  "errors": part["result"]["errors"],
                  "latency_ms": part["latency_ms"],
                  "server_cpu_percent": part["cpu"]["server_percent"]} for part in parts])
    total["server"] = dict(parts[0]["server"], target=[p["server"]["target"] for p in parts])
    return total


def cpu_used(before, after) -> float | None:
    """CPU seconds between two (user + system seconds) readings; None if either is missing."""
    return None if before is None or after is None else after - before


def cpu_share(before, after, wall_s: float) -> float | None:
    """CPU used between two (user + system seconds) readings, in % of one core."""
    if before is None or after is None or wall_s <= 0:
        return None
    return 100.0 * (after - before) / wall_s


def cpu_cost(summary: dict, cores: int) -> dict:
    """CPU microseconds per answered hash: the server's, the load generator's and the core
    index's alone. Unlike hashes/s these hardly change when other jobs take the cores, so
    server / core says what the server path costs on a busy machine too. `projected_hashes_per_s`
    is `cores` seconds a second spread over server + client cost: the rate the two would reach
    with the machine to themselves, a projection and not a measurement."""
    answered, cpu = summary["result"]["answered_hashes"], summary["cpu"]

    def per_hash(seconds):
        return None if seconds is None or not answered else 1e6 * seconds / answered

    server, client = per_hash(cpu.get("server_s")), per_hash(cpu.get("client_s"))
    core = summary["core"].get("cpu_us_per_hash")
    both = (server or 0.0) + (client or 0.0)
    return {"server_us_per_hash": server, "client_us_per_hash": client,
            "core_us_per_hash": core,
            "server_over_core": server / core if server and core else None,
            "projected_hashes_per_s": cores * 1e6 / both if server is not None and both else None}


def write_json(summary: dict, path: str):
    with open(path, "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
        f.write("\n")


def write_plot(summary: dict, path: str):
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    tl = summary["timeline"]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    top.plot(tl["t"], tl["hashes_per_s"], marker=".", label="end to end")
    core = summary["core"]["hashes_per_s"]
    if core:
        top.axhline(core, color="grey", linestyle="--", label="core index alone")
    top.set_ylim(bottom=0)
    top.set_ylabel("hashes/s")
    top.legend(loc="lower right")
    bottom.plot(tl["t"], tl["p50_ms"], marker=".", label="p50")
    bottom.plot(tl["t"], tl["p99_ms"], marker=".", label="p99")
    bottom.set_ylim(bottom=0)
    bottom.set_ylabel("batch latency (ms)")
    bottom.set_xlabel("seconds since the first batch")
    bottom.legend(loc="upper right")
    cfg = summary["config"]
    fig.suptitle(f"list {summary['server']['list_size']:,}, {cfg['streams']} streams, batch "
                 f"{cfg['batch_size']}, window {summary['server']['window']}, "
                 f"{summary['machine']['cpu']} x{summary['machine']['cores']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def text(summary: dict) -> str:
    r, lat, cpu, core = summary["result"], summary["latency_ms"], summary["cpu"], summary["core"]
    cost = summary["cpu_cost"]

    def num(x, fmt="{:,.0f}"):
        return "n/a" if x is None else fmt.format(x)

    lines = [
        f"list {summary['server']['list_size']:,} hashes, backend "
        f"{summary['server']['kernel_backend']}, {summary['machine']['cpu']} "
        f"x{summary['machine']['cores']}",
        f"end to end   {num(r['hashes_per_s'])} hashes/s  ({r['answered_hashes']:,} hashes, "
        f"{r['batches']:,} batches in {r['seconds']:.2f} s)",
        f"latency ms   p50 {num(lat['p50'], '{:.1f}')}  p90 {num(lat['p90'], '{:.1f}')}  "
        f"p99 {num(lat['p99'], '{:.1f}')}  max {num(lat['max'], '{:.1f}')}",
        f"matches      {r['matches_found']:,} of {r['matches_expected']:,} expected",
        f"errors       {r['errors']} (missed {r['missed']}, unexpected {r['unexpected']}, "
        f"batch {r['batch_errors']}, stream {len(r['stream_errors'])})",
        f"cpu          server {num(cpu['server_percent'])}%  client {num(cpu['client_percent'])}%"
        " (100% = one core)",
        f"core alone   {num(core['hashes_per_s'])} hashes/s ({core['threads']} CPUs, "
        f"{core['backend']});  end to end / core = {num(summary['ratio_to_core'], '{:.1%}')}",
        f"cpu per hash server {num(cost['server_us_per_hash'], '{:.2f}')} us  client "
        f"{num(cost['client_us_per_hash'], '{:.2f}')} us  core alone "
        f"{num(cost['core_us_per_hash'], '{:.2f}')} us  (server / core "
        f"{num(cost['server_over_core'], '{:.2f}')}); with the {summary['machine']['cores']} "
        f"cores to themselves ~{num(cost['projected_hashes_per_s'])} hashes/s (projection)",
    ]
    lines[2:2] = [f"  server {s['target']}  {num(s['hashes_per_s'])} hashes/s  latency ms p50 "
                  f"{num(s['latency_ms']['p50'], '{:.1f}')} p99 "
                  f"{num(s['latency_ms']['p99'], '{:.1f}')}  cpu "
                  f"{num(s['server_cpu_percent'])}%  errors {s['errors']}"
                  for s in summary.get("servers", ())]
    lines += [f"  core, {w['workers']} search(es) at once x index threads={w['index_threads']}: "
              f"{num(w['hashes_per_s'])} hashes/s, "
              f"{num(w.get('cpu_us_per_hash'), '{:.2f}')} us cpu/hash" for w in core.get("ways", ())]
    lines += [f"  e.g. {e}" for e in r["examples"]]
    lines += [f"  {e}" for e in r["stream_errors"][:5]]
    if r.get("cleanup_error"):
        lines.append(f"  warning: {r['cleanup_error']}")
    return "\n".join(lines)
