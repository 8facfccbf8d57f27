#!/usr/bin/env python3
"""`sockdispatch adopt PORT` on a running nginx: what the steering costs, and a stopped worker.

Debian's nginx, W (4) workers, `listen 127.0.0.1:PORT reuseport`, the core benchmark's
server block (the same 13-byte file from a root, sendfile on, access_log off,
keepalive_requests 1000000: core_bench.start_nginx), pinned to --server-cpus; the clients run
on --client-cpu. One nginx serves the whole run, measured in these configurations,
interleaved over R rounds (the order rotates each round):
  alone    the kernel's reuseport hash;
  adopted  `sockdispatch adopt PORT --interval MS` (default policy: least_conn, on the
           kernel-measured load), started after nginx for each measurement, pinned to the
           server CPUs, used once its stdout says "adopted ...", stopped with SIGTERM
           afterwards (it must exit 0 and leave no pins).

1. Throughput, no stall: `wrk -t1 -cC -dD` keep-alive, and with `Connection: close` (every
   request a new connection: what the steering program and the load accounting touch).
   Server CPU from /proc/PID/stat around each run: nginx's master and workers, and for
   adopted the controller's own, reported apart and included in the total; host CPU (all
   processes, softirq included, from /proc/stat) beside it, since on loopback the SYN and
   the BPF programs run mostly on the client's CPU. Ratios adopted / alone of the medians.
2. Stall: an open-loop load of RATE new connections/s (one request each, sent on schedule:
   every request is its own asyncio task, so a stalled server never delays the next send;
   latency is counted from the scheduled send time), during which one nginx worker is
   SIGSTOPped for S (2) s and then SIGCONTed. A connection is *delayed* when its answer came
   more than L (1) s after its scheduled time, or not at all within the run. Reported: the
   share delayed among the connections scheduled in the first S - L seconds of the stall
   (those for which landing on the stopped worker means waiting over L: the hash sends a
   quarter there), and the share among all connections scheduled during the stall.
   Each run also records the listeners' accept queues before it (ss) and the host's
   ListenOverflows, ListenDrops, TCPSynRetrans and TCPMigrateReq* deltas over it.
3. Unless --no-bpf-stats: one more adopted `Connection: close` run with
   kernel.bpf_stats_enabled=1 (restored afterwards, also on error), reading run_cnt and
   run_time_ns of the steering program (status --json), the foreign-load program
   (count_children, found by the attachment's pinned slots map) and, where it is still
   loaded, the controller's group scan (scan_listeners: the iter/tcp program adopt runs at
   adoption only): the kernel's own ns per connection for each.
4. Unless --no-bpf-stats: the controller's CPU with no load against the number of TCP
   sockets in the namespace (its rescans dump only the listeners): for each count in --held, that many
   idle loopback connections are held open on a port of the script's own, and adopt's CPU is
   read over --scan-window s, then the group scan's runs and ns over 1 s of bpf_stats.

--adopt-intervals (default 100,1000) runs one adopted configuration per adopt --interval:
"adopted" is adopt's default (100 ms), "adopted-1000ms" scans ten times less often.

Usage (as root, after `packaging/install-deps.sh --bench` and a build in build/; Debian's
python3 for matplotlib):
  /usr/bin/python3 bench/adopt_bench.py [--rounds 3] [--duration 8] [--connections 50]
      [--workers 4] [--rate 200] [--stall-s 2] [--late-s 1] [--adopt-intervals 100,1000]
Writes bench/results/adopt.json and docs/adopt-bench.png, and prints Markdown tables. nginx,
a stopped worker and adopt are stopped (SIGCONT, SIGTERM, then SIGKILL) on any exit.
"""
import argparse
import asyncio
import json
import os
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from core_bench import (ROOT, cpu_seconds, make_docroot, relative_args, run_wrk,  # noqa: E402
                        start_nginx)



def config_names(intervals):
    """alone, then one adopted configuration per --interval: "adopted" for adopt's default
    (100 ms), "adopted-Nms" for the others."""
    return ["alone"] + ["adopted" if ms == 100 else f"adopted-{ms}ms" for ms in intervals]


def interval_of(config):
    if config == "alone":
        return None
    return 100 if config == "adopted" else int(config[len("adopted-"):-len("ms")])

MODES = ["keepalive", "close"]
PIN_ROOT = "/sys/fs/bpf/sockdispatch"
STATS = "/proc/sys/kernel/bpf_stats_enabled"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def busy_cpu_seconds():
    """CPU time the whole host spent busy (all CPUs, /proc/stat), in seconds."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / CLK_TCK


def cpu_split(pid):
    """(user, system) CPU seconds of one process, all its threads."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK
    except FileNotFoundError:
        return 0.0, 0.0


