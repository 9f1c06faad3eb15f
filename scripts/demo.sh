#!/usr/bin/env bash
# hotspotd's main job, on any Linux machine with no hotspot hardware: builds a LAN of three
# simulated clients in network namespaces, starts hotspotd on its gateway with the repository's
# config.toml, drives traffic, and shows the clients table as the kernel counts it. Cleans up
# after itself. Needs root: namespaces and eBPF.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/bootstrap.sh
cargo build --bins --locked --quiet
exec ./target/debug/demo "$@"
