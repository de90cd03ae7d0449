// Replica, opening: the superblock, the latest checkpoint, WAL recovery, the replay of what is
// known committed, and the status the replica starts in. Part of replica.hpp (its table of
// contents); included from there.
//
//   superblock ─> checkpoint (state machine, sessions) ─> WAL recovery ─> the log's head
//     ─> replay of committed ops the chain vouches for ─> first status
//
// First status (docs/vsr-protocol.md, "Restarts"):
//   - a single replica: normal; its log is the only one, so the hash chain from its checkpoint
//     is its log, and a damaged entry it would need stops it (fatal);
//   - a cluster replica whose newest entries cannot be trusted (a damaged slot may hold an op
//     above its head that it acknowledged): recovering_head, until a start_view says the head
//     (or a view change it joins, saying its head is uncertain);
//   - log_view < view: the view change it was in, its do_view_change the durable one;
//   - log_view == view, the view's primary: a view change to the next view (a restarted
//     primary does not keep its role by itself: it cannot know which of its prepares in flight
//     the backups hold), except the primary of view 0 with an empty log: it has sent no
//     prepare (the cluster's first op goes out only once durable, replica_primary.hpp);
//   - log_view == view, a backup: normal in that view.
//
// Invariants: nothing is sent before the replica is opened; a replica never executes an op the
// hash chain from its head does not vouch for; it never starts with a shorter log than it
// acknowledged: its durable view headers bring back what a crash could hide.
#pragma once

#include "src/vsr/replica.hpp"

