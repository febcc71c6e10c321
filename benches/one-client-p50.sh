#!/usr/bin/env bash
# Goal 3's measurement for several builds at once: the p50 latency of one
# embedded client's writes (`--nodes 1 --clients 1`), for each binary in
# turn and then the raw `pwrite` + `fdatasync` loop (`--raw-fsync
# --clients 1`, run with the first binary), ROUNDS times, then each one's
# median and its ratio to the raw loop's median.
#
# Why this and not goals.sh's goal 3: it takes any number of builds (the
# variants of one experiment side by side), and it `sync`s and pauses
# before every run, so that one run's writeback does not land in the next
# one's fdatasyncs; on this shared VM that writeback moved single p50s by
# 2x. The order is the same in every round; the medians drop the odd
# disturbed run. The load average before and after says how noisy it was.
#
# Usage: benches/one-client-p50.sh ROUNDS BINARY [BINARY...]
#   env: DURATION (seconds per run, default 3), PAUSE (seconds after the
#   sync, default 1)
# Prints one line per round ("round  <p50 ms per binary>  raw"), then the
# medians. Exits non-zero with a message when a binary is missing or a run
# gives no p50.
set -euo pipefail

die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[ $# -ge 2 ] || die "usage: $0 ROUNDS BINARY [BINARY...]"
ROUNDS=$1; shift
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not '$ROUNDS'"
DURATION=${DURATION:-3}
PAUSE=${PAUSE:-1}
for bin in "$@"; do [ -x "$bin" ] || die "$bin is not an executable"; done
FIRST=$1

# p50 BINARY ARGS...: one run's p50 in ms, from --json.
p50() {
  local bin=$1; shift
  sync; sleep "$PAUSE"
  "$bin" bench "$@" --clients 1 --value-size 256 --duration "${DURATION}s" --json --quiet \
    2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["p50_ms"])' \
    || die "no p50 from $bin $*"
}

median() { sort -g | awk '{ v[NR] = $1 } END { m = int((NR + 1) / 2); print (NR % 2) ? v[m] : (v[m] + v[m + 1]) / 2 }'; }

results=$(mktemp)
trap 'rm -f "$results"' EXIT
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (nproc $(nproc))"
printf 'round'; for bin in "$@"; do printf '  %s' "$(basename "$bin")"; done; printf '  raw\n'
for round in $(seq 1 "$ROUNDS"); do
  printf '%s' "$round"
  column=0
  for bin in "$@"; do
    column=$((column + 1))
    value=$(p50 "$bin" --embedded --nodes 1)
    printf '  %s' "$value"
    echo "$column $value" >>"$results"
  done
  value=$(p50 "$FIRST" --raw-fsync)
  printf '  %s\n' "$value"
  echo "raw $value" >>"$results"
done
raw=$(awk '$1 == "raw" { print $2 }' "$results" | median)
column=0
for bin in "$@"; do
  column=$((column + 1))
  m=$(awk -v c="$column" '$1 == c { print $2 }' "$results" | median)
  printf 'median %s p50 %s ms = %.2f x raw\n' "$(basename "$bin")" "$m" "$(echo "$m $raw" | awk '{ print $1 / $2 }')"
done
echo "median raw fdatasync p50 $raw ms"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg) (nproc $(nproc))"
