// Replica, view changes: votes to leave a view (exit_view), logs for the next view's primary
// (join_view), the new primary's choice of log and its start_view (view), and answers to
// get_view. Part of replica.hpp (its table of contents); included from there.
//
//   normal backup: no prepare or commit for normal_heartbeat_ticks ──> exit_view(v) to all
//   any replica: a quorum of exit_view(v) ──> view change to v + 1: view, DVC headers durable,
//     then join_view(v + 1) to primary(v + 1)
//   primary(v + 1): a view-change quorum of join_views (its own among them) ──> log_choose()
//     ──> install the chosen headers, repair the prepares it lacks ──> log_view = view, SV
//     headers durable ──> normal; start_view to every backup; the pipeline again
//   backup: start_view ──> install its headers, drop what is above its head ──> durable ──>
//     normal; acknowledge what it holds
//   a view change that does not finish in view_change_status_ticks ──> exit_view(v + 1): the
//     next primary gets its turn.
//
// Invariants: view and log_view never go down; a replica sends a view's messages only once the
// view is durable, and its join_view carries exactly its durable headers; only primary(v)
// chooses v's log, once, from join_views of v; a backup follows a new view only through that
// view's start_view; no replica acknowledges a prepare while its view change is unfinished.
#pragma once

#include "src/vsr/replica.hpp"

