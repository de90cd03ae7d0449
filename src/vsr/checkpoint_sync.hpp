// CheckpointSync: brings every piece of one checkpoint into this replica's data file, piece by
// piece, at the addresses the checkpoint names: state sync's transfer (docs/vsr-protocol.md,
// "State sync"). It reads nothing into the state machine: once it is done, CheckpointStore
// reads the checkpoint as at any open.
//
// The walk, in this order:
//   manifest block m (one at a time) ─> the state blocks it names (up to slot_count at once)
//     ─> ... next manifest block ... ─> the client sessions block ─> each session's reply
// For every piece: read this data file's copy; if it is the piece (checksum, and size for a
// reply), nothing more; else the piece is *wanted*: the replica asks peers for it (wants()),
// hands each answer to on_block(), which verifies it and writes it in place. Most blocks of a
// checkpoint a few intervals ahead are new; those of tables that did not change are found here
// already. Only the manifest block being walked is held in memory, never the state itself.
//
// A reply that no peer supplies is left out once every peer was asked for it and had
// resend_ticks to answer, one more ask to cover a lost message (or after reply_wait_ticks,
// whichever comes first): the peers' own copies have moved on with newer replies, which this
// replica will build itself when it executes the ops that made them; until then that session's
// duplicate requests go unanswered (as for a damaged reply at open). Replies are walked one at a
// time (a reply may be a whole message): waiting out a long timeout for each of many sessions
// kept a synced replica out for tens of seconds. A grid block is never left out: the replica
// retargets the sync instead.
//
// Invariants: at most slot_count pieces are read, wanted or written at once; a piece is
// written only after it verified, and only at the address or slot the checkpoint names; the
// walk never passes a piece that is neither verified here nor left out (replies only); abort()
// issues nothing new, and idle() says when the last I/O in flight has completed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>

#include "journal/layout.hpp"
#include "journal/storage.hpp"
#include "src/base/assert.hpp"
#include "src/base/large_array.hpp"
#include "src/state_machine/checkpoint.hpp"
#include "src/vsr/checkpoint_format.hpp"
#include "src/vsr/client_sessions.hpp"
#include "tally/checksum.hpp"
#include "tally/constants.hpp"
#include "tally/header.hpp"
#include "tally/types.hpp"

namespace tally::vsr {

// The used size (header and payload) of a manifest or sessions block if `block` is intact and
// its checksum is `checksum`; 0 otherwise.
inline u32 grid_vsr_block_intact(std::span<const std::byte> block, u128 checksum) {
  GridBlockHeader header;
  if (checksum == 0 || block.size() < sizeof(header)) return 0;
  std::memcpy(&header, block.data(), sizeof(header));
  if (header.checksum != checksum || header.size > block.size() - grid_block_header_size) {
    return 0;
  }
  // The bytes checksummed below lie within the block (the size was checked against it).
  TALLY_ASSERT(u64{grid_block_header_size} + header.size <= block.size());
  if (tally::checksum(block.subspan(32, grid_block_header_size - 32 + header.size)) !=
      checksum) {
    return 0;
  }
  return grid_block_header_size + header.size;
}

// The size of a stored reply (header and body) if `data` begins with the intact reply whose
// header checksum is `checksum`; 0 otherwise.
inline u32 reply_intact(std::span<const std::byte> data, u128 checksum) {
  Header stored;
  if (checksum == 0 || data.size() < header_size) return 0;
  std::memcpy(&stored, data.data(), header_size);
  if (stored.checksum != checksum || !checksum_valid(stored)) return 0;
  if (stored.command != Command::reply || stored.size < header_size ||
      stored.size > data.size()) {
    return 0;
  }
  if (!checksum_body_valid(stored, data.subspan(header_size, stored.size - header_size))) {
    return 0;
  }
  return stored.size;
}

// The used size of `data` as the piece (kind, checksum) names it, or 0 if it is not that piece.
inline u32 block_piece_intact(BlockKind kind, std::span<const std::byte> data, u128 checksum) {
  u32 size = 0;
  switch (kind) {
    case BlockKind::grid_vsr: size = grid_vsr_block_intact(data, checksum); break;
    case BlockKind::grid_state:
      size = state_machine::checkpoint_block_intact(data, checksum);
      break;
    case BlockKind::reply: size = reply_intact(data, checksum); break;
    case BlockKind::reserved:
    case BlockKind::checkpoint: break;
  }
  // The used bytes are within what was checked: they are written or sent as they are.
  TALLY_ASSERT(size <= data.size());
  return size;
}

// A piece of a checkpoint that the replica should ask peers for.
struct BlockWant {
  BlockKind kind;
  u32 index;  // Grid: address; reply: sessions entry.
  u128 checksum;
  u32 asked;  // How many times it was asked for already (the replica picks peers in turn).
};

template <journal::Storage S>
class CheckpointSync {
 public:
  using Callback = void (*)(void* context);
  static constexpr u32 slot_count = 8;
  static constexpr u32 block_size = state_machine::checkpoint_block_size;
  // Ticks a reply stays wanted before it is left out (see the file comment).
  static constexpr u32 reply_wait_ticks = 300;
  // Ticks before a piece is asked for again (of the next peer).
  static constexpr u32 resend_ticks = 10;

