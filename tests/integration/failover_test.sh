#!/usr/bin/env bash
# The cluster survives the loss of its primary, on real processes: formats and starts 3
# replicas, runs tests/integration/ledger_workload.cpp (Tally's C++ client) against them for the
# whole test, and meanwhile
#   1. kills the primary of view 0 (replica 0) with SIGKILL and keeps it down: the two others
#      must change the view and answer again;
#   2. restarts it: it must rejoin as a backup (it never keeps its old primary role) and repair
#      the ops it missed;
#   3. kills the new primary (replica 1 after one view change) and keeps it down while random
#      bytes go over sectors of its newest prepares in its WAL (a disk that lost writes), then
#      restarts it: it must rejoin and repair those slots from the others;
#   4. kills the third primary (replica 2), so that the cluster must run on the two restarted
#      replicas, the one whose WAL was damaged among them, then restarts it.
# Then the workload stops, reads back every acknowledged transfer and checks that debits equal
# credits; every replica must have executed the same ops and stop cleanly, and no log may hold
# "assertion failed" or "fatal".
#
# Which replica is the primary: the script guesses the next view's primary and checks after the
# kill, in the killed replica's superblock (`tally inspect`), that its view modulo 3 is its
# index; if not, it restarts that backup and kills the primary the superblock names. A restarted
# replica has rejoined when its WAL headers (read from its data file, docs/data-file.md) hold
# every op from its old head up to the cluster's, and its damaged sectors have been rewritten.
#
# Each failover's time, from the SIGKILL to the next acknowledged request, is printed (the
# workload stamps its acknowledgements with the wall clock, --timestamps) but not asserted:
# speed is measured, not tested. FAILOVER_MEASURE=N turns the script into that measurement
# (perf/failover.md): N kills of the current primary in a row, each one restarted and rejoined
# before the next, then the times and their min, median and max.
#
# Usage: tests/integration/failover_test.sh TALLY WORKLOAD WORK_DIR
#        FAILOVER_MEASURE=N tests/integration/failover_test.sh TALLY WORKLOAD WORK_DIR
# The work directory must be on a real filesystem (O_DIRECT). The data files (7 GiB each) are
# deleted at the end, whatever happens, unless FAILOVER_KEEP=1 (for `tally inspect`); the logs
# stay. To reproduce the problems in perf/failover.md, these change the schedule:
# FAILOVER_PAUSE_MS (the workload's pause, 50), FAILOVER_DOWN_BATCHES (40),
# FAILOVER_REJOIN_BATCHES (a restarted replica gets this many batches instead of the check that
# it rejoined) and FAILOVER_CHECKPOINT_GUARD=0 (kills anywhere in a checkpoint interval).
set -euo pipefail
export LC_ALL=C
tally=$1
workload=$2
work=$3
measure_runs=${FAILOVER_MEASURE:-0}
replicas=3
# The production layout (journal/layout.hpp, docs/data-file.md): after the superblock (32 KiB)
# the WAL headers, 1024 slots of 256 bytes, then the prepares, 1 MiB per slot; op o is in slot
# o % 1024 of both.
slot_count=1024
headers_offset=32768
prepares_offset=294912
slot_size=$((1024 * 1024))
sector_size=4096
checkpoint_interval=1008
# The load: batches of 100 transfers, each one an op, with a pause of 50 ms after each
# acknowledgement (about 18 batches a second on 2 cores). A replica stays down for
# down_batches (about 2 s), and its restart takes seconds (it prefaults its memory).
pause_ms=${FAILOVER_PAUSE_MS:-50}
down_batches=${FAILOVER_DOWN_BATCHES:-40}
rejoin_batches=${FAILOVER_REJOIN_BATCHES:-}
# There is no state sync (docs/vsr-protocol.md, "Limits"): a replica can rejoin only while the
# cluster's head stays within its WAL window, its durable checkpoint + 1024. A replica killed
# late in a checkpoint interval may therefore never rejoin, so a kill waits until the cluster is
# more than checkpoint_margin ops past a checkpoint (the victim's own checkpoint durable) and
# more than edge_ops before the next one (the ops that pass while it is down and rejoining).
checkpoint_margin=48
edge_ops=500
checkpoint_guard=${FAILOVER_CHECKPOINT_GUARD:-1}

