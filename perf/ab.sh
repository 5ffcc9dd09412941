#!/usr/bin/env bash
# A/B of the broker binary: BASE_REV's `ramjet` against the working tree's, alternating runs
# of the same load, so that a change to the send or pull path is judged by ratios measured
# side by side rather than against an old figure (this VM drifts by a third within the hour).
#
# Loads (100 B messages; the working tree's ramjet-bench drives both brokers):
#   b1:   produce closed loop, batch 1, 4 producers (the send path per message);
#   e2e:  produce and consume at RATE msg/s (50k), intended send to consume (the pull path,
#         long polling and commit offsets included).
# Layout: the broker's one shard on BROKER_CPU (0), the generator on BENCH_CPU (1).
#
# Usage: perf/ab.sh BASE_REV [ROUNDS]   (default 3 rounds; each round runs base, then head).
# Builds BASE_REV's broker into target/ab-base (a git worktree under it; minutes the first
# time) and uses target/release/ramjet and ramjet-bench as they are: build those first
# (cargo build --release && cargo build --release -p ramjet-bench). Needs jq.
# Prints one JSON line per run: {"which", "load", "rate", "p50_us", "p99_us"}.
BASE=${1:?usage: perf/ab.sh BASE_REV [ROUNDS]}
ROUNDS=${2:-3}
. "$(dirname "$0")/lib.sh" ab
HEAD_BIN=$R
build_base "$BASE"

run() { # which, bin, load, bench args...
  local which=$1 bin=$2 load=$3; shift 3
  rm -rf "$W/d"
  $bin start --shards 1 --cpus "$BROKER_CPU" --data-dir "$W/d" --port 19911 --listen-ip 127.0.0.1 \
    --namesrv-listen $NS > "$W/b.log" 2>&1 &
  local bp=$!
  wait_ready "$W/b.log"
  wait_prefaulted
  $B "$@" --namesrv $NS --cpus "$BENCH_CPU" --quiet --json "$W/r.json" > /dev/null 2>&1
  echo "{\"which\":\"$which\",\"load\":\"$load\",\"result\":$(jq -c '{rate: (.msgs_per_s|floor), errors: .errors, p50_us: .latency.p50_us, p99_us: .latency.p99_us}' "$W/r.json")}"
  stop_broker $bp
}

echo "# $(date -u +%FT%TZ) base $(git rev-parse --short "$BASE") head $(git rev-parse --short HEAD)$(git diff --quiet || echo +dirty) $(nproc) CPUs; broker CPU $BROKER_CPU, bench CPU $BENCH_CPU"
for _ in $(seq "$ROUNDS"); do
  for which in base head; do
    bin=$HEAD_BIN
    [ "$which" = base ] && bin=$BASE_BIN
    run $which "$bin" b1 produce --topic P --queues 8 --size 100 --batch 1 --producers 4 --duration 6 --warmup 2
    run $which "$bin" "e2e-$RATE" e2e --topic E --queues 8 --size 100 --rate "$RATE" --duration 8 --warmup 2
  done
done
