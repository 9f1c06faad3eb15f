#!/usr/bin/env bash
# Installs what building and testing hotspotd needs, and nothing that is already there.
# Idempotent: a second run prints nothing but its last line. Needs root (apt, netns).
set -euo pipefail

BPF_LINKER_VERSION=0.13.0
LLVM_MAJOR=22
APT_PACKAGES=(
  "llvm-${LLVM_MAJOR}-dev" "libpolly-${LLVM_MAJOR}-dev" libzstd-dev   # bpf-linker links LLVM
  iperf3 iproute2 ethtool                                             # namespace harness traffic
  pkg-config
  systemd strace                                                      # the unit's checks (tests/tests/systemd.rs)
  e2fsprogs mount                                                     # mkfs.ext4, e2fsck, losetup (tests/tests/storage.rs)
  faketime                                                            # wall-clock jumps (tests/tests/clock.rs)
  chromium fonts-dejavu-core                                          # the portal in a real browser (tests/tests/portal_browser.rs)
  dnsmasq-base                                                        # a real DHCP server, no service (tests/tests/rfc8910.rs)
  qemu-system-x86 busybox-static kmod cpio xz-utils                   # the kernel matrix (scripts/kernel-matrix.sh)
  freeradius freeradius-utils                                         # a real RADIUS server, run by the tests (tests/tests/radius.rs)
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross                         # the arm64 build (.cargo/config.toml)
  qemu-system-arm mmdebstrap                                          # its guest and its userland; Debian chroots (tests/tests/package_debian.rs)
)
# The arm64 build's Rust target (the eBPF object is the same little-endian BPF for both).
CROSS_TARGET=aarch64-unknown-linux-gnu

say() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (apt-get, network namespaces and eBPF need it): sudo $0"

# Seen on this kind of machine: /dev/null replaced by a regular file, so every "> /dev/null"
# fills it and every reader (cargo's compiler probe among them) gets garbage. Put it back.
if [ ! -c /dev/null ]; then
  say "/dev/null is not a device; recreating it"
  rm -f /dev/null && mknod -m 666 /dev/null c 1 3 || die "cannot recreate /dev/null (mknod c 1 3)"
fi
command -v cargo >/dev/null || die "cargo not found: install Rust with rustup (https://rustup.rs) first"

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || die "apt-get update failed: check the package mirror in /etc/apt/sources.list*"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
fi

# The eBPF crate is built with nightly (-Z build-std=core needs rust-src).
if ! rustup toolchain list | grep -q '^nightly'; then
  say "installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal >/dev/null 2>&1 || die "rustup toolchain install nightly failed"
fi
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
  say "adding rust-src to nightly"
  rustup component add rust-src --toolchain nightly >/dev/null 2>&1 || die "rustup component add rust-src --toolchain nightly failed"
fi
# scripts/test.sh lints the eBPF crate with nightly's clippy (the minimal profile has none).
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^clippy'; then
  say "adding clippy to nightly"
  rustup component add clippy --toolchain nightly >/dev/null 2>&1 || die "rustup component add clippy --toolchain nightly failed"
fi

if ! rustup target list --installed 2>/dev/null | grep -qx "$CROSS_TARGET"; then
  say "adding the Rust target $CROSS_TARGET"
  rustup target add "$CROSS_TARGET" >/dev/null 2>&1 || die "rustup target add $CROSS_TARGET failed"
fi

if ! bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
  say "building bpf-linker $BPF_LINKER_VERSION against LLVM $LLVM_MAJOR (about 2 minutes)"
  LLVM_PREFIX="/usr/lib/llvm-${LLVM_MAJOR}" cargo install --locked --quiet \
    bpf-linker --version "$BPF_LINKER_VERSION" --no-default-features --features "llvm-${LLVM_MAJOR}" \
    || die "cargo install bpf-linker failed (is /usr/lib/llvm-${LLVM_MAJOR} complete?)"
fi

# The BPF filesystem holds the pinned maps; systemd mounts it on most boxes, containers may not.
if ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf || die "cannot mount the BPF filesystem on /sys/fs/bpf"
fi

# Debian's kernels for the kernel matrix (amd64 and arm64) and the arm64 guests' userland,
# downloaded and unpacked into .cache/kernels (never installed); a kernel already there is kept
# until Debian has a newer one.
"$(dirname "$0")/kernels.sh" fetch || die "cannot fetch the kernel matrix's kernels (scripts/kernels.sh fetch)"

say "ready"