namespace tally::vsr {

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::view_change_tick() {
  TALLY_ASSERT(status_ == ReplicaStatus::view_change ||
               status_ == ReplicaStatus::recovering_head);
  TALLY_ASSERT(!solo());  // A single replica is always normal.
  if (status_ == ReplicaStatus::recovering_head) {
    if (get_view_timeout_.fired()) {
      get_view_timeout_.reset();
      get_view_send(view_);
      if (get_view_asked_ > view_) get_view_send(get_view_asked_);
    }
    return;
  }
  if (view_change_status_timeout_.fired()) {
    // This view change has not finished: vote to leave its view, so that the next primary gets
    // its turn. Each failed view waits longer (with jitter): a replica whose disk is slow, or
    // two candidates that keep meeting, get the time they need.
    view_change_status_timeout_.backoff(prng_);
    vote_to_leave_view();
  }
  if (vote_timeout_.fired()) {
    vote_timeout_.reset();
    if ((votes_to_leave_ & (1u << options_.replica)) != 0) vote_to_leave_view();
  }
  if (join_view_timeout_.fired()) {
    join_view_timeout_.reset();
    join_view_send();
  }
  if (get_view_timeout_.fired()) {
    get_view_timeout_.reset();
    // The start_view may have been lost, or the view started without this replica; or a later
    // view it heard of has started (which may also be one nobody started: both are asked).
    if (!primary()) get_view_send(view_);
    if (get_view_asked_ > view_) get_view_send(get_view_asked_);
  }
  if (primary() && log_chosen_) primary_view_start_try();
}

// Votes to leave the current view: this replica's own vote, sent to every other replica once
// the view is durable here, counted with the others'.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::vote_to_leave_view() {
  TALLY_ASSERT(!solo());
  TALLY_ASSERT(status_ == ReplicaStatus::normal || status_ == ReplicaStatus::view_change);
  votes_to_leave_ |= 1u << options_.replica;
  if (!vote_timeout_.ticking()) vote_timeout_.start();
  if (view_durable() == view_) {
    base::Message* message = pool().get();
    if (message != nullptr) {
      frame_fill(message->header(), Command::exit_view);
      message_seal(message);
      for (u8 replica = 0; replica < options_.replica_count; replica += 1) {
        if (replica == options_.replica) continue;
        TALLY_ASSERT_SLOW(valid_to(message, replica));
        bus_.send_to_replica(replica, message);
      }
      pool().unref(message);
    }
  }
  if (static_cast<u32>(std::popcount(votes_to_leave_)) >=
      quorums(options_.replica_count).view_change) {
    transition_to_view_change(view_ + 1);
  }
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::on_exit_view(base::Message* message) {
  const Header& header = message->header();
  TALLY_ASSERT(header.replica != options_.replica);
  // validate_replica_message(): a replica of the cluster, so its vote is a bit of the mask.
  TALLY_ASSERT(header.replica < options_.replica_count);
  if (!view_jump(header)) return;
  TALLY_ASSERT(header.view == view_);
  votes_to_leave_ |= 1u << header.replica;
  if (static_cast<u32>(std::popcount(votes_to_leave_)) >=
      quorums(options_.replica_count).view_change) {
    transition_to_view_change(view_ + 1);
  }
}

// A vote, a join_view of a later view than this replica's: the cluster has moved on, and this
// replica joins that view change (a replica recovering its head only asks for the view).
// False if the message's view is older than this replica's, or it cannot act on it now.
template <journal::Storage S, MessageBus Bus, Time Clock>
bool Replica<S, Bus, Clock>::view_jump(const Header& header) {
  TALLY_ASSERT(header.command == Command::exit_view || header.command == Command::join_view);
  if (header.view < view_) return false;
  if (header.view == view_) return true;
  // A replica recovering its head joins too: its do_view_change says its head is uncertain, so
  // that nothing above it counts as nacked (log_choose()).
  transition_to_view_change(header.view);
  TALLY_ASSERT(view_ == header.view);
  TALLY_ASSERT(status_ == ReplicaStatus::view_change ||
               status_ == ReplicaStatus::recovering_head);
  return true;
}

// Leaves the current view (or a view change that did not finish) for `view`. A replica that
// was normal in its view takes its log's newest headers as its do_view_change headers; one that
// was already in a view change keeps the durable ones. Both are written with the new view
// before its join_view goes out (superblock_view_durable()).
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::transition_to_view_change(u32 view) {
  TALLY_ASSERT(!solo());
  TALLY_ASSERT(view > view_);
  TALLY_ASSERT(status_ != ReplicaStatus::init && status_ != ReplicaStatus::opening);
  if (log_view_ == view_) {
    if (log_.header(log_.op()) == nullptr) {
      // Its head's own header is lost (the checkpoint's slot, damaged): it cannot describe its
      // log, so it takes no part; a view's start_view gives it one.
      view_ = view;
      status_ = ReplicaStatus::recovering_head;
      if (!get_view_timeout_.ticking()) get_view_timeout_.start();
      superblock_write_view();
      return;
    }
    // A backup a checkpoint behind may hold less of the view's log than its start_view named
    // (view_install()): those headers lead its do_view_change, so that it never names a head
    // below the view's (seed 1753375392964143806: the only replica of its log_view in the next
    // view change, it ended the log below an op committed before that view started).
    view_headers_ = view_headers_from_log(commit_max_, &view_headers_);
  }
  view_ = view;
  status_ = ReplicaStatus::view_change;
  stats_.view_changes += 1;
  votes_to_leave_ = 0;
  join_views_release();
  log_chosen_ = false;
  view_head_ = 0;
  pipeline_.release();
  request_queue_.release();
  for (Timeout* timeout : {&commit_heartbeat_timeout_, &prepare_retry_timeout_, &pulse_timeout_,
                           &normal_heartbeat_timeout_, &vote_timeout_}) {
    timeout->stop();
  }
  for (Timeout* timeout : {&join_view_timeout_, &get_view_timeout_}) timeout->start();
  // The status timeout keeps its backoff across the views of one view change.
  if (view_change_status_timeout_.ticking()) {
    view_change_status_timeout_.reset();
  } else {
    view_change_status_timeout_.start();
  }
  // In the view change to `view`, with the log of an older one.
  TALLY_ASSERT(view_ == view && log_view_ < view_);
  superblock_write_view();
}

// The newest headers of the log, from the head down to the first op at or below `commit` (at
// most view_headers_max): an op without a header, or whose header does not chain to the one
// above it, is a blank (this replica does not hold that op of the log). `view_log`, if given,
// is the same log as its start_view named it: where that reaches above the log's head, its
// headers lead (ops this replica never held, so never acknowledged: join_view_send() nacks
// them).
template <journal::Storage S, MessageBus Bus, Time Clock>
journal::ViewHeaders Replica<S, Bus, Clock>::view_headers_from_log(
    u64 commit, const journal::ViewHeaders* view_log) const {
  journal::ViewHeaders headers;
  const Header* newer = nullptr;
  u64 head = log_.op();
  if (view_log != nullptr && view_log->count > 0 && view_log->headers[0].prepare.op > head) {
    head = view_log->headers[0].prepare.op;
  }
  for (u64 op = head;; op -= 1) {
    const Header* entry = log_.header(op);
    if (op > log_.op()) {
      TALLY_ASSERT(view_log != nullptr && head > log_.op());
      const u64 index = head - op;
      entry = index < view_log->count && !Log<S>::header_blank(view_log->headers[index])
                  ? &view_log->headers[index]
                  : nullptr;
    }
    if (entry != nullptr && newer != nullptr && newer->prepare.parent != entry->checksum) {
      entry = nullptr;
    }
    Header& header = headers.headers[headers.count];
    if (entry != nullptr) {
      header = *entry;
    } else {
      header = Header{};
      header.command = Command::prepare;
      header.prepare.op = op;
      // No header because its slot is damaged: it may have held this op, acknowledged.
      const journal::Wal<S>& wal = log_.wal();
      if (op > 0 && log_.header(op) == nullptr && wal.faulty(wal.slot_for_op(op))) {
        headers.blanks_unknown |= static_cast<u16>(1u << headers.count);
      }
    }
    newer = entry;
    headers.count += 1;
    if (op <= commit || op == 0 || headers.count == journal::view_headers_max) break;
  }
  TALLY_ASSERT(headers.count >= 1 && !Log<S>::header_blank(headers.headers[0]));
  TALLY_ASSERT(headers.headers[0].prepare.op == head);  // Headed by the head.
  // Durable with them: a restart in the view change must still say its head is uncertain.
  headers.head_uncertain = head_uncertain_;
  return headers;
}

// This replica's log for the view change: its durable headers, with what it holds of each.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::join_view_send() {
  if (status_ != ReplicaStatus::view_change || log_view_ >= view_) return;
  // A syncing replica stays out of view changes: it could not start a view as primary, and
  // the log it would describe is not one it has executed up to. (Without it, a view-change
  // quorum of the others still includes a holder of every committed op.) One repairing its
  // own checkpoint describes its own log, as a backup only (sync_repairing_).
  if (syncing() && !(sync_repairing_ && !primary())) return;
  if (view_durable() != view_ || log_view_durable() != log_view_) return;
  if (view_headers_.count == 0) return;  // No log to describe (its head's header was lost).
  // Only durable headers go out: a replica that has just taken new ones (after a state sync)
  // sends them once written.
  if (!(view_headers_ == journal::superblock_view_headers(superblock_.working()))) return;
  base::Message* message = pool().get();
  if (message == nullptr) return;
  Header& header = message->header();
  frame_fill(header, Command::join_view);
  const journal::Wal<S>& wal = log_.wal();
  u16 nacks = 0;
  u16 present = 0;
  for (u32 index = 0; index < view_headers_.count; index += 1) {
    const Header& view_header = view_headers_.headers[index];
    const u64 op = view_header.prepare.op;
    const Header* entry = log_.header(op);
    const bool same = !Log<S>::header_blank(view_header) && entry != nullptr &&
                      entry->checksum == view_header.checksum;
    if (same && !log_.dirty(op)) present |= static_cast<u16>(1u << index);
    // Never a nack for a damaged slot: it may hold this very prepare, acknowledged; nor for a
    // blank taken while its slot was damaged, though repair may have made the slot whole
    // since (a nack then let a view change truncate committed ops: found by the simulator).
    const bool faulty = op > 0 && wal.faulty(wal.slot_for_op(op));
    const bool unknown = ((u32{view_headers_.blanks_unknown} >> index) & 1u) != 0;
    if (!faulty && !unknown && (!same || log_.dirty(op))) {
      nacks |= static_cast<u16>(1u << index);
    }
  }
  header.join_view.op = view_headers_.headers[0].prepare.op;
  header.join_view.commit_min = commit_min_;
  header.join_view.checkpoint_op = log_.op_checkpoint();
  header.join_view.log_view = log_view_;
  header.join_view.nack_bitset = nacks;
  header.join_view.present_bitset = present;
  header.join_view.head_uncertain = head_uncertain_ ? 1 : 0;
  // What the new primary's validation requires of the fields this replica's state gives.
  TALLY_ASSERT(header.join_view.checkpoint_op <= header.join_view.commit_min &&
                   header.join_view.commit_min <= header.join_view.op,
               "replica %u view %u log_view %u: checkpoint %llu, commit_min %llu, op %llu, "
               "head %llu, headers %u",
               options_.replica, view_, log_view_,
               static_cast<unsigned long long>(header.join_view.checkpoint_op),
               static_cast<unsigned long long>(header.join_view.commit_min),
               static_cast<unsigned long long>(header.join_view.op),
               static_cast<unsigned long long>(log_.op()), view_headers_.count);
  TALLY_ASSERT(view_headers_.count <= journal::view_headers_max);
  header.size = header_size + view_headers_.count * header_size;
  std::memcpy(message->buffer + header_size, view_headers_.headers.data(),
              view_headers_.count * header_size);
  message_seal(message);
  if (primary()) {
    if (!log_chosen_) join_view_store(message);
  } else {
    bus_.send_to_replica(primary_index(view_), message);
  }
  pool().unref(message);
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::on_join_view(base::Message* message) {
  const Header& header = message->header();
  // validate_replica_message(): the sender's log is of an older view (log_choose() ranks them).
  TALLY_ASSERT(header.join_view.log_view < header.view);
  if (!view_jump(header)) return;
  TALLY_ASSERT(header.view == view_);
  if (status_ != ReplicaStatus::view_change || !primary() || log_chosen_) return;
  if (syncing()) return;  // Not a primary's state: the view change moves on without it.
  join_view_store(message);
}

// Keeps one join_view per replica (the latest), and chooses the log once a view-change quorum,
// this replica's own among them, is in.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::join_view_store(base::Message* message) {
  const Header& header = message->header();
  TALLY_ASSERT(header.command == Command::join_view && header.view == view_);
  TALLY_ASSERT(status_ == ReplicaStatus::view_change && primary() && !log_chosen_);
  // validate_replica_message() (or this replica's own): an index into join_views_.
  TALLY_ASSERT(header.replica < options_.replica_count);
  base::Message*& slot = join_views_[header.replica];
  if (slot != nullptr) pool().unref(slot);
  slot = pool().ref(message);
  log_choose_and_install();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::join_views_release() {
  for (base::Message*& slot : join_views_) {
    if (slot == nullptr) continue;
    TALLY_ASSERT(slot->header().command == Command::join_view);
    pool().unref(slot);
    slot = nullptr;
  }
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::log_choose_and_install() {
  TALLY_ASSERT(status_ == ReplicaStatus::view_change && primary() && !log_chosen_);
  if (join_views_[options_.replica] == nullptr) return;  // Its own log counts first.
  DoViewChange dvcs[replicas_max];
  u32 count = 0;
  for (u8 replica = 0; replica < options_.replica_count; replica += 1) {
    const base::Message* join_view = join_views_[replica];
    if (join_view == nullptr) continue;
    const Header& header = join_view->header();
    // Kept per sender, of this view only (every transition clears them).
    TALLY_ASSERT(header.replica == replica && header.view == view_);
    const std::span<const std::byte> body = join_view->body();
    dvcs[count] = DoViewChange{
        .replica = replica,
        .log_view = header.join_view.log_view,
        .op = header.join_view.op,
        .commit_min = header.join_view.commit_min,
        .nack_bitset = header.join_view.nack_bitset,
        .present_bitset = header.join_view.present_bitset,
        .head_uncertain = header.join_view.head_uncertain != 0,
        .headers = {reinterpret_cast<const Header*>(body.data()), body.size() / header_size},
    };
    count += 1;
  }
  const Quorums quorum = quorums(options_.replica_count);
  if (count < quorum.view_change) return;
  const LogDecision decision =
      log_choose({dvcs, count}, options_.replica_count, quorum.nack);
  if (decision.choice != LogChoice::install) return;
  if (decision.head > log_.op_max() || decision.commit < commit_min_) {
    // A log this replica's WAL cannot hold (it is a checkpoint behind: it needs state sync): it
    // lets the next primary have its turn when this view change times out.
    return;
  }
  if (prepare_timestamp_ < decision.timestamp_max) prepare_timestamp_ = decision.timestamp_max;
  // The chosen headers replace what differs (oldest first); what is above the head goes.
  for (u32 index = decision.header_count; index > 0; index -= 1) {
    const Header& chosen = decision.headers[index - 1];
    if (chosen.prepare.op <= commit_min_) continue;  // Executed: the committed one already.
    if (!log_.install(chosen)) return;  // A write in flight: next tick.
  }
  if (log_.op() > decision.head && !log_truncate_after(decision.head)) return;
  if (decision.commit > commit_max_) commit_max_ = decision.commit;
  TALLY_ASSERT(log_.op() == decision.head || log_.op() < decision.commit);
  view_head_ = decision.head;
  log_chosen_ = true;
  repair_tick();
  primary_view_start_try();
}

// The new primary starts its view once its log is whole: the hash chain from the head reaches
// what it executed, every prepare from there up is durable here, and the uncommitted ones are
// in memory for the pipeline. Then log_view = view with the start_view headers, durable before
// anything of the view goes out (superblock_view_durable()).
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::primary_view_start_try() {
  if (status_ != ReplicaStatus::view_change || !primary() || !log_chosen_) return;
  if (log_view_ == view_) return;  // Being written.
  if (log_.op() != view_head_) return;
  if (log_.op() > commit_min_ && !chain_executable(commit_min_ + 1)) return;
  for (u64 op = commit_min_ + 1; op <= log_.op(); op += 1) {
    if (log_.dirty(op)) return;
  }
  // The pipeline: the ops after commit_max, from memory or read back into the cache. They fit:
  // the chosen commit is at least the highest head less a pipeline (log_choose()).
  TALLY_ASSERT(pipeline_.empty());
  TALLY_ASSERT(log_.op() <= commit_max_ + pipeline_max);
  for (u64 op = commit_max_ + 1; op <= log_.op(); op += 1) {
    if (log_.cache_get_entry(op) == nullptr) {
      if (commit_read_message_ == nullptr) commit_read_start(op, commit_read_callback);
      return;
    }
  }
  for (u64 op = commit_max_ + 1; op <= log_.op(); op += 1) {
    base::Message* prepare = log_.cache_get_entry(op);
    const Operation operation = prepare->header().prepare.operation;
    pipeline_.push(prepare, 1u << options_.replica,
                   reservation_of(operation, events_of(operation, prepare->body())));
  }
  // Starting a view as its primary: never while syncing (it holds no state of commit_min).
  TALLY_ASSERT(!syncing());
  head_uncertain_ = false;  // Its log is the view's now.
  view_headers_ = view_headers_from_log(commit_max_);
  log_view_ = view_;
  superblock_write_view();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::primary_view_started() {
  TALLY_ASSERT(status_ == ReplicaStatus::view_change && primary());
  TALLY_ASSERT(log_view_ == view_ && log_view_durable() == view_);
  TALLY_ASSERT(log_chosen_);  // From the log it chose.
  status_ = ReplicaStatus::normal;
  stats_.views_started += 1;
  votes_to_leave_ = 0;
  join_views_release();
  log_chosen_ = false;
  // Requests wait until every op of the log has executed: the sessions must know them.
  op_at_open_ = log_.op();
  for (Timeout* timeout : {&vote_timeout_, &join_view_timeout_, &get_view_timeout_,
                           &view_change_status_timeout_}) {
    timeout->stop();
  }
  for (Timeout* timeout : {&commit_heartbeat_timeout_, &prepare_retry_timeout_, &pulse_timeout_}) {
    timeout->start();
  }
  for (u8 replica = 0; replica < options_.replica_count; replica += 1) {
    if (replica != options_.replica) view_send(replica, 0);
  }
  for (u32 index = 0; index < pipeline_.count(); index += 1) {
    prepare_send_to_backups(pipeline_.entry(index));
  }
  pipeline_commit();
}

// The view's log as its primary holds it now: the head and the ops down to the committed one.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::view_send(u8 replica, u128 nonce) {
  TALLY_ASSERT(primary_normal() && replica != options_.replica);
  TALLY_ASSERT(view_durable() == view_ && log_view_durable() == view_);
  const journal::ViewHeaders headers = view_headers_from_log(commit_max_);
  for (u32 index = 0; index < headers.count; index += 1) {
    if (Log<S>::header_blank(headers.headers[index])) return;  // Not whole: repair first.
  }
  base::Message* message = pool().get();
  if (message == nullptr) return;
  Header& header = message->header();
  frame_fill(header, Command::view);
  header.view_command.nonce = nonce;
  header.view_command.op = log_.op();
  header.view_command.commit_max = commit_max_;
  header.view_command.checkpoint_op = log_.op_checkpoint();
  TALLY_ASSERT(header.view_command.checkpoint_op <= header.view_command.commit_max);
  header.size = header_size + headers.count * header_size;
  std::memcpy(message->buffer + header_size, headers.headers.data(),
              headers.count * header_size);
  message_seal(message);
  bus_.send_to_replica(replica, message);
  pool().unref(message);
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::get_view_send(u32 view) {
  TALLY_ASSERT(view >= view_);
  if (primary_index(view) == options_.replica) return;
  if (view_durable() != view_) return;
  base::Message* message = pool().get();
  if (message == nullptr) return;
  Header& header = message->header();
  frame_fill(header, Command::get_view);
  header.view = view;  // The view asked about, which may be ahead of this replica's.
  TALLY_ASSERT(nonce_ != 0);  // Set at open: answers to this run carry it.
  header.get_view.nonce = nonce_;
  message_seal(message);
  TALLY_ASSERT_SLOW(valid_to(message, primary_index(view)));
  bus_.send_to_replica(primary_index(view), message);
  pool().unref(message);
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::on_get_view(base::Message* message) {
  const Header& header = message->header();
  // validate_replica_message(): nonzero, so that the answer is told from a start_view.
  TALLY_ASSERT(header.get_view.nonce != 0);
  if (header.view != view_ || !primary_normal()) return;
  view_send(header.replica, header.get_view.nonce);
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::on_view(base::Message* message) {
  const Header& header = message->header();
  TALLY_ASSERT(header.replica == primary_index(header.view) && header.replica != options_.replica);
  // validate_replica_message(): the fields view_install() takes are in order.
  TALLY_ASSERT(header.view_command.checkpoint_op <= header.view_command.commit_max &&
               header.view_command.commit_max <= header.view_command.op);
  bool accept = false;
  switch (status_) {
    case ReplicaStatus::recovering_head:
      // Only a view it never saw, or an answer to this run's own get_view: a start_view sent
      // before its crash may not cover what it acknowledged since.
      accept = header.view > view_ || header.view_command.nonce == nonce_;
      break;
    case ReplicaStatus::view_change:
      accept = header.view > view_ || (header.view == view_ && !primary());
      break;
    case ReplicaStatus::normal:
      // A later view, or this view's log ahead of this replica's (catching up).
      accept = header.view > view_ ||
               (header.view == view_ && !primary() && header.view_command.op > log_.op());
      break;
    case ReplicaStatus::init:
    case ReplicaStatus::opening: TALLY_ASSERT(false); break;
  }
  if (!accept || header.view < view_) return;
  if (status_ == ReplicaStatus::view_change && header.view == view_ && log_view_ == view_) {
    return;  // Installed already, being written.
  }
  if (status_ == ReplicaStatus::normal && header.view == log_view_) {
    // Catching up in its own view: the headers above its head become entries, nothing it holds
    // (and may have acknowledged in this view) is dropped.
    view_head_ = std::max(view_head_, header.view_command.op);
    on_headers(message);
    return;
  }
  view_install(message);
}

// A backup takes the view's log from its start_view: the headers replace what differs, what is
// above the head goes, and what it lacks it repairs. Normal once durable.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::view_install(base::Message* message) {
  const Header& header = message->header();
  const std::span<const std::byte> body = message->body();
  const std::span<const Header> headers{reinterpret_cast<const Header*>(body.data()),
                                        body.size() / header_size};
  TALLY_ASSERT(!headers.empty() && headers[0].prepare.op == header.view_command.op);
  // validate_view_headers(): they fit the view headers kept below.
  TALLY_ASSERT(headers.size() <= journal::view_headers_max);
  // on_view(): a view at least this replica's, from its primary (views never go down).
  TALLY_ASSERT(header.view >= view_ && header.replica == primary_index(header.view));
  if (header.view_command.op < commit_min_) return;  // Behind what this replica executed.
  for (const Header& view_header : headers) {
    const u64 op = view_header.prepare.op;
    if (op > commit_min_) continue;
    const std::optional<u128> executed = log_.checksum_of(op);
    if (executed.has_value() && *executed != view_header.checksum) {
      stats_.messages_invalid += 1;  // Not the log this replica executed: not its cluster's.
      return;
    }
  }
  // The headers this replica's WAL can hold (a replica a checkpoint behind takes none: its head
  // is then its executed op, and it catches up from there with get_headers).
  u32 skipped = 0;
  while (skipped < headers.size() && headers[skipped].prepare.op > log_.op_max()) skipped += 1;
  const std::span<const Header> held = headers.subspan(skipped);
  for (u64 index = held.size(); index > 0; index -= 1) {
    const Header& view_header = held[index - 1];
    if (view_header.prepare.op <= commit_min_) continue;
    if (!log_.install(view_header)) return;  // A write in flight: the start_view comes again.
  }
  const u64 head = held.empty() || held[0].prepare.op < commit_min_ ? commit_min_
                                                                     : held[0].prepare.op;
  if (log_.header(head) == nullptr && head != log_.op_checkpoint()) return;
  if (log_.op() > head && !log_truncate_after(head)) return;
  TALLY_ASSERT(log_.op() == head);
  view_ = header.view;
  log_view_ = header.view;
  view_head_ = header.view_command.op;  // Above `head` where the WAL cannot hold it yet.
  head_uncertain_ = false;  // The view's log says where the head is.
  // All of them, the ones its WAL cannot hold yet too: they name the view's head, which its
  // do_view_change must reach (transition_to_view_change()).
  view_headers_.count = 0;
  view_headers_.blanks_unknown = 0;  // A start_view's headers have no blanks.
  view_headers_.head_uncertain = false;
  for (const Header& view_header : headers) {
    view_headers_.headers[view_headers_.count] = view_header;
    view_headers_.count += 1;
  }
  if (header.view_command.commit_max > commit_max_) commit_max_ = header.view_command.commit_max;
  // State sync's trigger and target (replica_sync.hpp): the view's head and checkpoint.
  if (header.view_command.op > op_seen_max_) op_seen_max_ = header.view_command.op;
  primary_checkpoint_op_ = header.view_command.checkpoint_op;
  status_ = ReplicaStatus::view_change;  // Until the view is durable here.
  votes_to_leave_ = 0;
  join_views_release();
  log_chosen_ = false;
  pipeline_.release();
  request_queue_.release();
  for (Timeout* timeout : {&commit_heartbeat_timeout_, &prepare_retry_timeout_, &pulse_timeout_,
                           &normal_heartbeat_timeout_, &vote_timeout_}) {
    timeout->stop();
  }
  superblock_write_view();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::backup_view_started() {
  TALLY_ASSERT(status_ == ReplicaStatus::view_change && !primary());
  TALLY_ASSERT(log_view_ == view_ && log_view_durable() == view_);
  // Its head is the view's (view_install()), and it prepares nothing.
  TALLY_ASSERT(!head_uncertain_ && pipeline_.empty() && request_queue_.empty());
  status_ = ReplicaStatus::normal;
  for (Timeout* timeout : {&join_view_timeout_, &get_view_timeout_,
                           &view_change_status_timeout_, &vote_timeout_}) {
    timeout->stop();
  }
  normal_heartbeat_timeout_.start();
  // What it holds of the new primary's pipeline, acknowledged at once.
  for (u64 op = commit_max_ + 1; op <= log_.op(); op += 1) {
    const Header* entry = log_.header(op);
    if (entry != nullptr && !log_.dirty(op)) prepare_ok_send(*entry);
  }
  commit_journal();
}

// A superblock write has completed: what waited for the view to be durable goes on.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::superblock_view_durable() {
  if (status_ != ReplicaStatus::view_change || view_durable() != view_) return;
  TALLY_ASSERT(!solo());  // A single replica is always normal.
  if (log_view_ < view_) {
    join_view_send();
    if ((votes_to_leave_ & (1u << options_.replica)) != 0) vote_to_leave_view();
    return;
  }
  if (log_view_durable() != view_) return;
  if (primary()) {
    primary_view_started();
  } else {
    backup_view_started();
  }
}

}  // namespace tally::vsr
