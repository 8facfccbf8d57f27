#!/usr/bin/env python3
"""Chaos soak: every fault at once under load, and every lost request accounted for exactly.

Starts `sockdispatch attach --config FILE` on 127.0.0.1 (a free port, `--mode ebpf` or
`line`) and loads it for `--duration` seconds with
  - an open-loop load of new connections: request i is due at start + i / RATE, each on a
    new connection with `Connection: close`, each its own task, so a stalled server never
    delays the next arrival (`--rate`, 200/s);
  - keep-alive clients, each reusing one connection for many requests (`--keepalive`, 8).
Meanwhile it runs a random schedule of faults drawn from `--seed` (printed first, as
`chaos: seed N`; the same seed replays the same schedule), one at a time:
  kill_worker  SIGKILL of a running worker (see accounting below)
  stop_worker  SIGSTOP of a worker for 0.3-2 s, then SIGCONT
  hup          the configuration file rewritten with another worker count (or the pool),
               then SIGHUP; waits for the new generation
  usr1         SIGUSR1 (restart); waits for the new generation
  policy       `sockdispatch tune PORT --policy P`
  weight       `tune PORT --weight SLOT=W` (W 0-5)
  drain        `tune PORT --drain SLOT`, 0.5-2 s later `--undrain SLOT`
  pool         the file switched to a pool (min-workers 2, max-workers 4, pool-busy-conns
               10, pool-idle-seconds 2) if it is not one; held connections push it up for
               3 s, then are released and it shrinks as far as the load left allows (the
               keep-alive clients' connections count too)
  exhaust      max-conns (16 per worker) reached by a burst of held connections on every
               worker, released after 1-2 s: new connections wait in the kernel's backlog
  kill_master  (ebpf mode only) SIGKILL of the master, and `attach` again with the same file
               0.5-2 s later: the new master takes the orphaned workers over
With --overlap, a second schedule from the same seed stops workers (SIGSTOP 0.3-2 s, every
1-4 s) while those events run; a worker being stopped or killed is not chosen by another.

Accounting, exact: before a worker is killed it is stopped (SIGSTOP); its slot's `open`
(connections it accepted and holds) is read from `sockdispatch status PORT --json` and the
client ports of the TCP connections it holds from /proc, then it is SIGKILLed. A failed
request on one of those connections is *accounted*: the kill took it (the `open` sum is the
most the run may lose, and the accounted failures must stay within it). Every other failed
request is *unaccounted*: refused, reset, closed without an answer, no answer within
`--timeout` (5 s), or any answer other than 2xx (with every worker full, sockdispatch
leaves new connections in the kernel's backlog; it never answers 503). A keep-alive request
that found its idle connection closed (nothing received) is sent again on a new connection
and counted as *resent*, not failed (RFC 9112 section 9.3.1).

Usage (as root, after a build in build/):
  python3 bench/chaos.py [--mode ebpf|line] [--duration 60] [--seed N] [--rate 200]
      [--keepalive 8] [--timeout 5] [--orphan-timeout 10] [--overlap]
      [--binary build/sockdispatch] [--report FILE] [--log FILE]
Exit status: 0 no unaccounted failure, 1 unaccounted failures (or the server misbehaved:
a reload that never served, a master that did not start), 2 bad flags, 77 not root
(skipped). On 1 it prints the seed, the schedule and each failure with its time and the
event just before it. Bounded: everything on 127.0.0.1; the server is stopped, every child
process is gone and the port is free however the run ends.
"""
import argparse
import asyncio
import ctypes
import json
import os
import random
import resource
import shutil
import signal
import socket
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP = 77  # the tests' SKIP_RETURN_CODE
POLICIES = ["skip_load", "least_conn", "p2c", "round_robin", "weighted", "hash"]
KINDS = ["kill_worker", "stop_worker", "hup", "usr1", "policy", "weight", "drain", "pool",
         "exhaust", "kill_master"]
MAX_CONNS = 16
SHOWN = 40  # failures printed one per line
POOL = {"min-workers": 2, "max-workers": 4, "pool-busy-conns": 10, "pool-idle-seconds": 2}
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36
REQUEST_CLOSE = b"GET / HTTP/1.1\r\nHost: chaos\r\nConnection: close\r\n\r\n"
REQUEST_KEEP = b"GET / HTTP/1.1\r\nHost: chaos\r\n\r\n"
LIBC = ctypes.CDLL(None, use_errno=True)


