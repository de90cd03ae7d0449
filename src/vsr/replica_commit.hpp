// Replica, committing: executing committed ops in op order on every replica (the state machine,
// the client sessions and their replies), answering clients, and checkpoints. Part of
// replica.hpp (its table of contents); included from there.
//
// Invariants: ops execute one at a time in op order, only up to commit_max and only where the
// hash chain from the head vouches for them (chain_executable()); every replica and every
// replay builds the same reply bytes for an op (they come from the prepare only); execution
// pauses while a checkpoint is written, and a checkpoint is taken at exactly op_checkpoint +
// checkpoint_interval.
#pragma once

#include "src/vsr/replica.hpp"

namespace tally::vsr {

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::commit_journal() {
  if (status_ != ReplicaStatus::normal) return;
  if (syncing()) return;  // The state machine is not commit_min's until the sync is done.
  TALLY_ASSERT(commit_min_ >= log_.op_checkpoint());
  TALLY_ASSERT(commit_min_ <= commit_max_);
  // Executing changes no entry of the log: the chain's reach is the same for every op here
  // (a walk of up to a WAL's length, not to be repeated per op while a backup catches up).
  const u64 chained = log_.chain_min();
  while (commit_read_message_ == nullptr && !checkpointing_) {
    if (commit_min_ == log_.op_checkpoint() + checkpoint_interval()) {
      checkpoint_start();
      break;
    }
    if (commit_min_ >= commit_max_) break;
    const u64 op = commit_min_ + 1;
    // Only what the chain from the head vouches for: repair fetches the rest.
    if (!chain_executable(op, chained)) break;
    if (base::Message* cached = log_.cache_get_entry(op); cached != nullptr) {
      execute(cached);
      continue;
    }
    if (log_.dirty(op)) break;
    commit_read_start(op, commit_read_callback);
  }
  // Execution stops at the next checkpoint's op until that checkpoint is written, and never
  // passes the head (the chain from the head vouches for every op it executes).
  TALLY_ASSERT(commit_min_ <= log_.op_checkpoint() + checkpoint_interval());
  TALLY_ASSERT(commit_min_ <= log_.op());
  if (primary_normal()) request_queue_drain();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::commit_read_start(u64 op,
                                               void (*callback)(typename journal::Wal<S>::Read*)) {
  TALLY_ASSERT(commit_read_message_ == nullptr);
  // An op of the log above the checkpoint (the next to execute, or a new primary's pipeline).
  TALLY_ASSERT(op > log_.op_checkpoint() && op <= log_.op());
  const Header* header = log_.wal().header_with_op(op);
  TALLY_ASSERT(header != nullptr);
  commit_read_message_ = pool().get();
  TALLY_ASSERT(commit_read_message_ != nullptr, "message pool exhausted while opening");
  log_.wal().read_prepare(&commit_read_, callback, op, header->checksum,
                          {commit_read_message_->buffer, message_size_max});
}

template <journal::Storage S, MessageBus Bus, Time Clock>
base::Message* Replica<S, Bus, Clock>::commit_read_take(typename journal::Wal<S>::Read* read) {
  TALLY_ASSERT(read == &commit_read_);
  base::Message* message = commit_read_message_;
  TALLY_ASSERT(message != nullptr);
  commit_read_message_ = nullptr;
  if (read->status != journal::PrepareStatus::ok) {
    pool().unref(message);
    return nullptr;
  }
  // Verified by the WAL: the very prepare asked for.
  TALLY_ASSERT(message->header().prepare.op == read->op &&
               message->header().checksum == read->checksum);
  return message;
}

// A commit's (or a new primary's pipeline's) read of the WAL: into the cache, then on. A read
// that finds the slot damaged leaves it dirty for repair.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::commit_read_callback(typename journal::Wal<S>::Read* read) {
  auto* self = static_cast<Replica*>(read->context);
  TALLY_ASSERT(self->opened());  // Replay reads have their own callback.
  base::Message* message = self->commit_read_take(read);
  if (message != nullptr) {
    self->log_.cache_put(message);
    self->pool().unref(message);
  }
  self->commit_journal();
  self->primary_view_start_try();
}

// Applies one committed prepare: the state machine, the client sessions, and (on the primary,
// once normal) the reply.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::execute(base::Message* prepare) {
  const Header& header = prepare->header();
  const Header::Prepare& fields = header.prepare;
  TALLY_ASSERT(header.command == Command::prepare);
  TALLY_ASSERT(fields.op == commit_min_ + 1, "op %llu after commit %llu",
               static_cast<unsigned long long>(fields.op),
               static_cast<unsigned long long>(commit_min_));
  TALLY_ASSERT(fields.timestamp > state_machine_.commit_timestamp());
  // The log's entry, chained to the executed op (chain_executable()); a walk of the write
  // queue, so only where slow checks run.
  TALLY_ASSERT_SLOW(log_.header(fields.op) != nullptr &&
                    log_.header(fields.op)->checksum == header.checksum);
  TALLY_ASSERT_SLOW(!log_.checksum_of(commit_min_).has_value() ||
                    *log_.checksum_of(commit_min_) == fields.parent);
  commit_min_ = fields.op;
  TALLY_ASSERT(commit_min_ <= commit_max_ || status_ == ReplicaStatus::opening);
  stats_.ops_committed += 1;
  if (commit_min_ > commit_max_) commit_max_ = commit_min_;
  pipeline_.pop_executed(fields.op);
  // Executed entries leave the pipeline: what remains is above the op.
  TALLY_ASSERT(pipeline_.empty() || pipeline_.entry(0).op > commit_min_);

