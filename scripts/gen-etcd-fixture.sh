#!/usr/bin/env bash
# Generates tests/fixtures/etcd-3.4/: WAL and snapshot files written by a real
# etcd 3.4 (Debian's etcd-server package), for the WAL/snapshot compatibility
# tests. Run it by hand when the fixture needs regenerating; the tests only
# read the committed files and never need etcd.
#
# What it does: installs etcd-server and etcd-client if missing, starts one
# etcd on loopback with a temporary data directory and a small
# --snapshot-count (so that a .snap file appears), writes a few keys, stops
# etcd cleanly, and copies member/wal/*.wal and member/snap/*.snap into the
# fixture directory. The WAL segment is preallocated to 64 MB of zeros after
# its last record; the copy keeps only the bytes up to the end of the last
# frame (found by walking the frame length words up to the first zero one).
# Zeros after the data end and a clean end of file are the same thing to a
# WAL reader.
set -euo pipefail

repo_dir="$(cd "$(dirname "$0")/.." && pwd)"
fixture_dir="$repo_dir/tests/fixtures/etcd-3.4"
client_port=23791
peer_port=23801
key_count=25
snapshot_count=10

if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server etcd-client
fi
etcd --version | head -1

work_dir="$(mktemp -d)"
etcd_pid=""
cleanup() {
    if [[ -n "$etcd_pid" ]] && kill -0 "$etcd_pid" 2>/dev/null; then
        kill "$etcd_pid"
        wait "$etcd_pid" || true
    fi
    rm -rf "$work_dir"
}
trap cleanup EXIT

data_dir="$work_dir/data"
etcd --name fixture \
    --data-dir "$data_dir" \
    --listen-client-urls "http://127.0.0.1:$client_port" \
    --advertise-client-urls "http://127.0.0.1:$client_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "fixture=http://127.0.0.1:$peer_port" \
    --initial-cluster-token ringraft-fixture \
    --initial-cluster-state new \
    --snapshot-count "$snapshot_count" \
    >"$work_dir/etcd.log" 2>&1 &
etcd_pid=$!

export ETCDCTL_API=3
endpoint="http://127.0.0.1:$client_port"
for _ in $(seq 1 100); do
    if etcdctl --endpoints "$endpoint" endpoint health >/dev/null 2>&1; then
        break
    fi
    sleep 0.2
done
etcdctl --endpoints "$endpoint" endpoint health

for i in $(seq 1 "$key_count"); do
    etcdctl --endpoints "$endpoint" put "key-$i" "value-$i" >/dev/null
done
etcdctl --endpoints "$endpoint" del key-1 >/dev/null

kill -TERM "$etcd_pid"
wait "$etcd_pid" || true
etcd_pid=""

rm -rf "$fixture_dir"
mkdir -p "$fixture_dir/member/wal" "$fixture_dir/member/snap"
for wal in "$data_dir"/member/wal/*.wal; do
    # End of the last frame: each frame is an 8-byte little-endian length
    # word (record length in the low 56 bits, 0x80|padding in the top byte)
    # followed by the record and its padding; a zero word ends the data.
    data_end="$(python3 - "$wal" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
offset = 0
while offset + 8 <= len(data):
    (word,) = struct.unpack_from("<Q", data, offset)
    if word == 0:
        break
    record_len = word & ((1 << 56) - 1)
    pad = (word >> 56) & 0x7 if word >> 63 else 0
    if offset + 8 + record_len + pad > len(data):
        sys.exit("frame at %d runs past the end of %s" % (offset, sys.argv[1]))
    offset += 8 + record_len + pad
print(offset)
PY
)"
    head -c "$data_end" "$wal" >"$fixture_dir/member/wal/$(basename "$wal")"
done
cp "$data_dir"/member/snap/*.snap "$fixture_dir/member/snap/"
etcd --version | head -1 >"$fixture_dir/ETCD_VERSION"
ls -l "$fixture_dir"/member/*
