// CheckpointStore: writes a checkpoint's blocks to the grid and the client replies zone, and
// reads a durable checkpoint back into the state machine and the client sessions.
//
// Writing (write(), then the replica updates the superblock, then commit()):
//   1. every state-machine block that changed since the previous checkpoint, each to a fresh
//      grid address (copy-on-write, grid.hpp); blocks past a table's new end are released;
//   2. the client sessions block, and the reply of every session that replied since the
//      previous checkpoint (slot i of the client replies zone for entry i);
//   3. the manifest: every state block's reference, in blocks of their own.
// The callback runs once all of it is durable; vsr_state() is then what the superblock must
// record. Only after the superblock names it (commit()) do the replaced blocks become free.
// The state machine and the sessions must not change until the callback has run.
//
// Write-ahead (seal_ahead(), after every executed op): the full blocks of append-only tables
// never change again, so they are staged and written during normal operation, and the
// checkpoint is left with the blocks still changing (accounts, pending statuses, the expiry
// heap, the tails). Without it a checkpoint at full load writes about 1.5 GiB while execution
// waits. Addresses are staged per op, in op order, so replicas with the same history still lay
// out their grids the same way; only the writes themselves follow the slots. The blocks staged
// ahead are the next checkpoint's, copy-on-write like the rest: a crash before the superblock
// names it leaves them unreferenced (free again after the restart).
//
// Reading (open()): the manifest, every state block (verified against its reference, then
// handed to CheckpointRestorer), the sessions block, and each session's reply. A damaged
// manifest, state or sessions block ends the read early: the callback runs with damaged() set
// (the state machine then holds a partial state, which the next open() replaces whole), and the
// replica fetches the blocks from peers (replica_open.hpp). A damaged reply is counted
// (replies_damaged()): a cluster replica fetches it from peers the same way; until then, or for
// good on a single replica, that session's duplicate requests go unanswered (reply_available()).
//
// At most io_depth reads or writes are in flight; buffers are allocated at construction.
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
#include "src/state_machine/state_machine.hpp"
#include "src/vsr/checkpoint_format.hpp"
#include "src/vsr/client_sessions.hpp"
#include "src/vsr/grid.hpp"
#include "tally/header.hpp"
#include "tally/types.hpp"

namespace tally::vsr {

template <journal::Storage S>
class CheckpointStore {
 public:
  using Callback = void (*)(void* context);
  static constexpr u32 io_depth = 8;
  static constexpr u32 table_count = state_machine::checkpoint_table_count;

  CheckpointStore(S& storage, const journal::Layout& layout)
      : storage_(storage), layout_(layout) {
    TALLY_ASSERT(layout.config().grid_block_size == state_machine::checkpoint_block_size,
                 "grid blocks and state machine blocks must have the same size");
    const u64 block_count = layout.config().grid_block_count;
    free_set_.init(block_count);
    for (auto& table : manifest_) table.init(block_count);
    work_.init(block_count);
    buffers_.init(u64{io_depth} * block_size);
    for (IoSlot& slot : slots_) {
      slot.read.context = &slot;
      slot.write.context = &slot;
      slot.store = this;
    }
    std::memset(static_cast<void*>(&written_), 0, sizeof(written_));
    std::memset(static_cast<void*>(&durable_), 0, sizeof(durable_));
  }

  CheckpointStore(const CheckpointStore&) = delete;
  CheckpointStore& operator=(const CheckpointStore&) = delete;

  const GridFreeSet& free_set() const { return free_set_; }
  bool busy() const { return phase_ != Phase::idle; }
  // Nothing being written or read, the write-ahead's writes included.
  bool idle() const { return phase_ == Phase::idle && in_flight_ == 0; }

  // Forgets the durable checkpoint and what was staged ahead of the next (state sync: another
  // replica's checkpoint replaces it, and open() reads that one). Only while idle().
  void reset() {
    TALLY_ASSERT(idle());
    free_set_.clear();
    std::memset(static_cast<void*>(&written_), 0, sizeof(written_));
    std::memset(static_cast<void*>(&durable_), 0, sizeof(durable_));
    for (u32 table = 0; table < table_count; table += 1) {
      ahead_staged_[table] = 0;
      ahead_issued_[table] = 0;
    }
    ahead_state_machine_ = nullptr;
    work_count_ = 0;
    work_next_ = 0;
    replies_damaged_ = 0;
    damaged_address_.reset();
    TALLY_ASSERT(free_set_.acquired_count() == 0 && free_set_.staged_count() == 0);
  }
  // The checkpoint written by the last write(), for the superblock.
  const CheckpointVsrState& vsr_state() const {
    // Whole once written (or the durable one, between checkpoints).
    TALLY_ASSERT(phase_ == Phase::written || phase_ == Phase::idle);
    return written_;
  }
  u32 replies_damaged() const { return replies_damaged_; }
  // After open()'s callback: a block of the checkpoint did not verify (the first one found).
  bool damaged() const { return damaged_address_.has_value(); }
  u32 damaged_address() const {
    TALLY_ASSERT(damaged());
    return *damaged_address_;
  }
  // State blocks written by the write-ahead (seal_ahead()) since construction.
  u64 blocks_written_ahead() const { return blocks_written_ahead_; }

