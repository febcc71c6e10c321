#!/usr/bin/env bash
# ringraft against etcd on this machine, side by side: one single-node etcd
# and one single-node `ringraft serve` on loopback, their data directories on
# the same disk (under target/, never a tmpfs), the same workload driven
# against each by `ringraft bench --target` (keep-alive HTTP/1.1, one
# connection per client; etcd through its v3 JSON gateway), and one table of
# medians at the end.
#
# Usage: benches/compare-etcd.sh
# Settings (environment):
#   CLIENTS="1 16 256"   concurrent clients, one run per value
#   DURATION=10s         measured time per run (after WARMUP)
#   WARMUP=1s            unmeasured time before each run
#   VALUE_SIZE=256       bytes per value
#   READ_RATIO=0         share of reads (linearizable)
#   REPEATS=3            runs per (server, clients); the table shows medians
#   PORT_BASE=23790      etcd client/peer, ringraft client/peer = PORT_BASE+0..3
#   OUT=benches/results/compare-etcd.csv   every run, one CSV row each
#   RINGRAFT=path        the ringraft binary to run (and whose bench drives
#                        every server); default: the working tree's, built
#   RINGRAFT_OLD=path    also run this (older) ringraft binary as a third
#                        server, "ringraft-old", on PORT_BASE+4..5, in the
#                        same rotation: old and new against the same etcd in
#                        one run (benches/goals.sh uses it)
#
# Installs Debian's etcd-server when `etcd` is not on PATH (as root, or with
# sudo when that needs no password; otherwise it stops with what to do).
# Leaves no process behind: both servers are stopped on any exit (trap), and
# their data is removed.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
CLIENTS=${CLIENTS:-"1 16 256"}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
VALUE_SIZE=${VALUE_SIZE:-256}
READ_RATIO=${READ_RATIO:-0}
REPEATS=${REPEATS:-3}
PORT_BASE=${PORT_BASE:-23790}
OUT=${OUT:-$ROOT/benches/results/compare-etcd.csv}

ETCD_CLIENT=$PORT_BASE
ETCD_PEER=$((PORT_BASE + 1))
RR_CLIENT=$((PORT_BASE + 2))
RR_PEER=$((PORT_BASE + 3))
OLD_CLIENT=$((PORT_BASE + 4))
OLD_PEER=$((PORT_BASE + 5))
RINGRAFT_OLD=${RINGRAFT_OLD:-}

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# --- etcd -----------------------------------------------------------------
if ! command -v etcd >/dev/null 2>&1; then
  say "etcd is not installed: installing Debian's etcd-server"
  if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    die "etcd is missing and this user cannot install packages; run 'sudo apt-get install etcd-server' (or put an etcd 3.4+ binary on PATH) and try again"
  fi
  command -v apt-get >/dev/null 2>&1 || die "no apt-get here: install etcd 3.4+ and put it on PATH"
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq etcd-server >/dev/null
  command -v etcd >/dev/null 2>&1 || die "etcd-server installed but no etcd on PATH"
fi
ETCD_VERSION=$(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p')

# --- ringraft -------------------------------------------------------------
if [ -n "${RINGRAFT:-}" ]; then
  [ -x "$RINGRAFT" ] || die "RINGRAFT=$RINGRAFT is not an executable"
else
  say "building ringraft (release)"
  cargo build --release --quiet --bin ringraft
  RINGRAFT=$ROOT/target/release/ringraft
fi

# --- ports free? ----------------------------------------------------------
for port in "$ETCD_CLIENT" "$ETCD_PEER" "$RR_CLIENT" "$RR_PEER" "$OLD_CLIENT" "$OLD_PEER"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is in use (set PORT_BASE to another free range of 4 ports)"
  fi
done

# --- data on the repository's disk ---------------------------------------
mkdir -p "$ROOT/target"
WORK=$(mktemp -d "$ROOT/target/compare-etcd.XXXXXX")
if [ "$(stat -f -c %T "$WORK")" = tmpfs ]; then
  die "$WORK is on a tmpfs: fdatasync would cost nothing there"
fi

ETCD_PID=
RR_PID=
OLD_PID=
stop_pid() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop_pid "$ETCD_PID"
  stop_pid "$RR_PID"
  stop_pid "$OLD_PID"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "starting etcd $ETCD_VERSION on 127.0.0.1:$ETCD_CLIENT and ringraft on 127.0.0.1:$RR_CLIENT (data in $WORK)"
etcd --name bench --data-dir "$WORK/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
  --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
  --initial-cluster "bench=http://127.0.0.1:$ETCD_PEER" \
  >"$WORK/etcd.log" 2>&1 &
ETCD_PID=$!
"$RINGRAFT" serve --id 1 --data-dir "$WORK/ringraft" \
  --listen-client "127.0.0.1:$RR_CLIENT" --listen-peer "127.0.0.1:$RR_PEER" \
  >"$WORK/ringraft.log" 2>&1 &
RR_PID=$!

# Ready = one write acknowledged.
wait_ready() {
  local name=$1 url=$2 pid=$3 log=$4
  for _ in $(seq 150); do
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "$name exited at start"; }
    if "$RINGRAFT" bench --target "$url" --ops 1 --clients 1 --quiet --json >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  cat "$log" >&2
  die "$name did not answer within 30 s"
}
wait_ready etcd "etcd://127.0.0.1:$ETCD_CLIENT" "$ETCD_PID" "$WORK/etcd.log"
wait_ready ringraft "http://127.0.0.1:$RR_CLIENT" "$RR_PID" "$WORK/ringraft.log"
SERVERS="etcd ringraft"
if [ -n "$RINGRAFT_OLD" ]; then
  [ -x "$RINGRAFT_OLD" ] || die "RINGRAFT_OLD=$RINGRAFT_OLD is not an executable"
  "$RINGRAFT_OLD" serve --id 1 --data-dir "$WORK/ringraft-old" \
    --listen-client "127.0.0.1:$OLD_CLIENT" --listen-peer "127.0.0.1:$OLD_PEER" \
    >"$WORK/ringraft-old.log" 2>&1 &
  OLD_PID=$!
  wait_ready ringraft-old "http://127.0.0.1:$OLD_CLIENT" "$OLD_PID" "$WORK/ringraft-old.log"
  SERVERS="etcd ringraft-old ringraft"
