// Replica, state sync: a backup whose next op to execute is gone from its primary's WAL takes a
// peer's checkpoint instead, and every replica serves the pieces of its own (get_blocks, block).
// Part of replica.hpp (its table of contents); included from there. docs/vsr-protocol.md,
// "State sync", has the rules; in short:
//
//   none ──(the primary prepared an op a WAL past commit_min)──> target: get_blocks(checkpoint)
//     ──(a peer's durable checkpoint above commit_min)──> quiesce: no execution, no checkpoint
//     write, no grid I/O of the old checkpoint in flight
//     ──> install: superblock names the target, checkpoint_syncing = 1 (durable before any
//         block of the old checkpoint is overwritten); the log's anchor moves to its op
//     ──> fetch: CheckpointSync brings every block and reply here, verified, in place
//     ──> open: CheckpointStore reads the checkpoint into the state machine and sessions
//     ──> none: normal again (acknowledges what it holds, executes from the anchor on); the
//         next superblock write clears checkpoint_syncing.
//   A grid block that no peer supplies while the primary's checkpoint moves on: retarget (the
//   walk stops, and the newer checkpoint is fetched; what is here already is kept).
//   A restart while checkpoint_syncing is 1 goes straight to fetch with the superblock's target.
//
// Invariants: from quiesce to none the replica executes nothing, writes no checkpoint, sends no
// prepare_ok and no join_view and never starts a view as primary: it votes for no log it does
// not hold, and its state machine is not its commit_min's; the superblock names the target
// before the first block of it is written; a target is a peer's durable checkpoint (executed,
// so committed ops only) above this replica's commit_min, and it agrees with every header this
// replica's log holds at its op.
#pragma once

#include "src/vsr/replica.hpp"

