#!/usr/bin/env bash
# Proves sockdispatch where its users run it: Debian 12's own kernel (6.1) and systemd as PID 1,
# in a virtual machine. Not part of CI (it takes minutes under emulation); run it by hand:
#
#   bash packaging/test-kernel.sh [--prepare] [--build DIR] [--debs DIR]
#
#   1. the guest's root: Debian 12 (debootstrap, then apt-get from the same mirror) with
#      linux-image-amd64, systemd, the package's run-time dependencies and the -dev package's
#      build dependencies, so the guest needs no network. Made once and cached, as an ext4 image
#      with its kernel and initrd, under $SOCKDISPATCH_VM_CACHE
#      (default /var/cache/sockdispatch-test-kernel); a new key (the package list or the guest's
#      set-up below changed) makes a new one. --prepare stops here.
#   2. the payload: the two Debian packages (built here with packaging/build-deb.sh, or taken
#      from --debs DIR), the integration tests of the build tree (--build, default build; the
#      needed targets are built first), examples/ and the in-guest script
#      (packaging/test-kernel-guest.sh), on a second disk image.
#   3. qemu boots the guest's kernel (TCG: software emulation, which boots everywhere; set
#      SOCKDISPATCH_VM_ACCEL=kvm to use KVM where it works), systemd runs the in-guest script
#      from a oneshot unit that writes to the serial console and powers off; the host reads
#      the serial log, prints the guest's lines and checks its verdict.
#
# Run as root on Debian 12 with packaging/install-deps.sh --vm. Every step is bounded by a
# timeout (the guest by 25 minutes); mounts, the guest and temporary files are cleaned up
# however the script ends. The guest's output of the last run is written to
# docs/test-kernel.log.
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$PWD

build=build
debs=""
prepare_only=0
while (($# > 0)); do
  case "$1" in
    --prepare) prepare_only=1 ;;
    --build)
      build=${2:?--build needs a directory}
      shift
      ;;
    --debs)
      debs=${2:?--debs needs a directory}
      shift
      ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "test-kernel: unknown option $1 (see --help)" >&2
      exit 2
      ;;
  esac
  shift
done

cache=${SOCKDISPATCH_VM_CACHE:-/var/cache/sockdispatch-test-kernel}
accel=${SOCKDISPATCH_VM_ACCEL:-tcg}
guest_timeout=1500 # seconds: the whole guest run, boot to power-off
suite=bookworm

say() { echo "test-kernel: $*"; }
fail() {
  echo "test-kernel: FAIL: $*" >&2
  exit 1
}

# Packages of the guest, beyond debootstrap's minimal base. The run-time libraries of the
# package and of the test binaries, the build dependencies of libsockdispatch-dev (the examples
# are built in the guest) and the tools the tests and the in-guest script call.
guest_packages=(
  linux-image-amd64 initramfs-tools systemd systemd-sysv udev dbus kmod
  adduser curl procps iproute2 util-linux python3 bpftool
  libbpf1 libelf1 zlib1g libevent-2.1-7 libevent-core-2.1-7 libevent-extra-2.1-7
  libevent-pthreads-2.1-7 libspdlog1.10 libfmt9 libtomlplusplus3 libsystemd0 libncursesw6
  g++ cmake ninja-build pkg-config
  libbpf-dev libelf-dev zlib1g-dev libevent-dev libspdlog-dev libfmt-dev libtomlplusplus-dev
  libsystemd-dev
)

