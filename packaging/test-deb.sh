#!/usr/bin/env bash
# Builds the Debian package from this checkout and tests it the way an operator meets it:
#   1. dpkg-buildpackage -us -uc -b on a copy of the sources (packaging/debian copied to debian/),
#      in a temporary directory, so the checkout gains no build products;
#   2. lintian on the result: any error fails, warnings are printed (each is justified in
#      docs/packaging.md);
#   3. dpkg -i; the installed unit passes systemd-analyze verify (man page included); the
#      installed /usr/sbin/sockdispatch serves a 200 on 127.0.0.1 with two workers and stops
#      cleanly on SIGTERM; check-config accepts the installed example;
#   4. dpkg --purge; no file of the package's list (dpkg -L before the purge) remains.
# Run as root on Debian 12. Every step is bounded by a timeout; the package is purged and the
# temporary directory removed however the script ends. Usage: packaging/test-deb.sh
set -euo pipefail
cd "$(dirname "$0")/.."

package=sockdispatch
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
installed() { dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; }

cleanup() {
  local code=$?
  if [[ -n "$attach_pid" ]] && kill -0 "$attach_pid" 2>/dev/null; then
    kill -KILL "$attach_pid" 2>/dev/null || true
    wait "$attach_pid" 2>/dev/null || true
  fi
  if [[ -e "$marker" ]]; then
    dpkg --purge "$package" >/dev/null 2>&1 || true
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
if installed; then
  if [[ -e "$marker" ]]; then
    step "purging the package a previous run left installed"
    dpkg --purge "$package" >/dev/null
    rm -f "$marker"
  else
    fail "$package is installed already; purge it first (dpkg --purge $package)"
  fi
fi

step "build (dpkg-buildpackage -us -uc -b in $work)"
src="$work/$package"
mkdir -p "$src"
# The tracked files plus new ones not yet committed, without ignored build products.
git ls-files -z --cached --others --exclude-standard |
  tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$src"
rm -rf "$src/debian"
cp -r packaging/debian "$src/debian"
started=$SECONDS
if ! (cd "$src" && DEB_BUILD_OPTIONS="parallel=$(nproc)" timeout 1800 \
  dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
  tail -n 25 "$work/build.log" >&2
  fail "dpkg-buildpackage failed (log above)"
fi
echo "built in $((SECONDS - started)) s:"
ls "$work"/*.deb
deb=$(ls "$work"/${package}_*.deb)
changes=$(ls "$work"/${package}_*.changes)
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
# ${shlibs:Depends} was computed: the libraries the binary links are there.
for library in libbpf libevent libspdlog libtomlplusplus libsystemd0 libc6; do
  [[ "$depends" == *"$library"* ]] || fail "Depends lacks $library"
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
timeout 300 dpkg -i "$deb" >/dev/null
installed || fail "dpkg -i did not install $package"
dpkg -L "$package" >"$work/files"
for path in /usr/sbin/sockdispatch /lib/systemd/system/sockdispatch@.service \
  /usr/share/man/man8/sockdispatch.8.gz /usr/share/doc/sockdispatch/examples/example.toml \
  /etc/sockdispatch; do
  grep -qx "$path" "$work/files" || fail "$path is not in the package"
  [[ -e "$path" ]] || fail "$path is not installed"
done
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

step "purge"
timeout 300 dpkg --purge "$package" >/dev/null
rm -f "$marker"
installed && fail "$package is still installed"
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
