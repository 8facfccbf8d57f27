#!/usr/bin/env python3
"""The kernel-side load measurement's cost per connection (bpf/foreign_load.bpf.c).

`attach PORT -- COMMAND` loads a second BPF program beside the steering one: a tracepoint on
every TCP state change on the host (tp_btf/inet_sock_set_state) that counts each slot's
connections from the handshake to the application's close. Its cost is read from the kernel's
own accounting (kernel.bpf_stats_enabled=1: run_cnt and run_time_ns of the program, from
`bpftool prog show --json`; the program is the tracing program `count_children` whose maps
include the attachment's pinned `slots`), around a fixed number of connections, in R rounds:

  attach   C connections to `sockdispatch attach -w W -- COMMAND` (tagged listeners): the
           program's ns per run, runs per connection and ns per connection, beside the
           steering program's ns per decision (its run_cnt and run_time_ns over the same
           connections, from `status --json`);
  plain    C connections to the same COMMAND copies on listeners of their own (W SO_REUSEPORT
           sockets the script opens and passes as fd 3, no sockdispatch), while the attachment
           and its program stay loaded: every run is then a miss (an untagged socket), the cost
           the program adds to every other TCP socket on the host.

Connections are counted by the kernel (TcpPassiveOpens of /proc/net/snmp, and the slots'
`accepted` for the attachment), not by the client. The program runs for every TCP socket on
the host, so a phase during which the host accepted other connections, or another
attachment's program was loaded, is marked not clean; the per-run summary takes the medians
of the clean rounds (of all, if none was). On loopback both ends of a connection are
on this host, so the program runs for the client's state changes too; the server-side share
is estimated as attach - plain / 2 (the client's runs are misses in both).

Then, with bpf_stats_enabled back at its previous value (the accounting itself costs two
clock reads per run), each round measures new connections/s for `wrk -t1 -cK -dD
-H 'Connection: close'` against the attachment and against the plain copies with no
attachment loaded (and host CPU per connection, from /proc/stat); which goes first alternates
by round. This difference also contains the steering program and the master, and on 2 CPUs it
is within the noise: the per-run figures are the result.

Usage (as root, Debian's gunicorn or python3-uvicorn, wrk and bpftool):
  /usr/bin/python3 bench/foreign_load_cost.py [--rounds 3] [--connections 20000]
      [--duration 5] [--workers 2] [--client-connections 20] [--server gunicorn|uvicorn]
      [--binary build/sockdispatch]
Writes bench/results/foreign-load-cost.json and docs/foreign-load-cost.png, and prints
Markdown tables. kernel.bpf_stats_enabled is restored and every process started is stopped
(SIGTERM, then SIGKILL to its process group) even when the run fails.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from core_bench import ROOT, free_port, relative_args, wait_for_http  # noqa: E402

PYTHON = "/usr/bin/python3"
STATS = "/proc/sys/kernel/bpf_stats_enabled"
PIN_ROOT = "/sys/fs/bpf/sockdispatch"
WSGI_APP = """def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\\n"]
"""
ASGI_APP = """async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"3")]})
    await send({"type": "http.response.body", "body": b"ok\\n"})
"""
# wrk stops its one thread after SD_CONNECTIONS answers: a fixed number of connections, as
# fast as the client can open them (what is divided by is the kernel's count of them).
COUNT_LUA = """local done = 0
local limit = tonumber(os.getenv("SD_CONNECTIONS"))
function response(status, headers, body)
  done = done + 1
  if done >= limit then wrk.thread:stop() end
end
"""


def command(server, appdir):
    """COMMAND: one process per copy that serves HTTP on the listener at fd 3."""
    if server == "gunicorn":
        return ["/usr/bin/gunicorn", "--chdir", appdir, "--workers", "1", "--graceful-timeout",
                "2", "--log-level", "warning", "wsgi_app:app"]
    return [PYTHON, "-m", "uvicorn", "--fd", "3", "--app-dir", appdir, "--no-access-log",
            "--log-level", "warning", "asgi_app:app"]


def stop_group(proc, timeout=20):
    """SIGTERM, then SIGKILL to the process group (each child runs in a session of its own)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


