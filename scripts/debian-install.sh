#!/usr/bin/env bash
# Installs a hotspotd .deb on a Debian release as an operator would, starts the installed
# daemon, stops it and purges the package, checking each step: in a chroot of Debian's own
# packages for that release (systemd does not run in a chroot, so the daemon is started as its
# unit would start it: ExecStart=, Group=hotspotd, UMask=0077, its state and runtime folders).
#
#   scripts/debian-install.sh chroot SUITE      makes SUITE's chroot, once (needs deb.debian.org)
#   scripts/debian-install.sh test SUITE DEB    installs, starts and purges DEB in a copy of it
#
# SUITE: bookworm (Debian 12) or trixie (Debian 13). tests/tests/package_debian.rs runs
# `chroot` first, then `test` inside a network namespace whose br-lan is the LAN the installed
# /etc/hotspotd/config.toml names (and which cannot reach the mirror); it checks afterwards that
# the purge detached the programs. Needs root and mmdebstrap (scripts/bootstrap.sh).
#
# Side effects: the release's chroot (minbase, systemd and procps: the package's dependencies)
# is made once from deb.debian.org and cached as .cache/debian/SUITE.tar (gitignored); each
# run unpacks it into a temporary folder under /var/tmp, removed at the end. The chroot's
# mounts (proc, this namespace's sysfs, a BPF filesystem of its own, tmpfs /run, /tmp, /dev)
# live in a private mount namespace and go with it; the machine's dpkg is never touched.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

say() { printf 'debian-install: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# Inside the private mount namespace: everything that needs the chroot's mounts.
inside() {
  local root=$1 deb=$2
  mount -t proc proc "$root/proc"
  mount -t sysfs sysfs "$root/sys"
  # A BPF filesystem of its own: the daemon's pins never meet the machine's.
  mount -t bpf bpf "$root/sys/fs/bpf"
  mount -t tmpfs -o mode=0755 tmpfs "$root/run"
  mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
  # Device nodes made here, not the machine's /dev bound in.
  mount -t tmpfs -o mode=0755 tmpfs "$root/dev"
  mknod -m 666 "$root/dev/null" c 1 3
  mknod -m 666 "$root/dev/zero" c 1 5
  mknod -m 666 "$root/dev/urandom" c 1 9
  mknod -m 666 "$root/dev/random" c 1 8
  in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }

  local release
  release=$(. "$root/etc/os-release" && echo "$PRETTY_NAME")
  say "$release: installing $(basename "$deb")"
  # What the chroot holds before: the purge must bring it back to exactly this.
  snapshot() {
    (cd "$root" && find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./run -o -path ./tmp \) -prune -o -print) \
      | grep -vE '^\./(var/lib/dpkg|var/log|var/cache/debconf)/|^\./etc/(group|gshadow)-$' | sort
  }
  snapshot >"$root/../before"

  cp "$deb" "$root/tmp/hotspotd.deb"
  in_root dpkg --install /tmp/hotspotd.deb >/dev/null || die "$release: dpkg --install failed"
  in_root dpkg-query --show --showformat='${Status}' hotspotd | grep -qx 'install ok installed' \
    || die "$release: hotspotd is not installed after dpkg --install"
  local path
  for path in /usr/bin/hotspotd /usr/bin/hotspotctl /lib/systemd/system/hotspotd.service \
    /usr/lib/sysusers.d/hotspotd.conf /etc/hotspotd/config.toml; do
    [ -f "$root$path" ] || die "$release: $path is not installed"
  done
  local gid
  gid=$(in_root getent group hotspotd | cut -d: -f3)
  [ -n "$gid" ] || die "$release: postinst did not create the hotspotd group"
  in_root /usr/bin/hotspotd --check-config --config /etc/hotspotd/config.toml >/dev/null \
    || die "$release: hotspotd --check-config rejects the installed configuration"

  # Started as the unit starts it; its StateDirectory= and RuntimeDirectory=, mode 0750.
  install -d -m 0750 -g "$gid" "$root/var/lib/hotspotd" "$root/run/hotspotd"
  local log="$root/../daemon.log" pid
  (umask 0077 && exec chroot --userspec="0:$gid" "$root" env -i PATH=/usr/bin:/bin \
    /usr/bin/hotspotd --config /etc/hotspotd/config.toml) 2>"$log" &
  pid=$!
  local waited=0
  until [ -S "$root/run/hotspotd/hotspotd.sock" ]; do
    kill -0 "$pid" 2>/dev/null || die "$release: hotspotd exited at start: $(cat "$log")"
    [ "$waited" -lt 200 ] || { kill "$pid"; die "$release: hotspotd serves no socket after 20 s: $(cat "$log")"; }
    sleep 0.1
    waited=$((waited + 1))
  done
  in_root /usr/bin/hotspotctl clients >/dev/null || die "$release: hotspotctl clients failed: $(cat "$log")"
  [ -d "$root/sys/fs/bpf/hotspotd" ] || die "$release: the daemon pinned nothing"
  kill -TERM "$pid"
  wait "$pid" || die "$release: hotspotd did not stop cleanly: $(cat "$log")"
  say "$release: hotspotd started, served hotspotctl, stopped"

  local said
  said=$(in_root dpkg --purge hotspotd 2>&1) || die "$release: dpkg --purge failed: $said"
  [[ $said == *"hotspotd: released"* ]] \
    || die "$release: prerm did not release the LAN ('hotspotd --release'): $said"
  in_root dpkg-query --show hotspotd >/dev/null 2>&1 && die "$release: hotspotd is still known to dpkg"
  [ -e "$root/sys/fs/bpf/hotspotd" ] && die "$release: the purge left /sys/fs/bpf/hotspotd"
  [ -e "$root/run/hotspotd" ] && die "$release: the purge left /run/hotspotd"
  rm -f "$root/tmp/hotspotd.deb"
  local left
  left=$(snapshot | diff "$root/../before" - | grep '^[<>]' || true)
  [ -z "$left" ] || die "$release: the purge left the chroot changed (> added, < removed):