  // ---------------------------------------------------------------------------------------
  // Writing.

  void write(const state_machine::StateMachine& state_machine,
             const state_machine::Checkpointer& checkpointer, ClientSessions& sessions,
             u64 op_previous, u128 prepare_checksum, Callback callback, void* context) {
    TALLY_ASSERT(phase_ == Phase::idle);
    TALLY_ASSERT(callback != nullptr && prepare_checksum != 0);
    // The write-ahead encoded its blocks from this same state machine.
    TALLY_ASSERT(ahead_state_machine_ == nullptr || ahead_state_machine_ == &state_machine);
    // The durable checkpoint's manifest names every block of its tables (open() checked the
    // one it read, commit() the one written).
    TALLY_ASSERT(durable_.manifest_reference_count == reference_total(durable_.state_machine));
    invariants();
    state_machine_read_ = &state_machine;
    sessions_ = &sessions;
    callback_ = callback;
    context_ = context;
    op_previous_ = op_previous;

    std::memset(static_cast<void*>(&written_), 0, sizeof(written_));
    written_.prepare_checksum = prepare_checksum;
    written_.state_machine = state_machine::Checkpointer::state(state_machine);
    // Blocks past a table's new end (a table that shrank, like the expiry heap).
    for (u32 table = 0; table < table_count; table += 1) {
      const u32 now = block_count(written_.state_machine, table);
      const u32 before = block_count(durable_.state_machine, table);
      // The blocks staged ahead are blocks of this checkpoint (its manifest names them).
      TALLY_ASSERT(ahead_staged_[table] <= now);
      for (u32 index = now; index < before; index += 1) {
        free_set_.release_at_commit(manifest_[table][index].address);
      }
    }
    work_count_ = 0;
    checkpointer.blocks_changed(state_machine, [this](state_machine::CheckpointTable table,
                                                      u32 index) {
      // Staged by the write-ahead already: write_pump() finishes writing those first.
      if (state_machine::checkpoint_table_append_only(table) &&
          index < ahead_staged_[static_cast<u32>(table)]) {
        return;
      }
      TALLY_ASSERT(work_count_ < work_.capacity());
      TALLY_ASSERT(index < block_count(written_.state_machine, static_cast<u32>(table)));
      work_[work_count_] = (u64{static_cast<u32>(table)} << 32) | index;
      work_count_ += 1;
    });
    TALLY_ASSERT(work_count_ <= reference_total(written_.state_machine));
    work_next_ = 0;
    session_next_ = 0;
    manifest_next_ = 0;
    phase_ = Phase::write_state;
    write_pump();
  }

  // After every executed op, while no checkpoint is being written: stages a grid address for
  // each block of an append-only table that has become full, and writes what the free slots
  // allow (the rest as writes complete, or at the latest in the next write()).
  void seal_ahead(const state_machine::StateMachine& state_machine,
                  const state_machine::Checkpointer& checkpointer) {
    TALLY_ASSERT(phase_ == Phase::idle);
    TALLY_ASSERT(ahead_state_machine_ == nullptr || ahead_state_machine_ == &state_machine);
    ahead_state_machine_ = &state_machine;
    for (u32 table = 0; table < table_count; table += 1) {
      const auto kind = static_cast<state_machine::CheckpointTable>(table);
      if (!state_machine::checkpoint_table_append_only(kind)) continue;
      const state_machine::Checkpointer::BlockRange sealed =
          checkpointer.blocks_sealed(state_machine, kind);
      TALLY_ASSERT(sealed.begin <= sealed.end);
      // Cursors left behind by the previous checkpoint move up to its end.
      if (ahead_staged_[table] < sealed.begin) ahead_staged_[table] = sealed.begin;
      if (ahead_issued_[table] < sealed.begin) ahead_issued_[table] = sealed.begin;
      for (u32 index = ahead_staged_[table]; index < sealed.end; index += 1) {
        // The durable checkpoint's partial last block, now full, is replaced.
        if (index < block_count(durable_.state_machine, table)) {
          free_set_.release_at_commit(manifest_[table][index].address);
        }
        // The checksum follows when the block is encoded (ahead_pump()).
        manifest_[table][index] = BlockReference{.checksum = 0, .address = stage_or_stop(),
                                                 .reserved = {}};
      }
      if (ahead_staged_[table] < sealed.end) ahead_staged_[table] = sealed.end;
    }
    ahead_pump();
    invariants();
  }

