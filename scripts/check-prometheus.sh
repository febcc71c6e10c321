#!/usr/bin/env bash
# Checks dashboards/ against a real Prometheus (called by .ci/run):
#
#   1. installs Debian's `prometheus` package if prometheus/promtool are
#      missing (apt-get, as root or through sudo);
#   2. `promtool check rules` and `promtool test rules` on the alert rules;
#   3. starts a 3-node cluster from target/release/ringraft on loopback
#      (free ports, temporary data directories, small --snapshot-count so
#      snapshots happen) and Prometheus on loopback scraping the three
#      /metrics endpoints every second, with the alert rules loaded;
#   4. drives a short write load with curl, waits for a few scrapes;
#   5. evaluates every expression of dashboards/ringraft.json (panel queries
#      and the variables' label_values selectors; Grafana's variables
#      replaced by concrete values) through Prometheus's HTTP API and fails
#      if any returns no data; checks every alert rule evaluated without
#      error and that all three targets are up.
#
# Every process it starts is stopped by the EXIT trap. Takes about 20 s
# once prometheus is installed and the binary built.
#
# Usage: scripts/check-prometheus.sh   (RINGRAFT_LOAD_SECONDS=N to change
# the load's length, default 6)
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)

log() { echo "check-prometheus: $*" >&2; }
fail() {
    log "FAILED: $*"
    exit 1
}

# --- 1. prometheus and promtool -------------------------------------------
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 ||
        fail "prometheus/promtool not found and apt-get is unavailable: install Prometheus (Debian package 'prometheus') so both are on PATH"
    as_root=()
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 ||
            fail "prometheus/promtool not found; installing Debian's prometheus package needs root or sudo"
        as_root=(sudo -n)
    fi
    log "installing Debian's prometheus package"
    "${as_root[@]}" apt-get update -qq ||
        fail "apt-get update failed"
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends prometheus >/dev/null ||
        fail "apt-get install prometheus failed"
fi
command -v python3 >/dev/null 2>&1 || fail "python3 is needed to read the dashboard"
command -v curl >/dev/null 2>&1 || fail "curl is needed to drive the load"
log "$(prometheus --version 2>&1 | head -n 1)"

# --- 2. the rules, statically ---------------------------------------------
promtool check rules dashboards/alerts.yml
promtool test rules dashboards/alerts_test.yml

# --- 3. a cluster and a Prometheus ----------------------------------------
cargo build --release --bin ringraft
binary=$repo/target/release/ringraft