fi

# run_server NAME CLIENTS REPEAT: one run against the server called NAME.
run_server() {
  case $1 in
    etcd) run_one etcd "etcd://127.0.0.1:$ETCD_CLIENT" "$ETCD_PID" "$2" "$3" ;;
    ringraft) run_one ringraft "http://127.0.0.1:$RR_CLIENT" "$RR_PID" "$2" "$3" ;;
    ringraft-old) run_one ringraft-old "http://127.0.0.1:$OLD_CLIENT" "$OLD_PID" "$2" "$3" ;;
  esac
}

# --- runs -----------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
header_written=
run_one() {
  local server=$1 url=$2 pid=$3 clients=$4 repeat=$5 csv
  # Flush other writers' dirty pages now rather than inside the servers'
  # fdatasyncs (ext4 commits them in the same journal transaction).
  sync
  csv=$("$RINGRAFT" bench --target "$url" --clients "$clients" --duration "$DURATION" \
    --warmup "$WARMUP" --value-size "$VALUE_SIZE" --read-ratio "$READ_RATIO" \
    --server-pid "$pid" --csv --quiet) || die "bench against $server failed"
  if [ -z "$header_written" ]; then
    printf 'server,repeat,%s\n' "$(printf '%s\n' "$csv" | head -n 1)" >"$OUT"
    header_written=1
  fi
  printf '%s,%s,%s\n' "$server" "$repeat" "$(printf '%s\n' "$csv" | tail -n 1)" >>"$OUT"
  say "$(printf '%-8s clients %-4s run %s: %s' "$server" "$clients" "$repeat" \
    "$(printf '%s\n' "$csv" | tail -n 1 | cut -d, -f13,15,17 |
      awk -F, '{printf "%.0f ops/s, p50 %.2f ms, p99 %.2f ms", $1, $2, $3}')")"
}

started=$(date +%s)
say "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for clients in $CLIENTS; do
  for repeat in $(seq "$REPEATS"); do
    # Alternate the order, so that none always runs on a disk another
    # just filled.
    order=$SERVERS
    if [ $((repeat % 2)) -eq 0 ]; then order=$(printf '%s\n' $SERVERS | tac | tr '\n' ' '); fi
    for server in $order; do run_server "$server" "$clients" "$repeat"; done
  done
done

# --- table of medians -----------------------------------------------------
# median FIELD SERVER CLIENTS: the median of a CSV column over the repeats.
median() {
  awk -F, -v field="$1" -v server="$2" -v clients="$3" '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    $col["server"] == server && $col["clients"] == clients && $col[field] != "" { print $col[field] }
  ' "$OUT" | sort -g | awk '
    { v[NR] = $1 }
    END {
      if (NR == 0) { print "-"; exit }
      if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2
    }'
}

echo
echo "ringraft vs etcd $ETCD_VERSION: 1 node each on loopback, ${VALUE_SIZE} B values, read ratio $READ_RATIO, $DURATION per run, medians of $REPEATS runs"
echo
echo "| clients | server | writes/s | p50 ms | p99 ms | p99.9 ms | fsyncs/s | mean fsync ms | entries/fsync | server CPU µs/op | ringraft/etcd writes/s |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for clients in $CLIENTS; do
  etcd_rate=$(median ops_per_sec etcd "$clients")
  for server in $SERVERS; do
    rate=$(median ops_per_sec "$server" "$clients")
    fsyncs=$(median fsyncs "$server" "$clients")
    duration=$(median duration_s "$server" "$clients")
    ratio=
    if [ "$server" != etcd ]; then
      ratio=$(awk -v a="$rate" -v b="$etcd_rate" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "-" }')
    fi
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
      "$clients" "$server" \
      "$(awk -v x="$rate" 'BEGIN { printf "%.0f", x }')" \
      "$(median p50_ms "$server" "$clients")" \
      "$(median p99_ms "$server" "$clients")" \
      "$(median p999_ms "$server" "$clients")" \
      "$(awk -v f="$fsyncs" -v d="$duration" 'BEGIN { if (f != "-" && d > 0) printf "%.0f", f / d; else print "-" }')" \
      "$(median fsync_mean_ms "$server" "$clients")" \
      "$(median entries_per_fsync "$server" "$clients")" \
      "$(median server_cpu_us_per_op "$server" "$clients")" \
      "$ratio"
  done
done
echo
say "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
say "every run: $OUT; took $(( $(date +%s) - started )) s of runs"