  std::optional<u32> session_index;
  u32 reply_size = 0;
  switch (fields.operation) {
    case Operation::register_session: {
      session_index =
          sessions_.open(fields.client, fields.op, header.release, fields.request_checksum);
      const std::span<std::byte> reply_body =
          sessions_.reply_buffer(*session_index).subspan(header_size);
      RegisterResult result{};
      result.batch_size_limit = batch_size_limit();
      std::memcpy(reply_body.data(), &result, sizeof(result));
      reply_size = sizeof(result);
      state_machine_.commit_timestamp_set(fields.timestamp);
      break;
    }
    case Operation::pulse: {
      state_machine_.execute(Operation::state_machine_pulse, fields.timestamp, {},
                             {scratch_reply_.data(), message_body_size_max});
      break;
    }
    default: {
      TALLY_ASSERT(operation_is_state_machine(fields.operation));
      if (fields.client != 0) session_index = sessions_.find(fields.client);
      const std::span<std::byte> reply_body =
          session_index.has_value()
              ? sessions_.reply_buffer(*session_index).subspan(header_size)
              : std::span<std::byte>(scratch_reply_.data(), message_body_size_max);
      reply_size =
          state_machine_.execute(fields.operation, fields.timestamp, prepare->body(), reply_body);
      break;
    }
  }
  TALLY_ASSERT(state_machine_.commit_timestamp() == fields.timestamp);
  // Every op, in op order on every replica: the grid's layout stays a function of the history.
  checkpoint_store_.seal_ahead(state_machine_, checkpointer_);
  if (fields.client == 0 || !session_index.has_value()) return;
  reply_build(header, *session_index, reply_size);
  if (primary_normal()) reply_send(*session_index);
}

