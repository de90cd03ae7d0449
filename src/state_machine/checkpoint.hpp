// Checkpoints of the state machine: its state as a sequence of checksummed blocks, written
// incrementally, and restored to the identical state.
//
// The state is ten tables of fixed-size elements plus a few scalars (CheckpointState). Indexes
// are not written: they are a pure function of the tables and are rebuilt on restore, in the
// original insertion order, so they come back bit for bit.
//
//   table                 element   changes                    blocks written at a checkpoint
//   accounts              128 B     appended, updated in place  appended or marked dirty
//   transfers             128 B     appended only               from the previous end on
//   pending_rows            4 B     appended only               from the previous end on
//   pending_statuses        1 B     appended, updated in place  appended or marked dirty
//   expiry_heap            16 B     rearranged                  all, if it changed at all
//   event_flags             1 B     appended only               from the previous end on
//   event_balances         64 B     appended only               from the previous end on
//   event_balances_high    72 B     appended only               from the previous end on
//   expiry_events          16 B     appended only               from the previous end on
//   failed_ids             16 B     appended only               from the previous end on
//
// The four event tables are the change events (change_events.hpp); event_flags and
// event_balances have one element per event, as many as transfers and expiry_events together.
//
// Block i of a table holds elements [i * per_block, (i + 1) * per_block), where per_block =
// (64 KiB - 64) / element size; a table of n elements has ceil(n / per_block) blocks, the last
// one possibly short. A block is a 64-byte header and the payload:
//
//   | checksum u128 | padding u128 | table u32 | index u32 | size u32 | element_size u32 |
//   | reserved (16 bytes, zero) | payload (size bytes) |
//
// `checksum` covers bytes [16, 64 + size). Storage (the data file's grid, a later issue) keeps
// each table's latest version of every block; the set of blocks at checkpoint c is therefore
// "the blocks of checkpoint c-1, replaced by the ones written at c, truncated to the new count".
#pragma once

#include <cstddef>
#include <span>

#include "src/state_machine/state_machine.hpp"
#include "tally/types.hpp"

namespace tally::state_machine {

enum class CheckpointTable : u32 {
  accounts = 0,
  transfers = 1,
  pending_rows = 2,
  pending_statuses = 3,
  expiry_heap = 4,
  event_flags = 5,
  event_balances = 6,
  event_balances_high = 7,
  expiry_events = 8,
  failed_ids = 9,
};
inline constexpr u32 checkpoint_table_count = 10;

constexpr u32 checkpoint_element_size(CheckpointTable table) {
  switch (table) {
    case CheckpointTable::accounts: return sizeof(Account);
    case CheckpointTable::transfers: return sizeof(Transfer);
    case CheckpointTable::pending_rows: return sizeof(u32);
    case CheckpointTable::pending_statuses: return sizeof(u8);
    case CheckpointTable::expiry_heap: return sizeof(ExpiryEntry);
    case CheckpointTable::event_flags: return sizeof(u8);
    case CheckpointTable::event_balances: return sizeof(EventBalancesLow);
    case CheckpointTable::event_balances_high: return sizeof(EventBalancesHigh);
    case CheckpointTable::expiry_events: return sizeof(ExpiryEvent);
    case CheckpointTable::failed_ids: return sizeof(u128);
  }
  return 0;
}

// Tables whose elements never change once a batch has executed: they only grow. (A linked
// chain's rollback removes elements, but only within the batch that added them.)
constexpr bool checkpoint_table_append_only(CheckpointTable table) {
  return table != CheckpointTable::accounts && table != CheckpointTable::pending_statuses &&
         table != CheckpointTable::expiry_heap;
}

struct CheckpointBlockHeader {
  u128 checksum;
  u128 checksum_padding;
  u32 table;
  u32 index;
  u32 size;
  u32 element_size;
  u8 reserved[16];
};
static_assert(sizeof(CheckpointBlockHeader) == checkpoint_block_header_size);

// The scalars of a checkpoint, and each table's element count. Written with the checkpoint
// reference (in the superblock, a later issue); checksummed there.
struct CheckpointState {
  u64 commit_timestamp;
  u32 counts[checkpoint_table_count];
  u32 expiry_registered_count;
  u32 config_accounts_max;
  u32 config_transfers_max;
  u32 config_pending_transfers_max;
  u32 config_failed_transfer_ids_max;
  u8 reserved[4];
};
static_assert(sizeof(CheckpointState) == 72);

u32 checkpoint_block_count(const CheckpointState& state, CheckpointTable table);

// The most elements a table can hold with `config`, and the most blocks a whole checkpoint can
// take when every table is full: what the data file's grid must be able to hold.
u32 checkpoint_table_capacity(const Config& config, CheckpointTable table);
u64 checkpoint_block_count_max(const Config& config);
// Of those, the blocks of tables that change in place (not only appended to): a checkpoint may
// rewrite all of them while the previous checkpoint still holds the old copies.
u64 checkpoint_block_count_rewritable(const Config& config);

class Checkpointer {
 public:
  // The state to record with the blocks of this checkpoint.
  static CheckpointState state(const StateMachine& state_machine);