  CheckpointSync(S& storage, const journal::Layout& layout, u32 clients_max)
      : storage_(storage), layout_(layout), clients_max_(clients_max) {
    TALLY_ASSERT(clients_max > 0 && clients_max <= layout.config().clients_max);
    TALLY_ASSERT(layout.config().grid_block_size == block_size);
    // Slot 0 also carries replies (up to a whole message); the others carry grid blocks.
    buffers_.init(message_size_max + u64{slot_count - 1} * block_size);
    manifest_.init(block_size);
    sessions_.init(clients_max);
    for (u32 number = 0; number < slot_count; number += 1) {
      Slot& slot = slots_[number];
      slot.read.context = &slot;
      slot.write.context = &slot;
      slot.sync = this;
      slot.number = number;
    }
  }

  CheckpointSync(const CheckpointSync&) = delete;
  CheckpointSync& operator=(const CheckpointSync&) = delete;

  // Walks `target` (a checkpoint whose op is `op`), asking `peers` replicas (in turn) for what
  // is not here; `callback` runs once every piece is here, `wanted` whenever a piece becomes
  // wanted (so that it is asked for at once).
  void start(u64 op, const CheckpointVsrState& target, u32 peers, Callback callback,
             Callback wanted, void* context) {
    TALLY_ASSERT(!active() && idle());
    TALLY_ASSERT(op > 0 && target.prepare_checksum != 0);
    TALLY_ASSERT(peers >= 1 && peers < replicas_max);
    TALLY_ASSERT(target.manifest_block_count <= manifest_blocks_max);
    // Both run later, from a completion or from tick(): there is no "nobody listens".
    TALLY_ASSERT(callback != nullptr && wanted != nullptr);
    op_ = op;
    target_ = target;
    reply_asks_max_ = peers + 1;
    callback_ = callback;
    wanted_ = wanted;
    context_ = context;
    phase_ = Phase::manifest;
    manifest_index_ = 0;
    manifest_position_ = 0;
    manifest_count_ = 0;
    manifest_ready_ = false;
    session_next_ = 0;
    pieces_fetched_ = 0;
    pieces_found_ = 0;
    bytes_fetched_ = 0;
    replies_left_out_ = 0;
    invalid_ = false;
    pump();
    invariants();
  }

  // Stops walking: nothing new is issued; pieces in flight complete (idle() says when).
  void abort() {
    phase_ = Phase::idle;
    for (Slot& slot : slots_) {
      if (slot.state == SlotState::wanted) slot_release(&slot);
    }
    TALLY_ASSERT(wanted_count() == 0);
    invariants();
  }

