#!/usr/bin/env bash
# Broker benchmarks: zero-copy catch-up consumption and long-polling latency.
# Usage: perf/broker-bench.sh [OUTDIR]   (needs the ramjet binary built in release first:
#   cargo build --release --bin ramjet)  Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp/brokerperf}"
mkdir -p "$out"
{ uname -r; lscpu | grep 'Model name'; nproc; } > "$out/machine.txt"
cargo build --release --bin ramjet
run() {
    local name="$1"; shift
    { date -u; uptime; } > "$out/$name.txt"
    cargo bench -p ramjet-net --bench "$@" >> "$out/$name.txt" 2>&1
    { date -u; uptime; } >> "$out/$name.txt"
    cat "$out/$name.txt"
}
run catchup catchup -- --msgs 400000 --size 1024 --queues 8 --max 32 --runs 3
run longpoll longpoll -- --n 2000 --warmup 100 --suspend-ms 15000 --park-wait-us 2000 --size 256
