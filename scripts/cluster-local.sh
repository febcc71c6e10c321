#!/usr/bin/env bash
# Starts a 3-node ringraft cluster on loopback, each node in the foreground
# of this script's process group; Ctrl-C stops all three gracefully.
#
#   node 1: clients 127.0.0.1:7379, peers 127.0.0.1:7380, data ./cluster-local/node1
#   node 2: clients 127.0.0.1:7381, peers 127.0.0.1:7382, data ./cluster-local/node2
#   node 3: clients 127.0.0.1:7383, peers 127.0.0.1:7384, data ./cluster-local/node3
#
# Usage: scripts/cluster-local.sh [extra flags for every node, e.g. --backend std]
# Data survives restarts of the script; remove ./cluster-local to start over.
set -euo pipefail

cd "$(dirname "$0")/.."
cargo build --release --bin ringraft
binary=target/release/ringraft
root=${RINGRAFT_CLUSTER_DIR:-cluster-local}
initial="1=127.0.0.1:7380,2=127.0.0.1:7382,3=127.0.0.1:7384"
mkdir -p "$root"

pids=()
stop() {
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

for id in 1 2 3; do
    client=$((7377 + 2 * id))
    peer=$((7378 + 2 * id))
    "$binary" serve --id "$id" --data-dir "$root/node$id" \
        --listen-client "127.0.0.1:$client" --listen-peer "127.0.0.1:$peer" \
        --initial-cluster "$initial" "$@" 2> >(sed "s/^/[node $id] /" >&2) &
    pids+=($!)
done
echo "ringraft: 3 nodes; clients on 127.0.0.1:7379, :7381, :7383 (Ctrl-C stops)" >&2
wait
