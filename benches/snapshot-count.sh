#!/usr/bin/env bash
# What `--snapshot-count` costs: `ringraft bench --embedded` (one node, real
# fdatasync) with the same workload at each snapshot count in COUNTS, the
# counts taking turns within each round (the order rotates every round), then
# the median writes/s, p50 and p99 per count, and the load average before and
# after. The warmup fills the state first (KEYS keys of VALUE bytes), so every
# snapshot taken while measuring writes the whole state.
#
# Usage: benches/snapshot-count.sh [BINARY] [ROUNDS]
# Environment: COUNTS (default "10000 100000"), KEYS (200000), VALUE (256),
#   CLIENTS (64), WARMUP (15s), DURATION (15s).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/ringraft}
ROUNDS=${2:-3}
COUNTS=(${COUNTS:-10000 100000})
KEYS=${KEYS:-200000}
VALUE=${VALUE:-256}
CLIENTS=${CLIENTS:-64}
WARMUP=${WARMUP:-15s}
DURATION=${DURATION:-15s}
[ -x "$BIN" ] || { echo "no binary at $BIN (cargo build --release)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$ROUNDS"); do
  n=${#COUNTS[@]}
  for i in $(seq 0 $((n - 1))); do
    count=${COUNTS[$(((i + round) % n))]}
    file="$out/$count-$round.json"
    "$BIN" bench --embedded --nodes 1 --clients "$CLIENTS" --value-size "$VALUE" \
      --key-space "$KEYS" --warmup "$WARMUP" --duration "$DURATION" \
      --snapshot-count "$count" --json --quiet > "$file"
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"round {sys.argv[3]} count {sys.argv[2]:>7}: {r['ops_per_sec']:8.0f} writes/s  p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms\")" "$file" "$count" "$round"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$out" "${COUNTS[@]}" <<'EOF'
import glob, json, statistics, sys
for count in sys.argv[2:]:
    runs = [json.load(open(f)) for f in glob.glob(f"{sys.argv[1]}/{count}-*.json")]
    m = lambda k: statistics.median(r[k] for r in runs)
    print(f"median count {count:>7}: {m('ops_per_sec'):8.0f} writes/s  p50 {m('p50_ms'):.3f} ms  p99 {m('p99_ms'):.3f} ms  p99.9 {m('p999_ms'):.3f} ms")
EOF
