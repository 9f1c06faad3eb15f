#!/usr/bin/env bash
# Runs the packaged hotspotd under a real systemd: boots Debian 12 with systemd as PID 1 in a
# container (systemd-nspawn, its own network namespace with a br-lan bridge), installs the .deb
# that `scripts/package.sh --dev` makes, and checks what only the service manager can show:
# the unit starts with its whole sandbox (Type=notify: "active" only after READY=1), the daemon
# has exactly the unit's capabilities, watchdog pings arrive, the socket is root:hotspotd 0660
# (a user in the group may call it, another may not), reload (SIGHUP), a crash is restarted and
# takes over the pinned state, a frozen daemon is killed by the watchdog and restarted, stop is
# clean and keeps the gate pinned, and dpkg --purge (prerm stops the service and runs
# 'hotspotd --release') leaves nothing.
#
# Not part of scripts/test.sh: it downloads a Debian base system (about 35 s, cached in
# $SMOKE_ROOT for the next run) and takes about two minutes, most of it the watchdog's 30 s
# twice. Run it as root after changing the unit or the packaging; it needs `cargo build --bins`.
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE_ROOT="${SMOKE_ROOT:-/var/tmp/hotspotd-smoke}"
say() { printf 'systemd-smoke: %s\n' "$*" >&2; }
die() { say "FAIL: $*"; exit 1; }
pass() { say "ok: $*"; }

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, systemd-nspawn, eBPF)"
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x "$SMOKE_ROOT/lib/systemd/systemd" ]; then
  say "debootstrap Debian 12 into $SMOKE_ROOT"
  rm -rf "$SMOKE_ROOT"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,iproute2,procps \
    bookworm "$SMOKE_ROOT" http://deb.debian.org/debian >/dev/null
fi
in_root() { chroot "$SMOKE_ROOT" "$@"; }

work=$(mktemp -d)
container=""
cleanup() {
  if [ -n "$container" ]; then
    kill "$container" 2>/dev/null || true   # nspawn powers the container off on SIGTERM
    wait "$container" 2>/dev/null || true
  fi
  rm -rf "$work"
  in_root sh -c 'dpkg --purge hotspotd >/dev/null 2>&1; userdel portal; userdel stranger' 2>/dev/null || true
}
trap cleanup EXIT

./scripts/package.sh --dev "$work" >/dev/null
cp "$work"/hotspotd_*.deb "$SMOKE_ROOT/root/hotspotd.deb"
in_root dpkg --purge hotspotd >/dev/null 2>&1 || true
in_root dpkg -i /root/hotspotd.deb >/dev/null
in_root sh -c 'userdel portal; userdel stranger' 2>/dev/null || true
in_root useradd -M -G hotspotd portal
in_root useradd -M stranger
# The LAN bridge of the default configuration, made before hotspotd starts, as a box's network
# setup would.
cat >"$SMOKE_ROOT/etc/systemd/system/br-lan.service" <<'EOF'
[Unit]
Description=LAN bridge for the hotspotd smoke test
Before=hotspotd.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/sbin/ip link add br-lan type bridge
ExecStart=/sbin/ip link set br-lan up
[Install]
WantedBy=multi-user.target
EOF
mkdir -p "$SMOKE_ROOT/etc/systemd/system/hotspotd.service.d"
printf '[Unit]\nRequires=br-lan.service\nAfter=br-lan.service\n' \
  >"$SMOKE_ROOT/etc/systemd/system/hotspotd.service.d/smoke.conf"
in_root systemctl enable br-lan.service hotspotd.service >/dev/null 2>&1

# nspawn allows bpf(2) only when asked (--system-call-filter), and copies the host's /dev/null,
# which has to be a character device; in a private mount namespace a real one is put over it
# should the host's be broken.
cat >"$work/boot.sh" <<EOF
#!/bin/sh
mount --make-rprivate /
if [ ! -c /dev/null ]; then
  mknod -m 666 "$work/null" c 1 3 && mount --bind "$work/null" /dev/null
fi
exec systemd-nspawn -D "$SMOKE_ROOT" --boot --private-network --register=no --keep-unit \\
  --capability=CAP_BPF,CAP_PERFMON --system-call-filter=bpf --bind=/sys/fs/bpf --console=pipe
