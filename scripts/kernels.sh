#!/usr/bin/env bash
# Debian kernels for the kernel matrix (scripts/kernel-matrix.sh), booted under QEMU.
#
#   scripts/kernels.sh fetch [NAME...] download and unpack the kernels in KERNELS below
#                                      (default: all of them)
#   scripts/kernels.sh boot NAME CMD   boot kernel NAME with this machine's root shared
#                                      read-only over 9p (plus a tmpfs overlay) and run CMD
#                                      (a shell command line) inside; exits with CMD's status
#
# An arm64 kernel (NAME ending in -arm64) boots under qemu-system-aarch64 (the `virt` board)
# and cannot use this machine's amd64 root: its root is a minimal Debian arm64 userland
# (libc, dash, iproute2, kmod, busybox; about 45 MB, made once by `fetch` with mmdebstrap from
# Debian's mirror, unpacked only, no package scripts run), and this checkout is shared in
# beside it at the same path, for the arm64 binaries built into target/.
#
# Side effects: `fetch` keeps a private apt state (its own sources list, lists and archive
# cache) and the unpacked kernels under $HOTSPOTD_KERNEL_CACHE (default <checkout>/.cache/kernels,
# gitignored). Nothing is installed: the host's /boot, /lib/modules and apt state are untouched.
# Each kernel keeps only vmlinuz, the modules a test can load (net, 9p, overlay, virtio) and a
# small initramfs that mounts the shared root; about 60 MB a kernel.
set -euo pipefail
# depmod and modprobe live in sbin, which a non-login root shell may not have on PATH.
export PATH="$PATH:/usr/sbin:/sbin"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${HOTSPOTD_KERNEL_CACHE:-$ROOT/.cache/kernels}

# name  suite  architecture: the newest linux-image-ARCH of that suite is resolved to its
# versioned image package at fetch time, so security updates are followed.
#   5.10        bullseye           older than hotspotd's minimum: the refusal is tested there
#   6.1         bookworm           Debian 12's kernel (no TCX: clsact)
#   6.12        bookworm-backports Debian 12's backports kernel, Debian 13's kernel (TCX)
#   6.12-arm64  bookworm-backports the same on arm64 boards (Raspberry Pi OS and Armbian run 6.12 too)
KERNELS=(
  "5.10 bullseye-security amd64"
  "6.1 bookworm-security amd64"
  "6.12 bookworm-backports amd64"
  "6.12-arm64 bookworm-backports arm64"
)
# The arm64 guests' root: what the init, the guest script and the tests run, unpacked from
# Debian 12's arm64 packages. dash is the shell (busybox's sh would run its own ip, tc and
# modprobe before iproute2's and kmod's); busybox gives the small tools (awk, grep, sed, ...).
ARM64_USERLAND=(libc6 libgcc-s1 dash iproute2 kmod busybox-static)
# Modules the initramfs loads to reach the shared root (dependencies are resolved).
BOOT_MODULES=(virtio_pci 9pnet_virtio 9p overlay)
# What the guest may load later (tc qdiscs and classifiers, veth, ifb, ...): these trees.
KEEP_MODULE_DIRS=(kernel/net kernel/fs/9p kernel/fs/netfs kernel/fs/overlayfs kernel/fs/fscache
  kernel/drivers/net kernel/drivers/virtio kernel/lib kernel/crypto kernel/arch)
# ...less the hardware drivers in them (two thirds of their size).
PRUNE_MODULE_DIRS=(kernel/drivers/net/wireless kernel/drivers/net/ethernet kernel/drivers/net/can
  kernel/drivers/net/usb kernel/drivers/net/wwan kernel/drivers/net/ieee802154 kernel/drivers/net/hamradio
  kernel/net/wireless kernel/net/mac80211 kernel/net/bluetooth)

