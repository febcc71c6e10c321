#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for N seconds (default 60) from its
# committed seed corpus (fuzz/corpus/<target>, read-only: new inputs go to a
# scratch directory). Fails on any crash, hang or over-limit allocation;
# the reproducer is left in fuzz/artifacts/<target>/.
# Usage: scripts/fuzz-smoke.sh [seconds]
set -euo pipefail
secs="${1:-60}"
cd "$(dirname "$0")/.."
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# cargo fuzz needs unstable rustc flags (-Zsanitizer). Use the machine's
# nightly when it has one; otherwise let the stable compiler accept them
# (RUSTC_BOOTSTRAP), since no other toolchain can be fetched here.
if cargo +nightly --version >/dev/null 2>&1; then
    fuzz=(cargo +nightly fuzz)
else
    echo "fuzz-smoke: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1"
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi
targets=(wal_decoder snap_decoder peer_frame http_request raft_step h2_authority)
"${fuzz[@]}" build
failed=()
for t in "${targets[@]}"; do
    scratch="$(mktemp -d)"
    echo "== fuzz $t for ${secs}s"
    if ! "${fuzz[@]}" run "$t" "$scratch" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=512 -malloc_limit_mb=256 \
        -timeout=20 -print_final_stats=1; then
        failed+=("$t")
    fi
    rm -rf "$scratch"
done
if ((${#failed[@]})); then
    echo "fuzz-smoke: FAILED: ${failed[*]} (see fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz-smoke: all ${#targets[@]} targets ran ${secs}s without a finding"