class Attachment:
    def __init__(self, binary, port, workers, argv):
        self.binary, self.port = binary, port
        self.proc = subprocess.Popen(
            [binary, "attach", str(port), "--bind", "127.0.0.1", "--workers", str(workers),
             "--"] + argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        try:
            wait_for_http(port, timeout=30)
            time.sleep(0.5)
            self.steering_id = self.status()["program"]["id"]
            self.foreign_id = foreign_program_id(port)
        except BaseException:
            self.stop()
            raise

    def status(self):
        out = subprocess.run([self.binary, "status", str(self.port), "--json"],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)

    def accepted(self):
        return sum(w["accepted"] for w in self.status()["workers"])

    def stop(self):
        stop_group(self.proc)


class PlainCopies:
    """The same COMMAND, W copies, each on an SO_REUSEPORT listener of its own passed as fd 3
    with LISTEN_FDS=1 and LISTEN_PID (systemd's protocol, as attach does), no BPF."""

    def __init__(self, port, workers, argv):
        self.port, self.procs = port, []
        try:
            for _ in range(workers):
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                listener.bind(("127.0.0.1", port))
                listener.listen(socket.SOMAXCONN)
                fd = listener.fileno()
                env = dict(os.environ, LISTEN_FDS="1")
                self.procs.append(subprocess.Popen(
                    ["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh"] + argv, env=env,
                    pass_fds=(3,), preexec_fn=lambda fd=fd: os.dup2(fd, 3),
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True))
                listener.close()
            wait_for_http(port, timeout=30)
            time.sleep(0.5)
        except BaseException:
            self.stop()
            raise

    def stop(self):
        for proc in self.procs:
            stop_group(proc)


def bpftool(*args):
    out = subprocess.run(["bpftool", "--json"] + list(args), capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)


def foreign_program_id(port):
    """The attachment's tracing program: count_children, using its pinned slots map."""
    slots_id = bpftool("map", "show", "pinned", f"{PIN_ROOT}/{port}/slots")["id"]
    for prog in bpftool("prog", "show"):
        if prog.get("name") == "count_children" and slots_id in prog.get("map_ids", []):
            return prog["id"]
    raise RuntimeError(f"no count_children program uses the slots map of port {port}")


def prog_stats(prog_id):
    prog = bpftool("prog", "show", "id", str(prog_id))
    return prog.get("run_cnt", 0), prog.get("run_time_ns", 0)


def tcp_opens():
    with open("/proc/net/snmp") as f:
        lines = [line.split() for line in f if line.startswith("Tcp:")]
    fields = dict(zip(lines[0][1:], (int(v) for v in lines[1][1:])))
    return fields["PassiveOpens"], fields["ActiveOpens"]


def busy_cpu_seconds():
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def set_stats(value):
    with open(STATS, "w") as f:
        f.write(str(value))


def parse_wrk(out):
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "errors": (sum(int(x) for x in errors.groups()) if errors else 0)
            + (int(non2xx.group(1)) if non2xx else 0)}


def wrk_argv(port, client_connections, seconds):
    return ["wrk", "-t1", f"-c{client_connections}", "-d", f"{seconds}s", "-H",
            "Connection: close"]


def run_wrk(port, client_connections, duration):
    argv = wrk_argv(port, client_connections, duration) + [f"http://127.0.0.1:{port}/"]
    return parse_wrk(subprocess.run(argv, capture_output=True, text=True, check=True,
                                    timeout=duration + 30).stdout)


