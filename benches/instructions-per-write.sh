#!/usr/bin/env bash
# Instructions per write of ringraft binaries, counted by valgrind's
# callgrind: for the node's three actors together and each of them (raft,
# persistence, apply), and for the rest of the process (the bench's
# clients, the node handle's side of each request, the runtime, start-up)
# without the bench's once-a-second report, whose cost per write would
# otherwise fall as the write rate rises.
#
# Why: on a shared 2-vCPU VM the same binary's throughput swings by 20 %
# within minutes, so a change of a few percent in CPU per write does not
# show in writes/s. An instruction count does not depend on the clock or
# on the neighbours; it still depends on how the run batched (valgrind runs
# one thread at a time, so batches are small and per-batch costs weigh more
# than at full speed), which is why the batching figures are printed too.
# memcpy/memset of large blocks count one instruction per few bytes
# (valgrind emulates `rep movsb`), so copies weigh more here than in time.
#
# Usage: benches/instructions-per-write.sh BINARY [BINARY ...]
# Settings (environment):
#   BENCH_ARGS  flags of `ringraft bench`, default
#               "--embedded --nodes 1 --clients 256 --value-size 256 --duration 20s --warmup 0s"
#               (20 s under valgrind is a few tens of thousands of writes)
#
# Prints, per binary: writes, entries per fsync, then instructions per
# write: the process (without the report), the actors together, each
# actor (inclusive of what it calls), and the rest. Only the process
# column is immune to inlining: a function inlined differently in two
# builds can move instructions between an actor and the rest.
set -euo pipefail

if [ "$#" -lt 1 ]; then
    echo "usage: $0 BINARY [BINARY ...]" >&2
    exit 2
fi
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }
BENCH_ARGS=${BENCH_ARGS:-"--embedded --nodes 1 --clients 256 --value-size 256 --duration 20s --warmup 0s"}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Inclusive instructions of the first (largest) entry of function $2 in
# the callgrind annotation $1. An entry ends with the object's name in
# brackets, or with nothing when callgrind lists it under another file.
inclusive() {
    { grep -E "$2( \[.*\])?\$" "$1" || true; } | head -1 | awk '{gsub(",", "", $1); print $1}'
}

echo "BENCH_ARGS: $BENCH_ARGS; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-24s %7s %9s %9s %9s %9s %9s %9s %9s\n' binary writes per_fsync process node raft persist apply rest
n=0
for binary in "$@"; do
    n=$((n + 1))
    out="$work/$n.out"
    # shellcheck disable=SC2086
    valgrind --tool=callgrind --callgrind-out-file="$out" "$binary" bench $BENCH_ARGS \
        >"$work/$n.log" 2>&1 || { echo "run of $binary failed:" >&2; tail -20 "$work/$n.log" >&2; exit 1; }
    writes=$(grep -E '^ +operations' "$work/$n.log" | awk '{gsub(",", "", $2); print $2}')
    per_fsync=$(grep -E '^ +fsyncs' "$work/$n.log" | sed -E 's/.*\(([0-9.]+) entries per fsync.*/\1/')
    total=$(grep -E 'I +refs' "$work/$n.log" | awk '{gsub(",", "", $NF); print $NF}')
    callgrind_annotate --inclusive=yes "$out" >"$work/$n.txt" 2>/dev/null
    raft=$(inclusive "$work/$n.txt" 'RaftActor<S>::run::\{\{closure\}\}')
    persist=$(inclusive "$work/$n.txt" 'persist::actor::Actor<B>::run::\{\{closure\}\}')
    apply=$(inclusive "$work/$n.txt" 'ApplyActor<S>::run::\{\{closure\}\}')
    report=$(inclusive "$work/$n.txt" 'histogram::Latencies::take_interval')
    node=$((${raft:-0} + ${persist:-0} + ${apply:-0}))
    rest=$((total - node - ${report:-0}))
    per() { awk -v a="${1:-0}" -v w="$writes" 'BEGIN { printf "%.0f", a / w }'; }
    printf '%-24s %7s %9s %9s %9s %9s %9s %9s %9s\n' "$(basename "$binary")" "$writes" "$per_fsync" \
        "$(per "$((total - ${report:-0}))")" "$(per "$node")" "$(per "$raft")" "$(per "$persist")" "$(per "$apply")" "$(per "$rest")"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
