#!/usr/bin/env bash
# Makes the screenshots docs/operations.md shows, with the tests that check both views:
#   docs/screenshots/status-page.png  the status page in headless chromium under load
#                                     (StatusBrowser test)
#   docs/screenshots/top.txt, top.png `sockdispatch top` in a tmux pane under load (TopCli
#                                     test), the captured text drawn as an image
# Run as root after a build (packaging/build-and-test.sh, or cmake --build build).
# Usage: docs/screenshots.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
out=docs/screenshots
mkdir -p "$out"
SOCKDISPATCH_SCREENSHOT_DIR=$PWD/$out timeout 300 "$build/tests/integration_tests" \
  --gtest_filter='StatusBrowser.*:TopCli.TheLiveViewShowsEveryWorkerWithMovingRatesAndQExits'
/usr/bin/python3 - "$out/top.txt" "$out/top.png" <<'PY'
import sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

lines = open(sys.argv[1]).read().rstrip("\n").split("\n")
width = max(len(line) for line in lines)
figure = plt.figure(figsize=(width * 0.075, len(lines) * 0.16 + 0.2), dpi=110)
figure.patch.set_facecolor("#1d2330")
figure.text(0.01, 0.99, "\n".join(lines), family="DejaVu Sans Mono", fontsize=8.5,
            color="#e6e6e6", va="top", ha="left", linespacing=1.25)
figure.savefig(sys.argv[2], facecolor=figure.get_facecolor())
PY
echo "screenshots: $(ls "$out")"