def tcp_sockets():
    """TCP sockets of the host: (in use, TIME_WAIT), from /proc/net/sockstat."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                fields = line.split()
                values = dict(zip(fields[1::2], (int(v) for v in fields[2::2])))
                return values["inuse"], values["tw"]
    return 0, 0


NETSTAT_KEYS = ("ListenOverflows", "ListenDrops", "TCPSynRetrans", "TCPMigrateReqSuccess",
                "TCPMigrateReqFailure")


def netstat():
    """The host's TcpExt counters of NETSTAT_KEYS (/proc/net/netstat)."""
    with open("/proc/net/netstat") as f:
        lines = [line.split() for line in f if line.startswith("TcpExt:")]
    values = dict(zip(lines[0][1:], (int(v) for v in lines[1][1:])))
    return {k: values.get(k, 0) for k in NETSTAT_KEYS}


def netstat_delta(before, after):
    return {k: after[k] - before[k] for k in NETSTAT_KEYS}


def accept_queues(port):
    """Each listener's accept queue on 127.0.0.1:port (ss's Recv-Q), in ss's order."""
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True,
                         text=True).stdout
    return [int(line.split()[1]) for line in out.splitlines() if line.strip()]


async def timed_request(port, timeout):
    """GET / on a new connection (Connection: close), within `timeout` in all: the outcome
    ("ok", "connect_error", "connect_timeout", "no_answer", "bad_answer") and the seconds
    the handshake took (SYN retransmissions show as 1 s and more)."""
    began = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port),
                                                timeout)
    except asyncio.TimeoutError:
        return "connect_timeout", time.monotonic() - began
    except OSError:
        return "connect_error", time.monotonic() - began
    connected = time.monotonic() - began
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), max(0.001, timeout - connected))
        outcome = "ok" if data.startswith(b"HTTP/1.1 200") else "bad_answer"
    except (OSError, asyncio.TimeoutError):
        outcome = "no_answer"
    finally:
        writer.close()
    return outcome, connected


def process_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


