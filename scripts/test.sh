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

echo "== build" >&2
# The end-to-end tests start the real binaries.
cargo build --bins --locked --quiet

echo "== tests" >&2
cargo test --locked