  // The superblock names the checkpoint written last: replaced blocks are free again.
  void commit() {
    TALLY_ASSERT(phase_ == Phase::written);
    // Every write of the checkpoint is durable, and nothing else started since.
    TALLY_ASSERT(in_flight_ == 0);
    free_set_.checkpoint_commit();
    durable_ = written_;
    phase_ = Phase::idle;
    TALLY_ASSERT(durable_.manifest_reference_count == reference_total(durable_.state_machine));
    // Acquired is exactly what the durable checkpoint references, as open() rebuilds it after a
    // restart (read_pump()): the sessions block, the manifest blocks and the blocks they name.
    TALLY_ASSERT(free_set_.acquired_count() == u64{1} + durable_.manifest_block_count +
                                                   durable_.manifest_reference_count);
    invariants();
  }

  // ---------------------------------------------------------------------------------------
  // Reading.

  void open(const CheckpointVsrState& state, state_machine::StateMachine& state_machine,
            ClientSessions& sessions, Callback callback, void* context) {
    TALLY_ASSERT(phase_ == Phase::idle && in_flight_ == 0);
    TALLY_ASSERT(callback != nullptr);
    // Into a store that holds no checkpoint: every block the one read names becomes acquired.
    TALLY_ASSERT(free_set_.acquired_count() == 0 && free_set_.staged_count() == 0);
    state_machine_write_ = &state_machine;
    sessions_ = &sessions;
    callback_ = callback;
    context_ = context;
    durable_ = state;
    written_ = state;
    if (state.manifest_block_count > manifest_blocks_max) {
      base::fatal(base::FatalReason::data_file_invalid,
                  "the checkpoint names %u manifest blocks (at most %u)",
                  state.manifest_block_count, manifest_blocks_max);
    }
    if (!state_machine::CheckpointRestorer::begin(state_machine, state.state_machine)) {
      base::fatal(base::FatalReason::configuration_invalid,
                  "the checkpoint was written with other state machine capacities");
    }
    damaged_address_.reset();
    reference_acquire(state.sessions.address);
    for (u32 index = 0; index < state.manifest_block_count; index += 1) {
      reference_acquire(state.manifest[index].address);
    }
    // Each a distinct block (reference_acquire() stops on a second reference to one).
    TALLY_ASSERT(free_set_.acquired_count() == u64{1} + state.manifest_block_count);
    manifest_next_ = 0;
    phase_ = Phase::read_manifest;
    read_pump();
  }

 private:
  static constexpr u32 block_size = state_machine::checkpoint_block_size;

  enum class Phase : u8 {
    idle,
    write_state,
    write_sessions,
    write_replies,
    write_manifest,
    written,
    read_manifest,
    read_state,
    read_sessions,
    read_replies,
  };

  struct IoSlot {
    typename S::Read read;
    typename S::Write write;
    CheckpointStore* store = nullptr;
    bool busy = false;
    u32 buffer_index = 0;
    u64 tag = 0;  // What the I/O is for (phase-specific).
  };

  static u32 block_count(const state_machine::CheckpointState& state, u32 table) {
    TALLY_ASSERT(table < table_count);
    return state_machine::checkpoint_block_count(
        state, static_cast<state_machine::CheckpointTable>(table));
  }

  u32 reference_total(const state_machine::CheckpointState& state) const {
    u32 total = 0;
    for (u32 table = 0; table < table_count; table += 1) total += block_count(state, table);
    return total;
  }

  std::span<std::byte> buffer(u32 index) {
    TALLY_ASSERT(index < io_depth);  // Addressed by hand, past the array's own bounds check.
    std::byte* data = buffers_.data() + u64{index} * block_size;
    // Read and written with O_DIRECT: on a sector, as the pages and block_size are.
    TALLY_ASSERT(reinterpret_cast<std::uintptr_t>(data) % journal::sector_size == 0);
    return {data, block_size};
  }

