#!/usr/bin/env python3
"""Memory per idle keep-alive connection: sockdispatch (eBPF dispatch) beside nginx.

Both serve the same 13-byte file with the same worker count. For each count of connections,
each server is started fresh; that many clients connect, each sends one request and reads
its answer, and then all stay open and idle. The memory they cost is measured after they
settled: the RSS of every worker (and the master) against the same reading before they
connected, plus the kernel's TCP socket memory (`/proc/net/sockstat`, `TCP: ... mem` pages,
which counts the clients' ends as well, alike for both servers). Servers are interleaved
(sockdispatch, nginx, sockdispatch, ...) for `--rounds` rounds.

The clients come from several loopback source addresses (127.0.0.2, .3, ...), each with its
own range of ephemeral ports, so 100,000 connections fit, and from several client processes,
each holding at most 15,000 (a process may hold no more descriptors than its hard limit, which
root without CAP_SYS_RESOURCE cannot raise). For the same reason each server runs at least
enough workers to hold its share in 15,000 descriptors a worker (8 for 100,000): the same
count for both servers.

Usage (as root, after `packaging/install-deps.sh --bench` and a build in ./build):
  bench/idle_memory.py [--counts 10000 100000] [--rounds 2] [--workers 2]
Writes bench/results/idle-memory.json and docs/idle-memory.png (matplotlib), and prints a
Markdown table. --replot redraws both from the results file without measuring.
"""
import argparse
import json
import math
import multiprocessing
import os
import resource
import select
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from core_bench import (ROOT, make_docroot, relative_args, require_tools,  # noqa: E402
                        start_nginx, start_sockdispatch, tree_pids)

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
PER_SOURCE = 20000  # connections per source address: well inside the ephemeral range
PER_PROCESS = 15000  # descriptors a client process or a worker holds at most
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def tcp_socket_memory():
    """The kernel's TCP socket memory in bytes (sockstat's `mem`, in pages)."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                fields = line.split()
                return int(fields[fields.index("mem") + 1]) * PAGE
    return 0


def hold_idle(port, first, last, ready, done, timeout=120):
    """In a client process: connections first..last-1, each answered once, held open until
    `done` is set. Sends the number of answered connections (or an error) on `ready`."""
    try:
        sockets = open_idle(port, first, last, timeout)
        ready.send(len(sockets))
    except (OSError, RuntimeError) as error:
        ready.send(str(error))
        return
    done.wait()
    for s in sockets:
        s.close()


def open_idle(port, first, last, timeout):
    sockets, pending = [], {}
    poller = select.epoll()
    deadline = time.time() + timeout
    for i in range(first, last):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT
        s.bind((f"127.0.0.{2 + i // PER_SOURCE}", 0))
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        sockets.append(s)
        pending[s.fileno()] = [s, b""]
        poller.register(s.fileno(), select.EPOLLOUT)
        # Keep the accept queues short: wait for answers every so often.
        while len(pending) > 2000 and time.time() < deadline:
            _pump(poller, pending)
    while pending and time.time() < deadline:
        _pump(poller, pending)
    poller.close()
    if pending:
        raise RuntimeError(f"{len(pending)} of {last - first} connections got no answer")
    return sockets


def _pump(poller, pending):
    for fd, events in poller.poll(0.1):
        entry = pending.get(fd)
        if entry is None:
            continue
        s = entry[0]
        if events & (select.EPOLLERR | select.EPOLLHUP):
            raise RuntimeError("a connection failed")
        if events & select.EPOLLOUT:
            s.send(REQUEST)
            poller.modify(fd, select.EPOLLIN)
            continue
        data = s.recv(4096)
        if not data:
            raise RuntimeError("the server closed an idle connection early")
        entry[1] += data
        head, sep, rest = entry[1].partition(b"\r\n\r\n")
        if sep and head.startswith(b"HTTP/1.1 200") and len(rest) >= 13:
            poller.unregister(fd)
            del pending[fd]


def settle():
    time.sleep(2)


def start_idle_sockdispatch(binary, docroot, workers):
    return start_sockdispatch(binary, docroot, workers, "1",
                              extra=("--mode", "ebpf", "--idle-timeout", "600"))


def start_idle_nginx(workdir, docroot, workers):
    return start_nginx(workdir, docroot, workers, "1", worker_connections=PER_PROCESS + 2000,
                       http_extra="keepalive_timeout 600s;")


def measure(server, count):
    pids = tree_pids(server.proc.pid)
    settle()
    rss_before, kernel_before = rss_bytes(pids), tcp_socket_memory()
    done = multiprocessing.Event()
    clients = []
    for first in range(0, count, PER_PROCESS):
        mine, theirs = multiprocessing.Pipe()
        process = multiprocessing.Process(
            target=hold_idle, args=(server.port, first, min(first + PER_PROCESS, count), theirs,
                                    done))
        process.start()
        clients.append((process, mine))
    try:
        for _, mine in clients:
            answered = mine.recv()
            if isinstance(answered, str):
                raise RuntimeError(f"{server.name}: {answered}")
        settle()
        rss_after, kernel_after = rss_bytes(pids), tcp_socket_memory()
    finally:
        done.set()
        for process, _ in clients:
            process.join()
    return {
        "connections": count,
        "workers": len(pids) - 1,
        "rss_per_connection": (rss_after - rss_before) / count,
        "kernel_per_connection": (kernel_after - kernel_before) / count,
        "total_per_connection": (rss_after - rss_before + kernel_after - kernel_before) / count,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(ROOT, "build", "sockdispatch"))
    parser.add_argument("--counts", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--output", default=os.path.join(ROOT, "bench", "results",
                                                         "idle-memory.json"))
    parser.add_argument("--plot", default=os.path.join(ROOT, "docs", "idle-memory.png"))
    parser.add_argument("--replot", action="store_true",
                        help="redraw the table and the plot from --output, measuring nothing")
    args = parser.parse_args()
    if args.replot:
        with open(args.output) as f:
            report(json.load(f)["summary"], args.plot)
        return
    require_tools("idle_memory.py", args.binary)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < PER_PROCESS + 2000:
        sys.exit(f"idle_memory.py: the descriptor limit ({hard}) is below {PER_PROCESS + 2000}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the servers inherit it
    if max(args.counts) > PER_SOURCE * 250:
        sys.exit("idle_memory.py: too many connections for the source addresses")

    workdir, docroot = make_docroot("idle-memory-")
    results = {"sockdispatch": {}, "nginx": {}}
    for count in args.counts:
        for name in results:
            results[name][count] = []
        # Each worker holds at most PER_PROCESS (hash spreads unevenly: a fifth to spare).
        workers = max(args.workers, 2 ** math.ceil(math.log2(count * 1.2 / PER_PROCESS)))
        for _ in range(args.rounds):
            for name in ("sockdispatch", "nginx"):
                server = (start_idle_sockdispatch(args.binary, docroot, workers)
                          if name == "sockdispatch" else start_idle_nginx(workdir, docroot, workers))
                try:
                    results[name][count].append(measure(server, count))
                finally:
                    server.stop()
                settle()

    summary = summarize(args.counts, results)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump({"args": relative_args(args), "runs": results, "summary": summary}, f,
                  indent=2)
    report(summary, args.plot)


def summarize(counts, results):
    summary = []
    for count in counts:
        medians = {}
        for name in ("sockdispatch", "nginx"):
            runs = results[name][count]
            medians[name] = {key: statistics.median(run[key] for run in runs)
                             for key in ("rss_per_connection", "kernel_per_connection",
                                         "total_per_connection")}
        for name in ("sockdispatch", "nginx"):
            m = medians[name]
            ratio = m["total_per_connection"] / medians["nginx"]["total_per_connection"]
            summary.append({"connections": count, "workers": results[name][count][0]["workers"],
                            "server": name, **m, "vs_nginx": ratio})
    return summary


def report(summary, plot_path):
    print("| connections | workers | server | RSS B/conn | kernel B/conn | total B/conn | vs nginx |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for row in summary:
        print(f"| {row['connections']:,} | {row['workers']} | {row['server']} | "
              f"{row['rss_per_connection']:.0f} | {row['kernel_per_connection']:.0f} | "
              f"{row['total_per_connection']:.0f} | {row['vs_nginx']:.2f}× |")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib missing: no plot)")
        return
    counts = sorted({row["connections"] for row in summary})
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    width = 0.35
    for i, name in enumerate(("sockdispatch", "nginx")):
        values = [next(r["total_per_connection"] for r in summary
                       if r["server"] == name and r["connections"] == c) for c in counts]
        bars = ax.bar([x + (i - 0.5) * width for x in range(len(counts))], values, width,
                      label=name)
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    goals = [0.8 * next(r["total_per_connection"] for r in summary
                        if r["server"] == "nginx" and r["connections"] == c) for c in counts]
    ax.plot(range(len(counts)), goals, "kv", linestyle="none", label="goal: 0.8× nginx")
    ax.set_xticks(range(len(counts)))
    ax.set_xticklabels([f"{c:,} idle\n({next(r['workers'] for r in summary if r['connections'] == c)} workers)"
                        for c in counts])
    ax.set_ylabel("bytes per idle connection\n(workers' RSS + kernel TCP memory)")
    ax.set_ylim(0, max(r["total_per_connection"] for r in summary) * 1.3)
    ax.legend(fontsize=8, loc="upper left", ncol=3)
    ax.set_title("Idle keep-alive connections: memory (medians)", fontsize=11)
    fig.tight_layout()
    fig.savefig(plot_path, dpi=110)
    print(f"plot: {os.path.relpath(plot_path, ROOT)}")


if __name__ == "__main__":
    main()