namespace tally::vsr {

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::superblock_open_callback(journal::SuperblockStore<S>* store) {
  auto* self = static_cast<Replica*>(store->context);
  TALLY_ASSERT(store == &self->superblock_);
  TALLY_ASSERT(self->status_ == ReplicaStatus::opening);
  self->superblock_opened();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::superblock_opened() {
  TALLY_ASSERT(status_ == ReplicaStatus::opening);
  // Nothing executed or appended before the superblock says where the replica stands.
  TALLY_ASSERT(commit_min_ == 0 && log_.op() == 0 && log_.op_checkpoint() == 0);
  if (superblock_.result() != journal::SuperblockResult::ok) {
    base::fatal(base::FatalReason::data_file_invalid, "the data file's superblock: %s",
                journal::superblock_result_message(superblock_.result()));
  }
  const journal::Superblock& working = superblock_.working();
  if (working.cluster != options_.cluster || working.replica != options_.replica ||
      working.replica_count != options_.replica_count) {
    base::fatal(base::FatalReason::data_file_mismatch,
                "the data file is replica %u of %u, not replica %u of %u (or of another "
                "cluster)",
                working.replica, working.replica_count, options_.replica,
                options_.replica_count);
  }
  if (working.layout != layout_.config()) {
    base::fatal(base::FatalReason::data_file_mismatch,
                "the data file's layout differs from the one this replica was built for");
  }
  view_ = working.vsr_state.view;
  log_view_ = working.vsr_state.log_view;
  commit_max_ = working.vsr_state.commit_max;
  view_headers_ = journal::superblock_view_headers(working);
  TALLY_ASSERT(log_view_ <= view_);
  // A different number every run (the clock moves on), the same in a simulator run.
  base::Prng nonce_prng(prng_seed(options_) ^ static_cast<u64>(time_.realtime_ns()) ^
                        (working.sequence << 32));
  nonce_ = (u128{nonce_prng.next_u64()} << 64) | nonce_prng.next_u64();
  if (nonce_ == 0) nonce_ = 1;
  if (working.checkpoint.op == 0) {
    wal_recover();
    return;
  }
  if (working.checkpoint_syncing == 1) {
    // A state sync was under way: its target's blocks may not all be here. The replica opens
    // at the target's op without its state, and fetches the rest once open (replica_sync.hpp).
    if (solo()) {
      base::fatal(base::FatalReason::data_file_invalid,
                  "the data file is marked as syncing a checkpoint from peers, but this is a "
                  "single-replica cluster");
    }
    sync_anchor(working.checkpoint);
    sync_stage_ = SyncStage::install;  // Installed: the fetch starts once opened.
    wal_recover();
    return;
  }
  const CheckpointVsrState state = checkpoint_vsr_state_read(working.checkpoint);
  log_.anchor_set(working.checkpoint.op, state.prepare_checksum,
                  working.checkpoint.commit_timestamp);
  if (state.prepare_header.checksum == state.prepare_checksum &&
      checksum_valid(state.prepare_header)) {
    log_.anchor_header_set(state.prepare_header);
  }
  checkpoint_store_.open(state, state_machine_, sessions_, checkpoint_opened_callback, this);
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::checkpoint_opened_callback(void* context) {
  auto* self = static_cast<Replica*>(context);
  TALLY_ASSERT(self->status_ == ReplicaStatus::opening && self->commit_min_ == 0);
  TALLY_ASSERT(!self->checkpoint_store_.busy());  // Read whole, or up to a damaged block.
  const journal::CheckpointReference& checkpoint = self->superblock_.working().checkpoint;
  // A damaged block, or (in a cluster) a damaged stored reply, which peers at the same
  // checkpoint hold too: before a client's retry needs it.
  if (self->checkpoint_store_.damaged() ||
      (!self->solo() && self->checkpoint_store_.replies_damaged() > 0)) {
    self->checkpoint_repair_start();
    return;
  }
  TALLY_ASSERT(self->state_machine_.commit_timestamp() == checkpoint.commit_timestamp);
  TALLY_ASSERT(self->log_.op_checkpoint() == checkpoint.op);
  // The next checkpoint is relative to this one.
  self->checkpointer_.done(self->state_machine_);
  self->commit_min_ = checkpoint.op;
  self->prepare_timestamp_ = checkpoint.commit_timestamp;
  self->wal_recover();
}

// A block of the durable checkpoint, or a stored reply, did not verify: the replica opens at the
// checkpoint's op without its state, as after a crash in a state sync, and once open walks its
// own checkpoint like a sync target (replica_sync.hpp): what verifies here stays, what does not
// is fetched from peers, whose checkpoints of the same op are the same blocks at the same
// addresses (and the same replies). A peer that has moved on may have reused a block: the walk
// then stalls and retargets to the primary's newer checkpoint, an ordinary state sync; a reply
// no peer holds any more is left out, as in a sync. Nothing is written to the superblock: the
// pieces fetched go where this very checkpoint names them, and a crash meanwhile finds the rest
// damaged again.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::checkpoint_repair_start() {
  TALLY_ASSERT(status_ == ReplicaStatus::opening);
  TALLY_ASSERT(checkpoint_store_.damaged() || checkpoint_store_.replies_damaged() > 0);
  const journal::CheckpointReference& checkpoint = superblock_.working().checkpoint;
  if (solo()) {
    TALLY_ASSERT(checkpoint_store_.damaged());  // A damaged reply alone is left unanswered.
    base::fatal(base::FatalReason::data_file_invalid,
                "grid block %u of the checkpoint at op %llu is damaged, and a single replica has "
                "no peer to repair it from",
                checkpoint_store_.damaged_address(),
                static_cast<unsigned long long>(checkpoint.op));
  }
  stats_.checkpoint_repairs += 1;
  sync_repairing_ = true;
  checkpoint_store_.reset();
  sync_anchor(checkpoint);
  sync_stage_ = SyncStage::install;  // As installed: the walk starts once opened.
  wal_recover();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::wal_recover() {
  TALLY_ASSERT(status_ == ReplicaStatus::opening);
  // The checkpoint's state is in (or there is none): the executed op is its op.
  TALLY_ASSERT(commit_min_ == log_.op_checkpoint());
  journal::RecoverOptions options{};
  if (log_.op_checkpoint() > 0) options.op_checkpoint = log_.op_checkpoint();
  log_.wal().recover(&wal_completion_, wal_recovered_callback, options);
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::wal_recovered_callback(
    typename journal::Wal<S>::Completion* completion) {
  auto* self = static_cast<Replica*>(completion->context);
  TALLY_ASSERT(completion == &self->wal_completion_);
  TALLY_ASSERT(self->status_ == ReplicaStatus::opening);
  self->wal_recovered();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::wal_recovered() {
  TALLY_ASSERT(status_ == ReplicaStatus::opening);
  TALLY_ASSERT(commit_min_ == log_.op_checkpoint());
  const journal::Wal<S>& wal = log_.wal();
  if (solo()) {
    // The log is the hash chain from the checkpoint as far as it goes unbroken. If the op after
    // the head was simply never written (a write lost or torn by the crash), nothing after it
    // was written either (one write at a time). A faulty slot there may hold an op this replica
    // acknowledged, and it has no peer to fetch it from: it stops rather than start with a
    // shorter log. The slot after the head is checked whatever the WAL's op_max says: op_max
    // counts only entries recovery trusted, so a damaged newest entry does not show in it.
    log_.head_recover();
    const u64 op_next = log_.op() + 1;
    if (op_next <= log_.op_max() && wal.faulty(wal.slot_for_op(op_next))) {
      base::fatal(base::FatalReason::data_file_invalid,
                  "the WAL's op %llu (or the entry in its slot) is damaged, and a single "
                  "replica has no peer to repair it from: starting without it could lose an "
                  "acknowledged operation",
                  static_cast<unsigned long long>(op_next));
    }
    const std::optional<u64> wal_op_max = wal.op_max();
    if (wal_op_max.has_value() && *wal_op_max > log_.op()) log_truncate_after(log_.op());
    commit_max_ = log_.op();  // Everything a single replica wrote, it committed.
  } else {
    log_.head_recover_cluster(view_headers_.span(), log_view_, view_);
    // The head's primary had committed everything up to its commit field.
    if (const Header* head = log_.header(log_.op()); head != nullptr && log_.op() > 0) {
      if (head->prepare.commit > commit_max_) commit_max_ = head->prepare.commit;
    }
  }
  if (commit_max_ < log_.op_checkpoint()) commit_max_ = log_.op_checkpoint();
  if (prepare_timestamp_ < log_.head_timestamp()) prepare_timestamp_ = log_.head_timestamp();
  // Replay stops at the next checkpoint's op: that checkpoint is written once opened, and
  // commit_journal() goes on from there.
  const u64 checkpoint_next = log_.op_checkpoint() + checkpoint_interval();
  replay_target_ = commit_max_ < checkpoint_next ? commit_max_ : checkpoint_next;
  // In a view change (log_view < view) the log is the older view's, and commit_max may be the
  // number of a newer log's op (learned as that view's candidate primary): the same op number
  // here may be an op that never committed. Nothing executes until a view's log is installed.
  if (!solo() && log_view_ < view_) replay_target_ = commit_min_;
  if (syncing()) replay_target_ = commit_min_;  // No state to execute on yet.
  // Replay goes from the executed op up to at most the next checkpoint's op.
  TALLY_ASSERT(commit_min_ <= replay_target_ && replay_target_ <= checkpoint_next);
  TALLY_ASSERT(log_.op_checkpoint() <= commit_max_ && commit_min_ <= log_.op());
  replay_next();
}

// Whether a damaged slot could hold an op above the head: one this replica may have written and
// acknowledged, so that its head is not its log's.
//   8 slots, head 13, op_prepare_max 16: ops 14, 15, 16 are in slots 6, 7, 0; a faulty slot 7
//   makes the head uncertain, unless a copy that verified shows it held op 7 at most; a faulty
//   slot 3 does not (it holds op 11 or an older one).
template <journal::Storage S, MessageBus Bus, Time Clock>
bool Replica<S, Bus, Clock>::head_uncertain() const {
  TALLY_ASSERT(!solo());
  // What recovery read of each slot is known only while opening.
  TALLY_ASSERT(status_ == ReplicaStatus::opening && log_.wal().recovered());
  const journal::Wal<S>& wal = log_.wal();
  if (wal.faulty_count() == 0) return false;
  // In a view change (log_view < view) the durable do_view_change headers cover every op this
  // replica acknowledged in log_view: it acknowledges only while normal, and they were taken
  // from its whole log when it left normal. Whatever a damaged slot holds above them, it never
  // acknowledged, unless its head was uncertain then: the headers say so (head_uncertain), and
  // open_done() takes that.
  if (log_view_ < view_) return false;
  for (u64 op = log_.op() + 1; op <= log_.op_max(); op += 1) {
    const u32 slot = wal.slot_for_op(op);
    if (!wal.faulty(slot)) continue;
    // The redundant header is written once its prepare is durable, and a prepare is
    // acknowledged only after that: if it verified, it names the newest entry the slot may
    // have acknowledged. Above the view's start_view headers that is an entry of log_view, or
    // one a view change truncated here (never needed again).
    if (const std::optional<typename journal::Wal<S>::HeaderCopy> copy =
            wal.recovered_header_copy(slot)) {
      if (copy->op >= op && copy->view == log_view_) return true;
      continue;
    }
    // Else a prepare copy that verified says the newest op the slot held; none: unknown.
    const std::optional<u64> held = wal.recovered_op_max(slot);
    if (!held.has_value() || *held >= op) return true;
  }
  return false;
}

// Executes ops commit_min+1 .. replay_target from the WAL, one read at a time, as long as the
// hash chain from the head vouches for them; the rest waits for repair once opened.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::replay_next() {
  TALLY_ASSERT(status_ == ReplicaStatus::opening);
  TALLY_ASSERT(commit_min_ <= replay_target_ || !solo());
  TALLY_ASSERT(replay_target_ <= log_.op_checkpoint() + checkpoint_interval());
  const u64 op = commit_min_ + 1;
  if (commit_min_ < replay_target_ && chain_executable(op) && !log_.dirty(op)) {
    commit_read_start(op, replay_read_callback);
    return;
  }
  if (solo() && commit_min_ < replay_target_) {
    base::fatal(base::FatalReason::data_file_invalid,
                "the WAL's op %llu cannot be read back intact, and a single replica has no peer "
                "to repair it from",
                static_cast<unsigned long long>(op));
  }
  open_done();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::replay_read_callback(typename journal::Wal<S>::Read* read) {
  auto* self = static_cast<Replica*>(read->context);
  TALLY_ASSERT(self->status_ == ReplicaStatus::opening);
  TALLY_ASSERT(read == &self->commit_read_ && read->op == self->commit_min_ + 1);
  base::Message* message = self->commit_read_take(read);
  if (message == nullptr) {
    // Damaged since recovery read it: a single replica stops (replay_next()), a cluster replica
    // fetches it once opened.
    self->replay_target_ = self->commit_min_;
    if (self->solo()) self->replay_target_ = read->op;
    self->replay_next();
    return;
  }
  TALLY_ASSERT(message->header().prepare.op == read->op);
  self->execute(message);
  self->pool().unref(message);
  self->replay_next();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::open_done() {
  TALLY_ASSERT(status_ == ReplicaStatus::opening);
  TALLY_ASSERT(commit_min_ <= commit_max_ && commit_min_ <= log_.op());
  if (prepare_timestamp_ < state_machine_.commit_timestamp()) {
    prepare_timestamp_ = state_machine_.commit_timestamp();
  }
  repair_timeout_.start();
  if (solo()) {
    status_ = ReplicaStatus::normal;
    op_at_open_ = log_.op();
    commit_heartbeat_timeout_.start();
    prepare_retry_timeout_.start();
    pulse_timeout_.start();
  } else if (log_view_ == view_ && head_uncertain()) {
    status_ = ReplicaStatus::recovering_head;
    head_uncertain_ = true;
    get_view_timeout_.start();
    view_change_status_timeout_.start();
    // The view's primary itself: nobody else will start its view again; the next view starts,
    // with this replica's log marked uncertain.
    if (primary()) transition_to_view_change(view_ + 1);
  } else if (log_view_ < view_) {
    // The view change it was in: its do_view_change is the durable one, uncertain head and all
    // (seed 7345118948980872073: a primary that restarted uncertain of its head, then again in
    // the view change it began, sent a certain head the second time: a nack for the committed
    // op its damaged slot held, which the view change truncated).
    status_ = ReplicaStatus::view_change;
    head_uncertain_ = view_headers_.head_uncertain;
    vote_timeout_.start();
    join_view_timeout_.start();
    get_view_timeout_.start();
    view_change_status_timeout_.start();
  } else if (primary() && !(view_ == 0 && log_.op() == 0)) {
    status_ = ReplicaStatus::view_change;  // Briefly: transition_to_view_change() needs a status.
    log_view_ = view_;
    transition_to_view_change(view_ + 1);
  } else {
    status_ = ReplicaStatus::normal;
    op_at_open_ = log_.op();
    if (primary()) {
      commit_heartbeat_timeout_.start();
      prepare_retry_timeout_.start();
      pulse_timeout_.start();
    } else {
      normal_heartbeat_timeout_.start();
    }
  }
  // Running now, with the timeouts its status needs to move on: a normal replica's heartbeat
  // for its role, a view change's status timeout, a recovering head's get_view.
  TALLY_ASSERT(opened());
  TALLY_ASSERT(status_ != ReplicaStatus::normal ||
               (primary() ? commit_heartbeat_timeout_.ticking()
                          : normal_heartbeat_timeout_.ticking()));
  TALLY_ASSERT(status_ != ReplicaStatus::view_change || view_change_status_timeout_.ticking());
  TALLY_ASSERT(status_ != ReplicaStatus::recovering_head || get_view_timeout_.ticking());
  if (open_callback_ != nullptr) open_callback_(this);
  if (status_ == ReplicaStatus::view_change && log_view_ < view_ &&
      view_durable() == view_) {
    join_view_send();
  }
  if (sync_stage_ == SyncStage::install) sync_fetch_start();
  commit_journal();
}

}  // namespace tally::vsr
