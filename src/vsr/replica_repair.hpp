// Replica, repair: the log is trusted from its head down, by hash chain, and whatever it lacks
// on the way down to what was executed is fetched from peers by checksum. Part of replica.hpp
// (its table of contents); included from there.
//
//   head ◄─parent─ op ◄─parent─ op ◄─ ? (break: missing, or another parent) ... executed op
//   chain_min() is the lowest op the chain from the head reaches. Below it, the op the chain
//   names (its parent's checksum) is asked for; an answer with exactly that checksum is taken,
//   replacing whatever the slot held. Entries the chain names but whose prepare is not durable
//   here (dirty) are asked for by their checksum too.
//
// A backup asks the primary of its view and one other replica in turn; a primary (a new one
// repairing before it starts its view, or one whose own WAL lost an entry) asks every other
// replica. Answers are prepares
// from any view: only the checksum decides, so an old or misdirected prepare cannot replace an
// entry of the log.
//
// Invariants: repair never moves the head and never touches an executed op (except to restore a
// damaged copy of that very prepare); an op executes only once the chain from the head reaches
// it and names the executed op before it as parent.
#pragma once

#include "src/vsr/replica.hpp"

namespace tally::vsr {

// Whether `op` (the next to execute) may execute: the chain from the head reaches it (`chained`
// is log_.chain_min(), which a caller executing many ops computes once), and it names the
// executed op as parent.
template <journal::Storage S, MessageBus Bus, Time Clock>
bool Replica<S, Bus, Clock>::chain_executable(u64 op, u64 chained) const {
  TALLY_ASSERT(op == commit_min_ + 1);
  TALLY_ASSERT_SLOW(chained == log_.chain_min());
  const Header* entry = log_.header(op);
  if (entry == nullptr || op > log_.op()) return false;
  const std::optional<u128> executed = log_.checksum_of(commit_min_);
  if (executed.has_value() && entry->prepare.parent != *executed) return false;
  return chained <= op;
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::repair_tick() {
  const bool repairing_primary =
      primary() && (status_ == ReplicaStatus::normal ||
                    (status_ == ReplicaStatus::view_change && log_chosen_));
  const bool repairing_backup = status_ == ReplicaStatus::normal && !primary();
  if (!repairing_primary && !repairing_backup) return;
  // A backup behind the primary's commit or the view's head asks for the headers after its
  // own head: they become its log's entries, and their prepares are fetched like any other.
  if (repairing_backup && std::max(commit_max_, view_head_) > log_.op() &&
      log_.op() < op_prepare_max()) {
    get_headers_send();
  }
  const u64 chained = log_.chain_min();
  if (chained > commit_min_ + 1) {
    const Header* lowest = log_.header(chained);
    TALLY_ASSERT(lowest != nullptr);
    const u64 wanted = chained - 1;
    if (wanted > commit_min_) {
      repair_send(wanted, lowest->prepare.parent);
      // The ops below it, whatever the peer holds (kept in the cache until the chain names
      // them), so that a long gap does not take a round trip per op.
      for (u64 op = wanted - 1; op > commit_min_ && wanted - op < pipeline_max; op -= 1) {
        if (log_.cache_get(op) == nullptr) repair_send(op, 0);
      }
    } else {
      // The chain names another op than the one executed here: the entries above it are not
      // this replica's log (they came before a break it could not see). They go, and come
      // again from the view's log.
      const std::optional<u128> executed = log_.checksum_of(commit_min_);
      if (executed.has_value() && *executed != lowest->prepare.parent &&
          log_truncate_after(commit_min_)) {
        stats_.chain_breaks_dropped += 1;
      }
    }
  }
  // Entries the chain names whose prepares are not durable here, nor being written.
  u32 requested = 0;
  for (u64 op = commit_min_ + 1; op <= log_.op() && requested < pipeline_max; op += 1) {
    const Header* entry = log_.header(op);
    if (entry == nullptr || !log_.dirty(op) || log_.write_queued(op)) continue;
    if (log_.wal().writing(log_.wal().slot_for_op(op))) continue;
    if (base::Message* cached = log_.cache_get_entry(op); cached != nullptr) {
      if (log_.put(cached)) continue;  // From memory: the primary's own prepares.
    }
    repair_send(op, entry->checksum);
    requested += 1;
  }
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::repair_send(u64 op, u128 checksum) {
  TALLY_ASSERT(op > 0);
  // Repair asks only for ops of the log between what was executed and the head.
  TALLY_ASSERT(op > commit_min_ && op <= log_.op());
  base::Message* message = pool().get();
  if (message == nullptr) return;
  Header& header = message->header();
  frame_fill(header, Command::get_prepare);
  header.get_prepare.op = op;
  header.get_prepare.prepare_checksum = checksum;
  message_seal(message);
  stats_.repairs_requested += 1;
  if (primary()) {
    for (u8 replica = 0; replica < options_.replica_count; replica += 1) {
      if (replica != options_.replica) bus_.send_to_replica(replica, message);
    }
  } else {
    // The primary, and one other replica in turn: the primary's own copy may be damaged (it
    // repairs only what it has not executed), and an answer is taken only by its checksum.
    const u8 primary_replica = primary_index(view_);
    TALLY_ASSERT_SLOW(valid_to(message, primary_replica));
    bus_.send_to_replica(primary_replica, message);
    if (options_.replica_count > 2) {
      repair_peer_next_ = static_cast<u8>((repair_peer_next_ + 1) % options_.replica_count);
      if (repair_peer_next_ == options_.replica || repair_peer_next_ == primary_replica) {
        repair_peer_next_ = static_cast<u8>((repair_peer_next_ + 1) % options_.replica_count);
      }
      if (repair_peer_next_ == options_.replica || repair_peer_next_ == primary_replica) {
        repair_peer_next_ = static_cast<u8>((repair_peer_next_ + 1) % options_.replica_count);
      }
      TALLY_ASSERT(repair_peer_next_ != options_.replica && repair_peer_next_ != primary_replica);
      bus_.send_to_replica(repair_peer_next_, message);
    }
  }
  pool().unref(message);
}

// A prepare that is not the primary's next for this backup: a repair answer, or a delayed or
// duplicated copy. Taken only with the checksum the log expects at its op.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::repair_accept(base::Message* message) {
  const Header& header = message->header();
  // Who takes repairs (on_prepare()): a normal replica, or a new primary once it chose its log.
  TALLY_ASSERT(status_ == ReplicaStatus::normal ||
               (status_ == ReplicaStatus::view_change && primary() && log_chosen_));
  const u64 op = header.prepare.op;
  if (op <= commit_min_) {
    // A damaged copy of an executed op, restored when the chain vouches for this one (a new
    // primary re-replicating its pipeline needs the acknowledgement).
    if (log_.restorable(op, header.checksum)) {
      log_.restore(message);
      stats_.prepares_repaired += 1;
    } else if (const Header* entry = log_.header(op);
               entry != nullptr && entry->checksum == header.checksum && !log_.dirty(op) &&
               !primary()) {
      prepare_ok_send(header);
    }
    return;
  }
  if (op > log_.op()) return;
  const u64 head = log_.op();
  const std::optional<u128> expected = log_.checksum_expected(op);
  const Header* entry = log_.header(op);
  const bool named = entry != nullptr && entry->checksum == header.checksum;
  if ((expected.has_value() && *expected == header.checksum) || named) {
    if (named && !log_.dirty(op)) {
      if (!primary()) prepare_ok_send(header);  // Held already: acknowledged again.
      return;
    }
    if (!log_.put(message)) {
      log_.cache_put(message);
      return;
    }
    TALLY_ASSERT(log_.op() == head);  // Repair never moves the head.
    stats_.prepares_repaired += 1;
    repair_fill_from_cache();
    return;
  }
  // Below a break: maybe needed once the chain reaches down to it.
  if (op + 1 < log_.chain_min()) log_.cache_put(message);
}

// Extends the chain from the head down with prepares the cache holds already.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::repair_fill_from_cache() {
  const u64 head = log_.op();
  for (u32 round = 0; round < prepare_cache_max; round += 1) {
    const u64 chained = log_.chain_min();
    if (chained <= commit_min_ + 1) break;
    const Header* lowest = log_.header(chained);
    if (lowest == nullptr) break;
    base::Message* cached = log_.cache_get(chained - 1);
    if (cached == nullptr || cached->header().checksum != lowest->prepare.parent) break;
    if (!log_.put(cached)) break;
    // The chain reaches one op further down.
    TALLY_ASSERT_SLOW(log_.chain_min() < chained);
    stats_.prepares_repaired += 1;
  }
  TALLY_ASSERT(log_.op() == head);  // Repair never moves the head.
}

// A prepare or header of this view is to replace the entry of an older view at `op`. The older
// log's entries above it go too (they are not the view's), unless one of them is of this view:
// then the view's log reaches above `op` here, and what this backup holds of it, perhaps
// acknowledged, stays (the chain from the head repairs any older entries in between). Dropping
// those made a backup that had acknowledged op 133 of view 6 nack it in the next view change,
// and a committed op was lost (simulator seed 836139501545133847). False if a WAL write in
// flight delays the truncation: the caller tries again later.
template <journal::Storage S, MessageBus Bus, Time Clock>
bool Replica<S, Bus, Clock>::log_replace_older(u64 op) {
  TALLY_ASSERT(op > commit_min_ && op <= log_.op());
  const Header* entry = log_.header(op);
  TALLY_ASSERT(entry != nullptr && entry->view < view_);
  for (u64 above = op + 1; above <= log_.op(); above += 1) {
    const Header* later = log_.header(above);
    TALLY_ASSERT(later == nullptr || later->view <= view_);
    if (later != nullptr && later->view == view_) return true;
  }
  if (!log_truncate_after(op - 1)) return false;
  stats_.prepares_truncated += 1;
  return true;
}

// Removes every entry above `op` (never an executed one). False if a WAL write to one of them is
// in flight: the caller tries again later.
// The head must be an entry: below a hole at `op`, the highest entry under it (the ops between
// hold nothing to remove) becomes the head. False too if that would reach below the executed op.
template <journal::Storage S, MessageBus Bus, Time Clock>
bool Replica<S, Bus, Clock>::log_truncate_after(u64 op) {
  TALLY_ASSERT(op >= commit_min_);
  TALLY_ASSERT(op <= log_.op());
  u64 head = op;
  while (head > log_.op_checkpoint() && log_.header(head) == nullptr) {
    if (head == commit_min_) return false;  // Its own entry is damaged: nothing to anchor on.
    head -= 1;
  }
  if (!log_.truncate_after(head)) return false;
  TALLY_ASSERT(log_.op() == head && head <= op);
  TALLY_ASSERT(head >= commit_min_);  // Never an executed op.
  return true;
}

// Answers with the prepare itself, from the cache or read from the WAL and verified, or not at
// all (the asker asks again). A checksum of 0 asks for whatever the log holds at the op.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::on_get_prepare(base::Message* message) {
  const Header& header = message->header();
  TALLY_ASSERT(header.replica < options_.replica_count && header.replica != options_.replica);
  const u64 op = header.get_prepare.op;
  const u128 wanted = header.get_prepare.prepare_checksum;
  if (base::Message* cached = log_.cache_get(op); cached != nullptr && wanted != 0 &&
                                                  cached->header().checksum == wanted) {
    bus_.send_to_replica(header.replica, cached);
    return;
  }
  const Header* ours = log_.header(op);
  if (ours == nullptr || op > log_.op()) return;
  if (wanted != 0 && wanted != ours->checksum) return;
  if (base::Message* cached = log_.cache_get_entry(op); cached != nullptr) {
    bus_.send_to_replica(header.replica, cached);
    return;
  }
  if (log_.dirty(op)) return;
  // A free read, unless as many are in flight already (the asker asks again). One at a time
  // keeps a replica catching up on real processes at 12-17 ops a second (each peer answers one
  // get_prepare per 100 ms repair round); more are held back for now (repair_reads_max).
  RepairRead* slot = nullptr;
  for (RepairRead& candidate : repair_reads_) {
    if (candidate.message == nullptr) {
      if (slot == nullptr) slot = &candidate;
    } else if (candidate.read.op == op) {
      return;  // One read per op: a second ask (the same round's, or the next) waits for it.
    }
  }
  if (slot == nullptr) return;
  slot->message = pool().get();
  if (slot->message == nullptr) return;
  slot->to = header.replica;
  log_.wal().read_prepare(&slot->read, repair_read_callback, op, ours->checksum,
                          {slot->message->buffer, message_size_max});
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::repair_read_callback(typename journal::Wal<S>::Read* read) {
  auto* slot = static_cast<RepairRead*>(read->context);
  Replica* self = slot->replica;
  TALLY_ASSERT(read == &slot->read);
  base::Message* message = slot->message;
  TALLY_ASSERT(message != nullptr);
  slot->message = nullptr;
  if (read->status == journal::PrepareStatus::ok) {
    // Verified by the WAL: the very prepare asked for.
    TALLY_ASSERT(message->header().prepare.op == read->op &&
                 message->header().checksum == read->checksum);
    self->bus_.send_to_replica(slot->to, message);
  }
  self->pool().unref(message);
}

// Asks the primary for the headers of the ops after the head, up to a pipeline's worth, up to
// the view's head or commit as known here.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::get_headers_send() {
  TALLY_ASSERT(status_ == ReplicaStatus::normal && !primary());
  u64 op_max = log_.op() + pipeline_max;
  op_max = std::min(op_max, std::max(commit_max_, view_head_));
  if (op_max > op_prepare_max()) op_max = op_prepare_max();
  if (op_max <= log_.op()) return;
  base::Message* message = pool().get();
  if (message == nullptr) return;
  Header& header = message->header();
  frame_fill(header, Command::get_headers);
  header.get_headers.op_min = log_.op() + 1;
  header.get_headers.op_max = op_max;
  // At most a pipeline's worth, as the primary's validation requires.
  TALLY_ASSERT(op_max - header.get_headers.op_min < journal::wal_write_count_max);
  message_seal(message);
  TALLY_ASSERT_SLOW(valid_to(message, primary_index(view_)));
  stats_.repairs_requested += 1;
  bus_.send_to_replica(primary_index(view_), message);
  pool().unref(message);
}