def log(message):
    print(f"chaos: {message}", flush=True)


def wall(t):
    """Wall-clock time of monotonic `t`, as the server's log writes it (UTC)."""
    at = time.time() - (time.monotonic() - t)
    return time.strftime("%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}"


class Failure(Exception):
    """The server did something the soak cannot go on from (not a lost request)."""


# ---------------------------------------------------------------------------- the schedule

def make_schedule(rng, mode, duration):
    """Events from t = 3 s to duration - 5 s, 1-3 s apart; each kind's random parameters are
    drawn here so that the seed alone fixes them."""
    kinds = [k for k in KINDS if mode == "ebpf" or k != "kill_master"]
    events, t = [], 3.0
    while t < duration - 5:
        kind = rng.choice(kinds)
        ev = {"at": round(t, 2), "kind": kind, "pick": round(rng.random(), 4)}
        if kind == "stop_worker":
            ev["seconds"] = round(rng.uniform(0.3, 2.0), 2)
        elif kind == "hup":
            ev["workers"] = rng.choice([1, 2, 3, 4, "pool"])
        elif kind == "policy":
            ev["policy"] = rng.choice(POLICIES)
        elif kind == "weight":
            ev["weight"] = rng.randint(0, 5)
        elif kind == "drain":
            ev["seconds"] = round(rng.uniform(0.5, 2.0), 2)
        elif kind == "exhaust":
            ev["seconds"] = round(rng.uniform(1.0, 2.0), 2)
        elif kind == "kill_master":
            ev["seconds"] = round(rng.uniform(0.5, 2.0), 2)
        events.append(ev)
        t += rng.uniform(1.0, 3.0)
    return events


def make_overlap(rng, duration):
    """--overlap: worker stops of 0.3-2 s every 1-4 s, from t = 4 s to duration - 5 s."""
    stops, t = [], 4.0
    while t < duration - 5:
        stops.append({"at": round(t, 2), "kind": "stop_worker", "pick": round(rng.random(), 4),
                      "seconds": round(rng.uniform(0.3, 2.0), 2)})
        t += stops[-1]["seconds"] + rng.uniform(1.0, 4.0)
    return stops


def describe(ev):
    extra = " ".join(f"{v}" if k == ev["kind"] else f"{k} {v}" for k, v in ev.items()
                     if k not in ("at", "kind", "pick"))
    return f"{ev['kind']}{' ' + extra if extra else ''}"


# ------------------------------------------------------------------------------ the load

class Tally:
    def __init__(self):
        self.ok = 0
        self.late = 0
        self.latencies = []  # (due or sent, seconds to the answer) of answered requests
        self.failures = []   # dicts: t, kind, what, port, connected, reused


class RequestFailed(Exception):
    """A request that got no whole 2xx-or-other answer: `what` says why, `got_bytes` whether
    any byte of an answer came."""

    def __init__(self, what, got_bytes):
        super().__init__(what)
        self.what, self.got_bytes = what, got_bytes


class Conn:
    def __init__(self, reader, writer, connected):
        self.reader, self.writer, self.connected = reader, writer, connected
        self.port = writer.get_extra_info("sockname")[1]
        self.buffer = b""
        self.received = False  # any byte of the current answer

    def close(self):
        self.writer.transport.abort()

    async def read_answer(self):
        """(status, close) of one HTTP/1.1 answer, read into self.buffer."""
        while b"\r\n\r\n" not in self.buffer:
            await self.fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            raise RequestFailed(f"malformed status line {lines[0]!r}", True) from None
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip().lower()
        try:
            length = int(fields.get("content-length", "0"))
        except ValueError:
            raise RequestFailed("malformed Content-Length", True) from None
        while len(self.buffer) < length:
            await self.fill()
        self.buffer = self.buffer[length:]
        return status, fields.get("connection") == "close"

    async def fill(self):
        chunk = await self.reader.read(65536)
        if not chunk:
            raise RequestFailed("closed without a whole answer", self.received)
        self.received = True
        self.buffer += chunk

    async def exchange(self, request, timeout):
        """Sends one request and reads its answer: (status, close), else RequestFailed."""
        self.buffer, self.received = b"", False
        try:
            self.writer.write(request)
            return await asyncio.wait_for(self.read_answer(), timeout)
        except asyncio.TimeoutError:
            raise RequestFailed("no answer within the timeout", True) from None
        except OSError as e:
            what = "reset" if isinstance(e, ConnectionResetError) else f"{e!r}"
            raise RequestFailed(what, self.received) from None


async def connect(port, timeout):
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port),
                                                timeout)
    except asyncio.TimeoutError:
        raise RequestFailed("connect timed out", False) from None
    except ConnectionRefusedError:
        raise RequestFailed("refused", False) from None
    except OSError as e:
        raise RequestFailed(f"connect failed: {e!r}", False) from None
    return Conn(reader, writer, time.monotonic())


