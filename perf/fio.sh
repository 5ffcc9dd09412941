#!/usr/bin/env bash
# What the disk under a directory can do, measured with fio, as the yardstick for ramjet's
# CommitLog numbers (storage/benches/append.rs):
#   1. O_DIRECT sequential write bandwidth, 4 KiB and 1 MiB blocks (io_uring, queue depth 1 and 8)
#   2. sustained O_DIRECT write with an fdatasync per 64 MiB (4 MiB blocks, QD16): the disk's
#      durable bandwidth, the ceiling of any async-flush produce run that lasts
#   3. 4 KiB write + fdatasync latency (buffered and O_DIRECT), p50/p99/p99.9 and syncs/s:
#      what one group commit costs at the least.
#
# Usage: perf/fio.sh [DIR] [SIZE]      DIR defaults to ./target/fio-scratch (same file system
#        as the store under test), SIZE (per job file) to 1G.
# Installs fio with apt-get when it is missing. Needs jq (or python3) to print the summary.
# Raw JSON results are kept in DIR/fio-*.json; the scratch data file is removed at the end.
set -euo pipefail

DIR=${1:-./target/fio-scratch}
SIZE=${2:-1G}
RUNTIME=${FIO_RUNTIME:-10}

if ! command -v fio >/dev/null 2>&1; then
    echo "fio not found; installing it (apt-get -y install fio)" >&2
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq >/dev/null && apt-get -y -qq install fio >/dev/null
    else
        sudo apt-get update -qq >/dev/null && sudo apt-get -y -qq install fio >/dev/null
    fi
fi
command -v jq >/dev/null 2>&1 || { echo "jq is needed for the summary (apt-get -y install jq)" >&2; exit 1; }

mkdir -p "$DIR"
FILE="$DIR/fio-scratch.dat"
trap 'rm -f "$FILE"' EXIT

echo "# fio $(fio --version) on $(uname -r), $(nproc) CPUs"
echo "# directory: $(realpath "$DIR") on $(df -T "$DIR" | awk 'NR==2 {print $1" ("$2")"}')"
echo "# size per run: $SIZE, time limit per run: ${RUNTIME}s"
echo

# Lay the file out first so that the write tests measure overwrites of allocated blocks (what
# ramjet's zero-filled segments see), not extent allocation.
fio --name=layout --filename="$FILE" --rw=write --bs=1M --size="$SIZE" --direct=1 \
    --ioengine=psync --output-format=json >/dev/null

run() { # name, extra fio args...
    local name=$1
    shift
    fio --name="$name" --filename="$FILE" --size="$SIZE" --runtime="$RUNTIME" --time_based=0 \
        --output-format=json "$@" >"$DIR/fio-$name.json"
}

bw_line() { # name
    jq -r '.jobs[0].write | "\(.bw_bytes / 1048576 | floor) MiB/s, \(.iops | floor) IOPS, clat p50 \(.clat_ns.percentile."50.000000" / 1000 | floor) us, p99 \(.clat_ns.percentile."99.000000" / 1000 | floor) us"' \
        "$DIR/fio-$1.json"
}

sync_line() { # name
    jq -r '.jobs[0] | "\(.write.iops | floor) writes+syncs/s; fdatasync p50 \(.sync.lat_ns.percentile."50.000000" / 1000 | floor) us, p99 \(.sync.lat_ns.percentile."99.000000" / 1000 | floor) us, p99.9 \(.sync.lat_ns.percentile."99.900000" / 1000 | floor) us; write p50 \(.write.clat_ns.percentile."50.000000" / 1000 | floor) us"' \
        "$DIR/fio-$1.json"
}

echo "## O_DIRECT sequential write bandwidth (io_uring)"
run seqwrite-4k-qd1 --rw=write --bs=4k --direct=1 --ioengine=io_uring --iodepth=1
echo "4 KiB, QD1:  $(bw_line seqwrite-4k-qd1)"
run seqwrite-4k-qd8 --rw=write --bs=4k --direct=1 --ioengine=io_uring --iodepth=8
echo "4 KiB, QD8:  $(bw_line seqwrite-4k-qd8)"
run seqwrite-1m-qd1 --rw=write --bs=1M --direct=1 --ioengine=io_uring --iodepth=1
echo "1 MiB, QD1:  $(bw_line seqwrite-1m-qd1)"
run seqwrite-1m-qd4 --rw=write --bs=1M --direct=1 --ioengine=io_uring --iodepth=4
echo "1 MiB, QD4:  $(bw_line seqwrite-1m-qd4)"
echo

echo "## Sustained durable sequential write: the CommitLog flusher's shape under async flush"
echo "## (4 MiB chunks, up to 16 writes in flight, one fdatasync per 64 MiB written), time-based"
run durable-4m-qd16 --rw=write --bs=4M --direct=1 --ioengine=io_uring --iodepth=16 \
    --fdatasync=16 --time_based=1
echo "4 MiB, QD16, fdatasync / 64 MiB: $(bw_line durable-4m-qd16)"
echo

echo "## 4 KiB write + fdatasync per write (the floor of one group commit)"
run fdatasync-4k-buffered --rw=write --bs=4k --fdatasync=1 --direct=0 --ioengine=sync --size=64M
echo "buffered:  $(sync_line fdatasync-4k-buffered)"
run fdatasync-4k-direct --rw=write --bs=4k --fdatasync=1 --direct=1 --ioengine=sync --size=64M
echo "O_DIRECT:  $(sync_line fdatasync-4k-direct)"
echo

echo "## Group-commit shape: O_DIRECT write of 64 x 4 KiB (256 KiB) + fdatasync, back to back"
echo "## (the ceiling for 64 concurrent 4 KiB SYNC_FLUSH appenders: one flush per batch)"
run groupcommit-256k-direct --rw=write --bs=256k --fdatasync=1 --direct=1 --ioengine=sync --size=512M
echo "O_DIRECT 256 KiB + fdatasync: $(bw_line groupcommit-256k-direct); $(sync_line groupcommit-256k-direct)"
run groupcommit-1m-direct --rw=write --bs=1M --fdatasync=1 --direct=1 --ioengine=sync --size=1G
echo "O_DIRECT 1 MiB + fdatasync:   $(bw_line groupcommit-1m-direct); $(sync_line groupcommit-1m-direct)"
