#!/usr/bin/env bash
# Installs Debian's etcd-server and etcd-client (etcd and etcdctl 3.4) when
# `etcd` or `etcdctl` is not on PATH: the etcdctl tests and the etcd
# comparison need them. Idempotent; as root or with passwordless sudo.
set -euo pipefail

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi
if [[ $(id -u) -eq 0 ]]; then
    sudo=()
elif sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "install-etcd: need ${missing[*]}; run 'sudo apt-get install ${missing[*]}'" >&2
    exit 1
fi
command -v apt-get >/dev/null 2>&1 || {
    echo "install-etcd: no apt-get here: install etcd and etcdctl 3.4+ and put them on PATH" >&2
    exit 1
}
echo "install-etcd: installing ${missing[*]}" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
command -v etcd >/dev/null 2>&1 && command -v etcdctl >/dev/null 2>&1 || {
    echo "install-etcd: installed, but etcd or etcdctl is not on PATH" >&2
    exit 1
}
