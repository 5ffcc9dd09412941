#!/usr/bin/env bash
# Cost of master/slave replication on the send path (docs/replication.md), as ratios of runs
# made next to each other: a master alone, a master with a slave under
# `broker.replication = async`, with `replication = sync` (each send answered once the
# slave confirmed it), and `sync-durable` (the same with `slave_ack_after_flush` on the slave:
# it confirms after its own fdatasync). 100 B messages, batch 1: closed loop (max throughput, 4 producers) and
# open loop at RATE msg/s (latency). `store.flush = async` on both sides, so the disk's fsync
# does not hide the replication round trip.
#
# Layout (a 2-CPU machine has nothing better): the master's one shard on CPU 0, the slave's
# one shard on CPU 1, the generator on CPU 1 beside the slave. Set MASTER_CPU, SLAVE_CPU,
# BENCH_CPU on a bigger machine. The rate runs pass `--wake-ahead-us 0` (RATE_FLAGS): at 50k
# msg/s the generator otherwise polls between sends and never sleeps, and the slave's thread
# on the same CPU waits for it to be switched out (measured: sync replication p90 1.8 ms with
# polling, 0.38 ms without; the master's own append-to-answer p90 was 1.6 ms then, so the
# wait was the slave's).
#
# Usage: perf/replication.sh [ROUNDS]   (default 2). Prints one JSON line per run.
#        perf/replication.sh catchup [ROUNDS]: a slave started empty next to a master that
#        holds CATCHUP_MB (2048) of 1 KiB messages: time and MB/s until the slave's CommitLog
#        ends where the master's does (the master reads its segment files, not its tail cache).
# Needs jq; builds nothing (uses target/release/ramjet and ramjet-bench).
ROUNDS=${1:-2}
. "$(dirname "$0")/lib.sh" repl
RATE_FLAGS=${RATE_FLAGS:---wake-ahead-us 0}
MASTER_CPU=${MASTER_CPU:-0}
SLAVE_CPU=${SLAVE_CPU:-1}

start() { # mode: none | async | sync | sync-durable (sync, slave_ack_after_flush on the slave)
  rm -rf "$W/m" "$W/s"
  local repl=$1
  [ "$repl" = none ] && repl=async
  [ "$repl" = sync-durable ] && repl=sync
  printf '[broker]\nslave_ack_after_flush = %s\n' \
    "$([ "$1" = sync-durable ] && echo true || echo false)" > "$W/s.toml"
  $R start --shards 1 --cpus "$MASTER_CPU" --data-dir "$W/m" --port 19911 --listen-ip 127.0.0.1 \
    --namesrv-listen $NS --replication "$repl" > "$W/m.log" 2>&1 &
  MP=$!
  wait_ready "$W/m.log"
  SP=
  if [ "$1" != none ]; then
    $R broker --config "$W/s.toml" --shards 1 --cpus "$SLAVE_CPU" --data-dir "$W/s" --port 19921 \
      --listen-ip 127.0.0.1 --namesrv $NS --role slave > "$W/s.log" 2>&1 &
    SP=$!
    until $R admin status --namesrv $NS 2>/dev/null | grep -q 'ramjet.haSlaves *1'; do sleep 0.1; done
  fi
  # Both processes map their write buffers in the background after start; measure after.
  wait_prefaulted
}

stop() {
  kill -TERM $MP ${SP:-} 2>/dev/null || true
  wait $MP ${SP:-} 2>/dev/null || true
}

ticks() { # utime + stime of process $1, in clock ticks
  [ -n "$1" ] && awk '{print $14 + $15}' "/proc/$1/stat" || echo 0
}

