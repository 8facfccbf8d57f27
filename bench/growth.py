#!/usr/bin/env python3
"""Growth curves: how a request's server CPU and the p99 latency grow with the worker count
and with the number of concurrent connections, for sockdispatch (eBPF dispatch) and nginx
(reuseport) in the same run.

The core benchmark's setup (bench/core_bench.py): the same 13-byte file, the servers pinned
to CPU 1, wrk on CPU 0, the server's CPU time read from /proc around every run. Two sweeps:
  workers      1, 2, 4, ... (--workers) at --fixed-connections concurrent connections
  connections  10, 100, ... (--connections) at --fixed-workers workers
each point with both workloads (keepalive; close: every request a new connection), the two
servers interleaved, for --rounds rounds. Each server is started fresh for every point.
--baseline-binary adds an earlier build ("sockdispatch-before") to every point, interleaved
the same way, and a table of its cost against this build's.

Usage (as root, after `packaging/install-deps.sh --bench` and a build in ./build):
  bench/growth.py [--rounds 2] [--duration 4]
Writes bench/results/growth.json and docs/growth.png (matplotlib), and prints Markdown
tables. --replot redraws both from the results file without measuring.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from core_bench import (ROOT, cpu_seconds, make_docroot, relative_args,  # noqa: E402
                        require_tools, run_wrk, start_nginx, start_sockdispatch)

SERVERS = ("sockdispatch", "nginx")
WORKLOADS = ("keepalive", "close")


def servers_of(args):
    return SERVERS + (("sockdispatch-before",) if args.baseline_binary else ())


def start_server(args, name, workdir, docroot, workers, connections):
    if name == "nginx":
        return start_nginx(workdir, docroot, workers, args.server_cpus,
                           worker_connections=connections + 1024)
    binary = args.baseline_binary if name == "sockdispatch-before" else args.binary
    return start_sockdispatch(binary, docroot, workers, args.server_cpus)


def measure_point(args, workdir, docroot, workers, connections):
    """Every round: each server, each workload. Returns {server: {workload: [runs]}}."""
    servers = servers_of(args)
    runs = {name: {w: [] for w in WORKLOADS} for name in servers}
    for round_index in range(args.rounds):
        order = servers if round_index % 2 == 0 else tuple(reversed(servers))
        for name in order:
            server = start_server(args, name, workdir, docroot, workers, connections)
            try:
                for workload in WORKLOADS:
                    before = cpu_seconds(server.pids)
                    result = run_wrk(server.port, args.duration, connections, args.client_cpu,
                                     workload == "close")
                    used = cpu_seconds(server.pids) - before
                    result["cpu_us_per_request"] = (used / result["requests"] * 1e6
                                                    if result["requests"] else None)
                    runs[name][workload].append(result)
                    print(f"workers {workers:3} connections {connections:6} {name:19} "
                          f"{workload:9} {result['rps']:>9.0f} req/s  "
                          f"{result['cpu_us_per_request']:.1f} µs CPU/req  "
                          f"p99 {result['p99_ms']:.2f} ms  errors {result['socket_errors']} "
                          f"non2xx {result['non2xx']}", flush=True)
            finally:
                server.stop()
    return runs


def summarize(runs):
    out = {}
    for name, per_workload in runs.items():
        out[name] = {}
        for workload, results in per_workload.items():
            out[name][workload] = {
                "rps": statistics.median(r["rps"] for r in results),
                "cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in results),
                "p99_ms": statistics.median(r["p99_ms"] for r in results),
                "errors": sum(r["socket_errors"] + r["non2xx"] for r in results),
            }
    return out


def print_pair(data, sweep, left, right, names):
    """A Markdown table of server `left` against server `right` at every point of `sweep`:
    each one's CPU per request, their ratio (left / right), p99 and errors."""
    a, b = names
    print(f"\n| {sweep} | workload | {a} µs CPU/req | {b} µs CPU/req | {a}/{b} | "
          f"{a} p99 (ms) | {b} p99 (ms) | errors |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for point in data[sweep]:
        for workload in WORKLOADS:
            x = point["summary"][left][workload]
            y = point["summary"][right][workload]
            print(f"| {point[sweep]:,} | {workload} | {x['cpu_us_per_request']:.1f} | "
                  f"{y['cpu_us_per_request']:.1f} | "
                  f"{x['cpu_us_per_request'] / y['cpu_us_per_request']:.2f} | "
                  f"{x['p99_ms']:.2f} | {y['p99_ms']:.2f} | {x['errors'] + y['errors']} |")


def report(data, plot_path):
    for sweep in ("workers", "connections"):
        print_pair(data, sweep, "sockdispatch", "nginx", ("sockdispatch", "nginx"))
        if all("sockdispatch-before" in point["summary"] for point in data[sweep]):
            print_pair(data, sweep, "sockdispatch", "sockdispatch-before", ("after", "before"))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib missing: no plot)")
        return
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.2))
    styles = {("sockdispatch", "keepalive"): ("C0", "-"), ("sockdispatch", "close"): ("C0", "--"),
              ("nginx", "keepalive"): ("C1", "-"), ("nginx", "close"): ("C1", "--")}
    for row, sweep in enumerate(("workers", "connections")):
        xs = [point[sweep] for point in data[sweep]]
        for col, (metric, ylabel) in enumerate((("cpu_us_per_request", "server CPU µs per request"),
                                                ("p99_ms", "p99 latency (ms)"))):
            ax = axes[row][col]
            for (name, workload), (color, style) in styles.items():
                ys = [point["summary"][name][workload][metric] for point in data[sweep]]
                ax.plot(xs, ys, linestyle=style, color=color, marker="o", markersize=3,
                        label=f"{name} {workload}")
            ax.set_xscale("log")
            ax.set_xticks(xs)
            ax.set_xticklabels([f"{x:,}" for x in xs])
            if metric == "p99_ms":
                ax.set_yscale("log")
            ax.set_xlabel(sweep if sweep == "workers" else "concurrent connections")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fixed = data["args"]
    axes[0][0].set_title(f"against workers ({fixed['fixed_connections']} connections)",
                         fontsize=10)
    axes[1][0].set_title(f"against connections ({fixed['fixed_workers']} workers)", fontsize=10)
    fig.suptitle("sockdispatch and nginx: cost and latency as the load grows (medians)",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(plot_path, dpi=110)
    print(f"plot: {os.path.relpath(plot_path, ROOT)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(ROOT, "build", "sockdispatch"))
    parser.add_argument("--baseline-binary", default=None,
                        help="an earlier build, measured beside this one as sockdispatch-before")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--connections", type=int, nargs="+", default=[10, 100, 1000, 10000])
    parser.add_argument("--fixed-workers", type=int, default=2)
    parser.add_argument("--fixed-connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=int, default=4)
    parser.add_argument("--server-cpus", default="1")
    parser.add_argument("--client-cpu", default="0")
    parser.add_argument("--output", default=os.path.join(ROOT, "bench", "results", "growth.json"))
    parser.add_argument("--plot", default=os.path.join(ROOT, "docs", "growth.png"))
    parser.add_argument("--replot", action="store_true",
                        help="redraw the tables and the plot from --output, measuring nothing")
    args = parser.parse_args()
    if args.replot:
        with open(args.output) as f:
            report(json.load(f), args.plot)
        return
    require_tools("growth.py", args.binary)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    needed = max(args.connections) + 1024
    if hard != resource.RLIM_INFINITY and hard < needed:
        sys.exit(f"growth.py: {max(args.connections)} connections need a descriptor limit of "
                 f"{needed} (the hard limit is {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # wrk and the servers inherit it

    workdir, docroot = make_docroot("growth-")
    data = {"date": time.strftime("%Y-%m-%d"), "kernel": os.uname().release,
            "args": relative_args(args), "workers": [], "connections": []}
    for workers in args.workers:
        runs = measure_point(args, workdir, docroot, workers, args.fixed_connections)
        data["workers"].append({"workers": workers, "summary": summarize(runs), "runs": runs})
    for connections in args.connections:
        runs = measure_point(args, workdir, docroot, args.fixed_workers, connections)
        data["connections"].append({"connections": connections, "summary": summarize(runs),
                                    "runs": runs})
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(data, f, indent=2)
    report(data, args.plot)


if __name__ == "__main__":
    main()
