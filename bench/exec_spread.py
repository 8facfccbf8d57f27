#!/usr/bin/env python3
"""Unmodified programs behind sockdispatch: how evenly 4 uvicorn workers share the connections.

An async ASGI app (written to a temporary directory) answers every request with the pid of
the process that served it; on /slow it first awaits asyncio.sleep(S ms), holding the
connection open without blocking its event loop, so the number of open connections differs
between workers while the CPU work does not. Four uvicorn processes serve it, in the same
run, interleaved over R rounds:
  least_conn  sockdispatch attach -w 4 -- python3 -m uvicorn --fd 3 app:app (the default
              policy, on each copy's open connections as the kernel counts them:
              bpf/foreign_load.bpf.c)
  hash        the same with --policy hash (the kernel's plain SO_REUSEPORT hashing)
  uvicorn     uvicorn's own --workers 4: a supervisor and 4 processes on one shared socket
The load is open loop (exec_bench's client): RATE requests per second on a fixed schedule,
each on a new connection, a fraction F (0.1) of them /slow, drawn at random from seed SEED +
round (every configuration gets the same sequence within a round), latency counted from the
scheduled send time. The client tallies, per worker process, the connections it served (from
the pid in the body), and the connection-seconds it held (the sum of its connections'
durations: its mean number of open connections times the run's length). Reported per
configuration: the coefficient of variation (population stdev / mean over the 4 workers, a
worker that served nothing counting as 0) of both, p50/p99 of the fast requests and errors;
and the ratios of least_conn's CVs to uvicorn's and hash's. Each run also records the host
CPU time its processes did not use (`other_cpu_s`): latencies compare only between runs
where that stays near 0 (the counts depend on it less). For the attach runs, the
per-slot `accepted` deltas of `status --json` (the kernel's count) are recorded beside the
client's tally.

Usage (as root, Debian's python3 with python3-uvicorn and python3-matplotlib):
  /usr/bin/python3 bench/exec_spread.py [--rounds 3] [--duration 10] [--rate 300]
      [--slow-ms 300] [--slow-fraction 0.1] [--seed 1]
      [--configs least_conn,hash,uvicorn] [--binary build/sockdispatch]
Writes bench/results/exec-spread.json and docs/exec-spread.png, and prints Markdown tables.
Every process it starts runs in its own session and is stopped (SIGTERM, then SIGKILL to
its process group) even when the run fails.
"""
import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from core_bench import (ROOT, cpu_seconds, free_port, relative_args, tree_pids,  # noqa: E402
                        wait_for_http)
from exec_bench import request_close, summarize  # noqa: E402

PYTHON = "/usr/bin/python3"
APP = """import asyncio, os
PID = str(os.getpid()).encode()
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep({slow_s})
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(PID)).encode())]}})
    await send({{"type": "http.response.body", "body": PID}})
"""
CONFIGS = ["least_conn", "hash", "uvicorn"]
WORKERS = 4


class Server:
    """One configuration's processes, in a session of their own."""

    def __init__(self, config, binary, appdir, port):
        self.config, self.port, self.binary = config, port, binary
        uvicorn = [PYTHON, "-m", "uvicorn", "--app-dir", appdir, "--no-access-log",
                   "--log-level", "warning"]
        if config == "uvicorn":
            argv = uvicorn + ["--workers", str(WORKERS), "--host", "127.0.0.1", "--port",
                              str(port), "app:app"]
        else:
            argv = [binary, "attach", str(port), "--bind", "127.0.0.1", "--workers",
                    str(WORKERS), "--policy", config, "--"] + uvicorn + ["--fd", "3", "app:app"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        try:
            wait_for_http(port, timeout=30)
            deadline = time.time() + 15
            while len(self.worker_pids()) != WORKERS:
                if time.time() > deadline:
                    raise RuntimeError(f"{config}: {WORKERS} workers did not start")
                time.sleep(0.1)
            time.sleep(1.0)
        except BaseException:
            self.stop()
            raise

    def status(self):
        out = subprocess.run([self.binary, "status", str(self.port), "--json"],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)

    def worker_pids(self):
        """The pids that serve requests: the exec'd uvicorn of each slot, or uvicorn's
        spawned worker processes (not its supervisor, not multiprocessing's tracker)."""
        if self.config != "uvicorn":
            try:
                return sorted(w["pid"] for w in self.status()["workers"]
                              if w["state"] == "running" and w["pid"])
            except (subprocess.CalledProcessError, json.JSONDecodeError, KeyError):
                return []
        pids = []
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                children = [int(p) for p in f.read().split()]
        except FileNotFoundError:
            return []
        for pid in children:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"spawn_main" in f.read():
                        pids.append(pid)
            except FileNotFoundError:
                pass
        return sorted(pids)

    def accepted(self):
        """Per-pid `accepted` of the attachment's slots (the kernel's count), or None."""
        if self.config == "uvicorn":
            return None
        return {w["pid"]: w["accepted"] for w in self.status()["workers"]}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything left in its session
        except ProcessLookupError:
            pass
        self.proc.wait()


async def one(port, path, scheduled, results, timeout):
    pid, ok = None, False
    data = await request_close(port, path, timeout)
    if data is not None:
        head, _, body = data.partition(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 200") and body.strip().isdigit():
            pid, ok = int(body), True
    results.append((path, time.monotonic() - scheduled, ok, pid))


def schedule(rate, duration, slow_fraction, seed):
    """Which requests are slow, drawn at random from `seed`. (A fixed period such as every
    tenth would alias with least_conn's rotating tie-break, whose scan starts at the
    connection's ticket modulo 4: every tenth ticket starts at slot 1 or 3, so those two got
    every slow request that met a tie, and 4x fewer fast ones than the other two.)"""
    draw = random.Random(seed)
    return ["/slow" if draw.random() < slow_fraction else "/" for _ in range(int(rate * duration))]


async def load(port, rate, paths, timeout=10.0):
    results, tasks = [], []
    start = time.monotonic() + 0.05
    for i, path in enumerate(paths):
        scheduled = start + i / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(port, path, scheduled, results, timeout)))
    await asyncio.gather(*tasks)
    return results


