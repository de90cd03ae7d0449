#!/usr/bin/env bash
# A replica that was down while the cluster moved more than a WAL past it comes back by state
# sync (docs/vsr-protocol.md, "State sync"), and a replica whose data file was lost is replaced
# with `tally recover` (docs/data-file.md, "Replacing a lost data file"), on real processes:
# formats and starts 3 replicas, runs tests/integration/ledger_workload.cpp (Tally's C++ client)
# against them for the whole test, and meanwhile
#   1. kills backup replica 2 with SIGKILL (the primary of view 0 is replica 0 while nothing
#      failed; its superblock must still say view 0);
#   2. keeps it down while the cluster passes two checkpoints (one every 1008 ops) and more than
#      a WAL (1024 ops) past replica 2's WAL head: the op after its commit is gone from every
#      WAL, so repair cannot bring it back;
#   3. restarts it: it must take a peer's checkpoint (its log says "synced to the checkpoint at
#      op S", S above its old WAL head: a checkpoint of ops it never executed itself), then
#      catch up: its WAL must hold every op from S + 1 to the cluster's commit;
#   4. kills the other backup, replica 1, deletes its data file, recreates it with `tally
#      recover` (a client of replicas 0 and 2, which commit its requests), and starts it: a
#      replica with no log in a view above the cluster's, which must take a peer's checkpoint
#      (at op R) and catch up like replica 2;
#   5. kills replica 2 and keeps it down for down_batches and until the cluster is more than a
#      WAL past R: the cluster must keep answering, so the recovered replica is in the quorum
#      (it acknowledges no prepare while it syncs), and, as a backup takes no op beyond its
#      durable checkpoint + 1024, it executed from R on and wrote a checkpoint of its own (it
#      must not have synced again);
#   6. restarts replica 2, which must rejoin (by repair: it was down for less than a WAL).
# Then the workload stops, reads back every acknowledged transfer and checks that debits equal
# credits; once every WAL holds the cluster's last ops (converged), every replica must have
# executed the same ops and stop cleanly, and no log may hold "assertion failed" or "fatal"
# (cluster_lib.sh, shared with failover_test.sh).
#
# Usage: tests/integration/sync_test.sh TALLY WORKLOAD WORK_DIR
# The work directory must be on a real filesystem (O_DIRECT). The data files (7 GiB each) are
# deleted at the end, whatever happens, unless SYNC_KEEP=1 (for `tally inspect`); the logs stay.
# SYNC_PAUSE_MS and SYNC_BATCH_SIZE change the load (pause_ms and batch_size below).
set -euo pipefail
export LC_ALL=C
tally=$1
workload=$2
work=$3
test_name=sync_test
keep=${SYNC_KEEP:-}
replicas=3
source "$(dirname "$0")/cluster_lib.sh"

# The load: batches of 10 transfers, each one an op, with a pause of 30 ms after each
# acknowledgement: about 29 ops a second on 2 cores, so that the 2,000 ops that replica 2 misses
# pass in about 70 s. Not faster: a restarted replica repairs what it missed at about 12 ops a
# second here while new ops keep coming, and it must have executed up to its next checkpoint,
# and written it, before the cluster is a WAL past its current one (until then it takes no
# prepare beyond, and has to repair those too). At 45 ops a second replica 1 did not rejoin in
# 90 s; with no pause at all (about 600 ops a second) even a replica that was never killed fell
# more than a WAL behind and synced, again and again.
pause_ms=${SYNC_PAUSE_MS:-30}
batch_size=${SYNC_BATCH_SIZE:-10}
# Replica 2 is down for down_batches in step 5, killed between checkpoint_margin and
# kill_position_max ops past a checkpoint (its own durable): it then repairs the ops it missed
# (about 120) and those that pass meanwhile (about 300) well before the cluster is a WAL past
# its checkpoint.
down_batches=50
kill_position_max=400
# How far past a checkpoint the cluster must be for it to be durable on the others.
checkpoint_margin=48

# progress_to OP WHAT: waits until the cluster has committed OP, through progress (which allows
# 60 s) in steps of 500 batches.
progress_to() {
  local count
  while count=$(($1 - $(committed_op))) && ((count > 0)); do
    progress $((count < 500 ? count : 500)) "$2"
  done
}

