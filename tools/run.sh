#!/usr/bin/env bash
# The main job: set up, build the release binary, and run a single-replica Tally server on
# 127.0.0.1:3000 in the foreground, over the data file data/0_0.tally (cluster 0, replica 0 of 1),
# formatted on the first run and kept across runs, so what was committed is still there next
# time. Ctrl-C stops the server cleanly. Delete data/0_0.tally to start from an empty ledger.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/tools/setup.sh"
"$root/tools/build.sh" release
tally="$root/build/release/src/cli/tally"
"$tally" version

# data/ sits beside the checkout, on a real disk: the data file is opened with O_DIRECT, which
# tmpfs may refuse, and its 7 GiB (preallocated) belong on disk rather than in memory.
data="$root/data/0_0.tally"
if [[ ! -e "$data" ]]; then
  mkdir -p "$root/data"
  "$tally" format --cluster=0 --replica=0 --replica-count=1 "$data"
fi

cat <<'HINT'
Connect any TigerBeetle 0.17 client with cluster id 0 and address 3000, e.g. in Node
(npm install tigerbeetle-node@0.17.9):
  const { createClient } = require('tigerbeetle-node');
  const client = createClient({ cluster_id: 0n, replica_addresses: ['3000'] });
Stop the server with Ctrl-C.
HINT
# exec: Ctrl-C and SIGTERM reach the server itself, and its exit status is this script's.
exec "$tally" start --addresses=3000 "$data"
