#!/usr/bin/env bash
# Builds Herald and the welcome-email sample worker, starts `herald serve`
# with its embedded defaults (127.0.0.1:7600, data in ./herald-data, emails
# written to ./herald-data/outbox), deploys the worker, queues three sign-ups
# and prints the resulting deliveries. Stops the server when done.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> installing the wasm32-wasip2 target"
rustup target add wasm32-wasip2

echo "==> building herald (the first build compiles wasmtime and takes several minutes)"
cargo build -p herald
herald=target/debug/herald

echo "==> building sample-workers/welcome-email"
cargo build --release --target wasm32-wasip2 --manifest-path sample-workers/Cargo.toml
worker=sample-workers/target/wasm32-wasip2/release/welcome_email.wasm

log=$(mktemp -t herald-demo.XXXXXX)
echo "==> starting herald serve (log: $log)"
"$herald" serve >"$log" 2>&1 &
server=$!
trap 'kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT

for _ in $(seq 1 100); do
    if grep -q "herald listening on" "$log"; then
        break
    fi
    if ! kill -0 "$server" 2>/dev/null; then
        echo "herald serve exited; its log:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.1
done
grep "herald listening on" "$log"

echo "==> deploying the worker"
"$herald" deploy welcome-email "$worker"

echo "==> queueing three sign-ups"
"$herald" enqueue welcome-email \
    --payload '{"email": "ada@example.com", "name": "Ada", "token": "abc123"}' \
    --payload '{"email": "grace@example.com", "name": "Grace", "token": "def456"}' \
    --payload '{"email": "alan@example.com", "name": "Alan <3", "token": "ghi789"}'

echo "==> waiting for the deliveries"
for _ in $(seq 1 100); do
    if [ "$("$herald" deliveries --status sent | grep -c ' sent ' || true)" -ge 3 ]; then
        break
    fi
    sleep 0.1
done
"$herald" deliveries

echo "==> emails written to herald-data/outbox"
ls -1 herald-data/outbox
echo
echo "==> the last email written (file names start with the time in ms)"
cat "$(ls -1 herald-data/outbox/*.eml | tail -n 1)"
echo
echo "Done. Start the server again with: $herald serve"