  bool active() const { return phase_ != Phase::idle; }
  bool idle() const { return in_flight_ == 0; }
  u64 op() const { return op_; }
  u64 pieces_fetched() const { return pieces_fetched_; }
  u64 pieces_found() const { return pieces_found_; }
  // The used bytes of the pieces fetched (what a sync moves over the network).
  u64 bytes_fetched() const { return bytes_fetched_; }
  u32 replies_left_out() const { return replies_left_out_; }

  // The pieces to ask peers for now: those never asked for, and those asked for resend_ticks
  // ago without an answer.
  template <typename Visit>
  void wants(const Visit& visit) {
    for (Slot& slot : slots_) {
      if (slot.state != SlotState::wanted) continue;
      TALLY_ASSERT(active());  // abort() gave up every wanted piece.
      if (slot.asked > 0 && slot.since_asked < resend_ticks) continue;
      // What the peer's validate_get_blocks() accepts: a checksum, and an index within the
      // grid or the sessions (piece_start() took it from a reference in range).
      TALLY_ASSERT(slot.checksum != 0);
      TALLY_ASSERT(slot.kind == BlockKind::reply ? slot.index < clients_max_
                                                 : slot.index < layout_.config().grid_block_count);
      visit(BlockWant{.kind = slot.kind, .index = slot.index, .checksum = slot.checksum,
                      .asked = slot.asked});
      slot.asked += 1;
      slot.since_asked = 0;
    }
  }

  // Every tick: replies that no peer supplied are left out (see the file comment).
  void tick() {
    if (!active()) return;
    for (Slot& slot : slots_) {
      if (slot.state != SlotState::wanted) continue;
      slot.since_asked += 1;
      slot.wanted_ticks += 1;
      if (slot.kind != BlockKind::reply) continue;
      const bool every_peer_asked =
          slot.asked >= reply_asks_max_ && slot.since_asked >= resend_ticks;
      if (!every_peer_asked && slot.wanted_ticks < reply_wait_ticks) continue;
      TALLY_ASSERT(phase_ == Phase::replies);  // Only replies are ever left out.
      replies_left_out_ += 1;
      // Each session's reply is walked once per target: left out at most once.
      TALLY_ASSERT(replies_left_out_ <= clients_max_);
      slot_release(&slot);
    }
    pump();
    invariants();
  }

  // A peer's answer. Taken if a slot wants exactly this piece and the data is it: then it is
  // written in place. False if not taken (unwanted, duplicate, or not the piece).
  bool on_block(BlockKind kind, u32 index, u128 checksum, std::span<const std::byte> data) {
    // Validated, and a checkpoint's reference goes to the replica's target search instead.
    TALLY_ASSERT(checksum != 0 && kind != BlockKind::checkpoint);
    if (!active()) return false;
    for (Slot& slot : slots_) {
      if (slot.state != SlotState::wanted || slot.kind != kind || slot.index != index ||
          slot.checksum != checksum) {
        continue;
      }
      std::span<std::byte> buffer = slot_buffer(slot);
      // A reply comes as its body alone (a whole-size reply and a header would not fit one
      // message): its header is the sessions entry's.
      const u32 prefix = kind == BlockKind::reply ? header_size : 0;
      if (prefix + data.size() > buffer.size()) return false;
      if (kind == BlockKind::reply) {
        // The slot's own entry (piece_start() of session_next_).
        TALLY_ASSERT(index < clients_max_ && slot.number == 0);
        std::memcpy(buffer.data(), &sessions_[index].reply, header_size);
      }
      std::memcpy(buffer.data() + prefix, data.data(), data.size());
      std::memset(buffer.data() + prefix + data.size(), 0,
                  buffer.size() - prefix - data.size());
      const u32 size = block_piece_intact(kind, buffer.first(prefix + data.size()), checksum);
      if (size == 0) return false;
      // A reply verified against its entry's header checksum is that header's size: what the
      // sessions name is what is written.
      TALLY_ASSERT(kind != BlockKind::reply || size == sessions_[index].reply.size);
      pieces_fetched_ += 1;
      bytes_fetched_ += size;
      slot_write(&slot, size);
      invariants();
      return true;
    }
    return false;
  }

