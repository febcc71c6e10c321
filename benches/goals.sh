#!/usr/bin/env bash
# The hot-path goals of issue 18, old binary against new, in one script:
#
#   1. embedded, 1 node, 256 clients, 256 B values:      ≥ 300,000 writes/s
#   2. embedded, 3 nodes, same workload:                  ≥ 100,000 writes/s
#   3. embedded, 1 node, 1 client: p50 ≤ 1.5 × the p50 of `--raw-fsync
#      --clients 1` measured in the same round
#   4. `ringraft serve` over HTTP against etcd, 64 clients: ≥ 3 × etcd's
#      writes/s (benches/compare-etcd.sh with RINGRAFT_OLD, so old, new and
#      etcd share one run)
#
# Goals 1–3 alternate old and new (and, for 3, the raw fsync) within each
# round, swapping the order every other round, and report medians and
# new/old ratios (benches/compare-embedded.sh does 1 and 2). Load averages
# are printed before and after each part: a machine that is busy elsewhere
# shows there.
#
# Usage: benches/goals.sh OLD_BINARY NEW_BINARY [ROUNDS]
#   ROUNDS   rounds per part (default 5)
# Settings (environment):
#   DURATION=5s     measured time per embedded run
#   SKIP_ETCD=1     leave out part 4 (it installs etcd-server when missing)
set -euo pipefail

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[ $# -ge 2 ] && [ $# -le 3 ] || die "usage: $0 OLD_BINARY NEW_BINARY [ROUNDS]"
cd "$(dirname "$0")/.."
OLD=$(readlink -f "$1")
NEW=$(readlink -f "$2")
ROUNDS=${3:-5}
DURATION=${DURATION:-5s}
[ -x "$OLD" ] || die "$OLD is not an executable"
[ -x "$NEW" ] || die "$NEW is not an executable"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"

load() { say "load average $1: $(cut -d' ' -f1-3 /proc/loadavg) (nproc $(nproc))"; }
WORKLOAD="--value-size 256 --duration $DURATION"

# throughput_goal NODES: old against new, 256 clients (compare-embedded.sh).
throughput_goal() {
  load before
  BENCH_ARGS="--embedded --nodes $1 --clients 256 $WORKLOAD" \
    benches/compare-embedded.sh "$OLD" "$NEW" "$ROUNDS" 2>&1 | sed -n '/^round/,$p'
  load after
}

echo "## goal 1: embedded, 1 node, 256 clients (≥ 300,000 writes/s)"
throughput_goal 1

echo
echo "## goal 2: embedded, 3 nodes, 256 clients (≥ 100,000 writes/s)"
throughput_goal 3

echo
echo "## goal 3: embedded, 1 node, 1 client: p50 against raw fdatasync p50 (≤ 1.5×)"
load before
WORK=$(mktemp -d "${TMPDIR:-/tmp}/goals.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# p50 BINARY ARGS…: the p50 in ms of one bench run.
p50() {
  local bin=$1 out
  shift
  sync
  out=$("$bin" bench "$@" --value-size 256 --duration "$DURATION" --json --quiet) ||
    die "$bin bench $* failed"
  printf '%s\n' "$out" | grep '^{' | tail -n 1 | sed -n 's/.*"p50_ms":\([0-9.]*\).*/\1/p'
}
for round in $(seq "$ROUNDS"); do
  order="old new raw"
  if [ $((round % 2)) -eq 0 ]; then order="raw new old"; fi
  for which in $order; do
    case $which in
      old) value=$(p50 "$OLD" --embedded --nodes 1 --clients 1) ;;
      new) value=$(p50 "$NEW" --embedded --nodes 1 --clients 1) ;;
      raw) value=$(p50 "$NEW" --raw-fsync --clients 1) ;;
    esac
    printf '%s %s %s\n' "$round" "$which" "$value" >>"$WORK/p50"
  done
done
median() {
  awk -v w="$1" '$2 == w { print $3 }' "$WORK/p50" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
printf 'round  old p50 ms  new p50 ms  raw fsync p50 ms  old/raw  new/raw\n'
for round in $(seq "$ROUNDS"); do
  o=$(awk -v r="$round" '$1 == r && $2 == "old" { print $3 }' "$WORK/p50")
  n=$(awk -v r="$round" '$1 == r && $2 == "new" { print $3 }' "$WORK/p50")
  r=$(awk -v r="$round" '$1 == r && $2 == "raw" { print $3 }' "$WORK/p50")
  awk -v round="$round" -v o="$o" -v n="$n" -v r="$r" \
    'BEGIN { printf "%-6s %-11s %-11s %-17s %.2f     %.2f\n", round, o, n, r, o / r, n / r }'
done
o=$(median old) n=$(median new) r=$(median raw)
awk -v o="$o" -v n="$n" -v r="$r" \
  'BEGIN { printf "median %-11s %-11s %-17s %.2f     %.2f\n", o, n, r, o / r, n / r }'
load after

if [ "${SKIP_ETCD:-0}" = 1 ]; then exit 0; fi
echo
echo "## goal 4: ringraft serve vs etcd over HTTP, 64 clients (≥ 3× etcd)"
CLIENTS=64 REPEATS="$ROUNDS" RINGRAFT="$NEW" RINGRAFT_OLD="$OLD" benches/compare-etcd.sh
