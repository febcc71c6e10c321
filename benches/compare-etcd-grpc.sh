#!/usr/bin/env bash
# ringraft against etcd over the same protocol: etcd's v3 gRPC API, driven by
# the same client code (`ringraft bench --target grpc://…`, one HTTP/2
# connection per client, puts of 256 B values) against a fresh single-node
# etcd 3.4 and a fresh single-node `ringraft serve`, on loopback, their data
# on the same disk (under target/, never a tmpfs). For each client count the
# servers take turns (etcd first in odd rounds, ringraft first in even ones),
# ROUNDS times; the table shows medians of writes/s and p99 per server and
# ringraft/etcd.
#
# Usage: benches/compare-etcd-grpc.sh [--only-etcd] [ROUNDS]
#   ROUNDS         runs per (server, clients), default 3
#   --only-etcd    start and drive etcd only (checks the script and the gRPC
#                  driver where ringraft does not serve KV over gRPC yet)
# Settings (environment):
#   CLIENTS="1 16 64 256"  concurrent clients, one run per value and round
#   DURATION=10s           measured time per run (after WARMUP)
#   WARMUP=1s              unmeasured time before each run
#   VALUE_SIZE=256         bytes per value
#   PORT_BASE=23890        etcd client/peer, ringraft client/peer = +0..3
#   OUT=benches/results/compare-etcd-grpc.csv   every run, one CSV row each
#   RINGRAFT=path          the ringraft binary to serve and to drive both
#                          servers; default: the working tree's, built
#   RINGRAFT_ARGS="…"      extra flags for `ringraft serve` (split on spaces)
#   SERVER_CPUS=1 CLIENT_CPUS=0
#                          pin the servers and the bench client to these CPUs
#                          (taskset lists), so that each server's rate shows
#                          its own cost rather than the client's share of
#                          the same cores; default: unpinned
#   FLOOR=1                also run the cost floor (examples/grpc_floor.rs:
#                          etcd's KV service on the same tonic/hyper stack,
#                          puts answered at once, no raft, no disk) in the
#                          rotation, on PORT_BASE+4, and print each server's
#                          client and server CPU per put: what the gRPC
#                          transport alone costs with this client here
#
# Installs etcd 3.4 (scripts/install-etcd.sh) when it is not on PATH. Leaves
# no process behind: the servers it started are stopped on any exit (trap),
# and their data is removed.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
ONLY_ETCD=
ROUNDS=3
for arg in "$@"; do
  case $arg in
    --only-etcd) ONLY_ETCD=1 ;;
    -h|--help) sed -n '2,39p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *[!0-9]*|'') echo "usage: $0 [--only-etcd] [ROUNDS]" >&2; exit 2 ;;
    *) ROUNDS=$arg ;;
  esac
done
[ "$ROUNDS" -ge 1 ] || { echo "ROUNDS must be at least 1" >&2; exit 2; }
CLIENTS=${CLIENTS:-"1 16 64 256"}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
VALUE_SIZE=${VALUE_SIZE:-256}
PORT_BASE=${PORT_BASE:-23890}
OUT=${OUT:-$ROOT/benches/results/compare-etcd-grpc.csv}

FLOOR=${FLOOR:-}
SERVER_CPUS=${SERVER_CPUS:-}
CLIENT_CPUS=${CLIENT_CPUS:-}
# Command prefixes that pin (taskset execs the command: same pid).
PIN_SERVER=()
PIN_CLIENT=()
[ -z "$SERVER_CPUS" ] || PIN_SERVER=(taskset -c "$SERVER_CPUS")
[ -z "$CLIENT_CPUS" ] || PIN_CLIENT=(taskset -c "$CLIENT_CPUS")
ETCD_CLIENT=$PORT_BASE
ETCD_PEER=$((PORT_BASE + 1))
RR_CLIENT=$((PORT_BASE + 2))
RR_PEER=$((PORT_BASE + 3))
FLOOR_CLIENT=$((PORT_BASE + 4))

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# --- etcd -----------------------------------------------------------------
if ! command -v etcd >/dev/null 2>&1; then
  "$ROOT/scripts/install-etcd.sh" || die "etcd is missing and could not be installed"
