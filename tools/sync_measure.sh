#!/usr/bin/env bash
# Measures state sync on real processes with the default load of `tally benchmark`
# (perf/sync.md): formats a cluster of 3 and starts replicas 0 and 1 only, runs `tally benchmark
# --addresses=...` against it (10,000 accounts, then 10,000,000 transfers in 1222 requests: more
# than a WAL of 1024 ops past replica 2's empty log, and a checkpoint at op 1008), then starts
# replica 2, which must take that checkpoint from its peers, and prints its log line: the time
# from the start of the sync to the checkpoint read in, the pieces fetched and their MiB. Then
# the limits to compare with: TCP over loopback (one connection, Python's sendall of 1 MiB
# buffers, so a floor of what the kernel does) and durable 1 MiB O_DIRECT writes
# (perf/io_write.md).
#
# Usage: tools/sync_measure.sh [tally binary] [work directory]
#   defaults: build/release/src/cli/tally, a new directory under the current one (it must be on
#   a disk that allows O_DIRECT; three 7 GiB data files, deleted at the end).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tally=${1:-$root/build/release/src/cli/tally}
work=${2:-$(mktemp -d "$PWD/sync_measure.XXXXXX")}
[[ -x "$tally" ]] || { echo "sync_measure: no tally binary at $tally" >&2; exit 2; }
mkdir -p "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f "$work"/*.tally
}
trap cleanup EXIT
base_port=$((23000 + (RANDOM % 1000) * 3))
addresses="$base_port,$((base_port + 1)),$((base_port + 2))"
for replica in 0 1 2; do
  "$tally" format --cluster=0 --replica="$replica" --replica-count=3 "$work/$replica.tally" \
    > /dev/null
done
start() {
  "$tally" start --addresses="$addresses" "$work/$1.tally" > "$work/replica_$1.log" 2>&1 &
  pids+=($!)
  until grep -q "listening on" "$work/replica_$1.log"; do sleep 0.1; done
}
start 0
start 1
echo "sync_measure: replicas 0 and 1 of 3 on $addresses; the default benchmark load:"
"$tally" benchmark --addresses="$addresses" 2>&1 | grep -E "transfers/s|latency" || true
start 2
started=$SECONDS
until grep -q "synced to the checkpoint" "$work/replica_2.log"; do
  ((SECONDS - started < 600)) || { echo "sync_measure: no sync in 600 s" >&2; exit 1; }
  sleep 0.2
done
grep "synced to the checkpoint" "$work/replica_2.log"

echo "sync_measure: TCP over loopback, one connection, 4 GiB in 1 MiB sends:"
python3 - <<'EOF'
import socket, threading, time
size, chunk = 4 << 30, 1 << 20
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
def drain():
    connection, _ = server.accept()
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    left = size
    while left > 0:
        left -= connection.recv_into(view, min(chunk, left))
threading.Thread(target=drain, daemon=True).start()
client = socket.create_connection(server.getsockname())
payload = b"\0" * chunk
began = time.monotonic()
for _ in range(size // chunk):
    client.sendall(payload)
client.shutdown(socket.SHUT_WR)
elapsed = time.monotonic() - began
print(f"  {size / elapsed / (1 << 20):.0f} MiB/s")
EOF