EOF
chmod +x "$work/boot.sh"
unshare -m "$work/boot.sh" >"$work/console.log" 2>&1 </dev/null &
container=$!
pid1=""
for _ in $(seq 100); do
  pid1=$(pgrep -P "$container" | head -1 || true)
  [ -n "$pid1" ] && nsenter -t "$pid1" -a systemctl is-system-running --wait >/dev/null 2>&1 && break
  sleep 0.2
done
[ -n "$pid1" ] || die "the container did not boot: $(cat "$work/console.log")"
inside() { nsenter -t "$pid1" -a "$@"; }
prop() { inside systemctl show hotspotd -p "$1" --value; }
journal() { inside journalctl -u hotspotd --no-pager -n 20; }
# Waits up to 5 s for the journal (which lags the service's state) to show $1. grep reads all of
# it: with -q, journalctl would die of SIGPIPE and pipefail would call that a failure.
logged() {
  for _ in $(seq 25); do
    inside journalctl -u hotspotd --no-pager | grep -F -- "$1" >/dev/null && return 0
    sleep 0.2
  done
  return 1
}

[ "$(prop ActiveState)/$(prop SubState)" = active/running ] \
  || die "hotspotd is not running: $(journal)"
pass "started with the unit's sandbox; READY=1 made it active"

main=$(prop MainPID)
caps=$(inside grep -E '^Cap(Eff|Bnd|Amb)' "/proc/$main/status" | awk '{print $2}' | sort -u)
[ "$caps" = 000000c000001000 ] || die "capabilities $caps, not CAP_BPF CAP_PERFMON CAP_NET_ADMIN"
pass "runs with exactly CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN"

first=$(prop WatchdogTimestampMonotonic)
sleep 16
[ "$(prop WatchdogTimestampMonotonic)" != "$first" ] || die "no watchdog ping in 16 s"
pass "watchdog pings arrive"

socket=$(inside stat -c '%U:%G %a' /run/hotspotd/hotspotd.sock)
[ "$socket" = "root:hotspotd 660" ] || die "socket is $socket, not root:hotspotd 660"
inside runuser -u portal -- hotspotctl clients >/dev/null || die "a member of hotspotd cannot call the API"
if inside runuser -u stranger -- hotspotctl clients >/dev/null 2>&1; then
  die "a user outside the hotspotd group can call the API"
fi
pass "the API socket is root:hotspotd 0660: the group may call it, others not"

inside systemctl reload hotspotd || die "reload failed: $(journal)"
pass "systemctl reload (SIGHUP)"

inside kill -9 "$main"
for _ in $(seq 50); do
  [ "$(prop NRestarts)" = 1 ] && [ "$(prop SubState)" = running ] && break
  sleep 0.2
done
if [ "$(prop NRestarts)" != 1 ] || [ "$(prop SubState)" != running ]; then
  die "not restarted after SIGKILL: $(journal)"
fi
logged 'kernel_state_kept=true' || die "the restart did not take over the pins: $(journal)"
pass "a crash is restarted (Restart=on-failure) and takes over the pinned state"

inside kill -STOP "$(prop MainPID)"
say "froze the daemon; waiting for the watchdog (30 s) and the restart (5 s)"
for _ in $(seq 60); do
  [ "$(prop NRestarts)" = 2 ] && [ "$(prop SubState)" = running ] && break
  sleep 1
done
logged 'Watchdog timeout' || die "no watchdog timeout: $(journal)"
[ "$(prop SubState)" = running ] || die "not restarted after the watchdog: $(journal)"
pass "a frozen daemon is killed by the watchdog and restarted"

inside systemctl stop hotspotd
[ "$(prop Result)" = success ] || die "stop: $(prop Result): $(journal)"
inside test ! -e /run/hotspotd || die "/run/hotspotd is left after stop"
# A stop leaves the gate as a crash does; only 'hotspotd --release' (prerm on removal) frees it.
inside test -e /sys/fs/bpf/hotspotd/v2/links/lan_ingress || die "the stop removed the pinned links"
pass "stops cleanly; the runtime folder goes, the gate stays pinned"

inside systemctl start hotspotd
inside dpkg --purge hotspotd >/dev/null
for path in /usr/bin/hotspotd /lib/systemd/system/hotspotd.service /etc/hotspotd \
  /var/lib/hotspotd /run/hotspotd /sys/fs/bpf/hotspotd; do
  inside test ! -e "$path" || die "$path is left after dpkg --purge"
done
[ "$(prop ActiveState)" = inactive ] || die "the service still runs after the purge"
pass "dpkg --purge of a running service stops it and leaves nothing"
say "all checks passed"
