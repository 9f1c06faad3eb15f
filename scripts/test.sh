#!/usr/bin/env bash
# Runs every test of hotspotd on this machine: installs what is missing (scripts/bootstrap.sh),
# checks formatting and lints, then runs the unit tests, the eBPF tests (BPF_PROG_TEST_RUN) and
# the end-to-end tests in network namespaces. Needs root: namespaces and eBPF.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/bootstrap.sh

echo "== format and lints" >&2
cargo fmt --all --check
cargo clippy --all-targets --locked --quiet -- -D warnings
# The eBPF crate is not a default member: it builds only for the BPF target, with nightly and
# core built from source, and with the cfg aya-build gives it (daemon/build.rs). Linted the
# same way, or its lints would never run.
RUSTFLAGS="--cfg bpf_target_arch=\"$(uname -m)\"" \
    cargo +nightly clippy --package hotspotd-ebpf --target bpfel-unknown-none \
    -Z build-std=core --locked --quiet -- -D warnings

echo "== build" >&2
# The end-to-end tests start the real binaries.
cargo build --bins --locked --quiet

echo "== tests" >&2
# Every test target, all of them even after one fails (so a run lists every failure); the
# output is kept to add up the results at the end.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
echo "== kernel matrix" >&2
# The core end-to-end tests again on Debian's 5.10, 6.1 and 6.12 under QEMU (about 5 minutes),
# and the arm64 build on Debian's arm64 6.12 (about 1.5 minutes, after its cross-build).
./scripts/kernel-matrix.sh 2>&1 | tee -a "$log" || status=1
passed=$(grep -o '[0-9]* passed' "$log" | awk '{ sum += $1 } END { print sum + 0 }')
failed=$(grep -o '[0-9]* failed' "$log" | awk '{ sum += $1 } END { print sum + 0 }')
echo "tests: $passed passed, $failed failed"
exit "$status"
