#!/usr/bin/env python3
"""Reload under load: sockdispatch (SIGHUP) beside Debian's nginx (`nginx -s reload`).

Each server runs with the same worker count and the same 13-byte file, pinned to the same
CPUs, while wrk runs on the other CPU for `--duration` seconds. During the run the server is
reloaded every `--interval` seconds: sockdispatch by SIGHUP to its master (a new generation
of workers starts, the old one is retired without loss), nginx by `nginx -s reload`
(its documented reload). wrk's own counters give the failures: socket errors (connect,
read, write, timeout) and non-2xx answers. wrk exits 0 whatever they are, so they are read
from its output.

Workloads: `close` (a new connection per request: what a reload can lose from the accept
queues) and `keepalive`.

Usage (as root, after `packaging/install-deps.sh --bench` and a build in ./build):
  bench/reload_bench.py [--duration 30] [--interval 1] [--connections 50] [--workers 2]
Writes bench/results/reload.json and prints a Markdown table.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import core_bench  # noqa: E402  (shared server start-up and CPU accounting)

ROOT = core_bench.ROOT


def run_wrk(port, duration, connections, client_cpu, close):
    argv = ["taskset", "-c", client_cpu, "wrk", "-t1", f"-c{connections}", f"-d{duration}s",
            "--timeout", "5s"]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(f"http://127.0.0.1:{port}/")
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    connect, read, write, timeout = (int(x) for x in errors.groups()) if errors else (0, 0, 0, 0)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "connect_errors": connect, "read_errors": read, "write_errors": write,
        "timeouts": timeout,
    }


def reload_loop(reload, interval, stop, count):
    while not stop.wait(interval):
        reload()
        count[0] += 1


def measure(server, reload, args, close):
    stop, count = threading.Event(), [0]
    loop = threading.Thread(target=reload_loop, args=(reload, args.interval, stop, count))
    loop.start()
    try:
        result = run_wrk(server.port, args.duration, args.connections, args.client_cpu, close)
    finally:
        stop.set()
        loop.join()
    result["reloads"] = count[0]
    result["failures"] = (result["non2xx"] + result["connect_errors"] + result["read_errors"] +
                          result["write_errors"] + result["timeouts"])
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=30)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server-cpus", default="1")
    parser.add_argument("--client-cpu", default="0")
    parser.add_argument("--binary", default=os.path.join(ROOT, "build", "sockdispatch"))
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "reload.json"))
    args = parser.parse_args()
    core_bench.require_tools("reload_bench", args.binary)
    workdir, docroot = core_bench.make_docroot("sockdispatch-reload-")

    sd = core_bench.start_sockdispatch(args.binary, docroot, args.workers, args.server_cpus)
    ng = core_bench.start_nginx(workdir, docroot, args.workers, args.server_cpus)
    conf = os.path.join(workdir, "nginx.conf")
    reloads = {
        "sockdispatch": (sd, lambda: sd.proc.send_signal(signal.SIGHUP)),
        "nginx": (ng, lambda: subprocess.run(["nginx", "-c", conf, "-p", workdir, "-s", "reload"],
                                             capture_output=True, check=False)),
    }
    results = {}
    try:
        for mode in ("close", "keepalive"):
            for name, (server, reload) in reloads.items():
                r = measure(server, reload, args, close=(mode == "close"))
                results[f"{name}/{mode}"] = r
                print(f"{mode:9} {name:12} {r['rps']:>9.0f} req/s  {r['reloads']} reloads  "
                      f"failures {r['failures']} (connect {r['connect_errors']}, read "
                      f"{r['read_errors']}, write {r['write_errors']}, timeout {r['timeouts']}, "
                      f"non-2xx {r['non2xx']}) of {r['requests']}", flush=True)
    finally:
        sd.stop()
        ng.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    report = {
        "date": time.strftime("%Y-%m-%d"),
        "kernel": os.uname().release,
        "cpus": os.cpu_count(),
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
        "args": core_bench.relative_args(args),
        "results": results,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print()
    print("| workload | server | req/s | reloads | requests | failures | connect | read | write "
          "| timeout | non-2xx |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key, r in results.items():
        mode_name = key.split("/")
        print(f"| {mode_name[1]} | {mode_name[0]} | {r['rps']:.0f} | {r['reloads']} | "
              f"{r['requests']} | {r['failures']} | {r['connect_errors']} | {r['read_errors']} | "
              f"{r['write_errors']} | {r['timeouts']} | {r['non2xx']} |")


if __name__ == "__main__":
    main()
