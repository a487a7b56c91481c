#!/usr/bin/env bash
# Starts a private trellisd, puts a tensor from one process and reads it from
# another (zero-copy), prints what happened, and stops the daemon.
set -euo pipefail
bin=${1:-build/bin}
dir=$(mktemp -d /tmp/trellis-demo.XXXXXX)
export TRELLIS_SOCKET=$dir/trellis.sock
"$bin/trellisd" --socket "$TRELLIS_SOCKET" --size 256M --log-level warn &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do [ -S "$TRELLIS_SOCKET" ] && break; sleep 0.05; done
echo "== trellisd (pid $daemon) serves $TRELLIS_SOCKET"
"$bin/tensor_consumer" demo_tensor &   # blocks until the name appears
consumer=$!
sleep 0.2
"$bin/tensor_producer" demo_tensor
wait $consumer
echo "== stopping trellisd"