work=$(mktemp -d "${TMPDIR:-/tmp}/ringraft-prometheus.XXXXXX")
pids=()
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "$status" != 0 ]; then
        for file in "$work"/*.log; do
            [ -f "$file" ] || continue
            echo "--- last lines of $(basename "$file") ---" >&2
            tail -n 20 "$file" >&2
        done
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Seven free loopback ports, bound at once so they differ, and released
# before python exits (command substitution waits for that). Another
# process could take one before we do; then a bind fails loudly below.
ports=()
for port in $(python3 -c '
import socket
socks = [socket.socket() for _ in range(7)]
for s in socks:
    s.bind(("127.0.0.1", 0))
ports = [s.getsockname()[1] for s in socks]
for s in socks:
    s.close()
print(" ".join(map(str, ports)))
'); do
    ports+=("$port")
done
[ "${#ports[@]}" = 7 ] || fail "could not find free ports"
clients=("${ports[0]}" "${ports[1]}" "${ports[2]}")
peers=("${ports[3]}" "${ports[4]}" "${ports[5]}")
prometheus_port=${ports[6]}
initial="1=127.0.0.1:${peers[0]},2=127.0.0.1:${peers[1]},3=127.0.0.1:${peers[2]}"

for id in 1 2 3; do
    "$binary" serve --id "$id" --data-dir "$work/node$id" \
        --listen-client "127.0.0.1:${clients[id - 1]}" \
        --listen-peer "127.0.0.1:${peers[id - 1]}" \
        --initial-cluster "$initial" \
        --tick-ms 50 --snapshot-count 50 \
        2>"$work/node$id.log" &
    pids+=($!)
done

cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $repo/dashboards/alerts.yml
scrape_configs:
  - job_name: ringraft
    static_configs:
      - targets:
          - 127.0.0.1:${clients[0]}
          - 127.0.0.1:${clients[1]}
          - 127.0.0.1:${clients[2]}
EOF
prometheus --config.file="$work/prometheus.yml" \
    --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$prometheus_port" \
    --log.level=warn \
    2>"$work/prometheus.log" &
pids+=($!)
prometheus_url=http://127.0.0.1:$prometheus_port

# Waits up to $1 seconds for the URL $2 to answer 200.
wait_for() {
    local deadline=$((SECONDS + $1))
    until curl -fsS -o /dev/null --max-time 2 "$2" 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || fail "$2 did not answer within $1 s"
        sleep 0.2
    done
}
for client in "${clients[@]}"; do
    wait_for 30 "http://127.0.0.1:$client/health"
done
wait_for 30 "$prometheus_url/-/ready"
# Prometheus applies discovered targets a few seconds after it starts: wait
# until it has scraped all three, so that the load below is on record.
deadline=$((SECONDS + 30))
until curl -fsS --max-time 2 "$prometheus_url/api/v1/query" \
    --data-urlencode 'query=count(up{job="ringraft"} == 1)' 2>/dev/null |
    grep -q '"value":\[[0-9.]*,"3"\]'; do
    [ "$SECONDS" -lt "$deadline" ] || fail "Prometheus did not scrape all three nodes within 30 s"
    sleep 0.2
done
log "cluster on 127.0.0.1:${clients[0]},${clients[1]},${clients[2]}; Prometheus on $prometheus_url"

# --- 4. load ---------------------------------------------------------------
# At least load_seconds and at least 120 writes (a few snapshots' worth
# with --snapshot-count 50), however slow the machine, within 60 s.
load_seconds=${RINGRAFT_LOAD_SECONDS:-6}
min_writes=120
started=$SECONDS
writes=0
while [ $((SECONDS - started)) -lt "$load_seconds" ] || [ "$writes" -lt "$min_writes" ]; do
    [ $((SECONDS - started)) -lt 60 ] || fail "only $writes writes in 60 s"
    client=${clients[writes % 3]}
    curl -fsS -o /dev/null --max-time 5 -X PUT --data-binary "value-$writes" \
        "http://127.0.0.1:$client/v1/kv/key-$writes" ||
        fail "PUT key-$writes on 127.0.0.1:$client"
    if [ $((writes % 10)) = 0 ]; then
        curl -fsS -o /dev/null --max-time 5 "http://127.0.0.1:$client/v1/kv/key-$writes" ||
            fail "GET key-$writes on 127.0.0.1:$client"
    fi
    writes=$((writes + 1))
done
log "$writes writes in $((SECONDS - started)) s"
# Two more scrapes after the load, so that rates see its end.
sleep 2.5

# --- 5. every dashboard expression through Prometheus ----------------------
python3 - "$prometheus_url" "$repo/dashboards/ringraft.json" <<'PY'
import json
import re
import sys
import time
import urllib.parse
import urllib.request

url, dashboard_path = sys.argv[1], sys.argv[2]
# Grafana's interval variables become a window that holds several 1 s
# scrapes of the load; every other variable ($instance, ${node}) its "All"
# value.
INTERVALS = {"__rate_interval": "30s", "__interval": "5s", "__range": "5m"}
# Histograms that a short write load on a healthy cluster does not observe
# (a snapshot restore or transfer needs a lagging follower): their
# quantiles are NaN.
MAY_HAVE_NO_OBSERVATIONS = [
    "ringraft_snapshot_apply_duration_seconds",
    "ringraft_snapshot_send_duration_seconds",
    "ringraft_snapshot_receive_duration_seconds",
]


def concrete(expr):
    def replace(match):
        name = match.group(1) or match.group(2)
        return INTERVALS.get(name, ".*") if name.startswith("__") else ".*"

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, expr)


def query(expr):
    data = urllib.parse.urlencode({"query": expr}).encode()
    with urllib.request.urlopen(url + "/api/v1/query", data, timeout=10) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"{body.get('errorType')}: {body.get('error')}")
    return body["data"]["result"]


def panels(items):
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


dashboard = json.load(open(dashboard_path))
checks = []
for panel in panels(dashboard["panels"]):
    for target in panel.get("targets", []):
        checks.append((f'{panel["title"]} [{target["refId"]}]', target["expr"]))
for variable in dashboard["templating"]["list"]:
    if variable["type"] == "query":
        q = variable["query"]
        q = q["query"] if isinstance(q, dict) else q
        match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q)
        if not match:
            sys.exit(f"variable {variable['name']}: not label_values(selector, label): {q}")
        checks.append((f'variable {variable["name"]}', match.group(1)))

failures = []
for place, expr in checks:
    promql = concrete(expr)
    try:
        result = query(promql)
    except Exception as error:  # HTTP errors carry Prometheus's message
        detail = error.read().decode() if hasattr(error, "read") else str(error)
        failures.append(f"{place}: {promql}: {detail}")
        continue
    finite = [s for s in result if s["value"][1] not in ("NaN", "+Inf", "-Inf")]
    print(f"  {len(result):2} series ({len(finite)} finite)  {place}: {promql}", file=sys.stderr)
    if not result:
        failures.append(f"{place}: no data for {promql}")
    elif not finite and not any(metric in expr for metric in MAY_HAVE_NO_OBSERVATIONS):
        failures.append(f"{place}: only NaN for {promql} (nothing observed?)")

# All three targets up, and ringraft's own series from each.
up = query('up{job="ringraft"}')
if sorted(s["value"][1] for s in up) != ["1", "1", "1"]:
    failures.append(f"targets not all up: {up}")
nodes = query("count by (node) (ringraft_server_has_leader)")
if len(nodes) != 3:
    failures.append(f"expected 3 nodes' series, got {nodes}")
# The leader's heartbeats were timed (a real round-trip measurement).
rtt = query("sum(ringraft_network_peer_round_trip_time_seconds_count)")
if not rtt or float(rtt[0]["value"][1]) == 0:
    failures.append(f"no peer round trip observed: {rtt}")

# Every alert rule was evaluated, without error.
deadline = time.time() + 10
while True:
    with urllib.request.urlopen(url + "/api/v1/rules", timeout=10) as response:
        groups = json.load(response)["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    if rules and all(rule["health"] != "unknown" for rule in rules) or time.time() > deadline:
        break
    time.sleep(0.5)
if not rules:
    failures.append("Prometheus loaded no alert rules")
for rule in rules:
    if rule["health"] != "ok":
        failures.append(f'rule {rule["name"]}: health {rule["health"]}: {rule.get("lastError")}')
    if rule.get("state") == "firing":
        failures.append(f'rule {rule["name"]} fires on a healthy cluster')

print(f"check-prometheus: {len(checks)} dashboard expressions, {len(rules)} alert rules", file=sys.stderr)
if failures:
    print("check-prometheus: FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
# Dashboard expressions, the three cluster checks, the rules.
total = len(checks) + 3 + len(rules)
print(f"check-prometheus: {total - min(len(failures), total)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
PY