 private:
  enum class Phase : u8 { idle, manifest, state, sessions, replies, done };
  enum class SlotState : u8 { free, reading, wanted, writing };

  struct Slot {
    typename S::Read read;
    typename S::Write write;
    CheckpointSync* sync = nullptr;
    u32 number = 0;  // Its place in slots_, which is its buffer's.
    SlotState state = SlotState::free;
    BlockKind kind = BlockKind::reserved;
    u32 index = 0;
    u128 checksum = 0;
    u32 asked = 0;
    u32 since_asked = 0;
    u32 wanted_ticks = 0;
  };

  // The file comment's invariants, after every step of the walk (O(slot_count)): one I/O in
  // flight per slot reading or writing; slot 0 for replies only; while walking, the slots in use
  // hold pieces of the phase's kind (a manifest or sessions block alone); a piece's ticks since
  // it was last asked for are within those since it was wanted; once aborted, nothing is wanted.
  void invariants() const {
    TALLY_ASSERT(in_flight_ <= slot_count);
    TALLY_ASSERT(!invalid_ || !active());
    TALLY_ASSERT(phase_ != Phase::done);  // Passed within pump(): the callback runs at once.
    TALLY_ASSERT(manifest_position_ <= manifest_count_ && session_next_ <= clients_max_);
    TALLY_ASSERT(!active() || manifest_index_ <= target_.manifest_block_count);
    TALLY_ASSERT(phase_ != Phase::state || manifest_ready_);
    // The kind of piece the walk's phase reads.
    const BlockKind phase_kind = phase_ == Phase::state     ? BlockKind::grid_state
                                 : phase_ == Phase::replies ? BlockKind::reply
                                                            : BlockKind::grid_vsr;
    u32 busy = 0;
    u32 used = 0;
    for (const Slot& slot : slots_) {
      if (slot.state == SlotState::free) continue;
      used += 1;
      busy += slot.state == SlotState::reading || slot.state == SlotState::writing ? 1 : 0;
      TALLY_ASSERT((slot.number == 0) == (slot.kind == BlockKind::reply));
      TALLY_ASSERT(slot.since_asked <= slot.wanted_ticks);
      TALLY_ASSERT(slot.state != SlotState::wanted || active());
      TALLY_ASSERT(!active() || slot.kind == phase_kind);
    }
    TALLY_ASSERT(busy == in_flight_);
    TALLY_ASSERT(used <= 1 || phase_ == Phase::state || !active());
    // A walk has a target (start()).
    TALLY_ASSERT(!active() || (op_ > 0 && target_.prepare_checksum != 0));
  }

  std::span<std::byte> slot_buffer(const Slot& slot) {
    TALLY_ASSERT(slot.number < slot_count);
    if (slot.number == 0) return {buffers_.data(), message_size_max};
    std::byte* data = buffers_.data() + message_size_max + u64{slot.number - 1} * block_size;
    // Read and written with O_DIRECT: on a sector, as the pages and the sizes are.
    TALLY_ASSERT(reinterpret_cast<std::uintptr_t>(data) % journal::sector_size == 0);
    return {data, block_size};
  }

  u32 wanted_count() const {
    u32 count = 0;
    for (const Slot& slot : slots_) count += slot.state == SlotState::wanted ? 1 : 0;
    return count;
  }

  bool slots_all_free() const {
    for (const Slot& slot : slots_) {
      if (slot.state != SlotState::free) return false;
    }
    return true;
  }