mkdir -p "$work"
rm -f "$work"/*.tally "$work"/*.log "$work"/*.sector "$work"/stop
pids=()
workload_pid=

cleanup() {
  [[ -n "$workload_pid" ]] && kill -9 "$workload_pid" 2>/dev/null || true
  for pid in "${pids[@]}"; do [[ -n "$pid" ]] && kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -n "${FAILOVER_KEEP:-}" ]] || rm -f "$work"/*.tally
  rm -f "$work"/*.sector "$work"/stop
}
trap cleanup EXIT

say() { echo "failover_test: $*"; }

fail() {
  echo "failover_test: FAILED: $*" >&2
  for log in "$work"/*.log; do
    echo "--- $log" >&2
    tail -20 "$log" >&2
  done
  exit 1
}

# died REPLICA: fails with how a replica that this script did not stop ended. 137 is a SIGKILL
# from elsewhere: on a shared machine, most likely the kernel's OOM killer (a replica takes about
# 4 GiB; another cluster started beside this one doubles that).
died() {
  local status=0
  wait "${pids[$1]}" || status=$?
  pids[$1]=
  check_logs
  if ((status == 137)); then
    fail "replica $1 was killed by SIGKILL from outside the test (out of memory?)"
  fi
  fail "replica $1 exited with status $status"
}

# Every replica log, for the signs of a replica that stopped itself.
check_logs() {
  if grep -q -E "assertion failed|fatal" "$work"/replica_*.log; then
    grep -H -E "assertion failed|fatal" "$work"/replica_*.log >&2 || true
    fail "a replica crashed (above)"
  fi
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

# start REPLICA: starts it, logging to replica_R.N.log (N counts its starts), and waits until it
# says it is listening (a replica prefaults its memory first: this takes seconds).
starts=(0 0 0)
start() {
  local replica=$1
  starts[replica]=$((starts[replica] + 1))
  local log="$work/replica_$replica.${starts[replica]}.log"
  "$tally" start --addresses="$addresses" "$work/0_$replica.tally" > "$log" 2>&1 &
  pids[replica]=$!
  local waited=0
  until grep -q "listening on" "$log" 2>/dev/null; do
    kill -0 "${pids[replica]}" 2>/dev/null || died "$replica"
    ((waited++ < 1200)) || fail "replica $replica did not start in 120 s"
    sleep 0.1
  done
}

# The workload's acknowledged batches so far, and the cluster's commit that they imply: op 1
# registers the client's session, op 2 creates the accounts, then one op per batch.
acknowledged() { grep -c acknowledged "$work/workload.log" || true; }
committed_op() { echo $(($(acknowledged) + 2)); }

# progress COUNT WHAT: waits until the workload acknowledges COUNT more batches (60 s at most),
# while every replica that should run does.
progress() {
  local target=$(($(acknowledged) + $1)) waited=0 replica
  until (($(acknowledged) >= target)); do
    kill -0 "$workload_pid" 2>/dev/null || fail "the workload ended $2"
    for ((replica = 0; replica < replicas; replica++)); do
      [[ -z "${pids[replica]}" ]] || kill -0 "${pids[replica]}" 2>/dev/null || died "$replica"
    done
    ((waited++ < 600)) ||
      fail "no answer from the cluster for 60 s $2 (durable view/log_view: $(durable_views))"
    sleep 0.1
  done
  check_logs
}

# away_from_checkpoint: waits until a replica killed now can rejoin (edge_ops above).
away_from_checkpoint() {
  ((checkpoint_guard)) || return 0
  local position=$(($(committed_op) % checkpoint_interval))
  if ((position < checkpoint_margin || position > checkpoint_interval - edge_ops)); then
    local wait_ops=$(((checkpoint_interval + checkpoint_margin - position) % checkpoint_interval))
    say "op $(committed_op): waiting $wait_ops ops to be clear of a checkpoint"
    progress "$wait_ops" "while waiting for a checkpoint"
  fi
}

# kill_replica REPLICA: SIGKILL, and the wall clock just before it, in microseconds.
kill_time_us=0
kill_replica() {
  local replica=$1
  kill_time_us=${EPOCHREALTIME/./}
  kill -9 "${pids[replica]}"
  wait "${pids[replica]}" 2>/dev/null || true
  pids[replica]=
}

# inspect REPLICA: reads a stopped replica's superblock view and checkpoint op and its WAL head
# into inspected_view, inspected_checkpoint and inspected_op (-1 for an empty WAL).
inspected_view=0
inspected_checkpoint=0
inspected_op=0
inspect() {
  local out
  out=$("$tally" inspect "$work/0_$1.tally") || fail "tally inspect of replica $1 failed"
  inspected_view=$(awk '$1 == "view" { print $2 }' <<< "$out")
  inspected_checkpoint=$(awk '$1 == "checkpoint" && $2 == "op" { print $3 }' <<< "$out")
  inspected_op=$(awk '$1 == "highest" && $2 == "op" { print ($3 == "none" ? -1 : $3) }' \
    <<< "$out")
  [[ -n "$inspected_view" && -n "$inspected_checkpoint" && -n "$inspected_op" ]] ||
    fail "tally inspect: $out"
}

# The view and log_view in the superblock of every running replica, read from its data file
# (copy 0, the first one each update writes; bytes 112 and 116): how many views a view change
# went through.
durable_views() {
  local replica words line=
  for ((replica = 0; replica < replicas; replica++)); do
    [[ -n "${pids[replica]}" ]] || continue
    read -ra words < <(dd if="$work/0_$replica.tally" bs=$sector_size count=1 iflag=direct \
      status=none | od -An -v -t u4 -j 112 -N 8)
    line+=" $replica:${words[0]}/${words[1]}"
  done
  echo "${line# }"
}

# failover_ms: from the last kill to the end of the longest pause between two acknowledgements
# that ends after it. Not simply the first acknowledgement after the kill: a reply that the
# primary sent just before it died may arrive just after.
failover_ms() {
  awk -v kill="$kill_time_us" '
    /acknowledged at_us=/ {
      sub("at_us=", "", $4); time = $4 + 0
      if (time > kill && previous > 0 && time - previous > gap) {
        gap = time - previous
        end = time
      }
      previous = time
    }
    END { if (end == 0) print "none"; else printf "%d\n", (end - kill) / 1000 }
  ' "$work/workload.log"
}

# kill_primary GUESS: kills the replica believed to be the primary, checks in its superblock
# that it was (view % 3), and otherwise restarts it and kills the one named there. Waits for
# the cluster to answer again; leaves the killed primary down, its index in killed, its WAL
# head in killed_op and checkpoint in killed_checkpoint, the failover's time in
# failover_last_ms.
killed=0
killed_op=0
killed_checkpoint=0
failover_last_ms=0
kill_primary() {
  local guess=$1
  for _ in 1 2; do
    away_from_checkpoint
    kill_replica "$guess"
    inspect "$guess"
    if ((inspected_view % replicas == guess)); then
      killed=$guess
      killed_op=$inspected_op
      killed_checkpoint=$inspected_checkpoint
      say "killed replica $guess, primary of view $inspected_view (WAL head op $killed_op)"
      progress 25 "after the kill of primary $guess"
      failover_last_ms=$(failover_ms)
      say "the cluster answers again: first acknowledgement ${failover_last_ms} ms after the kill"
      say "durable view/log_view of the others: $(durable_views)"
      return
    fi
    say "replica $guess was a backup in view $inspected_view: restarting it"
    start "$guess"
    rejoin "$guess" "$inspected_op"
    guess=$((inspected_view % replicas))
  done
  fail "could not find the primary: replica $guess was not it either"
}

# corrupt REPLICA HEAD CHECKPOINT: random bytes over sectors of the newest prepares in a stopped
# replica's WAL: one sector of each of the 6 newest slots (the first, which holds the prepare's
# header, or one of the body's: 100 transfers make a prepare of 4 sectors), and the first sector
# of the slots 10 and 100 ops back. Only ops above the replica's checkpoint: it replays those at
# its restart, so it must repair them, while a slot the checkpoint covers is just rewritten
# when the ring comes round. Each sector's random bytes are kept in WORK/op_O.sector, to tell
# later whether the slot was repaired.
corrupted_ops=()
corrupt() {
  local replica=$1 head_op=$2 checkpoint=$3 back op sector
  corrupted_ops=()
  for back in 0 1 2 3 4 5 10 100; do
    op=$((head_op - back))
    ((op > checkpoint && op >= 3)) || continue
    sector=$((back < 6 ? back % 3 : 0))
    head -c "$sector_size" /dev/urandom > "$work/op_$op.sector"
    dd if="$work/op_$op.sector" of="$work/0_$replica.tally" bs=$sector_size \
      seek=$(((prepares_offset + (op % slot_count) * slot_size) / sector_size + sector)) \
      conv=notrunc status=none
    corrupted_ops+=("$op:$sector")
  done
  say "corrupted the WAL prepares of replica $replica (head op $head_op), op:sector" \
    "${corrupted_ops[*]}"
}

# The ops that REPLICA's WAL headers hold, read from its data file while it runs (O_DIRECT,
# as the replica writes them): a header's op is at byte 192, its operation at byte 220, and a
# slot without a prepare has the reserved operation, 0.
wal_ops() {
  dd if="$work/0_$1.tally" bs=$sector_size skip=$((headers_offset / sector_size)) \
    count=$((slot_count * 256 / sector_size)) iflag=direct status=none |
    od -An -v -t u8 -w256 | awk '{ if (int($28 / 4294967296) % 256 != 0) print $25 }'
}

# rejoin REPLICA FROM: waits (90 s at most) until a restarted replica holds every op from FROM
# to the cluster's commit (less a pipeline's worth) in its WAL, and none of its corrupted
# sectors still holds the random bytes.
rejoin() {
  local replica=$1 from=$2 started=$SECONDS to missing damaged entry
  if [[ -n "$rejoin_batches" ]]; then
    progress "$rejoin_batches" "after the restart of replica $replica"
    return
  fi
  while true; do
    to=$(($(committed_op) - 8))
    missing=$(wal_ops "$replica" | awk -v from="$from" -v to="$to" '
      { held[$1] = 1 }
      END { for (op = from; op <= to; op++) if (!(op in held)) count++; print count + 0 }')
    damaged=0
    for entry in "${corrupted_ops[@]}"; do
      if dd if="$work/0_$replica.tally" bs=$sector_size count=1 iflag=direct status=none \
        skip=$(((prepares_offset + (${entry%:*} % slot_count) * slot_size) / sector_size \
        + ${entry#*:})) | cmp -s - "$work/op_${entry%:*}.sector"; then
        damaged=$((damaged + 1))
      fi
    done
    ((missing == 0 && damaged == 0)) && break
    kill -0 "${pids[replica]}" 2>/dev/null || died "$replica"
    check_logs
    ((SECONDS - started < 90)) ||
      fail "replica $replica did not rejoin in 90 s: $missing ops of $from..$to missing," \
        "$damaged damaged sectors left"
    sleep 0.2
  done
  local repaired=
  ((${#corrupted_ops[@]} == 0)) || repaired=", ${#corrupted_ops[@]} damaged sectors rewritten"
  say "replica $replica rejoined after $((SECONDS - started)) s: ops $from..$to in its WAL$repaired"
}

for ((replica = 0; replica < replicas; replica++)); do start "$replica"; done
say "3 replicas listening on $addresses"
"$workload" --addresses="$addresses" --batches=10000000 --batch-size=100 \
  --pause-ms="$pause_ms" --stop-file="$work/stop" --timestamps > "$work/workload.log" 2>&1 &
workload_pid=$!
progress 100 "before the first kill"
say "$(acknowledged) batches acknowledged by a healthy cluster"

if ((measure_runs > 0)); then
  results=()
  primary=0
  for ((run = 1; run <= measure_runs; run++)); do
    kill_primary "$primary"
    results+=("$failover_last_ms")
    say "run $run: failover in $failover_last_ms ms"
    progress "$down_batches" "while replica $killed is down"
    start "$killed"
    rejoin "$killed" "$killed_op"
    primary=$(((inspected_view + 1) % replicas))
  done
  sorted=$(printf '%s\n' "${results[@]}" | sort -n)
  say "failover ms per run: ${results[*]}"
  say "min $(head -1 <<< "$sorted"), median $(sed -n "$(((measure_runs + 1) / 2))p" \
    <<< "$sorted"), max $(tail -1 <<< "$sorted")"
else
  kill_primary 0
  progress "$down_batches" "while replica $killed is down"
  start "$killed"
  say "replica $killed restarted"
  rejoin "$killed" "$killed_op"

  kill_primary $(((inspected_view + 1) % replicas))
  damaged=$killed
  progress "$down_batches" "while replica $damaged is down"
  corrupt "$damaged" "$killed_op" "$killed_checkpoint"
  start "$damaged"
  say "replica $damaged restarted on its damaged WAL"
  rejoin "$damaged" "$killed_op"
  corrupted_ops=()

  kill_primary $(((inspected_view + 1) % replicas))
  ((killed != damaged)) || fail "the damaged replica $damaged was the primary again"
  say "the cluster runs on the two restarted replicas, replica $damaged among them"
  progress "$down_batches" "while replica $killed is down"
  start "$killed"
  say "replica $killed restarted"
  rejoin "$killed" "$killed_op"
fi

touch "$work/stop"
if ! wait "$workload_pid"; then
  workload_pid=
  tail -5 "$work/workload.log" >&2
  fail "the workload failed"
fi
workload_pid=
say "workload: $(grep '^written:' "$work/workload.log")"
say "workload: $(tail -1 "$work/workload.log")"
grep -q '^ok:' "$work/workload.log" || fail "the workload did not verify its transfers"

# Every replica, the restarted ones included, must have executed everything: after a second
# without requests (the primary's commit heartbeats bring the backups up to its commit), each
# stops at the same op.
sleep 1
for ((replica = 0; replica < replicas; replica++)); do
  kill -0 "${pids[replica]}" 2>/dev/null || died "$replica"
  kill -TERM "${pids[replica]}"
done
for ((replica = 0; replica < replicas; replica++)); do
  wait "${pids[replica]}" || fail "replica $replica did not stop cleanly"
  pids[replica]=
done
check_logs
stopped_ops=()
for ((replica = 0; replica < replicas; replica++)); do
  log="$work/replica_$replica.${starts[replica]}.log"
  stopped_ops+=("$(awk '/stopping replica/ { print $NF }' "$log")")
done
say "replicas stopped at ops ${stopped_ops[*]}"
for op in "${stopped_ops[@]}"; do
  [[ "$op" == "${stopped_ops[0]}" ]] || fail "the replicas stopped at different ops"
done
say "passed"