  IoSlot* slot_acquire() {
    TALLY_ASSERT(in_flight_ <= io_depth);
    for (u32 index = 0; index < io_depth; index += 1) {
      if (!slots_[index].busy) {
        slots_[index].busy = true;
        slots_[index].buffer_index = index;
        in_flight_ += 1;
        return &slots_[index];
      }
    }
    // Every slot busy: the count agrees.
    TALLY_ASSERT(in_flight_ == io_depth);
    return nullptr;
  }

  void slot_release(IoSlot* slot) {
    TALLY_ASSERT(slot >= slots_ && slot < slots_ + io_depth && slot->store == this);
    TALLY_ASSERT(slot->busy && in_flight_ > 0);
    slot->busy = false;
    in_flight_ -= 1;
  }

  u32 stage_or_stop() {
    // Only the write-ahead (between checkpoints) and a checkpoint being written take blocks.
    TALLY_ASSERT(phase_ == Phase::idle || phase_ == Phase::write_state ||
                 phase_ == Phase::write_sessions || phase_ == Phase::write_manifest);
    const std::optional<u32> address = free_set_.stage();
    if (!address.has_value()) {
      base::fatal(base::FatalReason::no_space,
                  "the data file's grid (%lu blocks) is full: the checkpoint needs more blocks",
                  static_cast<unsigned long>(free_set_.block_count()));
    }
    // Copy-on-write: a block for the next checkpoint, none the durable one references.
    TALLY_ASSERT(free_set_.staged(*address));
    return *address;
  }

  void grid_write(IoSlot* slot, u32 address, u32 size) {
    TALLY_ASSERT(slot->busy && size > 0 && size <= block_size);
    // Copy-on-write: a block staged for the next checkpoint, never one the durable checkpoint
    // references.
    TALLY_ASSERT(free_set_.staged(address), "grid block %u is not staged", address);
    const u32 padded = journal::sector_ceil(size);
    std::span<std::byte> data = buffer(slot->buffer_index);
    TALLY_ASSERT(padded <= data.size());  // Grid blocks are whole sectors.
    std::memset(data.data() + size, 0, padded - size);
    storage_.write(&slot->write, write_callback, data.first(padded),
                   layout_.grid_block_offset(address));
  }

  // Writes the blocks staged ahead, while slots are free. True once all are issued.
  bool ahead_pump() {
    for (u32 table = 0; table < table_count; table += 1) {
      while (ahead_issued_[table] < ahead_staged_[table]) {
        TALLY_ASSERT(ahead_state_machine_ != nullptr);
        TALLY_ASSERT(state_machine::checkpoint_table_append_only(
            static_cast<state_machine::CheckpointTable>(table)));
        IoSlot* slot = slot_acquire();
        if (slot == nullptr) return false;
        const u32 index = ahead_issued_[table];
        ahead_issued_[table] += 1;
        const u32 size = state_machine::Checkpointer::block_encode(
            *ahead_state_machine_, static_cast<state_machine::CheckpointTable>(table), index,
            buffer(slot->buffer_index));
        BlockReference& reference = manifest_[table][index];
        // Staged by seal_ahead() with its checksum to come: each block is encoded once.
        TALLY_ASSERT(reference.checksum == 0);
        std::memcpy(&reference.checksum, buffer(slot->buffer_index).data(),
                    sizeof(reference.checksum));
        TALLY_ASSERT(reference.checksum != 0);  // Encoded: no longer the placeholder.
        grid_write(slot, reference.address, size);
        blocks_written_ahead_ += 1;
      }
    }
    return true;
  }

