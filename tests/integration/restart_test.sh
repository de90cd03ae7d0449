#!/usr/bin/env bash
# A restart in the middle of a workload loses nothing acknowledged, on real processes: formats
# and starts a cluster of REPLICAS, runs tests/integration/ledger_workload.cpp (Tally's C++
# client) against it, kills every replica with SIGKILL while the workload runs, restarts them
# on the same data files, lets the workload finish (its client retries across the outage) and
# check every acknowledged transfer, then stops the cluster cleanly, starts it once more and
# checks everything again (--verify-only).
#
# The workload's 2500 requests span two checkpoints (every 1008 ops), and the crash comes after
# the first, so the restart loads a checkpoint and replays the WAL after it.
#
# Usage: tests/integration/restart_test.sh TALLY WORKLOAD WORK_DIR REPLICAS
# The work directory must be on a real filesystem (O_DIRECT); the data files (7 GiB each) are
# deleted at the end, whatever happens.
set -euo pipefail
tally=$1
workload=$2
work=$3
replicas=$4

mkdir -p "$work"
rm -f "$work"/*.tally "$work"/*.log
pids=()
workload_pid=

cleanup() {
  [[ -n "$workload_pid" ]] && kill -9 "$workload_pid" 2>/dev/null || true
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f "$work"/*.tally
}
trap cleanup EXIT

fail() {
  echo "restart_test: $*" >&2
  for log in "$work"/*.log; do
    echo "--- $log" >&2
    tail -20 "$log" >&2
  done
  exit 1
}

# Ports from a range the kernel does not hand out for outgoing connections, chosen at random
# so that parallel runs rarely meet; a clash shows as exit 16 (address in use) and fails.
base_port=$((20000 + (RANDOM % 2000) * 5))
addresses=$base_port
for ((replica = 1; replica < replicas; replica++)); do
  addresses+=",$((base_port + replica))"
done

for ((replica = 0; replica < replicas; replica++)); do
  "$tally" format --cluster=0 --replica="$replica" --replica-count="$replicas" \
    "$work/0_$replica.tally" > /dev/null
done

# start_all ROUND: starts every replica, logging to replica_R.ROUND.log, and waits until each
# says it is listening (a replica prefaults its memory first: this takes seconds).
start_all() {
  local round=$1
  pids=()
  for ((replica = 0; replica < replicas; replica++)); do
    "$tally" start --addresses="$addresses" "$work/0_$replica.tally" \
      > "$work/replica_$replica.$round.log" 2>&1 &
    pids+=($!)
  done
  for ((replica = 0; replica < replicas; replica++)); do
    local waited=0
    until grep -q "listening on" "$work/replica_$replica.$round.log"; do
      kill -0 "${pids[$replica]}" 2>/dev/null || fail "replica $replica exited while starting"
      ((waited++ < 1200)) || fail "replica $replica did not start in 120 s"
      sleep 0.1
    done
  done
}

start_all 1
"$workload" --addresses="$addresses" --batches=2500 --batch-size=100 \
  > "$work/workload.log" 2>&1 &
workload_pid=$!

# Kill the cluster once some batches are acknowledged, in the middle of the rest.
waited=0
until [[ $(grep -c acknowledged "$work/workload.log" || true) -ge 1200 ]]; do
  kill -0 "$workload_pid" 2>/dev/null || fail "the workload ended before the crash"
  ((waited++ < 1200)) || fail "the workload made no progress in 120 s"
  sleep 0.1
done
for pid in "${pids[@]}"; do kill -9 "$pid"; done
wait "${pids[@]}" 2>/dev/null || true
acknowledged=$(grep -c acknowledged "$work/workload.log" || true)
echo "restart_test: killed $replicas replica(s) after $acknowledged acknowledged batches"
((acknowledged < 2500)) || fail "the workload finished before the crash: nothing was tested"

start_all 2
if ! wait "$workload_pid"; then
  workload_pid=
  cat "$work/workload.log" >&2
  fail "the workload failed after the restart"
fi
workload_pid=
tail -1 "$work/workload.log"

# A clean stop and one more start: everything is still there.
for pid in "${pids[@]}"; do kill -TERM "$pid"; done
for pid in "${pids[@]}"; do wait "$pid" || fail "a replica did not stop cleanly"; done
pids=()
start_all 3
"$workload" --addresses="$addresses" --batches=2500 --batch-size=100 \
  --verify-only ||
  fail "verification after a clean restart failed"
echo "restart_test: passed with $replicas replica(s)"
