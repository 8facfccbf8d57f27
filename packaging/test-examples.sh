#!/usr/bin/env bash
# Builds examples/ against an installed sockdispatch, the way a user's project finds it, and
# runs one: installs the library of the build tree `build` (or $1; its `dev` component: the
# CLI and the systemd unit are not needed) into a temporary prefix, configures and
# builds examples/ with find_package(sockdispatch) from that prefix only, checks that
# pkg-config finds the same install, then runs the hello example on a free loopback port and
# expects a 200 from curl. Run as root (the example loads the dispatch program). Every step
# is bounded; the example is stopped and the temporary directory removed however it ends.
# Usage: packaging/test-examples.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:-build}
work=$(mktemp -d /tmp/sockdispatch-examples.XXXXXX)
pid=""

fail() {
  echo "test-examples: FAIL: $*" >&2
  exit 1
}
cleanup() {
  local code=$?
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    timeout 20 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== install into a temporary prefix"
cmake --install "$build" --component dev --prefix "$work/prefix" >/dev/null
[[ -f "$work/prefix/include/sockdispatch/server.h" ]] || fail "server.h not installed"
[[ ! -e "$work/prefix/include/sockdispatch/abi.h" ]] || fail "the private map ABI was installed"

echo "== pkg-config sees the install"
PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig:$work/prefix/lib/$(gcc -print-multiarch 2>/dev/null)/pkgconfig" \
  pkg-config --exists --print-errors sockdispatch || fail "pkg-config cannot find sockdispatch"

echo "== build examples/ with find_package(sockdispatch)"
timeout 600 cmake -S examples -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
timeout 600 cmake --build "$work/build" -j "$(nproc)" >/dev/null
for example in hello json_api offload; do
  [[ -x "$work/build/$example" ]] || fail "$example was not built"
done

echo "== run hello on loopback"
# A free port: the kernel picks one, and it is given back before hello binds it.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$work/build/hello" "$port" 2 >"$work/hello.out" 2>"$work/hello.err" &
pid=$!
for _ in $(seq 1 200); do
  grep -q "listening on" "$work/hello.out" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || fail "hello exited: $(cat "$work/hello.err")"
  sleep 0.05
done
grep -q "listening on" "$work/hello.out" || fail "hello did not listen: $(cat "$work/hello.err")"
status=$(curl -s -o "$work/body" -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/")
[[ "$status" == 200 ]] || fail "hello answered $status"
grep -q "hello from worker" "$work/body" || fail "unexpected body: $(cat "$work/body")"
echo "hello answered 200: $(cat "$work/body")"

kill -TERM "$pid"
code=0
timeout 20 bash -c "while kill -0 $pid 2>/dev/null; do sleep 0.05; done" || fail "hello did not stop"
wait "$pid" || code=$?
pid=""
[[ "$code" == 0 ]] || fail "hello exited with $code: $(cat "$work/hello.err")"
echo "test-examples: OK"
