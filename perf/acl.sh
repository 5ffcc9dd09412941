#!/usr/bin/env bash
# Cost of ACL (docs/acl.md) on the send path, as ratios of runs made next to each other:
#   off:  broker without ACL, generator unsigned (the baseline);
#   sign: broker without ACL, generator signing every request (the client's share: one
#         HMAC-SHA1 per request, and two more header fields for the broker to parse);
#   on:   broker with `acl_enable`, generator signing (the broker checks the signature and the
#         account's topic and group permissions of every request).
# 100 B messages: closed loop batch 1 (4 producers) and batch 100, and open loop at RATE msg/s
# batch 1 (latency). The account is an admin with topic and group lists, so the full check
# runs (an admin without lists skips the permission lookups).
#
# Layout: the broker's one shard on BROKER_CPU (0), the generator on BENCH_CPU (1).
# Usage: perf/acl.sh [ROUNDS]   (default 2). Prints one JSON line per run, with the broker's
# CPU time per message put over the whole bench run (warm-up included).
# Needs jq; builds nothing (uses target/release/ramjet and ramjet-bench).
ROUNDS=${1:-2}
. "$(dirname "$0")/lib.sh" acl
AK=benchadmin1
SK=bench-admin-secret
cat > "$W/plain_acl.yml" <<EOF
accounts:
  - accessKey: $AK
    secretKey: $SK
    admin: true
    defaultTopicPerm: DENY
    defaultGroupPerm: DENY
    topicPerms: [AP=PUB|SUB, TBW102=PUB|SUB, other=SUB]
    groupPerms: [ramjet_bench=SUB, other=SUB]
EOF

start() { # mode: off | sign | on
  rm -rf "$W/d"
  local acl=()
  [ "$1" = on ] && acl=(--acl "$W/plain_acl.yml")
  $R start --shards 1 --cpus "$BROKER_CPU" --data-dir "$W/d" --port 19911 --listen-ip 127.0.0.1 \
    --namesrv-listen $NS "${acl[@]}" > "$W/b.log" 2>&1 &
  BP=$!
  wait_ready "$W/b.log"
  wait_prefaulted --access-key $AK --secret-key $SK
}

stop() { stop_broker $BP; }

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

status() { $R admin status --namesrv $NS --access-key $AK --secret-key $SK "$@" 2>/dev/null; }

run() { # mode, name, bench args...
  local mode=$1 name=$2; shift 2
  start "$mode"
  local keys=()
  [ "$mode" != off ] && keys=(--access-key $AK --secret-key $SK)
  local t0 t1 puts cpu denied
  t0=$(ticks $BP)
  $B "$@" "${keys[@]}" --namesrv $NS --cpus "$BENCH_CPU" --quiet --json "$W/r.json" > /dev/null 2>&1
  t1=$(ticks $BP)
  puts=$(status --filter msgPutTotalTodayNow | awk '/msgPut/ {print $2; exit}')
  cpu=$(awk -v t=$((t1 - t0)) -v n="$puts" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.3f", t*1e6/hz/n}')
  denied=$(status --filter aclDenied | awk '/aclDenied/ {print $2; exit}')
  echo "{\"mode\":\"$mode\",\"run\":\"$name\",\"result\":$(jq -c '{rate: (.msgs_per_s|floor), errors: .errors, p50_us: .latency.p50_us, p99_us: .latency.p99_us, max_us: .latency.max_us}' "$W/r.json"),\"broker_cpu_us_per_msg\":$cpu,\"acl_denied\":\"${denied:-n/a}\"}"
  stop
}

echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(nproc) CPUs; broker CPU $BROKER_CPU, bench CPU $BENCH_CPU"
for _ in $(seq "$ROUNDS"); do
  for mode in off sign on; do
    run $mode b1 produce --topic AP --queues 8 --size 100 --batch 1 --producers 4 --duration 6 --warmup 2
  done
  for mode in off sign on; do
    run $mode b100 produce --topic AP --queues 8 --size 100 --batch 100 --producers 4 --duration 6 --warmup 2
  done
  for mode in off sign on; do
    run $mode "rate-$RATE" produce --topic AP --queues 8 --size 100 --batch 1 --rate "$RATE" \
      --duration 8 --warmup 2 --wake-ahead-us 0
  done
done