namespace tally::vsr {

// Identifies a checkpoint: the checksum of its reference (op, timestamp, state and block
// references). Equal checkpoints of equal ops have equal ids.
inline u128 checkpoint_id(const journal::CheckpointReference& reference) {
  return tally::checksum(
      {reinterpret_cast<const std::byte*>(&reference), sizeof(journal::CheckpointReference)});
}

// -------------------------------------------------------------------------------------------
// The syncing replica.

template <journal::Storage S, MessageBus Bus, Time Clock>
u128 Replica<S, Bus, Clock>::checkpoint_id_durable() const {
  return checkpoint_id(superblock_.working().checkpoint);
}

// Checkpoints are at the ops C_i = i * checkpoint_interval(). A prepare of an op in
// (C_k, C_k+1] carries the id of C_k-1 (of C_0, the format's, for k = 0): its primary has that
// one durable or the next, C_k, whose parent_id it is, since it prepares only up to its
// durable checkpoint + a WAL (= C_k+1 + 2 pipelines) and not beyond the op it has executed
// + a pipeline. A replica knows the id for ops of those two intervals after its own durable
// checkpoint C_j: the k with C_k-1 = C_j or C_j-1 (C_j itself: its id; C_j-1: its parent_id).
//   interval 10, durable C_2 = 20: ops 21..30 carry id(C_1) = C_2's parent_id, ops 31..40
//   id(C_2); ops 11..20 carry id(C_0), which C_2 no longer knows: none.
template <journal::Storage S, MessageBus Bus, Time Clock>
std::optional<u128> Replica<S, Bus, Clock>::checkpoint_id_for_op(u64 op) const {
  TALLY_ASSERT(op > 0);
  const u64 interval = checkpoint_interval();
  const journal::CheckpointReference& durable = superblock_.working().checkpoint;
  TALLY_ASSERT(durable.op % interval == 0);
  const u64 checkpoint_below = (op - 1) / interval * interval;  // C_k
  const u64 named = checkpoint_below >= interval ? checkpoint_below - interval : 0;
  if (named == durable.op) return checkpoint_id(durable);
  if (durable.op > 0 && named + interval == durable.op) {
    const u128 parent = checkpoint_vsr_state_read(durable).parent_id;
    if (parent != 0) return parent;
  }
  return std::nullopt;
}

template <journal::Storage S, MessageBus Bus, Time Clock>
bool Replica<S, Bus, Clock>::syncing() const {
  // A target taken (sync_target_op_) and not yet opened: also while looking for a newer one.
  return sync_target_op_ != 0 ||
         (sync_stage_ != SyncStage::none && sync_stage_ != SyncStage::target);
}

// Whether a normal backup cannot catch up by repair: the primary's WAL no longer holds the op
// after commit_min (its slot went to an op a WAL's length above it: no peer is sure to hold it,
// and the cluster will not wait); or the primary's checkpoint is above this replica's head, so
// that the headers it lacks may be of ops the primary never held (it took a checkpoint from its
// peers: seed 3979773473804481688, a backup asked such a primary for them for ever), and the
// checkpoint covers them anyway.
template <journal::Storage S, MessageBus Bus, Time Clock>
bool Replica<S, Bus, Clock>::sync_needed() const {
  return op_seen_max_ > commit_min_ + log_.slot_count() || primary_checkpoint_op_ > log_.op();
}

// Every tick: whether to start a sync, and the next step of one in progress.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::sync_tick() {
  TALLY_ASSERT(!solo() || sync_stage_ == SyncStage::none);
  switch (sync_stage_) {
    case SyncStage::none: {
      if (solo() || primary() || status_ != ReplicaStatus::normal) return;
      if (!sync_needed()) return;
      sync_stage_ = SyncStage::target;
      sync_asked_ = 0;
      stats_.syncs_started += 1;
      sync_timeout_.start();
      sync_target_ask();
      return;
    }
    case SyncStage::target:
      if (sync_target_op_ == 0 && (primary() || !sync_needed())) {
        // Caught up meanwhile (a peer did hold the ops after all), or made primary by a view
        // change (a primary never syncs: it has what the view needs): no sync.
        sync_stage_ = SyncStage::none;
        sync_timeout_.stop();
        return;
      }
      if (!sync_timeout_.fired()) return;
      sync_timeout_.reset();
      sync_target_ask();
      return;
    case SyncStage::quiesce: sync_quiesce_try(); return;
    case SyncStage::install:
      // Waiting for the superblock write that names the target.
      TALLY_ASSERT(superblock_sync_wanted_ || superblock_writing_sync_);
      return;
    case SyncStage::open:
      TALLY_ASSERT(checkpoint_store_.busy());  // Reading the target into the state machine.
      return;
    case SyncStage::fetch: sync_fetch_tick(); return;
    case SyncStage::retarget:
      TALLY_ASSERT(!sync_.active());  // Aborted: only its I/O in flight drains.
      if (!sync_.idle()) return;
      sync_stage_ = SyncStage::target;
      sync_asked_ = 0;
      sync_timeout_.start();
      sync_target_ask();
      return;
  }
}

// Asks one peer in turn (the primary first) for its durable checkpoint.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::sync_target_ask() {
  TALLY_ASSERT(sync_stage_ == SyncStage::target);
  const u8 peer = sync_peer(sync_asked_);
  sync_asked_ += 1;
  base::Message* message = pool().get();
  if (message == nullptr) return;
  Header& header = message->header();
  frame_fill(header, Command::get_blocks);
  header.get_blocks.kind = BlockKind::checkpoint;
  header.get_blocks.op_min = (sync_target_op_ > commit_min_ ? sync_target_op_ : commit_min_) + 1;
  message_seal(message);
  TALLY_ASSERT_SLOW(valid_to(message, peer));
  bus_.send_to_replica(peer, message);
  pool().unref(message);
}

// The peer to ask the `asked`-th time: the primary, then each other peer in turn.
template <journal::Storage S, MessageBus Bus, Time Clock>
u8 Replica<S, Bus, Clock>::sync_peer(u32 asked) const {
  TALLY_ASSERT(!solo());
  const u32 others = options_.replica_count - 1u;
  const u8 primary_replica = primary_index(view_);
  if (asked % (others + 1) == 0 && primary_replica != options_.replica) return primary_replica;
  u8 peer = static_cast<u8>((options_.replica + 1 + asked % others) % options_.replica_count);
  TALLY_ASSERT(peer != options_.replica);
  return peer;
}