  // Issues writes, phase by phase, while slots are free.
  void write_pump() {
    while (true) {
      if (phase_ == Phase::write_state) {
        if (!ahead_pump()) return;
        if (work_next_ == work_count_) {
          phase_ = Phase::write_sessions;
          continue;
        }
        IoSlot* slot = slot_acquire();
        if (slot == nullptr) return;
        const u64 item = work_[work_next_];
        work_next_ += 1;
        const u32 table = static_cast<u32>(item >> 32);
        const u32 index = static_cast<u32>(item);
        TALLY_ASSERT(index < block_count(written_.state_machine, table));
        // A block staged ahead is ahead_pump()'s to write, not written a second time.
        TALLY_ASSERT(!state_machine::checkpoint_table_append_only(
                         static_cast<state_machine::CheckpointTable>(table)) ||
                     index >= ahead_staged_[table]);
        const u32 size = state_machine::Checkpointer::block_encode(
            *state_machine_read_, static_cast<state_machine::CheckpointTable>(table), index,
            buffer(slot->buffer_index));
        u128 checksum = 0;
        std::memcpy(&checksum, buffer(slot->buffer_index).data(), sizeof(checksum));
        if (index < block_count(durable_.state_machine, table)) {
          free_set_.release_at_commit(manifest_[table][index].address);
        }
        const u32 address = stage_or_stop();
        manifest_[table][index] = BlockReference{.checksum = checksum, .address = address,
                                                 .reserved = {}};
        grid_write(slot, address, size);
      } else if (phase_ == Phase::write_sessions) {
        IoSlot* slot = slot_acquire();
        if (slot == nullptr) return;
        const std::span<const ClientSession> entries = sessions_->entries();
        std::span<std::byte> data = buffer(slot->buffer_index);
        const u32 size = static_cast<u32>(entries.size_bytes());
        TALLY_ASSERT(grid_block_header_size + size <= block_size);
        std::memcpy(data.data() + grid_block_header_size, entries.data(), size);
        const u128 checksum = grid_block_seal(data, GridBlockKind::sessions, 0, size);
        // A checksum of 0 would read as "no sessions block" (read_pump()).
        TALLY_ASSERT(checksum != 0);
        if (durable_.sessions.checksum != 0) {
          free_set_.release_at_commit(durable_.sessions.address);
        }
        const u32 address = stage_or_stop();
        written_.sessions = BlockReference{.checksum = checksum, .address = address,
                                           .reserved = {}};
        grid_write(slot, address, grid_block_header_size + size);
        phase_ = Phase::write_replies;
      } else if (phase_ == Phase::write_replies) {
        if (session_next_ == sessions_->capacity()) {
          phase_ = Phase::write_manifest;
          written_.manifest_reference_count = reference_total(written_.state_machine);
          written_.manifest_block_count =
              (written_.manifest_reference_count + manifest_references_per_block - 1) /
              manifest_references_per_block;
          if (written_.manifest_block_count > manifest_blocks_max) {
            base::fatal(base::FatalReason::no_space,
                        "the checkpoint needs %u manifest blocks, the superblock holds %u",
                        written_.manifest_block_count, manifest_blocks_max);
          }
          for (u32 index = 0; index < durable_.manifest_block_count; index += 1) {
            free_set_.release_at_commit(durable_.manifest[index].address);
          }
          continue;
        }
        const u32 index = session_next_;
        const ClientSession& entry = sessions_->entry(index);
        if (entry.client == 0 || entry.reply_op <= op_previous_) {
          session_next_ += 1;
          continue;
        }
        IoSlot* slot = slot_acquire();
        if (slot == nullptr) return;
        session_next_ += 1;
        // Recorded since the previous checkpoint (reply_record()): its buffer holds it.
        TALLY_ASSERT(sessions_->reply_available(index));
        std::span<std::byte> reply = sessions_->reply_buffer(index);
        const u32 size = entry.reply.size;
        const u32 padded = journal::sector_ceil(size);
        TALLY_ASSERT(size >= header_size && padded <= reply.size());
        std::memset(reply.data() + size, 0, padded - size);
        storage_.write(&slot->write, write_callback, reply.first(padded),
                       layout_.client_reply_offset(index));
      } else if (phase_ == Phase::write_manifest) {
        if (manifest_next_ == written_.manifest_block_count) {
          if (in_flight_ == 0) {
            // All the checkpoint names is durable, the blocks written ahead among it.
            TALLY_ASSERT(work_next_ == work_count_);
            for (u32 table = 0; table < table_count; table += 1) {
              TALLY_ASSERT(ahead_issued_[table] == ahead_staged_[table]);
            }
            phase_ = Phase::written;
            callback_(context_);
          }
          return;
        }
        IoSlot* slot = slot_acquire();
        if (slot == nullptr) return;
        const u32 block = manifest_next_;
        manifest_next_ += 1;
        const u32 first = block * manifest_references_per_block;
        // Fewer blocks than ceil(references / per block): this one's first reference exists,
        // and the count below does not wrap.
        TALLY_ASSERT(first < written_.manifest_reference_count);
        u32 count = written_.manifest_reference_count - first;
        if (count > manifest_references_per_block) count = manifest_references_per_block;
        TALLY_ASSERT(block < manifest_blocks_max && count > 0);
        std::span<std::byte> data = buffer(slot->buffer_index);
        for (u32 position = 0; position < count; position += 1) {
          const BlockReference reference = manifest_flat(first + position);
          std::memcpy(data.data() + grid_block_header_size + u64{position} * sizeof(reference),
                      &reference, sizeof(reference));
        }
        const u32 size = count * static_cast<u32>(sizeof(BlockReference));
        const u128 checksum = grid_block_seal(data, GridBlockKind::manifest, block, size);
        TALLY_ASSERT(checksum != 0);  // A reference's 0 names no block (reference_in_range()).
        const u32 address = stage_or_stop();
        written_.manifest[block] = BlockReference{.checksum = checksum, .address = address,
                                                  .reserved = {}};
        grid_write(slot, address, grid_block_header_size + size);
      } else {
        return;
      }
    }
  }

