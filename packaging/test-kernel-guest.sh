#!/usr/bin/env bash
# The guest's half of packaging/test-kernel.sh: runs inside the virtual machine (Debian 12's
# kernel, systemd as PID 1), started by a oneshot unit with its output on the serial console.
# The payload disk is mounted at /payload: debs/ (the two packages), build/ and source/ (the
# integration tests and the tree they read), paths.env (where the host built them) and
# filter (the gtest filter of the eBPF-path tests). Each line meant for the record starts with
# "test-kernel-guest: "; the last one is "test-kernel-guest: RESULT OK" or "... RESULT FAIL".
set -euo pipefail

payload=/payload
name=vmtest
unit="sockdispatch@$name.service"
load_pid=""
attach_pid=""

say() { echo "test-kernel-guest: $*"; }
# Lines of other programs' output kept in the record, indented under the line that names them.
detail() { sed 's/^/test-kernel-guest:   | /'; }
fail() {
  say "FAIL: $*"
  exit 1
}
cleanup() {
  local code=$?
  if [[ -n "$attach_pid" ]]; then kill -KILL "$attach_pid" 2>/dev/null || true; fi
  if [[ -n "$load_pid" ]]; then kill -KILL "$load_pid" 2>/dev/null || true; fi
  if ((code == 0)); then
    say "RESULT OK"
  else
    say "RESULT FAIL (exit $code)"
  fi
  sync
  # Power the guest off now (the unit's FailureAction/SuccessAction would too, after stopping
  # what it runs): the host waits for qemu to exit.
  if [[ -n "${INVOCATION_ID:-}" && "$(hostname)" == sockdispatch-vm ]]; then
    echo o >/proc/sysrq-trigger
  fi
  exit "$code"
}
trap cleanup EXIT

# shellcheck source=/dev/null
source "$payload/paths.env" # BUILD_DIR, SOURCE_DIR: the host's paths, compiled into the tests
say "kernel $(uname -r), $(nproc) CPUs, systemd $(systemctl --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p') as PID 1 ($(ps -o comm= -p 1))"
mountpoint -q /sys/fs/bpf || fail "systemd did not mount bpffs at /sys/fs/bpf"

# The tests find the command and the tree at the host's paths.
mkdir -p "$(dirname "$SOURCE_DIR")"
ln -sfn "$payload/source" "$SOURCE_DIR"
mkdir -p "$BUILD_DIR"
cp -a "$payload/build/." "$BUILD_DIR/"
built="$BUILD_DIR/sockdispatch"

step_started=0
step() {
  step_started=$SECONDS
  say "== $*"
}
took() { echo "$((SECONDS - step_started)) s"; }

step "the dispatch program on this kernel (--mode ebpf: a refusal fails and shows the verifier's log)"
"$built" attach 0 --bind 127.0.0.1 --workers 2 --mode ebpf >/tmp/attach.out 2>/tmp/attach.err &
attach_pid=$!
port=""
for _ in $(seq 600); do
  port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' /tmp/attach.out)
  [[ -n "$port" ]] && break
  kill -0 "$attach_pid" 2>/dev/null || break
  sleep 0.1
done
features=$(grep -o 'kernel [^ ]*: reuseport.*' /tmp/attach.err | head -n 1 || true)
if [[ -z "$port" ]]; then
  say "the program did not load; its log (libbpf and the verifier's log, whose end says why):"
  tail -n 80 /tmp/attach.err | detail
  fail "kernel $(uname -r): ${features:-features unknown}: sockdispatch attach --mode ebpf did not start"
fi
mode=$(sed -n 's/^listening on .* (\([a-z]*\) mode.*/\1/p' /tmp/attach.out)
say "$features"
say "kernel $(uname -r): the dispatch program loaded and attached; mode $mode"
[[ "$mode" == ebpf ]] || fail "attach ran in mode '$mode', not ebpf"
status=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$port/") || true
[[ "$status" == 200 ]] || fail "GET / answered '$status'"
"$built" status "$port" | detail
kill -TERM "$attach_pid"
timeout 60 tail --pid="$attach_pid" -f /dev/null || fail "attach did not stop on SIGTERM"
wait "$attach_pid" || fail "attach exited with $? on SIGTERM"
attach_pid=""
say "served a 200 in ebpf mode and stopped cleanly ($(took))"

step "eBPF-path integration tests (filter $(cat "$payload/filter"))"
cd "$BUILD_DIR/tests"
test_code=0
timeout 900 ./integration_tests --gtest_filter="$(cat "$payload/filter")" \
  --gtest_output="json:/tmp/tests.json" >/tmp/tests.log 2>&1 || test_code=$?
