#!/usr/bin/env bash
# Runs the state machine's randomized model test (src/state_machine/model_test.cpp) for a long
# time: random seeds, many events each, several seeds at once, until a total number of events
# is reached or a seed fails. A failure prints the test's message (seed, operation, event, both
# answers) and the command that reproduces it, and the script exits 1. At the end it prints how
# often every create status and operation was seen over all seeds.
#
# Usage: tools/model_test_long.sh [total_events] [events_per_seed] [jobs] [unit_tests binary]
#   defaults: 5,000,000 events in total, 250,000 per seed, nproc jobs, and the binary of
#   build/release.
# Example: tools/model_test_long.sh 20000000 500000 2 build/release/tests/unit_tests
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
total=${1:-5000000}
per_seed=${2:-250000}
jobs=${3:-$(nproc)}
binary=${4:-$root/build/release/tests/unit_tests}
if [[ ! -x "$binary" ]]; then
  echo "model_test_long: no unit_tests binary; build one or pass its path" >&2
  exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One seed: its output goes to $work/<seed>.out, its exit status to $work/<seed>.status.
run_seed() {
  local seed=$1
  local status=0
  TALLY_MODEL_SEED=$seed TALLY_MODEL_EVENTS=$per_seed TALLY_MODEL_HISTOGRAM=1 \
    "$binary" -tc='model*' >"$work/$seed.out" 2>&1 || status=$?
  echo "$status" >"$work/$seed.status"
}

# Collects finished seeds: adds up their events, or reports the first failure and stops (after
# the seeds still running end).
events_done=0
seeds_done=0
collect() {
  local status_file seed
  for status_file in "$work"/*.status; do
    [[ -e "$status_file" ]] || continue
    seed=$(basename "$status_file" .status)
    if [[ "$(cat "$status_file")" != 0 ]]; then
      wait || true
      grep -v '^model_histogram' "$work/$seed.out" >&2 || true
      echo "model_test_long: FAILED at seed $seed; reproduce with:" >&2
      echo "  TALLY_MODEL_SEED=$seed TALLY_MODEL_EVENTS=$per_seed $binary -tc='model*'" >&2
      exit 1
    fi
    grep '^model_seed' "$work/$seed.out" || true
    grep '^model_histogram' "$work/$seed.out" >>"$work/histogram" || true
    local events
    events=$(sed -n 's/^model_seed seed [0-9]*: \([0-9]*\) events.*/\1/p' "$work/$seed.out")
    events_done=$((events_done + ${events:-0}))
    seeds_done=$((seeds_done + 1))
    rm -f "$status_file" "$work/$seed.out"
  done
}

seeds_total=$(((total + per_seed - 1) / per_seed))
started=0
running=0
while ((started < seeds_total || running > 0)); do
  if ((started < seeds_total && running < jobs)); then
    seed=$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')
    run_seed "$seed" &
    started=$((started + 1))
    running=$((running + 1))
    continue
  fi
  wait -n || true  # One seed finished (its status is in its file, not in wait's).
  running=$((running - 1))
  collect
done
collect

echo "model_test_long: $seeds_done seeds, $events_done events, no mismatch"
echo "create statuses and operations seen (count):"
awk '{ key = $2 " " $3; counts[key] += $4 } END { for (key in counts) print key, counts[key] }' \
  "$work/histogram" | sort
