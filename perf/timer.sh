#!/usr/bin/env bash
# Timer messages (docs/timer.md) next to delay levels and plain sends, in one sitting:
#   produce: closed loop, 100 B, batch 1, 4 producers, for 6 s: plain, `--delay-level 1`
#            and `--timer-delay-ms 1000` (a delayed or timer message is stored twice: once
#            when sent, once when due);
#   e2e:     open loop at RATE msg/s (50k) for 10 s with a 1 s delay level, then with a 1 s
#            timer: latency = intended send to consume, so p50 - 1 s is the broker's lag.
# A fresh broker per run. Layout: the broker's one shard on BROKER_CPU (0), the generator
# on BENCH_CPU (1). Prints one JSON line per run with the broker's runtime counters.
# Usage: perf/timer.sh [ROUNDS]   (default 1). Needs jq; builds nothing.
ROUNDS=${1:-1}
. "$(dirname "$0")/lib.sh" timer

start() {
  rm -rf "$W/d"
  $R start --shards 1 --cpus "$BROKER_CPU" --data-dir "$W/d" --port 19911 --listen-ip 127.0.0.1 \
    --namesrv-listen $NS > "$W/b.log" 2>&1 &
  BP=$!
  wait_ready "$W/b.log"
  wait_prefaulted
}

stop() { stop_broker $BP; }

counter() { $R admin status --namesrv $NS --filter "$1" 2>/dev/null | awk -v k="$1" '$1 ~ k {print $2; exit}'; }

run() { # name, bench args...
  local name=$1; shift
  start
  $B "$@" --namesrv $NS --cpus "$BENCH_CPU" --quiet --json "$W/r.json" > /dev/null 2>&1
  local sched timer
  sched=$(counter scheduleDelivered)
  timer=$(counter timerDelivered)
  echo "{\"run\":\"$name\",\"result\":$(jq -c '{rate: (.msgs_per_s|floor), errors: .errors, p50_us: .latency.p50_us, p90_us: .latency.p90_us, p99_us: .latency.p99_us, p999_us: .latency.p999_us, max_us: .latency.max_us}' "$W/r.json"),\"scheduleDelivered\":${sched:-0},\"timerDelivered\":${timer:-0}}"
  stop
}

echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(nproc) CPUs; broker CPU $BROKER_CPU, bench CPU $BENCH_CPU"
for _ in $(seq "$ROUNDS"); do
  run produce-plain produce --topic P --queues 8 --size 100 --batch 1 --producers 4 --duration 6 --warmup 2
  run produce-level1 produce --topic P --queues 8 --size 100 --batch 1 --producers 4 --duration 6 --warmup 2 --delay-level 1
  run produce-timer1s produce --topic P --queues 8 --size 100 --batch 1 --producers 4 --duration 6 --warmup 2 --timer-delay-ms 1000
  run "e2e-$RATE-level1" e2e --topic E --queues 8 --size 100 --rate "$RATE" --duration 10 --warmup 3 --delay-level 1
  run "e2e-$RATE-timer1s" e2e --topic E --queues 8 --size 100 --rate "$RATE" --duration 10 --warmup 3 --timer-delay-ms 1000
done
