#!/usr/bin/env bash
# CPU availability floor: one thread per listed CPU, pinned, reads CLOCK_MONOTONIC in a tight
# loop for SECONDS and counts the gaps between two reads longer than 200 µs: time in which that
# thread, runnable and never sleeping, did not run. With nothing else busy on the machine the
# gaps are what the kernel's own threads and, on a VM, the hypervisor take. A latency row
# cannot have a p99 below a gap length that covers more than ~1 % of the time on the CPUs its
# messages pass through; quote this next to latency percentiles measured on the same machine.
#
#   perf/cpu-gaps.sh [CPUS [SECONDS]]     CPUS like 0,1 (default: every online CPU), SECONDS 5
#
# One line per CPU: gaps >= 0.2 ms (count, total ms, share of the time), >= 1 ms, >= 3 ms, max.
# Needs gcc. All threads spin at once: a VM's vCPUs are descheduled by the host differently
# when all of them are busy (session 20: 2-vCPU guest, cpu1 lost 1.0-1.9 % of 8-10 s in gaps,
# up to 8.8 ms, with both busy; 0.01 % with one).
set -euo pipefail

CPUS=${1:-$(seq -s, 0 $(($(nproc) - 1)))}
SECS=${2:-5}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cat >"$WORK/gaps.c" <<'EOF'
/* gaps CPU SECONDS: spin pinned to CPU, report gaps between clock reads over 200 µs. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int cpu = atoi(argv[1]);
    double secs = atof(argv[2]);
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set)) { perror("sched_setaffinity"); return 1; }
    double start = now_s(), last = start, total = 0, max = 0;
    long n200 = 0, n1 = 0, n3 = 0;
    for (;;) {
        double t = now_s(), g = t - last;
        last = t;
        if (g > 200e-6) {
            n200++;
            total += g;
            if (g > 1e-3) n1++;
            if (g > 3e-3) n3++;
            if (g > max) max = g;
        }
        if (t - start > secs) break;
    }
    double span = last - start;
    printf("cpu %d: %.0f s, gaps >= 0.2 ms: %ld, %.1f ms (%.2f %% of the time); >= 1 ms: %ld; "
           ">= 3 ms: %ld; max %.2f ms\n",
           cpu, span, n200, total * 1e3, 100 * total / span, n1, n3, max * 1e3);
    return 0;
}
EOF
gcc -O2 -o "$WORK/gaps" "$WORK/gaps.c"

pids=()
IFS=, read -ra list <<<"$CPUS"
for c in "${list[@]}"; do
    "$WORK/gaps" "$c" "$SECS" >"$WORK/out.$c" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for c in "${list[@]}"; do cat "$WORK/out.$c"; done
