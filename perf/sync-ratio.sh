#!/usr/bin/env bash
# The 4 KiB flush=sync store row against fio, as ratios of runs made next to each other.
#
# Why: this VM's disk drifts by a third within the hour (fio 1 MiB QD4 1.5-2.9 GB/s on one
# day), so one fio figure and one store figure taken minutes apart give any ratio from 50 to
# 90 %. Here every store run sits between two runs of fio's O_DIRECT 1 MiB QD4 sequential
# write (perf/fio.sh's yardstick row: a laid-out file overwritten), and its ratio is to the
# mean of the two (fio moved by a third between consecutive runs in session 23).
#
# The store (examples/sync_loop.rs): 4096 concurrent appenders, each waiting for the
# fdatasync that covers its 4 KiB record, one prewritten 1 GiB segment so that no background
# zero fill shares the disk (fio's file is laid out before it is measured, too). Columns:
#   store            group commit without the pipeline, the thread unpinned
#   pipelined        pipelined group commit (the default), the thread unpinned
#   pipelined_shard  the same in a broker shard's layout: the store's thread pinned to CPU
#                    SHARD_CPU (0) and its io_uring workers (fdatasyncs, writes that cannot
#                    go inline) on the other online CPUs, as `ramjet start --cpus` places a
#                    shard (`runtime.io_workers_off_shard`). The broker's own layout, and
#                    the column the target is read from since session 26.
# With KNOBS=1, three more columns, each the shard column with one knob changed: the
# executor's preempt timer at PREEMPT_US (200; `runtime.preempt_timer_us`, default 100 ms),
# the flusher's latency requirement at FLUSHER_US (1000; `store.flusher_latency_us`, default
# 5000), the write phases cut at GROUP_KIB (default 1 TiB: not cut;
# `store.sync_group_max_bytes`, default 8 MiB). Sessions 21-25 ran those columns unpinned.
# It prints every round (fio, then each store column followed by the fio after it) and the
# median of each column's ratios. What it leaves out: the preparation of the next segment
# (zero fill) that a long run pays, see perf/results/session21-2026-12-06.md section 7.
#
# Usage: perf/sync-ratio.sh [DIR] [ROUNDS]   DIR: scratch directory on the disk under test
#        (default ./target/bench-scratch), ROUNDS: how many rounds (default 8).
# Needs fio and jq (perf/fio.sh installs fio when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-./target/bench-scratch}
ROUNDS=${2:-8}
MSGS=${SYNC_RATIO_MSGS:-240000}
SHARD_CPU=${SHARD_CPU:-0}
PREEMPT_US=${PREEMPT_US:-200}
FLUSHER_US=${FLUSHER_US:-1000}
GROUP_KIB=${GROUP_KIB:-1073741824}
mkdir -p "$DIR"
command -v fio >/dev/null 2>&1 || perf/fio.sh "$DIR" 64M >/dev/null
command -v jq >/dev/null 2>&1 || { echo "jq is needed (apt-get -y install jq)" >&2; exit 1; }
cargo build --release -q -p ramjet-storage --example sync_loop
BIN=${CARGO_TARGET_DIR:-target}/release/examples/sync_loop
FILE="$DIR/sync-ratio-fio.dat"
trap 'rm -f "$FILE"' EXIT
fio --name=layout --filename="$FILE" --rw=write --bs=1M --size=1G --direct=1 \
    --ioengine=psync --output-format=json >/dev/null

fio_mib() {
    fio --name=w --filename="$FILE" --rw=write --bs=1M --iodepth=4 --ioengine=io_uring \
        --direct=1 --size=1G --output-format=json | jq -r '.jobs[0].write.bw_bytes / 1048576 | floor'
}

# The online CPUs other than the shard's, comma-separated (empty on a one-CPU machine).
WORKER_CPUS=$(python3 -c "
import os
print(','.join(str(c) for c in sorted(os.sched_getaffinity(0)) if c != $SHARD_CPU))" 2>/dev/null ||
    seq 0 $(($(nproc) - 1)) | grep -vx "$SHARD_CPU" | paste -sd,)
SHARD="RAMJET_CPU=$SHARD_CPU${WORKER_CPUS:+ RAMJET_IO_WORKER_CPUS=$WORKER_CPUS}"

# Column name and the environment of its sync_loop run.
NAMES=(store pipelined pipelined_shard)
ENVS=("RAMJET_SYNC_PIPELINE=0" "RAMJET_SYNC_PIPELINE=1" "RAMJET_SYNC_PIPELINE=1 $SHARD")
if [ "${KNOBS:-0}" = 1 ]; then
    NAMES+=("shard_preempt${PREEMPT_US}us" "shard_flusher${FLUSHER_US}us" "shard_group${GROUP_KIB}KiB")
    ENVS+=("RAMJET_SYNC_PIPELINE=1 $SHARD RAMJET_PREEMPT_US=$PREEMPT_US"
        "RAMJET_SYNC_PIPELINE=1 $SHARD RAMJET_FLUSHER_LATENCY_US=$FLUSHER_US"
        "RAMJET_SYNC_PIPELINE=1 $SHARD RAMJET_SYNC_GROUP_MAX_KIB=$GROUP_KIB")
fi

store_mib() { # column index -> MiB/s
    # shellcheck disable=SC2086 # the column's environment is a list of words
    env RAMJET_PREWRITTEN=1 RAMJET_PREALLOCATE=none ${ENVS[$1]} \
        "$BIN" "$DIR" "$MSGS" 4096 4096 1024 2> >(grep -v 'store open, appending' >&2) |
        grep appenders: | sed -E 's/.*appenders: ([0-9.]+) MiB\/s.*/\1/'
}

echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) CPUs, $(git rev-parse --short HEAD)"
echo "# dir $(realpath "$DIR") on $(perf/fs-info.sh "$DIR")"
echo "# store: $MSGS x 4 KiB, 4096 appenders, flush=sync, io_mode=direct, prewritten 1 GiB segment"
echo "# shard layout: $SHARD"
echo "# each store run's ratio is to the mean of the fio runs right before and after it (MiB/s)"
header="round fio0"
for c in "${!NAMES[@]}"; do header="$header ${NAMES[$c]} fio$((c + 1))"; done
echo "$header | ratios: ${NAMES[*]}"
declare -A RATIOS
for i in $(seq 1 "$ROUNDS"); do
    before=$(fio_mib)
    line="$i $before"
    ratios=""
    for c in "${!NAMES[@]}"; do
        m=$(store_mib "$c")
        after=$(fio_mib)
        r=$(awk -v a="$m" -v b="$before" -v c="$after" 'BEGIN {printf "%.3f", 2 * a / (b + c)}')
        RATIOS[$c]="${RATIOS[$c]:-} $r"
        line="$line $m $after"
        ratios="$ratios $r"
        before=$after
    done
    echo "$line |$ratios"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
summary="median ratio:"
for c in "${!NAMES[@]}"; do
    # shellcheck disable=SC2086 # the ratios are a list of words
    summary="$summary ${NAMES[$c]} $(median ${RATIOS[$c]}),"
done
echo "${summary%,} (target 0.80, read from pipelined_shard)"
