#!/usr/bin/env bash
# The kernel program's cost per decision (per SYN) under each policy, from the kernel's own
# accounting (kernel.bpf_stats_enabled=1: run_time_ns and run_count of the program, read
# with `sockdispatch status --json`). One attachment on loopback, policies switched live with
# `sockdispatch tune` and measured in turn, ROUNDS times, under `wrk -c20 -H 'Connection:
# close'` for SECONDS each.
# Usage (as root, after packaging/install-deps.sh --bench and a build in ./build):
#   bench/program_cost.sh [ROUNDS] [SECONDS] [WORKERS] [POLICY ...]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
seconds=${2:-4}
workers=${3:-2}
shift $(($# < 3 ? $# : 3))
policies=("$@")
((${#policies[@]})) || policies=(skip_load least_conn)
binary=build/sockdispatch
for tool in wrk python3; do
  command -v "$tool" >/dev/null || { echo "program_cost: $tool not found; run packaging/install-deps.sh --bench" >&2; exit 1; }
done
[[ -x $binary ]] || { echo "program_cost: $binary not found; build first" >&2; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$binary" attach "$port" --bind 127.0.0.1 --workers "$workers" --mode ebpf >/dev/null 2>&1 &
master=$!
previous_stats=$(sysctl -n kernel.bpf_stats_enabled)
cleanup() {
  sysctl -qw kernel.bpf_stats_enabled="$previous_stats"
  "$binary" detach "$port" >/dev/null 2>&1 || kill "$master" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 50); do
  "$binary" status "$port" >/dev/null 2>&1 && break
  sleep 0.1
done
sysctl -qw kernel.bpf_stats_enabled=1

program_stats() {
  "$binary" status "$port" --json |
    python3 -c 'import json, sys; p = json.load(sys.stdin)["program"]; print(p["run_time_ns"], p["run_count"])'
}
echo "| round | policy | decisions | ns per decision | new connections/s |"
echo "|---|---|---:|---:|---:|"
for round in $(seq "$rounds"); do
  for policy in "${policies[@]}"; do
    "$binary" tune "$port" --policy "$policy" >/dev/null
    read -r time0 count0 < <(program_stats)
    rps=$(wrk -t1 -c20 -d"${seconds}s" -H 'Connection: close' "http://127.0.0.1:$port/" |
      awk '/Requests\/sec/ {print $2}')
    read -r time1 count1 < <(program_stats)
    decisions=$((count1 - count0))
    python3 -c "print(f'| $round | $policy | $decisions | {($time1 - $time0) / max(1, $decisions):.0f} | {float($rps):.0f} |')"
  done
done
