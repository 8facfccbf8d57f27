#!/usr/bin/env bash
# Installs the dependencies, builds sockdispatch and runs the whole test suite: style checks,
# the suites (unit and integration: real BPF, real processes, real TCP on loopback), the
# suites again built with AddressSanitizer and UndefinedBehaviorSanitizer, a bounded fuzzing
# run of the request path, the examples/ built against the installed library and run, and the
# Debian package built, linted, installed, used and purged.
# Run as root on Debian 12 (the integration tests load BPF programs and mount bpffs).
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=$(nproc)
bash packaging/install-deps.sh

echo "== clang-format"
mapfile -t sources < <(git ls-files '*.cc' '*.h' '*.c' 2>/dev/null || find userspace tests bpf include -name '*.[ch]' -o -name '*.cc')
clang-format --dry-run --Werror "${sources[@]}"

echo "== build (Release, warnings as errors)"
# Release is what packagers and most people building from source pick: the suite runs on it.
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSOCKDISPATCH_WERROR=ON >/dev/null
cmake --build build -j "$jobs"

echo "== clang-tidy"
mapfile -t tidy_sources < <(ls userspace/*/*.cc)
printf '%s\n' "${tidy_sources[@]}" | xargs -P "$jobs" -n 4 clang-tidy -p build --quiet --extra-arg=-Wno-unknown-warning-option 2>&1 |
  { grep -E "(warning|error):" && exit 1 || true; }

echo "== tests"
(cd build && ctest --output-on-failure -j "$jobs" --timeout 300)

echo "== tests under AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build-sanitize -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSOCKDISPATCH_SANITIZE=ON \
  -DSOCKDISPATCH_WERROR=ON >/dev/null
cmake --build build-sanitize -j "$jobs"
(cd build-sanitize &&
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --output-on-failure -j "$jobs" --timeout 300)

echo "== fuzzing the request path (bounded)"
FUZZ_SECONDS="${FUZZ_SECONDS:-60}" bash packaging/fuzz.sh

echo "== examples built against the installed library, hello answering on loopback"
bash packaging/test-examples.sh build

echo "== Debian package"
bash packaging/test-deb.sh
