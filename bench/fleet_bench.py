#!/usr/bin/env python3
"""Three hosts behind HAProxy, one with a stalled worker pool: agent weights vs leastconn.

Three hosts, each a network namespace of its own with a veth link to the root namespace,
each running `sockdispatch attach PORT --workers W --agent-port 9100` (eBPF mode). Debian's
HAProxy in the root namespace, on 127.0.0.1, in front of them, in two configurations measured
in the same run, interleaved over R rounds (the order alternates each round):
  agent      `balance roundrobin`, every server `weight 100 check agent-check agent-port 9100
             agent-inter 1s`: the hosts say their weight (docs/fleet.md);
  leastconn  `balance leastconn`, `weight 100 check`, no agent: HAProxy's own connection
             counts;
  leastconn-agent  both: `balance leastconn` and the agent check.
Each measurement starts a fresh HAProxy, waits until it sees every server up at weight 100,
then runs an open-loop load of RATE requests/s for D s, each on a new connection through
HAProxy (every request its own asyncio task, sent on schedule, so a stalled server never
delays the next send; latency counts from the scheduled time). Rounds rotate the order. At t = STALL_AT s every
worker of host 0 is SIGSTOPped for S (3) s, then SIGCONTed. A request *fails* when its answer
is not a 200 within TIMEOUT (5) s. Reported per configuration (all rounds pooled): requests,
failures, p50 and p99 over the whole run and over the requests scheduled during the stall,
and the share of those answered more than 1 s late.

Usage (as root, after `packaging/install-deps.sh --bench` and a build in build/):
  /usr/bin/python3 bench/fleet_bench.py [--rounds 2] [--duration 8] [--rate 200]
      [--stall-s 3] [--workers 2]
Writes bench/results/fleet.json and docs/fleet-bench.png, and prints a Markdown table. The
namespaces, HAProxy and the hosts are removed (SIGCONT, SIGKILL) on any exit. Bounded: about
a minute and a half with the defaults.
"""
import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "build", "sockdispatch")
HAPROXY = "/usr/sbin/haproxy"
PORT = 8080
AGENT_PORT = 9100
CONFIGS = ["agent", "leastconn", "leastconn-agent"]


def sh(*args, check=True):
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


class Host:
    """A network namespace with a veth link, running `sockdispatch attach` inside."""

    def __init__(self, index, workers):
        tag = f"{os.getpid()}b{index}"
        self.name, self.veth, peer = f"sdb{tag}", f"sdbv{tag}", f"sdbp{tag}"
        prefix = f"10.{192 + os.getpid() % 32}.{(os.getpid() // 32) % 256}."
        self.address = prefix + str(index * 4 + 2)
        sh("ip", "netns", "add", self.name)
        self.master = None
        sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", peer,
           "netns", self.name)
        sh("ip", "addr", "add", prefix + str(index * 4 + 1) + "/30", "dev", self.veth)
        sh("ip", "link", "set", self.veth, "up")
        sh("ip", "-n", self.name, "addr", "add", self.address + "/30", "dev", peer)
        sh("ip", "-n", self.name, "link", "set", peer, "up")
        sh("ip", "-n", self.name, "link", "set", "lo", "up")
        self.master = subprocess.Popen(
            ["ip", "netns", "exec", self.name, BINARY, "attach", str(PORT), "--workers",
             str(workers), "--agent-port", str(AGENT_PORT), "--mode", "ebpf"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.master.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"host {self.name} did not serve: {line!r}")

    def workers(self):
        path = f"/proc/{self.master.pid}/task/{self.master.pid}/children"
        with open(path) as f:
            return [int(p) for p in f.read().split()]

    def close(self):
        if self.master is not None:
            for pid in self.workers():
                os.kill(pid, signal.SIGKILL)
            self.master.kill()
            self.master.wait()
        sh("ip", "netns", "del", self.name, check=False)
        sh("ip", "link", "del", self.veth, check=False)


class Haproxy:
    def __init__(self, config, hosts):
        self.dir = tempfile.TemporaryDirectory(prefix="fleet-bench-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        balance = "roundrobin" if config == "agent" else "leastconn"
        agents = config in ("agent", "leastconn-agent")
        lines = ["global", f"  stats socket {self.dir.name}/admin.sock level admin",
                 "  maxconn 4096", "defaults", "  mode http", "  timeout connect 1s",
                 "  timeout client 30s", "  timeout server 30s", "  retries 3",
                 "  option redispatch", "frontend front", f"  bind 127.0.0.1:{self.port}",
                 "  default_backend hosts", "backend hosts", f"  balance {balance}"]
        for i, host in enumerate(hosts):
            line = f"  server host{i} {host.address}:{PORT} weight 100 check inter 1s"
            if agents:
                line += f" agent-check agent-port {AGENT_PORT} agent-inter 1s"
            lines.append(line)
        path = os.path.join(self.dir.name, "haproxy.cfg")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.process = subprocess.Popen([HAPROXY, "-db", "-f", path],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            weights = self.weights()
            if len(weights) == len(hosts) and all(w == 100 for w in weights.values()):
                return
            time.sleep(0.05)
        raise RuntimeError(f"haproxy did not see every server up: {self.weights()} {self.raw()}")

    def raw(self):
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(os.path.join(self.dir.name, "admin.sock"))
                s.sendall(b"show servers state hosts\n")
                text = b""
                while chunk := s.recv(65536):
                    text += chunk
            return text.decode()
        except OSError as e:
            return str(e)

    def weights(self):
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(os.path.join(self.dir.name, "admin.sock"))
                s.sendall(b"show servers state hosts\n")
                text = b""
                while chunk := s.recv(65536):
                    text += chunk
        except OSError:
            return {}
        columns, weights = [], {}
        for line in text.decode().splitlines():
            fields = line.split()
            if fields and fields[0] == "#":
                columns = fields[1:]
            elif columns and len(fields) >= len(columns):
                row = dict(zip(columns, fields))
                if row.get("srv_op_state") == "2":
                    weights[row["srv_name"]] = int(row["srv_uweight"])
        return weights

    def close(self):
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.dir.cleanup()


async def one_request(port, timeout):
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port),
                                                timeout)
        writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), timeout)
        writer.close()
        return data.startswith(b"HTTP/1.1 200")
    except (OSError, asyncio.TimeoutError):
        return False