// The reply, built where the session keeps it. Every field comes from the prepare, not from
// this replica (its index, its current view): every replica, and a replica replaying after a
// restart, builds the identical reply, so the context the client chains its next request to is
// the same everywhere.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::reply_build(const Header& prepare, u32 session_index,
                                         u32 reply_size) {
  const Header::Prepare& fields = prepare.prepare;
  TALLY_ASSERT(fields.client != 0 && sessions_.entry(session_index).client == fields.client);
  TALLY_ASSERT(reply_size <= message_body_size_max);
  std::span<std::byte> buffer = sessions_.reply_buffer(session_index);
  Header reply{};
  reply.cluster = options_.cluster;
  reply.size = header_size + reply_size;
  reply.view = prepare.view;
  reply.release = prepare.release;  // The client's own release (protocol §12.1).
  reply.command = Command::reply;
  reply.replica = prepare.replica;
  reply.reply.request_checksum = fields.request_checksum;
  reply.reply.client = fields.client;
  reply.reply.op = fields.op;
  reply.reply.commit = fields.op;
  reply.reply.timestamp = fields.timestamp;
  reply.reply.request = fields.request;
  reply.reply.operation = fields.operation;
  set_checksum_body(reply, buffer.subspan(header_size, reply_size));
  set_reply_context(reply);
  set_checksum(reply);
  std::memcpy(buffer.data(), &reply, header_size);
  sessions_.reply_record(session_index, fields.request, fields.request_checksum, fields.op);
  TALLY_ASSERT(sessions_.reply_available(session_index));
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::reply_send(u32 session_index) {
  TALLY_ASSERT(primary_normal());
  if (!sessions_.reply_available(session_index)) return;  // Lost to storage damage.
  const std::span<const std::byte> bytes = sessions_.reply_bytes(session_index);
  TALLY_ASSERT(bytes.size() >= header_size && bytes.size() <= message_size_max);
  // Built for this session's client (reply_build()), as the bus addresses it.
  TALLY_ASSERT(sessions_.entry(session_index).reply.reply.client ==
               sessions_.entry(session_index).client);
  base::Message* message = pool().get();
  if (message == nullptr) return;  // The client retransmits and gets the duplicate.
  std::memcpy(message->buffer, bytes.data(), bytes.size());
  message->pad_zero();
  bus_.send_to_client(sessions_.entry(session_index).client, message);
  pool().unref(message);
}

// -------------------------------------------------------------------------------------------
// Client messages answered without the log.

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::eviction_send(u128 client, EvictionReason reason) {
  TALLY_ASSERT(client != 0 && reason != EvictionReason::reserved);
  TALLY_ASSERT(opened());  // Nothing is sent before (replica_open.hpp).
  base::Message* message = pool().get();
  if (message == nullptr) return;
  Header& header = message->header();
  frame_fill(header, Command::eviction);
  header.eviction.client = client;
  header.eviction.reason = reason;
  message_seal(message);
  bus_.send_to_client(client, message);
  pool().unref(message);
}

// §5.5: a pong, or an eviction for a session that is gone or a release out of range.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::on_ping_client(base::Message* message) {
  const Header& ping = message->header();
  TALLY_ASSERT(ping.command == Command::ping_client);
  const u128 client = ping.ping_client.client;
  TALLY_ASSERT(client != 0);  // validate_ping_client().
  // (Not while syncing: the sessions are not commit_min's until the sync is done.)
  if (ping.ping_client.session != 0 && ping.ping_client.session <= commit_min_ && !syncing() &&
      !sessions_.find(client).has_value()) {
    eviction_send(client, EvictionReason::no_session);
    return;
  }
  if (ping.release < release_client_min) {
    eviction_send(client, EvictionReason::client_release_too_low);
    return;
  }
  if (ping.release > release_server) {
    eviction_send(client, EvictionReason::client_release_too_high);
    return;
  }
  base::Message* pong = pool().get();
  if (pong == nullptr) return;
  Header& header = pong->header();
  frame_fill(header, Command::pong_client);
  header.pong_client.ping_timestamp_monotonic = ping.ping_client.ping_timestamp_monotonic;
  message_seal(pong);
  bus_.send_to_client(client, pong);
  pool().unref(pong);
}