// A peer's checkpoint, as a sync target: taken if it is above what this replica has executed
// (and above a target it gives up), well formed, and consistent with this replica's log.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::sync_target_offered(const Header& header,
                                                 std::span<const std::byte> body) {
  TALLY_ASSERT(header.block.kind == BlockKind::checkpoint);
  // validate_replica_message(): a checkpoint of some op, from a peer (a single replica has none).
  TALLY_ASSERT(header.block.op > 0);
  TALLY_ASSERT(!solo());
  if (sync_stage_ != SyncStage::target) return;
  TALLY_ASSERT(body.size() == sizeof(journal::CheckpointReference));
  journal::CheckpointReference reference;
  std::memcpy(&reference, body.data(), sizeof(reference));
  if (checkpoint_id(reference) != header.block.checksum || reference.op != header.block.op) {
    stats_.messages_invalid += 1;
    return;
  }
  const u64 floor = sync_target_op_ > commit_min_ ? sync_target_op_ : commit_min_;
  if (reference.op <= floor) return;  // Of no use (any more).
  if (primary() && sync_target_op_ == 0) return;  // Primary meanwhile: sync_tick() gives up.
  // Only a normal backup installs a first target: its log (and so any join_view it sends later,
  // its head at or above the target's op) is then anchored there. In a view change it waits
  // for the view's start (the target is asked for again). A replica syncing already (looking
  // for a newer target: its own one's blocks were gone) takes the newer one in a view change
  // too: it sends no join_view until synced either way (its join_view headers are taken again
  // from the anchored log then), and a view that needs it to start waited for ever (seed
  // 1981850034645040955: one replica of three lost, the other two in a view change).
  if (status_ != ReplicaStatus::normal && sync_target_op_ == 0) return;
  const CheckpointVsrState state = checkpoint_vsr_state_read(reference);
  const Header& prepare = state.prepare_header;
  if (state.prepare_checksum == 0 || prepare.checksum != state.prepare_checksum ||
      !checksum_valid(prepare) || prepare.command != Command::prepare ||
      prepare.prepare.op != reference.op ||
      prepare.prepare.timestamp != reference.commit_timestamp ||
      state.manifest_block_count > manifest_blocks_max) {
    stats_.messages_invalid += 1;
    return;
  }
  // Its op's header, if this replica's log names one from the head down, must be the same.
  if (const std::optional<u128> expected = log_.checksum_expected(reference.op);
      expected.has_value() && *expected != prepare.checksum) {
    stats_.messages_invalid += 1;
    return;
  }
  sync_target_ = reference;
  sync_target_op_ = reference.op;
  if (commit_max_ < reference.op) commit_max_ = reference.op;
  sync_timeout_.stop();
  sync_stage_ = SyncStage::quiesce;
  sync_quiesce_try();
}

// Waits until nothing of the old checkpoint is in flight: a commit read (its op would execute),
// a checkpoint being written, grid writes staged ahead. Then the superblock names the target.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::sync_quiesce_try() {
  TALLY_ASSERT(sync_stage_ == SyncStage::quiesce);
  if (commit_read_message_ != nullptr || checkpointing_ || superblock_writing_checkpoint_) return;
  if (!checkpoint_store_.idle()) return;
  checkpoint_store_.reset();
  pipeline_.release();
  request_queue_.release();
  sync_install();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::sync_install() {
  TALLY_ASSERT(sync_stage_ == SyncStage::quiesce);
  TALLY_ASSERT(sync_target_op_ > commit_min_ && sync_target_.op == sync_target_op_);
  // Quiesced: no checkpoint of its own is being written (its blocks would meet the target's).
  TALLY_ASSERT(!checkpointing_ && !superblock_writing_checkpoint_ &&
               !superblock_checkpoint_wanted_);
  sync_stage_ = SyncStage::install;
  superblock_sync_wanted_ = true;
  superblock_write_next();
}

// The superblock names the target (checkpoint_syncing): the log is anchored at it, and its
// blocks may be written.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::sync_installed() {
  TALLY_ASSERT(sync_stage_ == SyncStage::install);
  const journal::Superblock& working = superblock_.working();
  TALLY_ASSERT(working.checkpoint_syncing == 1 && working.checkpoint == sync_target_);
  sync_anchor(working.checkpoint);
  sync_fetch_start();
}

