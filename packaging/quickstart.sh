#!/usr/bin/env bash
# Installs the dependencies, builds sockdispatch and runs `sockdispatch attach 8080` with the
# built-in page, in the foreground (Ctrl-C stops it). Run as root on Debian 12.
# Extra arguments go to attach, e.g. `packaging/quickstart.sh --workers 2 --root /var/www`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash packaging/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSOCKDISPATCH_TESTS=OFF >/dev/null
cmake --build build -j "$(nproc)" --target sockdispatch
echo "Serving http://localhost:8080/ (Ctrl-C to stop)"
exec ./build/sockdispatch attach 8080 "$@"
