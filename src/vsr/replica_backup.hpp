// Replica, backups: accepting prepares into the log, acknowledging what is durable, verifying the
// log against the primary after a restart, and repair (asking the primary for missing or damaged
// ops; answering such requests from the log). Part of replica.hpp (its table of contents);
// included from there.
//
// Invariants: a backup's log is a prefix of the primary's (it appends only the head's successor
// in the hash chain); it acknowledges only prepares durable in its WAL; nothing above
// op_verified executes; a truncation never removes an executed op.
#pragma once

#include "src/vsr/replica.hpp"

namespace tally::vsr {

// Prepares and commits come only from the primary of the view they name, another replica
// (validate_replica_message() established it).
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::assert_from_primary(const Header& header) const {
  TALLY_ASSERT(header.replica == primary_index(header.view));
  TALLY_ASSERT(header.replica != options_.replica);
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::on_prepare(base::Message* message) {
  const Header& header = message->header();
  assert_from_primary(header);
  TALLY_ASSERT(header.prepare.op > 0 && header.prepare.operation != Operation::root);
  if (header.view > view_) view_adopt(header.view);
  if (primary()) {
    stats_.prepares_ignored += 1;
    return;
  }
  const u64 op = header.prepare.op;
  if (header.view == view_ && header.prepare.commit > commit_max_) {
    commit_max_ = header.prepare.commit;
  }
  if (op <= commit_min_) {
    // Executed here already. A restarted primary re-replicating its pipeline still needs this
    // replica's acknowledgement to commit it again: from the WAL as it is, or, if storage damage
    // took the entry, once this copy (vouched for by the hash chain) restored it.
    const Header* existing = log_.header(op);
    if (existing != nullptr && existing->checksum == header.checksum && !log_.dirty(op)) {
      prepare_ok_send(header);
      stats_.prepares_ignored += 1;
    } else if (log_.restorable(op, header.checksum)) {
      log_.restore(message);
      stats_.prepares_repaired += 1;
    } else {
      stats_.prepares_ignored += 1;
    }
  } else {
    prepare_accept_or_hold(message);
  }
  commit_journal();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::view_adopt(u32 view) {
  TALLY_ASSERT(view > view_);
  TALLY_ASSERT(!primary() && primary_index(view) == primary_index(view_));
  view_ = view;
  // A new view means the primary restarted (there is no view change yet). What its earlier run
  // sent may include prepares it lost before they were durable there, which therefore never
  // committed: the prepares held here for later are dropped, and the log beyond what this
  // replica executed must be shown to be the new run's again (a commit checksum, or a prepare
  // of the new run that chains onto it) before it executes.
  log_.cache_drop_above(log_.op());
  if (op_verified_ > commit_min_) op_verified_ = commit_min_;
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::prepare_accept_or_hold(base::Message* message) {
  const Header& header = message->header();
  const u64 op = header.prepare.op;
  TALLY_ASSERT(!primary() && op > commit_min_);
  const Header* existing = log_.header(op);
  if (existing != nullptr) {
    if (existing->checksum == header.checksum) {
      // A retransmission: acknowledge again once durable. The primary holds this entry, so the
      // log up to it is the primary's (the hash chain).
      const bool in_log = op <= log_.op();
      if (in_log && !log_.dirty(op)) prepare_ok_send(header);
      if (in_log && op > op_verified_) op_verified_ = op;
      if (in_log && log_.restorable(op, header.checksum)) {
        // The entry here is known but its prepare is not durable (a read found it damaged):
        // this copy repairs it.
        log_.restore(message);
        stats_.prepares_repaired += 1;
        return;
      }
      stats_.prepares_ignored += 1;
      return;
    }
    // A different prepare for an op this replica holds: only a later view's prepare wins (it
    // was prepared after the primary restarted without the entry held here, which therefore
    // never committed).
    if (header.view <= existing->view || !log_truncate_after(op - 1)) {
      stats_.prepares_ignored += 1;
      return;
    }
    stats_.prepares_truncated += 1;
  }
  if (op > op_prepare_max()) {
    stats_.prepares_ignored += 1;
    return;
  }
  const u64 head = log_.op();
  if (op != head + 1) {
    // A gap: keep it for when the ops before it arrive, and ask for the next one.
    if (op > head + 1 && op - commit_min_ < prepare_cache_max) log_.cache_put(message);
    repair_request(head + 1);
    return;
  }
  if (header.prepare.parent != log_.head_checksum()) {
    // The head here is not the primary's: ask for the primary's version of it.
    if (head > commit_min_) repair_request(head);
    stats_.prepares_ignored += 1;
    return;
  }
  if (!log_.follows_head(header)) {
    // Chains onto the head but its timestamp does not increase: no primary made it.
    stats_.messages_invalid += 1;
    return;
  }
  if (log_.write_queue_full()) {
    // This backup's disk is behind the cluster (which commits without it): the prepare waits,
    // unacknowledged, until a write completes (held_prepares_append()).
    if (op - commit_min_ < prepare_cache_max) log_.cache_put(message);
    stats_.prepares_held += 1;
    return;
  }
  prepare_append(message);
  held_prepares_append();
}

// Appends the held prepares that follow the head, as far as the write queue has room.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::held_prepares_append() {
  TALLY_ASSERT(!primary());
  while (log_.op() < op_prepare_max() && !log_.write_queue_full()) {
    base::Message* next = log_.cache_get(log_.op() + 1);
    if (next == nullptr || !log_.follows_head(next->header())) break;
    if (log_.header(log_.op() + 1) != nullptr) break;
    prepare_append(next);
  }
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::prepare_append(base::Message* message) {
  TALLY_ASSERT(!primary());
  TALLY_ASSERT(log_.follows_head(message->header()));
  log_.append(message);
  // Every prepare comes from the primary's log (on_prepare() checks the sender), and it chains
  // onto the head: the log up to it is the primary's. (Prepares a primary sent before it
  // crashed cannot arrive after its restart: its connections died with it.)
  op_verified_ = log_.op();
  stats_.prepares_accepted += 1;
  verify_try();
}

// The oldest commit the primary announced (this view) beyond what is verified here: once the log
// reaches it, its checksum says whether the log up to there is the primary's.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::verify_note(u64 commit, u128 checksum) {
  TALLY_ASSERT(!primary());
  if (commit <= op_verified_) return;
  if (verify_op_ > op_verified_) return;  // One at a time, oldest first.
  verify_op_ = commit;
  verify_checksum_ = checksum;
  verify_try();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::verify_try() {
  if (verify_op_ <= op_verified_ || verify_op_ > log_.op()) return;
  const Header* ours = log_.header(verify_op_);
  if (ours != nullptr && ours->checksum == verify_checksum_) {
    op_verified_ = verify_op_;
    return;
  }
  // The primary committed another prepare at that op: the entry here is one the primary lost
  // before a restart. It never committed, so it goes, and repair fetches the right one.
  if (verify_op_ > commit_min_ && log_truncate_after(verify_op_ - 1)) {
    stats_.prepares_truncated += 1;
  }
  verify_op_ = 0;
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::prepare_ok_send(const Header& prepare) {
  TALLY_ASSERT(!primary());
  TALLY_ASSERT(prepare.command == Command::prepare && prepare.prepare.op > 0);
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
  bus_.send_to_replica(primary_index(view_), message);
  pool().unref(message);
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::on_commit(base::Message* message) {
  const Header& header = message->header();
  assert_from_primary(header);
  if (header.view > view_) view_adopt(header.view);
  if (header.view != view_ || primary()) return;
  const u64 commit = header.commit.commit;
  if (commit > commit_max_) commit_max_ = commit;
  verify_note(commit, header.commit.commit_checksum);
  repair_window(/*again=*/false);
  commit_journal();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::backup_tick() {
  TALLY_ASSERT(!primary() && status_ == ReplicaStatus::normal);
  if (!repair_timeout_.fired()) {
    // As soon as the head passes the last window (its repairs arrived), the next one goes out.
    repair_window(/*again=*/false);
    return;
  }
  repair_timeout_.reset();
  if (op_verified_ < log_.op() && commit_max_ > op_verified_) {
    // The log after a restart: the primary's copy of the head verifies all of it.
    repair_send(log_.op());
  }
  repair_window(/*again=*/true);
}

// Asks the primary for the ops after the head that it has committed, up to a pipeline's worth at
// a time (they may arrive in any order: the prepare cache holds them): at once when the head
// moved past the last window, and `again` (every repair timeout) while they do not arrive.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::repair_window(bool again) {
  TALLY_ASSERT(!primary());
  const u64 head = log_.op();
  if (commit_max_ <= head) return;
  const bool moved = head + 1 > repair_window_end_;
  if (!moved && !again) return;
  const u64 end = commit_max_ < head + pipeline_max ? commit_max_ : head + pipeline_max;
  for (u64 op = head + 1; op <= end; op += 1) {
    if (log_.cache_get(op) == nullptr) repair_send(op);
  }
  repair_window_end_ = end;
  repair_timeout_.reset();
}

// Asks for one op, at most once per repair timeout for the same op.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::repair_request(u64 op) {
  TALLY_ASSERT(op > 0);
  if (repair_requested_op_ == op && !repair_request_timeout_.fired()) return;
  repair_requested_op_ = op;
  repair_request_timeout_.reset();
  repair_send(op);
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::repair_send(u64 op) {
  TALLY_ASSERT(op > 0);
  // The primary has nobody to ask (its log is the authority while views do not change).
  if (primary()) return;
  base::Message* message = pool().get();
  if (message == nullptr) return;
  Header& header = message->header();
  frame_fill(header, Command::get_prepare);
  header.get_prepare.op = op;
  message_seal(message);
  stats_.repairs_requested += 1;
  bus_.send_to_replica(primary_index(view_), message);
  pool().unref(message);
}

// Answers with the prepare itself, from the cache or read from the WAL and verified, or not at
// all (the asker asks again).
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::on_get_prepare(base::Message* message) {
  const Header& header = message->header();
  TALLY_ASSERT(header.replica < options_.replica_count && header.replica != options_.replica);
  const u64 op = header.get_prepare.op;
  const Header* ours = log_.header(op);
  if (ours == nullptr || op > log_.op()) return;
  const u128 wanted = header.get_prepare.prepare_checksum;
  if (wanted != 0 && wanted != ours->checksum) return;
  if (base::Message* cached = log_.cache_get_entry(op); cached != nullptr) {
    bus_.send_to_replica(header.replica, cached);
    return;
  }
  if (repair_read_message_ != nullptr || log_.dirty(op)) return;  // One at a time; retried.
  repair_read_message_ = pool().get();
  if (repair_read_message_ == nullptr) return;
  repair_read_to_ = header.replica;
  log_.wal().read_prepare(&repair_read_, repair_read_callback, op, ours->checksum,
                          {repair_read_message_->buffer, message_size_max});
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::repair_read_callback(typename journal::Wal<S>::Read* read) {
  auto* self = static_cast<Replica*>(read->context);
  base::Message* message = self->repair_read_message_;
  TALLY_ASSERT(message != nullptr);
  self->repair_read_message_ = nullptr;
  if (read->status == journal::PrepareStatus::ok) {
    self->bus_.send_to_replica(self->repair_read_to_, message);
  }
  self->pool().unref(message);
}

// Removes every entry above `op` (never an executed one). False if a WAL write to one of them is
// in flight: the caller tries again later.
template <journal::Storage S, MessageBus Bus, Time Clock>
bool Replica<S, Bus, Clock>::log_truncate_after(u64 op) {
  TALLY_ASSERT(op >= commit_min_);
  if (!log_.truncate_after(op)) return false;
  TALLY_ASSERT(log_.op() == op);
  if (op_verified_ > op) op_verified_ = op;
  return true;
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::log_written_callback(void* context, const Header& header) {
  static_cast<Replica*>(context)->log_written(header);
}

// A prepare is durable in the WAL (and still the entry of its op): the primary counts its own
// acknowledgement, a backup sends its prepare_ok and appends what it held for want of room.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::log_written(const Header& header) {
  TALLY_ASSERT(header.command == Command::prepare);
  if (status_ != ReplicaStatus::normal) return;  // Opening writes nothing.
  if (primary()) {
    if (pipeline_.acknowledge(header.prepare.op, header.checksum, options_.replica)) {
      pipeline_commit();
    }
    return;
  }
  prepare_ok_send(header);
  held_prepares_append();
}

}  // namespace tally::vsr