def run_wrk_count(port, client_connections, count, lua, limit_s=300):
    """`count` connections: wrk's thread stops after `count` answers (COUNT_LUA), but wrk
    itself sleeps out its duration, so once the kernel's count of passive opens has reached
    `count` and stands still, it is sent SIGINT (wrk then reports and exits)."""
    argv = wrk_argv(port, client_connections, limit_s) + ["-s", lua,
                                                          f"http://127.0.0.1:{port}/"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, SD_CONNECTIONS=str(count)))
    try:
        base, last, still = tcp_opens()[0], None, 0
        while proc.poll() is None:
            time.sleep(0.1)
            now = tcp_opens()[0]
            still = still + 1 if now == last and now - base >= count else 0
            last = now
            if still >= 2:
                proc.send_signal(signal.SIGINT)
                break
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(0.3)  # the client's sockets close at its exit: let their state changes run
    return parse_wrk(out)


def tracing_programs():
    return sorted(p["id"] for p in bpftool("prog", "show") if p.get("name") == "count_children")


def cost_phase(attachment, port, args, lua):
    """C connections to `port`; the programs' runs and time, and the kernel's connection
    counts, over them. `other_opens`: connections the host accepted meanwhile that were not
    this phase's (other TCP traffic, which runs the program too: such a phase is not clean)."""
    programs = tracing_programs()
    f0, s0, opens0 = prog_stats(attachment.foreign_id), prog_stats(attachment.steering_id), \
        tcp_opens()
    acc0 = attachment.accepted()
    busy0 = busy_cpu_seconds()
    client = run_wrk_count(port, args.client_connections, args.connections, lua)
    f1, s1, opens1 = prog_stats(attachment.foreign_id), prog_stats(attachment.steering_id), \
        tcp_opens()
    acc1 = attachment.accepted()
    busy = busy_cpu_seconds() - busy0
    passive = opens1[0] - opens0[0]
    runs, ns = f1[0] - f0[0], f1[1] - f0[1]
    decisions, steering_ns = s1[0] - s0[0], s1[1] - s0[1]
    attached = acc1 - acc0
    connections = attached if port == attachment.port else passive
    other = passive - (attached if port == attachment.port else client["requests"])
    programs = sorted(set(programs) | set(tracing_programs()))
    return {
        "other_opens": other, "count_children_programs": programs,
        "host_busy_cpu_s": round(busy, 2), "loadavg_after": os.getloadavg()[0],
        "clean": other <= 2 * args.client_connections + args.connections // 1000
        and programs == [attachment.foreign_id],
        "client_answers": client["requests"], "client_errors": client["errors"],
        "passive_opens": passive, "active_opens": opens1[1] - opens0[1],
        "attachment_accepted": attached, "connections": connections,
        "foreign_runs": runs, "foreign_ns": ns,
        "ns_per_run": ns / runs if runs else None,
        "runs_per_connection": runs / connections if connections else None,
        "ns_per_connection": ns / connections if connections else None,
        "steering_decisions": decisions, "steering_ns": steering_ns,
        "steering_ns_per_decision": steering_ns / decisions if decisions else None,
    }