// The primary's answer: its log's headers of the range it holds, newest first, chained.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::on_get_headers(base::Message* message) {
  const Header& request = message->header();
  // validate_replica_message(): a range of at most a pipeline's worth, so that its headers fit
  // one message.
  TALLY_ASSERT(request.get_headers.op_min <= request.get_headers.op_max &&
               request.get_headers.op_max - request.get_headers.op_min <
                   journal::wal_write_count_max);
  if (!primary_normal() || request.view != view_) return;
  u64 newest = request.get_headers.op_max;
  if (newest > log_.op()) newest = log_.op();
  if (newest < request.get_headers.op_min) return;
  base::Message* reply = pool().get();
  if (reply == nullptr) return;
  u32 count = 0;
  const Header* newer = nullptr;
  for (u64 op = newest; op >= request.get_headers.op_min && op > 0; op -= 1) {
    const Header* entry = log_.header(op);
    if (entry == nullptr || (newer != nullptr && newer->prepare.parent != entry->checksum)) break;
    std::memcpy(reply->buffer + header_size + count * header_size, entry, header_size);
    count += 1;
    newer = entry;
  }
  if (count == 0) {
    pool().unref(reply);
    return;
  }
  TALLY_ASSERT(count <= journal::wal_write_count_max);
  Header& header = reply->header();
  frame_fill(header, Command::headers);
  header.size = header_size + count * header_size;
  message_seal(reply);
  bus_.send_to_replica(request.replica, reply);
  pool().unref(reply);
}

