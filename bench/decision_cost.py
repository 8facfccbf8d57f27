#!/usr/bin/env python3
"""The kernel program's cost per decision against the worker count, for every policy.

One attachment per (build, worker count) on loopback, `kernel.bpf_stats_enabled=1`; each
policy is set live with `sockdispatch tune` and measured under
`wrk -t1 -cC -dD -H 'Connection: close'` (every request a new connection, so one decision
per request): the program's run_time_ns and run_count (`status --json`) read around the run
give the kernel's own time per decision. wrk runs on --client-cpu; the server (master and
workers) on --server-cpus. On loopback the SYN, and so the program, runs in softirq on the
client's CPU, while the workers that write the slots' counters run on the server's.

--binary LABEL=PATH (repeatable) measures several builds in the same run, interleaved: in
every round each worker count is measured with every build in turn (the build order
alternates by round), and the policies within an attachment rotate by round, so drift
hits every build, count and policy alike. The summary is the median of the rounds.

Usage (as root, after `packaging/install-deps.sh --bench` and a build in ./build):
  bench/decision_cost.py [--rounds 3] [--duration 2] [--workers 1,2,4,8,16,32,64]
      [--policies skip_load,least_conn,p2c,round_robin,weighted,hash]
      [--binary after=build/sockdispatch] [--binary before=OTHER]
  bench/decision_cost.py --plot-only        (re-draws the plot from the results file)
  bench/decision_cost.py --merge A.json --merge B.json
                                            (one report of several runs' rounds, same builds)
Writes bench/results/decision-cost.json and docs/decision-cost.png (matplotlib), and prints
Markdown tables. kernel.bpf_stats_enabled is restored, and every attachment detached, even
when the run fails.
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
from core_bench import ROOT, free_port, relative_args, wait_for_http  # noqa: E402

STATS = "/proc/sys/kernel/bpf_stats_enabled"
POLICIES = ["skip_load", "least_conn", "p2c", "round_robin", "weighted", "hash"]
WORKERS = [1, 2, 4, 8, 16, 32, 64]


class Attachment:
    """`sockdispatch attach PORT --workers W --mode ebpf` with its pinned state, or an error."""

    def __init__(self, binary, workers, cpus):
        self.binary, self.port = binary, free_port()
        self.proc = subprocess.Popen(
            ["taskset", "-c", cpus, binary, "attach", str(self.port), "--bind", "127.0.0.1",
             "--workers", str(workers), "--mode", "ebpf"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_http(self.port, timeout=30)
            deadline = time.time() + 30
            while self.status()["program"].get("run_count") is None:
                if time.time() > deadline:
                    raise RuntimeError("status shows no program")
                time.sleep(0.1)
        except Exception:
            self.close()
            raise

    def status(self):
        out = subprocess.run([self.binary, "status", str(self.port), "--json"],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)

    def program(self):
        p = self.status()["program"]
        return p["run_time_ns"], p["run_count"]

    def tune(self, policy):
        subprocess.run([self.binary, "tune", str(self.port), "--policy", policy],
                       stdout=subprocess.DEVNULL, check=True)

    def close(self):
        subprocess.run([self.binary, "detach", str(self.port)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_wrk(port, duration, connections, client_cpu):
    out = subprocess.run(
        ["taskset", "-c", client_cpu, "wrk", "-t1", f"-c{connections}", f"-d{duration}s",
         "-H", "Connection: close", f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": total,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
    }


def measure(attachment, policy, args):
    attachment.tune(policy)
    time0, count0 = attachment.program()
    result = run_wrk(attachment.port, args.duration, args.connections, args.client_cpu)
    time1, count1 = attachment.program()
    decisions = count1 - count0
    result["decisions"] = decisions
    result["ns_per_decision"] = round((time1 - time0) / decisions, 1) if decisions else None
    return result


def summarize(runs, labels, workers, policies):
    summary = {}
    for label in labels:
        summary[label] = {}
        for policy in policies:
            summary[label][policy] = {}
            for count in workers:
                values = [r["ns_per_decision"] for r in runs
                          if r["build"] == label and r["policy"] == policy
                          and r["workers"] == count and r["ns_per_decision"] is not None]
                if values:
                    summary[label][policy][str(count)] = {
                        "median": statistics.median(values), "min": min(values),
                        "max": max(values), "rounds": len(values)}
    return summary


def print_tables(report):
    workers = report["args"]["workers"]
    for label, per_policy in report["summary"].items():
        print(f"\n{label}: ns per decision, median of {report['args']['rounds']} rounds\n")
        print("| policy | " + " | ".join(f"{w} workers" for w in workers) + " |")
        print("|---|" + "---:|" * len(workers))
        for policy, per_count in per_policy.items():
            cells = [f"{per_count[str(w)]['median']:.0f}" if str(w) in per_count else "–"
                     for w in workers]
            print(f"| {policy} | " + " | ".join(cells) + " |")


def plot(report, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib missing: no plot)")
        return
    workers = report["args"]["workers"]
    labels = list(report["summary"])
    policies = list(report["summary"][labels[0]])
    columns = min(3, len(policies))
    rows = (len(policies) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3.7 * columns + 0.6, 3.6 * rows + 0.4),
                             sharey=True, squeeze=False)
    styles = ["--", "-", ":", "-."]
    for ax, policy in zip(axes.flat, policies):
        for i, label in enumerate(labels):
            per_count = report["summary"][label][policy]
            xs = [w for w in workers if str(w) in per_count]
            ax.plot(xs, [per_count[str(w)]["median"] for w in xs], styles[i % len(styles)],
                    marker="o", markersize=3, label=label)
        ax.plot([4, 32], [100, 150], "kv", markersize=6, linestyle="none", label="goal")
        ax.set_title(policy)
        ax.set_xscale("log", base=2)
        ax.set_xticks(workers)
        ax.set_xticklabels([str(w) for w in workers])
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes.flat[len(policies):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("ns per decision (bpf_stats)")
    for ax in axes[-1, :]:
        ax.set_xlabel("workers")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("sockdispatch: the dispatch program's kernel time\nper new connection "
                 "(medians)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {os.path.relpath(path, ROOT)}")


def merge(args):
    """The runs of several results files as one report, their rounds numbered on."""
    runs, reports = [], []
    for path in args.merge:
        with open(path) as f:
            report = json.load(f)
        offset = max((r["round"] for r in runs), default=0)
        for r in report["runs"]:
            runs.append(dict(r, round=r["round"] + offset))
        reports.append(report)
    first = reports[0]
    labels = first["args"]["binary"]
    if any(r["args"]["binary"] != labels for r in reports):
        sys.exit("decision_cost: --merge: the files measured different builds")
    merged = dict(first, runs=runs, merged_from=[
        {"date": r["date"], "kernel": r["kernel"], "rounds": r["args"]["rounds"]}
        for r in reports])
    merged["args"] = dict(first["args"], rounds=max(r["round"] for r in runs))
    merged["summary"] = summarize(runs, labels, merged["args"]["workers"],
                                  merged["args"]["policies"])
    with open(args.output, "w") as f:
        json.dump(merged, f, indent=1)
        f.write("\n")
    print_tables(merged)
    plot(merged, args.plot)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=2)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--workers", default=",".join(map(str, WORKERS)))
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--binary", action="append", metavar="LABEL=PATH")
    parser.add_argument("--client-cpu", default="0")
    parser.add_argument("--server-cpus", default="1")
    parser.add_argument("--output", default=os.path.join(ROOT, "bench/results/decision-cost.json"))
    parser.add_argument("--plot", default=os.path.join(ROOT, "docs/decision-cost.png"))
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument("--merge", action="append", metavar="RESULTS",
                        help="merge the rounds of earlier results files (no new runs)")
    args = parser.parse_args()

    if args.merge:
        merge(args)
        return

    if args.plot_only:
        with open(args.output) as f:
            report = json.load(f)
        print_tables(report)
        plot(report, args.plot)
        return

    args.workers = [int(w) for w in args.workers.split(",")]
    args.policies = args.policies.split(",")
    builds = []
    for spec in args.binary or ["sockdispatch=" + os.path.join(ROOT, "build/sockdispatch")]:
        label, _, path = spec.partition("=")
        if not path or not os.path.exists(path):
            sys.exit(f"decision_cost: {spec}: expected LABEL=PATH to a built sockdispatch")
        builds.append((label, os.path.abspath(path)))
    args.binary = [f"{label}={path}" for label, path in builds]
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"decision_cost: {tool} not found; run packaging/install-deps.sh --bench")

    with open(STATS) as f:
        previous = f.read().strip()
    runs = []
    try:
        with open(STATS, "w") as f:
            f.write("1")
        for round_ in range(args.rounds):
            order = builds if round_ % 2 == 0 else builds[::-1]
            shift = round_ % len(args.policies)
            policies = args.policies[shift:] + args.policies[:shift]
            for count in args.workers:
                for label, binary in order:
                    attachment = Attachment(binary, count, args.server_cpus)
                    try:
                        for policy in policies:
                            result = measure(attachment, policy, args)
                            result.update(round=round_ + 1, build=label, workers=count,
                                          policy=policy)
                            runs.append(result)
                            print(f"round {round_ + 1} {label:>8} {count:>2} workers "
                                  f"{policy:>11}: {result['ns_per_decision']} ns, "
                                  f"{result['decisions']} decisions, {result['rps']:.0f}/s, "
                                  f"errors {result['socket_errors']} non-2xx {result['non2xx']}",
                                  flush=True)
                    finally:
                        attachment.close()
    finally:
        with open(STATS, "w") as f:
            f.write(previous)

    report = {
        "args": relative_args(args),
        "kernel": os.uname().release,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "runs": runs,
        "summary": summarize(runs, [label for label, _ in builds], args.workers, args.policies),
    }
    report["args"]["binary"] = [spec.split("=")[0] for spec in args.binary]
    with open(args.output, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    print_tables(report)
    plot(report, args.plot)


if __name__ == "__main__":
    main()