// The log and the counters as of the target, before its state is here.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::sync_anchor(const journal::CheckpointReference& reference) {
  TALLY_ASSERT(reference.op >= log_.op_checkpoint());
  // Above what was executed (a restart: nothing yet), which the anchor moves up to.
  TALLY_ASSERT(reference.op > commit_min_);
  const CheckpointVsrState state = checkpoint_vsr_state_read(reference);
  TALLY_ASSERT(state.prepare_header.checksum == state.prepare_checksum);
  log_.anchor_set(reference.op, state.prepare_checksum, reference.commit_timestamp);
  log_.anchor_header_set(state.prepare_header);
  commit_min_ = reference.op;
  if (commit_max_ < commit_min_) commit_max_ = commit_min_;
  if (prepare_timestamp_ < reference.commit_timestamp) {
    prepare_timestamp_ = reference.commit_timestamp;
  }
  sync_target_ = reference;
  sync_target_op_ = reference.op;
  TALLY_ASSERT(log_.op() >= commit_min_ && log_.op_checkpoint() == commit_min_);
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::sync_fetch_start() {
  TALLY_ASSERT(sync_.idle() && !sync_.active());
  // A target the superblock names as being synced, or the durable checkpoint itself, repaired
  // in place (checkpoint_repair_start()).
  TALLY_ASSERT(superblock_.working().checkpoint_syncing == 1 ||
               superblock_.working().checkpoint == sync_target_);
  sync_stage_ = SyncStage::fetch;
  sync_.start(sync_target_op_, checkpoint_vsr_state_read(sync_target_),
              u32{options_.replica_count} - 1, sync_fetched_callback, sync_wanted_callback, this);
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::sync_wanted_callback(void* context) {
  auto* self = static_cast<Replica*>(context);
  TALLY_ASSERT(self->sync_stage_ == SyncStage::fetch);
  self->sync_wants_send();
}

// Every tick of a fetch: the walk's clock, its requests, and whether to retarget: when a grid
// block has been asked of every peer twice over and the primary has a newer checkpoint.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::sync_fetch_tick() {
  TALLY_ASSERT(sync_stage_ == SyncStage::fetch);
  // Walking, or stopped at a target no replica wrote: a finished walk is in stage open.
  TALLY_ASSERT(sync_.active() || sync_.invalid());
  if (sync_.invalid()) {
    sync_retarget();
    return;
  }
  sync_.tick();
  if (sync_stage_ != SyncStage::fetch) return;  // The walk finished in tick().
  if (sync_wants_send() && primary_checkpoint_op_ > sync_target_op_) sync_retarget();
}