class Load:
    def __init__(self, port, rate, keepalive, timeout):
        self.port, self.rate, self.keepalive, self.timeout = port, rate, keepalive, timeout
        self.tally = Tally()
        self.stopping = False
        self.tasks = set()
        self.start = None

    def fail(self, kind, what, conn=None, reused=False, got_bytes=True):
        self.tally.failures.append({
            "t": time.monotonic(), "kind": kind, "what": what,
            "port": conn.port if conn else None, "connected": conn.connected if conn else None,
            "reused": reused, "got_bytes": got_bytes})

    async def one_fresh(self, due):
        conn = None
        try:
            conn = await connect(self.port, self.timeout)
            status, _ = await conn.exchange(REQUEST_CLOSE, self.timeout)
            if 200 <= status < 300:
                self.tally.ok += 1
                self.tally.latencies.append((due, time.monotonic() - due))
            else:
                self.fail("new-connection", f"answered {status}", conn)
        except RequestFailed as e:
            self.fail("new-connection", e.what, conn, got_bytes=e.got_bytes)
        except Exception as e:  # noqa: BLE001 - counted, never lost from the tally
            self.fail("new-connection", f"client error {e!r}", conn)
        finally:
            if conn:
                conn.close()

    async def open_loop(self, duration):
        self.start = time.monotonic()
        i = 0
        while not self.stopping:
            due = self.start + i / self.rate
            if due >= self.start + duration:
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.1:
                self.tally.late += 1
            task = asyncio.create_task(self.one_fresh(due))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            i += 1

    async def keep_alive_client(self):
        conn, reused = None, False
        try:
            while not self.stopping:
                if conn is None:
                    try:
                        conn, reused = await connect(self.port, self.timeout), False
                    except RequestFailed as e:
                        self.fail("keep-alive", e.what)
                        await asyncio.sleep(0.05)
                        continue
                sent = time.monotonic()
                try:
                    status, close = await conn.exchange(REQUEST_KEEP, self.timeout)
                except (RequestFailed, Exception) as e:
                    # Sent again on a new connection (by the next turn), as clients do.
                    if isinstance(e, RequestFailed):
                        self.fail("keep-alive", e.what, conn, reused, e.got_bytes)
                    else:
                        self.fail("keep-alive", f"client error {e!r}", conn, reused)
                    conn.close()
                    conn = None
                    continue
                if 200 <= status < 300:
                    self.tally.ok += 1
                    self.tally.latencies.append((sent, time.monotonic() - sent))
                else:
                    self.fail("keep-alive", f"answered {status}", conn, reused)
                if close:
                    conn.close()
                    conn = None
                else:
                    reused = True
                await asyncio.sleep(0.05)
        finally:
            if conn:
                conn.close()

    async def run(self, duration):
        clients = [asyncio.create_task(self.keep_alive_client()) for _ in range(self.keepalive)]
        await self.open_loop(duration)
        self.stopping = True
        await asyncio.gather(*clients)
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=self.timeout * 3)


async def hold(port, count, timeout):
    """`count` connections opened at once and held (nothing sent): they count as open."""
    results = await asyncio.gather(*(connect(port, timeout) for _ in range(count)),
                                   return_exceptions=True)  # refused ones are just not held
    return [c for c in results if isinstance(c, Conn)]


# ---------------------------------------------------------------------------- the server

