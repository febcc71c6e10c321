#!/usr/bin/env bash
# Two ringraft binaries (say, before and after a change) head to head on the
# embedded write benchmark: throughput (writes/s; the default workload is
# writes only, so that is the bench's ops/s) and the p50/p99 latencies of
# `ringraft bench` with the same flags for both, ROUNDS rounds, then the
# medians and the ratio new/old.
#
# Why rounds, and why the order alternates: this is meant for a shared, noisy
# machine (other builds, page cache, disk writeback, CPU frequency), where
# the load drifts over minutes. Running old and new back to back in each
# round puts both under about the same conditions; swapping which one goes
# first every other round (round 1 old,new; round 2 new,old; ...) keeps a
# first-runs-in-a-quieter-moment (or second-runs-after-writeback) effect from
# favouring either one; the medians drop the odd disturbed run. The load
# averages before and after say how noisy it was. Running the same binary as
# both OLD and NEW shows the noise floor: ratios that far from 1.000 mean the
# machine was too busy for a difference that small to count.
#
# Usage: benches/compare-embedded.sh OLD_BINARY NEW_BINARY [ROUNDS]
#   ROUNDS       rounds of one OLD and one NEW run each (default 5)
# Settings (environment):
#   BENCH_ARGS   flags of `ringraft bench`, default
#                "--embedded --nodes 1 --clients 256 --value-size 256 --duration 5s"
#                (--json --quiet are added when the binary has --json; any
#                --json/--csv/--quiet given here are dropped)
#   PAUSE=1      seconds to wait (after a `sync`) before each run
#
# Exits non-zero with a message when a binary is missing, a run fails or its
# throughput cannot be read; raw outputs are then kept in a temporary
# directory whose name is printed.
set -euo pipefail

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

