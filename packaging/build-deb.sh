#!/usr/bin/env bash
# Builds the Debian packages (sockdispatch, libsockdispatch-dev and the -dbgsym) from this
# checkout into OUTDIR: dpkg-buildpackage -us -uc -b on a copy of the tracked (and new, not
# ignored) files with packaging/debian as debian/, in OUTDIR/src, so the checkout gains no
# build products. The .deb, .buildinfo and .changes files land in OUTDIR; the build's log is
# OUTDIR/build.log. Used by packaging/test-deb.sh and packaging/test-kernel.sh.
# Usage: packaging/build-deb.sh OUTDIR
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:?usage: packaging/build-deb.sh OUTDIR}
mkdir -p "$out"
out=$(realpath "$out")
src="$out/src/sockdispatch"

fail() {
  echo "build-deb: FAIL: $*" >&2
  exit 1
}
cleanup() {
  local code=$?
  rm -rf "$out/src"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$out/src"
mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard |
  tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$src"
rm -rf "$src/debian"
cp -r packaging/debian "$src/debian"
started=$SECONDS
if ! (cd "$src" && DEB_BUILD_OPTIONS="parallel=$(nproc)" timeout 1800 \
  dpkg-buildpackage -us -uc -b) >"$out/build.log" 2>&1; then
  tail -n 25 "$out/build.log" >&2
  fail "dpkg-buildpackage failed (log above, whole in $out/build.log)"
fi
# dpkg-buildpackage writes beside the source directory.
mv "$out/src"/*.deb "$out/src"/*.buildinfo "$out/src"/*.changes "$out/"
echo "build-deb: built in $((SECONDS - started)) s:"
ls "$out"/*.deb