# synced REPLICA: waits (90 s at most) until the restarted replica logs that it took a peer's
# checkpoint, and puts that checkpoint's op in synced_op.
synced_op=0
synced() {
  local replica=$1 started=$SECONDS line
  local log="$work/replica_$replica.${starts[replica]}.log"
  until line=$(grep -m 1 "synced to the checkpoint at op" "$log"); do
    kill -0 "${pids[replica]}" 2>/dev/null || died "$replica"
    check_logs
    ((SECONDS - started < 90)) || fail "replica $replica did not sync in 90 s"
    sleep 0.2
  done
  synced_op=$(sed 's/.* at op \([0-9]*\) .*/\1/' <<< "$line")
  say "replica $replica synced after $((SECONDS - started)) s: $line"
}

# early_in_interval: waits until the cluster is between checkpoint_margin and kill_position_max
# ops past a checkpoint.
early_in_interval() {
  local op position
  op=$(committed_op)
  position=$((op % checkpoint_interval))
  ((position < checkpoint_margin || position > kill_position_max)) || return 0
  ((position < checkpoint_margin)) || op=$((op + checkpoint_interval))
  say "op $(committed_op): waiting to be $checkpoint_margin ops past a checkpoint"
  progress_to $((op - position + checkpoint_margin)) "while waiting for a checkpoint"
}

cluster_setup
for ((replica = 0; replica < replicas; replica++)); do start "$replica"; done
say "3 replicas listening on $addresses"
started=$SECONDS
workload_start "$pause_ms" "$batch_size"
progress 100 "before the kill"
say "$(acknowledged) batches acknowledged by a healthy cluster"

# 1. Replica 2, a backup of view 0.
kill_replica 2
inspect 2
((inspected_view == 0)) || fail "replica 2 was in view $inspected_view, not 0: no kill of a backup"
head_op=$inspected_op
say "killed backup replica 2 in view 0 (WAL head op $head_op," \
  "checkpoint op $inspected_checkpoint)"

# 2. Two checkpoints and a WAL later.
second_checkpoint=$(((head_op / checkpoint_interval + 2) * checkpoint_interval))
down_to=$((second_checkpoint > head_op + slot_count ? second_checkpoint : head_op + slot_count))
down_to=$((down_to + checkpoint_margin))
progress_to "$down_to" "while replica 2 is down"
say "op $(committed_op): the cluster passed checkpoint $second_checkpoint and op" \
  "$((head_op + slot_count))"

# 3. Sync, then catch up.
start 2
say "replica 2 restarted: $(head -1 "$work/replica_2.${starts[2]}.log")"
synced 2
((synced_op > head_op)) ||
  fail "replica 2 synced to op $synced_op, not above its old WAL head $head_op"
# Repair (about 12-17 ops a second here) is slower than the load: the writes are held while the
# synced replica catches up (the workload's --hold-file), else it can fall a WAL behind again.
touch "$work/hold"
rejoin 2 $((synced_op + 1))
rm -f "$work/hold"

# 4. Replica 1's data file lost, recreated with `tally recover`.
kill_replica 1
rm -f "$work/0_1.tally"
say "killed replica 1 and deleted its data file"
recovered=$("$tally" recover --cluster=0 --replica=1 --replica-count=3 --addresses="$addresses" \
  "$work/0_1.tally" 2>&1) || fail "tally recover failed: $recovered"
say "$recovered"
start 1
synced 1
recovered_op=$synced_op
touch "$work/hold"
rejoin 1 $((recovered_op + 1))
rm -f "$work/hold"

# 5. The recovered replica in the quorum.
early_in_interval
kill_replica 2
inspect 2
down_from=$inspected_op
say "killed replica 2 (WAL head op $down_from): the cluster runs on replicas 0 and 1"
progress "$down_batches" "while replica 2 is down"
progress_to $((recovered_op + slot_count + 8)) "while replica 2 is down"
syncs=$(grep -c "synced to the checkpoint" "$work/replica_1.${starts[1]}.log")
((syncs == 1)) || fail "replica 1 synced $syncs times before op $(committed_op)"
say "op $(committed_op): acknowledged with replica 2 down, more than a WAL past op" \
  "$recovered_op: the recovered replica 1 wrote a checkpoint of its own"

# 6. Replica 2 back.
start 2
say "replica 2 restarted"
touch "$work/hold"
rejoin 2 "$down_from"
rm -f "$work/hold"

cluster_finish
inspect 1
say "replica 1's superblock at the end: checkpoint op $inspected_checkpoint, view" \
  "$inspected_view; its syncs: $(grep -o "to the checkpoint at op [0-9]*" \
    "$work/replica_1.${starts[1]}.log" | awk '{ print $NF }' | paste -sd ' ')"
say "passed in $((SECONDS - started)) s after the cluster started"