usage="usage: $0 OLD_BINARY NEW_BINARY [ROUNDS]   (env: BENCH_ARGS, PAUSE)"
if [ $# -lt 2 ] || [ $# -gt 3 ]; then die "$usage"; fi

ROUNDS=${3:-5}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not '$ROUNDS'"
PAUSE=${PAUSE:-1}
[[ $PAUSE =~ ^[0-9]+([.][0-9]+)?$ ]] || die "PAUSE must be a number of seconds, not '$PAUSE'"
BENCH_ARGS=${BENCH_ARGS:-"--embedded --nodes 1 --clients 256 --value-size 256 --duration 5s"}

# resolve BINARY: an absolute path of an executable file, or die.
resolve() {
  local bin=$1 path
  if [[ $bin == */* ]]; then
    path=$bin
  else
    path=$(command -v -- "$bin" 2>/dev/null) || die "binary '$bin' not found (not a path and not on PATH)"
  fi
  [ -e "$path" ] || die "binary '$bin' does not exist"
  if ! [ -f "$path" ] || ! [ -x "$path" ]; then die "'$bin' is not an executable file"; fi
  (cd "$(dirname -- "$path")" && printf '%s/%s\n' "$PWD" "$(basename -- "$path")")
}
OLD=$(resolve "$1")
NEW=$(resolve "$2")

# The user's flags, minus the output-format ones this script chooses.
read -r -a user_args <<<"$BENCH_ARGS"
args=()
for a in "${user_args[@]}"; do
  case $a in
    --json | --csv | --quiet) ;;
    *) args+=("$a") ;;
  esac
done

# has_json BINARY: whether its `bench` has --json (else the text summary is
# parsed). Also checks that it is a ringraft with a `bench` at all.
has_json() {
  local help
  help=$("$1" bench --help 2>&1) || die "'$1 bench --help' failed; is it a ringraft binary? it said: $(printf '%s' "$help" | head -n 3)"
  grep -q -- '--json' <<<"$help"
}
OLD_JSON=0 NEW_JSON=0
if has_json "$OLD"; then OLD_JSON=1; fi
if has_json "$NEW"; then NEW_JSON=1; fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/compare-embedded.XXXXXX")
keep_work=1
cleanup() {
  if [ "$keep_work" = 1 ]; then
    say "raw outputs kept in $WORK"
  else
    rm -rf -- "$WORK"
  fi
}
trap cleanup EXIT

load() { printf 'load %s: %s; nproc %s\n' "$1" "$(uptime | sed 's/.*load average[s]*: *//')" "$(nproc)"; }

# json_num FILE KEY: the number KEY of the flat JSON object in FILE, or "".
json_num() {
  sed -n 's/.*[{,]"'"$2"'":\(-\{0,1\}[0-9][0-9.eE+-]*\).*/\1/p' "$1" | tail -n 1
}

# run WHICH ROUND: one bench run of OLD or NEW; appends
# "round which ops_per_sec p50_ms p99_ms errors" to $WORK/results.
run() {
  local which=$1 round=$2 bin json out err rate p50 p99 errors status
  if [ "$which" = old ]; then bin=$OLD json=$OLD_JSON; else bin=$NEW json=$NEW_JSON; fi
  out=$WORK/round$round-$which.out
  err=$WORK/round$round-$which.err
  sync
  sleep "$PAUSE"
  status=0
  if [ "$json" = 1 ]; then
    "$bin" bench "${args[@]}" --json --quiet >"$out" 2>"$err" || status=$?
  else
    "$bin" bench "${args[@]}" >"$out" 2>"$err" || status=$?
  fi
  if [ "$status" -ne 0 ]; then
    say "error: round $round, $which run failed (exit $status): $bin bench ${args[*]}"
    tail -n 20 "$err" >&2
    exit 1
  fi
  if [ "$json" = 1 ]; then
    grep '^{' "$out" | tail -n 1 >"$out.json" || true
    # writes/s: writes over the measured time (= ops_per_sec when the
    # workload is writes only, as by default)
    rate=$(awk -v w="$(json_num "$out.json" writes)" -v d="$(json_num "$out.json" duration_s)" \
      'BEGIN { if (w != "" && d > 0) printf "%.3f", w / d }')
    p50=$(json_num "$out.json" p50_ms)
    p99=$(json_num "$out.json" p99_ms)
    errors=$(json_num "$out.json" errors)
  else
    # "  throughput   58,718 ops/s" and "  latency  p50 3.883 ms  p90 … p99 25.007 ms …"
    rate=$(sed -n 's/^ *throughput *\([0-9][0-9,.]*\) ops\/s.*/\1/p' "$out" | tr -d , | tail -n 1)
    p50=$(sed -n 's/^ *latency .* p50 \([0-9.]*\) ms.*/\1/p' "$out" | tail -n 1)
    p99=$(sed -n 's/^ *latency .* p99 \([0-9.]*\) ms.*/\1/p' "$out" | tail -n 1)
    errors=$(sed -n 's/^ *operations .*errors \([0-9,]*\).*/\1/p' "$out" | tr -d , | tail -n 1)
  fi
  if ! [[ $rate =~ ^[0-9]+([.][0-9]+)?([eE][+-]?[0-9]+)?$ ]]; then
    say "error: round $round, $which run: no throughput in its output ($out):"
    head -n 20 "$out" >&2
    exit 1
  fi
  if [ "$json" = 0 ] && ! grep -q '^ *operations .*reads 0)' "$out"; then
    say "warning: round $round, $which run: the workload has reads; its text summary gives ops/s, not writes/s"
  fi
  [ -n "$p50" ] || p50=-
  [ -n "$p99" ] || p99=-
  [ -n "$errors" ] || errors=-
  if [ "$errors" != - ] && [ "$errors" != 0 ]; then
    say "warning: round $round, $which run had $errors failed operations"
  fi
  printf '%s %s %s %s %s %s\n' "$round" "$which" "$rate" "$p50" "$p99" "$errors" >>"$WORK/results"
  printf '  round %d %-3s  %10.0f writes/s  p50 %s ms  p99 %s ms  errors %s\n' \
    "$round" "$which" "$rate" "$p50" "$p99" "$errors"
}

# median WHICH COLUMN: the median of a column (3 rate, 4 p50, 5 p99) over the
# rounds of OLD or NEW ("-" when a value is missing).
median() {
  awk -v which="$1" -v col="$2" '$2 == which { print $col }' "$WORK/results" | sort -g | awk '
    $1 == "-" { missing = 1 }
    { v[NR] = $1 }
    END {
      if (missing || NR == 0) { print "-"; exit }
      if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2
    }'
}
# value ROUND WHICH COLUMN
value() { awk -v r="$1" -v which="$2" -v col="$3" '$1 == r && $2 == which { print $col }' "$WORK/results"; }
ratio() { awk -v n="$1" -v o="$2" 'BEGIN { if (n != "-" && o != "-" && o > 0) printf "%.3f", n / o; else print "-" }'; }
fmt_rate() { awk -v x="$1" 'BEGIN { if (x == "-") print "-"; else printf "%.0f", x }'; }
fmt_ms() { awk -v x="$1" 'BEGIN { if (x == "-") print "-"; else printf "%.3f", x }'; }

echo "compare-embedded: rounds $ROUNDS, each old and new once, of \`bench ${args[*]}\`"
echo "  old: $OLD$([ "$OLD_JSON" = 1 ] || echo ' (no --json: parsing its text summary)')"
echo "  new: $NEW$([ "$NEW_JSON" = 1 ] || echo ' (no --json: parsing its text summary)')"
[ "$OLD" != "$NEW" ] || echo "  (old and new are the same binary: the ratio shows this machine's noise)"
load before
: >"$WORK/results"
for ((round = 1; round <= ROUNDS; round++)); do
  if ((round % 2)); then
    run old "$round"
    run new "$round"
  else
    run new "$round"
    run old "$round"
  fi
done
load after
echo

printf '%-7s %-8s %12s %12s %8s %10s %10s %10s %10s\n' \
  round order "old w/s" "new w/s" new/old "old p50" "new p50" "old p99" "new p99"
for ((round = 1; round <= ROUNDS; round++)); do
  if ((round % 2)); then order=old,new; else order=new,old; fi
  o=$(value "$round" old 3) n=$(value "$round" new 3)
  printf '%-7s %-8s %12s %12s %8s %10s %10s %10s %10s\n' "$round" "$order" \
    "$(fmt_rate "$o")" "$(fmt_rate "$n")" "$(ratio "$n" "$o")" \
    "$(fmt_ms "$(value "$round" old 4)")" "$(fmt_ms "$(value "$round" new 4)")" \
    "$(fmt_ms "$(value "$round" old 5)")" "$(fmt_ms "$(value "$round" new 5)")"
done
mo=$(median old 3) mn=$(median new 3)
printf '%-7s %-8s %12s %12s %8s %10s %10s %10s %10s\n' median "" \
  "$(fmt_rate "$mo")" "$(fmt_rate "$mn")" "$(ratio "$mn" "$mo")" \
  "$(fmt_ms "$(median old 4)")" "$(fmt_ms "$(median new 4)")" \
  "$(fmt_ms "$(median old 5)")" "$(fmt_ms "$(median new 5)")"
echo "(w/s: writes per second; p50/p99 in ms; median row: median of each column over the rounds)"
echo
echo "median old $(fmt_rate "$mo") writes/s, median new $(fmt_rate "$mn") writes/s, new/old $(ratio "$mn" "$mo")"

keep_work=0