  Slot* slot_acquire(bool reply) {
    for (u32 number = 0; number < slot_count; number += 1) {
      Slot& slot = slots_[number];
      // Replies need slot 0's whole-message buffer; grid blocks leave slot 0 to them.
      if (reply != (number == 0)) continue;
      if (slot.state != SlotState::free) continue;
      TALLY_ASSERT(slot.number == number);
      slot.asked = 0;
      slot.since_asked = 0;
      slot.wanted_ticks = 0;
      return &slot;
    }
    return nullptr;
  }

  void slot_release(Slot* slot) {
    TALLY_ASSERT(slot->number < slot_count && slot == &slots_[slot->number]);
    TALLY_ASSERT(slot->state == SlotState::wanted || slot->state == SlotState::reading ||
                 slot->state == SlotState::writing);
    slot->state = SlotState::free;
  }

  u64 piece_offset(const Slot& slot) const {
    if (slot.kind == BlockKind::reply) {
      TALLY_ASSERT(slot.index < clients_max_);
      return layout_.client_reply_offset(slot.index);
    }
    TALLY_ASSERT(slot.index < layout_.config().grid_block_count);
    return layout_.grid_block_offset(slot.index);
  }

  // Reads this data file's copy of a piece, to see whether it is here already.
  void piece_start(BlockKind kind, u32 index, u128 checksum, u32 reply_size) {
    // Only while walking, and only for a piece its reference names (reference_in_range(),
    // reply_expected()).
    TALLY_ASSERT(active());
    TALLY_ASSERT(checksum != 0);
    Slot* slot = slot_acquire(kind == BlockKind::reply);
    TALLY_ASSERT(slot != nullptr);
    // A free slot: fewer than slot_count pieces in flight (the file comment's bound).
    TALLY_ASSERT(in_flight_ < slot_count);
    slot->kind = kind;
    slot->index = index;
    slot->checksum = checksum;
    slot->state = SlotState::reading;
    u32 size = block_size;
    if (kind == BlockKind::reply) {
      TALLY_ASSERT(reply_size >= header_size && reply_size <= message_size_max);
      size = journal::sector_ceil(reply_size);
    }
    TALLY_ASSERT(size <= slot_buffer(*slot).size());  // Slot 0 holds a whole message.
    in_flight_ += 1;
    storage_.read(&slot->read, read_callback, slot_buffer(*slot).first(size),
                  piece_offset(*slot));
  }

  static void read_callback(typename S::Read* read) {
    auto* slot = static_cast<Slot*>(read->context);
    CheckpointSync* self = slot->sync;
    TALLY_ASSERT(read == &slot->read);
    TALLY_ASSERT(slot->state == SlotState::reading && self->in_flight_ > 0);
    self->in_flight_ -= 1;
    if (!self->active()) {
      self->slot_release(slot);
      return;
    }
    // Verified here, taken in from the slot's buffer (piece_done()): the same bytes.
    TALLY_ASSERT(read->buffer.data() == self->slot_buffer(*slot).data());
    const bool ok = read->result == journal::ReadResult::ok &&
                    block_piece_intact(slot->kind, read->buffer, slot->checksum) != 0;
    if (ok) {
      self->pieces_found_ += 1;
      self->piece_done(slot);
    } else {
      slot->state = SlotState::wanted;  // The replica asks peers (wants()).
      self->wanted_(self->context_);
    }
    self->pump();
    self->invariants();
  }

  void slot_write(Slot* slot, u32 size) {
    TALLY_ASSERT(slot->state == SlotState::wanted && size > 0);
    TALLY_ASSERT(active());  // An answer is taken only while walking (on_block()).
    // A grid block goes whole (zeros after its used bytes, as on_block() left the buffer): a
    // damaged sector past the used bytes fails every read of the block, which is read whole.
    const u32 padded = slot->kind == BlockKind::reply ? journal::sector_ceil(size) : block_size;
    TALLY_ASSERT(padded <= slot_buffer(*slot).size());
    slot->state = SlotState::writing;
    in_flight_ += 1;
    storage_.write(&slot->write, write_callback, slot_buffer(*slot).first(padded),
                   piece_offset(*slot));
  }

