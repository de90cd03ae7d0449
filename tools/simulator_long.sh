#!/usr/bin/env bash
# Runs the simulator (tests/simulator/simulator.cpp) over random seeds for a while: every run a
# random replica count (1-6), client count and request count, with network faults, and at
# random replica crashes, storage faults (in the WAL; half the time in the grid, half the time
# in the superblock too), a slow backup disk, forged replica messages, skewed clocks, replicas
# lost for good (1 up to what the cluster can lose), a primary cut off now and then, and a
# replica's data file lost and recovered (--wipe), in the combinations the simulator accepts
# (--lost with --storage-faults only where a survivor keeps an intact copy of every committed
# op: 5 or 6 replicas, --lost=1; no --isolate-primary for a single replica; --wipe with
# --crashes, 3 or more replicas and no --lost), until the time is up or a seed fails. A failure
# prints the simulator's message and the exact command that reproduces it, and the script exits
# 1. Runs in which a replica caught up by state sync are counted too. With SIMULATOR_LONG_LOG
# set to a file, every passing run's command and summary line are appended to it (a record of
# the seeds run, and the end game times that the liveness bound is drawn from).
#
# Usage: tools/simulator_long.sh [minutes] [simulator binary] [jobs]
#   defaults: 10 minutes, the binary of build/release, 1 job. With several jobs, that many
#   runs go at once (each its own seeds); the first failure stops them all.
# Example: tools/simulator_long.sh 60 build/release/tests/simulator/simulator 2
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
minutes=${1:-10}
binary=${2:-$root/build/release/tests/simulator/simulator}
jobs=${3:-1}
if [[ ! -x "$binary" ]]; then
  echo "simulator_long: no simulator binary; build one (tools/build.sh) or pass its path" >&2
  exit 2
fi
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
  echo "simulator_long: jobs must be a positive number, not '$jobs'" >&2
  exit 2
fi

deadline=$((SECONDS + minutes * 60))
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT

# One job: random runs until the deadline, a failure, or another job's failure; its counts go
# to $results/<job>.
worker() {
  local job=$1 runs=0 synced=0
  # Each job draws its own choices: a background job would repeat its parent's RANDOM sequence.
  RANDOM=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
  while ((SECONDS < deadline)) && [[ ! -e "$results/failed" ]]; do
    # 63 random bits from the kernel: the seed is printed with any failure.
    seed=$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')
    seed=$((seed & 0x7fffffffffffffff))
    replicas=$((RANDOM % 6 + 1))
    clients=$((RANDOM % 8 + 1))
    requests=$((RANDOM % 150 + 10))
    arguments=(--replicas="$replicas" --clients="$clients" --requests="$requests" --faults)
    # What the cluster can lose for good: replicas - max(replication, view-change quorum), and
    # the replication quorum (src/vsr/quorums.hpp), for 1..6 replicas.
    lost_max=(0 0 0 1 1 2 2)
    replication=(0 1 2 2 2 3 3)
    lost=0
    if ((lost_max[replicas] > 0 && RANDOM % 3 == 0)); then
      lost=$((RANDOM % lost_max[replicas] + 1))
      arguments+=(--lost="$lost")
    fi
    crashes=0
    if ((RANDOM % 2 == 0)); then
      arguments+=(--crashes)
      crashes=1
    fi
    if ((RANDOM % 2 == 0 && (lost == 0 || replication[replicas] - 1 - lost >= 1))); then
      arguments+=(--storage-faults)
      if ((RANDOM % 2 == 0)); then
        arguments+=(--grid-faults)
      fi
      if ((RANDOM % 2 == 0)); then
        arguments+=(--superblock-faults)
      fi
    fi
    if ((RANDOM % 4 == 0)); then
      arguments+=(--slow-disk)
    fi
    if ((RANDOM % 3 == 0)); then
      arguments+=(--forged)
    fi
    if ((RANDOM % 3 == 0)); then
      arguments+=(--clock-skew)
    fi
    if ((replicas > 1 && RANDOM % 3 == 0)); then
      arguments+=(--isolate-primary)
    fi
    if ((crashes == 1 && replicas >= 3 && lost == 0 && RANDOM % 3 == 0)); then
      arguments+=(--wipe)
    fi
    if ! output=$("$binary" "${arguments[@]}" "$seed" 2>&1); then
      if mkdir "$results/failed" 2>/dev/null; then
        echo "$output" >&2
        echo "simulator_long: FAILED (job $job, after its $runs runs); reproduce with:" >&2
        echo "  $binary ${arguments[*]} $seed" >&2
      fi
      break
    fi
    runs=$((runs + 1))
    if [[ "$output" != *", 0 state syncs"* ]]; then
      synced=$((synced + 1))
    fi
    if [[ -n "${SIMULATOR_LONG_LOG:-}" ]]; then
      printf '%s %s\n%s\n' "$binary" "${arguments[*]} $seed" "${output##*$'\n'}" \
        >> "$SIMULATOR_LONG_LOG"
    fi
  done
  echo "$runs $synced" > "$results/$job"
}

for ((job = 1; job <= jobs; job += 1)); do
  worker "$job" &
done
wait
runs=0
synced=0
for ((job = 1; job <= jobs; job += 1)); do
  read -r job_runs job_synced < "$results/$job"
  runs=$((runs + job_runs))
  synced=$((synced + job_synced))
done
if [[ -e "$results/failed" ]]; then
  echo "simulator_long: $runs runs passed before the failure above" >&2
  exit 1
fi
echo "simulator_long: $runs runs passed ($synced with a state sync) in $minutes minutes," \
  "$jobs at a time"
