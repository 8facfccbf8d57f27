#!/usr/bin/env python3
"""Side-by-side benchmark: sockdispatch (eBPF dispatch, and line mode with and without fd
batching) and Debian's nginx (reuseport).

Both serve the same 13-byte file from the same directory with the same worker count, pinned
to the same CPUs; wrk runs on the other CPU. Runs are interleaved (sockdispatch, nginx,
sockdispatch, ...) so drift hits both alike, and each server's CPU time over each run is
read from /proc, giving requests per server CPU-second beside req/s and p99.

Workloads:
  keepalive  wrk -t1 -cC -dD --latency URL                     (requests/s, p99)
  close      wrk -t1 -cC -dD --latency -H 'Connection: close'  (new connections/s, p99)

Servers (--servers picks some): sockdispatch (--mode ebpf), sockdispatch-line (--mode line),
sockdispatch-line-nobatch (--mode line --line-batch 1: one message per connection), nginx;
and, only when named: sockdispatch-cached (--file-cache-valid 60, as nginx's open_file_cache
trusts its entries for 60 s), library-fixed (bench/fixed_answer_server.cc: the library with one
handler answering "Hello, World!"), nginx-return (nginx's `return 200 "Hello, World!"`), and
sockdispatch-deferred / sockdispatch-line-deferred (--defer-accept 1) beside nginx-deferred
(`listen ... deferred`): the same TCP_DEFER_ACCEPT on both sides.
--baseline-binary PATH adds sockdispatch-baseline: another build (an earlier commit), in eBPF
mode or as --baseline-variant says, interleaved with the rest, for a before/after comparison in
one run.

Usage (as root, after `packaging/install-deps.sh --bench` and a build in ./build):
  bench/core_bench.py [--rounds 3] [--duration 10] [--connections 50] [--workers 2]
Writes bench/results/core.json and prints a Markdown table.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BODY = b"Hello, World!"  # 13 bytes
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_pids(pid):
    """pid and all its descendants."""
    pids, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True)
        except FileNotFoundError:
            break
        for child in out.stdout.split():
            pids.append(int(child))
            frontier.append(int(child))
    return pids


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / CLK_TCK


def wait_for_http(port, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(100).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not answer")


class Server:
    def __init__(self, name, argv, port, cpus):
        self.name, self.port = name, port
        self.proc = subprocess.Popen(["taskset", "-c", cpus] + argv, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for_http(port)
        time.sleep(0.3)
        self.pids = tree_pids(self.proc.pid)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_sockdispatch(binary, docroot, workers, cpus, name="sockdispatch", extra=()):
    port = free_port()
    argv = [binary, "attach", str(port), "--bind", "127.0.0.1", "--workers", str(workers),
            "--root", docroot] + list(extra)
    return Server(name, argv, port, cpus)


SOCKDISPATCH_VARIANTS = {
    "sockdispatch": ["--mode", "ebpf"],
    "sockdispatch-line": ["--mode", "line"],
    "sockdispatch-line-nobatch": ["--mode", "line", "--line-batch", "1"],
}
ALL_SERVERS = list(SOCKDISPATCH_VARIANTS) + ["nginx"]
# The core runs give nginx its open_file_cache (descriptors and stat results kept, trusted for
# its default open_file_cache_valid of 60 s), as a tuned static-file nginx runs.
NGINX_FILE_CACHE = "open_file_cache max=1000 inactive=60s;"
# Run only when named: sockdispatch trusting its file cache for 60 s as nginx's
# open_file_cache does (--file-cache-valid 60), and the fixed answer (no file): the library's
# one-handler server beside nginx's `return 200`.
SOCKDISPATCH_VARIANTS["sockdispatch-cached"] = ["--mode", "ebpf", "--file-cache-valid", "60"]
# Accepts deferred until the request arrives (--defer-accept 1, TCP_DEFER_ACCEPT), beside
# nginx-deferred (`listen ... deferred`, the same socket option), in both modes.
SOCKDISPATCH_VARIANTS["sockdispatch-deferred"] = ["--mode", "ebpf", "--defer-accept", "1"]
SOCKDISPATCH_VARIANTS["sockdispatch-line-deferred"] = ["--mode", "line", "--defer-accept", "1"]
# nginx-deferred: nginx with `listen ... deferred` (TCP_DEFER_ACCEPT, a connection accepted
# once its request has arrived), beside sockdispatch --defer-accept.
FIXED_SERVERS = ["sockdispatch-cached", "library-fixed", "nginx-return", "nginx-deferred",
                 "sockdispatch-deferred", "sockdispatch-line-deferred"]
FIXED_BODY = "Hello, World!"


def start_fixed_answer(binary, workers, cpus):
    port = free_port()
    return Server("library-fixed", [binary, str(port), str(workers)], port, cpus)


def start_nginx(workdir, docroot, workers, cpus, worker_connections=4096, http_extra="",
                location="", listen_extra=""):
    """nginx serving `docroot` with reuseport and sendfile; `http_extra`: more directives for
    its http{}; `location`: directives for its `location /` (none: the file under the root);
    `listen_extra`: more parameters of its `listen` (e.g. `deferred`)."""
    port = free_port()
    conf = os.path.join(workdir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes {workers};
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    sendfile on;
    tcp_nopush off;
    {http_extra}
    server {{
        listen 127.0.0.1:{port} reuseport{listen_extra};
        root {docroot};
        location / {{ {location} }}
    }}
}}
""")
    return Server("nginx", ["nginx", "-c", conf, "-p", workdir], port, cpus)