async def open_loop(port, rate, duration, timeout, on_tick):
    start = time.monotonic()
    results = []

    async def timed(scheduled):
        delay = start + scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        ok = await one_request(port, timeout)
        results.append((scheduled, ok, time.monotonic() - (start + scheduled)))

    tasks = [asyncio.create_task(timed(i / rate)) for i in range(int(rate * duration))]
    ticker = asyncio.create_task(on_tick(start))
    await asyncio.gather(*tasks)
    await ticker
    return results


def measure(config, hosts, args):
    proxy = Haproxy(config, hosts)
    stalled = hosts[0].workers()

    async def stall(start):
        await asyncio.sleep(max(0.0, start + args.stall_at - time.monotonic()))
        for pid in stalled:
            os.kill(pid, signal.SIGSTOP)
        await asyncio.sleep(args.stall_s)
        for pid in stalled:
            os.kill(pid, signal.SIGCONT)

    try:
        results = asyncio.run(open_loop(proxy.port, args.rate, args.duration, args.timeout,
                                        stall))
    finally:
        for pid in stalled:
            os.kill(pid, signal.SIGCONT)
        proxy.close()
    return results


def percentile(values, q):
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def summarize(results, args):
    window = [r for r in results if args.stall_at <= r[0] < args.stall_at + args.stall_s]
    lat = [r[2] for r in results if r[1]]
    wlat = [r[2] for r in window if r[1]]
    return {
        "requests": len(results),
        "failures": sum(1 for r in results if not r[1]),
        "p50_ms": 1000 * percentile(lat, 0.50),
        "p99_ms": 1000 * percentile(lat, 0.99),
        "stall_requests": len(window),
        "stall_failures": sum(1 for r in window if not r[1]),
        "stall_p99_ms": 1000 * percentile(wlat, 0.99),
        "stall_late_share": sum(1 for r in window if not r[1] or r[2] > 1.0) / max(1, len(window)),
    }


def plot(samples, summary, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    colors = {"agent": "tab:blue", "leastconn": "tab:orange", "leastconn-agent": "tab:green"}
    for config in CONFIGS:
        xs = [r[0] for r in samples[config]]
        ys = [1000 * r[2] if r[1] else 1000 * args_timeout for r in samples[config]]
        left.scatter(xs, ys, s=3, alpha=0.5, color=colors[config], label=config)
    left.set_yscale("log")
    left.set_xlabel("scheduled send time (s); host 0's workers stopped in the shaded span")
    left.set_ylabel("latency (ms, log)")
    left.axvspan(ARGS.stall_at, ARGS.stall_at + ARGS.stall_s, color="grey", alpha=0.2)
    left.legend()
    left.set_title("every request, all rounds")
    names = CONFIGS
    right.bar([f"{n}\nwhole run" for n in names], [summary[n]["p99_ms"] for n in names],
              color=[colors[n] for n in names])
    right.bar([f"{n}\nduring stall" for n in names], [summary[n]["stall_p99_ms"] for n in names],
              color=[colors[n] for n in names], alpha=0.6)
    right.set_yscale("log")
    right.set_ylabel("p99 latency (ms, log)")
    right.set_title("p99 (failures: " + ", ".join(
        f"{n} {summary[n]['failures']}" for n in names) + ")")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    global ARGS, args_timeout
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--stall-at", type=float, default=2.0)
    parser.add_argument("--stall-s", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    ARGS, args_timeout = args, args.timeout
    if os.geteuid() != 0:
        sys.exit("fleet_bench: needs root (network namespaces, the BPF program)")
    hosts = []
    samples = {c: [] for c in CONFIGS}
    try:
        for i in range(3):
            hosts.append(Host(i, args.workers))
        for round_ in range(args.rounds):
            order = CONFIGS[round_ % len(CONFIGS):] + CONFIGS[:round_ % len(CONFIGS)]
            for config in order:
                results = measure(config, hosts, args)
                samples[config].extend(results)
                s = summarize(results, args)
                print(f"round {round_ + 1} {config}: {s}", file=sys.stderr)
    finally:
        for host in hosts:
            host.close()
    summary = {c: summarize(samples[c], args) for c in CONFIGS}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "fleet.json"), "w") as f:
        json.dump({"args": vars(args), "summary": summary}, f, indent=2)
    plot(samples, summary, os.path.join(ROOT, "docs", "fleet-bench.png"))
    print("| HAProxy | requests | failed | p50 | p99 | during the stall: requests | failed | p99 | later than 1 s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in CONFIGS:
        s = summary[c]
        label = {"agent": "roundrobin + agent weights", "leastconn": "leastconn, no agent",
                 "leastconn-agent": "leastconn + agent weights"}[c]
        print(f"| {label} | {s['requests']} | {s['failures']} | {s['p50_ms']:.1f} ms | "
              f"{s['p99_ms']:.0f} ms | {s['stall_requests']} | {s['stall_failures']} | "
              f"{s['stall_p99_ms']:.0f} ms | {100 * s['stall_late_share']:.1f} % |")


if __name__ == "__main__":
    main()
