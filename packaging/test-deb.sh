#!/usr/bin/env bash
# Builds the Debian packages from this checkout and tests them the way an operator and a
# developer meet them:
#   1. packaging/build-deb.sh: dpkg-buildpackage -us -uc -b on a copy of the sources
#      (packaging/debian copied to debian/), in a temporary directory, so the checkout gains no
#      build products; two packages: sockdispatch (the command, the unit) and
#      libsockdispatch-dev (static library, headers, CMake package, pkg-config, examples);
#   2. lintian on the result: any error fails, warnings are printed (each is justified in
#      docs/packaging.md);
#   3. dpkg -i of both; the installed unit passes systemd-analyze verify (man page included);
#      the installed /usr/sbin/sockdispatch serves a 200 on 127.0.0.1 with two workers and
#      stops cleanly on SIGTERM; check-config accepts the installed example; pkg-config and
#      CMake find the installed library;
#   4. dpkg --purge of both; no file of either package's list (dpkg -L before the purge)
#      remains.
# Run as root on Debian 12. Every step is bounded by a timeout; the packages are purged and the
# temporary directory removed however the script ends.
# Usage: packaging/test-deb.sh [--keep-debs DIR | --debs DIR]
#   --keep-debs DIR  DIR receives the tested .deb files (e.g. for packaging/test-kernel.sh --debs)
#   --debs DIR       test the packages packaging/build-deb.sh DIR built instead of building
set -euo pipefail
cd "$(dirname "$0")/.."

keep_debs=""
prebuilt=""
if [[ "${1:-}" == "--keep-debs" ]]; then
  keep_debs=${2:?--keep-debs needs a directory}
elif [[ "${1:-}" == "--debs" ]]; then
  prebuilt=${2:?--debs needs a directory}
