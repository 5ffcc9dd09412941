#!/usr/bin/env bash
# One line on the file system holding DIR: device, type, mount options and, for ext4, whether
# it has a journal. Printed in the headers of perf/bench-report.sh and perf/sync-ratio.sh
# because they decide what an fdatasync costs: on ext4 without a journal (this VM's root file
# system) an fdatasync writes the inode's table block itself whenever the file's mtime moved
# (once per timer tick under steady writes; perf/results/session22-2026-12-06.md), where with
# a journal the inode change goes through a journal commit.
#
# Usage: perf/fs-info.sh DIR
set -euo pipefail
DIR=${1:?usage: perf/fs-info.sh DIR}
src=$(findmnt -no SOURCE --target "$DIR" 2>/dev/null || echo unknown)
fstype=$(findmnt -no FSTYPE --target "$DIR" 2>/dev/null || echo unknown)
opts=$(findmnt -no OPTIONS --target "$DIR" 2>/dev/null || echo unknown)
journal=""
if [ "$fstype" = ext4 ]; then
    task="/sys/fs/ext4/$(basename "$src")/journal_task"
    if [ -r "$task" ]; then
        if [ "$(cat "$task")" = "<none>" ]; then
            journal="; journal: none"
        else
            journal="; journal: yes ($(cat "$task"))"
        fi
    fi
fi
echo "$src ($fstype, $opts$journal)"