say() { printf 'kernels: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

apt_private() {
  local cmd=$1; shift
  "$cmd" -o Dir::State="$CACHE/apt/state" -o Dir::Cache="$CACHE/apt/cache" \
    -o Dir::Etc::SourceList="$CACHE/apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent \
    -o Dir::State::status=/var/lib/dpkg/status -o APT::Sandbox::User=root \
    -o APT::Architectures::=amd64 -o APT::Architectures::=arm64 "$@"
}

# The versioned image package the suite's linux-image-ARCH points to.
image_package() {
  local suite=$1 arch=$2 version
  version=$(apt_private apt-cache madison "linux-image-$arch" \
    | awk -v s="$suite/main $arch " '$0 ~ s { print $3; exit }')
  [ -n "$version" ] || die "no linux-image-$arch in $suite: is deb.debian.org reachable?"
  apt_private apt-cache depends "linux-image-$arch:$arch=$version" \
    | awk '/Depends: linux-image-/ { sub(/:.*/, "", $2); print $2; exit }'
}

# The arm64 guests' root, made once: Debian 12's arm64 packages unpacked (mmdebstrap's extract
# variant resolves their dependencies and runs no package scripts, so no arm64 emulation here).
arm64_userland() {
  local dir="$CACHE/userland-arm64"
  [ -f "$dir/.hotspotd-userland" ] && [ "$(cat "$dir/.hotspotd-userland")" = "${ARM64_USERLAND[*]}" ] && return
  command -v mmdebstrap >/dev/null || die "mmdebstrap not found: run scripts/bootstrap.sh"
  say "making the arm64 userland (${ARM64_USERLAND[*]})"
  rm -rf "$dir"
  local include
  include=$(IFS=,; echo "${ARM64_USERLAND[*]}")
  mmdebstrap --quiet --variant=extract --architectures=arm64 --include="$include" \
    bookworm "$dir" http://deb.debian.org/debian >/dev/null \
    || die "mmdebstrap of the arm64 userland failed"
  # Mount points the init needs; /bin/sh, which dash's package scripts would link.
  mkdir -p "$dir/proc" "$dir/sys" "$dir/dev" "$dir/run" "$dir/tmp" "$dir/root"
  ln -sfn dash "$dir/bin/sh"
  # The init adds busybox's links for the tools the root lacks when it sees this file.
  echo "${ARM64_USERLAND[*]}" >"$dir/.hotspotd-userland"
}

fetch() {
  local wanted=("$@")
  mkdir -p "$CACHE/apt/state/lists/partial" "$CACHE/apt/cache/archives/partial" "$CACHE/debs"
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  cat >"$CACHE/apt/sources.list" <<EOF
deb [signed-by=$keyring] http://deb.debian.org/debian bookworm main
deb [signed-by=$keyring] http://deb.debian.org/debian-security bookworm-security main
deb [signed-by=$keyring] http://deb.debian.org/debian bookworm-backports main
deb [signed-by=$keyring] http://deb.debian.org/debian bullseye main
deb [signed-by=$keyring] http://deb.debian.org/debian-security bullseye-security main
EOF
  # The lists are refreshed once a day at most: a kernel once unpacked stays until a newer
  # one is out. A cache from before the arm64 kernel has no arm64 lists: refreshed too.
  if [ -z "$(find "$CACHE/apt/state/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null)" ] \
    || [ -z "$(find "$CACHE/apt/state/lists" -maxdepth 1 -name '*binary-arm64_Packages*' 2>/dev/null)" ]; then
    apt_private apt-get update -qq >/dev/null || die "apt-get update of the kernel suites failed"
  fi
  local entry name suite arch pkg release
  for entry in "${KERNELS[@]}"; do
    read -r name suite arch <<<"$entry"
    [ ${#wanted[@]} -eq 0 ] || [[ " ${wanted[*]} " == *" $name "* ]] || continue
    [ "$arch" = arm64 ] && arm64_userland
    pkg=$(image_package "$suite" "$arch")
    release=${pkg#linux-image-}
    if [ -f "$CACHE/$name/release" ] && [ "$(cat "$CACHE/$name/release")" = "$release" ]; then
      # Unpacked already; the initramfs is rebuilt when its init changed.
      [ "$ROOT/scripts/kernel-init.sh" -nt "$CACHE/$name/initrd.gz" ] && initramfs "$CACHE/$name" "$release" "$arch"
      continue
    fi
    say "fetching $pkg ($suite, $arch)"
    rm -rf "$CACHE/$name" "$CACHE/debs"/*
    (cd "$CACHE/debs" && apt_private apt-get download -qq "$pkg:$arch" >/dev/null) \
      || die "apt-get download $pkg:$arch failed"
    unpack "$name" "$release" "$arch" "$CACHE/debs/${pkg}"_*.deb
    rm -f "$CACHE/debs"/*
  done
}

unpack() {
  local name=$1 release=$2 arch=$3 deb=$4 dir="$CACHE/$1" x
  x=$(mktemp -d "$CACHE/unpack.XXXXXX")
  dpkg-deb -x "$deb" "$x"
  mkdir -p "$dir/root/lib/modules/$release/kernel"
  cp "$x/boot/vmlinuz-$release" "$dir/vmlinuz"
  cp "$x/boot/config-$release" "$dir/config"
  local src="$x/lib/modules/$release" d
  [ -d "$src" ] || src="$x/usr/lib/modules/$release"
  for d in "${KEEP_MODULE_DIRS[@]}"; do
    [ -d "$src/$d" ] || continue
    mkdir -p "$dir/root/lib/modules/$release/$(dirname "$d")"
    cp -a "$src/$d" "$dir/root/lib/modules/$release/$(dirname "$d")/"
  done
  for d in "${PRUNE_MODULE_DIRS[@]}"; do rm -rf "${dir:?}/root/lib/modules/$release/$d"; done
  cp "$src"/modules.builtin* "$src"/modules.order "$dir/root/lib/modules/$release/" 2>/dev/null || true
  rm -rf "$x"
  depmod -b "$dir/root" "$release"
  initramfs "$dir" "$release" "$arch"
  echo "$arch" >"$dir/arch"
  echo "$release" >"$dir/release"
}

# A busybox initramfs: loads the modules that reach the shared root, mounts it read-only with a
# tmpfs overlay and the kernel's modules on top, and hands over to the guest command.
initramfs() {
  local dir=$1 release=$2 arch=$3 x m line busybox
  if [ "$arch" = arm64 ]; then
    # The kernel's own architecture's busybox, from the arm64 userland (busybox-static).
    busybox="$CACHE/userland-arm64/bin/busybox"
    [ -x "$busybox" ] || die "no arm64 busybox in $CACHE/userland-arm64: run scripts/kernels.sh fetch"
  else
    command -v busybox >/dev/null && busybox --list | grep -qx switch_root \
      || die "busybox (busybox-static) not found: run scripts/bootstrap.sh"
    busybox=$(command -v busybox)
  fi
  x=$(mktemp -d "$CACHE/initramfs.XXXXXX")
  mkdir -p "$x/bin" "$x/modules" "$x/proc" "$x/sys" "$x/dev" "$x/mnt"
  cp "$busybox" "$x/bin/busybox"
  : >"$x/modules/order"
  for m in "${BOOT_MODULES[@]}"; do
    while read -r line; do
      case $line in
      builtin*) ;;
      insmod*)
        local path=${line#insmod } base
        path=${path%% *}
        base=$(basename "$path")
        grep -qx "${base%.xz}" "$x/modules/order" && continue
        case $base in
        *.xz) xz -dc "$path" >"$x/modules/${base%.xz}" ;;
        *.zst) zstd -qdc "$path" >"$x/modules/${base%.zst}" ;;
        *) cp "$path" "$x/modules/$base" ;;
        esac
        base=${base%.xz}
        echo "${base%.zst}" >>"$x/modules/order"
        ;;
      esac
    done < <(modprobe -d "$dir/root" -S "$release" --show-depends "$m")
  done
  cp "$ROOT/scripts/kernel-init.sh" "$x/init"
  chmod +x "$x/init"
  (cd "$x" && find . | cpio -o -H newc --quiet | gzip -1) >"$dir/initrd.gz"
  rm -rf "$x"
}

boot() {
  local name=$1; shift
  local dir="$CACHE/$name"
  [ -f "$dir/release" ] || die "kernel $name is not fetched: run scripts/kernels.sh fetch $name"
  local mem=${HOTSPOTD_GUEST_MEM_MB:-2048} cpus=${HOTSPOTD_GUEST_CPUS:-2}
  # Kernels unpacked before arm64 came have no arch file: amd64.
  local arch=amd64
  [ -f "$dir/arch" ] && arch=$(cat "$dir/arch")
  # The command travels in a file the guest reads through its share: the kernel command line
  # holds 2,048 bytes on x86, which a few test paths overflow (the guest then hangs silently).
  local cmd_file
  cmd_file=$(mktemp "$CACHE/guest-cmd.XXXXXX")
  printf '%s' "cd '$PWD' && $*" >"$cmd_file"
  # TCG: no KVM here (nested KVM fails); multi-threaded TCG uses both cores.
  local machine root=/ console=ttyS0 checkout=()
  case $arch in
  amd64) machine=(qemu-system-x86_64 -machine q35 -cpu max) ;;
  arm64)
    # A Raspberry Pi 4's cores: no LSE atomics, so the JIT's fallback for BPF atomics is what
    # runs. (-cpu max emulates pointer authentication, which made a start four times slower.)
    machine=(qemu-system-aarch64 -machine virt -cpu cortex-a72)
    console=ttyAMA0
    root="$CACHE/userland-arm64"
    [ -f "$root/.hotspotd-userland" ] || die "no arm64 userland: run scripts/kernels.sh fetch $name"
    # The guest reaches the kernel's modules (hotspotd.modules) through the checkout's share.
    case $dir in "$ROOT"/*) ;; *) die "an arm64 guest sees only this checkout: HOTSPOTD_KERNEL_CACHE must be inside $ROOT" ;; esac
    # This checkout at its own path, for the arm64 binaries in target/.
    checkout=(-fsdev "local,id=checkout,path=$ROOT,security_model=none,readonly=on,multidevs=remap"
      -device virtio-9p-pci,fsdev=checkout,mount_tag=checkout)
    ;;
  *) die "kernel $name: unknown architecture $arch" ;;
  esac
  # The status line the init prints is the exit status; everything else is the console.
  local log status
  log=$(mktemp)
  timeout --foreground "${HOTSPOTD_GUEST_TIMEOUT_SECS:-1800}" \
    "${machine[@]}" -accel tcg,thread=multi -smp "$cpus" -m "$mem" \
    -no-reboot -display none -serial stdio -monitor none \
    -kernel "$dir/vmlinuz" -initrd "$dir/initrd.gz" \
    -append "console=$console quiet panic=-1 random.trust_cpu=on hotspotd.modules=$dir/root/lib/modules hotspotd.checkout=$ROOT ${checkout:+hotspotd.share=1} hotspotd.cmdfile=$cmd_file" \
    -fsdev "local,id=root,path=$root,security_model=none,readonly=on,multidevs=remap" \
    -device virtio-9p-pci,fsdev=root,mount_tag=hostroot "${checkout[@]}" \
    -nic none </dev/null | tee "$log" || true
  status=$(tr -d '\r' <"$log" | sed -n 's/^hotspotd-guest-status=\([0-9]*\)$/\1/p' | tail -1)
  rm -f "$log" "$cmd_file"
  [ -n "$status" ] || die "the guest on kernel $name ended without a status (crash or timeout)"
  return "$status"
}

case ${1:-} in
fetch) shift; fetch "$@" ;;
boot) shift; [ $# -ge 2 ] || die "usage: $0 boot NAME COMMAND"; boot "$@" ;;
*) die "usage: $0 fetch [NAME...] | boot NAME COMMAND" ;;
esac
