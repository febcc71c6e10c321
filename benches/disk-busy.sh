#!/usr/bin/env bash
# Runs a command and reports what the block device did meanwhile, from
# /proc/diskstats before and after: how much of the wall time it had a
# request in flight ("busy", the io_ticks counter), its writes (count,
# megabytes, milliseconds each) and its cache flushes (count, milliseconds
# each; an fdatasync on a disk with a volatile write cache issues one).
#
# Why: a bench's own fsync time says how long the node waited, not whether
# the disk was the bottleneck. A disk busy half the time while the node
# waits for it means the wait is elsewhere (the serial work between
# batches); a disk busy all the time bounds the throughput.
#
# Usage: benches/disk-busy.sh COMMAND [ARGS...]
#   env: DEVICE (default: the device holding the bench's default data
#        directory: ${TMPDIR:-/tmp}, or /var/tmp when that is a tmpfs, as
#        `ringraft bench` chooses it; e.g. vda, or vda1 for a partition,
#        whose line counts only that partition's IO)
# Example, goal 1 of issue 18:
#   benches/disk-busy.sh target/release/ringraft bench --embedded --nodes 1 \
#       --clients 256 --value-size 256 --duration 5s
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }
if [ -z "${DEVICE:-}" ]; then
  data_parent=${TMPDIR:-/tmp}
  [ "$(stat -f -c %T "$data_parent")" = tmpfs ] && data_parent=/var/tmp
  source=$(df --output=source "$data_parent" | tail -1)
  DEVICE=$(basename "$(readlink -f "$source")")
fi
grep -q " $DEVICE " /proc/diskstats || { echo "no device '$DEVICE' in /proc/diskstats (set DEVICE)" >&2; exit 2; }

# writes, sectors written, ms writing, io_ticks ms, flushes, ms flushing
counters() { awk -v d="$DEVICE" '$3 == d { print $8, $10, $11, $13, $19, $20 }' /proc/diskstats; }

before=$(counters)
started=$(date +%s%N)
"$@"
after=$(counters)
ended=$(date +%s%N)
python3 - "$before" "$after" "$started" "$ended" "$DEVICE" <<'PY'
import sys
before = [int(x) for x in sys.argv[1].split()]
after = [int(x) for x in sys.argv[2].split()]
wall_ms = (int(sys.argv[4]) - int(sys.argv[3])) / 1e6
writes, sectors, write_ms, busy_ms, flushes, flush_ms = (a - b for a, b in zip(after, before))
print(f"{sys.argv[5]}: wall {wall_ms:.0f} ms; busy {busy_ms / wall_ms * 100:.0f} %; "
      f"writes {writes} ({sectors * 512 / 1e6:.1f} MB, {write_ms / max(1, writes):.3f} ms each); "
      f"flushes {flushes} ({flush_ms / max(1, flushes):.3f} ms each)")
PY
