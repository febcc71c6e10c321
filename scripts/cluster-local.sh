#!/usr/bin/env bash
# Starts a 3-node ringraft cluster on loopback, each node in the foreground
# of this script's process group; Ctrl-C stops all three gracefully.
#
#   node 1: clients 127.0.0.1:7379, peers 127.0.0.1:7380, data ./cluster-local/node1
#   node 2: clients 127.0.0.1:7381, peers 127.0.0.1:7382, data ./cluster-local/node2
#   node 3: clients 127.0.0.1:7383, peers 127.0.0.1:7384, data ./cluster-local/node3
#
# Usage: scripts/cluster-local.sh [--tls] [extra flags for every node, e.g. --backend std]
#
# --tls: development certificates in ./cluster-local/certs (`ringraft certs`:
# a CA, node-1..3, clients root, writer and reader), peer mutual TLS, and
# HTTPS with client certificate authentication on the client ports (root may
# administer, writer write, reader read). Then, for example:
#   curl --cacert cluster-local/certs/ca.pem --cert cluster-local/certs/client-writer.pem \
#        --key cluster-local/certs/client-writer-key.pem -X PUT -d v https://127.0.0.1:7379/v1/kv/x
# A data directory created without --tls works with it and back: TLS
# changes the connections, not the data.
#
# Data survives restarts of the script; remove ./cluster-local to start over.
set -euo pipefail

cd "$(dirname "$0")/.."
cargo build --release --bin ringraft
binary=target/release/ringraft
root=${RINGRAFT_CLUSTER_DIR:-cluster-local}
initial="1=127.0.0.1:7380,2=127.0.0.1:7382,3=127.0.0.1:7384"
mkdir -p "$root"

tls=false
if [[ "${1:-}" == "--tls" ]]; then
    tls=true
    shift
    certs="$root/certs"
    if [[ ! -f "$certs/node-3.pem" ]]; then
        "$binary" certs --dir "$certs" --nodes 1,2,3 --clients root,writer,reader >/dev/null
    fi
fi

# The TLS flags of node $1 (none without --tls).
tls_flags() {
    if [[ "$tls" == true ]]; then
        local cert="$certs/node-$1.pem" key="$certs/node-$1-key.pem"
        echo --peer-cert-file "$cert" --peer-key-file "$key" --peer-trusted-ca-file "$certs/ca.pem" \
            --cert-file "$cert" --key-file "$key" --trusted-ca-file "$certs/ca.pem" \
            --client-cert-auth --client-permission root=admin,writer=write,reader=read
    fi
}

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
        --initial-cluster "$initial" $(tls_flags "$id") "$@" 2> >(sed -u "s/^/[node $id] /" >&2) &
    pids+=($!)
done
scheme=http
[[ "$tls" == true ]] && scheme=https
echo "ringraft: 3 nodes; clients on $scheme://127.0.0.1:7379, :7381, :7383 (Ctrl-C stops)" >&2
wait
