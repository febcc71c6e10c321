#!/usr/bin/env bash
# Write latency while snapshots of a large state are being saved, against
# the same workload with no snapshot at all: `ringraft bench --embedded`
# (one node, real data directory, real fdatasync) writing 4 KiB values over
# KEYS keys, so that after the warmup the state holds KEYS × 4 KiB (about
# 310 MiB for the default 80,000 keys, ≥ 256 MiB even with a few keys not
# yet drawn). "with" runs snapshot every 5,000 entries, so a snapshot of the
# whole state is being written (one at a time) during the entire
# measurement; "without" never snapshots. Rounds alternate which mode goes
# first, and the script prints each run, then the medians and the ratio
# with/without, and the load average before and after.
#
# Usage: benches/snapshot-p99.sh [BINARY] [ROUNDS]
#   BINARY   default target/release/ringraft
#   ROUNDS   default 3
# Environment: KEYS (default 80000), WARMUP (default 40s), DURATION (20s),
#   CLIENTS (16).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/ringraft}
ROUNDS=${2:-3}
KEYS=${KEYS:-80000}
WARMUP=${WARMUP:-40s}
DURATION=${DURATION:-20s}
CLIENTS=${CLIENTS:-16}
[ -x "$BIN" ] || { echo "no binary at $BIN (cargo build --release)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

run() { # mode snapshot_count round
  local file="$out/$1-$3.json"
  "$BIN" bench --embedded --nodes 1 --clients "$CLIENTS" --value-size 4096 \
    --key-space "$KEYS" --warmup "$WARMUP" --duration "$DURATION" \
    --snapshot-count "$2" --json --quiet > "$file"
  python3 - "$file" "$1" "$3" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"round {sys.argv[3]} {sys.argv[2]:>7}: {r['ops_per_sec']:8.0f} writes/s  p50 {r['p50_ms']:7.3f} ms  p99 {r['p99_ms']:7.3f} ms  p99.9 {r['p999_ms']:7.3f} ms")
EOF
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then
    run without 1000000000 "$round"; run with 5000 "$round"
  else
    run with 5000 "$round"; run without 1000000000 "$round"
  fi
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$out" <<'EOF'
import glob, json, statistics, sys
def median(mode, field):
    return statistics.median(json.load(open(f))[field] for f in glob.glob(f"{sys.argv[1]}/{mode}-*.json"))
for field in ("ops_per_sec", "p50_ms", "p99_ms", "p999_ms"):
    with_, without = median("with", field), median("without", field)
    print(f"median {field:>11}: with snapshots {with_:10.3f}  without {without:10.3f}  ratio {with_ / without:.2f}")
EOF