  // The reference at `position` of the flattened manifest: table by table, block by block.
  BlockReference manifest_flat(u32 position) const {
    TALLY_ASSERT(phase_ == Phase::write_manifest);
    TALLY_ASSERT(position < written_.manifest_reference_count);
    for (u32 table = 0; table < table_count; table += 1) {
      const u32 count = block_count(written_.state_machine, table);
      if (position < count) return manifest_[table][position];
      position -= count;
    }
    TALLY_UNREACHABLE();
  }

  // While reading, written_ is the checkpoint being read (open()).
  BlockReference& manifest_flat_mutable(u32 position) {
    TALLY_ASSERT(phase_ == Phase::read_manifest || phase_ == Phase::read_state);
    for (u32 table = 0; table < table_count; table += 1) {
      const u32 count = block_count(written_.state_machine, table);
      if (position < count) return manifest_[table][position];
      position -= count;
    }
    TALLY_UNREACHABLE();
  }

  static void write_callback(typename S::Write* write) {
    auto* slot = static_cast<IoSlot*>(write->context);
    CheckpointStore* self = slot->store;
    TALLY_ASSERT(write == &slot->write);
    // Writes: the write-ahead's between checkpoints, a checkpoint's while it is written.
    TALLY_ASSERT(self->phase_ == Phase::idle || self->phase_ == Phase::write_state ||
                 self->phase_ == Phase::write_sessions || self->phase_ == Phase::write_replies ||
                 self->phase_ == Phase::write_manifest);
    self->slot_release(slot);
    if (self->phase_ == Phase::idle) {
      self->ahead_pump();
    } else {
      self->write_pump();
    }
  }

  // ---------------------------------------------------------------------------------------
  // Reading.

  void reference_acquire(u32 address) {
    TALLY_ASSERT(phase_ == Phase::idle || phase_ == Phase::read_manifest);
    if (address >= free_set_.block_count() || free_set_.acquired(address)) {
      base::fatal(base::FatalReason::data_file_invalid,
                  "the checkpoint references grid block %u twice or out of range", address);
    }
    free_set_.mark_acquired(address);
  }

  void grid_read(IoSlot* slot, u32 address) {
    TALLY_ASSERT(slot->busy);
    // Only blocks the checkpoint names, each marked acquired before it is read.
    TALLY_ASSERT(free_set_.acquired(address), "grid block %u is not the checkpoint's", address);
    storage_.read(&slot->read, read_callback, buffer(slot->buffer_index),
                  layout_.grid_block_offset(address));
  }