run() { # mode, name, bench args...
  local mode=$1 name=$2; shift 2
  start "$mode"
  local m0 s0 m1 s1 puts cpu
  m0=$(ticks $MP); s0=$(ticks "${SP:-}")
  $B "$@" --namesrv $NS --cpus "$BENCH_CPU" --quiet --json "$W/b.json" > /dev/null 2>&1
  m1=$(ticks $MP); s1=$(ticks "${SP:-}")
  # CPU of each broker process over the whole bench run (warm-up included) per message put.
  puts=$($R admin status --namesrv $NS --filter msgPutTotalTodayNow 2>/dev/null | awk '/msgPut/ {print $2; exit}')
  cpu=$(awk -v m=$((m1 - m0)) -v s=$((s1 - s0)) -v n="$puts" -v hz="$(getconf CLK_TCK)" \
    'BEGIN {printf "\"master_cpu_us_per_msg\":%.3f,\"slave_cpu_us_per_msg\":%.3f", m*1e6/hz/n, s*1e6/hz/n}')
  local ha
  ha=$($R admin status --namesrv $NS 2>/dev/null | awk '/haSlaveTimeouts|haSlaveNotAvailable|haBytesSent/ && !seen[$1]++ {printf "%s=%s ", $1, $2}')
  echo "{\"mode\":\"$mode\",\"run\":\"$name\",\"result\":$(jq -c '{rate: (.msgs_per_s|floor), errors: .errors, p50_us: .latency.p50_us, p99_us: .latency.p99_us, p999_us: .latency.p999_us, max_us: .latency.max_us}' "$W/b.json"),$cpu,\"ha\":\"${ha% }\"}"
  stop
}

max_offset() { # the first broker's commitLogMaxOffset whose id matches $1 (0 master, 1 slave)
  $R admin status --namesrv $NS --json --filter commitLogMaxOffset 2>/dev/null |
    jq -r --argjson id "$1" '.brokers[] | select(.broker_id == $id) | .info.commitLogMaxOffset'
}

echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(nproc) CPUs; master CPU $MASTER_CPU, slave CPU $SLAVE_CPU, bench CPU $BENCH_CPU"
if [ "${1:-}" = catchup ]; then
  ROUNDS=${2:-1}
  MB=${CATCHUP_MB:-2048}
  for _ in $(seq "$ROUNDS"); do
    start none
    # 1 KiB messages in batches of 64 until the master holds MB megabytes.
    while [ "$(max_offset 0)" -lt $((MB * 1024 * 1024)) ]; do
      $B produce --topic CU --queues 8 --size 1024 --batch 64 --producers 2 --duration 2 --warmup 0 \
        --namesrv $NS --cpus "$BENCH_CPU" --quiet > /dev/null 2>&1
    done
    want=$(max_offset 0)
    $R broker --shards 1 --cpus "$SLAVE_CPU" --data-dir "$W/s" --port 19921 --listen-ip 127.0.0.1 \
      --namesrv $NS --role slave > "$W/s.log" 2>&1 &
    SP=$!
    t0=$(date +%s.%N)
    m0=$(ticks $MP)
    until [ "$(max_offset 1)" = "$want" ]; do sleep 0.05; done
    t1=$(date +%s.%N)
    m1=$(ticks $MP); s1=$(ticks $SP)
    hz=$(getconf CLK_TCK)
    cold=$($R admin status --namesrv $NS --json --filter haColdReads 2>/dev/null |
      jq -r '.brokers[] | select(.broker_id == 0) | .info["ramjet.haColdReads"]')
    echo "{\"run\":\"catchup\",\"bytes\":$want,\"seconds\":$(echo "$t1 - $t0" | bc),\"mb_per_s\":$(echo "scale=1; $want / 1048576 / ($t1 - $t0)" | bc),\"master_cpu_s\":$(echo "scale=2; ($m1 - $m0) / $hz" | bc),\"slave_cpu_s\":$(echo "scale=2; $s1 / $hz" | bc),\"master_cold_reads\":$cold}"
    stop
  done
  exit 0
fi
for _ in $(seq "$ROUNDS"); do
  for mode in none async sync sync-durable; do
    run $mode max produce --topic RP --queues 8 --size 100 --batch 1 --producers 4 --duration 6 --warmup 2
  done
  for mode in none async sync sync-durable; do
    # shellcheck disable=SC2086
    run $mode "rate-$RATE" produce --topic RP --queues 8 --size 100 --batch 1 --rate "$RATE" \
      --duration 8 --warmup 2 $RATE_FLAGS
  done
done