$left"
  say "$release: purged, nothing left"
}

if [ "${1:-}" = --inside ]; then
  shift
  inside "$@"
  exit
fi

usage="usage: $0 chroot SUITE | test SUITE DEB"
[ $# -ge 2 ] || die "$usage"
command=$1 suite=$2
case $suite in bookworm | trixie) ;; *) die "unknown suite '$suite': bookworm (Debian 12) or trixie (Debian 13)" ;; esac
[ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap, chroot, mounts)"
cache="$ROOT/.cache/debian"
tarball="$cache/$suite.tar"

case $command in
chroot)
  command -v mmdebstrap >/dev/null || die "mmdebstrap not found: run scripts/bootstrap.sh"
  mkdir -p "$cache"
  # One maker at a time per release; a second waits and then finds the tarball.
  exec 9>"$cache/$suite.lock"
  flock 9
  if [ ! -f "$tarball" ]; then
    say "making the $suite chroot from deb.debian.org (once; about a minute)"
    mmdebstrap --quiet --format=tar --variant=minbase --include=systemd,procps \
      "$suite" "$tarball.partial" http://deb.debian.org/debian \
      || die "mmdebstrap $suite failed: is deb.debian.org reachable?"
    mv "$tarball.partial" "$tarball"
  fi
  ;;
test)
  [ $# -eq 3 ] || die "$usage"
  deb=$(realpath "$3")
  [ -f "$deb" ] || die "no package $deb"
  [ -f "$tarball" ] || die "no $suite chroot: run $0 chroot $suite first"
  work=$(mktemp -d /var/tmp/hotspotd-debian.XXXXXX)
  # The mounts are gone with the namespace before this removes anything.
  trap 'rm -rf "$work"' EXIT
  mkdir "$work/root"
  tar -xf "$tarball" -C "$work/root"
  unshare --mount --propagation private "$0" --inside "$work/root" "$deb"
  ;;
*) die "$usage" ;;
esac
