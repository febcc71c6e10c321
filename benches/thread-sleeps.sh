#!/usr/bin/env bash
# Where a lone writer's time goes between threads: per-thread voluntary
# context switches (a thread going to sleep, to be woken by another) per
# write, during a 1-client embedded bench, from /proc/PID/task/*/status.
# One write needs one sleep of the tokio workers (waiting for the
# fdatasync's acknowledgement); more means a write's tasks were handed
# between workers. Compare with TOKIO_WORKER_THREADS=1 (all tasks on one
# worker).
#
# Usage: benches/thread-sleeps.sh [BINARY]   (default target/release/ringraft)
#   env: DURATION (bench seconds, default 6; the window is 3 s in the middle)
set -euo pipefail
BIN=${1:-target/release/ringraft}
DURATION=${DURATION:-6}
[ -x "$BIN" ] || { echo "error: $BIN is not an executable" >&2; exit 1; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$BIN" bench --embedded --nodes 1 --clients 1 --value-size 256 \
    --duration "${DURATION}s" --json --quiet >"$out" 2>/dev/null &
bench=$!
sleep 2
snapshot() {
    for task in /proc/"$bench"/task/*; do
        printf '%s %s %s\n' "$(basename "$task")" "$(tr ' ' '_' <"$task/comm")" \
            "$(awk '/^voluntary_ctxt_switches/{v=$2} /^nonvoluntary_ctxt_switches/{n=$2} END{print v, n}' "$task/status")"
    done
}
before=$(snapshot); t0=$(date +%s.%N)
sleep 3
after=$(snapshot); t1=$(date +%s.%N)
wait "$bench"
python3 - "$before" "$after" "$t0" "$t1" "$out" <<'PY'
import json, sys
before = {l.split()[0]: l.split() for l in sys.argv[1].splitlines()}
after = {l.split()[0]: l.split() for l in sys.argv[2].splitlines()}
seconds = float(sys.argv[4]) - float(sys.argv[3])
report = json.loads(open(sys.argv[5]).read().strip().splitlines()[-1])
rate = report["ops_per_sec"]
print(f"{rate:.0f} writes/s, p50 {report['p50_ms']} ms; window {seconds:.2f} s")
by_name = {}
for tid, row in after.items():
    if tid not in before:
        continue
    name = row[1].rstrip("0123456789-_") or row[1]
    sums = by_name.setdefault(name, [0, 0, 0])
    sums[0] += int(row[2]) - int(before[tid][2])
    sums[1] += int(row[3]) - int(before[tid][3])
    sums[2] += 1
for name, (vol, invol, threads) in sorted(by_name.items(), key=lambda x: -x[1][0]):
    if vol + invol:
        print(f"{name:24s} threads {threads:2d}  sleeps per write {vol / seconds / rate:5.2f}"
              f"  preemptions per write {invol / seconds / rate:5.2f}")
PY