  void read_pump() {
    while (true) {
      if (damaged_address_.has_value()) {
        // The read ends once its I/O in flight has completed (read_done() ignores those).
        if (in_flight_ > 0) return;
        phase_ = Phase::idle;
        callback_(context_);
        return;
      }
      if (phase_ == Phase::read_manifest) {
        // One manifest block at a time: the references land in order.
        if (in_flight_ > 0) return;
        if (manifest_next_ == durable_.manifest_block_count) {
          if (durable_.manifest_reference_count != reference_total(durable_.state_machine)) {
            base::fatal(base::FatalReason::data_file_invalid,
                        "the checkpoint's manifest does not match its table sizes");
          }
          phase_ = Phase::read_state;
          work_next_ = 0;
          work_count_ = durable_.manifest_reference_count;
          continue;
        }
        IoSlot* slot = slot_acquire();
        TALLY_ASSERT(slot != nullptr);  // Nothing else is in flight.
        // Within the superblock's references (open() stops on a count above them).
        TALLY_ASSERT(manifest_next_ < durable_.manifest_block_count &&
                     manifest_next_ < manifest_blocks_max);
        slot->tag = manifest_next_;
        grid_read(slot, durable_.manifest[manifest_next_].address);
        return;
      }
      if (phase_ == Phase::read_state) {
        if (work_next_ == work_count_) {
          if (in_flight_ > 0) return;
          state_machine::CheckpointRestorer::finish(*state_machine_write_,
                                                    durable_.state_machine);
          phase_ = Phase::read_sessions;
          continue;
        }
        IoSlot* slot = slot_acquire();
        if (slot == nullptr) return;
        slot->tag = work_next_;
        const BlockReference reference = manifest_flat_mutable(work_next_);
        work_next_ += 1;
        grid_read(slot, reference.address);
        continue;
      }
      if (phase_ == Phase::read_sessions) {
        if (in_flight_ > 0) return;
        if (durable_.sessions.checksum == 0) {
          phase_ = Phase::read_replies;
          session_next_ = 0;
          continue;
        }
        IoSlot* slot = slot_acquire();
        TALLY_ASSERT(slot != nullptr);  // Nothing else is in flight.
        grid_read(slot, durable_.sessions.address);
        return;
      }
      if (phase_ == Phase::read_replies) {
        if (session_next_ == sessions_->capacity()) {
          if (in_flight_ > 0) return;
          // Every block the checkpoint names is acquired, each once: the sessions block, the
          // manifest blocks, and the blocks they name.
          TALLY_ASSERT(free_set_.acquired_count() == u64{1} + durable_.manifest_block_count +
                                                         durable_.manifest_reference_count);
          phase_ = Phase::idle;
          callback_(context_);
          return;
        }
        const u32 index = session_next_;
        const ClientSession& entry = sessions_->entry(index);
        if (entry.client == 0) {
          session_next_ += 1;
          continue;
        }
        const u32 padded = journal::sector_ceil(entry.reply.size);
        if (entry.reply.size < header_size || padded > sessions_->reply_buffer(index).size()) {
          // A size no reply has (the sessions block came from a peer's checkpoint, or a bug):
          // the reply counts as damaged, and nothing is read.
          (void)sessions_->reply_verify(index);
          replies_damaged_ += 1;
          session_next_ += 1;
          continue;
        }
        IoSlot* slot = slot_acquire();
        if (slot == nullptr) return;
        session_next_ += 1;
        slot->tag = index;
        storage_.read(&slot->read, read_callback, sessions_->reply_buffer(index).first(padded),
                      layout_.client_reply_offset(index));
        continue;
      }
      return;
    }
  }

  static void read_callback(typename S::Read* read) {
    auto* slot = static_cast<IoSlot*>(read->context);
    CheckpointStore* self = slot->store;
    TALLY_ASSERT(read == &slot->read);
    TALLY_ASSERT(self->phase_ == Phase::read_manifest || self->phase_ == Phase::read_state ||
                 self->phase_ == Phase::read_sessions || self->phase_ == Phase::read_replies);
    // read_done() takes the blocks from the slot's buffer (a reply goes to its session's).
    TALLY_ASSERT(self->phase_ == Phase::read_replies ||
                 read->buffer.data() == self->buffer(slot->buffer_index).data());
    self->read_done(slot, read->result == journal::ReadResult::ok);
    self->slot_release(slot);
    self->read_pump();
  }