  static void write_callback(typename S::Write* write) {
    auto* slot = static_cast<Slot*>(write->context);
    CheckpointSync* self = slot->sync;
    TALLY_ASSERT(write == &slot->write);
    TALLY_ASSERT(slot->state == SlotState::writing && self->in_flight_ > 0);
    // Written from the slot's buffer, which piece_done() takes a manifest or sessions block from.
    TALLY_ASSERT(write->data.data() == self->slot_buffer(*slot).data());
    self->in_flight_ -= 1;
    if (!self->active()) {
      self->slot_release(slot);
      return;
    }
    self->piece_done(slot);
    self->pump();
    self->invariants();
  }

  // A piece is here, verified: manifest and sessions blocks are taken in before the slot goes.
  void piece_done(Slot* slot) {
    // Done by its own read (found here) or write (fetched), never while only wanted.
    TALLY_ASSERT(slot->state == SlotState::reading || slot->state == SlotState::writing);
    if (phase_ == Phase::manifest) {
      TALLY_ASSERT(slot->kind == BlockKind::grid_vsr && !manifest_ready_);
      manifest_take(slot_buffer(*slot));
    } else if (phase_ == Phase::sessions) {
      TALLY_ASSERT(slot->kind == BlockKind::grid_vsr);
      sessions_take(slot_buffer(*slot));
    }
    slot_release(slot);
  }

  void manifest_take(std::span<const std::byte> block) {
    TALLY_ASSERT(manifest_index_ < target_.manifest_block_count);
    const std::span<const std::byte> payload =
        grid_block_verify(block, target_.manifest[manifest_index_], GridBlockKind::manifest,
                          manifest_index_);
    // Verified by checksum against the target's own reference: what the peer's checkpoint
    // wrote, so whole references (checked for range as they are walked). Anything else came
    // with a forged target: refused, not asserted.
    if (payload.size() % sizeof(BlockReference) != 0) {
      abort_invalid();
      return;
    }
    TALLY_ASSERT(payload.size() <= manifest_.capacity());
    std::memcpy(manifest_.data(), payload.data(), payload.size());
    manifest_count_ = static_cast<u32>(payload.size() / sizeof(BlockReference));
    // The payload is within one grid block after its header (grid_block_verify()).
    TALLY_ASSERT(manifest_count_ <= manifest_references_per_block);
    manifest_position_ = 0;
    manifest_ready_ = true;
    phase_ = Phase::state;
  }

  void sessions_take(std::span<const std::byte> block) {
    // The target names a sessions block (pump() skips the phase otherwise).
    TALLY_ASSERT(phase_ == Phase::sessions && target_.sessions.checksum != 0);
    const std::span<const std::byte> payload =
        grid_block_verify(block, target_.sessions, GridBlockKind::sessions, 0);
    const u64 entries = payload.size() / sizeof(ClientSession);
    for (u32 index = 0; index < clients_max_; index += 1) {
      ClientSession entry{};
      if (index < entries) {
        std::memcpy(&entry, payload.data() + u64{index} * sizeof(entry), sizeof(entry));
      }
      sessions_[index] = entry;
    }
    session_next_ = 0;
    phase_ = Phase::replies;
  }

