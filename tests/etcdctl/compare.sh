#!/usr/bin/env bash
# The etcdctl script that tests/etcdctl_compare.rs runs against a fresh
# etcd 3.4 and a fresh ringraft, expecting the same output once ids,
# addresses, versions, sizes and timings are masked (the masks are in the
# test). Run it by hand against any endpoint:
#   ENDPOINT=127.0.0.1:2379 bash tests/etcdctl/compare.sh
# Every command's stdout and stderr are printed; etcdctl's JSON warning
# lines (client-side retry logs) are dropped.
set -u
: "${ENDPOINT:?set ENDPOINT=host:port}"
export ETCDCTL_API=3

e() {
  echo "\$ etcdctl $*"
  etcdctl --endpoints="$ENDPOINT" "$@" 2>&1 | grep -v '^{"level"'
  echo "[exit ${PIPESTATUS[0]}]"
}

# Runs etcdctl for a second, then stops it (for watch, which never ends).
e_for_a_second() {
  echo "\$ etcdctl $*"
  timeout 2 etcdctl --endpoints="$ENDPOINT" "$@" 2>&1 | grep -v '^{"level"'
}

# e_txn STDIN: a txn read from stdin, non-interactive.
e_txn() {
  echo "\$ etcdctl txn <<< $(printf '%q' "$1")"
  printf '%b' "$1" | etcdctl --endpoints="$ENDPOINT" txn 2>&1 | grep -v '^{"level"'
  echo "[exit ${PIPESTATUS[1]}]"
}

echo "## put and get"
e put foo bar
e put foo bar2 --prev-kv
e get foo
e get foo -w json
e get foo --rev=2
e get foo --print-value-only
e get missing
e put fa 1
e put fb 2
e put g 3
e get --prefix f
e get --prefix f --sort-by=KEY --order=DESCEND
e get --prefix f --sort-by=MODIFY --order=ASCEND --keys-only
e get --prefix f --limit=1 -w json
e get --from-key fb
e get fa g
e get "" --prefix --keys-only --consistency=s
e put foo --ignore-value
e put foo bar3 --ignore-value
e get foo
e put "" x

echo "## delete"
e del foo --prev-kv
e del missing
e del --prefix f
e get --from-key ""

echo "## txn"
e put t1 one
e_txn 'value("t1") = "one"\n\nput t1 two\nput t2 new\n\nput t1 failed\n\n'
e get --prefix t
e_txn 'version("t1") = "5"\n\nput t1 nope\n\nget t1\n\n'
e_txn 'mod("t2") > "0"\ncreate("t1") < "100"\n\ndel t2\n\n\n'
e get --prefix t -w json

echo "## watch history"
e_for_a_second watch --rev=1 --prefix t
e_for_a_second watch --rev=2 foo --prev-kv
e_for_a_second watch --rev=9 fa fz

echo "## compaction"
e compaction 5
e get t1 --rev=4
e get t1 --rev=5
e compaction 3
e compaction 1000
e_for_a_second watch --rev=2 t1

echo "## lease"
# The lease id is the server's choice: shown as <LEASE-ID>.
granted=$(etcdctl --endpoints="$ENDPOINT" lease grant 60 2>&1)
id=$(echo "$granted" | awk '/granted/ {print $2}')
echo "$granted" | sed "s/$id/<LEASE-ID>/g"
el() { e "$@" | sed "s/$id/<LEASE-ID>/g" | sed -E 's/remaining\([0-9]+s\)/remaining(<SECONDS>)/'; }
el put --lease="$id" lk lv
el put --lease=1234 lk2 lv
el get lk
el lease timetolive "$id" --keys
el lease keep-alive --once "$id"
el lease list
el lease revoke "$id"
el get lk
el lease timetolive "$id"
el lease revoke "$id"

echo "## cluster"
e member list
e endpoint health
e endpoint status
e alarm list