// -------------------------------------------------------------------------------------------
// Checkpoints.

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::checkpoint_start() {
  TALLY_ASSERT(!checkpointing_ && commit_min_ == log_.op_checkpoint() + checkpoint_interval());
  // One checkpoint at a time: the previous one's superblock write is done.
  TALLY_ASSERT(!superblock_checkpoint_wanted_ && !superblock_writing_checkpoint_);
  const std::optional<u128> checksum = checksum_of(commit_min_);
  TALLY_ASSERT(checksum.has_value(), "the checkpoint's op is in the log");
  checkpointing_ = true;
  checkpoint_checksum_next_ = *checksum;
  checkpoint_store_.write(state_machine_, checkpointer_, sessions_, log_.op_checkpoint(),
                          *checksum, checkpoint_written_callback, this);
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::checkpoint_written_callback(void* context) {
  auto* self = static_cast<Replica*>(context);
  TALLY_ASSERT(self->checkpointing_ && !self->superblock_checkpoint_wanted_);
  // Execution paused while the checkpoint was written: its op is still the executed one.
  TALLY_ASSERT(self->commit_min_ == self->log_.op_checkpoint() + self->checkpoint_interval());
  journal::CheckpointReference& reference = self->checkpoint_reference_next_;
  reference = journal::CheckpointReference{};
  reference.op = self->commit_min_;
  reference.commit_timestamp = self->state_machine_.commit_timestamp();
  CheckpointVsrState state = self->checkpoint_store_.vsr_state();
  const Header* prepare = self->log_.header(self->commit_min_);
  TALLY_ASSERT(prepare != nullptr && prepare->checksum == state.prepare_checksum);
  state.prepare_header = *prepare;
  // The durable checkpoint is still the previous one (the superblock names this one later).
  state.parent_id = self->checkpoint_id_durable();
  checkpoint_vsr_state_write(state, reference);
  self->superblock_checkpoint_wanted_ = true;
  self->superblock_write_next();
}

// -------------------------------------------------------------------------------------------
// Superblock writes: the view state and the checkpoint, one write at a time; a write takes the
// state as it is when it starts, so that requests made meanwhile coalesce.

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::superblock_write_view() {
  TALLY_ASSERT(log_view_ <= view_);
  TALLY_ASSERT(view_ >= view_durable() && log_view_ >= log_view_durable());
  superblock_view_wanted_ = true;
  superblock_write_next();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::superblock_write_next() {
  if (superblock_.busy()) return;  // superblock_written_callback() comes back here.
  if (!superblock_view_wanted_ && !superblock_checkpoint_wanted_ && !superblock_sync_wanted_) {
    return;
  }
  TALLY_ASSERT(!(superblock_checkpoint_wanted_ && superblock_sync_wanted_));
  const journal::Superblock& working = superblock_.working();
  journal::CheckpointReference checkpoint = working.checkpoint;
  if (superblock_checkpoint_wanted_) checkpoint = checkpoint_reference_next_;
  if (superblock_sync_wanted_) checkpoint = sync_target_;
  // State sync's target stays marked until its state is the state machine's.
  const bool checkpoint_syncing =
      superblock_sync_wanted_ ||
      (working.checkpoint_syncing == 1 && sync_stage_ != SyncStage::none);
  journal::SuperblockUpdate update{
      .vsr_state = {.view = view_,
                    .log_view = log_view_,
                    .commit_max = commit_max_ > working.vsr_state.commit_max
                                      ? commit_max_
                                      : working.vsr_state.commit_max},
      .checkpoint = checkpoint,
      .view_headers = view_headers_,
      .checkpoint_syncing = checkpoint_syncing,
  };
  TALLY_ASSERT(update.vsr_state.view >= working.vsr_state.view);
  TALLY_ASSERT(update.vsr_state.log_view >= working.vsr_state.log_view);
  // This replica's own checkpoint: of its executed op, above the durable one.
  TALLY_ASSERT(!superblock_checkpoint_wanted_ ||
               (checkpointing_ && checkpoint_reference_next_.op == commit_min_ &&
                checkpoint_reference_next_.op > working.checkpoint.op));
  superblock_writing_checkpoint_ = superblock_checkpoint_wanted_;
  superblock_writing_sync_ = superblock_sync_wanted_;
  superblock_view_wanted_ = false;
  superblock_checkpoint_wanted_ = false;
  superblock_sync_wanted_ = false;
  superblock_.update(update, superblock_written_callback);
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::superblock_written_callback(journal::SuperblockStore<S>* store) {
  auto* self = static_cast<Replica*>(store->context);
  if (self->superblock_writing_checkpoint_) {
    self->superblock_writing_checkpoint_ = false;
    TALLY_ASSERT(self->checkpointing_);
    // Durable now: the superblock names the checkpoint of the executed op.
    TALLY_ASSERT(self->superblock_.working().checkpoint.op == self->commit_min_);
    self->checkpoint_store_.commit();
    self->checkpointer_.done(self->state_machine_);
    self->log_.anchor_set(self->commit_min_, self->checkpoint_checksum_next_,
                          self->state_machine_.commit_timestamp());
    self->checkpointing_ = false;
    self->stats_.checkpoints += 1;
  }
  if (self->superblock_writing_sync_) {
    self->superblock_writing_sync_ = false;
    self->sync_installed();
  }
  self->superblock_view_durable();
  self->superblock_write_next();
  self->commit_journal();
}

// -------------------------------------------------------------------------------------------
// Message helpers.

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::frame_fill(Header& header, Command command) {
  TALLY_ASSERT(command != Command::prepare && command != Command::reply);
  header.cluster = options_.cluster;
  header.size = header_size;
  header.view = view_;
  // A client adopts any higher view it sees and then addresses that view's primary, which
  // drops requests of a view it has not reached: it must only see a view that started (one
  // this replica was normal in, durably), never one of a view change that may never finish.
  if (command == Command::pong_client || command == Command::eviction) {
    header.view = log_view_durable();
  }
  header.release = release_server;
  header.command = command;
  header.replica = options_.replica;
  TALLY_ASSERT(header.view <= view_);
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::message_seal(base::Message* message) {
  Header& header = message->header();
  TALLY_ASSERT(message->references > 0);
  TALLY_ASSERT(header.size >= header_size && header.size <= message_size_max);
  // Framed by frame_fill(): prepares and replies are built and sealed where they are made.
  TALLY_ASSERT(header.command != Command::prepare && header.command != Command::reply);
  set_checksum_body(header, message->body());
  set_checksum(header);
  message->pad_zero();
}

}  // namespace tally::vsr