# The unit that runs the payload's script once the guest is up, then powers the guest off
# whatever the script's result (the script itself powers off at once when it ends; this is
# for a script that never got to). It is part of the cached root (its text is in the cache
# key).
read -r -d '' test_unit <<'EOF' || true
[Unit]
Description=sockdispatch kernel test (the payload disk's script)
After=multi-user.target
RequiresMountsFor=/payload
ConditionPathExists=/payload/test-kernel-guest.sh
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
ExecStart=/bin/bash /payload/test-kernel-guest.sh
StandardOutput=tty
StandardError=inherit
TTYPath=/dev/ttyS0
TTYVHangup=no
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
EOF

read -r -d '' fstab <<'EOF' || true
/dev/vda  /         ext4  rw,errors=remount-ro  0  1
/dev/vdb  /payload  ext4  rw,nofail             0  2
EOF

key=$(printf '%s\n' "$suite" "${guest_packages[@]}" "$test_unit" "$fstab" "v1" |
  sha256sum | cut -c1-12)
image_dir="$cache/$key"

work=""
chroot_dir=""
qemu_pid=""
cleanup() {
  local code=$?
  if [[ -n "$qemu_pid" ]] && kill -0 "$qemu_pid" 2>/dev/null; then
    kill -TERM "$qemu_pid" 2>/dev/null || true
    timeout 10 tail --pid="$qemu_pid" -f /dev/null 2>/dev/null || kill -KILL "$qemu_pid" || true
  fi
  if [[ -n "$chroot_dir" ]]; then
    if mountpoint -q "$chroot_dir/proc"; then
      umount "$chroot_dir/proc" || umount -l "$chroot_dir/proc" || true
    fi
    # Never into a mount left behind.
    rm -rf --one-file-system "$chroot_dir" || true
  fi
  [[ -n "$work" ]] && rm -rf "$work"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need() {
  local tool=$1 package=$2
  command -v "$tool" >/dev/null ||
    fail "$tool not found: install $package (bash packaging/install-deps.sh --vm)"
}

[[ $(id -u) -eq 0 ]] || fail "run as root (debootstrap, chroot and the guest's image need it)"
need qemu-system-x86_64 qemu-system-x86
need debootstrap debootstrap
need mkfs.ext4 e2fsprogs

# The Debian mirror this machine's apt uses (deb822 .sources or one-line .list files).
mirror_for() { # $1: debian or debian-security
  local name=$1 file
  for file in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
    /etc/apt/sources.list; do
    if [[ -f "$file" ]]; then cat "$file"; fi
  done | { grep -oE "https?://[^ ]+/$name/?( |$)" || true; } | head -n 1 | tr -d ' ' |
    sed 's#/$##'
}

prepare_root() {
  local mirror security started=$SECONDS
  mirror=$(mirror_for debian)
  security=$(mirror_for debian-security)
  [[ -n "$mirror" ]] || fail "no Debian mirror found in /etc/apt/sources.list{,.d}"
  mkdir -p "$cache"
  chroot_dir=$(mktemp -d "$cache/root.XXXXXX")
  say "building the guest's root (Debian $suite from $mirror) in $chroot_dir"
  if ! timeout 1200 debootstrap --variant=minbase "$suite" "$chroot_dir" "$mirror" \
    >"$cache/debootstrap.log" 2>&1; then
    tail -n 20 "$cache/debootstrap.log" >&2
    fail "debootstrap failed (log: $cache/debootstrap.log)"
  fi
  {
    echo "deb $mirror $suite main"
    echo "deb $mirror $suite-updates main"
    [[ -n "$security" ]] && echo "deb $security $suite-security main"
  } >"$chroot_dir/etc/apt/sources.list"
  printf '#!/bin/sh\nexit 101\n' >"$chroot_dir/usr/sbin/policy-rc.d"
  chmod 755 "$chroot_dir/usr/sbin/policy-rc.d"
  mount -t proc proc "$chroot_dir/proc"
  say "installing ${#guest_packages[@]} packages in the guest's root (and their dependencies)"
  if ! timeout 1800 chroot "$chroot_dir" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
    sh -c "apt-get update -qq && apt-get -y -qq dist-upgrade &&
           apt-get install -y -qq --no-install-recommends $(printf '%s ' "${guest_packages[@]}") &&
           apt-get clean" >"$cache/apt.log" 2>&1; then
    tail -n 20 "$cache/apt.log" >&2
    fail "installing the guest's packages failed (log: $cache/apt.log)"
  fi
  umount "$chroot_dir/proc"
  rm -f "$chroot_dir/usr/sbin/policy-rc.d"
  rm -rf "$chroot_dir"/var/lib/apt/lists/*

  echo "$fstab" >"$chroot_dir/etc/fstab"
  mkdir -p "$chroot_dir/payload"
  echo sockdispatch-vm >"$chroot_dir/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 sockdispatch-vm\n::1 localhost\n' \
    >"$chroot_dir/etc/hosts"
  echo "$test_unit" >"$chroot_dir/etc/systemd/system/sockdispatch-test-kernel.service"
  ln -sf /etc/systemd/system/sockdispatch-test-kernel.service \
    "$chroot_dir/etc/systemd/system/multi-user.target.wants/sockdispatch-test-kernel.service"
  # Nothing else on the serial console, nothing that waits for a network.
  for unit in serial-getty@ttyS0.service getty@tty1.service apt-daily.timer \
    apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer systemd-networkd-wait-online.service; do
    ln -sf /dev/null "$chroot_dir/etc/systemd/system/$unit"
  done

  local kernel initrd
  kernel=$(find "$chroot_dir/boot" -name 'vmlinuz-*' | sort -V | tail -n 1)
  initrd=$(find "$chroot_dir/boot" -name 'initrd.img-*' | sort -V | tail -n 1)
  [[ -f "$kernel" && -f "$initrd" ]] || fail "the guest's root has no kernel or initrd in /boot"
  local tmp_image="$cache/$key.tmp"
  rm -rf "$tmp_image"
  mkdir -p "$tmp_image"
  cp "$kernel" "$tmp_image/vmlinuz"
  cp "$initrd" "$tmp_image/initrd.img"
  basename "$kernel" | sed 's/^vmlinuz-//' >"$tmp_image/kernel-release"
  # Room for the packages, the examples' build and the tests' files beside the root's ~1.5 GB.
  timeout 600 mkfs.ext4 -q -L sockdispatch-vm -d "$chroot_dir" "$tmp_image/root.img" 6G >/dev/null ||
    fail "mkfs.ext4 -d could not make the guest's disk image"
  rm -rf "$chroot_dir"
  chroot_dir=""
  mv "$tmp_image" "$image_dir"
  say "guest image ready in $((SECONDS - started)) s: $image_dir" \
    "(kernel $(cat "$image_dir/kernel-release"))"
}

mkdir -p "$cache"
exec 9>"$cache/lock"
timeout 3600 flock 9 || fail "another test-kernel holds $cache/lock"
if [[ -f "$image_dir/root.img" ]]; then
  say "reusing the cached guest image $image_dir (kernel $(cat "$image_dir/kernel-release"))"
else
  prepare_root
fi
((prepare_only == 0)) || exit 0

# The eBPF-path integration tests run in the guest: dispatch, the policies against their
# model, migration of a killed worker's queue, new generations (reload, restart) under load,
# graceful stop, readiness, status with the kernel's features, a killed master taken over.
filter="Modes/Dispatch.*/ebpf:Policy.*:EveryPolicy/KernelModel.*:Crash.*"
filter+=":Signals/NewGeneration.*_ebpf:Modes/InMode.GracefulStop*/ebpf"
filter+=":Modes/InMode.KilledWorker*/ebpf:ReloadCli.*:Notify.*:StatusCli.*"
filter+=":Modes/TakeoverInMode.*/ebpf:Takeover.*"

build=$(realpath -m "$build")
say "building the tests in $build (cmake --build -j 2)"
[[ -f "$build/CMakeCache.txt" ]] || fail "$build is not a configured build tree" \
  "(cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release)"
timeout 3600 cmake --build "$build" -j 2 --target sockdispatch integration_tests >/dev/null ||
  fail "cmake --build $build failed"
for binary in sockdispatch tests/integration_tests tests/library_test_server; do
  [[ -x "$build/$binary" ]] || fail "$build/$binary was not built"
done

work=$(mktemp -d /var/tmp/sockdispatch-test-kernel.XXXXXX)
if [[ -z "$debs" ]]; then
  say "building the Debian packages (packaging/build-deb.sh)"
  timeout 3600 bash packaging/build-deb.sh "$work/debs" >/dev/null ||
    fail "packaging/build-deb.sh failed"
  debs="$work/debs"
fi
for package in sockdispatch libsockdispatch-dev; do
  compgen -G "$debs/${package}_*.deb" >/dev/null || fail "no ${package}_*.deb in $debs"
done

say "assembling the payload disk"
payload="$work/payload"
mkdir -p "$payload/debs" "$payload/build/tests" "$payload/source"
cp "$debs"/sockdispatch_*.deb "$debs"/libsockdispatch-dev_*.deb "$payload/debs/"
cp "$build/sockdispatch" "$payload/build/"
cp "$build/tests/integration_tests" "$build/tests/library_test_server" "$payload/build/tests/"
git ls-files -z --cached --others --exclude-standard |
  tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$payload/source"
cp packaging/test-kernel-guest.sh "$payload/"
printf 'BUILD_DIR=%q\nSOURCE_DIR=%q\n' "$build" "$checkout" >"$payload/paths.env"
echo "$filter" >"$payload/filter"
size_mb=$(($(du -sm "$payload" | cut -f1) + 256))
timeout 300 mkfs.ext4 -q -L payload -d "$payload" "$work/payload.img" "${size_mb}M" >/dev/null ||
  fail "mkfs.ext4 could not make the payload image"

accel_args=(-accel "tcg,thread=multi" -cpu max)
if [[ "$accel" == kvm ]]; then
  [[ -w /dev/kvm ]] || fail "SOCKDISPATCH_VM_ACCEL=kvm but /dev/kvm is not usable here"
  accel_args=(-accel kvm -cpu host)
fi
serial="$work/serial.log"
say "booting Debian's kernel $(cat "$image_dir/kernel-release") under qemu ($accel, 2 CPUs," \
  "2 GiB; the guest is bounded by ${guest_timeout} s)"
started=$SECONDS
# -snapshot: the cached image is never written; the guest's changes vanish with it.
timeout "$guest_timeout" qemu-system-x86_64 "${accel_args[@]}" -machine q35 -smp 2 -m 2048 \
  -nodefaults -display none -no-reboot -serial "file:$serial" -snapshot \
  -kernel "$image_dir/vmlinuz" -initrd "$image_dir/initrd.img" \
  -append "root=/dev/vda rw console=ttyS0 quiet panic=-1 systemd.show_status=false" \
  -drive "file=$image_dir/root.img,format=raw,if=virtio" \
  -drive "file=$work/payload.img,format=raw,if=virtio" &
qemu_pid=$!
# Follow the guest's lines as they come.
timeout "$((guest_timeout + 10))" tail -n +1 -F --pid="$qemu_pid" "$serial" 2>/dev/null |
  { grep --line-buffered -a '^test-kernel-guest: ' || true; } | sed -u 's/^test-kernel-guest: /  guest: /' &
follower=$!
qemu_code=0
wait "$qemu_pid" || qemu_code=$?
qemu_pid=""
wait "$follower" || true
elapsed=$((SECONDS - started))
((qemu_code != 124)) || fail "the guest did not power off within ${guest_timeout} s (serial log: the" \
  "last lines follow)$(echo; tail -n 30 "$serial" | tr -d '\r')"
((qemu_code == 0)) || fail "qemu exited with $qemu_code"

record=docs/test-kernel.log
{
  echo "# packaging/test-kernel.sh, $(date -u '+%Y-%m-%d %H:%M UTC'): Debian 12 guest, kernel" \
    "$(cat "$image_dir/kernel-release"), qemu $accel, 2 CPUs; boot to power-off ${elapsed} s"
  tr -d '\r' <"$serial" | grep -a '^test-kernel-guest: ' | sed 's/^test-kernel-guest: //'
} >"$record"
grep -q '^RESULT OK$' "$record" ||
  fail "the guest's run failed (its lines are above and in $record; the serial log's end:)$(
    echo
    tr -d '\r' <"$serial" | tail -n 40
  )"
say "OK: the guest ran everything in ${elapsed} s; its lines are recorded in $record" \
  "(total $SECONDS s)"
