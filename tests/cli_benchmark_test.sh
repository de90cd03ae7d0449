#!/usr/bin/env bash
# `tally benchmark`: its refusals (exit 2, a sentence naming the flag), a small run on its own
# fresh replica that must report its figures and leave no data file behind, and two runs in a
# row against a cluster the test starts (--addresses, --cluster): the second must not collide
# with the first's ids, and both must find their balances adding up.
# Usage: tests/cli_benchmark_test.sh TALLY_BINARY SCRATCH_PARENT (not tmpfs: O_DIRECT).
set -uo pipefail
tally=$1
scratch=$(mktemp -d "${2:-.}/cli_benchmark_test.XXXXXX")
replica=
cleanup() {
  [[ -n "$replica" ]] && kill "$replica" 2>/dev/null && wait "$replica" 2>/dev/null
  rm -rf "$scratch"
}
trap cleanup EXIT
# shellcheck source=tests/cli_expect.sh
source "$(dirname "$0")/cli_expect.sh"

expect batch_size_zero 2 'batch-size must be 1..8189' "$tally" benchmark --batch-size=0
expect batch_size_large 2 'batch-size must be 1..8189' "$tally" benchmark --batch-size=8190
expect one_account 2 'account-count must be 2' "$tally" benchmark --account-count=1
expect unknown_flag 2 'transfers' "$tally" benchmark --transfers=10
expect positional 2 "unexpected argument 'extra'" "$tally" benchmark extra
expect file_with_addresses 2 'file is for the benchmark' \
  "$tally" benchmark --addresses=3000 --file="$scratch/x.tally"
expect too_many_transfers 2 'a fresh replica holds at most 16777216 transfers' \
  "$tally" benchmark --transfer-count=16777217
expect too_many_requests 2 'more than the 16777216 whose latencies it keeps' \
  "$tally" benchmark --addresses=3000 --transfer-count=16777217 --batch-size=1
expect cluster_alone 2 'cluster needs --addresses' "$tally" benchmark --cluster=1

small=(--account-count=50 --transfer-count=20000 --batch-size=700)
own_file="$scratch/own.tally"
expect own_replica 0 'transfers: 20000 created in .* transfers/s' \
  "$tally" benchmark "${small[@]}" --file="$own_file"
if [[ -e "$own_file" ]]; then
  echo "FAILED: own_replica: the data file is still there" >&2
  failures=$((failures + 1))
fi

# A cluster of the test's own: cluster 7 on a free port from a range the kernel does not hand
# out for outgoing connections.
file="$scratch/0_0.tally"
"$tally" format --cluster=7 --replica=0 --replica-count=1 "$file" > /dev/null || exit 1
port=$((20000 + (RANDOM % 2000) * 5 + 4))
"$tally" start --addresses="$port" "$file" > /dev/null 2>&1 &
replica=$!
expect given_cluster 0 'p50 .* ms' \
  "$tally" benchmark "${small[@]}" --addresses="$port" --cluster=7
expect given_cluster_again 0 'balances: .*add up' \
  "$tally" benchmark "${small[@]}" --addresses="$port" --cluster=7 --seed=5

if ((failures > 0)); then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "all benchmark checks passed"