fi
ETCD_VERSION=$(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p')

# --- ringraft -------------------------------------------------------------
if [ -n "${RINGRAFT:-}" ]; then
  [ -x "$RINGRAFT" ] || die "RINGRAFT=$RINGRAFT is not an executable"
else
  say "building ringraft (release)"
  cargo build --release --quiet --bin ringraft
  RINGRAFT=${CARGO_TARGET_DIR:-$ROOT/target}/release/ringraft
fi

if [ -n "$FLOOR" ]; then
  say "building the gRPC cost floor (examples/grpc_floor.rs)"
  cargo build --release --quiet --example grpc_floor
  FLOOR_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/grpc_floor
fi

# --- ports free? ----------------------------------------------------------
for port in "$ETCD_CLIENT" "$ETCD_PEER" "$RR_CLIENT" "$RR_PEER" "$FLOOR_CLIENT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is in use (set PORT_BASE to another free range of 4 ports)"
  fi
done

# --- data on the repository's disk ---------------------------------------
mkdir -p "$ROOT/target"
WORK=$(mktemp -d "$ROOT/target/compare-etcd-grpc.XXXXXX")
if [ "$(stat -f -c %T "$WORK")" = tmpfs ]; then
  die "$WORK is on a tmpfs: fdatasync would cost nothing there"
fi

ETCD_PID=
RR_PID=
FLOOR_PID=
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
  stop_pid "$FLOOR_PID"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Ready = one put acknowledged through URL; else the last error, and stop.
wait_ready() {
  local name=$1 url=$2 pid=$3 log=$4 error=
  for _ in $(seq 150); do
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "$name exited at start"; }
    if error=$("$RINGRAFT" bench --target "$url" --ops 1 --clients 1 --quiet --json 2>&1 >/dev/null); then
      return 0
    fi
    # Up, but without the KV service: waiting will not change that.
    case $error in
      *Unimplemented*) die "$name does not serve etcd's KV over gRPC ($error); --only-etcd runs etcd alone" ;;
    esac
    sleep 0.2
  done
  tail -n 20 "$log" >&2
  die "$name did not acknowledge a put through $url within 30 s: $error"
}

say "starting etcd $ETCD_VERSION on 127.0.0.1:$ETCD_CLIENT (data in $WORK)"
"${PIN_SERVER[@]}" etcd --name bench --data-dir "$WORK/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
  --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
  --initial-cluster "bench=http://127.0.0.1:$ETCD_PEER" \
  >"$WORK/etcd.log" 2>&1 &
ETCD_PID=$!
wait_ready etcd "grpc://127.0.0.1:$ETCD_CLIENT" "$ETCD_PID" "$WORK/etcd.log"
SERVERS=etcd
if [ -z "$ONLY_ETCD" ]; then
  say "starting ringraft on 127.0.0.1:$RR_CLIENT"
  "${PIN_SERVER[@]}" "$RINGRAFT" serve --id 1 --data-dir "$WORK/ringraft" \
    --listen-client "127.0.0.1:$RR_CLIENT" --listen-peer "127.0.0.1:$RR_PEER" \
    ${RINGRAFT_ARGS:-} >"$WORK/ringraft.log" 2>&1 &
  RR_PID=$!
  # Up (its /v1 API), then over gRPC: a server without the KV service
  # answers UNIMPLEMENTED, and the error says so.
  wait_ready ringraft "http://127.0.0.1:$RR_CLIENT" "$RR_PID" "$WORK/ringraft.log"
  wait_ready "ringraft (gRPC)" "grpc://127.0.0.1:$RR_CLIENT" "$RR_PID" "$WORK/ringraft.log"
  SERVERS="etcd ringraft"
fi
if [ -n "$FLOOR" ]; then
  say "starting the gRPC cost floor on 127.0.0.1:$FLOOR_CLIENT"
  "${PIN_SERVER[@]}" "$FLOOR_BIN" "127.0.0.1:$FLOOR_CLIENT" >"$WORK/floor.log" 2>&1 &
  FLOOR_PID=$!
  wait_ready floor "grpc://127.0.0.1:$FLOOR_CLIENT" "$FLOOR_PID" "$WORK/floor.log"
  SERVERS="$SERVERS floor"
fi

# --- runs -----------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
header_written=
run_one() {
  local server=$1 clients=$2 round=$3 port pid csv
  case $server in
    etcd) port=$ETCD_CLIENT pid=$ETCD_PID ;;
    ringraft) port=$RR_CLIENT pid=$RR_PID ;;
    floor) port=$FLOOR_CLIENT pid=$FLOOR_PID ;;
  esac
  # Flush other writers' dirty pages now rather than inside the servers'
  # fdatasyncs (ext4 commits them in the same journal transaction).
  sync
  csv=$("${PIN_CLIENT[@]}" "$RINGRAFT" bench --target "grpc://127.0.0.1:$port" --clients "$clients" \
    --duration "$DURATION" --warmup "$WARMUP" --value-size "$VALUE_SIZE" \
    --server-pid "$pid" --csv --quiet) || die "bench against $server failed"
  if [ -z "$header_written" ]; then
    printf 'server,round,%s\n' "$(printf '%s\n' "$csv" | head -n 1)" >"$OUT"
    header_written=1
  fi
  printf '%s,%s,%s\n' "$server" "$round" "$(printf '%s\n' "$csv" | tail -n 1)" >>"$OUT"
  say "$(printf '%-8s clients %-4s round %s: %s' "$server" "$clients" "$round" \
    "$(printf '%s\n' "$csv" | tail -n 1 | cut -d, -f12,13,17 |
      awk -F, '{printf "%.0f writes/s, p99 %.2f ms, %d errors", $2, $3, $1}')")"
}