def held_client_ports(pid, port):
    """Client ports of the TCP connections to `port` that process `pid` holds (it is stopped)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    with open(f"/proc/{pid}/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if inode in inodes and state != "0A" and int(local.split(":")[1], 16) == port:
                ports.add(int(remote.split(":")[1], 16))
    return ports


def pdeathsig():
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Server:
    def __init__(self, binary, mode, port, workdir, log_path, orphan_timeout):
        self.binary, self.mode, self.port = binary, mode, port
        self.orphan_timeout = orphan_timeout
        self.workdir = workdir
        self.config_path = os.path.join(workdir, "chaos.toml")
        self.log_path = log_path
        self.log_file = open(log_path, "a")
        self.config = {"workers": 3}
        self.master = None
        self.starts = 0
        self.orphans = set()

    def write_config(self):
        lines = [f"port = {self.port}", 'bind = "127.0.0.1"', f'mode = "{self.mode}"',
                 f"max-conns = {MAX_CONNS}", f"orphan-timeout = {self.orphan_timeout}",
                 "shutdown-timeout = 5"]
        lines += [f"{k} = {v}" for k, v in self.config.items()]
        with open(self.config_path + ".new", "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(self.config_path + ".new", self.config_path)

    def pool(self):
        return "min-workers" in self.config

    def most_workers(self):
        return self.config.get("max-workers", self.config.get("workers", 1))

    async def start(self):
        """Starts `attach` and waits for its "listening on" line. Its stdout goes to a file,
        not a pipe: the workers inherit it and outlive a killed master, and a pipe would
        hold the wait for the master's exit until they are gone."""
        self.write_config()
        self.starts += 1
        out_path = os.path.join(self.workdir, f"stdout-{self.starts}")
        with open(out_path, "w") as out:
            self.master = await asyncio.create_subprocess_exec(
                self.binary, "attach", "--config", self.config_path, stdout=out,
                stderr=self.log_file, preexec_fn=pdeathsig)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.master.returncode is None:
            with open(out_path) as f:
                if "listening on" in f.read():
                    return
            await asyncio.sleep(0.02)
        raise Failure(f"attach did not serve within 20 s (exit status "
                      f"{self.master.returncode}); see {self.log_path}")

    async def cli(self, *args, timeout=15):
        proc = await asyncio.create_subprocess_exec(
            self.binary, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise Failure(f"sockdispatch {' '.join(args)} did not finish in {timeout} s")
        return proc.returncode, out.decode(), err.decode()

    async def status(self):
        rc, out, err = await self.cli("status", str(self.port), "--json")
        if rc != 0:
            raise Failure(f"status {self.port} --json exited {rc}: {err.strip()}")
        return json.loads(out)

    async def running(self):
        return [w for w in (await self.status())["workers"]
                if w["state"] in ("running", "full") and w["pid"] > 0]

    async def tune(self, *args):
        rc, out, err = await self.cli("tune", str(self.port), *args)
        if rc != 0:
            raise Failure(f"tune {self.port} {' '.join(args)} exited {rc}: {err.strip()}")
        return out

    async def new_generation(self, sig):
        before = (await self.status())["generation"]
        self.master.send_signal(sig)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            st = await self.status()
            if st["generation"] != before:
                return st
        raise Failure(f"{signal.Signals(sig).name}: generation still {before} after 20 s")

    def reap_orphans(self):
        for pid in list(self.orphans):
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    self.orphans.discard(pid)
            except ChildProcessError:
                self.orphans.discard(pid)

    async def stop(self):
        """SIGTERM to the master (SIGKILL after 15 s), then SIGKILL of every child process
        left (orphaned workers are ours: this process is their subreaper), then `detach` of
        whatever state is left, and a check that the port is free."""
        if self.master and self.master.returncode is None:
            self.master.terminate()
            try:
                await asyncio.wait_for(self.master.wait(), 15)
            except asyncio.TimeoutError:
                log("the master did not stop within 15 s of SIGTERM; killing it")
                self.master.kill()
                await self.master.wait()
        for pid in children():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.orphans.add(pid)
        deadline = time.monotonic() + 5
        while self.orphans and time.monotonic() < deadline:
            self.reap_orphans()
            await asyncio.sleep(0.05)
        rc, out, err = await self.cli("detach", str(self.port), "--timeout", "5")
        if "nothing to do" not in out:
            log(f"detach: {(out + err).strip()}")
        self.log_file.close()


def children():
    pids = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                pids += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return pids


def kill_children():
    """Last resort, whatever happened: no child process (master, orphaned worker, CLI) left."""
    for _ in range(50):
        pids = children()
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


def port_is_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen(1)
            return True
        except OSError:
            return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- the faults

class Chaos:
    def __init__(self, server, load, args):
        self.server, self.load, self.args = server, load, args
        self.kills = []       # kill_worker: t, slot, pid, open, ports
        self.done = []        # executed events: t, kind, text
        self.counts = {}
        self.pool_seen = []   # (before, peak, after) running workers per pool event
        self.busy = set()     # pids a kill_worker or stop_worker is working on

    async def pick(self, ev):
        """The serving worker the event's `pick` (0-1) chooses, or None if none serves. A
        worker another event has stopped or is killing is not chosen."""
        workers = [w for w in await self.server.running() if w["pid"] not in self.busy]
        if not workers:
            return None
        return workers[min(int(ev["pick"] * len(workers)), len(workers) - 1)]

    async def overlap(self, stops, start, end):
        """--overlap: SIGSTOP/SIGCONT of workers beside the main schedule, on their own
        schedule (`stops`, from the same seed)."""
        for ev in stops:
            delay = start + ev["at"] - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.monotonic() > end:
                break
            t = time.monotonic()
            try:
                text = await self.stop_worker(ev)
            except Failure as e:  # status unreadable while a master restarts
                text = f"skipped: {e}"
            self.counts["overlap_stop"] = self.counts.get("overlap_stop", 0) + 1
            self.done.append({"t": t, "end": time.monotonic(), "kind": "overlap_stop",
                              "text": text})
            log(f"t={t - start:6.2f} overlap_stop: {text}")

    async def run(self, schedule, start, end):
        for ev in schedule:
            if time.monotonic() > end:
                log(f"the events from t={ev['at']:g} on did not fit in the run; skipped")
                break
            delay = start + ev["at"] - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            t = time.monotonic()
            text = await getattr(self, ev["kind"])(ev)
            self.counts[ev["kind"]] = self.counts.get(ev["kind"], 0) + 1
            self.done.append({"t": t, "end": time.monotonic(), "kind": ev["kind"], "text": text})
            log(f"t={t - start:6.2f} {ev['kind']}: {text}")
            self.server.reap_orphans()

    async def kill_worker(self, ev):
        w = await self.pick(ev)
        if w is None:
            return "no worker serves (respawn backoff); nothing killed"
        pid = w["pid"]
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            return f"pid {pid} already gone; nothing killed"
        self.busy.add(pid)  # for good: the pid is gone
        try:
            ports = held_client_ports(pid, self.server.port)
            slot = next((s for s in (await self.server.status())["workers"]
                         if s["slot"] == w["slot"] and s["pid"] == pid), None)
            if slot is None:
                raise Failure(f"kill_worker: slot {w['slot']} no longer shows pid {pid}")
        except BaseException:
            self.busy.discard(pid)
            os.kill(pid, signal.SIGCONT)
            raise
        os.kill(pid, signal.SIGKILL)
        kill = {"t": time.monotonic(), "slot": w["slot"], "pid": pid, "open": slot["open"],
                "ports": ports}
        self.kills.append(kill)
        note = "" if len(ports) == slot["open"] else f" (but it held {len(ports)} connections)"
        return f"slot {w['slot']} pid {pid}, open {slot['open']}{note}"

    async def stop_worker(self, ev):
        w = await self.pick(ev)
        if w is None:
            return "no worker serves (respawn backoff); nothing stopped"
        try:
            os.kill(w["pid"], signal.SIGSTOP)
        except ProcessLookupError:
            return f"pid {w['pid']} already gone; nothing stopped"
        self.busy.add(w["pid"])
        try:
            await asyncio.sleep(ev["seconds"])
        finally:
            self.busy.discard(w["pid"])
            try:
                os.kill(w["pid"], signal.SIGCONT)
            except ProcessLookupError:
                pass
        return f"slot {w['slot']} pid {w['pid']} stopped {ev['seconds']} s"

    async def hup(self, ev):
        if ev["workers"] == "pool":
            self.server.config = dict(POOL)
        else:
            self.server.config = {"workers": ev["workers"]}
        self.server.write_config()
        st = await self.server.new_generation(signal.SIGHUP)
        return f"generation {st['generation']}, {self.describe_config()}"

    def describe_config(self):
        if self.server.pool():
            return f"pool {POOL['min-workers']}-{POOL['max-workers']}"
        return f"{self.server.config['workers']} workers"

    async def usr1(self, ev):
        st = await self.server.new_generation(signal.SIGUSR1)
        return f"generation {st['generation']}"

    async def policy(self, ev):
        await self.server.tune("--policy", ev["policy"])
        return ev["policy"]

    async def weight(self, ev):
        w = await self.pick(ev)
        if w is None:
            return "no worker serves (respawn backoff); nothing tuned"
        await self.server.tune("--weight", f"{w['slot']}={ev['weight']}")
        return f"slot {w['slot']} weight {ev['weight']}"

    async def drain(self, ev):
        w = await self.pick(ev)
        if w is None:
            return "no worker serves (respawn backoff); nothing drained"
        await self.server.tune("--drain", str(w["slot"]))
        await asyncio.sleep(ev["seconds"])
        await self.server.tune("--undrain", str(w["slot"]))
        return f"slot {w['slot']} drained {ev['seconds']} s"

    async def pool(self, ev):
        text = ""
        if not self.server.pool():
            self.server.config = dict(POOL)
            self.server.write_config()
            st = await self.server.new_generation(signal.SIGHUP)
            text = f"reloaded into the pool (generation {st['generation']}); "
        before = len(await self.server.running())
        count = POOL["pool-busy-conns"] * POOL["max-workers"] + 8
        held = await hold(self.server.port, count, self.args.timeout)
        peak, until = before, time.monotonic() + 3  # held 3 s, however long `status` takes
        try:
            while time.monotonic() < until:
                await asyncio.sleep(min(0.5, max(until - time.monotonic(), 0)))
                peak = max(peak, len(await self.server.running()))
        finally:
            for c in held:
                c.close()
            seconds = time.monotonic() - until + 3
        after = peak
        for _ in range(int(POOL["pool-idle-seconds"] / 0.5) + 6):
            await asyncio.sleep(0.5)
            after = len(await self.server.running())
            if after <= POOL["min-workers"]:
                break
        self.pool_seen.append((before, peak, after))
        return (f"{text}held {len(held)} for {seconds:.1f} s: {before} workers -> {peak} -> "
                f"{after}")

    async def exhaust(self, ev):
        workers = await self.server.running()
        count = MAX_CONNS * max(len(workers), self.server.most_workers()) + 8
        held = await hold(self.server.port, count, self.args.timeout)
        try:
            await asyncio.sleep(0.3)
            full = sum(1 for w in await self.server.running() if w["open"] >= MAX_CONNS)
            await asyncio.sleep(max(ev["seconds"] - 0.3, 0))
        finally:
            for c in held:
                c.close()
        return f"held {len(held)} for {ev['seconds']} s: {full} of {len(workers)} workers full"

    async def kill_master(self, ev):
        st = await self.server.status()
        old = self.server.master.pid
        self.server.orphans |= {w["pid"] for w in st["workers"] if w["pid"] > 0}
        self.server.master.kill()
        await self.server.master.wait()
        await asyncio.sleep(ev["seconds"])
        await self.server.start()
        st = await self.server.status()
        return (f"master pid {old} killed, restarted after {ev['seconds']} s as pid "
                f"{st['master_pid']} (generation {st['generation']})")


# ---------------------------------------------------------------------------- accounting

def account(load, chaos):
    """Splits the failures into accounted (on a connection a killed worker held), resent and
    unaccounted. Accounted failures beyond the scoreboard's `open` sum are unaccounted."""
    accounted, resent, unaccounted = [], [], []
    budget = sum(k["open"] for k in chaos.kills)
    for f in load.tally.failures:
        kill = next((k for k in chaos.kills if f["port"] in k["ports"] and
                     f["connected"] < k["t"] <= f["t"]), None)
        if kill is not None:
            f["killed"] = f"slot {kill['slot']} pid {kill['pid']}"
            accounted.append(f)
        elif f["reused"] and not f["got_bytes"]:
            resent.append(f)
        else:
            unaccounted.append(f)
    if len(accounted) > budget:
        for f in accounted[budget:]:
            f["what"] += " (beyond the killed workers' open count)"
        unaccounted += accounted[budget:]
        accounted = accounted[:budget]
    return accounted, resent, unaccounted, budget


def event_before(chaos, t, start):
    before = [e for e in chaos.done if e["t"] <= t]
    if not before:
        return "none"
    e = before[-1]
    return f"t={e['t'] - start:.2f} {e['kind']}: {e['text']}"


def ms(seconds):
    return None if seconds is None else round(seconds * 1000, 2)


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(int(q * len(values)), len(values) - 1)]


