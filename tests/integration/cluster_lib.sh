# A cluster of real `tally start` processes on 127.0.0.1 under tests/integration/ledger_workload.cpp
# (Tally's C++ client), for the integration tests that kill and restart replicas while the
# workload runs: failover_test.sh and sync_test.sh source it (it runs nothing by itself).
#
# The sourcing script sets, before it calls anything here:
#   tally, workload, work   the binaries and the work directory (on a real filesystem: O_DIRECT)
#   replicas                the cluster's size
#   test_name               the prefix of every message (say, fail)
#   keep                    non-empty: the data files (7 GiB each) stay for `tally inspect`
#   rejoin_batches          optional: a restarted replica gets this many batches instead of the
#                           check that it rejoined (rejoin)
# then calls cluster_setup (once), start for each replica, workload_start, and at the end
# cluster_finish (workload_finish, converged, replicas_finish). Replica R's data file
# is WORK/0_R.tally, its logs WORK/replica_R.N.log (N counts its starts), the workload's
# WORK/workload.log. The data files are deleted at the exit, whatever happens, unless keep is
# set; the logs stay.
#
# The production layout (journal/layout.hpp, docs/data-file.md): after the superblock (32 KiB)
# the WAL headers, 1024 slots of 256 bytes, then the prepares, 1 MiB per slot; op o is in slot
# o % 1024 of both.
slot_count=1024
headers_offset=32768
prepares_offset=294912
slot_size=$((1024 * 1024))
sector_size=4096
checkpoint_interval=1008

pids=()
workload_pid=
# Sectors that the script damaged, as op:sector, each one's random bytes kept in
# WORK/op_O.sector: rejoin waits until none of them still holds those bytes.
corrupted_ops=()

cleanup() {
  [[ -n "$workload_pid" ]] && kill -9 "$workload_pid" 2>/dev/null || true
  for pid in "${pids[@]}"; do [[ -n "$pid" ]] && kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -n "${keep:-}" ]] || rm -f "$work"/*.tally
  rm -f "$work"/*.sector "$work"/stop "$work"/hold
}

say() { echo "$test_name: $*"; }

fail() {
  echo "$test_name: FAILED: $*" >&2
  for log in "$work"/*.log; do
    echo "--- $log" >&2
    tail -20 "$log" >&2
  done
  exit 1
}

# cluster_setup: empties the work directory of an earlier run's files, installs the cleanup at
# the exit, chooses the ports (addresses) and formats a data file for every replica.
cluster_setup() {
  mkdir -p "$work"
  rm -f "$work"/*.tally "$work"/*.log "$work"/*.sector "$work"/stop "$work"/hold
  trap cleanup EXIT
  # Ports from a range the kernel does not hand out for outgoing connections, chosen at random
  # so that parallel runs rarely meet; a clash shows as exit 16 (address in use) and fails.
  local base_port=$((20000 + (RANDOM % 2000) * 5)) replica
  addresses=$base_port
  for ((replica = 1; replica < replicas; replica++)); do
    addresses+=",$((base_port + replica))"
  done
  starts=()
  for ((replica = 0; replica < replicas; replica++)); do
    starts+=(0)
    "$tally" format --cluster=0 --replica="$replica" --replica-count="$replicas" \
      "$work/0_$replica.tally" > /dev/null
  done
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

# start REPLICA: starts it, logging to replica_R.N.log (N counts its starts), and waits until it
# says it is listening (a replica prefaults its memory first: this takes seconds).
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

# workload_start PAUSE_MS BATCH_SIZE: the workload, against every replica, until cluster_finish:
# batches of BATCH_SIZE transfers, each one an op, with a pause of PAUSE_MS after each
# acknowledgement, each acknowledgement stamped with the wall clock (--timestamps).
workload_start() {
  "$workload" --addresses="$addresses" --batches=10000000 --batch-size="$2" \
    --pause-ms="$1" --stop-file="$work/stop" --hold-file="$work/hold" --timestamps \
    > "$work/workload.log" 2>&1 &
  workload_pid=$!
}

# The workload's acknowledged batches so far, and the cluster's commit that they imply: op 1
# registers the client's session, op 2 creates the accounts, then one op per batch.
acknowledged() { grep -c acknowledged "$work/workload.log" 2>/dev/null || true; }
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
  if [[ -n "${rejoin_batches:-}" ]]; then
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

# workload_finish: stops the workload, which reads back every acknowledged transfer and checks
# that debits equal credits ("ok:").
workload_finish() {
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
}

# replicas_finish: every replica, the restarted ones included, must have executed everything:
# after some seconds without requests (the primary's commit heartbeats bring the backups up to
# its commit), each stops cleanly (SIGTERM) at the same op, and no log holds "assertion failed"
# or "fatal". Not one second: a replica that state-synced near the end (converged() sees its
# WAL whole) still executes up to a WAL of ops from its new checkpoint (one stopped at its
# checkpoint's op after a second, in CI).
replicas_finish() {
  sleep 8
  local replica log op stopped_ops=()
  for ((replica = 0; replica < replicas; replica++)); do
    kill -0 "${pids[replica]}" 2>/dev/null || died "$replica"
    kill -TERM "${pids[replica]}"
  done
  for ((replica = 0; replica < replicas; replica++)); do
    wait "${pids[replica]}" || fail "replica $replica did not stop cleanly"
    pids[replica]=
  done
  check_logs
  for ((replica = 0; replica < replicas; replica++)); do
    log="$work/replica_$replica.${starts[replica]}.log"
    stopped_ops+=("$(awk '/stopping replica/ { print $NF }' "$log")")
  done
  say "replicas stopped at ops ${stopped_ops[*]}"
  for op in "${stopped_ops[@]}"; do
    [[ "$op" == "${stopped_ops[0]}" ]] || fail "the replicas stopped at different ops"
  done
}

# converged: once the workload has stopped, waits (60 s at most) until every replica's WAL holds
# the same highest op and every op of the WAL's last half below it: a replica that missed ops
# at the end has repaired them, and executes them on the primary's next commit heartbeat. The
# read-back runs at full speed (hundreds of ops a second) past checkpoints, and a backup whose
# own checkpoint is not written yet when the cluster passes it by a WAL takes no prepare until it
# is, then repairs those ops (at about 12 a second): seen to take 24 s.
converged() {
  local started=$SECONDS replica highest count lacking first=
  while true; do
    highest=$(for ((replica = 0; replica < replicas; replica++)); do
      wal_ops "$replica" | sort -n | tail -1; done | sort -n | tail -1)
    lacking=
    for ((replica = 0; replica < replicas; replica++)); do
      count=$(wal_ops "$replica" | awk -v to="$highest" -v from=$((highest - slot_count / 2)) '
        $1 >= from && $1 <= to { held[$1] = 1 }
        END { for (op = from; op <= to; op++) if (!(op in held)) count++; print count + 0 }')
      ((count == 0)) || lacking+=" $replica:$count"
    done
    first=${first:-${lacking:- none}}
    [[ -z "$lacking" ]] && break
    check_logs
    ((SECONDS - started < 60)) ||
      fail "replica:ops missing$lacking, of those up to op $highest, after 60 s"
    sleep 0.2
  done
  say "every WAL holds the ops up to $highest after $((SECONDS - started)) s" \
    "(replica:ops missing at first:$first)"
}

# cluster_finish: the end of a test: workload_finish, converged, replicas_finish.
cluster_finish() {
  workload_finish
  converged
  replicas_finish
}