  // Issues what the walk allows now; finishes when nothing is left.
  void pump() {
    while (active()) {
      switch (phase_) {
        case Phase::manifest: {
          if (!slots_all_free()) return;
          if (manifest_index_ == target_.manifest_block_count) {
            phase_ = Phase::sessions;
            continue;
          }
          manifest_ready_ = false;
          TALLY_ASSERT(manifest_index_ < manifest_blocks_max);  // The superblock's array.
          const BlockReference& reference = target_.manifest[manifest_index_];
          if (!reference_in_range(reference)) return abort_invalid();
          piece_start(BlockKind::grid_vsr, reference.address, reference.checksum, 0);
          return;
        }
        case Phase::state: {
          if (manifest_position_ == manifest_count_) {
            if (!slots_all_free()) return;
            manifest_index_ += 1;
            phase_ = Phase::manifest;
            continue;
          }
          TALLY_ASSERT(manifest_ready_);  // Its references are the manifest block's.
          Slot* slot = slot_acquire(false);
          if (slot == nullptr) return;
          // The reference copied next lies within the manifest block held.
          TALLY_ASSERT(u64{manifest_position_ + 1} * sizeof(BlockReference) <=
                       manifest_.capacity());
          BlockReference reference;
          std::memcpy(&reference,
                      manifest_.data() + u64{manifest_position_} * sizeof(BlockReference),
                      sizeof(reference));
          if (!reference_in_range(reference)) return abort_invalid();
          manifest_position_ += 1;
          piece_start(BlockKind::grid_state, reference.address, reference.checksum, 0);
          continue;
        }
        case Phase::sessions: {
          if (!slots_all_free()) return;
          if (target_.sessions.checksum == 0) {
            phase_ = Phase::done;
            continue;
          }
          if (!reference_in_range(target_.sessions)) return abort_invalid();
          piece_start(BlockKind::grid_vsr, target_.sessions.address, target_.sessions.checksum,
                      0);
          return;
        }
        case Phase::replies: {
          if (!slots_all_free()) return;
          while (session_next_ < clients_max_ && !reply_expected(sessions_[session_next_])) {
            session_next_ += 1;
          }
          if (session_next_ == clients_max_) {
            phase_ = Phase::done;
            continue;
          }
          const ClientSession& entry = sessions_[session_next_];
          piece_start(BlockKind::reply, session_next_, entry.reply.checksum, entry.reply.size);
          session_next_ += 1;
          return;
        }
        case Phase::done: {
          if (!slots_all_free()) return;
          TALLY_ASSERT(in_flight_ == 0);  // Every piece is here, written.
          phase_ = Phase::idle;
          callback_(context_);
          return;
        }
        case Phase::idle: return;
      }
    }
  }

  bool reference_in_range(const BlockReference& reference) const {
    return reference.checksum != 0 && reference.address < layout_.config().grid_block_count;
  }

  static bool reply_expected(const ClientSession& entry) {
    return entry.client != 0 && entry.reply.command == Command::reply &&
           entry.reply.checksum != 0 && entry.reply.size >= header_size &&
           entry.reply.size <= message_size_max;
  }

  // The target names a block outside the grid: not a checkpoint any replica wrote. The walk
  // stops (invalid()); the replica looks for another target. (Only a forged target could do
  // this: see docs/vsr-protocol.md, "Limits".)
  void abort_invalid() {
    TALLY_ASSERT(active());  // Found while walking the target.
    invalid_ = true;
    abort();
  }

 public:
  bool invalid() const { return invalid_; }

 private:
  S& storage_;
  journal::Layout layout_;
  u32 clients_max_;
  base::LargeArray<std::byte> buffers_;
  base::LargeArray<std::byte> manifest_;  // The manifest block being walked: its references.
  base::LargeArray<ClientSession> sessions_;
  Slot slots_[slot_count];
  u32 in_flight_ = 0;
  Phase phase_ = Phase::idle;
  bool invalid_ = false;
  u64 op_ = 0;
  CheckpointVsrState target_{};
  Callback callback_ = nullptr;
  Callback wanted_ = nullptr;
  void* context_ = nullptr;
  u32 manifest_index_ = 0;
  u32 manifest_position_ = 0;
  u32 manifest_count_ = 0;
  bool manifest_ready_ = false;
  u32 session_next_ = 0;
  u64 pieces_fetched_ = 0;
  u64 pieces_found_ = 0;
  u64 bytes_fetched_ = 0;
  u32 replies_left_out_ = 0;
  u32 reply_asks_max_ = 0;  // Asks of a reply before it is left out: every peer, and one more.
};

}  // namespace tally::vsr
