#!/usr/bin/env python3
"""Skewed workload: does a load-aware policy keep fast requests away from a busy worker?

One server (bench/skewed_server.cc, on the public library, eBPF mode) with W workers. Two
clients run at once for D seconds per policy:
  slow  wrk -t1 -c1 on /slow: one request at a time, each holding its worker busy for S ms
  fast  wrk -tC -cC on /fast with bench/fast_latency.lua: C connections, one per thread, each
        request a new connection (Connection: close), so the policy places every one
For each policy (set live with `sockdispatch tune PORT --policy P`) it records:
  - the fast requests' latency percentiles, from every request's own latency as the client
    saw it (fast_latency.lua writes one line per response);
  - wrk's own p99 beside it: wrk corrects for coordinated omission, adding synthetic samples
    for every slow answer (about S ms / the mean interval of one connection for each), which
    answers "how long would requests sent at a steady rate have waited" instead;
  - stalls: fast requests that took longer than S/2 ms, i.e. that waited behind a slow one;
  - how evenly the policy spread the fast connections over the workers (coefficient of
    variation of the per-worker `accepted` deltas from `status --json`).
Policies are run in turn, in R rounds, on the same server.

Usage (as root; build with -DSOCKDISPATCH_BENCH=ON so build/skewed_server exists):
  bench/policy_bench.py [--rounds 2] [--duration 8] [--workers 4] [--slow-ms 50]
                        [--slow-where inline|offload] [--policies hash,least_conn]
Writes bench/results/policy.json and docs/policy-bench.png, and prints a Markdown table.
"""
import argparse
import glob
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from core_bench import LATENCY_UNITS, ROOT, free_port, relative_args, wait_for_http  # noqa: E402

POLICIES = ["hash", "round_robin", "skip_load", "p2c", "least_conn"]
LATENCY_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fast_latency.lua")


def wrk(port, path, duration, connections, latency_out=None):
    argv = ["wrk", f"-t{connections}", f"-c{connections}", f"-d{duration}s", "--latency",
            "--timeout", "5s"]
    env = dict(os.environ)
    if latency_out:
        argv += ["-s", LATENCY_SCRIPT]
        env["LATENCY_OUT"] = latency_out
    else:
        argv += ["-H", "Connection: close"]
    argv.append(f"http://127.0.0.1:{port}{path}")
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)


def parse_wrk(out):
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "wrk_p99_ms": float(p99.group(1)) * LATENCY_UNITS[p99.group(2)],
        "errors": (sum(int(x) for x in errors.groups()) if errors else 0)
        + (int(non2xx.group(1)) if non2xx else 0),
    }


def percentile(ordered, fraction):
    """The nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(len(ordered) * fraction))
    return ordered[min(rank, len(ordered)) - 1]


def read_latencies(prefix):
    """Every fast request's latency (ms, ascending), and how many were not answered 200."""
    latencies, not_ok = [], 0
    for path in glob.glob(glob.escape(prefix) + ".*"):
        with open(path) as f:
            for line in f:
                ms, _worker, status = line.split()
                latencies.append(float(ms))
                not_ok += status != "200"
    latencies.sort()
    return latencies, not_ok


def accepted(binary, port):
    out = subprocess.run([binary, "status", str(port), "--json"], capture_output=True,
                         text=True, check=True).stdout
    return {w["slot"]: w["accepted"] for w in json.loads(out)["workers"]}


def run_policy(binary, port, policy, args, workdir):
    subprocess.run([binary, "tune", str(port), "--policy", policy], check=True,
                   capture_output=True)
    prefix = os.path.join(workdir, policy)
    for stale in glob.glob(glob.escape(prefix) + ".*"):
        os.unlink(stale)
    before = accepted(binary, port)
    slow = wrk(port, "/slow", args.duration + 1, 1)
    time.sleep(0.3)  # the slow client is busy before the fast one starts, and after it ends
    fast = wrk(port, "/fast", args.duration, args.connections, latency_out=prefix)
    fast_out, _ = fast.communicate()
    slow_out, _ = slow.communicate()
    after = accepted(binary, port)
    deltas = [after[s] - before.get(s, 0) for s in sorted(after)]
    mean = statistics.mean(deltas)
    result = parse_wrk(fast_out)
    latencies, not_ok = read_latencies(prefix)
    if not latencies:
        sys.exit(f"policy_bench: no fast request was recorded for {policy}")
    result["requests"] = len(latencies)
    result["errors"] += not_ok
    result["p50_ms"] = percentile(latencies, 0.50)
    result["p99_ms"] = percentile(latencies, 0.99)
    result["p999_ms"] = percentile(latencies, 0.999)
    result["stalled"] = sum(1 for ms in latencies if ms > args.slow_ms / 2)
    result["stalled_pct"] = round(100.0 * result["stalled"] / len(latencies), 3)
    result["slow_rps"] = parse_wrk(slow_out)["rps"]
    result["accepted_per_worker"] = deltas
    result["cv"] = round(statistics.pstdev(deltas) / mean, 3) if mean > 0 else None
    return result


