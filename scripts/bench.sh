#!/usr/bin/env bash
# Runs hotspotd's benchmarks and prints their tables (see BENCHMARKS.md for what each measures).
# Release builds; needs root (eBPF, namespaces). Run on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/bootstrap.sh
cargo build --release --locked --quiet --bins
export HOTSPOTD_BIN=target/release/hotspotd HOTSPOTCTL_BIN=target/release/hotspotctl

echo "## machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
echo
echo "## eBPF programs, ns per packet (BPF_PROG_TEST_RUN)"
./target/release/bench-ebpf
echo
echo "## TCP throughput through the gateway"
./target/release/bench-throughput
echo
echo "## Saving sessions to SQLite"
./target/release/bench-store
echo
echo "## Session engine tick"
./target/release/bench-engine
echo
echo "## Connect to first packet"
./target/release/bench-connect
echo
echo "## Speed limits: applying HTB classes"
./target/release/bench-shaping
echo
echo "## Scale: 0, 1,000 and 10,000 clients with running sessions"
./target/release/bench-scale
echo
echo "## Vouchers: creating 10,000 at a time"
./target/release/bench-vouchers
echo
echo "## Vouchers: redeem to first packet"
./target/release/bench-connect --voucher
echo
echo "## RADIUS: login to first packet, Interim-Update bursts of 10,000 (a local FreeRADIUS)"
./target/release/bench-radius
echo
echo "## Walled garden by host name: answer to learned address, 10,000 answers in a second"
# cargo runs the test in its package folder: the binaries' paths must be absolute.
HOTSPOTD_BIN="$PWD/$HOTSPOTD_BIN" HOTSPOTCTL_BIN="$PWD/$HOTSPOTCTL_BIN" \
    cargo test --release --locked --quiet -p hotspotd-tests --test garden a_burst -- --nocapture 2>&1 \
    | grep -E 'answer received|burst:'
