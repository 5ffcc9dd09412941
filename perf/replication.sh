#!/usr/bin/env bash
# Cost of master/slave replication on the send path (docs/replication.md), as ratios of runs
# made next to each other: a master alone, a master with a slave under
# `broker.replication = async`, and with `replication = sync` (each send answered once the
# slave confirmed it). 100 B messages, batch 1: closed loop (max throughput, 4 producers) and
# open loop at RATE msg/s (latency). `store.flush = async` on both sides, so the disk's fsync
# does not hide the replication round trip.
#
# Layout (a 2-CPU machine has nothing better): the master's one shard on CPU 0, the slave's
# one shard on CPU 1, the generator on CPU 1 beside the slave. Set MASTER_CPU, SLAVE_CPU,
# BENCH_CPU on a bigger machine.
#
# Usage: perf/replication.sh [ROUNDS]   (default 2). Prints one JSON line per run.
# Needs jq; builds nothing (uses target/release/ramjet and ramjet-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
RATE=${RATE:-50000}
MASTER_CPU=${MASTER_CPU:-0}
SLAVE_CPU=${SLAVE_CPU:-1}
BENCH_CPU=${BENCH_CPU:-1}
R=./target/release/ramjet
B=./target/release/ramjet-bench
W=$(mktemp -d /tmp/ramjet-repl.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
NS=127.0.0.1:19876

start() { # mode: none | async | sync
  rm -rf "$W/m" "$W/s"
  local repl=$1
  [ "$repl" = none ] && repl=async
  $R start --shards 1 --cpus "$MASTER_CPU" --data-dir "$W/m" --port 19911 --listen-ip 127.0.0.1 \
    --namesrv-listen $NS --replication "$repl" > "$W/m.log" 2>&1 &
  MP=$!
  until grep -qs '^ramjet: ready' "$W/m.log"; do sleep 0.1; done
  SP=
  if [ "$1" != none ]; then
    $R broker --shards 1 --cpus "$SLAVE_CPU" --data-dir "$W/s" --port 19921 --listen-ip 127.0.0.1 \
      --namesrv $NS --role slave > "$W/s.log" 2>&1 &
    SP=$!
    until $R admin status --namesrv $NS 2>/dev/null | grep -q 'ramjet.haSlaves *1'; do sleep 0.1; done
  fi
}

stop() {
  kill -TERM $MP ${SP:-} 2>/dev/null || true
  wait $MP ${SP:-} 2>/dev/null || true
}

run() { # mode, name, bench args...
  local mode=$1 name=$2; shift 2
  start "$mode"
  $B "$@" --namesrv $NS --cpus "$BENCH_CPU" --quiet --json "$W/b.json" > /dev/null 2>&1
  local ha
  ha=$($R admin status --namesrv $NS 2>/dev/null | awk '/haSlaveTimeouts|haSlaveNotAvailable|haBytesSent/ {printf "%s=%s ", $1, $2}')
  echo "{\"mode\":\"$mode\",\"run\":\"$name\",\"result\":$(jq -c '{rate: (.msgs_per_s|floor), errors: .errors, p50_us: .latency.p50_us, p99_us: .latency.p99_us, p999_us: .latency.p999_us, max_us: .latency.max_us}' "$W/b.json"),\"ha\":\"${ha% }\"}"
  stop
}

echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(nproc) CPUs; master CPU $MASTER_CPU, slave CPU $SLAVE_CPU, bench CPU $BENCH_CPU"
for _ in $(seq "$ROUNDS"); do
  for mode in none async sync; do
    run $mode max produce --topic RP --queues 8 --size 100 --batch 1 --producers 4 --duration 6 --warmup 2
  done
  for mode in none async sync; do
    run $mode "rate-$RATE" produce --topic RP --queues 8 --size 100 --batch 1 --rate "$RATE" --duration 8 --warmup 2
  done
done
