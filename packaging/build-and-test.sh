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
# Each step says how long it took, so a slow one shows in the log.
step_started=$SECONDS
step_name=""
step() {
  if [[ -n "$step_name" ]]; then
    echo "== $step_name: $((SECONDS - step_started)) s"
  fi
  step_name=$1
  step_started=$SECONDS
  echo "== $1"
}
trap 'if [[ $? -eq 0 && -n "$step_name" ]]; then echo "== $step_name: $((SECONDS - step_started)) s; all steps: $SECONDS s"; fi' EXIT

step "dependencies"
bash packaging/install-deps.sh

step "clang-format"
mapfile -t sources < <(git ls-files '*.cc' '*.h' '*.c' 2>/dev/null || find userspace tests bpf include -name '*.[ch]' -o -name '*.cc')
clang-format --dry-run --Werror "${sources[@]}"

step "build (Release, warnings as errors)"
# Release is what packagers and most people building from source pick: the suite runs on it.
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSOCKDISPATCH_WERROR=ON >/dev/null
cmake --build build -j "$jobs"

step "clang-tidy"
# One file per run, so the longest files do not end up in one batch at the end; the database
# names each file of a target built as one unit (packaging/tidy-database.py).
python3 packaging/tidy-database.py build build/tidy
mapfile -t tidy_sources < <(ls userspace/*/*.cc)
printf '%s\n' "${tidy_sources[@]}" | xargs -P "$jobs" -n 1 clang-tidy -p build/tidy --quiet --extra-arg=-Wno-unknown-warning-option 2>&1 |
  { grep -E "(warning|error):" && exit 1 || true; }

step "tests"
(cd build && ctest --output-on-failure -j "$jobs" --timeout 300)

step "tests under AddressSanitizer + UndefinedBehaviorSanitizer"
# One clang tree serves both the sanitizer run and the fuzzer (the library is instrumented
# for libFuzzer's coverage as well), so the sources are compiled once for both. -O1 keeps
# the stacks readable and the suite faster than at -O0. Warnings are errors in the Release
# build above (GCC, the compiler packagers use); clang's own extra ones (-Wsign-compare
# inside the kernel's NLMSG_OK macro) do not fail this one.
CC=clang CXX=clang++ cmake -S . -B build-sanitize -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_FLAGS_DEBUG="-g -O1" -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" \
  -DSOCKDISPATCH_SANITIZE=ON -DSOCKDISPATCH_FUZZ=ON -DSOCKDISPATCH_WERROR=OFF >/dev/null
cmake --build build-sanitize -j "$jobs"
# The tests whose subject is another program's view of ours (a browser, a terminal, HAProxy
# in front) run once, above: under the sanitizers they would exercise the same code paths
# as the rest, slower. So does the chaos soak (a minute of faults each, serially), whose paths
# the lifecycle, takeover and line tests cover one at a time.
(cd build-sanitize &&
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --output-on-failure -j "$jobs" --timeout 300 -E '^(StatusBrowser|TopCli|FleetTest)\.|^chaos_')

step "fuzzing the request path (bounded)"
FUZZ_BUILD_DIR=$PWD/build-sanitize FUZZ_SECONDS="${FUZZ_SECONDS:-60}" bash packaging/fuzz.sh

step "examples built against the installed library, hello answering on loopback"
bash packaging/test-examples.sh build

step "Debian package"
bash packaging/test-deb.sh