LATENCY_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def run_wrk(port, duration, connections, client_cpu, close):
    argv = ["taskset", "-c", client_cpu, "wrk", "-t1", f"-c{connections}", f"-d{duration}s",
            "--latency"]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(f"http://127.0.0.1:{port}/")
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": rps,
        "p99_ms": float(p99.group(1)) * LATENCY_UNITS[p99.group(2)],
        "requests": total,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
    }


def measure(server, args, close):
    before = cpu_seconds(server.pids)
    result = run_wrk(server.port, args.duration, args.connections, args.client_cpu, close)
    used = cpu_seconds(server.pids) - before
    result["server_cpu_s"] = round(used, 2)
    result["req_per_cpu_s"] = round(result["requests"] / used, 1) if used > 0 else None
    return result


def summarize(runs):
    keys = ["rps", "p99_ms", "req_per_cpu_s"]
    out = {k: statistics.median([r[k] for r in runs if r[k] is not None]) for k in keys}
    out["non2xx"] = sum(r["non2xx"] for r in runs)
    out["socket_errors"] = sum(r["socket_errors"] for r in runs)
    return out


def require_tools(script, binary):
    for tool in ("wrk", "nginx", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{script}: {tool} not found; run packaging/install-deps.sh --bench")
    if not os.path.exists(binary):
        sys.exit(f"{script}: {binary} not found; build first")


def make_docroot(prefix):
    """A temporary directory with www/index.html holding BODY: (workdir, docroot)."""
    workdir = tempfile.mkdtemp(prefix=prefix)
    docroot = os.path.join(workdir, "www")
    os.makedirs(docroot)
    with open(os.path.join(docroot, "index.html"), "wb") as f:
        f.write(BODY)
    os.chmod(workdir, 0o755)
    return workdir, docroot


def relative_args(args):
    """The arguments for the report, paths inside the repository made relative to it."""
    return {k: (os.path.relpath(v, ROOT) if isinstance(v, str) and v.startswith(ROOT) else v)
            for k, v in vars(args).items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server-cpus", default="1")
    parser.add_argument("--client-cpu", default="0")
    parser.add_argument("--binary", default=os.path.join(ROOT, "build", "sockdispatch"))
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "core.json"))
    parser.add_argument("--servers", default=",".join(ALL_SERVERS),
                        help="comma-separated subset of: " + ", ".join(ALL_SERVERS + FIXED_SERVERS))
    parser.add_argument("--fixed-binary", default=os.path.join(ROOT, "build", "fixed_answer_server"),
                        help="the library-fixed server (build with -DSOCKDISPATCH_BENCH=ON)")
    parser.add_argument("--baseline-binary", default=None,
                        help="another build of sockdispatch, run as sockdispatch-baseline")
    parser.add_argument("--baseline-variant", default="sockdispatch", choices=SOCKDISPATCH_VARIANTS,
                        help="the flags the baseline runs with (default: eBPF mode)")
    args = parser.parse_args()
    require_tools("core_bench", args.binary)
    if args.baseline_binary and not os.path.exists(args.baseline_binary):
        sys.exit(f"core_bench: {args.baseline_binary} not found")
    wanted = [name for name in args.servers.split(",") if name]
    unknown = [name for name in wanted if name not in ALL_SERVERS + FIXED_SERVERS]
    if unknown:
        sys.exit(f"core_bench: unknown server {unknown[0]} "
                 f"(known: {', '.join(ALL_SERVERS + FIXED_SERVERS)})")
    if "library-fixed" in wanted and not os.path.exists(args.fixed_binary):
        sys.exit(f"core_bench: {args.fixed_binary} not found (configure with "
                 "-DSOCKDISPATCH_BENCH=ON and build fixed_answer_server)")
    workdir, docroot = make_docroot("sockdispatch-bench-")

    servers = {}
    for name in wanted:
        if name == "nginx":
            servers[name] = start_nginx(workdir, docroot, args.workers, args.server_cpus,
                                        http_extra=NGINX_FILE_CACHE)
        elif name == "nginx-deferred":
            os.makedirs(os.path.join(workdir, "deferred"))
            servers[name] = start_nginx(os.path.join(workdir, "deferred"), docroot,
                                        args.workers, args.server_cpus,
                                        http_extra=NGINX_FILE_CACHE, listen_extra=" deferred")
            servers[name].name = name
        elif name == "nginx-return":
            os.makedirs(os.path.join(workdir, "return"))
            servers[name] = start_nginx(
                os.path.join(workdir, "return"), docroot, args.workers, args.server_cpus,
                location=f'default_type text/plain; return 200 "{FIXED_BODY}";')
            servers[name].name = name
        elif name == "library-fixed":
            servers[name] = start_fixed_answer(args.fixed_binary, args.workers, args.server_cpus)
        else:
            servers[name] = start_sockdispatch(args.binary, docroot, args.workers,
                                               args.server_cpus, name, SOCKDISPATCH_VARIANTS[name])
    if args.baseline_binary:
        servers["sockdispatch-baseline"] = start_sockdispatch(
            args.baseline_binary, docroot, args.workers, args.server_cpus,
            "sockdispatch-baseline", SOCKDISPATCH_VARIANTS[args.baseline_variant])
    runs = {(name, mode): [] for name in servers for mode in ("keepalive", "close")}
    try:
        for round_index in range(args.rounds):
            # The order rotates each round, so no server always runs first after a switch.
            names = list(servers)
            shift = round_index % len(names)
            order = names[shift:] + names[:shift]
            for mode in ("keepalive", "close"):
                for name in order:
                    server = servers[name]
                    result = measure(server, args, close=(mode == "close"))
                    runs[(name, mode)].append(result)
                    print(f"round {round_index + 1} {mode:9} {name:26} "
                          f"{result['rps']:>10.0f} req/s  p99 {result['p99_ms']:.2f} ms  "
                          f"{result['req_per_cpu_s']} req/CPU-s  non2xx {result['non2xx']} "
                          f"errors {result['socket_errors']}", flush=True)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    summary = {f"{name}/{mode}": summarize(r) for (name, mode), r in runs.items()}
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "kernel": os.uname().release,
        "cpus": os.cpu_count(),
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
        "args": relative_args(args),
        "summary": summary,
        "runs": {f"{n}/{m}": r for (n, m), r in runs.items()},
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)

    print()
    print("| workload | server | req/s | p99 (ms) | req per server CPU-s | non-2xx | socket errors |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for mode in ("keepalive", "close"):
        for name in servers:
            s = summary[f"{name}/{mode}"]
            print(f"| {mode} | {name} | {s['rps']:.0f} | {s['p99_ms']:.2f} | "
                  f"{s['req_per_cpu_s']:.0f} | {s['non2xx']} | {s['socket_errors']} |")
    def ratio(a, b, mode):
        if f"{a}/{mode}" in summary and f"{b}/{mode}" in summary:
            x, y = summary[f"{a}/{mode}"], summary[f"{b}/{mode}"]
            print(f"{mode}: {a}/{b} req/s ratio {x['rps'] / y['rps']:.2f}, "
                  f"per CPU-s ratio {x['req_per_cpu_s'] / y['req_per_cpu_s']:.2f}")

    for mode in ("keepalive", "close"):
        ratio("sockdispatch", "nginx", mode)
        ratio("sockdispatch-cached", "nginx", mode)
        ratio("sockdispatch-deferred", "nginx-deferred", mode)
        ratio("sockdispatch-deferred", "nginx", mode)
        ratio("sockdispatch-deferred", "sockdispatch", mode)
        ratio("sockdispatch-line-deferred", "sockdispatch-deferred", mode)
        ratio("sockdispatch", "sockdispatch-baseline", mode)
        ratio("sockdispatch-line", "sockdispatch-baseline", mode)
        ratio("sockdispatch-line", "sockdispatch", mode)
        ratio("sockdispatch-line", "sockdispatch-line-nobatch", mode)
        ratio("library-fixed", "nginx-return", mode)


if __name__ == "__main__":
    main()
