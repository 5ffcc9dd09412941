#!/usr/bin/env bash
# Shard scaling: the same produce load against 1, 2, 4, ... shards, each shard pinned to a CPU
# of its own and the load generator on CPUs of its own, so that msg/s per shard can be read off
# as the shard count grows (the thread-per-core claim: a shard is a core is a logical broker,
# nothing shared between them on the data path).
#
# Rows, per shard count K (broker `--shards K --cpus 0..K-1`, a fresh data dir each time):
#   async-100B-b100   100 B messages in batches of 100, `--flush async`, closed loop (max)
#   sync-1KiB         1 KiB single sends, `--flush sync` (group commit), closed loop (max)
#                     (SYNC=0 skips it)
# The generator gets BENCH_PER_SHARD CPUs per shard (never fewer than 1), after the broker's,
# capped by the CPUs there are; a layout that does not fit is skipped and said so. Every row
# prints its exact commands, its CPU layout and the generator's CPU use, since a generator at
# 100 % of its CPUs, not the broker, may be what stopped a row from scaling.
#
# Usage: perf/scaling.sh [OUT_DIR]
#   OUT_DIR   default ./target/scaling/<UTC time>; gets summary.md, results.tsv, per-run JSON
#             and logs
# Environment (all optional):
#   BIN_DIR=./target/release   `ramjet` and `ramjet-bench` (the default: built first)
#   DATA_DIR=OUT_DIR/data      broker data (the file system under test)
#   SHARDS="1 2 4 8"           shard counts to run (default: powers of two that fit)
#   BENCH_PER_SHARD=1          generator CPUs per shard
#   DUR=6 WARM=2               measured and warm-up seconds per run
#   SYNC=1                     0 skips the sync rows
#   NS_PORT=29976 PORT=21911   name server and first broker port (127.0.0.1 only)
#   SEG=268435456              --segment-size-bytes
# Needs: bash, coreutils, and jq or python3 (to read the bench's JSON). No fio,
# no perf, no compiler: it runs on a bare machine given the two binaries, e.g.
#   BIN_DIR=/path/to/bins bash perf/scaling.sh /tmp/scaling
# On the 2-vCPU development VM only K = 1 fits the split layout (broker CPU 0, bench CPU 1).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/target/scaling/$(date -u +%Y%m%dT%H%M%SZ)}
BIN_DIR=${BIN_DIR:-$ROOT/target/release}
RAMJET=$BIN_DIR/ramjet
BENCH=$BIN_DIR/ramjet-bench
DUR=${DUR:-6}
WARM=${WARM:-2}
BENCH_PER_SHARD=${BENCH_PER_SHARD:-1}
SYNC=${SYNC:-1}
NS_PORT=${NS_PORT:-29976}
PORT=${PORT:-21911}
SEG=${SEG:-268435456}
NS=127.0.0.1:$NS_PORT
READY_TIMEOUT_S=60
TICKS=$(getconf CLK_TCK)
NCPU=$(nproc)

if [ "$BIN_DIR" = "$ROOT/target/release" ]; then
    (cd "$ROOT" && cargo build --release --workspace --bins >/dev/null)
fi
for b in "$RAMJET" "$BENCH"; do
    [ -x "$b" ] || { echo "missing binary: $b (set BIN_DIR)" >&2; exit 1; }
done
if command -v jq >/dev/null; then
    JSON=jq
elif command -v python3 >/dev/null; then
    JSON=python3
else
    echo "needs jq or python3 to read ramjet-bench's JSON" >&2
    exit 1
fi

mkdir -p "$OUT"
DATA_DIR=${DATA_DIR:-$OUT/data}
mkdir -p "$DATA_DIR"
SUMMARY=$OUT/summary.md
RESULTS=$OUT/results.tsv
: >"$SUMMARY"
printf 'row\tshards\tbroker_cpus\tbench_cpus\tmsgs_per_s\tmb_per_s\tp50_ms\tp99_ms\terrors\tbroker_cpu_pct\tbench_cpu_pct\tcommand\n' >"$RESULTS"
say() { echo "$*" | tee -a "$SUMMARY"; }