// Asks peers for what the walk wants now, each piece of one peer in turn. True if a grid block
// has been asked of every peer twice over.
template <journal::Storage S, MessageBus Bus, Time Clock>
bool Replica<S, Bus, Clock>::sync_wants_send() {
  TALLY_ASSERT(sync_stage_ == SyncStage::fetch);
  const u32 patience = 2 * options_.replica_count;
  bool stalled = false;
  sync_.wants([&](const BlockWant& want) {
    // Pieces of the target, named by checksum; the target itself is not asked for here.
    TALLY_ASSERT(want.kind != BlockKind::checkpoint && want.kind != BlockKind::reserved);
    TALLY_ASSERT(want.checksum != 0);
    if (want.kind != BlockKind::reply && want.asked >= patience) stalled = true;
    base::Message* message = pool().get();
    if (message == nullptr) return;
    Header& header = message->header();
    frame_fill(header, Command::get_blocks);
    header.get_blocks.kind = want.kind;
    header.get_blocks.index = want.index;
    header.get_blocks.checksum = want.checksum;
    message_seal(message);
    TALLY_ASSERT_SLOW(valid_to(message, sync_peer(want.asked)));
    bus_.send_to_replica(sync_peer(want.asked), message);
    pool().unref(message);
  });
  return stalled;
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::sync_retarget() {
  TALLY_ASSERT(sync_stage_ == SyncStage::fetch);
  // Only with a reason: a target no replica wrote, or a newer checkpoint at the primary.
  TALLY_ASSERT(sync_.invalid() || primary_checkpoint_op_ > sync_target_op_);
  sync_.abort();
  sync_walk_count();
  sync_repairing_ = false;  // A peer's newer checkpoint from here: an ordinary sync.
  stats_.syncs_retargeted += 1;
  sync_stage_ = SyncStage::retarget;
}

// A walk's pieces, into the stats (once per walk: at its end, or when it is given up).
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::sync_walk_count() {
  stats_.sync_pieces_fetched += sync_.pieces_fetched();
  stats_.sync_bytes_fetched += sync_.bytes_fetched();
  stats_.sync_pieces_found += sync_.pieces_found();
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::sync_fetched_callback(void* context) {
  auto* self = static_cast<Replica*>(context);
  TALLY_ASSERT(self->sync_stage_ == SyncStage::fetch);
  self->sync_walk_count();
  self->sync_stage_ = SyncStage::open;
  const journal::CheckpointReference& reference = self->superblock_.working().checkpoint;
  TALLY_ASSERT(reference.op == self->sync_target_op_);
  self->checkpoint_store_.open(checkpoint_vsr_state_read(reference), self->state_machine_,
                               self->sessions_, sync_opened_callback, self);
}

// The target's state is the state machine's: the replica is an ordinary one again.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::sync_opened_callback(void* context) {
  auto* self = static_cast<Replica*>(context);
  TALLY_ASSERT(self->sync_stage_ == SyncStage::open);
  TALLY_ASSERT(!self->sync_.active() && self->sync_.idle());  // The walk is over, its I/O done.
  const journal::CheckpointReference& reference = self->superblock_.working().checkpoint;
  if (self->checkpoint_store_.damaged()) {
    // A block the walk verified no longer reads back (damaged since): walk again.
    self->checkpoint_store_.reset();
    self->sync_fetch_start();
    return;
  }
  TALLY_ASSERT(self->state_machine_.commit_timestamp() == reference.commit_timestamp);
  TALLY_ASSERT(self->commit_min_ == reference.op && self->log_.op_checkpoint() == reference.op);
  self->checkpointer_.done(self->state_machine_);
  self->sync_stage_ = SyncStage::none;
  self->sync_target_op_ = 0;
  self->sync_repairing_ = false;
  self->stats_.syncs_done += 1;
  // A view change that began while the target was being installed took its join_view headers
  // from the log as it was then, below the checkpoint now (and a restart brings those back): it
  // sent none of them (a syncing replica sends no join_view), so it describes its log as it is
  // now, anchored at the target. Written first, like any join_view's headers.
  if (self->status_ == ReplicaStatus::view_change && self->log_view_ < self->view_ &&
      (self->view_headers_.count == 0 ||
       self->view_headers_.headers[0].prepare.op < self->log_.op_checkpoint())) {
    self->view_headers_ = self->view_headers_from_log(self->commit_max_);
    TALLY_ASSERT(self->view_headers_.count > 0 &&
                 self->view_headers_.headers[0].prepare.op >= self->log_.op_checkpoint());
  }
  self->superblock_view_wanted_ = true;  // Clears checkpoint_syncing.
  self->superblock_write_next();
  // What it holds of the view's pipeline, acknowledged now that it may.
  if (self->status_ == ReplicaStatus::normal && !self->primary() &&
      self->view_durable() == self->view_ && self->log_view_durable() == self->view_) {
    for (u64 op = self->commit_max_ + 1; op <= self->log_.op(); op += 1) {
      const Header* entry = self->log_.header(op);
      if (entry != nullptr && !self->log_.dirty(op)) self->prepare_ok_send(*entry);
    }
  }
  self->commit_journal();
}

// -------------------------------------------------------------------------------------------
// Serving: any replica answers get_blocks from its durable superblock and its data file.

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::on_get_blocks(base::Message* message) {
  const Header& header = message->header();
  const Header::GetBlocks& fields = header.get_blocks;
  // validate_replica_message(): a peer, who gets the answer.
  TALLY_ASSERT(header.replica < options_.replica_count && header.replica != options_.replica);
  if (fields.kind == BlockKind::checkpoint) {
    const journal::Superblock& working = superblock_.working();
    if (working.checkpoint.op == 0 || working.checkpoint.op < fields.op_min) return;
    if (working.checkpoint_syncing == 1 || syncing()) return;  // Not all here (yet).
    base::Message* answer = pool().get();
    if (answer == nullptr) return;
    Header& reply = answer->header();
    frame_fill(reply, Command::block);
    reply.block.kind = BlockKind::checkpoint;
    reply.block.op = working.checkpoint.op;
    reply.block.checksum = checkpoint_id(working.checkpoint);
    reply.size = header_size + sizeof(journal::CheckpointReference);
    std::memcpy(answer->buffer + header_size, &working.checkpoint,
                sizeof(journal::CheckpointReference));
    message_seal(answer);
    TALLY_ASSERT_SLOW(valid_to(answer, header.replica));
    bus_.send_to_replica(header.replica, answer);
    pool().unref(answer);
    return;
  }
  // A grid block or a reply: read from this data file, sent if it is the piece asked for. A
  // replica busy serving others drops the request (the asker asks again): serving never takes
  // more than serve_slot_count reads at once from the replica's own work.
  ServeSlot* slot = nullptr;
  for (ServeSlot& candidate : serve_slots_) {
    if (!candidate.busy) {
      slot = &candidate;
      break;
    }
  }
  if (slot == nullptr) {
    stats_.blocks_serve_dropped += 1;
    return;
  }
  slot->busy = true;
  slot->to = header.replica;
  slot->kind = fields.kind;
  slot->index = fields.index;
  slot->checksum = fields.checksum;
  u64 offset = 0;
  u32 size = state_machine::checkpoint_block_size;
  // validate_get_blocks(): the piece is inside the data file's layout.
  if (fields.kind == BlockKind::reply) {
    TALLY_ASSERT(fields.index < layout_.config().clients_max);
    offset = layout_.client_reply_offset(fields.index);
    size = message_size_max;
  } else {
    TALLY_ASSERT(fields.index < layout_.config().grid_block_count);
    offset = layout_.grid_block_offset(fields.index);
  }
  TALLY_ASSERT(size <= slot->buffer.size());
  storage_.read(&slot->read, serve_read_callback, slot->buffer.first(size), offset);
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::serve_read_callback(typename S::Read* read) {
  auto* slot = static_cast<ServeSlot*>(read->context);
  Replica* self = slot->replica;
  TALLY_ASSERT(read == &slot->read);
  TALLY_ASSERT(slot->busy);
  slot->busy = false;
  if (read->result != journal::ReadResult::ok) return;
  const u32 size = block_piece_intact(slot->kind, read->buffer, slot->checksum);
  if (size == 0) return;  // Not here intact (moved on, or damaged): another peer may have it.
  // A reply goes as its body: the asker has its header (its sessions entry), and a whole-size
  // reply with a header of its own would not fit one message.
  const u32 skip = slot->kind == BlockKind::reply ? header_size : 0;
  TALLY_ASSERT(size >= skip && size - skip <= message_size_max - header_size);
  base::Message* answer = self->pool().get();
  if (answer == nullptr) return;
  Header& header = answer->header();
  self->frame_fill(header, Command::block);
  header.block.kind = slot->kind;
  header.block.index = slot->index;
  header.block.checksum = slot->checksum;
  header.size = header_size + (size - skip);
  std::memcpy(answer->buffer + header_size, slot->buffer.data() + skip, size - skip);
  message_seal(answer);
  TALLY_ASSERT_SLOW(self->valid_to(answer, slot->to));
  self->bus_.send_to_replica(slot->to, answer);
  self->pool().unref(answer);
  self->stats_.blocks_served += 1;
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::on_block(base::Message* message) {
  const Header& header = message->header();
  // validate_replica_message(): names its piece by a nonzero checksum (none is wanted as 0).
  TALLY_ASSERT(header.block.checksum != 0);
  if (header.block.kind == BlockKind::checkpoint) {
    sync_target_offered(header, message->body());
    return;
  }
  if (sync_stage_ != SyncStage::fetch) return;
  sync_.on_block(header.block.kind, header.block.index, header.block.checksum, message->body());
}

}  // namespace tally::vsr
