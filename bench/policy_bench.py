#!/usr/bin/env python3
"""Skewed workload: does a load-aware policy keep fast requests away from a busy worker?

One server (bench/skewed_server.cc, on the public library, eBPF mode) with W workers. Two
clients run at once for D seconds per policy:
  slow  wrk -t1 -c1 on /slow: one request at a time, each holding its worker busy for S ms
  fast  wrk -t1 -cC --latency on /fast with Connection: close: every request is a new
        connection, so the policy places every one of them
For each policy (set live with `sockdispatch tune PORT --policy P`) it records the fast
requests' p50/p99 and how evenly the policy spread the fast connections over the workers
(coefficient of variation of the per-worker `accepted` deltas from `status --json`).
Policies are run in turn, in R rounds, on the same server.

Usage (as root; build with -DSOCKDISPATCH_BENCH=ON so build/skewed_server exists):
  bench/policy_bench.py [--rounds 2] [--duration 8] [--workers 4] [--slow-ms 50]
Writes bench/results/policy.json and docs/policy-bench.png, and prints a Markdown table.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from core_bench import LATENCY_UNITS, ROOT, free_port, relative_args, wait_for_http  # noqa: E402

POLICIES = ["hash", "round_robin", "skip_load", "p2c", "least_conn"]


def wrk(port, path, duration, connections, close):
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(f"http://127.0.0.1:{port}{path}")
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def parse_wrk(out):
    def latency(label):
        match = re.search(label + r"\s+([\d.]+)(us|ms|s)", out)
        return float(match.group(1)) * LATENCY_UNITS[match.group(2)]

    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": latency("50%"),
        "p99_ms": latency("99%"),
        "errors": (sum(int(x) for x in errors.groups()) if errors else 0)
        + (int(non2xx.group(1)) if non2xx else 0),
    }


def accepted(binary, port):
    out = subprocess.run([binary, "status", str(port), "--json"], capture_output=True,
                         text=True, check=True).stdout
    return {w["slot"]: w["accepted"] for w in json.loads(out)["workers"]}


def run_policy(binary, port, policy, args):
    subprocess.run([binary, "tune", str(port), "--policy", policy], check=True,
                   capture_output=True)
    before = accepted(binary, port)
    slow = wrk(port, "/slow", args.duration + 1, 1, True)
    time.sleep(0.3)  # the slow client is busy before the fast one starts, and after it ends
    fast = wrk(port, "/fast", args.duration, args.connections, True)
    fast_out, _ = fast.communicate()
    slow_out, _ = slow.communicate()
    after = accepted(binary, port)
    deltas = [after[s] - before.get(s, 0) for s in sorted(after)]
    mean = statistics.mean(deltas)
    result = parse_wrk(fast_out)
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
    left.bar([i - 0.2 for i in x], [summary[n]["p50_ms"] for n in names], 0.4, label="p50")
    left.bar([i + 0.2 for i in x], [summary[n]["p99_ms"] for n in names], 0.4, label="p99")
    left.set_yscale("log")
    left.set_ylabel("fast request latency (ms, log scale)")
    left.set_xticks(list(x), names, rotation=20)
    left.legend()
    left.set_title("Fast requests beside a busy worker")
    right.bar(list(x), [summary[n]["cv"] for n in names], 0.5, color="tab:green")
    right.set_ylabel("coefficient of variation")
    right.set_xticks(list(x), names, rotation=20)
    right.set_title("Spread of fast connections over workers")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--slow-ms", type=int, default=50)
    parser.add_argument("--binary", default=os.path.join(ROOT, "build", "sockdispatch"))
    parser.add_argument("--server", default=os.path.join(ROOT, "build", "skewed_server"))
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "policy.json"))
    parser.add_argument("--plot", default=os.path.join(ROOT, "docs", "policy-bench.png"))
    args = parser.parse_args()
    for tool in ("wrk",):
        if shutil.which(tool) is None:
            sys.exit(f"policy_bench: {tool} not found; run packaging/install-deps.sh --bench")
    for path in (args.binary, args.server):
        if not os.path.exists(path):
            sys.exit(f"policy_bench: {path} not found; build with -DSOCKDISPATCH_BENCH=ON")

    port = free_port()
    server = subprocess.Popen([args.server, str(port), str(args.workers), str(args.slow_ms)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = {p: [] for p in POLICIES}
    try:
        wait_for_http(port)
        for round_index in range(args.rounds):
            for policy in POLICIES:
                result = run_policy(args.binary, port, policy, args)
                runs[policy].append(result)
                print(f"round {round_index + 1} {policy:12} fast {result['rps']:>8.0f} req/s  "
                      f"p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms  "
                      f"cv {result['cv']}  per worker {result['accepted_per_worker']}  "
                      f"errors {result['errors']}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=20)

    summary = {}
    for policy, results in runs.items():
        summary[policy] = {
            key: statistics.median(r[key] for r in results)
            for key in ("rps", "p50_ms", "p99_ms", "cv", "slow_rps")
        }
        summary[policy]["errors"] = sum(r["errors"] for r in results)
    report = {"date": time.strftime("%Y-%m-%d"), "kernel": os.uname().release,
              "cpus": os.cpu_count(), "args": relative_args(args), "summary": summary,
              "runs": runs}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    plot(summary, args.plot)

    print()
    print("| policy | fast req/s | fast p50 (ms) | fast p99 (ms) | spread (CV) | slow req/s | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for policy, s in summary.items():
        print(f"| {policy} | {s['rps']:.0f} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | "
              f"{s['cv']:.2f} | {s['slow_rps']:.1f} | {s['errors']} |")
    hash_p99 = summary["hash"]["p99_ms"]
    best = min((p for p in POLICIES if p != "hash"), key=lambda p: summary[p]["p99_ms"])
    print(f"best p99: {best} {summary[best]['p99_ms']:.2f} ms = "
          f"{summary[best]['p99_ms'] / hash_p99:.2f} x hash's {hash_p99:.2f} ms")


if __name__ == "__main__":
    main()
