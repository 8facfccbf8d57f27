#!/bin/sh
# Builds the libFuzzer targets with clang in their own build directory and runs each for a
# bounded time on its seed corpus. Exits non-zero when a target crashes, leaks or trips a
# sanitizer; the input that did it is kept in $BUILD/artifacts/.
#
#   packaging/fuzz.sh                 60 s per target
#   FUZZ_SECONDS=600 packaging/fuzz.sh
#   FUZZ_BUILD_DIR=DIR packaging/fuzz.sh  a tree already configured with SOCKDISPATCH_FUZZ=ON
#                                       (the CI's sanitizer tree) is built as it is
set -eu

SOURCE=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${FUZZ_BUILD_DIR:-$SOURCE/build-fuzz}
SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
CC=${FUZZ_CC:-clang}
CXX=${FUZZ_CXX:-clang++}

if ! grep -qs '^SOCKDISPATCH_FUZZ:BOOL=ON$' "$BUILD/CMakeCache.txt"; then
  cmake -S "$SOURCE" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" \
    -DSOCKDISPATCH_FUZZ=ON -DSOCKDISPATCH_TESTS=OFF -DSOCKDISPATCH_WERROR=OFF >/dev/null
fi
cmake --build "$BUILD" --target request_fuzz

mkdir -p "$BUILD/artifacts"
status=0
for target in request_fuzz; do
  seeds="$SOURCE/tests/fuzz/corpus"
  # New inputs go to a scratch corpus in the build tree; the seeds in the tree stay as they are.
  work="$BUILD/corpus/$target"
  mkdir -p "$work"
  echo "fuzz.sh: running $target for ${SECONDS_PER_TARGET}s on $seeds"
  if ! "$BUILD/tests/fuzz/$target" "$work" "$seeds" \
      -max_total_time="$SECONDS_PER_TARGET" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$BUILD/artifacts/$target-" -print_final_stats=1; then
    echo "fuzz.sh: $target failed; reproducer in $BUILD/artifacts/" >&2
    status=1
  fi
done
exit $status
