// Replica, backups in normal status: taking the primary's prepares into the log, acknowledging
// what is durable, following commit heartbeats. Part of replica.hpp (its table of contents);
// included from there.
//
// A prepare of the backup's own view from that view's primary is the log's entry for its op:
// one prepare per (view, op), and the view's primary is the authority for its view's log. It
// becomes the head if it is above the head (ops skipped become a break in the hash chain, which
// repair fills from the head down, replica_repair.hpp). A prepare of an older view is a repair
// answer, taken only with the checksum the log expects. A prepare or commit of a later view
// means the cluster moved on: the backup asks that view's primary for its start_view.
//
// Invariants: a backup acknowledges only prepares durable in its WAL, only in normal status and
// only to the primary of its view; nothing executes that the chain from the head does not reach.
#pragma once

#include "src/vsr/replica.hpp"

namespace tally::vsr {

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::on_prepare(base::Message* message) {
  const Header& header = message->header();
  TALLY_ASSERT(header.replica == primary_index(header.view));  // validate_replica_message().
  TALLY_ASSERT(header.prepare.op > 0 && header.prepare.operation != Operation::root);
  if (header.view > view_) {
    later_view_heard(header.view);
    return;
  }
  // Built on another checkpoint than this replica's (where it knows which one the op needs):
  // not the cluster's log as this replica holds it. The commit heartbeats' checkpoint id stops
  // a replica whose own checkpoint diverged; a prepare alone may be a forgery, so it is dropped.
  if (const std::optional<u128> expected = checkpoint_id_for_op(header.prepare.op);
      expected.has_value() && *expected != header.prepare.checkpoint_id) {
    stats_.messages_invalid += 1;
    return;
  }
  if (status_ == ReplicaStatus::normal && header.view == view_ && !primary()) {
    prepare_from_primary(message);
  } else if (status_ == ReplicaStatus::normal ||
             (status_ == ReplicaStatus::view_change && primary() && log_chosen_)) {
    repair_accept(message);
  } else {
    stats_.prepares_ignored += 1;
    return;
  }
  commit_journal();
}

// A prepare or commit of a later view: the cluster moved on without this replica, which asks
// that view's primary for its start_view (a backup follows a new view only through it): once
// for each view it hears of, and again each get_view timeout. Always the view just heard of,
// not the highest: a view nobody started (a forged message's) must not hide the real one. The
// view last asked for counts as asked only while the get_view timeout runs: a view start stops
// it, and a view asked for before (perhaps by a forgery, before it began) is asked again.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::later_view_heard(u32 view) {
  TALLY_ASSERT(view > view_);
  if (view == get_view_asked_ && get_view_timeout_.ticking() && !get_view_timeout_.fired()) {
    return;
  }
  get_view_asked_ = view;
  get_view_timeout_.start();
  get_view_send(view);
  TALLY_ASSERT(get_view_timeout_.ticking() && get_view_asked_ > view_);
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::prepare_from_primary(base::Message* message) {
  const Header& header = message->header();
  TALLY_ASSERT(status_ == ReplicaStatus::normal && !primary() && header.view == view_);
  // validate_replica_message(): what the primary had committed precedes the op (commit_max
  // learns it from here).
  TALLY_ASSERT(header.prepare.commit < header.prepare.op);
  const u64 op = header.prepare.op;
  if (op > log_.op()) {
    // The primary is there. Only a prepare above the head shows it: one at or below it may be
    // a peer's answer to this backup's repair (the primary's prepare, relayed unchanged). Those
    // kept the backups of a primary lost for good from ever leaving its view (simulator seed
    // 6906890336785845252); the primary's commits every 100 ms are its heartbeat too.
    normal_heartbeat_timeout_.reset();
    votes_to_leave_ = 0;
    vote_timeout_.stop();
  }
  if (header.prepare.commit > commit_max_) commit_max_ = header.prepare.commit;
  if (op > op_seen_max_) op_seen_max_ = op;  // State sync's trigger (replica_sync.hpp).
  if (op > view_head_) view_head_ = op;      // In the view's log: the primary never truncates.
  if (op > op_prepare_max()) {
    stats_.prepares_ignored += 1;
    return;
  }
  const Header* existing = log_.header(op);
  if (existing != nullptr && existing->checksum == header.checksum) {
    // A retransmission: acknowledged again once durable; a damaged copy here is restored.
    if (!log_.dirty(op)) {
      prepare_ok_send(header);
    } else if (log_.restorable(op, header.checksum)) {
      log_.restore(message);
      stats_.prepares_repaired += 1;
    }
    stats_.prepares_ignored += 1;
    return;
  }
  if (op <= commit_min_) {
    // Executed here: a prepare of the same view at an executed op must be the executed one.
    if (log_.restorable(op, header.checksum)) {
      log_.restore(message);
      stats_.prepares_repaired += 1;
    } else {
      stats_.prepares_ignored += 1;
    }
    return;
  }
  if (existing != nullptr && existing->view >= view_) {
    stats_.messages_invalid += 1;  // Two prepares of one view at one op: not this primary's.
    return;
  }
  if (existing != nullptr && op <= log_.op()) {
    // An entry of an older view, which the view's log does not have (log_replace_older()).
    if (!log_replace_older(op)) return;
  }
  if (!log_.put(message)) {
    // The disk is behind the cluster (which commits without this backup): the prepare waits,
    // unacknowledged, until a write completes (held_prepares_append()).
    if (op - commit_min_ < prepare_cache_max) log_.cache_put(message);
    stats_.prepares_held += 1;
    return;
  }
  // The log's entry for its op now, the head if it was above it.
  TALLY_ASSERT(log_.op() >= op);
  stats_.prepares_accepted += 1;
  held_prepares_append();
}

// Appends the held prepares of this view that follow the head, as far as the write queue has
// room.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::held_prepares_append() {
  if (status_ != ReplicaStatus::normal || primary()) return;
  while (log_.op() < op_prepare_max()) {
    base::Message* next = log_.cache_get(log_.op() + 1);
    if (next == nullptr || next->header().view != view_) break;
    // Validated when it came: a prepare of this view is its primary's.
    TALLY_ASSERT(next->header().replica == primary_index(view_));
    if (!log_.put(next)) break;
    TALLY_ASSERT(log_.op() == next->header().prepare.op);
    stats_.prepares_accepted += 1;
  }
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::prepare_ok_send(const Header& prepare) {
  TALLY_ASSERT(prepare.command == Command::prepare && prepare.prepare.op > 0);
  if (status_ != ReplicaStatus::normal || primary()) return;
  // A syncing replica's state is not its commit_min's: it vouches for nothing yet (but one
  // repairing its own checkpoint holds its own log: sync_repairing_).
  if (syncing() && !sync_repairing_) return;
  if (view_durable() != view_ || log_view_durable() != view_) return;
  // Only what is durable here, as the entry of its op: a walk of the write queue.
  TALLY_ASSERT_SLOW(log_.header(prepare.prepare.op) != nullptr &&
                    log_.header(prepare.prepare.op)->checksum == prepare.checksum &&
                    !log_.dirty(prepare.prepare.op));
  base::Message* message = pool().get();
  if (message == nullptr) return;
  Header& header = message->header();
  frame_fill(header, Command::prepare_ok);
  header.prepare_ok.prepare_checksum = prepare.checksum;
  header.prepare_ok.parent = prepare.prepare.parent;
  header.prepare_ok.op = prepare.prepare.op;
  header.prepare_ok.commit = commit_min_;
  header.prepare_ok.timestamp = prepare.prepare.timestamp;
  message_seal(message);
  TALLY_ASSERT_SLOW(valid_to(message, primary_index(view_)));
  bus_.send_to_replica(primary_index(view_), message);
  pool().unref(message);
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::on_commit(base::Message* message) {
  const Header& header = message->header();
  TALLY_ASSERT(header.replica == primary_index(header.view));  // validate_replica_message().
  if (header.view > view_) {
    later_view_heard(header.view);
    return;
  }
  if (status_ != ReplicaStatus::normal || header.view != view_ || primary()) return;
  normal_heartbeat_timeout_.reset();
  votes_to_leave_ = 0;  // The primary is there.
  vote_timeout_.stop();
  // validate_replica_message(): the primary's checkpoint is of an op it committed (state sync's
  // retargeting learns it from here).
  TALLY_ASSERT(header.commit.checkpoint_op <= header.commit.commit);
  const u64 commit = header.commit.commit;
  if (commit > commit_max_) commit_max_ = commit;
  if (commit > op_seen_max_) op_seen_max_ = commit;
  if (header.commit.checkpoint_op > primary_checkpoint_op_) {
    primary_checkpoint_op_ = header.commit.checkpoint_op;
  }
  // What this replica executed must be what the cluster committed: a difference is a bug
  // somewhere, and going on would spread it.
  // (Only from the anchor on: below it a synced replica's WAL may hold entries it never
  // executed, which the checkpoint it took replaced.)
  if (commit <= commit_min_ && commit >= log_.op_checkpoint() &&
      header.commit.commit_checksum != 0) {
    const std::optional<u128> executed = log_.checksum_of(commit);
    if (executed.has_value() && *executed != header.commit.commit_checksum) {
      base::fatal(base::FatalReason::data_file_invalid,
                  "replica %u executed op %llu with checksum %016llx%016llx, but the primary of "
                  "view %u committed %016llx%016llx: the replicas diverged",
                  options_.replica, static_cast<unsigned long long>(commit),
                  static_cast<unsigned long long>(*executed >> 64),
                  static_cast<unsigned long long>(*executed), view_,
                  static_cast<unsigned long long>(header.commit.commit_checksum >> 64),
                  static_cast<unsigned long long>(header.commit.commit_checksum));
    }
  }
  // Likewise its durable checkpoint: replicas' checkpoints of one op are the same bytes (the
  // same state, the same grid blocks at the same addresses), so their ids are equal.
  const u128 checkpoint_id = checkpoint_id_durable();
  if (header.commit.checkpoint_op == log_.op_checkpoint() &&
      header.commit.checkpoint_id != checkpoint_id) {
    base::fatal(base::FatalReason::data_file_invalid,
                "replica %u holds the checkpoint of op %llu with id %016llx%016llx, but the "
                "primary of view %u holds %016llx%016llx: the replicas' checkpoints diverged",
                options_.replica, static_cast<unsigned long long>(log_.op_checkpoint()),
                static_cast<unsigned long long>(checkpoint_id >> 64),
                static_cast<unsigned long long>(checkpoint_id), view_,
                static_cast<unsigned long long>(header.commit.checkpoint_id >> 64),
                static_cast<unsigned long long>(header.commit.checkpoint_id));
  }
  commit_journal();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::log_written_callback(void* context, const Header& header) {
  static_cast<Replica*>(context)->log_written(header);
}

// A prepare is durable in the WAL (and still the entry of its op): the primary counts its own
// acknowledgement, a backup sends its prepare_ok and appends what it held for want of room, a
// new primary repairing its log looks whether it is whole.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::log_written(const Header& header) {
  TALLY_ASSERT(header.command == Command::prepare);
  // Still the log's entry of its op (Log::write_callback()), so at or below the head.
  TALLY_ASSERT(header.prepare.op <= log_.op());
  TALLY_ASSERT_SLOW(log_.header(header.prepare.op) != nullptr &&
                    log_.header(header.prepare.op)->checksum == header.checksum);
  switch (status_) {
    case ReplicaStatus::normal:
      if (primary()) {
        if (view_ == 0 && header.prepare.op == 1) {
          // Held back until the cluster's first op was durable here (prepare_send_to_backups()).
          for (u32 index = 0; index < pipeline_.count(); index += 1) {
            prepare_send_to_backups(pipeline_.entry(index));
          }
        }
        if (pipeline_.acknowledge(header.prepare.op, header.checksum, options_.replica)) {
          pipeline_commit();
        }
      } else {
        prepare_ok_send(header);
        held_prepares_append();
      }
      repair_fill_from_cache();
      commit_journal();
      break;
    case ReplicaStatus::view_change:
      if (primary() && log_chosen_) {
        repair_fill_from_cache();
        primary_view_start_try();
      }
      break;
    case ReplicaStatus::recovering_head:
    case ReplicaStatus::init:
    case ReplicaStatus::opening: break;
  }
}

}  // namespace tally::vsr
