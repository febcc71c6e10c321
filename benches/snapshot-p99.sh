#!/usr/bin/env bash
# Write latency while snapshots of a large state are being saved, against
# the same workload with no snapshot at all: `ringraft bench --embedded`
# (one node, real data directory, real fdatasync) writing 4 KiB values over
# KEYS keys, so that after the warmup the state holds KEYS × 4 KiB (about
# 310 MiB for the default 80,000 keys, ≥ 256 MiB even with a few keys not
# yet drawn). "with" runs snapshot every 5,000 entries, so a snapshot of the
# whole state is being written (one at a time) during the entire
# measurement; "without" never snapshots.
#
# With several binaries (say, before and after a change), each round runs
# every binary in both modes; the binaries' order and the modes' order
# rotate from round to round, so all of them see about the same machine.
# Prints every run, then per binary the medians and the ratio
# with/without, and the load average before and after.
#
# Usage: benches/snapshot-p99.sh [ROUNDS] [BINARY...]
#   ROUNDS   default 3
#   BINARY   default target/release/ringraft
# Environment: KEYS (default 80000), WARMUP (default 40s), DURATION (20s),
#   CLIENTS (16).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
shift || true
BINS=("$@")
[ ${#BINS[@]} -gt 0 ] || BINS=(target/release/ringraft)
KEYS=${KEYS:-80000}
WARMUP=${WARMUP:-40s}
DURATION=${DURATION:-20s}
CLIENTS=${CLIENTS:-16}
for bin in "${BINS[@]}"; do
  [ -x "$bin" ] || { echo "no binary at $bin (cargo build --release)" >&2; exit 1; }
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

run() { # binary_number mode snapshot_count round
  local bin=${BINS[$1]} file="$out/$1-$2-$4.json"
  "$bin" bench --embedded --nodes 1 --clients "$CLIENTS" --value-size 4096 \
    --key-space "$KEYS" --warmup "$WARMUP" --duration "$DURATION" \
    --snapshot-count "$3" --json --quiet > "$file"
  python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print("round %s %7s %s: %8.0f writes/s  p50 %7.3f ms  p99 %7.3f ms  p99.9 %7.3f ms" % (sys.argv[3], sys.argv[2], sys.argv[4], r["ops_per_sec"], r["p50_ms"], r["p99_ms"], r["p999_ms"]))
' "$file" "$2" "$4" "$bin"
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
n=${#BINS[@]}
for round in $(seq 1 "$ROUNDS"); do
  for i in $(seq 0 $((n - 1))); do
    b=$(((i + round) % n))
    if [ $(((round + i) % 2)) -eq 1 ]; then
      run "$b" without 1000000000 "$round"; run "$b" with 5000 "$round"
    else
      run "$b" with 5000 "$round"; run "$b" without 1000000000 "$round"
    fi
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 -c '
import glob, json, statistics, sys
def median(b, mode, field):
    return statistics.median(json.load(open(f))[field] for f in glob.glob(f"{sys.argv[1]}/{b}-{mode}-*.json"))
for b, bin in enumerate(sys.argv[2:]):
    print(bin)
    for field in ("ops_per_sec", "p50_ms", "p99_ms", "p999_ms"):
        with_, without = median(b, "with", field), median(b, "without", field)
        print(f"  median {field:>11}: with snapshots {with_:10.3f}  without {without:10.3f}  ratio {with_ / without:.2f}")
' "$out" "${BINS[@]}"