elif (($# > 0)); then
  echo "test-deb: unknown option $1 (usage: packaging/test-deb.sh [--keep-debs DIR | --debs DIR])" >&2
  exit 2
fi

package=sockdispatch
dev_package=libsockdispatch-dev
marker=/var/tmp/sockdispatch-test-deb.installed # an install this script made
work=$(mktemp -d /tmp/sockdispatch-deb.XXXXXX)
attach_pid=""
user_existed=0
getent passwd "$package" >/dev/null && user_existed=1

step() { echo "== $*"; }
fail() {
  echo "test-deb: FAIL: $*" >&2
  exit 1
}
installed() {
  local name=${1:-$package}
  dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q "install ok installed"
}

cleanup() {
  local code=$?
  if [[ -n "$attach_pid" ]] && kill -0 "$attach_pid" 2>/dev/null; then
    kill -KILL "$attach_pid" 2>/dev/null || true
    wait "$attach_pid" 2>/dev/null || true
  fi
  if [[ -e "$marker" ]]; then
    dpkg --purge "$package" "$dev_package" >/dev/null 2>&1 || true
    rm -f "$marker"
  fi
  # The package keeps its system user on purge (docs/packaging.md); this test leaves the
  # machine as it found it.
  if ((user_existed == 0)) && getent passwd "$package" >/dev/null; then
    deluser --system --quiet "$package" >/dev/null 2>&1 || true
  fi
  if getent group "$package" >/dev/null && ((user_existed == 0)); then
    delgroup --system --quiet "$package" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Idempotent: an install left by an interrupted run of this script is purged; an install this
# script did not make is somebody's, and is left alone.
for name in "$package" "$dev_package"; do
  if installed "$name"; then
    if [[ -e "$marker" ]]; then
      step "purging the packages a previous run left installed"
      dpkg --purge "$package" "$dev_package" >/dev/null
      rm -f "$marker"
    else
      fail "$name is installed already; purge it first (dpkg --purge $name)"
    fi
  fi
done

if [[ -n "$prebuilt" ]]; then
  step "the packages built before in $prebuilt"
  cp "$prebuilt"/*.deb "$prebuilt"/*.changes "$prebuilt"/*.buildinfo "$work/" ||
    fail "$prebuilt lacks the .deb, .changes and .buildinfo files of packaging/build-deb.sh"
else
  step "build (packaging/build-deb.sh $work)"
  timeout 2000 bash packaging/build-deb.sh "$work" || fail "the package build failed"
fi
deb=$(ls "$work"/${package}_*.deb)
dev_deb=$(ls "$work"/${dev_package}_*.deb)
changes=$(ls "$work"/${package}_*.changes)
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
# ${shlibs:Depends} was computed: the libraries the binary links are there.
for library in libbpf libevent libspdlog libtomlplusplus libsystemd0 libc6; do
  [[ "$depends" == *"$library"* ]] || fail "Depends lacks $library"
done
dev_depends=$(dpkg-deb -f "$dev_deb" Depends)
echo "$dev_package Depends: $dev_depends"
# What sockdispatchConfig.cmake and sockdispatch.pc ask for must come with the package.
for dependency in libbpf-dev libevent-dev libspdlog-dev libfmt-dev libtomlplusplus-dev \
  libsystemd-dev pkg-config; do
  [[ "$dev_depends" == *"$dependency"* ]] || fail "$dev_package's Depends lacks $dependency"
done

step "lintian (errors fail)"
lintian_code=0
timeout 600 lintian --fail-on error --display-info "$changes" | tee "$work/lintian.log" ||
  lintian_code=$?
((lintian_code == 0)) || fail "lintian reported errors (exit $lintian_code)"
echo "lintian: $(grep -c '^E:' "$work/lintian.log" || true) errors," \
  "$(grep -c '^W:' "$work/lintian.log" || true) warnings," \
  "$(grep -c '^I:' "$work/lintian.log" || true) infos"

step "install"
touch "$marker"
timeout 300 dpkg -i "$deb" "$dev_deb" >/dev/null
installed || fail "dpkg -i did not install $package"
installed "$dev_package" || fail "dpkg -i did not install $dev_package"
dpkg -L "$package" "$dev_package" >"$work/files"
for path in /usr/sbin/sockdispatch /lib/systemd/system/sockdispatch@.service \
  /usr/share/man/man8/sockdispatch.8.gz /usr/share/doc/sockdispatch/examples/example.toml \
  /etc/sockdispatch; do
  grep -qx "$path" "$work/files" || fail "$path is not in the package"
  [[ -e "$path" ]] || fail "$path is not installed"
done
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
for path in /usr/include/sockdispatch/server.h "/usr/lib/$multiarch/libsockdispatch.a" \
  "/usr/lib/$multiarch/libsockdispatch-llhttp.a" \
  "/usr/lib/$multiarch/cmake/sockdispatch/sockdispatchConfig.cmake" \
  "/usr/lib/$multiarch/pkgconfig/sockdispatch.pc" /usr/share/doc/$dev_package/library.md.gz \
  /usr/share/doc/$dev_package/examples/hello.cc /usr/share/doc/$dev_package/copyright; do
  grep -qx "$path" "$work/files" || fail "$path is not in $dev_package"
  [[ -e "$path" ]] || fail "$path is not installed"
done
[[ ! -e /usr/include/sockdispatch/abi.h ]] || fail "the private map ABI header was installed"
getent passwd "$package" >/dev/null || fail "postinst did not create the user $package"
getent group "$package" >/dev/null || fail "postinst did not create the group $package"
/usr/sbin/sockdispatch version

step "systemd-analyze verify on the installed unit"
if command -v systemd-analyze >/dev/null; then
  verify=$(timeout 60 systemd-analyze verify sockdispatch@test.service 2>&1) ||
    fail "systemd-analyze verify: $verify"
  [[ -z "$verify" ]] || fail "systemd-analyze verify warns: $verify"
else
  echo "skipped: systemd-analyze is not installed"
fi

step "an enabled instance (offline: systemctl enable only writes its link)"
wants=/etc/systemd/system/multi-user.target.wants/sockdispatch@test.service
if command -v systemctl >/dev/null; then
  timeout 60 systemctl enable sockdispatch@test.service 2>&1
  [[ -L "$wants" ]] || fail "systemctl enable did not link $wants"
else
  echo "skipped: systemctl is not installed"
fi

step "the installed binary serves"
/usr/sbin/sockdispatch attach 0 --bind 127.0.0.1 --workers 2 >"$work/attach.out" \
  2>"$work/attach.err" &
attach_pid=$!
port=""
for _ in $(seq 200); do
  port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$work/attach.out")
  [[ -n "$port" ]] && break
  kill -0 "$attach_pid" 2>/dev/null || break
  sleep 0.1
done
[[ -n "$port" ]] || fail "attach did not start: $(cat "$work/attach.err")"
cat "$work/attach.out"
status=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/")
[[ "$status" == 200 ]] || fail "GET http://127.0.0.1:$port/ answered $status"
echo "GET http://127.0.0.1:$port/ -> $status"
kill -TERM "$attach_pid"
code=""
for _ in $(seq 300); do
  if ! kill -0 "$attach_pid" 2>/dev/null; then
    code=0
    wait "$attach_pid" || code=$?
    break
  fi
  sleep 0.1
done
attach_pid=""
[[ "$code" == 0 ]] || fail "attach did not stop cleanly on SIGTERM (exit ${code:-timeout})"

step "check-config on the installed example"
out=$(timeout 20 /usr/sbin/sockdispatch check-config \
  /usr/share/doc/sockdispatch/examples/example.toml) || fail "check-config refused the example"
echo "$out"
[[ "$out" == "/usr/share/doc/sockdispatch/examples/example.toml: OK "* ]] ||
  fail "unexpected check-config output: $out"

step "the installed library is found by pkg-config and CMake"
echo "pkg-config: sockdispatch $(pkg-config --modversion sockdispatch), $(pkg-config --libs sockdispatch)"
mkdir -p "$work/find"
cat >"$work/find/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.25)
project(find_sockdispatch LANGUAGES CXX)
find_package(sockdispatch 0.1 REQUIRED)
if(NOT TARGET sockdispatch::sockdispatch)
  message(FATAL_ERROR "find_package(sockdispatch) gave no target sockdispatch::sockdispatch")
endif()
message(STATUS "found sockdispatch ${sockdispatch_VERSION}: sockdispatch::sockdispatch")
CMAKE
timeout 120 cmake -S "$work/find" -B "$work/find/build" 2>&1 | grep 'found sockdispatch' ||
  fail "find_package(sockdispatch) failed on the installed package"

if [[ -n "$keep_debs" ]]; then
  mkdir -p "$keep_debs"
  cp "$deb" "$dev_deb" "$keep_debs/"
  echo "kept $(basename "$deb") and $(basename "$dev_deb") in $keep_debs"
fi

step "purge"
timeout 300 dpkg --purge "$package" "$dev_package" >/dev/null
rm -f "$marker"
installed && fail "$package is still installed"
installed "$dev_package" && fail "$dev_package is still installed"
left=()
while IFS= read -r path; do
  [[ -e "$path" || -L "$path" ]] || continue
  # A directory other packages share (/usr/sbin, /lib/systemd/system, ...) stays, as does the
  # root; so does /lib, a link to usr/lib on merged-/usr systems.
  [[ "$path" == "/." ]] && continue
  if [[ -d "$path" ]] && dpkg-query -S "$path" >/dev/null 2>&1; then
    continue
  fi
  [[ -L "$path" && -d "$path" && "$path" =~ ^/(lib|bin|sbin|lib64)$ ]] && continue
  left+=("$path")
done <"$work/files"
((${#left[@]} == 0)) || fail "left after purge: ${left[*]}"
echo "no file of the package remains ($(wc -l <"$work/files") entries checked)"
[[ ! -L "$wants" ]] || fail "purge left the instance's enablement link $wants"
# Kept on purge by design (docs/packaging.md).
getent passwd "$package" >/dev/null || fail "purge removed the system user (it must keep it)"

echo "test-deb: OK in $SECONDS s"
