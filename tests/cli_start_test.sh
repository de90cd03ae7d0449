#!/usr/bin/env bash
# `tally start`'s refusals, each a clear message and its own exit status, before anything runs:
# a bad address list (2), a data file of another replica count (15) or cluster (15), a port in
# use (16), a missing file.
# Usage: tests/cli_start_test.sh TALLY_BINARY SCRATCH_PARENT (not tmpfs: O_DIRECT).
set -uo pipefail
tally=$1
scratch=$(mktemp -d "${2:-.}/cli_start_test.XXXXXX")
listener=
cleanup() {
  [[ -n "$listener" ]] && kill "$listener" 2>/dev/null
  rm -rf "$scratch"
}
trap cleanup EXIT
# shellcheck source=tests/cli_expect.sh
source "$(dirname "$0")/cli_expect.sh"

file="$scratch/0_0.tally"
"$tally" format --cluster=9 --replica=0 --replica-count=1 "$file" > /dev/null || exit 1

expect no_addresses 2 'addresses is required' "$tally" start "$file"
expect dns_name 2 "address 1 'localhost:3000'.*IPv4" \
  "$tally" start --addresses=localhost:3000 "$file"
expect port_zero 2 'address 1' "$tally" start --addresses=0 "$file"
expect replica_count 15 'cluster of 1 replicas, but --addresses lists 2' \
  "$tally" start --addresses=3000,3001 "$file"
expect cluster 15 'belongs to cluster 9, not to --cluster=8' \
  "$tally" start --addresses=3000 --cluster=8 "$file"
expect missing_file 12 'no_such_file' "$tally" start --addresses=3000 "$scratch/no_such_file"

# A port some other process listens on. A free port is found by trying a few.
port=
for candidate in 31337 31338 31339 31340 31341; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then continue; fi
  port=$candidate
  break
done
if [[ -n "$port" ]]; then
  node -e "require('net').createServer().listen($port, '127.0.0.1')" &
  listener=$!
  for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  expect port_in_use 16 "127.0.0.1:$port" "$tally" start --addresses="$port" "$file"
else
  echo "FAILED: no free port to test with" >&2
  failures=$((failures + 1))
fi

if ((failures > 0)); then
  echo "cli_start_test: $failures failure(s)" >&2
  exit 1
fi
echo "cli_start_test: all passed"