def throughput(port, args):
    programs = tracing_programs()
    cpu0 = busy_cpu_seconds()
    result = run_wrk(port, args.client_connections, duration=args.duration)
    used = busy_cpu_seconds() - cpu0
    result["host_cpu_us_per_connection"] = used * 1e6 / max(1, result["requests"])
    result["count_children_programs"] = sorted(set(programs) | set(tracing_programs()))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=20000,
                        help="connections per cost phase")
    parser.add_argument("--duration", type=int, default=5, help="seconds per throughput run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--client-connections", type=int, default=20)
    parser.add_argument("--server", choices=["gunicorn", "uvicorn"], default="gunicorn")
    parser.add_argument("--binary", default=os.path.join(ROOT, "build", "sockdispatch"))
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results",
                                                      "foreign-load-cost.json"))
    parser.add_argument("--plot", default=os.path.join(ROOT, "docs", "foreign-load-cost.png"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("foreign_load_cost: needs root (BPF)")
    for tool in ("wrk", "bpftool"):
        if shutil.which(tool) is None:
            sys.exit(f"foreign_load_cost: {tool} not found")
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"foreign_load_cost: {args.binary} not found; build first or pass --binary")
    # SIGTERM and SIGHUP unwind through the finally blocks like Ctrl-C does.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda n, _frame: sys.exit(128 + n))

    others = [p["id"] for p in bpftool("prog", "show") if p.get("name") == "count_children"]
    workdir = tempfile.mkdtemp(prefix="sockdispatch-foreign-cost-")
    os.chmod(workdir, 0o755)
    for name, text in (("wsgi_app.py", WSGI_APP), ("asgi_app.py", ASGI_APP),
                       ("count.lua", COUNT_LUA)):
        with open(os.path.join(workdir, name), "w") as f:
            f.write(text)
    lua = os.path.join(workdir, "count.lua")
    argv = command(args.server, workdir)
    with open(STATS) as f:
        previous_stats = int(f.read())
    rounds, load_before, started = [], os.getloadavg(), time.time()
    try:
        for round_index in range(args.rounds):
            record = {}
            plain_port = free_port()
            plain = PlainCopies(plain_port, args.workers, argv)
            try:
                if round_index % 2 == 1:
                    record["throughput_plain"] = throughput(plain_port, args)
                attachment = Attachment(args.binary, free_port(), args.workers, argv)
                try:
                    set_stats(1)
                    try:
                        record["attach"] = cost_phase(attachment, attachment.port, args, lua)
                        record["plain"] = cost_phase(attachment, plain_port, args, lua)
                    finally:
                        set_stats(previous_stats)
                    record["throughput_attach"] = throughput(attachment.port, args)
                finally:
                    attachment.stop()
                if round_index % 2 == 0:
                    record["throughput_plain"] = throughput(plain_port, args)
            finally:
                plain.stop()
            rounds.append(record)
            a, p = record["attach"], record["plain"]
            print(f"round {round_index + 1}: attach {a['ns_per_run']:.1f} ns/run x "
                  f"{a['runs_per_connection']:.2f} runs = {a['ns_per_connection']:.0f} ns/conn, "
                  f"steering {a['steering_ns_per_decision']:.0f} ns/decision; plain "
                  f"{p['ns_per_run']:.1f} ns/run x {p['runs_per_connection']:.2f}; conn/s "
                  f"{record['throughput_attach']['rps']:.0f} attach, "
                  f"{record['throughput_plain']['rps']:.0f} plain", flush=True)
    finally:
        set_stats(previous_stats)
        shutil.rmtree(workdir, ignore_errors=True)

    # The per-run figures from the rounds whose cost phases saw no other TCP traffic and no
    # other attachment's program, when there are any.
    clean = [r for r in rounds if r["attach"]["clean"] and r["plain"]["clean"]] or rounds

    def med(phase, key):
        return statistics.median(r[phase][key] for r in (rounds if "throughput" in phase
                                                         else clean))
    summary = {
        "rounds": len(rounds),
        "clean_rounds": sum(1 for r in rounds if r["attach"]["clean"] and r["plain"]["clean"]),
        "foreign_ns_per_run": med("attach", "ns_per_run"),
        "foreign_runs_per_connection": med("attach", "runs_per_connection"),
        "foreign_ns_per_connection": med("attach", "ns_per_connection"),
        "miss_ns_per_run": med("plain", "ns_per_run"),
        "miss_runs_per_connection": med("plain", "runs_per_connection"),
        "miss_ns_per_connection": med("plain", "ns_per_connection"),
        "steering_ns_per_decision": med("attach", "steering_ns_per_decision"),
        "steering_decisions_per_connection": statistics.median(
            r["attach"]["steering_decisions"] / r["attach"]["connections"] for r in clean),
        "attach_connections_per_s": med("throughput_attach", "rps"),
        "plain_connections_per_s": med("throughput_plain", "rps"),
        "attach_host_cpu_us_per_connection": med("throughput_attach",
                                                 "host_cpu_us_per_connection"),
        "plain_host_cpu_us_per_connection": med("throughput_plain",
                                                "host_cpu_us_per_connection"),
    }
    summary["server_side_ns_per_connection_estimate"] = (
        summary["foreign_ns_per_connection"] - summary["miss_ns_per_connection"] / 2)
    summary["foreign_over_steering_per_connection"] = (
        summary["foreign_ns_per_connection"] / summary["steering_ns_per_decision"])
    summary["attach_over_plain_connections_per_s"] = (
        summary["attach_connections_per_s"] / summary["plain_connections_per_s"])
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "kernel": os.uname().release,
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "wall_s": round(time.time() - started, 1),
        "bpf_stats_enabled_before": previous_stats,
        "other_count_children_programs": others,
        "args": relative_args(args),
        "summary": summary,
        "rounds": rounds,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)

    print(f"\n{args.server}, {args.workers} copies, {args.connections} connections per phase "
          f"(wrk -t1 -c{args.client_connections}, Connection: close), {args.rounds} rounds\n")
    print("| round | phase | connections (kernel) | other opens | runs | ns per run | "
          "runs per connection | ns per connection | steering decisions | "
          "steering ns per decision |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for i, r in enumerate(rounds):
        for phase in ("attach", "plain"):
            x = r[phase]
            steer = (f"{x['steering_decisions']} | {x['steering_ns_per_decision']:.0f}"
                     if x["steering_decisions"] else f"{x['steering_decisions']} | -")
            print(f"| {i + 1} | {phase} | {x['connections']} | {x['other_opens']} | "
                  f"{x['foreign_runs']} | "
                  f"{x['ns_per_run']:.1f} | {x['runs_per_connection']:.2f} | "
                  f"{x['ns_per_connection']:.0f} | {steer} |")
    print("\n| round | attach conn/s | plain conn/s | ratio | attach host CPU us/conn | "
          "plain host CPU us/conn |")
    print("|---|---:|---:|---:|---:|---:|")
    for i, r in enumerate(rounds):
        a, p = r["throughput_attach"], r["throughput_plain"]
        print(f"| {i + 1} | {a['rps']:.0f} | {p['rps']:.0f} | {a['rps'] / p['rps']:.3f} | "
              f"{a['host_cpu_us_per_connection']:.1f} | {p['host_cpu_us_per_connection']:.1f} |")
    print()
    for key, value in summary.items():
        print(f"{key} = {value:.3f}" if isinstance(value, float) else f"{key} = {value}")
    plot(rounds, summary, args)


def plot(rounds, summary, args):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib missing: no plot)")
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    labels = ["foreign-load\nloopback:\nboth ends", "foreign-load\nserver side\n(estimate)",
              "foreign-load\nuntagged\n(misses)", "steering\n(1 decision)"]
    values = [summary["foreign_ns_per_connection"],
              summary["server_side_ns_per_connection_estimate"],
              summary["miss_ns_per_connection"], summary["steering_ns_per_decision"]]
    left.bar(range(4), values, color=["C0", "C0", "C7", "C1"])
    for x, v in enumerate(values):
        left.text(x, v, f"{v:.0f}", ha="center", va="bottom", fontsize=8)
    left.set_xticks(range(4), labels, fontsize=7)
    left.set_ylabel("kernel ns per connection")
    left.set_title("BPF programs' time per connection (median)", fontsize=9)
    for phase, marker in (("attach", "o"), ("plain", "s")):
        right.plot(range(1, len(rounds) + 1), [r[phase]["ns_per_run"] for r in rounds],
                   marker=marker, label=f"{phase}: ns per run")
    right.set_xlabel("round")
    right.set_ylabel("ns per program run")
    right.set_ylim(bottom=0)
    right.set_xticks(range(1, len(rounds) + 1))
    right.legend(fontsize=8)
    right.set_title("count_children, per run", fontsize=9)
    fig.suptitle(f"{args.server} x {args.workers} behind attach, {args.connections} "
                 "connections per phase", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)


if __name__ == "__main__":
    main()