// Headers from the primary of this backup's view: its log, the authority for the view. They
// become this log's entries (their prepares fetched by checksum); an entry that differs, of an
// older view, goes with everything above it.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::on_headers(base::Message* message) {
  const Header& header = message->header();
  TALLY_ASSERT(header.command == Command::headers || header.command == Command::view);
  if (status_ != ReplicaStatus::normal || primary() || header.view != view_ ||
      header.replica != primary_index(view_)) {
    return;
  }
  const std::span<const std::byte> body = message->body();
  const std::span<const Header> headers{reinterpret_cast<const Header*>(body.data()),
                                        body.size() / header_size};
  // validate_view_headers(): a view's headers, newest first, no blanks.
  TALLY_ASSERT(!headers.empty() && headers.size() <= journal::view_headers_max);
  for (u64 index = headers.size(); index > 0; index -= 1) {
    const Header& entry_new = headers[index - 1];
    const u64 op = entry_new.prepare.op;
    if (op <= commit_min_) continue;
    if (op > op_prepare_max()) break;
    const Header* entry = log_.header(op);
    if (entry != nullptr && entry->checksum == entry_new.checksum) continue;
    // An entry of this view that differs cannot be (one prepare per view and op): not this
    // primary's headers. One of an older view is replaced (log_replace_older()).
    if (entry != nullptr && entry->view >= view_) return;
    if (entry != nullptr && op <= log_.op() && !log_replace_older(op)) return;
    if (!log_.install(entry_new)) return;
  }
  repair_tick();
}

}  // namespace tally::vsr
