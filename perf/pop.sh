#!/usr/bin/env bash
# POP consumption against a pull catch-up, on one backlog: a one-shard broker pinned to CPU 0,
# the generator on CPU 1. Preloads 1 M messages of 100 B (8 queues), then pops them with 1, 4,
# 8 and 16 poppers (each group reads the whole backlog: POP_MESSAGE of 32 + BATCH_ACK_MESSAGE),
# then reads them with 8 raw pullers of 32, and prints the broker's pop counters (popStale and
# popInflight must be 0: every handle acknowledged its message).
# Usage: perf/pop.sh [DIR]   (DIR: scratch data directory, default /tmp/ramjet-pop)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/ramjet-pop}
cargo build --release -q -p ramjet -p ramjet-bench
rm -rf "$dir"; mkdir -p "$dir"
NS=127.0.0.1:29876
./target/release/ramjet start --data-dir "$dir/data" --shards 1 --cpus 0 --port 29911 \
    --namesrv-listen "$NS" > "$dir/broker.log" 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null; wait $broker 2>/dev/null; rm -rf "$dir/data"' EXIT
sleep 3
B=./target/release/ramjet-bench
echo "tree $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty'), $(date -u +%FT%TZ), $(nproc) CPUs"
echo "== preload: produce --queues 8 --size 100 --batch 100 --producers 2 --rate 200000 --duration 5"
$B produce --namesrv $NS --topic PopT --queues 8 --size 100 --batch 100 --producers 2 \
    --rate 200000 --duration 5 --warmup 0 --cpus 1 --quiet | grep -E "messages"
for c in 1 4 8 16; do
    echo "== pop --consumers $c --pull-batch 32 --from first"
    $B pop --namesrv $NS --topic PopT --size 100 --consumers $c --pull-batch 32 --from first \
        --group "popbench$c" --duration 15 --warmup 0 --cpus 1 --quiet | grep -E "messages|latency"
done
echo "== consume --consumers 8 --pull-batch 32 --from first"
$B consume --namesrv $NS --topic PopT --size 100 --consumers 8 --pull-batch 32 --from first \
    --group pullbench --duration 15 --warmup 0 --cpus 1 --quiet | grep -E "messages"
./target/release/ramjet admin status --namesrv $NS --filter pop