LOAD_BEFORE=$(uptime)
say "before: $LOAD_BEFORE"
started=$(date +%s)
for clients in $CLIENTS; do
  for round in $(seq "$ROUNDS"); do
    order=$SERVERS
    if [ $((round % 2)) -eq 0 ]; then order=$(printf '%s\n' $SERVERS | tac | tr '\n' ' '); fi
    for server in $order; do run_one "$server" "$clients" "$round"; done
  done
done
LOAD_AFTER=$(uptime)
say "after: $LOAD_AFTER"

# --- table of medians -----------------------------------------------------
# column FIELD SERVER CLIENTS: that column over the rounds, one per line.
column() {
  awk -F, -v field="$1" -v server="$2" -v clients="$3" '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    $col["server"] == server && $col["clients"] == clients && $col[field] != "" { print $col[field] }
  ' "$OUT"
}
# median FIELD SERVER CLIENTS, or "-" when there is no run.
median() {
  column "$@" | sort -g | awk '
    { v[NR] = $1 }
    END {
      if (NR == 0) { print "-"; exit }
      if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2
    }'
}
# total FIELD SERVER CLIENTS over the rounds.
total() { column "$@" | awk '{ s += $1 } END { print s + 0 }'; }
fmt() { awk -v x="$1" -v f="$2" 'BEGIN { if (x == "-") print "-"; else printf f, x }'; }
divide() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "-" && b != "-" && b > 0) printf "%.2f×", a / b; else print "-" }'; }

echo
echo "etcd $ETCD_VERSION vs ringraft over etcd's v3 gRPC API (ringraft bench --target grpc://, one HTTP/2 connection per client): 1 node each on loopback, puts of ${VALUE_SIZE} B, $DURATION per run after $WARMUP warm-up, medians of $ROUNDS rounds, servers alternating"
[ -z "$SERVER_CPUS$CLIENT_CPUS" ] || echo "pinned: servers on CPUs ${SERVER_CPUS:-any}, the bench client on CPUs ${CLIENT_CPUS:-any}"
echo "load before: $LOAD_BEFORE"
echo "load after:  $LOAD_AFTER"
echo
echo "| clients | etcd writes/s | etcd p99 ms | ringraft writes/s | ringraft p99 ms | ringraft/etcd writes/s | ringraft/etcd p99 | failed ops (etcd, ringraft) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for clients in $CLIENTS; do
  etcd_rate=$(median ops_per_sec etcd "$clients")
  etcd_p99=$(median p99_ms etcd "$clients")
  rr_rate=$(median ops_per_sec ringraft "$clients")
  rr_p99=$(median p99_ms ringraft "$clients")
  rr_errors=-
  [ -n "$ONLY_ETCD" ] || rr_errors=$(total errors ringraft "$clients")
  printf '| %s | %s | %s | %s | %s | %s | %s | %s, %s |\n' "$clients" \
    "$(fmt "$etcd_rate" %.0f)" "$(fmt "$etcd_p99" %.2f)" \
    "$(fmt "$rr_rate" %.0f)" "$(fmt "$rr_p99" %.2f)" \
    "$(divide "$rr_rate" "$etcd_rate")" "$(divide "$rr_p99" "$etcd_p99")" \
    "$(total errors etcd "$clients")" "$rr_errors"
done
if [ -n "$FLOOR" ]; then
  echo
  echo "CPU per put (medians; client = the bench process, server = the server process, from /proc), and the rate the machine's cores would allow if CPU were all that bounded it:"
  echo
  echo "| clients | server | writes/s | client CPU µs/put | server CPU µs/put | CPU-bound rate at $(nproc) cores |"
  echo "| --- | --- | --- | --- | --- | --- |"
  for clients in $CLIENTS; do
    for server in $SERVERS; do
      client_cpu=$(median cpu_us_per_op "$server" "$clients")
      server_cpu=$(median server_cpu_us_per_op "$server" "$clients")
      bound=$(awk -v c="$client_cpu" -v s="$server_cpu" -v n="$(nproc)" \
        'BEGIN { if (c != "-" && s != "-" && c + s > 0) printf "%.0f", n * 1e6 / (c + s); else print "-" }')
      printf '| %s | %s | %s | %s | %s | %s |\n' "$clients" "$server" \
        "$(fmt "$(median ops_per_sec "$server" "$clients")" %.0f)" \
        "$(fmt "$client_cpu" %.1f)" "$(fmt "$server_cpu" %.1f)" "$bound"
    done
  done
fi
echo
say "every run: $OUT; took $(( $(date +%s) - started )) s of runs"
