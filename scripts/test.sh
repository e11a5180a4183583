#!/usr/bin/env bash
# Runs every test: the workspace (host unit and integration tests, guest SDK
# tests and doctests) and the sample workers' own unit tests. The integration
# tests build the guest components for wasm32-wasip2 themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2
cargo test --workspace
cargo test --manifest-path sample-workers/Cargo.toml
