#!/usr/bin/env bash
# Device-level latency of block requests while something else runs: cache flushes (what every
# fdatasync waits for), writes, reads, discards. Use it next to a `--flush sync` benchmark to
# see how much of an acknowledged send's latency the device itself takes under that load; fio's
# idle fdatasync numbers (perf/fio.sh) say little about a device that is also absorbing
# ConsumeQueue/IndexFile writeback.
#
# Usage: perf/blk-latency.sh [SECONDS] [DEVICE]
#   SECONDS  how long to trace (default 5)
#   DEVICE   major,minor as the tracepoints print it (default: every device)
# Needs perf with the block tracepoints (root). Prints one line per kind:
#   F (flush), W (write), R (read), D (discard): count, p50/p90/p99/max in microseconds.
set -euo pipefail

SECS=${1:-5}
DEV=${2:-}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

perf record -q -e block:block_rq_issue -e block:block_rq_complete -a -o "$TMP/blk.data" \
    -- sleep "$SECS" 2>/dev/null
perf script -i "$TMP/blk.data" -F time,event,trace 2>/dev/null >"$TMP/blk.txt"

python3 - "$TMP/blk.txt" "$DEV" <<'EOF'
import collections, re, sys

path, dev = sys.argv[1], sys.argv[2]
# issue:    "254,0 WS 61440 () 189251664 + 120 ..."   (device, rwbs, bytes, (), sector + count)
# complete: "254,0 WS () 189251664 + 120 ..."
pat = re.compile(r'([\d.]+):\s+block:block_rq_(issue|complete):\s+(\S+)\s+(\S+)\s+(?:\d+\s+)?\(\)\s+(\d+)\s+\+\s+(\d+)')
issued = collections.defaultdict(list)
lat = collections.defaultdict(list)
for line in open(path):
    m = pat.search(line)
    if not m or (dev and m.group(3) != dev):
        continue
    t, ev, rwbs, sector = float(m.group(1)), m.group(2), m.group(4), m.group(5)
    kind = 'F' if rwbs.startswith('F') else rwbs[0]
    # Flushes carry no sector: matched first in, first out per device.
    key = (m.group(3), kind) if kind == 'F' else (m.group(3), kind, sector)
    if ev == 'issue':
        issued[key].append(t)
    elif issued[key]:
        lat[kind].append((t - issued[key].pop(0)) * 1e6)
names = {'F': 'flush', 'W': 'write', 'R': 'read', 'D': 'discard'}
if not lat:
    print('no block requests completed while tracing')
for kind in sorted(lat):
    v = sorted(lat[kind])
    n = len(v)
    pick = lambda q: v[min(n - 1, int(n * q))]
    print(f"{names.get(kind, kind)}: {n} requests, p50 {pick(0.5):.0f} us, p90 {pick(0.9):.0f} us, "
          f"p99 {pick(0.99):.0f} us, max {v[-1]:.0f} us")
EOF
