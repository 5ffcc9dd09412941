# Shared by the broker benchmark scripts (acl.sh, replication.sh, timer.sh, ab.sh, pop-ab.sh); sourced, not run:
#   . "$(dirname "$0")/lib.sh" NAME
# Moves to the repository root, and sets R and B (the release binaries; builds nothing), W (a
# work directory /tmp/ramjet-NAME.*, removed with every background job on exit), NS (the name
# server address the scripts start their broker with) and the layout defaults RATE (50000),
# BROKER_CPU (0) and BENCH_CPU (1), each overridable from the environment.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
R=./target/release/ramjet
B=./target/release/ramjet-bench
W=$(mktemp -d "/tmp/ramjet-$1.XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
NS=127.0.0.1:19876
RATE=${RATE:-50000}
BROKER_CPU=${BROKER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}

# Waits until the broker writing log file $1 printed its ready line.
wait_ready() {
  until grep -qs '^ramjet: ready' "$1"; do sleep 0.1; done
}

# Waits until every shard prefaulted its tables (admin status `prefaultBacklog` 0), so that a
# run does not measure page faults; extra arguments go to `ramjet admin status` (ACL keys).
wait_prefaulted() {
  while $R admin status --namesrv $NS --filter prefaultBacklog "$@" 2>/dev/null \
    | grep prefaultBacklog | grep -qv ' 0$'; do
    sleep 0.2
  done
}

# Stops the broker process $1 (SIGTERM: a clean shutdown) and waits for it.
stop_broker() {
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# Builds revision $1's broker in a worktree under target/ab-base (minutes the first time) and
# sets BASE_BIN to it: the "base" of the A/B scripts (ab.sh, pop-ab.sh).
build_base() {
  local wt=./target/ab-base/tree
  if [ ! -d "$wt" ]; then
    git worktree add --detach "$wt" "$1" > /dev/null
  else
    git -C "$wt" checkout --detach -q "$1"
  fi
  (cd "$wt" && CARGO_TARGET_DIR=../target cargo build --release -q -p ramjet --bin ramjet)
  BASE_BIN=./target/ab-base/target/release/ramjet
}