# Fields of ramjet-bench's --json output, tab-separated: msgs_per_s mb_per_s p50_ms p99_ms errors
bench_fields() {
    if [ "$JSON" = jq ]; then
        jq -r '[.msgs_per_s, .mb_per_s, .latency.p50_us / 1000, .latency.p99_us / 1000, .errors]
               | map(tostring) | join("\t")' "$1"
    else
        python3 - "$1" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
print("\t".join(str(v) for v in (j["msgs_per_s"], j["mb_per_s"], j["latency"]["p50_us"] / 1000,
                                 j["latency"]["p99_us"] / 1000, j["errors"])))
EOF
    fi
}

# utime + stime of a process, in clock ticks.
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# CPU list "a-b" (or "a" for one CPU).
cpu_range() { if [ "$2" -gt 1 ]; then echo "$1-$(($1 + $2 - 1))"; else echo "$1"; fi; }

BPID=""
broker_stop() {
    [ -n "$BPID" ] || return 0
    kill -TERM "$BPID" 2>/dev/null || true
    local rc=0
    wait "$BPID" || rc=$?
    BPID=""
    if [ "$rc" != 0 ]; then
        say "broker exited with status $rc on SIGTERM (log: $OUT/broker-$LABEL.log)"
        exit 1
    fi
}
trap 'broker_stop' EXIT

# broker_start LABEL SHARDS CPUS FLUSH: a fresh data dir, waits for "ramjet: ready".
broker_start() {
    LABEL=$1
    local dir=$DATA_DIR/$1
    rm -rf "$dir"
    BROKER_CMD=(start --shards "$2" --cpus "$3" --data-dir "$dir" --port "$PORT"
        --namesrv-listen "$NS" --listen-ip 127.0.0.1 --flush "$4" --io-mode direct
        --segment-size-bytes "$SEG")
    "$RAMJET" "${BROKER_CMD[@]}" >"$OUT/broker-$1.log" 2>&1 &
    BPID=$!
    local waited=0
    until grep -qs '^ramjet: ready' "$OUT/broker-$1.log"; do
        if ! kill -0 "$BPID" 2>/dev/null; then
            BPID=""
            say "broker $1 exited during start-up:"
            tail -20 "$OUT/broker-$1.log" | tee -a "$SUMMARY"
            exit 1
        fi
        sleep 0.2
        waited=$((waited + 1))
        if [ "$waited" -gt $((READY_TIMEOUT_S * 5)) ]; then
            say "broker $1 not ready after ${READY_TIMEOUT_S}s"
            exit 1
        fi
    done
}

