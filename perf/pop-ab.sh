#!/usr/bin/env bash
# A/B of the broker's POP path: BASE_REV's `ramjet` against the working tree's, alternating
# fresh brokers on the same load, so that a change is judged by ratios measured side by side
# (this VM drifts by a third within the hour; see perf/ab.sh for the send and pull paths).
#
# Each run: a one-shard broker on BROKER_CPU (0), preloaded with PRELOAD_S seconds (8) of
# 100 B messages at 250k msg/s over 8 queues (an O_DIRECT store: the backlog is not in the
# page cache), then `ramjet-bench pop` with C poppers (POP of 32 + BATCH_ACK per batch) on
# BENCH_CPU (1) for 15 s, for C in POPPERS ("1 16").
#
# Usage: perf/pop-ab.sh BASE_REV [ROUNDS]   (default 2 rounds; each runs base, then head).
# Builds BASE_REV's broker into target/ab-base as perf/ab.sh does; uses target/release/ramjet
# and ramjet-bench as they are (build them first). Needs jq.
# Prints one JSON line per run: {"which", "poppers", "result": {"rate", "p50_ms", "p99_ms"}}.
BASE=${1:?usage: perf/pop-ab.sh BASE_REV [ROUNDS]}
ROUNDS=${2:-2}
POPPERS=${POPPERS:-1 16}
PRELOAD_S=${PRELOAD_S:-8}
. "$(dirname "$0")/lib.sh" popab
HEAD_BIN=$R
build_base "$BASE"

run() { # which, bin, poppers
  local which=$1 bin=$2 c=$3
  rm -rf "$W/d"
  $bin start --shards 1 --cpus "$BROKER_CPU" --data-dir "$W/d" --port 19911 --listen-ip 127.0.0.1 \
    --namesrv-listen $NS > "$W/b.log" 2>&1 &
  local bp=$!
  wait_ready "$W/b.log"
  wait_prefaulted
  $B produce --namesrv $NS --topic PopT --queues 8 --size 100 --batch 100 --producers 2 \
    --rate 250000 --duration "$PRELOAD_S" --warmup 0 --cpus "$BENCH_CPU" --quiet > /dev/null 2>&1
  $B pop --namesrv $NS --topic PopT --size 100 --consumers "$c" --pull-batch 32 --from first \
    --group "popab$c" --duration 15 --warmup 0 --cpus "$BENCH_CPU" --quiet --json "$W/r.json" \
    > /dev/null 2>&1
  echo "{\"which\":\"$which\",\"poppers\":$c,\"result\":$(jq -c '{rate: (.msgs_per_s|floor), errors: .errors, p50_ms: (.latency.p50_us/1000), p99_ms: (.latency.p99_us/1000)}' "$W/r.json")}"
  stop_broker $bp
}

echo "# $(date -u +%FT%TZ) base $(git rev-parse --short "$BASE") head $(git rev-parse --short HEAD)$(git diff --quiet || echo +dirty) $(nproc) CPUs; broker CPU $BROKER_CPU, bench CPU $BENCH_CPU; preload ${PRELOAD_S} s at 250k msg/s"
for _ in $(seq "$ROUNDS"); do
  for which in base head; do
    bin=$HEAD_BIN
    [ "$which" = base ] && bin=$BASE_BIN
    for c in $POPPERS; do
      run $which "$bin" "$c"
    done
  done
done
