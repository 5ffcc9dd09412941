#!/usr/bin/env bash
# Storage numbers in one go: the disk's yardstick (perf/fio.sh) and ramjet's CommitLog append and
# ConsumeQueue lookup benchmarks (storage/benches), short criterion runs, plus the allocation
# count per append (storage/tests/alloc_count.rs). Output: a log under perf/results/.
#
# Usage: perf/storage-bench.sh [DIR]   DIR = scratch directory on the disk to measure
#        (default ./target/bench-scratch); benchmarks put their stores there too.
# Env:   CARGO_TARGET_DIR as usual; CRITERION_ARGS (default "--warm-up-time 1 --measurement-time 3").
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-./target/bench-scratch}
mkdir -p "$DIR" perf/results
LOG=perf/results/storage-$(date -u +%Y-%m-%d)-raw.log
CRITERION_ARGS=${CRITERION_ARGS:-"--warm-up-time 1 --measurement-time 3"}
{
    echo "# $(date -u +%FT%TZ) $(uname -r)"
    lscpu | head -15
    echo
    perf/fio.sh "$DIR"
    echo
    echo "## cargo bench -p ramjet-storage --bench append -- $CRITERION_ARGS"
    # shellcheck disable=SC2086
    RAMJET_BENCH_DIR="$DIR" cargo bench -p ramjet-storage --bench append -- $CRITERION_ARGS
    # The 4 KiB sync rows once more the way a broker runs them: its default 1 GiB segment
    # (prepared before the clock; no roll or background zero fill inside a sample) and
    # samples long enough for the steady state (205k appends at 4096 appenders). The -steady
    # row keeps one store across samples, so its samples roll segments as a broker does; the
    # -shard row is the broker's default store in a shard's layout (pinned executor, io_uring
    # workers on the other CPUs), the row issue #2's target is read from.
    echo "## RAMJET_BENCH_SEGMENT_MIB=1024 RAMJET_BENCH_SYNC_ROUNDS=50 cargo bench -p ramjet-storage --bench append -- 'append_sync/4KiB/direct(-pipeline(-steady|-shard)?)?/4096x' $CRITERION_ARGS"
    # shellcheck disable=SC2086
    RAMJET_BENCH_DIR="$DIR" RAMJET_BENCH_SEGMENT_MIB=1024 RAMJET_BENCH_SYNC_ROUNDS=50 \
        cargo bench -p ramjet-storage --bench append -- 'append_sync/4KiB/direct(-pipeline(-steady|-shard)?)?/4096x' $CRITERION_ARGS
    echo "## fio once more after the sync rows (the disk's speed drifts; quote the ratio to both)"
    perf/fio.sh "$DIR"
    echo "## cargo bench -p ramjet-storage --bench cq_lookup -- $CRITERION_ARGS"
    # shellcheck disable=SC2086
    cargo bench -p ramjet-storage --bench cq_lookup -- $CRITERION_ARGS
    echo "## allocations per append: cargo test --release -p ramjet-storage --test alloc_count -- --nocapture"
    cargo test --release -p ramjet-storage --test alloc_count -- --nocapture
} 2>&1 | tee "$LOG"
echo "raw log: $LOG"