def plot(summary, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not found (python3-matplotlib): no plot written", file=sys.stderr)
        return
    names = list(summary)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    x = range(len(names))
    left.bar([i - 0.27 for i in x], [summary[n]["p50_ms"] for n in names], 0.27, label="p50")
    left.bar(list(x), [summary[n]["p99_ms"] for n in names], 0.27, label="p99")
    left.bar([i + 0.27 for i in x], [summary[n]["wrk_p99_ms"] for n in names], 0.27,
             label="p99, wrk's corrected", color="lightgray")
    left.set_yscale("log")
    left.set_ylabel("fast request latency (ms, log scale)")
    left.set_xticks(list(x), names, rotation=20)
    left.legend(fontsize="small")
    left.set_title("Fast requests beside a busy worker")
    right.bar(list(x), [summary[n]["stalled_pct"] for n in names], 0.5, color="tab:red")
    right.set_yscale("log")
    right.set_ylabel("% of fast requests stalled (log scale)")
    right.set_xticks(list(x), names, rotation=20)
    right.set_title("Fast requests that waited behind a slow one")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


SUMMARY_KEYS = ("rps", "p50_ms", "p99_ms", "p999_ms", "wrk_p99_ms", "stalled_pct", "cv",
                "slow_rps")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--slow-ms", type=int, default=50)
    parser.add_argument("--slow-where", choices=["inline", "offload"], default="inline",
                        help="run /slow on the worker's loop (inline) or its offload pool")
    parser.add_argument("--policies", default=",".join(POLICIES),
                        help="comma-separated; hash must be among them (the reference)")
    parser.add_argument("--binary", default=os.path.join(ROOT, "build", "sockdispatch"))
    parser.add_argument("--server", default=os.path.join(ROOT, "build", "skewed_server"))
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "policy.json"))
    parser.add_argument("--plot", default=os.path.join(ROOT, "docs", "policy-bench.png"))
    args = parser.parse_args()
    policies = args.policies.split(",")
    unknown = [p for p in policies if p not in POLICIES]
    if unknown or "hash" not in policies:
        sys.exit(f"policy_bench: --policies {args.policies}: choose among {', '.join(POLICIES)}, "
                 "hash included")
    for tool in ("wrk",):
        if shutil.which(tool) is None:
            sys.exit(f"policy_bench: {tool} not found; run packaging/install-deps.sh --bench")
    for path in (args.binary, args.server):
        if not os.path.exists(path):
            sys.exit(f"policy_bench: {path} not found; build with -DSOCKDISPATCH_BENCH=ON")

    port = free_port()
    server = subprocess.Popen([args.server, str(port), str(args.workers), str(args.slow_ms),
                               args.slow_where],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = {p: [] for p in policies}
    try:
        with tempfile.TemporaryDirectory(prefix="policy_bench.") as workdir:
            wait_for_http(port)
            for round_index in range(args.rounds):
                for policy in policies:
                    result = run_policy(args.binary, port, policy, args, workdir)
                    runs[policy].append(result)
                    print(f"round {round_index + 1} {policy:12} fast {result['rps']:>8.0f} req/s"
                          f"  p50 {result['p50_ms']:.2f}  p99 {result['p99_ms']:.2f}"
                          f"  p99.9 {result['p999_ms']:.2f}  wrk p99 {result['wrk_p99_ms']:.2f} ms"
                          f"  stalled {result['stalled']} ({result['stalled_pct']} %)"
                          f"  cv {result['cv']}  per worker {result['accepted_per_worker']}"
                          f"  errors {result['errors']}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=20)

    summary = {}
    for policy, results in runs.items():
        summary[policy] = {key: statistics.median(r[key] for r in results) for key in SUMMARY_KEYS}
        summary[policy]["errors"] = sum(r["errors"] for r in results)
    report = {"date": time.strftime("%Y-%m-%d"), "kernel": os.uname().release,
              "cpus": os.cpu_count(), "args": relative_args(args), "summary": summary,
              "runs": runs}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    plot(summary, args.plot)

    print()
    print("| policy | fast req/s | p50 (ms) | p99 (ms) | p99.9 (ms) | wrk's p99 (ms) "
          "| stalled | spread (CV) | slow req/s | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for policy, s in summary.items():
        print(f"| {policy} | {s['rps']:.0f} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | "
              f"{s['p999_ms']:.2f} | {s['wrk_p99_ms']:.2f} | {s['stalled_pct']:.2f} % | "
              f"{s['cv']:.2f} | {s['slow_rps']:.1f} | {s['errors']} |")
    hash_p99 = summary["hash"]["p99_ms"]
    others = [p for p in policies if p != "hash"]
    if others:
        best = min(others, key=lambda p: summary[p]["p99_ms"])
        print(f"best p99: {best} {summary[best]['p99_ms']:.2f} ms = "
              f"{summary[best]['p99_ms'] / hash_p99:.3f} x hash's {hash_p99:.2f} ms "
              f"(goal: at most 0.2 x)")


if __name__ == "__main__":
    main()