class Adopt:
    """A running `sockdispatch adopt PORT`, past its "adopted ..." line."""

    def __init__(self, binary, port, cpus, logdir, extra=()):
        self.port = port
        self.log_path = os.path.join(logdir, f"adopt-{time.monotonic_ns()}.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(["taskset", "-c", cpus, binary, "adopt", str(port)]
                                     + list(extra), stdout=subprocess.PIPE, stderr=self.log,
                                     text=True, start_new_session=True)
        self.exit_code = None
        try:
            self.line = self._read_line(15)
            if not self.line.startswith("adopted "):
                raise RuntimeError(f"adopt did not start: {self.line!r}\n{self.stderr()}")
        except BaseException:
            self.stop()
            raise

    def _read_line(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise RuntimeError(f"adopt printed nothing in {timeout} s\n{self.stderr()}")
        return self.proc.stdout.readline().strip()

    def stderr(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def status(self, binary):
        out = subprocess.run([binary, "status", str(self.port), "--json"],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)

    def stop(self):
        """SIGTERM and its exit code; SIGKILL (and the pins removed) if it does not exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                shutil.rmtree(os.path.join(PIN_ROOT, str(self.port)), ignore_errors=True)
        self.exit_code = self.proc.returncode
        self.proc.stdout.close()
        self.log.close()
        return self.exit_code


class Bench:
    def __init__(self, args, workdir, docroot):
        self.args, self.workdir = args, workdir
        self.nginx = start_nginx(workdir, docroot, args.workers, args.server_cpus)
        self.port = self.nginx.port
        self.stopped = set()  # workers currently SIGSTOPped
        self.adopt = None
        self.adopt_runs = []  # per adopt process: exit code, pins left, its line
        deadline = time.time() + 10
        while len(self.worker_pids()) != args.workers:
            if time.time() > deadline:
                raise RuntimeError(f"nginx did not start {args.workers} workers")
            time.sleep(0.1)
        self.workers = self.worker_pids()
        self.nginx_pids = [self.nginx.proc.pid] + self.workers

    def worker_pids(self):
        pid = self.nginx.proc.pid
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                return sorted(int(p) for p in f.read().split())
        except FileNotFoundError:
            return []

    def start_adopt(self, interval_ms=100):
        self.adopt = Adopt(self.args.binary, self.port, self.args.server_cpus, self.workdir,
                           ["--interval", str(interval_ms)])
        time.sleep(0.3)

    def stop_adopt(self):
        code = self.adopt.stop()
        pins_left = os.path.exists(os.path.join(PIN_ROOT, str(self.port)))
        self.adopt_runs.append({"exit_code": code, "pins_left": pins_left,
                                "line": self.adopt.line})
        if code != 0 or pins_left:
            print(f"adopt exited {code}, pins left: {pins_left}\n{self.adopt.stderr()}",
                  file=sys.stderr)
        self.adopt = None

    def close(self):
        for pid in list(self.stopped):
            os.kill(pid, signal.SIGCONT)
        self.stopped.clear()
        if self.adopt is not None:
            self.stop_adopt()
        self.nginx.stop()

    # 1. Throughput
    def throughput(self, config, mode):
        args = self.args
        if interval_of(config):
            self.start_adopt(interval_of(config))
        try:
            adopt_pid = self.adopt.proc.pid if self.adopt else None
            sockets0, counters0 = tcp_sockets(), netstat()
            result_queues = accept_queues(self.port)
            split0 = cpu_split(adopt_pid) if adopt_pid else (0.0, 0.0)
            nginx0, host0 = cpu_seconds(self.nginx_pids), busy_cpu_seconds()
            client0 = resource.getrusage(resource.RUSAGE_CHILDREN), \
                resource.getrusage(resource.RUSAGE_SELF)
            result = run_wrk(self.port, args.duration, args.connections, args.client_cpu,
                             close=(mode == "close"))
            nginx1, host1 = cpu_seconds(self.nginx_pids), busy_cpu_seconds()
            client1 = resource.getrusage(resource.RUSAGE_CHILDREN), \
                resource.getrusage(resource.RUSAGE_SELF)
            split1 = cpu_split(adopt_pid) if adopt_pid else (0.0, 0.0)
            sockets1, counters1 = tcp_sockets(), netstat()
        finally:
            if interval_of(config):
                self.stop_adopt()
        requests = max(1, result["requests"])
        adopt0, adopt1 = sum(split0), sum(split1)
        result["adopt_user_s"] = round(split1[0] - split0[0], 2)
        result["adopt_system_s"] = round(split1[1] - split0[1], 2)
        result["tcp_sockets_before"], result["tcp_time_wait_before"] = sockets0
        result["tcp_sockets_after"], result["tcp_time_wait_after"] = sockets1
        result["accept_queues_before"] = result_queues
        result["netstat"] = netstat_delta(counters0, counters1)
        result["nginx_cpu_s"] = round(nginx1 - nginx0, 2)
        result["adopt_cpu_s"] = round(adopt1 - adopt0, 2)
        result["server_cpu_s"] = round(result["nginx_cpu_s"] + result["adopt_cpu_s"], 2)
        result["host_cpu_s"] = round(host1 - host0, 2)
        # wrk (a reaped child) and this script: the client side
        client = sum(b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime
                     for a, b in zip(client0, client1))
        result["client_cpu_s"] = round(client, 2)
        # host CPU that none of them used: other work on the machine, softirq outside them
        result["other_cpu_s"] = round((host1 - host0) - (nginx1 - nginx0) - (adopt1 - adopt0)
                                      - client, 2)
        result["nginx_us_per_req"] = (nginx1 - nginx0) * 1e6 / requests
        result["adopt_us_per_req"] = (adopt1 - adopt0) * 1e6 / requests
        result["server_us_per_req"] = result["nginx_us_per_req"] + result["adopt_us_per_req"]
        result["host_us_per_req"] = (host1 - host0) * 1e6 / requests
        return result

    # 2. Stall
    def stall(self, config):
        args = self.args
        if interval_of(config):
            self.start_adopt(interval_of(config))
        victim = self.workers[1]
        queues, counters0 = accept_queues(self.port), netstat()
        try:
            result = asyncio.run(self.stall_load(victim, bool(interval_of(config))))
            result["accept_queues_before"] = queues
            result["netstat"] = netstat_delta(counters0, netstat())
        finally:
            if victim in self.stopped:
                os.kill(victim, signal.SIGCONT)
                self.stopped.discard(victim)
            if interval_of(config):
                self.stop_adopt()
        return summarize_stall(result, args)

    async def stall_load(self, victim, adopted):
        args = self.args
        rate, total_s = args.rate, args.pre_s + args.stall_s + args.post_s
        start = time.monotonic() + 0.05
        marks = {}
        results = []

        async def one(i, scheduled):
            outcome, connect_s = await timed_request(self.port, args.request_timeout)
            results.append((i, scheduled - start, time.monotonic() - scheduled,
                            outcome == "ok", outcome, connect_s))

        async def control():
            await asyncio.sleep(max(0.0, start + args.pre_s - time.monotonic()))
            os.kill(victim, signal.SIGSTOP)
            self.stopped.add(victim)
            marks["stop"] = time.monotonic() - start
            while process_state(victim) != "T":
                await asyncio.sleep(0.001)
            marks["stopped"] = time.monotonic() - start
            if adopted:
                marks["status_at_stop"] = await status_async(args.binary, self.port)
            await asyncio.sleep(max(0.0, start + args.pre_s + args.stall_s - time.monotonic()))
            if adopted:
                marks["status_before_cont"] = await status_async(args.binary, self.port)
            os.kill(victim, signal.SIGCONT)
            self.stopped.discard(victim)
            marks["cont"] = time.monotonic() - start

        tasks = [asyncio.create_task(control())]
        late_sends = 0
        for i in range(int(rate * total_s)):
            scheduled = start + i / rate
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.1:
                late_sends += 1
            tasks.append(asyncio.create_task(one(i, scheduled)))
        await asyncio.gather(*tasks)
        return {"results": sorted(results), "marks": marks, "late_sends": late_sends,
                "victim": victim}


async def status_async(binary, port):
    proc = await asyncio.create_subprocess_exec(binary, "status", str(port), "--json",
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        return None


def slot_of(status, pid):
    for worker in (status or {}).get("workers", []):
        if worker["pid"] == pid:
            return worker
    return None


def summarize_stall(run, args):
    marks, results, late = run["marks"], run["results"], args.late_s
    stop = args.pre_s  # scheduled time of the SIGSTOP (marks["stop"] is when it was sent)
    cont = args.pre_s + args.stall_s

    def delayed(latency, ok):
        return not ok or latency > late
    window = [(lat, ok) for _, t, lat, ok, _, _ in results if stop <= t < cont - late]
    during = [(lat, ok) for _, t, lat, ok, _, _ in results if stop <= t < cont]
    outside = [(lat, ok) for _, t, lat, ok, _, _ in results if not stop <= t < cont]
    outcomes = {}
    for r in results:
        outcomes[r[4]] = outcomes.get(r[4], 0) + 1
    out = {
        "connections": len(results),
        "window_connections": len(window),
        "window_delayed": sum(delayed(lat, ok) for lat, ok in window),
        "stall_connections": len(during),
        "stall_delayed": sum(delayed(lat, ok) for lat, ok in during),
        "outside_connections": len(outside),
        "outside_delayed": sum(delayed(lat, ok) for lat, ok in outside),
        "unanswered": sum(1 for r in results if not r[3]),
        "outcomes": outcomes,
        "slow_handshakes": sum(1 for r in results if r[5] > 0.5),
        "late_sends": run["late_sends"],
        "max_latency_s": max(r[2] for r in results),
        "stop_sent_s": round(marks["stop"], 4),
        "stopped_s": round(marks["stopped"], 4),
        "accept_queues_before": run["accept_queues_before"],
        "netstat": run["netstat"],
        "cont_sent_s": round(marks["cont"], 4),
    }
    out["window_delayed_share"] = out["window_delayed"] / max(1, out["window_connections"])
    out["stall_delayed_share"] = out["stall_delayed"] / max(1, out["stall_connections"])
    fast = sorted(lat for _, t, lat, ok, _, _ in results if ok and not stop <= t < cont)
    out["outside_p99_ms"] = fast[int(0.99 * (len(fast) - 1))] * 1000 if fast else None
    before, after = marks.get("status_at_stop"), marks.get("status_before_cont")
    if before and after:
        b, a = slot_of(before, run["victim"]), slot_of(after, run["victim"])
        if b and a:
            out["stopped_slot"] = a["slot"]
            out["stopped_slot_selected_during_stall"] = a["selected"] - b["selected"]
            out["stopped_slot_queued_before_cont"] = a["queued"]
            out["stopped_slot_at_stop"] = b
            out["stopped_slot_before_cont"] = a
            out["all_selected_during_stall"] = (sum(w["selected"] for w in after["workers"])
                                                - sum(w["selected"] for w in before["workers"]))
    return out


# 3. The programs' own time
def bpftool(*args):
    out = subprocess.run(["bpftool", "--json"] + list(args), capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)


def bpf_costs(bench):
    args = bench.args
    with open(STATS) as f:
        previous = int(f.read())
    scans_before = {p["id"] for p in bpftool("prog", "show") if p.get("name") == "scan_listeners"}
    bench.start_adopt()
    try:
        port = bench.port
        steering = bench.adopt.status(args.binary)["program"]["id"]
        slots = bpftool("map", "show", "pinned", f"{PIN_ROOT}/{port}/slots")["id"]
        ids = {"steering": steering}
        for prog in bpftool("prog", "show"):
            if prog.get("name") == "count_children" and slots in prog.get("map_ids", []):
                ids["foreign_load"] = prog["id"]
            # this adopt's iterator: the scan_listeners program that came with it
            if prog.get("name") == "scan_listeners" and prog["id"] not in scans_before:
                ids["group_scan"] = prog["id"]

        def stats():
            out = {}
            for name, pid in ids.items():
                prog = bpftool("prog", "show", "id", str(pid))
                out[name] = (prog.get("run_cnt", 0), prog.get("run_time_ns", 0))
            return out
        set_stats(1)
        try:
            s0, accepted0 = stats(), sum(w["accepted"] for w in
                                         bench.adopt.status(args.binary)["workers"])
            adopt0, sockets0 = cpu_split(bench.adopt.proc.pid), tcp_sockets()
            wrk = run_wrk(port, args.bpf_duration, args.connections, args.client_cpu, close=True)
            adopt1, sockets1 = cpu_split(bench.adopt.proc.pid), tcp_sockets()
            s1, accepted1 = stats(), sum(w["accepted"] for w in
                                         bench.adopt.status(args.binary)["workers"])
        finally:
            set_stats(previous)
    finally:
        bench.stop_adopt()
    connections = accepted1 - accepted0
    out = {"program_ids": ids, "connections": connections, "wrk_requests": wrk["requests"],
           "wrk_rps": wrk["rps"], "adopt_user_s": round(adopt1[0] - adopt0[0], 2),
           "adopt_system_s": round(adopt1[1] - adopt0[1], 2),
           "tcp_sockets_before": sockets0, "tcp_sockets_after": sockets1,
           "duration_s": args.bpf_duration, "bpf_stats_enabled_before": previous}
    for name in ids:
        runs = s1[name][0] - s0[name][0]
        ns = s1[name][1] - s0[name][1]
        out[name] = {"runs": runs, "ns": ns, "ns_per_run": ns / runs if runs else None,
                     "runs_per_connection": runs / connections if connections else None,
                     "ns_per_connection": ns / connections if connections else None}
    return out


def set_stats(value):
    with open(STATS, "w") as f:
        f.write(str(value))


def scan_cost(bench):
    """The controller's cost with no load, against the number of TCP sockets in the
    namespace: for each count in --held, that many idle loopback connections (2 sockets each)
    are held open by this script on a port of its own; adopt's CPU over --scan-window s
    (bpf_stats off), then 1 s with bpf_stats on for the group scan's runs and ns."""
    args = bench.args
    held = args.held_counts
    with open(STATS) as f:
        previous = int(f.read())
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    sockets, points = [], []
    scans_before = {p["id"] for p in bpftool("prog", "show") if p.get("name") == "scan_listeners"}
    bench.start_adopt()
    try:
        # The iterator runs once, at adoption (the rescans are sock_diag listener dumps), and
        # is unloaded after: there may be no program left to read.
        scan_ids = [p["id"] for p in bpftool("prog", "show")
                    if p.get("name") == "scan_listeners" and p["id"] not in scans_before]
        scan_id = max(scan_ids) if scan_ids else None
        for n in held:
            while len(sockets) < 2 * n:
                client = socket.create_connection(listener.getsockname())
                server, _ = listener.accept()
                sockets += [client, server]
            time.sleep(0.5)
            tcp0, cpu0, t0 = tcp_sockets(), cpu_split(bench.adopt.proc.pid), time.monotonic()
            time.sleep(args.scan_window)
            cpu1, t1 = cpu_split(bench.adopt.proc.pid), time.monotonic()
            prog0 = bpftool("prog", "show", "id", str(scan_id)) if scan_id else {}
            set_stats(1)
            try:
                time.sleep(1.0)
            finally:
                set_stats(previous)
            prog1 = bpftool("prog", "show", "id", str(scan_id)) if scan_id else {}
            tcp1 = tcp_sockets()
            runs = prog1.get("run_cnt", 0) - prog0.get("run_cnt", 0)
            ns = prog1.get("run_time_ns", 0) - prog0.get("run_time_ns", 0)
            cpu_per_s = (sum(cpu1) - sum(cpu0)) / (t1 - t0)
            total = (sum(tcp0) + sum(tcp1)) / 2  # in use + TIME_WAIT, mean of both ends
            point = {"held_connections": n, "tcp_sockets": round(total),
                     "tcp_in_use": round((tcp0[0] + tcp1[0]) / 2),
                     "tcp_time_wait": round((tcp0[1] + tcp1[1]) / 2),
                     "adopt_cpu_ms_per_s": round(cpu_per_s * 1000, 2),
                     "scan_runs_per_s": runs, "scan_ns_per_run": ns / runs if runs else None,
                     "scans_per_s": 1000 / 100}
            # CPU per scan and per socket visited (10 scans a second at --interval 100)
            point["adopt_us_per_scan"] = cpu_per_s * 1e6 / point["scans_per_s"]
            point["adopt_ns_per_socket_per_scan"] = (point["adopt_us_per_scan"] * 1000
                                                     / max(1, total))
            points.append(point)
            print(f"scan cost: {n} held connections, {total:.0f} TCP sockets: adopt "
                  f"{point['adopt_cpu_ms_per_s']} ms CPU/s, "
                  f"{point['adopt_ns_per_socket_per_scan']:.0f} ns per socket per scan, "
                  f"group scan {runs} runs/s at {point['scan_ns_per_run'] or 0:.0f} ns",
                  flush=True)
    finally:
        set_stats(previous)
        bench.stop_adopt()
        for sock in sockets:
            sock.close()
        listener.close()
    return points


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--server-cpus", default="1")
    parser.add_argument("--client-cpu", default="0")
    parser.add_argument("--rate", type=float, default=200, help="new connections/s (stall)")
    parser.add_argument("--pre-s", type=float, default=1.0, help="load before the SIGSTOP")
    parser.add_argument("--stall-s", type=float, default=2.0, help="SIGSTOP to SIGCONT")
    parser.add_argument("--post-s", type=float, default=2.0, help="load after the SIGCONT")
    parser.add_argument("--late-s", type=float, default=1.0, help="delayed: answered later")
    parser.add_argument("--request-timeout", type=float, default=6.0)
    parser.add_argument("--bpf-duration", type=int, default=5)
    parser.add_argument("--no-bpf-stats", action="store_true",
                        help="skip the per-connection program costs and the scan cost")
    parser.add_argument("--held", default="0,4000,8000",
                        help="idle connections held for the scan-cost points")
    parser.add_argument("--scan-window", type=float, default=3.0)
    parser.add_argument("--adopt-intervals", default="100,1000",
                        help="comma-separated adopt --interval values (ms), one configuration "
                        "each")
    parser.add_argument("--binary", default=os.path.join(ROOT, "build", "sockdispatch"))
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "adopt.json"))
    parser.add_argument("--plot", default=os.path.join(ROOT, "docs", "adopt-bench.png"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("adopt_bench: needs root (BPF, pidfd_getfd)")
    for tool in ("wrk", "nginx", "taskset", "bpftool"):
        if shutil.which(tool) is None:
            sys.exit(f"adopt_bench: {tool} not found; run packaging/install-deps.sh --bench")
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"adopt_bench: {args.binary} not found; build first or pass --binary")
    # the scan-cost points hold 2 descriptors per connection
    args.held_counts = sorted(int(n) for n in args.held.split(",") if n) or [0]
    want = 2 * args.held_counts[-1] + 2048
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if not args.no_bpf_stats and want > soft:
        if want > hard:
            sys.exit(f"adopt_bench: --held {args.held_counts[-1]} needs {want} descriptors, "
                     f"the limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    args.configs = config_names([int(ms) for ms in args.adopt_intervals.split(",") if ms])
    if args.late_s >= args.stall_s:
        sys.exit("adopt_bench: --late-s must be shorter than --stall-s")
    # SIGTERM and SIGHUP unwind through the finally blocks like Ctrl-C does.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda n, _frame: sys.exit(128 + n))
    # The stall's client runs on the client CPU too (wrk and taskset'd children set their own).
    os.sched_setaffinity(0, {int(c) for c in args.client_cpu.split(",")})

    workdir, docroot = make_docroot("sockdispatch-adopt-bench-")
    configs = args.configs
    throughput = {(c, m): [] for c in configs for m in MODES}
    stalls = {c: [] for c in configs}
    costs, scan_points = None, None
    load_before, started = os.getloadavg(), time.time()
    bench = None
    try:
        bench = Bench(args, workdir, docroot)
        workers_at_start = bench.workers
        for round_index in range(args.rounds):
            shift = round_index % len(configs)
            order = configs[shift:] + configs[:shift]
            for mode in MODES:
                for config in order:
                    r = bench.throughput(config, mode)
                    throughput[(config, mode)].append(r)
                    print(f"round {round_index + 1} {mode:9} {config:7} {r['rps']:>9.0f} req/s  "
                          f"p99 {r['p99_ms']:.2f} ms  server {r['server_us_per_req']:.2f} us/req "
                          f"(adopt {r['adopt_us_per_req']:.3f})  host "
                          f"{r['host_us_per_req']:.2f} us/req  non2xx {r['non2xx']} errors "
                          f"{r['socket_errors']}  TIME_WAIT {r['tcp_time_wait_before']}  "
                          f"queues {r['accept_queues_before']} {r['netstat']}",
                          flush=True)
            for config in order:
                s = bench.stall(config)
                stalls[config].append(s)
                print(f"round {round_index + 1} stall     {config:7} delayed "
                      f"{s['window_delayed']}/{s['window_connections']} "
                      f"({100 * s['window_delayed_share']:.1f} %) in the first "
                      f"{args.stall_s - args.late_s:g} s, {s['stall_delayed']}/"
                      f"{s['stall_connections']} over the stall, outside "
                      f"{s['outside_delayed']}/{s['outside_connections']}, outcomes "
                      f"{s['outcomes']}, handshakes over 0.5 s {s['slow_handshakes']}, "
                      f"queues {s['accept_queues_before']} {s['netstat']}",
                      flush=True)
        if not args.no_bpf_stats:
            costs = bpf_costs(bench)
            scan_points = scan_cost(bench)
        workers_at_end = bench.worker_pids()
    finally:
        if bench is not None:
            bench.close()
        shutil.rmtree(workdir, ignore_errors=True)

    keys = ["rps", "p99_ms", "nginx_us_per_req", "adopt_us_per_req", "server_us_per_req",
            "host_us_per_req", "other_cpu_s"]
    summary = {}
    for (config, mode), runs in throughput.items():
        s = {k: median(r[k] for r in runs) for k in keys}
        s["non2xx"] = sum(r["non2xx"] for r in runs)
        s["socket_errors"] = sum(r["socket_errors"] for r in runs)
        summary[f"{config}/{mode}"] = s
    ratios = {}
    for config in configs[1:]:
        for mode in MODES:
            a, b = summary[f"{config}/{mode}"], summary[f"alone/{mode}"]
            pairs = list(zip(throughput[(config, mode)], throughput[("alone", mode)]))
            ratios[f"{config}/{mode}"] = {
                "rps": a["rps"] / b["rps"],
                "server_us_per_req": a["server_us_per_req"] / b["server_us_per_req"],
                "nginx_us_per_req": a["nginx_us_per_req"] / b["nginx_us_per_req"],
                "host_us_per_req": a["host_us_per_req"] / b["host_us_per_req"],
                "per_round_rps": [x["rps"] / y["rps"] for x, y in pairs],
                "per_round_server_us_per_req": [x["server_us_per_req"] / y["server_us_per_req"]
                                                for x, y in pairs],
            }
    stall_summary = {}
    for config in configs:
        runs = stalls[config]
        stall_summary[config] = {k: sum(r[k] for r in runs) for k in (
            "window_delayed", "window_connections", "stall_delayed", "stall_connections",
            "outside_delayed", "outside_connections", "unanswered", "late_sends")}
        s = stall_summary[config]
        s["window_delayed_share"] = s["window_delayed"] / max(1, s["window_connections"])
        s["stall_delayed_share"] = s["stall_delayed"] / max(1, s["stall_connections"])
    adopt_ok = all(r["exit_code"] == 0 and not r["pins_left"] for r in bench.adopt_runs)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "kernel": os.uname().release,
        "cpus": os.cpu_count(),
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "wall_s": round(time.time() - started, 1),
        "args": relative_args(args),
        "nginx_workers_unchanged": workers_at_end == workers_at_start,
        "adopt_processes": len(bench.adopt_runs),
        "adopt_all_exited_0_without_pins": adopt_ok,
        "adopt_runs": bench.adopt_runs,
        "summary": summary,
        "ratios_adopted_over_alone": ratios,
        "stall_summary": stall_summary,
        "bpf_costs": costs,
        "scan_cost": scan_points,
        "throughput_runs": {f"{c}/{m}": r for (c, m), r in throughput.items()},
        "stall_runs": stalls,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print_tables(report, args)
    plot(report, args)
    if not adopt_ok:
        sys.exit("adopt_bench: an adopt run did not exit 0 or left its pins")


def print_tables(report, args):
    summary, ratios, configs = report["summary"], report["ratios_adopted_over_alone"], \
        args.configs
    print(f"\nnginx, {args.workers} workers on CPU {args.server_cpus}, wrk -t1 "
          f"-c{args.connections} -d{args.duration}s on CPU {args.client_cpu}; medians of "
          f"{args.rounds} rounds\n")
    print("| workload | nginx | req/s | p99 ms | nginx CPU µs/req | adopt CPU µs/req | "
          "server CPU µs/req | host CPU µs/req | other CPU-s | non-2xx | socket errors |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mode in MODES:
        for config in configs:
            s = summary[f"{config}/{mode}"]
            print(f"| {mode} | {config} | {s['rps']:.0f} | {s['p99_ms']:.2f} | "
                  f"{s['nginx_us_per_req']:.2f} | {s['adopt_us_per_req']:.2f} | "
                  f"{s['server_us_per_req']:.2f} | {s['host_us_per_req']:.2f} | "
                  f"{s['other_cpu_s']:.2f} | {s['non2xx']} | {s['socket_errors']} |")
    print()
    for name, r in ratios.items():
        print(f"{name} / alone: req/s {r['rps']:.3f} (rounds "
              f"{', '.join(f'{x:.3f}' for x in r['per_round_rps'])}), server CPU/req "
              f"{r['server_us_per_req']:.3f} (rounds "
              f"{', '.join(f'{x:.3f}' for x in r['per_round_server_us_per_req'])}), nginx "
              f"CPU/req {r['nginx_us_per_req']:.3f}, host CPU/req {r['host_us_per_req']:.3f}")
    print("\nAll runs, in run order within each round:\n")
    print("| round | workload | nginx | req/s | nginx µs/req | adopt µs/req (user, system s) | "
          "TCP sockets before (TIME_WAIT) | other CPU-s |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for i in range(args.rounds):
        for mode in MODES:
            for config in configs:
                r = report["throughput_runs"][f"{config}/{mode}"][i]
                print(f"| {i + 1} | {mode} | {config} | {r['rps']:.0f} | "
                      f"{r['nginx_us_per_req']:.2f} | {r['adopt_us_per_req']:.2f} "
                      f"({r['adopt_user_s']:.2f}, {r['adopt_system_s']:.2f}) | "
                      f"{r['tcp_sockets_before'] + r['tcp_time_wait_before']} "
                      f"({r['tcp_time_wait_before']}) | {r['other_cpu_s']:.2f} |")
    print(f"\nStall: {args.rate:g} new connections/s, worker stopped {args.stall_s:g} s, delayed "
          f"= answered over {args.late_s:g} s late or not at all\n")
    print("| nginx | delayed, first {:g} s of the stall | delayed, whole stall | delayed, "
          "outside the stall | unanswered |".format(args.stall_s - args.late_s))
    print("|---|---:|---:|---:|---:|")
    for config in configs:
        s = report["stall_summary"][config]
        print(f"| {config} | {s['window_delayed']}/{s['window_connections']} "
              f"({100 * s['window_delayed_share']:.1f} %) | {s['stall_delayed']}/"
              f"{s['stall_connections']} ({100 * s['stall_delayed_share']:.1f} %) | "
              f"{s['outside_delayed']}/{s['outside_connections']} | {s['unanswered']} |")
    costs = report["bpf_costs"]
    if costs:
        print(f"\nbpf_stats, one adopted Connection: close run of {costs['duration_s']} s, "
              f"{costs['connections']} connections (slots' accepted):")
        for name in costs["program_ids"]:
            c = costs[name]
            if c["runs"]:
                print(f"  {name}: {c['runs']} runs, {c['ns_per_run']:.0f} ns/run, "
                      f"{c['runs_per_connection']:.3f} runs/conn, "
                      f"{c['ns_per_connection']:.0f} ns/conn")
            else:
                print(f"  {name}: no runs")
        print(f"  adopt controller CPU over it: user {costs['adopt_user_s']} s, system "
              f"{costs['adopt_system_s']} s; TCP sockets (in use, TIME_WAIT) "
              f"{costs['tcp_sockets_before']} -> {costs['tcp_sockets_after']}")
    if report["scan_cost"]:
        print("\nThe controller with no load (adopt --interval 100), against the TCP sockets "
              "of the namespace\n")
        print("| held idle connections | TCP sockets (TIME_WAIT) | adopt CPU ms/s | µs per scan | "
              "ns per socket per scan | group-scan runs/s | ns per run |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for p in report["scan_cost"]:
            print(f"| {p['held_connections']} | {p['tcp_sockets']} ({p['tcp_time_wait']}) | "
                  f"{p['adopt_cpu_ms_per_s']:.1f} | {p['adopt_us_per_scan']:.0f} | "
                  f"{p['adopt_ns_per_socket_per_scan']:.0f} | {p['scan_runs_per_s']} | "
                  f"{p['scan_ns_per_run'] or 0:.0f} |")


def plot(report, args):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib missing: no plot)")
        return
    configs = args.configs
    points = report.get("scan_cost")
    fig, axes = plt.subplots(1, 3 if points else 2, figsize=(15 if points else 10, 4.1))
    left, right = axes[0], axes[1]
    colors = {c: f"C{i}" if i else "C7" for i, c in enumerate(configs)}
    labels = {c: "nginx alone\n(kernel hash)" if c == "alone" else
              f"adopted\n(--interval {interval_of(c)} ms)" for c in configs}
    for i, config in enumerate(configs):
        shares = [100 * r["window_delayed_share"] for r in report["stall_runs"][config]]
        total = 100 * report["stall_summary"][config]["window_delayed_share"]
        left.bar(i, total, 0.6, color=colors[config])
        left.scatter([i] * len(shares), shares, color="black", s=12, zorder=3)
        left.text(i + 0.32, total, f"{total:.1f} %", ha="left", va="center", fontsize=9)
    left.axhline(100 / args.workers, color="grey", linewidth=0.8, linestyle="--")
    left.set_xticks(range(len(configs)), [labels[c] for c in configs], fontsize=8)
    left.set_ylabel(f"new connections > {args.late_s:g} s late (%)")
    left.set_title(f"one of {args.workers} workers stopped {args.stall_s:g} s, "
                   f"{args.rate:g} conn/s\n(dots: rounds; dashed: 1 / {args.workers})",
                   fontsize=9)
    width = 0.8 / len(configs)
    for i, config in enumerate(configs):
        xs = [k + (i - (len(configs) - 1) / 2) * width for k in range(len(MODES))]
        nginx = [report["summary"][f"{config}/{m}"]["nginx_us_per_req"] for m in MODES]
        adopt = [report["summary"][f"{config}/{m}"]["adopt_us_per_req"] for m in MODES]
        right.bar(xs, nginx, width, color=colors[config], label=labels[config].replace("\n", " "))
        if config != "alone":
            right.bar(xs, adopt, width, bottom=nginx, color=colors[config], alpha=0.4,
                      hatch="//", edgecolor="black", linewidth=0.3)
        for x, n, a in zip(xs, nginx, adopt):
            right.text(x, n + a, f"{n + a:.1f}", ha="center", va="bottom", fontsize=7)
    right.set_xticks(range(len(MODES)), ["keep-alive", "Connection: close"])
    right.set_ylabel("server CPU µs per request")
    right.set_title("no stall, medians; hatched: the adopt controller's own CPU", fontsize=9)
    right.legend(fontsize=7)
    if points:
        scan = axes[2]
        xs = [p["tcp_sockets"] / 1000 for p in points]
        scan.plot(xs, [p["adopt_cpu_ms_per_s"] for p in points], marker="o", color="C1",
                  label="no load, idle connections held (--interval 100)")
        for config in configs[1:]:
            runs = [r for m in MODES for r in report["throughput_runs"][f"{config}/{m}"]]
            scan.scatter([(r["tcp_sockets_before"] + r["tcp_time_wait_before"]) / 1000
                          for r in runs],
                         [1000 * (r["adopt_user_s"] + r["adopt_system_s"]) / args.duration
                          for r in runs], s=14, color=colors[config],
                         label=f"during the wrk runs (--interval {interval_of(config)} ms)")
        scan.set_xlabel("TCP sockets in the namespace at the start (thousands)")
        scan.set_ylabel("adopt controller CPU (ms per s)")
        scan.set_xlim(left=0)
        scan.set_ylim(bottom=0)
        scan.set_title("the controller's own CPU against the host's TCP sockets", fontsize=9)
        scan.legend(fontsize=7)
    fig.suptitle(f"sockdispatch adopt on nginx ({args.workers} workers, reuseport)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)


if __name__ == "__main__":
    main()
