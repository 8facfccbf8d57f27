#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of sockdispatch from Debian packages.
# Usage: packaging/install-deps.sh [--bench] [--vm]
#   --bench  the load generator and plotting of bench/
#   --vm     qemu, debootstrap and e2fsprogs for packaging/test-kernel.sh (Debian 12's own kernel
#            and systemd in a virtual machine; not part of CI)
# Safe to run again; needs root (or sudo).
set -euo pipefail

build_deps=(
  build-essential cmake ninja-build pkg-config git
  clang llvm bpftool libbpf-dev linux-libc-dev libelf-dev zlib1g-dev
  libevent-dev libspdlog-dev libfmt-dev libcli11-dev libtomlplusplus-dev libsystemd-dev
  libseccomp-dev
  libncurses-dev
  nlohmann-json3-dev
  node-llhttp
  libgtest-dev libgmock-dev
  clang-format clang-tidy libclang-rt-14-dev
  iproute2 util-linux procps curl python3
  # the terminal the tests run `sockdispatch top` in; the browser that loads the status page
  # (driven over its DevTools protocol), and Prometheus' parser that reads /metrics
  tmux chromium-headless-shell python3-websockets python3-prometheus-client
  # unmodified programs run as workers by the tests (attach PORT -- COMMAND)
  gunicorn python3-uvicorn
  # a running service whose reuseport group the tests adopt (sockdispatch adopt PORT)
  nginx-light
  # the tier in front of several hosts in the fleet tests (agent-check)
  haproxy
  # the Debian package and its test (packaging/test-deb.sh), systemd-analyze for the unit
  dpkg-dev debhelper lintian adduser systemd man-db
)
bench_deps=(wrk python3-matplotlib)
vm_deps=(qemu-system-x86 debootstrap e2fsprogs)

want=("${build_deps[@]}")
for arg in "$@"; do
  case "$arg" in
    --bench) want+=("${bench_deps[@]}") ;;
    --vm) want+=("${vm_deps[@]}") ;;
    *)
      echo "install-deps: unknown option $arg (expected --bench or --vm)" >&2
      exit 2
      ;;
  esac
done

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  sudo_cmd=(sudo)
fi

missing=()
for pkg in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} > 0)); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "install-deps: all packages present"
fi
