#!/usr/bin/env bash
# `tally format` and `tally inspect` on real files: a formatted file inspects as formatted; format
# never overwrites (exit 14); bad arguments are usage errors (exit 2) naming the problem; a file
# with one damaged superblock copy still inspects, one with three stops with exit 13. `tally
# recover`'s refusals, before it contacts any replica: clusters of 1 or 2, an existing file, an
# address list that does not match the replica count (sync_test.sh recovers a replica for real).
# Usage: tests/cli_format_test.sh TALLY_BINARY SCRATCH_PARENT (not tmpfs: O_DIRECT).
set -uo pipefail
tally=$1
scratch=$(mktemp -d "${2:-.}/cli_format_test.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
# shellcheck source=tests/cli_expect.sh
source "$(dirname "$0")/cli_expect.sh"

file="$scratch/0_1.tally"
expect format 0 'formatted .*cluster 123, replica 1 of 3' \
  "$tally" format --cluster=123 --replica=1 --replica-count=3 "$file"
size=$(stat -c %s "$file")
if [[ $size -ne 7583596544 ]]; then
  echo "FAILED: size $size, expected 7583596544" >&2
  failures=$((failures + 1))
fi
expect format_refuses_existing 14 'data file exists' \
  "$tally" format --cluster=123 --replica=1 --replica-count=3 "$file"
expect inspect 0 'cluster +123' "$tally" inspect "$file"
expect inspect_replica 0 'replica +1 of 3' "$tally" inspect "$file"
expect inspect_zones 0 'grid +1141145600 +6442450944 +7583596544' "$tally" inspect "$file"
valid=$("$tally" inspect "$file" | grep -cE '^  [0-3] .* valid ')
if [[ $valid -ne 4 ]]; then
  echo "FAILED: $valid valid copies, expected 4" >&2
  failures=$((failures + 1))
fi

other="$scratch/other.tally"
expect replica_too_large 2 'must be less than --replica-count' \
  "$tally" format --cluster=1 --replica=3 --replica-count=3 "$other"
expect replica_count_range 2 'must be an integer in 1..6' \
  "$tally" format --cluster=1 --replica=0 --replica-count=7 "$other"
expect unknown_flag 2 "unknown flag '--replicas'" \
  "$tally" format --cluster=1 --replicas=0 --replica-count=1 "$other"
expect missing_value 2 '--cluster needs a value' \
  "$tally" format --cluster --replica=0 --replica-count=1 "$other"
expect missing_flag 2 '--replica is required' "$tally" format --cluster=1 --replica-count=1 "$other"
expect missing_file 2 'expected one data file path, got 0' \
  "$tally" format --cluster=1 --replica=0 --replica-count=1
expect inspect_missing 1 'does not exist' "$tally" inspect "$other"
expect recover_two_replicas 2 'a cluster of 2 replicas cannot commit without replica 1' \
  "$tally" recover --cluster=1 --replica=1 --replica-count=2 --addresses=3000,3001 "$other"
expect recover_existing 1 'exists; recover creates the replica.s data file anew' \
  "$tally" recover --cluster=1 --replica=1 --replica-count=3 --addresses=3000,3001,3002 "$file"
expect recover_address_count 2 'names 2 replicas, but --replica-count is 3' \
  "$tally" recover --cluster=1 --replica=1 --replica-count=3 --addresses=3000,3001 "$other"
expect recover_missing_addresses 2 '--addresses is required' \
  "$tally" recover --cluster=1 --replica=1 --replica-count=3 "$other"
if [[ -e "$other" ]]; then
  echo "FAILED: a rejected format or recover left $other behind" >&2
  failures=$((failures + 1))
fi

# Damage: one copy, then three (bytes inside each copy's checksummed range).
printf 'damage' | dd of="$file" bs=1 seek=100 conv=notrunc status=none
expect inspect_one_damaged 0 'checksum invalid' "$tally" inspect "$file"
printf 'damage' | dd of="$file" bs=1 seek=$((8192 + 5000)) conv=notrunc status=none
printf 'damage' | dd of="$file" bs=1 seek=$((3 * 8192 + 40)) conv=notrunc status=none
expect inspect_no_quorum 13 'no valid superblock quorum' "$tally" inspect "$file"

if ((failures > 0)); then
  echo "cli_format_test: $failures failure(s)" >&2
  exit 1
fi
echo "cli_format_test: all passed"