# run ROW SHARDS BROKER_CPUS BENCH_CPUS BENCH_ARGS...: one bench run against the running broker.
run() {
    local row=$1 k=$2 bcpus=$3 gcpus=$4
    shift 4
    local name=$row-s$k
    local args=(produce --namesrv "$NS" "$@" --cpus "$gcpus" --duration "$DUR" --warmup "$WARM"
        --quiet --json "$OUT/$name.json")
    local b0 b1 rc=0
    b0=$(proc_ticks "$BPID")
    # bash's own `time` (user, system, real seconds): GNU time may be missing on a bare machine.
    { TIMEFORMAT='%U %S %R'; time "$BENCH" "${args[@]}" >"$OUT/$name.log" 2>&1; } 2>"$OUT/$name.time" || rc=$?
    b1=$(proc_ticks "$BPID")
    if [ "$rc" != 0 ]; then
        say "RUN FAILED: $name (ramjet-bench exit $rc): $(tail -3 "$OUT/$name.log" | tr '\n' ' ')"
        return 0
    fi
    local u s e f bcpu gcpu
    read -r u s e <"$OUT/$name.time"
    f=$(bench_fields "$OUT/$name.json")
    bcpu=$(awk -v d=$((b1 - b0)) -v t="$TICKS" -v e="$e" 'BEGIN {printf "%.0f", 100 * d / t / e}')
    gcpu=$(awk -v u="$u" -v s="$s" -v e="$e" 'BEGIN {printf "%.0f", 100 * (u + s) / e}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$row" "$k" "$bcpus" "$gcpus" "$f" "$bcpu" "$gcpu" \
        "ramjet ${BROKER_CMD[*]}; ramjet-bench ${args[*]}" >>"$RESULTS"
    local rate p99
    rate=$(cut -f1 <<<"$f")
    p99=$(cut -f4 <<<"$f")
    say "  $row: $(printf '%.0f' "$rate") msg/s ($(awk -v r="$rate" -v k="$k" 'BEGIN {printf "%.0f", r / k}') per shard), p99 $p99 ms, errors $(cut -f5 <<<"$f"); broker CPU $bcpu %, bench CPU $gcpu % of one CPU"
    say "    \`ramjet-bench ${args[*]}\`"
}

if [ -z "${SHARDS:-}" ]; then
    SHARDS=""
    for k in 1 2 4 8 16 32 64; do
        g=$((k * BENCH_PER_SHARD))
        [ "$g" -ge 1 ] || g=1
        [ $((k + g)) -le "$NCPU" ] && SHARDS="$SHARDS $k"
    done
fi

say "# ramjet shard scaling, $(date -u '+%Y-%m-%d %H:%M:%S') UTC"
say "machine: $(uname -r); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $NCPU CPUs"
say "binaries: $RAMJET, $BENCH ($("$BENCH" --version 2>/dev/null || echo '?'))"
say "data dir: $DATA_DIR ($(df -hT "$DATA_DIR" | awk 'NR == 2 {print $1 ", " $2 ", " $5 " used"}'))"
say "shard counts: $SHARDS; generator CPUs per shard: $BENCH_PER_SHARD; DUR=${DUR}s WARM=${WARM}s"
say ""

for k in $SHARDS; do
    g=$((k * BENCH_PER_SHARD))
    [ "$g" -ge 1 ] || g=1
    if [ $((k + g)) -gt "$NCPU" ]; then
        say "## $k shards: skipped ($k broker CPUs + $g generator CPUs > $NCPU CPUs)"
        continue
    fi
    bcpus=$(cpu_range 0 "$k")
    gcpus=$(cpu_range "$k" "$g")
    say "## $k shard(s): broker --cpus $bcpus, ramjet-bench --cpus $gcpus"
    broker_start "async-s$k" "$k" "$bcpus" async
    say "  broker: \`ramjet ${BROKER_CMD[*]}\`"
    run async-100B-b100 "$k" "$bcpus" "$gcpus" --topic Scale100 --queues 8 --size 100 --batch 100 \
        --producers $((4 * g))
    broker_stop
    rm -rf "$DATA_DIR/async-s$k"
    if [ "$SYNC" = 1 ]; then
        broker_start "sync-s$k" "$k" "$bcpus" sync
        say "  broker: \`ramjet ${BROKER_CMD[*]}\`"
        run sync-1KiB "$k" "$bcpus" "$gcpus" --topic ScaleSync --queues 8 --size 1024 --batch 1 \
            --producers $((2 * g))
        broker_stop
        rm -rf "$DATA_DIR/sync-s$k"
    fi
done

say ""
say "## Scaling (msg/s at K shards over K x msg/s at the first shard count run)"
awk -F'\t' 'NR > 1 {
        if (!($1 in base)) { base[$1] = $5 / $2 }
        printf "%s, %s shard(s): %.0f msg/s, efficiency %.2f\n", $1, $2, $5, ($5 / $2) / base[$1]
    }' "$RESULTS" | tee -a "$SUMMARY"
rm -rf "$DATA_DIR"