  // Calls `visit(table, block_index)` for every block that differs from the previous
  // checkpoint's (every block, the first time).
  template <typename Visit>
  void blocks_changed(const StateMachine& state_machine, const Visit& visit) const;

  // Blocks [begin, end) of an append-only table: the blocks changed since the previous
  // checkpoint that are full now. Their bytes never change again, so they may be written before
  // the checkpoint that includes them (CheckpointStore's write-ahead).
  struct BlockRange {
    u32 begin;
    u32 end;
  };
  BlockRange blocks_sealed(const StateMachine& state_machine, CheckpointTable table) const;

  // Writes block `index` of `table` (header and payload) into `block`, which holds
  // checkpoint_block_size bytes. Returns the bytes used.
  static u32 block_encode(const StateMachine& state_machine, CheckpointTable table, u32 index,
                          std::span<std::byte> block);

  // Every changed block has been written and is durable: the next checkpoint is relative to
  // this one.
  void done(StateMachine& state_machine);

  // Forgets the previous checkpoint: the next one writes every block.
  void reset() { *this = Checkpointer{}; }

 private:
  bool block_dirty(const StateMachine& state_machine, CheckpointTable table, u32 index) const;
  bool initial_ = true;
  u32 counts_previous_[checkpoint_table_count] = {};
};

enum class CheckpointBlockError : u8 {
  none = 0,
  too_short,          // Smaller than a header, or than the header's size says.
  checksum_mismatch,  // Corrupt.
  table_invalid,
  element_size_mismatch,
  index_out_of_range,  // Past the table's count in the checkpoint state.
  size_mismatch,       // Not the size the count implies for this block.
  reserved_not_zero,
};
const char* checkpoint_block_error_name(CheckpointBlockError error);

// Whether `block` holds an intact state machine block whose header checksum is `checksum`:
// what state sync checks of a block from a peer or from its own grid, before it knows where
// the block belongs (CheckpointRestorer::block() checks the rest). Returns the block's used
// size (header and payload), or 0 if it is not that block.
u32 checkpoint_block_intact(std::span<const std::byte> block, u128 checksum);

// Restores a state machine from a checkpoint: begin(), one block() call per block of every
// table (any order), then finish(). The blocks come from storage and are verified.
class CheckpointRestorer {
 public:
  // Resets the state machine. Its Config must match the checkpoint's.
  static bool begin(StateMachine& state_machine, const CheckpointState& state);
  static CheckpointBlockError block(StateMachine& state_machine, const CheckpointState& state,
                                    std::span<const std::byte> block);
  // Sets the counts and scalars and rebuilds the indexes.
  static void finish(StateMachine& state_machine, const CheckpointState& state);
};

template <typename Visit>
void Checkpointer::blocks_changed(const StateMachine& state_machine, const Visit& visit) const {
  const CheckpointState current = state(state_machine);
  for (u32 table_index = 0; table_index < checkpoint_table_count; table_index += 1) {
    const auto table = static_cast<CheckpointTable>(table_index);
    const u32 block_count = checkpoint_block_count(current, table);
    for (u32 index = 0; index < block_count; index += 1) {
      if (block_dirty(state_machine, table, index)) visit(table, index);
    }
  }
}

}  // namespace tally::state_machine