grep -E '^\[ +(OK|FAILED|SKIPPED) +\] [A-Za-z]' /tmp/tests.log | detail || true
if [[ -s /tmp/tests.json ]]; then
  counts=$(python3 -c '
import json, sys
report = json.load(open("/tmp/tests.json"))
cases = [case for suite in report["testsuites"] for case in suite["testsuite"]]
failed = sum(1 for case in cases if case.get("failures"))
passed = sum(1 for case in cases
             if case.get("result") == "COMPLETED" and not case.get("failures"))
print(passed, failed, len(cases) - passed - failed)')
else
  counts="0 0 0"
fi
read -r passed failed skipped <<<"$counts"
say "integration tests: $passed passed, $failed failed, $skipped skipped or not run ($(took), exit $test_code)"
if ((test_code != 0 || failed != 0 || skipped != 0 || passed == 0)); then
  # Every failed assertion with its message, then gtest's list of the failed tests.
  grep -A8 -E ': Failure$|Skipped$' /tmp/tests.log | head -n 300 | detail
  sed -n '/tests, listed below:$/,$p' /tmp/tests.log | detail
  fail "the integration tests did not all pass"
fi

step "install both packages (no network: their dependencies are in the image)"
cd /
timeout 300 dpkg -i "$payload"/debs/sockdispatch_*.deb "$payload"/debs/libsockdispatch-dev_*.deb \
  >/tmp/dpkg.log 2>&1 || {
  cat /tmp/dpkg.log
  fail "dpkg -i failed"
}
dpkg-query -W -f='${Package} ${Version}\n' sockdispatch libsockdispatch-dev | detail

step "the unit $unit under systemd (Type=notify)"
cp /usr/share/doc/sockdispatch/examples/example.toml "/etc/sockdispatch/$name.toml"
timeout 120 systemctl start "$unit" || {
  systemctl status "$unit" --no-pager -l | head -n 8 | detail || true
  journalctl -u "$unit" -o cat --no-pager | tail -n 30 | detail || true
  fail "systemctl start $unit failed"
}
# Type=notify: start returned once the master sent READY=1, so the unit is active now.
active=$(systemctl is-active "$unit" || true)
[[ "$active" == active ]] || fail "systemctl is-active $unit printed '$active'"
say "$unit $active ($(took) from start to active)"
port=$(sed -n 's/^port *= *\([0-9]*\).*/\1/p' "/etc/sockdispatch/$name.toml")
status=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$port/") || true
[[ "$status" == 200 ]] || fail "the unit's GET http://127.0.0.1:$port/ answered '$status'"
say "GET http://127.0.0.1:$port/ -> 200"
journalctl -u "$unit" -o cat --no-pager | grep -E 'kernel .*: reuseport|listening on' |
  detail || true
sockdispatch status "$port" | detail
if ! sockdispatch status "$port" | grep -q "mode ebpf"; then
  # Why: the unit's journal (auto mode says why it fell back), then the same unit with
  # mode = "ebpf" and verbose = true, which refuses to start and logs libbpf's account.
  say "the unit serves in line mode; its journal:"
  journalctl -u "$unit" -o cat --no-pager | tail -n 20 | detail
  sed -e 's/^mode = .*/mode = "ebpf"/' -e 's/^verbose = .*/verbose = true/' \
    -e 's/^port = .*/port = 8081/' "/etc/sockdispatch/$name.toml" >/etc/sockdispatch/vmdiag.toml
  timeout 120 systemctl start sockdispatch@vmdiag.service || true
  say "the same unit with mode = \"ebpf\", verbose = true (sockdispatch@vmdiag):"
  journalctl -u sockdispatch@vmdiag.service -o cat --no-pager | grep -v ' debug ' >/tmp/diag.log
  say "the end of the verifier's log, and what attach said:"
  sed -n '/BEGIN PROG LOAD LOG/,/END PROG LOAD LOG/p' /tmp/diag.log | tail -n 30 | detail
  grep -E ' (warning|error) ' /tmp/diag.log | grep -v 'PROG LOAD LOG' | tail -n 8 | detail
  systemctl stop sockdispatch@vmdiag.service || true
  fail "the unit does not serve in ebpf mode"
fi

step "systemctl reload under load"
# Clients that each open a new connection per request for the whole reload, counting every
# request that does not get a 200 (refused, reset, empty reply, other status).
python3 - "$port" >/tmp/load.out 2>&1 <<'EOF' &
import http.client, sys, threading, time
port = int(sys.argv[1])
stop_at = time.monotonic() + 8.0
counts = {"ok": 0, "failed": 0}
lock = threading.Lock()
def client():
    while time.monotonic() < stop_at:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/")
            ok = connection.getresponse().status == 200
            connection.close()
        except OSError:
            ok = False
        with lock:
            counts["ok" if ok else "failed"] += 1
threads = [threading.Thread(target=client) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(counts["ok"], counts["failed"])
EOF
load_pid=$!
sleep 2
main_before=$(systemctl show -p MainPID --value "$unit")
timeout 120 systemctl reload "$unit" || fail "systemctl reload $unit failed"
reload_took=$(took)
main_after=$(systemctl show -p MainPID --value "$unit")
timeout 60 tail --pid="$load_pid" -f /dev/null || fail "the load did not finish"
wait "$load_pid" || fail "the load client failed: $(cat /tmp/load.out)"
load_pid=""
read -r load_ok load_failed <"/tmp/load.out" || fail "the load client printed $(cat /tmp/load.out)"
[[ "$main_before" == "$main_after" ]] || fail "the master changed on reload ($main_before -> $main_after)"
[[ "$(systemctl is-active "$unit")" == active ]] || fail "$unit is not active after the reload"
say "reload under load: $load_ok requests answered 200, $load_failed failed (systemctl reload returned in $reload_took, master pid $main_after kept)"
((load_failed == 0 && load_ok > 0)) || fail "requests failed across the reload"
journalctl -u "$unit" -o cat --no-pager | grep -iE 'reload|generation' | tail -n 4 |
  detail || true

step "the unit's sandbox (docs/design/sandbox.md)"
exposure=$(systemd-analyze security "$unit" 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: //p')
say "systemd-analyze security $unit: $exposure"
filters_of() { sed -n 's/^Seccomp_filters:[[:space:]]*//p' "/proc/$1/status"; }
master_filters=$(filters_of "$main_after")
[[ "$(sed -n 's/^Seccomp:[[:space:]]*//p' "/proc/$main_after/status")" == 2 ]] ||
  fail "the master runs without the unit's SystemCallFilter"
for worker in $(pgrep -P "$main_after"); do
  worker_filters=$(filters_of "$worker")
  ((worker_filters == master_filters + 1)) ||
    fail "worker $worker has $worker_filters seccomp filters, the master $master_filters: its own is missing"
done
if journalctl -u "$unit" -o cat --no-pager | grep -E 'without a system-call filter|Bad system call' | detail; then
  fail "a worker ran without its filter or was killed by it"
fi
say "master: the unit's filters ($master_filters); each worker: one more, its own"

step "stop"
timeout 60 systemctl stop "$unit" || fail "systemctl stop $unit failed"
result=$(systemctl show -p Result --value "$unit")
[[ "$result" == success ]] || fail "$unit stopped with result $result"
[[ ! -e "/sys/fs/bpf/sockdispatch/$port" ]] || fail "the stop left pins in /sys/fs/bpf"
say "$unit stopped (result $result, $(took))"

step "examples/ built against the installed libsockdispatch-dev"
rm -rf /tmp/examples
cp -r /usr/share/doc/libsockdispatch-dev/examples /tmp/examples
if ! timeout 300 cmake -S /tmp/examples -B /tmp/examples/build -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/tmp/examples.log 2>&1 ||
  ! timeout 900 cmake --build /tmp/examples/build -j "$(nproc)" >>/tmp/examples.log 2>&1; then
  tail -n 30 /tmp/examples.log
  fail "the examples did not build against the installed package"
fi
pkg-config --exists --print-errors sockdispatch || fail "pkg-config does not find sockdispatch"
example_port=18080
/tmp/examples/build/hello "$example_port" 2 >/tmp/hello.out 2>/tmp/hello.err &
attach_pid=$!
for _ in $(seq 600); do
  grep -q "listening on" /tmp/hello.out 2>/dev/null && break
  kill -0 "$attach_pid" 2>/dev/null || break
  sleep 0.1
done
body=$(curl -sS --max-time 10 "http://127.0.0.1:$example_port/") || true
[[ "$body" == *"hello from worker"* ]] || fail "hello answered '$body': $(cat /tmp/hello.err)"
kill -TERM "$attach_pid"
timeout 60 tail --pid="$attach_pid" -f /dev/null || fail "hello did not stop"
attach_pid=""
say "examples hello, json_api, offload built with find_package(sockdispatch); hello answered: $body ($(took))"

step "purge"
timeout 300 dpkg --purge sockdispatch libsockdispatch-dev >/tmp/purge.log 2>&1 || {
  cat /tmp/purge.log
  fail "dpkg --purge failed"
}
[[ ! -e /usr/sbin/sockdispatch && ! -e /usr/include/sockdispatch ]] ||
  fail "files of the packages remain after purge"
say "both packages purged"
say "summary: kernel $(uname -r), mode $mode, $passed passed, $failed failed; $unit $active; reload under load $load_ok answered, $load_failed failed; exposure $exposure"