  void read_done(IoSlot* slot, bool read_ok) {
    TALLY_ASSERT(slot->busy);
    if (damaged_address_.has_value()) return;  // The read is over: reads in flight drain.
    const std::span<const std::byte> data = buffer(slot->buffer_index);
    switch (phase_) {
      case Phase::read_manifest: {
        const u32 block = static_cast<u32>(slot->tag);
        // One manifest block at a time, in order.
        TALLY_ASSERT(block == manifest_next_ && block < durable_.manifest_block_count);
        const std::span<const std::byte> payload =
            read_ok ? grid_block_verify(data, durable_.manifest[block], GridBlockKind::manifest,
                                        block)
                    : std::span<const std::byte>{};
        if (payload.empty() || payload.size() % sizeof(BlockReference) != 0) {
          damaged_address_ = durable_.manifest[block].address;
          return;
        }
        const u32 first = block * manifest_references_per_block;
        const u32 count = static_cast<u32>(payload.size() / sizeof(BlockReference));
        if (first + count > reference_total(durable_.state_machine)) {
          base::fatal(base::FatalReason::data_file_invalid,
                      "manifest block %u names more blocks than the checkpoint has", block);
        }
        for (u32 position = 0; position < count; position += 1) {
          BlockReference reference;
          std::memcpy(&reference, payload.data() + u64{position} * sizeof(reference),
                      sizeof(reference));
          reference_acquire(reference.address);
          manifest_flat_mutable(first + position) = reference;
        }
        manifest_next_ += 1;
        return;
      }
      case Phase::read_state: {
        TALLY_ASSERT(slot->tag < work_count_);
        const BlockReference reference = manifest_flat_mutable(static_cast<u32>(slot->tag));
        u128 checksum = 0;
        std::memcpy(&checksum, data.data(), sizeof(checksum));
        const state_machine::CheckpointBlockError error =
            read_ok && checksum == reference.checksum
                ? state_machine::CheckpointRestorer::block(*state_machine_write_,
                                                           durable_.state_machine, data)
                : state_machine::CheckpointBlockError::checksum_mismatch;
        if (error != state_machine::CheckpointBlockError::none) {
          // A block whose checksum verified but whose contents the state machine refuses was
          // written so by a bug, on every replica alike: no peer has a better copy.
          if (error != state_machine::CheckpointBlockError::checksum_mismatch) {
            base::fatal(base::FatalReason::data_file_invalid,
                        "grid block %u of the checkpoint verifies but does not restore (%s)",
                        reference.address, state_machine::checkpoint_block_error_name(error));
          }
          damaged_address_ = reference.address;
        }
        return;
      }
      case Phase::read_sessions: {
        const std::span<const std::byte> payload =
            read_ok ? grid_block_verify(data, durable_.sessions, GridBlockKind::sessions, 0)
                    : std::span<const std::byte>{};
        const u64 expected = u64{sessions_->capacity()} * sizeof(ClientSession);
        if (payload.size() != expected) {
          damaged_address_ = durable_.sessions.address;
          return;
        }
        // Copied out through memcpy: the block buffer is not aligned for ClientSession.
        for (u32 index = 0; index < sessions_->capacity(); index += 1) {
          ClientSession entry;
          std::memcpy(&entry, payload.data() + u64{index} * sizeof(entry), sizeof(entry));
          sessions_->entry_restore(index, entry);
        }
        phase_ = Phase::read_replies;
        session_next_ = 0;
        return;
      }
      case Phase::read_replies: {
        const u32 index = static_cast<u32>(slot->tag);
        TALLY_ASSERT(index < sessions_->capacity() && sessions_->entry(index).client != 0);
        // Verified whatever the read said: a failed read leaves the buffer undefined, and only
        // a reply whose header and body check out may be sent again (reply_verify() clears
        // the header of one that does not).
        (void)read_ok;
        if (!sessions_->reply_verify(index)) replies_damaged_ += 1;
        TALLY_ASSERT(replies_damaged_ <= sessions_->capacity());  // One read per session.
        return;
      }
      default: TALLY_UNREACHABLE();
    }
  }

  // O(tables): the I/O count within its slots, the cursors in order.
  void invariants() const {
    TALLY_ASSERT(in_flight_ <= io_depth && work_next_ <= work_count_);
    // The superblock holds at most manifest_blocks_max references (write and open stop above).
    TALLY_ASSERT(manifest_next_ <= manifest_blocks_max);
    for (u32 table = 0; table < table_count; table += 1) {
      TALLY_ASSERT(ahead_issued_[table] <= ahead_staged_[table]);
      // Blocks are staged ahead only from a state machine seal_ahead() was given.
      TALLY_ASSERT(ahead_staged_[table] == 0 || ahead_state_machine_ != nullptr);
    }
  }

  S& storage_;
  journal::Layout layout_;
  GridFreeSet free_set_;
  base::LargeArray<BlockReference> manifest_[table_count];
  base::LargeArray<u64> work_;  // write: (table << 32 | index) to write; read: unused.
  u32 work_count_ = 0;
  u32 work_next_ = 0;
  u32 session_next_ = 0;
  u32 manifest_next_ = 0;
  base::LargeArray<std::byte> buffers_;
  IoSlot slots_[io_depth];
  u32 in_flight_ = 0;
  Phase phase_ = Phase::idle;
  Callback callback_ = nullptr;
  void* context_ = nullptr;
  const state_machine::StateMachine* state_machine_read_ = nullptr;
  state_machine::StateMachine* state_machine_write_ = nullptr;
  ClientSessions* sessions_ = nullptr;
  u64 op_previous_ = 0;
  u32 replies_damaged_ = 0;
  std::optional<u32> damaged_address_;  // open(): the first block that did not verify.
  // Write-ahead, per table: blocks below ahead_staged_ have their address in manifest_; those
  // below ahead_issued_ have been written (or are being written) there.
  u32 ahead_staged_[table_count] = {};
  u32 ahead_issued_[table_count] = {};
  const state_machine::StateMachine* ahead_state_machine_ = nullptr;
  u64 blocks_written_ahead_ = 0;
  CheckpointVsrState written_;
  CheckpointVsrState durable_;
};

}  // namespace tally::vsr
