#!/usr/bin/env bash
# Two ringraft binaries alternating on the 3-node embedded bench: writes/s,
# p99, raft messages between nodes per write (`messages_per_op`, which
# both binaries must report: 50a434e on) and entries per fsync, per run.
# Order swaps every other round; a `sync` and a 2 s pause precede each
# run, so one run's writeback does not land in the next.
#
# Usage: benches/messages-per-write.sh OLD_BINARY NEW_BINARY [ROUNDS]   (default 6)
#   env: BENCH_ARGS (default "--embedded --nodes 3 --clients 256 --value-size 256 --duration 5s")
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 OLD_BINARY NEW_BINARY [ROUNDS]" >&2; exit 1; }
OLD=$1 NEW=$2 ROUNDS=${3:-6}
ARGS=${BENCH_ARGS:-"--embedded --nodes 3 --clients 256 --value-size 256 --duration 5s"}
for bin in "$OLD" "$NEW"; do
    [ -x "$bin" ] || { echo "error: $bin is not an executable" >&2; exit 1; }
done
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); nproc $(nproc)"
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then order="old new"; else order="new old"; fi
    for which in $order; do
        bin=$OLD; [ "$which" = new ] && bin=$NEW
        sync; sleep 2
        # shellcheck disable=SC2086 # ARGS is a list of flags
        "$bin" bench $ARGS --json --quiet 2>/dev/null | python3 -c "
import json, sys
d = json.loads(sys.stdin.read().strip().splitlines()[-1])
m = d.get('messages_per_op')
print('round $round $which', round(d['ops_per_sec']), 'writes/s  p99', d['p99_ms'], 'ms  messages/write',
      'n/a' if m is None else round(m, 3), ' entries/fsync', round(d['entries_per_fsync'] or 0, 1))"
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
