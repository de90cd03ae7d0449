// Replica, opening: the superblock, the latest checkpoint, WAL recovery, and the replay of the
// log, up to the moment the replica becomes normal. Part of replica.hpp (its table of contents);
// included from there.
//
//   superblock ─> checkpoint (state machine, sessions) ─> WAL recovery ─> the log's head
//     ─> replay of what is known committed ─> (primary) pipeline reload ─> (primary) new view
//     ─> normal
//
// Invariants: nothing is sent before the replica is normal; a replica never executes an op it
// cannot show committed (a solo replica: all it wrote; a primary: all but its last pipeline's
// worth; a backup: nothing until the primary says); a damaged entry the replica would need and
// cannot fetch stops it (fatal), it never starts with a shorter log than it acknowledged.
#pragma once

#include "src/vsr/replica.hpp"

namespace tally::vsr {

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::superblock_open_callback(journal::SuperblockStore<S>* store) {
  auto* self = static_cast<Replica*>(store->context);
  TALLY_ASSERT(self->status_ == ReplicaStatus::opening);
  self->superblock_opened();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::superblock_opened() {
  TALLY_ASSERT(status_ == ReplicaStatus::opening);
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
  if (working.checkpoint.op == 0) {
    wal_recover();
    return;
  }
  const CheckpointVsrState state = checkpoint_vsr_state_read(working.checkpoint);
  log_.anchor_set(working.checkpoint.op, state.prepare_checksum,
                  working.checkpoint.commit_timestamp);
  checkpoint_store_.open(state, state_machine_, sessions_, checkpoint_opened_callback, this);
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::checkpoint_opened_callback(void* context) {
  auto* self = static_cast<Replica*>(context);
  const journal::CheckpointReference& checkpoint = self->superblock_.working().checkpoint;
  TALLY_ASSERT(self->state_machine_.commit_timestamp() == checkpoint.commit_timestamp);
  TALLY_ASSERT(self->log_.op_checkpoint() == checkpoint.op);
  // The next checkpoint is relative to this one.
  self->checkpointer_.done(self->state_machine_);
  self->commit_min_ = checkpoint.op;
  self->prepare_timestamp_ = checkpoint.commit_timestamp;
  self->wal_recover();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::wal_recover() {
  TALLY_ASSERT(status_ == ReplicaStatus::opening);
  journal::RecoverOptions options{};
  if (log_.op_checkpoint() > 0) options.op_checkpoint = log_.op_checkpoint();
  log_.wal().recover(&wal_completion_, wal_recovered_callback, options);
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::wal_recovered_callback(
    typename journal::Wal<S>::Completion* completion) {
  static_cast<Replica*>(completion->context)->wal_recovered();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::wal_recovered() {
  TALLY_ASSERT(status_ == ReplicaStatus::opening);
  TALLY_ASSERT(commit_min_ == log_.op_checkpoint());
  // The log is the hash chain from the checkpoint as far as it goes unbroken.
  log_.head_recover();
  if (prepare_timestamp_ < log_.head_timestamp()) prepare_timestamp_ = log_.head_timestamp();
  const u64 op_checkpoint = log_.op_checkpoint();
  const journal::Wal<S>& wal = log_.wal();
  // Entries past a break cannot be trusted to follow the chain. If the op after the head was
  // simply never written here (a write lost or torn by the crash, the slot empty or older),
  // nothing after it committed either: a commit needs this replica's own write of every op up
  // to it when it is the primary (or alone), and backups fetch their entries again. A faulty
  // slot is different: it may hold a committed op that storage damaged, and the only complete
  // log (a single replica's, or the primary's while views do not change) must not drop it. The
  // slot after the head is checked whatever the WAL's op_max says: op_max counts only entries
  // recovery trusted, so a damaged newest entry does not show in it, and the log would
  // silently end one op early (an acknowledged op lost).
  const bool authority = solo() || primary_index(view_) == options_.replica;
  const u64 op_next = log_.op() + 1;
  if (authority && op_next <= log_.op_max() && wal.faulty(wal.slot_for_op(op_next))) {
    base::fatal(base::FatalReason::data_file_invalid,
                "the WAL's op %llu (or the entry in its slot) is damaged, and this replica's "
                "log is the only complete one (a single replica, or the primary without view "
                "changes): it cannot be repaired from a peer yet, and starting without it could "
                "lose an acknowledged operation",
                static_cast<unsigned long long>(op_next));
  }
  const std::optional<u64> wal_op_max = wal.op_max();
  if (wal_op_max.has_value() && *wal_op_max > log_.op()) log_truncate_after(log_.op());
  // What may be executed now: a solo replica committed everything it wrote; a primary in a
  // cluster everything but the pipeline's worth at its head (it never had more uncommitted);
  // a backup waits for the primary to say.
  const u64 op = log_.op();
  u64 committed = 0;
  if (solo()) {
    committed = op;
  } else if (primary_index(view_) == options_.replica) {
    committed = op > pipeline_max ? op - pipeline_max : 0;
  }
  if (committed < op_checkpoint) committed = op_checkpoint;
  commit_max_ = committed;
  pipeline_reload_op_ = committed;
  // Replay stops at the next checkpoint's op: that checkpoint is written once normal, and
  // commit_journal() goes on from there.
  const u64 checkpoint_next = op_checkpoint + checkpoint_interval();
  replay_target_ = committed < checkpoint_next ? committed : checkpoint_next;
  op_verified_ = op;
  if (!solo() && primary_index(view_) != options_.replica) op_verified_ = op_checkpoint;
  replay_next();
}

// Executes ops commit_min+1 .. replay_target from the WAL, one read at a time, then loads the
// rest of a primary's log into its pipeline.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::replay_next() {
  TALLY_ASSERT(status_ == ReplicaStatus::opening);
  TALLY_ASSERT(commit_min_ <= replay_target_);
  if (commit_min_ < replay_target_) {
    commit_read_start(commit_min_ + 1, replay_read_callback);
    return;
  }
  if (!solo() && primary_index(view_) == options_.replica && pipeline_reload_op_ < log_.op()) {
    commit_read_start(pipeline_reload_op_ + 1, reload_read_callback);
    return;
  }
  open_finish();
}

// While opening, an op of the log that does not read back intact cannot be fetched from a peer
// yet (the replica is not running): stop.
template <journal::Storage S, MessageBus Bus, Time Clock>
base::Message* Replica<S, Bus, Clock>::open_read_take(typename journal::Wal<S>::Read* read) {
  TALLY_ASSERT(status_ == ReplicaStatus::opening);
  base::Message* message = commit_read_take(read);
  if (message == nullptr) {
    base::fatal(base::FatalReason::data_file_invalid,
                "the WAL's op %llu cannot be read back intact",
                static_cast<unsigned long long>(read->op));
  }
  TALLY_ASSERT(message->header().prepare.op == read->op);
  return message;
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::replay_read_callback(typename journal::Wal<S>::Read* read) {
  auto* self = static_cast<Replica*>(read->context);
  base::Message* message = self->open_read_take(read);
  self->execute(message);
  self->pool().unref(message);
  self->replay_next();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::reload_read_callback(typename journal::Wal<S>::Read* read) {
  auto* self = static_cast<Replica*>(read->context);
  base::Message* message = self->open_read_take(read);
  TALLY_ASSERT(read->op == self->pipeline_reload_op_ + 1);
  self->log_.cache_put(message);
  // Durable here already: the primary's own acknowledgement.
  const Header& header = message->header();
  const Operation operation = header.prepare.operation;
  self->pipeline_.push(message, 1u << self->options_.replica,
                       reservation_of(operation, events_of(operation, message->body())));
  self->pool().unref(message);
  self->pipeline_reload_op_ = read->op;
  self->replay_next();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::open_finish() {
  TALLY_ASSERT(status_ == ReplicaStatus::opening);
  // A primary that restarts in a cluster moves to a later view in which it is still primary, so
  // that backups can tell its new prepares from the ones of its previous life (see replica.hpp);
  // the view is durable before any message of the new view leaves.
  if (!solo() && primary_index(view_) == options_.replica) {
    view_ += options_.replica_count;
    TALLY_ASSERT(primary_index(view_) == options_.replica);
    journal::SuperblockUpdate update{
        .vsr_state = {.view = view_, .log_view = view_, .commit_max = commit_min_},
        .checkpoint = superblock_.working().checkpoint,
        .view_headers = journal::superblock_view_headers(superblock_.working()),
    };
    superblock_.update(update, superblock_view_callback);
    return;
  }
  become_normal();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::superblock_view_callback(journal::SuperblockStore<S>* store) {
  static_cast<Replica*>(store->context)->become_normal();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::become_normal() {
  TALLY_ASSERT(status_ == ReplicaStatus::opening);
  TALLY_ASSERT(commit_min_ <= commit_max_ && commit_min_ <= log_.op());
  status_ = ReplicaStatus::normal;
  op_at_open_ = log_.op();
  if (prepare_timestamp_ < state_machine_.commit_timestamp()) {
    prepare_timestamp_ = state_machine_.commit_timestamp();
  }
  for (Timeout* timeout : {&commit_heartbeat_timeout_, &prepare_retry_timeout_, &pulse_timeout_,
                           &repair_timeout_, &repair_request_timeout_}) {
    timeout->start();
  }
  if (primary()) {
    for (u32 index = 0; index < pipeline_.count(); index += 1) {
      prepare_send_to_backups(pipeline_.entry(index));
    }
  }
  if (open_callback_ != nullptr) open_callback_(this);
  commit_journal();
}

}  // namespace tally::vsr
