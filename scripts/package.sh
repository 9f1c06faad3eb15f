#!/usr/bin/env bash
# Builds the hotspotd .deb with cargo-deb: hotspotd and hotspotctl in /usr/bin, the systemd
# unit, the hotspotd group (sysusers.d), config.toml as the conffile /etc/hotspotd/config.toml.
# Installs cargo-deb (and dpkg-dev, binutils) first if missing; a second run skips that.
#
#   scripts/package.sh                 release build, the package for a box: target/debian/
#   scripts/package.sh --dev [DIR]     packages the debug binaries that `cargo build --bins`
#                                      already built, stripped, into DIR (default target/debian)
#   scripts/package.sh --target aarch64-unknown-linux-gnu [--dev [DIR]]
#                                      the same for arm64 boards (Architecture: arm64), cross-
#                                      built with Debian's cross toolchain (.cargo/config.toml;
#                                      scripts/bootstrap.sh installs it); --dev takes what
#                                      `cargo build --bins --target ...` built
#
# --dev is for the package test (tests/tests/package.rs): it takes seconds where a release
# build (thin LTO, one codegen unit) takes minutes. cargo-deb warns that it will refuse the dev
# profile some day; the version below is pinned, so that day comes only with a change here.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0

say() { printf 'package: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

usage="usage: $0 [--target TRIPLE] [--dev [OUTPUT_DIR]]"
dev=false
out=target/debian
target=()
bin_dir=target/debug
if [ "${1:-}" = --target ]; then
  [ -n "${2:-}" ] || die "$usage"
  rustup target list --installed 2>/dev/null | grep -qx "$2" \
    || die "the Rust target $2 is not installed: rustup target add $2 (scripts/bootstrap.sh does for aarch64)"
  target=(--target "$2")
  bin_dir="target/$2/debug"
  shift 2
fi
case "${1:-}" in
  --dev) dev=true; out="${2:-$out}" ;;
  "") ;;
  *) die "$usage" ;;
esac

command -v cargo >/dev/null || die "cargo not found: install Rust with rustup (https://rustup.rs) first"

# dpkg-shlibdeps (dpkg-dev) computes Depends; strip and objcopy (binutils) strip the binaries.
missing=()
command -v dpkg-shlibdeps >/dev/null || missing+=(dpkg-dev)
command -v strip >/dev/null || missing+=(binutils)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}: run as root, or apt-get install ${missing[*]}"
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
fi

if ! cargo deb --version 2>/dev/null | grep -qx "cargo-deb $CARGO_DEB_VERSION"; then
  say "installing cargo-deb $CARGO_DEB_VERSION (about a minute)"
  cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION" \
    || die "cargo install cargo-deb failed"
fi

if $dev; then
  for bin in hotspotd hotspotctl; do
    [ -x "$bin_dir/$bin" ] || die "$bin_dir/$bin is not built: run 'cargo build --bins ${target[*]}' first"
  done
  # --quiet hides the dev-profile warning explained above; --fast: xz at a low level. The
  # revision marks a debug package (0.1.0-0debug), older than any release build's -1.
  cargo deb -p hotspotd "${target[@]}" --profile dev --no-build --strip --fast --quiet \
    --deb-revision 0debug --output "$out"
else
  cargo deb -p hotspotd "${target[@]}" --locked --output "$out"
fi
