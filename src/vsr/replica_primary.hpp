// Replica, the primary: requests (the §5.4 decision), preparing (op, timestamp, hash chain),
// acknowledgements and the commit number, commit heartbeats, retransmission, pulses. Part of
// replica.hpp (its table of contents); included from there.
//
// Invariants: only the primary of the current view prepares, in normal status, and only once it
// has executed its whole log since its view started (its sessions must know every request it
// answered); the pipeline holds the ops after commit_max up to the head, in order; an op is
// committed only with a quorum that includes the primary's own durable write; the primary never
// prepares beyond op_prepare_max (the WAL slot must be free of anything the checkpoint does not
// cover).
#pragma once

#include "src/vsr/replica.hpp"

namespace tally::vsr {

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::on_request(base::Message* message) {
  TALLY_ASSERT(message->header().command == Command::request);
  TALLY_ASSERT(opened());  // on_message() drops everything before.
  stats_.requests_received += 1;
  if (!primary_normal()) {
    // Clients find the primary from the view in replies; backups, and a replica in a view
    // change, stay silent (the client tries the others in turn).
    stats_.requests_dropped += 1;
    return;
  }
  TALLY_ASSERT(!syncing(), "a syncing replica never starts a view as primary");
  if (commit_min_ < op_at_open_) {
    // The log holds ops from before the view started, some acknowledged to clients already,
    // that are not executed yet: the sessions do not know them, so no request can be judged.
    stats_.requests_dropped += 1;
    return;
  }
  request_handle(message, /*from_queue=*/false);
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::request_handle(base::Message* message, bool from_queue) {
  TALLY_ASSERT(primary_normal());
  // request_queue_drain() takes a request from the queue only when there is room for it.
  TALLY_ASSERT(!from_queue || (!pipeline_.full() && log_.op() + 1 <= op_prepare_max()));
  const Header& header = message->header();
  const RequestDecision decision =
      request_decide(header, message->body(), sessions_,
                     RequestLimits{.batch_size_limit = batch_size_limit(),
                                   .view = view_,
                                   .commit_min = commit_min_});
  switch (decision.action) {
    case RequestAction::drop: stats_.requests_dropped += 1; return;
    case RequestAction::evict:
      stats_.requests_evicted += 1;
      eviction_send(header.request.client, decision.reason);
      return;
    case RequestAction::duplicate:
      TALLY_ASSERT(decision.session_index < sessions_.capacity());
      stats_.requests_duplicate += 1;
      reply_send(decision.session_index);
      return;
    case RequestAction::prepare: break;
  }
  // 10. Already being prepared or waiting: the reply will come. (A queued request has left the
  // queue before it gets here.)
  const u128 client = header.request.client;
  if (pipeline_.has_client(client) || request_queue_.has_client(client)) {
    stats_.requests_dropped += 1;
    return;
  }
  if (!from_queue &&
      (pipeline_.full() || log_.op() + 1 > op_prepare_max() || !request_queue_.empty())) {
    if (request_queue_.full()) {
      stats_.requests_dropped += 1;
      return;
    }
    request_queue_.push(message);
    return;
  }
  const Operation operation = header.request.operation;
  if (operation_is_state_machine(operation) &&
      !state_machine_.capacity_admits(operation, message->body(), pipeline_.reservation())) {
    // No room left in the ledger for the worst case of this request: it is not prepared. The
    // client retries; docs/vsr-protocol.md explains the limit.
    stats_.requests_capacity_dropped += 1;
    return;
  }
  prepare_start(client, header.checksum, header.request.request, header.release, operation,
                message->body());
}

// Prepares queued requests while the pipeline and the WAL have room.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::request_queue_drain() {
  TALLY_ASSERT(primary_normal());
  while (!request_queue_.empty() && !pipeline_.full() && log_.op() + 1 <= op_prepare_max()) {
    base::Message* message = request_queue_.pop();
    // At most one queued request per client (request_handle() checks before it queues).
    TALLY_ASSERT_SLOW(!request_queue_.has_client(message->header().request.client));
    request_handle(message, /*from_queue=*/true);
    pool().unref(message);
  }
}

// The operation's timestamp (§7.1): after the previous prepare's and the last commit's, at least
// the wall clock, plus one per event it creates.
template <journal::Storage S, MessageBus Bus, Time Clock>
u64 Replica<S, Bus, Clock>::timestamp_next(Operation operation, u32 events) {
  TALLY_ASSERT(primary());
  TALLY_ASSERT(operation != Operation::reserved && operation != Operation::root);
  u64 timestamp = prepare_timestamp_;
  const u64 commit_timestamp = state_machine_.commit_timestamp();
  if (timestamp < commit_timestamp) timestamp = commit_timestamp;
  timestamp += 1;
  const i64 now = time_.realtime_ns();
  if (now > 0 && static_cast<u64>(now) > timestamp) timestamp = static_cast<u64>(now);
  timestamp += events;
  TALLY_ASSERT(timestamp > prepare_timestamp_ && timestamp > log_.head_timestamp());
  prepare_timestamp_ = timestamp;
  return timestamp;
}

// The timestamps an operation consumes for its events (StateMachine::timestamp_event_count()):
// counted once per request, from its validated body.
template <journal::Storage S, MessageBus Bus, Time Clock>
u32 Replica<S, Bus, Clock>::events_of(Operation operation, std::span<const std::byte> body) {
  TALLY_ASSERT(operation != Operation::reserved && operation != Operation::root);
  TALLY_ASSERT(body.size() <= message_body_size_max);
  if (operation == Operation::pulse) {
    return state_machine::StateMachine::timestamp_event_count(Operation::state_machine_pulse,
                                                              {});
  }
  if (!operation_is_state_machine(operation)) return 0;
  return state_machine::StateMachine::timestamp_event_count(operation, body);
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::prepare_start(u128 client, u128 request_checksum, u32 request,
                                           u32 release, Operation operation,
                                           std::span<const std::byte> body) {
  TALLY_ASSERT(primary_normal() && !pipeline_.full() && log_.op() + 1 <= op_prepare_max());
  TALLY_ASSERT(body.size() <= batch_size_limit());
  // The fields a backup's validation requires of each operation (validate_prepare_operation()):
  // a pulse is the primary's own, anything else a client's numbered request (a register: 0).
  TALLY_ASSERT(operation == Operation::pulse ? client == 0 && request == 0 && body.empty()
                                             : client != 0);
  TALLY_ASSERT((operation == Operation::register_session) == (request == 0) ||
               operation == Operation::pulse);
  base::Message* message = pool().get();
  if (message == nullptr) {
    stats_.requests_dropped += 1;
    return;
  }
  const u32 events = events_of(operation, body);
  Header& header = message->header();
  header.cluster = options_.cluster;
  header.size = header_size + static_cast<u32>(body.size());
  header.view = view_;
  header.release = release;
  header.command = Command::prepare;
  header.replica = options_.replica;
  header.prepare.parent = log_.head_checksum();
  header.prepare.client = client;
  header.prepare.request_checksum = request_checksum;
  header.prepare.op = log_.op() + 1;
  header.prepare.commit = commit_max_;
  header.prepare.timestamp = timestamp_next(operation, events);
  header.prepare.request = request;
  header.prepare.operation = operation;
  // Known: a primary's durable checkpoint is one of the two that name ops it may prepare.
  const std::optional<u128> checkpoint_id = checkpoint_id_for_op(header.prepare.op);
  TALLY_ASSERT(checkpoint_id.has_value(), "op %llu, checkpoint %llu",
               static_cast<unsigned long long>(header.prepare.op),
               static_cast<unsigned long long>(checkpoint_op_durable()));
  header.prepare.checkpoint_id = *checkpoint_id;
  if (!body.empty()) std::memcpy(message->buffer + header_size, body.data(), body.size());
  set_checksum_body(header, message->body());
  set_checksum(header);
  message->pad_zero();

  // What every receiver checks first (validate_replica_message()): commit < op, a timestamp.
  TALLY_ASSERT(header.prepare.commit < header.prepare.op && header.prepare.timestamp != 0 &&
               header.prepare.checkpoint_id != 0);
  log_.append(message);
  pipeline_.push(message, 0, reservation_of(operation, events));
  pool().unref(message);  // The log and the pipeline hold their own references.
  // The pipeline ends at the log's head.
  TALLY_ASSERT(pipeline_.entry(pipeline_.count() - 1).op == log_.op());
  prepare_send_to_backups(pipeline_.entry(pipeline_.count() - 1));
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::prepare_send_to_backups(const Pipeline::Entry& entry) {
  TALLY_ASSERT(primary());
  TALLY_ASSERT(entry.prepare != nullptr && entry.prepare->header().prepare.op == entry.op);
  // Acknowledgements come from replicas of the cluster only.
  TALLY_ASSERT(entry.ok_mask < (1u << options_.replica_count), "ok_mask 0x%x", entry.ok_mask);
  // Nothing of view 0 goes out before the cluster's first op is durable here (log_written()
  // sends the pipeline then): a primary of view 0 that restarts with an empty log knows it sent
  // nothing, and keeps its role without a view change (replica_open.hpp), never preparing a
  // second op 1 or 2 (op 2 sent ahead of a lost op 1 was prepared again, differently: simulator
  // seed 4205303434196675207). Until the first checkpoint the head stays within the WAL, so
  // slot 1 is op 1's alone.
  if (view_ == 0 && log_.op_checkpoint() == 0 && log_.dirty(1)) return;
  for (u8 replica = 0; replica < options_.replica_count; replica += 1) {
    if (replica == options_.replica) continue;
    if ((entry.ok_mask & (1u << replica)) != 0) continue;
    bus_.send_to_replica(replica, entry.prepare);
  }
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::on_prepare_ok(base::Message* message) {
  const Header& header = message->header();
  TALLY_ASSERT(header.replica < options_.replica_count && header.replica != options_.replica);
  // Validated too: the op and checksum of an actual prepare.
  TALLY_ASSERT(header.prepare_ok.op > 0 && header.prepare_ok.prepare_checksum != 0);
  if (!primary_normal() || header.view != view_) return;
  if (!pipeline_.acknowledge(header.prepare_ok.op, header.prepare_ok.prepare_checksum,
                             header.replica)) {
    return;
  }
  pipeline_commit();
}

// Advances commit_max over the pipeline's prefix that has a quorum (pipeline.hpp), then executes
// what it can.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::pipeline_commit() {
  TALLY_ASSERT(primary_normal());
  const u64 commit = pipeline_.commit_prefix(commit_max_, options_.replica, quorum());
  TALLY_ASSERT(commit >= commit_max_ && commit <= log_.op());
  commit_max_ = commit;
  TALLY_ASSERT(commit_min_ <= commit_max_);
  commit_journal();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::primary_tick() {
  TALLY_ASSERT(primary_normal());
  // A normal primary's log reaches every op it knows committed, and it executes in order.
  TALLY_ASSERT(commit_min_ <= commit_max_ && commit_max_ <= log_.op());
  if (commit_heartbeat_timeout_.fired()) {
    commit_heartbeat_timeout_.reset();
    if (!solo()) commit_heartbeat_send();
  }
  if (prepare_retry_timeout_.fired()) {
    prepare_retry_timeout_.reset();
    for (u32 index = 0; index < pipeline_.count(); index += 1) {
      prepare_send_to_backups(pipeline_.entry(index));
    }
  }
  if (pulse_timeout_.fired()) {
    pulse_timeout_.reset();
    pulse_maybe();
  }
  request_queue_drain();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::pulse_maybe() {
  TALLY_ASSERT(primary_normal());
  if (pipeline_.full() || log_.op() + 1 > op_prepare_max()) return;
  if (pipeline_.has_pulse()) return;
  const i64 now = time_.realtime_ns();
  if (now <= 0 || !state_machine_.pulse_needed(static_cast<u64>(now))) return;
  prepare_start(0, 0, 0, release_server, Operation::pulse, {});
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::commit_heartbeat_send() {
  TALLY_ASSERT(primary() && !solo());
  base::Message* message = pool().get();
  if (message == nullptr) return;
  Header& header = message->header();
  frame_fill(header, Command::commit);
  header.commit.commit = commit_max_;
  const std::optional<u128> checksum = checksum_of(commit_max_);
  header.commit.commit_checksum = checksum.value_or(0);
  header.commit.checkpoint_op = log_.op_checkpoint();
  header.commit.checkpoint_id = checkpoint_id_durable();
  TALLY_ASSERT(header.commit.checkpoint_id != 0);  // A checksum: what backups validate.
  // What backups validate (checkpoint_op <= commit): the checkpoint is of an executed op.
  TALLY_ASSERT(header.commit.checkpoint_op <= commit_min_ && commit_min_ <= commit_max_);
  message_seal(message);
  for (u8 replica = 0; replica < options_.replica_count; replica += 1) {
    if (replica != options_.replica) bus_.send_to_replica(replica, message);
  }
  pool().unref(message);
}

}  // namespace tally::vsr
