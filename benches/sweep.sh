#!/usr/bin/env bash
# The embedded sweep: `ringraft bench --embedded` over a range of client
# counts for 1 node and 3 nodes (early send off and on), one fresh cluster
# per run (data directories in a temporary directory on a disk, real
# fdatasync), every run a CSV row (plus one raw write+fdatasync run per
# repeat, the disk's floor at that moment), then the SVG plots and the table of
# medians (examples/plot_sweep.rs).
#
# Usage: benches/sweep.sh
# Settings (environment):
#   CLIENTS="1 4 16 64 256 1024"
#   CLUSTERS="1 3 3e"     1 node; 3 nodes; 3 nodes with --send-appends-early
#   DURATION=3s           measured time per run
#   WARMUP=1s             unmeasured time before each run
#   VALUE_SIZE=256
#   REPEATS=1             runs per point (the table and plots take medians)
#   EXTRA=""              more `ringraft bench` flags (e.g. "--backend std")
#   OUT=benches/results/sweep.csv   (plots and table beside it)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
CLIENTS=${CLIENTS:-"1 4 16 64 256 1024"}
CLUSTERS=${CLUSTERS:-"1 3 3e"}
DURATION=${DURATION:-3s}
WARMUP=${WARMUP:-1s}
VALUE_SIZE=${VALUE_SIZE:-256}
REPEATS=${REPEATS:-1}
EXTRA=${EXTRA:-}
OUT=${OUT:-$ROOT/benches/results/sweep.csv}

say() { printf '%s\n' "$*" >&2; }

say "building ringraft and the plotter (release)"
cargo build --release --quiet --bin ringraft --example plot_sweep
RINGRAFT=$ROOT/target/release/ringraft
PLOT=$ROOT/target/release/examples/plot_sweep

mkdir -p "$(dirname "$OUT")"
tmp_out=$(mktemp "${OUT}.XXXXXX")
trap 'rm -f "$tmp_out"' EXIT
header_written=
started=$(date +%s)
say "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for repeat in $(seq "$REPEATS"); do
  # The disk's floor in the same conditions: one thread of write +
  # fdatasync on a preallocated file (a row with target raw-fsync).
  sync
  raw=$("$RINGRAFT" bench --raw-fsync --clients 1 --duration "$DURATION" \
    --value-size "$VALUE_SIZE" --csv --quiet)
  if [ -z "$header_written" ]; then
    printf 'repeat,%s\n' "$(printf '%s\n' "$raw" | head -n 1)" >"$tmp_out"
    header_written=1
  fi
  printf '%s,%s\n' "$repeat" "$(printf '%s\n' "$raw" | tail -n 1)" >>"$tmp_out"
  say "run $repeat, raw write+fdatasync: $(printf '%s\n' "$raw" | tail -n 1 | cut -d, -f13,15,17 |
    awk -F, '{printf "%.0f writes/s, p50 %.2f ms, p99 %.2f ms", $1, $2, $3}')"
  for cluster in $CLUSTERS; do
    nodes=${cluster%e}
    early=(--send-appends-early=false)
    [ "$cluster" != "$nodes" ] && early=(--send-appends-early)
    for clients in $CLIENTS; do
      # Flush other writers' dirty pages now rather than inside our
      # fdatasyncs (ext4 commits them in the same journal transaction).
      sync
      # shellcheck disable=SC2086 # EXTRA is a list of flags
      csv=$("$RINGRAFT" bench --embedded --nodes "$nodes" "${early[@]}" --clients "$clients" \
        --duration "$DURATION" --warmup "$WARMUP" --value-size "$VALUE_SIZE" \
        --csv --quiet $EXTRA)
      if [ -z "$header_written" ]; then
        printf 'repeat,%s\n' "$(printf '%s\n' "$csv" | head -n 1)" >"$tmp_out"
        header_written=1
      fi
      row=$(printf '%s\n' "$csv" | tail -n 1)
      printf '%s,%s\n' "$repeat" "$row" >>"$tmp_out"
      say "$(printf 'run %s, %-3s nodes%s, %4s clients: ' "$repeat" "$nodes" \
        "${early:+ (early send)}" "$clients")$(printf '%s\n' "$row" |
        cut -d, -f13,15,17,21 |
        awk -F, '{printf "%.0f writes/s, p50 %.2f ms, p99 %.2f ms, %.1f entries/fsync", $1, $2, $3, $4}')"
    done
  done
done
chmod 644 "$tmp_out"
mv "$tmp_out" "$OUT"
trap - EXIT
say "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
say "sweep took $(( $(date +%s) - started )) s; rows in $OUT"
"$PLOT" "$OUT" "$(dirname "$OUT")"
