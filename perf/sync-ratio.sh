#!/usr/bin/env bash
# The 4 KiB flush=sync store row against fio, as ratios of runs made next to each other.
#
# Why: this VM's disk drifts by a third within the hour (fio 1 MiB QD4 1.5-2.9 GB/s on one
# day), so one fio figure and one store figure taken minutes apart give any ratio from 50 to
# 90 %. Here every store run sits between two runs of fio's O_DIRECT 1 MiB QD4 sequential
# write (perf/fio.sh's yardstick row: a laid-out file overwritten), and its ratio is to the
# mean of the two (fio moved by a third between consecutive runs in session 23; one fio run
# per round of five store runs left the later columns up to 15 s from their yardstick). The
# store (examples/sync_loop.rs:
# 4096 concurrent appenders, each waiting for the fdatasync that covers its 4 KiB record, one
# prewritten 1 GiB segment so that no background zero fill shares the disk), with the
# pipelined group commit off and on (the executor's preempt timer at its default, 100 ms, as in
# the broker), the pipelined one again with a 200 us preempt timer (PREEMPT_US; the
# broker's `runtime.preempt_timer_us`, see docs/config.md), and again with the flusher's
# latency requirement at FLUSHER_US (1000, the value before session 22; the default,
# `store.flusher_latency_us`, is 5000, which suits the broker's 1 KiB sync rows and costs
# this loop 1-9 %), and again with the write phases not cut at `store.sync_group_max_bytes`
# (GROUP_KIB, default 1 TiB: everything pending written before each fdatasync, the behaviour
# before session 23; the default cuts at 8 MiB). It prints every round (fio, then each store
# column followed by the fio after it) and the median of each column's ratios. What it leaves
# out:
# the preparation of the next segment (zero fill) that a long run pays, see
# perf/results/session21-2026-12-06.md section 7.
#
# Usage: perf/sync-ratio.sh [DIR] [ROUNDS]   DIR: scratch directory on the disk under test
#        (default ./target/bench-scratch), ROUNDS: how many rounds (default 8). PREEMPT_US (200): the
#        third store column's preempt timer. FLUSHER_US (1000): the fourth column's flusher
#        latency. GROUP_KIB (1073741824): the fifth column's sync group bound in KiB.
# Needs fio and jq (perf/fio.sh installs fio when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-./target/bench-scratch}
ROUNDS=${2:-8}
MSGS=${SYNC_RATIO_MSGS:-240000}
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

store_mib() { # pipeline 0|1, preempt timer in us[, flusher latency in us[, group bound in KiB]]
    RAMJET_SYNC_GROUP_MAX_KIB=${4:-} RAMJET_FLUSHER_LATENCY_US=${3:-} RAMJET_PREEMPT_US=$2 RAMJET_PREWRITTEN=1 RAMJET_PREALLOCATE=none RAMJET_SYNC_PIPELINE=$1 \
        "$BIN" "$DIR" "$MSGS" 4096 4096 1024 2> >(grep -v 'store open, appending' >&2) | grep appenders: | sed -E 's/.*appenders: ([0-9.]+) MiB\/s.*/\1/'
}

echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) CPUs, $(git rev-parse --short HEAD)"
echo "# dir $(realpath "$DIR") on $(perf/fs-info.sh "$DIR")"
echo "# store: $MSGS x 4 KiB, 4096 appenders, flush=sync, io_mode=direct, prewritten 1 GiB segment"
echo "# each store run's ratio is to the mean of the fio runs right before and after it (MiB/s)"
NAMES=(store pipelined "pipelined_preempt${PREEMPT_US}us" "pipelined_flusher${FLUSHER_US}us" "pipelined_group${GROUP_KIB}KiB")
echo "round fio0 ${NAMES[0]} fio1 ${NAMES[1]} fio2 ${NAMES[2]} fio3 ${NAMES[3]} fio4 ${NAMES[4]} fio5 | ratios: ${NAMES[*]}"
declare -a R0 R1 R2 R3 R4
store_col() { # column index -> MiB/s
    case $1 in
    0) store_mib 0 100000 ;;
    1) store_mib 1 100000 ;;
    2) store_mib 1 "$PREEMPT_US" ;;
    3) store_mib 1 100000 "$FLUSHER_US" ;;
    4) store_mib 1 100000 "" "$GROUP_KIB" ;;
    esac
}
for i in $(seq 1 "$ROUNDS"); do
    before=$(fio_mib)
    line="$i $before"
    ratios=""
    for c in 0 1 2 3 4; do
        m=$(store_col "$c")
        after=$(fio_mib)
        r=$(awk -v a="$m" -v b="$before" -v c="$after" 'BEGIN {printf "%.3f", 2 * a / (b + c)}')
        case $c in
        0) R0+=("$r") ;;
        1) R1+=("$r") ;;
        2) R2+=("$r") ;;
        3) R3+=("$r") ;;
        4) R4+=("$r") ;;
        esac
        line="$line $m $after"
        ratios="$ratios $r"
        before=$after
    done
    echo "$line |$ratios"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
echo "median ratio: store $(median "${R0[@]}"), pipelined $(median "${R1[@]}"), pipelined with a ${PREEMPT_US} us preempt timer $(median "${R2[@]}"), pipelined with the flusher at ${FLUSHER_US} us $(median "${R3[@]}"), pipelined with the group bound at ${GROUP_KIB} KiB $(median "${R4[@]}") (target 0.80)"