# ---------------------------------------------------------------------------- main

async def guarded(args, seed, schedule, workdir):
    """The soak, cancelled (and so cleaned up) on SIGTERM, SIGINT or its overall limit."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    return await asyncio.wait_for(soak(args, seed, schedule, workdir), args.duration + 120)


async def soak(args, seed, schedule, workdir):
    port = free_port()
    server = Server(args.binary, args.mode, port, workdir, args.log, args.orphan_timeout)
    load = Load(port, args.rate, args.keepalive, args.timeout)
    chaos = Chaos(server, load, args)
    error, load_task, side = None, None, None
    try:
        await server.start()
        log(f"serving on 127.0.0.1:{port} ({args.mode} mode), log {args.log}")
        load_task = asyncio.create_task(load.run(args.duration))
        await asyncio.sleep(0)
        end = load.start + args.duration - 4
        if args.overlap:
            stops = make_overlap(random.Random(seed ^ 0x5EED), args.duration)
            side = asyncio.create_task(chaos.overlap(stops, load.start, end))
        try:
            await chaos.run(schedule, load.start, end)
            if side:
                await side
        except Failure as e:
            error = str(e)
            log(f"ERROR: {error}")
        await load_task
    finally:
        load.stopping = True
        pending = [t for t in [side, load_task, *load.tasks] if t is not None and not t.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await server.stop()
    if not port_is_free(port):
        error = error or f"port {port} is still in use after the stop"
    return server, load, chaos, error


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(ROOT, "build", "sockdispatch"))
    parser.add_argument("--mode", choices=["ebpf", "line"], default="ebpf")
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--rate", type=int, default=200, help="new connections per second")
    parser.add_argument("--keepalive", type=int, default=8, help="keep-alive clients")
    parser.add_argument("--timeout", type=float, default=5, help="seconds for an answer")
    parser.add_argument("--orphan-timeout", type=int, default=10,
                        help="the server's orphan-timeout (0: workers leave with a killed "
                        "master, and the soak must fail at the first kill_master)")
    parser.add_argument("--overlap", action="store_true",
                        help="also stop workers (SIGSTOP 0.3-2 s) on a second schedule from "
                        "the same seed, during the other events")
    parser.add_argument("--report", help="write the counts as JSON to this file")
    parser.add_argument("--log", help="the server's log (default: a temporary file, kept and "
                        "named on failure)")
    args = parser.parse_args()
    if args.duration < 10 or args.duration > 3600:
        parser.error("--duration must be 10 to 3600 seconds")
    if not 1 <= args.rate <= 2000:
        parser.error("--rate must be 1 to 2000")
    if not 0 <= args.keepalive <= 64:
        parser.error("--keepalive must be 0 to 64")
    if not 0.5 <= args.timeout <= 60:
        parser.error("--timeout must be 0.5 to 60 seconds")
    if not 0 <= args.orphan_timeout <= 3600:
        parser.error("--orphan-timeout must be 0 to 3600 seconds")
    if args.seed is not None and not 0 <= args.seed < 2 ** 32:
        parser.error("--seed must be 0 to 2^32-1")
    if not os.access(args.binary, os.X_OK):
        parser.error(f"--binary {args.binary}: not an executable file")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2 ** 32)
    log(f"seed {seed}")
    if os.geteuid() != 0:
        log("skipped: attach loads BPF, pins maps and signals workers: it needs root")
        return SKIP

    schedule = make_schedule(random.Random(seed), args.mode, args.duration)
    log(f"schedule ({len(schedule)} events, {args.mode} mode, {args.duration:g} s): " +
        ", ".join(f"{e['at']:g} {describe(e)}" for e in schedule))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log("warning: cannot become the subreaper of orphaned workers")
    workdir = tempfile.mkdtemp(prefix="sockdispatch-chaos-")
    keep_log = args.log is not None
    args.log = args.log or os.path.join(workdir, "server.log")
    try:
        server, load, chaos, error = asyncio.run(guarded(args, seed, schedule, workdir))
    except (asyncio.CancelledError, KeyboardInterrupt):
        log("interrupted: the server is stopped and every child process gone")
        return 1
    except asyncio.TimeoutError:
        log(f"the run did not end within {args.duration + 120:g} s")
        return 1
    except Failure as e:
        log(f"ERROR: {e}")
        return 1
    finally:
        kill_children()
        if not keep_log and os.path.exists(os.path.join(workdir, "server.log")):
            saved = os.path.join(tempfile.gettempdir(), f"sockdispatch-chaos-{seed}.log")
            shutil.copy(os.path.join(workdir, "server.log"), saved)
            args.log = saved
        shutil.rmtree(workdir, ignore_errors=True)

    accounted, resent, unaccounted, budget = account(load, chaos)
    lat = [seconds for _, seconds in load.tally.latencies]
    # Requests sent while no fault was under way (nor in the second after one ended).
    windows = [(e["t"], e["end"] + 1) for e in chaos.done]
    quiet = [seconds for at, seconds in load.tally.latencies
             if not any(a <= at <= b for a, b in windows)]
    requests = load.tally.ok + len(accounted) + len(unaccounted)
    p50, p99 = percentile(lat, 0.50), percentile(lat, 0.99)
    q50, q99 = percentile(quiet, 0.50), percentile(quiet, 0.99)
    log(f"events: " + ", ".join(f"{k} {v}" for k, v in sorted(chaos.counts.items())))
    log(f"requests {requests}: ok {load.tally.ok}, failed {len(accounted) + len(unaccounted)} "
        f"(accounted {len(accounted)} of the {budget} the killed workers held, unaccounted "
        f"{len(unaccounted)}), resent {len(resent)}, sent late {load.tally.late}; latency "
        f"p50 {ms(p50)} ms, p99 {ms(p99)} ms; away from the faults ({len(quiet)} requests) "
        f"p50 {ms(q50)} ms, p99 {ms(q99)} ms")
    start = load.start
    if args.report:
        report = {
            "date": time.strftime("%Y-%m-%d"), "kernel": os.uname().release,
            "cpus": os.cpu_count(), "seed": seed, "mode": args.mode,
            "duration_s": args.duration, "rate": args.rate, "keepalive": args.keepalive,
            "timeout_s": args.timeout, "max_conns": MAX_CONNS,
            "orphan_timeout_s": args.orphan_timeout, "pool_config": POOL,
            "overlap": args.overlap,
            "events": dict(sorted(chaos.counts.items())),
            "requests": {"total": requests, "ok": load.tally.ok,
                         "failed": len(accounted) + len(unaccounted),
                         "accounted": len(accounted), "unaccounted": len(unaccounted),
                         "resent": len(resent), "late": load.tally.late},
            "killed_open": budget,
            "kills": [{"t": round(k["t"] - start, 2), "slot": k["slot"], "open": k["open"],
                       "held": len(k["ports"])} for k in chaos.kills],
            "pool": [{"before": b, "peak": p, "after": a} for b, p, a in chaos.pool_seen],
            "latency_ms": {"p50": ms(p50), "p99": ms(p99), "quiet_p50": ms(q50),
                           "quiet_p99": ms(q99), "quiet_requests": len(quiet)},
            "error": error,
            "failures": [{"t": round(f["t"] - start, 3), "kind": f["kind"], "what": f["what"],
                          "accounted": f in accounted,
                          "after": event_before(chaos, f["t"], start)}
                         for f in accounted + unaccounted],
            "schedule": schedule,
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.report)), exist_ok=True)
        with open(args.report, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    if not unaccounted and not error:
        log(f"OK: no unaccounted failure (seed {seed})")
        if not keep_log:
            os.unlink(args.log)
        return 0
    replay = f"--seed {seed} --mode {args.mode} --duration {args.duration:g}"
    if args.overlap:
        replay += " --overlap"
    for flag, value, default in (("--rate", args.rate, 200), ("--keepalive", args.keepalive, 8),
                                 ("--timeout", args.timeout, 5),
                                 ("--orphan-timeout", args.orphan_timeout, 10)):
        if value != default:
            replay += f" {flag} {value:g}"
    log(f"FAILED (seed {seed}; replay: {replay}); server log {args.log}")
    if error:
        log(f"error: {error}")
    for e in schedule:
        log(f"  scheduled {e['at']:6.2f} {describe(e)}")
    kinds = {}
    for f in unaccounted:
        kinds[f["what"]] = kinds.get(f["what"], 0) + 1
    log("unaccounted by cause: " + ", ".join(f"{w} {n}" for w, n in sorted(kinds.items())))
    for f in unaccounted[:SHOWN]:
        log(f"  unaccounted t={f['t'] - start:.3f} ({wall(f['t'])} UTC) {f['kind']}: "
            f"{f['what']} (client port {f['port']}); event before: "
            f"{event_before(chaos, f['t'], start)}")
    if len(unaccounted) > SHOWN:
        log(f"  ... and {len(unaccounted) - SHOWN} more (all in --report)")
    return 1


if __name__ == "__main__":
    sys.exit(main())
