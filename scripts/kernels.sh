#!/usr/bin/env bash
# Debian kernels for the kernel matrix (scripts/kernel-matrix.sh), booted under QEMU.
#
#   scripts/kernels.sh fetch           download and unpack the kernels in KERNELS below
#   scripts/kernels.sh boot NAME CMD   boot kernel NAME with this machine's root shared
#                                      read-only over 9p (plus a tmpfs overlay) and run CMD
#                                      (a shell command line) inside; exits with CMD's status
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

# name  suite  metapackage version pattern: the newest linux-image-amd64 of that suite is
# resolved to its versioned image package at fetch time, so security updates are followed.
#   5.10  bullseye           older than hotspotd's minimum: the refusal is tested there
#   6.1   bookworm           Debian 12's kernel (no TCX: clsact)
#   6.12  bookworm-backports Debian 12's backports kernel, Debian 13's kernel (TCX)
KERNELS=(
  "5.10 bullseye-security"
  "6.1 bookworm-security"
  "6.12 bookworm-backports"
)
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
    -o Dir::State::status=/var/lib/dpkg/status -o APT::Sandbox::User=root "$@"
}

# The versioned image package the suite's linux-image-amd64 points to.
image_package() {
  local suite=$1 version
  version=$(apt_private apt-cache madison linux-image-amd64 \
    | awk -v s="$suite/main" '$0 ~ s { print $3; exit }')
  [ -n "$version" ] || die "no linux-image-amd64 in $suite: is deb.debian.org reachable?"
  apt_private apt-cache depends "linux-image-amd64=$version" \
    | awk '/Depends: linux-image-/ { print $2; exit }'
}

fetch() {
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
  # one is out.
  if [ -z "$(find "$CACHE/apt/state/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null)" ]; then
    apt_private apt-get update -qq >/dev/null || die "apt-get update of the kernel suites failed"
  fi
  local entry name suite pkg release
  for entry in "${KERNELS[@]}"; do
    read -r name suite <<<"$entry"
    pkg=$(image_package "$suite")
    release=${pkg#linux-image-}
    if [ -f "$CACHE/$name/release" ] && [ "$(cat "$CACHE/$name/release")" = "$release" ]; then
      # Unpacked already; the initramfs is rebuilt when its init changed.
      [ "$ROOT/scripts/kernel-init.sh" -nt "$CACHE/$name/initrd.gz" ] && initramfs "$CACHE/$name" "$release"
      continue
    fi
    say "fetching $pkg ($suite)"
    rm -rf "$CACHE/$name" "$CACHE/debs"/*
    (cd "$CACHE/debs" && apt_private apt-get download -qq "$pkg" >/dev/null) \
      || die "apt-get download $pkg failed"
    unpack "$name" "$release" "$CACHE/debs/${pkg}"_*.deb
    rm -f "$CACHE/debs"/*
  done
}

unpack() {
  local name=$1 release=$2 deb=$3 dir="$CACHE/$1" x
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
  initramfs "$dir" "$release"
  echo "$release" >"$dir/release"
}

# A busybox initramfs: loads the modules that reach the shared root, mounts it read-only with a
# tmpfs overlay and the kernel's modules on top, and hands over to the guest command.
initramfs() {
  local dir=$1 release=$2 x m line
  command -v busybox >/dev/null && busybox --list | grep -qx switch_root \
    || die "busybox (busybox-static) not found: run scripts/bootstrap.sh"
  x=$(mktemp -d "$CACHE/initramfs.XXXXXX")
  mkdir -p "$x/bin" "$x/modules" "$x/proc" "$x/sys" "$x/dev" "$x/mnt"
  cp "$(command -v busybox)" "$x/bin/busybox"
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
  [ -f "$dir/release" ] || die "kernel $name is not fetched: run scripts/kernels.sh fetch"
  local mem=${HOTSPOTD_GUEST_MEM_MB:-2048} cpus=${HOTSPOTD_GUEST_CPUS:-2}
  # The command travels on the kernel command line (hex, so spaces and quotes survive).
  local cmd_hex
  cmd_hex=$(printf '%s' "cd '$PWD' && $*" | od -An -tx1 | tr -d ' \n')
  # TCG: no KVM here (nested KVM fails); multi-threaded TCG uses both cores.
  # The status line the init prints is the exit status; everything else is the console.
  local log status
  log=$(mktemp)
  timeout --foreground "${HOTSPOTD_GUEST_TIMEOUT_SECS:-1800}" \
    qemu-system-x86_64 -machine q35 -accel tcg,thread=multi -cpu max -smp "$cpus" -m "$mem" \
    -no-reboot -display none -serial stdio -monitor none \
    -kernel "$dir/vmlinuz" -initrd "$dir/initrd.gz" \
    -append "console=ttyS0 quiet panic=-1 random.trust_cpu=on hotspotd.modules=$dir/root/lib/modules hotspotd.cmd=$cmd_hex" \
    -fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap \
    -device virtio-9p-pci,fsdev=root,mount_tag=hostroot \
    -nic none </dev/null | tee "$log" || true
  status=$(tr -d '\r' <"$log" | sed -n 's/^hotspotd-guest-status=\([0-9]*\)$/\1/p' | tail -1)
  rm -f "$log"
  [ -n "$status" ] || die "the guest on kernel $name ended without a status (crash or timeout)"
  return "$status"
}

case ${1:-} in
fetch) fetch ;;
boot) shift; [ $# -ge 2 ] || die "usage: $0 boot NAME COMMAND"; boot "$@" ;;
*) die "usage: $0 fetch | boot NAME COMMAND" ;;
esac
