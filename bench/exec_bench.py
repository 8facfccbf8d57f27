#!/usr/bin/env python3
"""Unmodified programs behind sockdispatch: a skewed gunicorn app, open-loop load.

The app (written to a temporary directory) answers /slow after sleeping S ms and / at once.
Four gunicorn sync copies serve it three ways, in the same run, interleaved over R rounds:
  least_conn  sockdispatch attach -w 4 -- gunicorn -w 1 (the default policy, on the load the
              kernel measures for the copies: bpf/foreign_load.bpf.c)
  hash        the same with --policy hash (the kernel's plain SO_REUSEPORT hashing)
  gunicorn    gunicorn's own master, -w 4 on one shared socket
The load is open loop: requests are sent on a fixed schedule (RATE per second, every tenth
one /slow), each on a new connection, and each latency is counted from the request's
scheduled send time, so a stalled server cannot slow the clock down (no coordinated
omission). Reported: p50/p99/p99.9 of the fast requests, how many fast ones waited over S/2
ms, errors, and the ratios of the p99s.

Usage (as root, after a build in build/): bench/exec_bench.py [--rounds 2] [--duration 10]
  [--rate 120] [--slow-ms 100]
Writes bench/results/exec.json and docs/exec-bench.png, and prints a Markdown table.
"""
import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from core_bench import ROOT, free_port, relative_args, wait_for_http  # noqa: E402

APP = """import time
def app(environ, start_response):
    if environ.get("PATH_INFO") == "/slow":
        time.sleep({slow_s})
    body = b"ok\\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [body]
"""
CONFIGS = ["least_conn", "hash", "gunicorn"]


def start(config, binary, appdir, port):
    gunicorn = ["/usr/bin/gunicorn", "--chdir", appdir, "--graceful-timeout", "2"]
    if config == "gunicorn":
        argv = gunicorn + ["--workers", "4", "--bind", f"127.0.0.1:{port}", "app:app"]
    else:
        argv = [binary, "attach", str(port), "--bind", "127.0.0.1", "--workers", "4",
                "--policy", config, "--"] + gunicorn + ["--workers", "1", "app:app"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_http(port)
    time.sleep(1.0)
    return proc


async def request_close(port, path, timeout):
    """GET path on a new connection (Connection: close): everything the server sent, or None
    when it could not connect or did not finish within timeout."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port),
                                                timeout)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)
        writer.close()
        return data
    except (OSError, asyncio.TimeoutError):
        return None


async def one(port, path, scheduled, results, timeout):
    data = await request_close(port, path, timeout)
    ok = data is not None and (data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.0 200"))
    results.append((path, time.monotonic() - scheduled, ok))


async def load(port, rate, duration, slow_every=10, timeout=10.0):
    results, tasks = [], []
    start = time.monotonic() + 0.05
    total = int(rate * duration)
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        path = "/slow" if i % slow_every == slow_every - 1 else "/"
        tasks.append(asyncio.create_task(one(port, path, scheduled, results, timeout)))
    await asyncio.gather(*tasks)
    return results


def summarize(results, slow_ms):
    fast = sorted(lat * 1000 for path, lat, ok in results if path == "/" and ok)
    errors = sum(1 for _, _, ok in results if not ok)

    def pct(p):
        return fast[min(len(fast) - 1, int(p * len(fast)))] if fast else float("nan")
    return {"fast": len(fast), "errors": errors, "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "p999_ms": pct(0.999), "stalled": sum(1 for v in fast if v > slow_ms / 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--rate", type=float, default=120)
    parser.add_argument("--slow-ms", type=float, default=100)
    parser.add_argument("--binary", default=os.path.join(ROOT, "build", "sockdispatch"))
    args = parser.parse_args()
    if os.geteuid() != 0 or not shutil.which("gunicorn"):
        sys.exit("exec_bench: needs root and Debian's gunicorn (packaging/install-deps.sh)")
    appdir = tempfile.mkdtemp(prefix="sockdispatch-exec-bench-")
    with open(os.path.join(appdir, "app.py"), "w") as f:
        f.write(APP.format(slow_s=args.slow_ms / 1000))
    runs = {c: [] for c in CONFIGS}
    try:
        for _ in range(args.rounds):
            for config in CONFIGS:
                port = free_port()
                proc = start(config, args.binary, appdir, port)
                try:
                    results = asyncio.run(load(port, args.rate, args.duration))
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=20)
                runs[config].append(summarize(results, args.slow_ms))
    finally:
        shutil.rmtree(appdir, ignore_errors=True)

    def mean(config, key):
        values = [r[key] for r in runs[config]]
        return sum(values) / len(values)
    summary = {c: {k: mean(c, k) for k in runs[c][0]} for c in CONFIGS}
    out = {"args": relative_args(args), "runs": runs, "summary": summary}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "exec.json"), "w") as f:
        json.dump(out, f, indent=2)
    print(f"{args.rate:g} req/s open loop, 1 in 10 sleeps {args.slow_ms:g} ms, 4 gunicorn sync "
          f"copies, {args.rounds} x {args.duration:g} s per configuration\n")
    print("| configuration | fast requests | p50 ms | p99 ms | p99.9 ms | fast > S/2 | errors |")
    print("|---|---|---|---|---|---|---|")
    for c in CONFIGS:
        s = summary[c]
        print(f"| {c} | {s['fast']:.0f} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | "
              f"{s['p999_ms']:.2f} | {s['stalled']:.1f} | {s['errors']:.0f} |")
    lc = summary["least_conn"]["p99_ms"]
    print(f"\nleast_conn p99 = {lc / summary['hash']['p99_ms']:.3f}x hash's, "
          f"{lc / summary['gunicorn']['p99_ms']:.3f}x gunicorn's own master")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 3.2))
        keys = ["p50_ms", "p99_ms", "p999_ms"]
        for i, c in enumerate(CONFIGS):
            ax.bar([k + i * 0.27 for k in range(3)], [summary[c][k] for k in keys], 0.27,
                   label=c)
        ax.set_xticks([k + 0.27 for k in range(3)], ["p50", "p99", "p99.9"])
        ax.set_ylabel("fast request latency (ms)")
        ax.set_title(f"4 gunicorn copies, 1 in 10 requests sleeps {args.slow_ms:g} ms")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(ROOT, "docs", "exec-bench.png"), dpi=110)
    except ImportError:
        print("(matplotlib missing: no plot)")


if __name__ == "__main__":
    main()