def busy_cpu_seconds():
    """CPU time the whole host spent busy (all CPUs, /proc/stat), in seconds."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def cv(values):
    mean = statistics.fmean(values)
    return statistics.pstdev(values) / mean if mean else float("nan")


def spread(results, pids, duration):
    """Per worker (all of `pids`, in ascending order of connections): connections,
    slow connections and connection-seconds, and the CVs."""
    conns = {pid: 0 for pid in pids}
    slow = {pid: 0 for pid in pids}
    held = {pid: 0.0 for pid in pids}
    strangers = 0
    for path, latency, ok, pid in results:
        if not ok:
            continue
        if pid not in conns:
            strangers += 1
            continue
        conns[pid] += 1
        slow[pid] += path == "/slow"
        held[pid] += latency
    order = sorted(pids, key=lambda p: conns[p])
    return {
        "connections": [conns[p] for p in order],
        "slow_connections": [slow[p] for p in order],
        "mean_open": [round(held[p] / duration, 3) for p in order],
        "cv_connections": cv(list(conns.values())),
        "cv_slow": cv(list(slow.values())),
        "cv_open": cv(list(held.values())),
        "max_share": max(conns.values()) / max(1, sum(conns.values())),
        "unknown_pid": strangers,
    }, order


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--slow-ms", type=float, default=300)
    parser.add_argument("--slow-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help="comma-separated subset of: " + ", ".join(CONFIGS))
    parser.add_argument("--binary", default=os.path.join(ROOT, "build", "sockdispatch"))
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results",
                                                      "exec-spread.json"))
    parser.add_argument("--plot", default=os.path.join(ROOT, "docs", "exec-spread.png"))
    args = parser.parse_args()
    configs = [c for c in args.configs.split(",") if c]
    if any(c not in CONFIGS for c in configs):
        sys.exit(f"exec_spread: configurations are {', '.join(CONFIGS)}")
    if os.geteuid() != 0:
        sys.exit("exec_spread: needs root (BPF)")
    if subprocess.run([PYTHON, "-c", "import uvicorn"], capture_output=True).returncode:
        sys.exit("exec_spread: needs Debian's python3-uvicorn for /usr/bin/python3")
    if any(c != "uvicorn" for c in configs) and not os.access(args.binary, os.X_OK):
        sys.exit(f"exec_spread: {args.binary} not found; build first or pass --binary")
    # SIGTERM and SIGHUP unwind through the finally blocks like Ctrl-C does.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda n, _frame: sys.exit(128 + n))
    appdir = tempfile.mkdtemp(prefix="sockdispatch-exec-spread-")
    os.chmod(appdir, 0o755)
    with open(os.path.join(appdir, "app.py"), "w") as f:
        f.write(APP.format(slow_s=args.slow_ms / 1000))
    runs = {c: [] for c in configs}
    load_before = os.getloadavg()
    started = time.time()
    try:
        for round_index in range(args.rounds):
            paths = schedule(args.rate, args.duration, args.slow_fraction,
                             args.seed + round_index)
            for config in configs:
                port = free_port()
                server = Server(config, args.binary, appdir, port)
                try:
                    pids = server.worker_pids()
                    accepted0 = server.accepted()
                    ours = tree_pids(server.proc.pid)
                    cpu0 = (busy_cpu_seconds(), cpu_seconds(ours), sum(os.times()[:2]))
                    results = asyncio.run(load(port, args.rate, paths))
                    cpu1 = (busy_cpu_seconds(), cpu_seconds(ours), sum(os.times()[:2]))
                    accepted1 = server.accepted()
                    after = server.worker_pids()
                finally:
                    server.stop()
                run = summarize([(p, lat, ok) for p, lat, ok, _ in results], args.slow_ms)
                counts, order = spread(results, pids, args.duration)
                run.update(counts)
                run["workers_changed"] = after != pids
                # Host CPU time this run's processes did not use (other work on the machine;
                # approximate: softirq time outside any of them counts here too).
                run["server_cpu_s"] = round(cpu1[1] - cpu0[1], 2)
                run["client_cpu_s"] = round(cpu1[2] - cpu0[2], 2)
                run["other_cpu_s"] = round((cpu1[0] - cpu0[0]) - (cpu1[1] - cpu0[1])
                                           - (cpu1[2] - cpu0[2]), 2)
                run["loadavg_after"] = os.getloadavg()[0]
                if accepted0 is not None:
                    run["kernel_accepted"] = [accepted1.get(p, 0) - accepted0.get(p, 0)
                                              for p in order]
                runs[config].append(run)
                print(f"round {round_index + 1} {config:10} connections {run['connections']} "
                      f"CV {run['cv_connections']:.3f}  open CV {run['cv_open']:.3f}  "
                      f"p99 {run['p99_ms']:.2f} ms  errors {run['errors']}  other CPU "
                      f"{run['other_cpu_s']:.1f} s", flush=True)
    finally:
        shutil.rmtree(appdir, ignore_errors=True)

    keys = ["cv_connections", "cv_slow", "cv_open", "max_share", "p50_ms", "p99_ms",
            "p999_ms", "errors", "fast"]
    summary = {c: {k: statistics.median(r[k] for r in runs[c]) for k in keys} for c in configs}
    ratios = {}
    if "least_conn" in summary and "uvicorn" in summary:
        for k in ("cv_connections", "cv_open", "p99_ms"):
            ratios[f"least_conn/uvicorn {k}"] = summary["least_conn"][k] / summary["uvicorn"][k]
    if "least_conn" in summary and "hash" in summary:
        for k in ("cv_connections", "cv_open", "p99_ms"):
            ratios[f"least_conn/hash {k}"] = summary["least_conn"][k] / summary["hash"][k]
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "kernel": os.uname().release,
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "wall_s": round(time.time() - started, 1),
        "args": relative_args(args),
        "summary": summary,
        "ratios": ratios,
        "runs": runs,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)

    print(f"\n{args.rate:g} req/s open loop, {args.slow_fraction:g} of them await "
          f"{args.slow_ms:g} ms, {WORKERS} uvicorn workers, {args.rounds} x {args.duration:g} s "
          "per configuration; medians\n")
    print("| configuration | CV connections | CV slow conns | CV conn-seconds | busiest share "
          "| p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for c in configs:
        s = summary[c]
        print(f"| {c} | {s['cv_connections']:.3f} | {s['cv_slow']:.3f} | {s['cv_open']:.3f} | "
              f"{s['max_share']:.3f} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | "
              f"{s['errors']:.0f} |")
    print("\n| round | configuration | connections per worker (ascending) | kernel accepted | "
          "CV | CV conn-s | p99 ms | other CPU-s |")
    print("|---|---|---|---|---:|---:|---:|---:|")
    for i in range(args.rounds):
        for c in configs:
            r = runs[c][i]
            print(f"| {i + 1} | {c} | {r['connections']} | {r.get('kernel_accepted', '-')} | "
                  f"{r['cv_connections']:.3f} | {r['cv_open']:.3f} | {r['p99_ms']:.2f} | "
                  f"{r['other_cpu_s']:.1f} |")
    print()
    for name, value in ratios.items():
        print(f"{name} = {value:.3f}")
    plot(runs, configs, args)


def plot(runs, configs, args):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib missing: no plot)")
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    width = 0.8 / len(configs)
    for i, c in enumerate(configs):
        # each worker's share of its run's connections, ascending, mean over the rounds
        shares = [statistics.fmean(r["connections"][k] / max(1, sum(r["connections"]))
                                   for r in runs[c]) for k in range(WORKERS)]
        left.bar([k + i * width for k in range(WORKERS)], [100 * s for s in shares], width,
                 label=c)
        right.bar([k + i * width for k in range(2)],
                  [statistics.median(r["cv_connections"] for r in runs[c]),
                   statistics.median(r["cv_open"] for r in runs[c])], width, label=c)
    left.axhline(100 / WORKERS, color="grey", linewidth=0.8, linestyle="--")
    left.set_xticks([k + width * (len(configs) - 1) / 2 for k in range(WORKERS)],
                    [f"#{k + 1}" for k in range(WORKERS)])
    left.set_xlabel("worker, fewest connections first")
    left.set_ylabel("share of connections (%)")
    left.legend(fontsize=8)
    right.set_xticks([width * (len(configs) - 1) / 2 + k for k in range(2)],
                     ["connections", "connection-seconds"])
    right.set_ylabel("CV over the 4 workers")
    right.legend(fontsize=8)
    fig.suptitle(f"4 uvicorn workers, {args.rate:g} new connections/s, {args.slow_fraction:g} held "
                 f"{args.slow_ms:g} ms", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)


if __name__ == "__main__":
    main()
