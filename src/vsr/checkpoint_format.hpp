// How a checkpoint is laid out in the data file: what the superblock's opaque checkpoint state
// holds, and the grid blocks that Tally's replica writes besides the state machine's own.
//
//   superblock.checkpoint.state (2048 bytes): CheckpointVsrState
//     prepare_checksum      the checkpoint op's prepare: the anchor of the WAL's hash chain
//     sessions              reference to the client sessions block
//     manifest_*            how many manifest blocks and block references there are
//     state_machine         state_machine::CheckpointState (counts and scalars)
//     manifest[]            references to the manifest blocks
//   manifest blocks: the references of every state-machine block, table by table, block by
//     block, as many as checkpoint_block_count() says for each table
//   sessions block: the ClientSession entries (their replies are in the client_replies zone,
//     entry i in slot i, checked against the entry's reply checksum)
//
// A reference names a block by address and by checksum: a read that finds another block there
// (a lost or misdirected write) is told apart from the one the checkpoint wrote.
// Grid blocks written here start with GridBlockHeader, laid out like the state machine's
// CheckpointBlockHeader (checksum of bytes 16..64+size, then kind, index, size).
#pragma once

#include <cstddef>
#include <cstring>
#include <span>
#include <type_traits>

#include "journal/superblock.hpp"
#include "src/state_machine/checkpoint.hpp"
#include "tally/header.hpp"
#include "tally/checksum.hpp"
#include "tally/types.hpp"

namespace tally::vsr {

struct BlockReference {
  u128 checksum;
  u32 address;
  u8 reserved[12];
};
static_assert(sizeof(BlockReference) == 32);

inline constexpr u32 checkpoint_vsr_head_size = 512;
inline constexpr u32 manifest_blocks_max =
    (journal::checkpoint_state_size - checkpoint_vsr_head_size) / sizeof(BlockReference);

struct CheckpointVsrState {
  u128 prepare_checksum;
  BlockReference sessions;
  u32 manifest_block_count;
  u32 manifest_reference_count;
  u8 reserved_counts[8];
  state_machine::CheckpointState state_machine;
  u8 reserved_align[8];
  // The checkpoint op's prepare header itself (checksum: prepare_checksum), so that a replica
  // whose log ends at its checkpoint can still name its head when its WAL slot is reused or
  // damaged (a do_view_change needs it). All zero in checkpoints written before it existed.
  Header prepare_header;
  // The id (checkpoint_id()) of the checkpoint this one followed: the ids form a chain, and a
  // replica knows the id of its durable checkpoint's predecessor, which prepares name
  // (Replica::checkpoint_id_for_op()). 0 in checkpoints written before it existed.
  u128 parent_id;
  u8 reserved_head[checkpoint_vsr_head_size - 16 - sizeof(BlockReference) - 16 -
                   sizeof(state_machine::CheckpointState) - 8 - sizeof(Header) - 16];
  BlockReference manifest[manifest_blocks_max];
};
static_assert(sizeof(CheckpointVsrState) <= journal::checkpoint_state_size);
static_assert(offsetof(CheckpointVsrState, manifest) == checkpoint_vsr_head_size);
static_assert(offsetof(CheckpointVsrState, prepare_header) % alignof(Header) == 0);
static_assert(offsetof(CheckpointVsrState, parent_id) % alignof(u128) == 0);
static_assert(std::is_trivially_copyable_v<CheckpointVsrState>);

enum class GridBlockKind : u32 { manifest = 1, sessions = 2 };

struct GridBlockHeader {
  u128 checksum;
  u128 checksum_padding;
  GridBlockKind kind;
  u32 index;
  u32 size;  // Payload bytes after the header.
  u32 reserved_size;
  u8 reserved[16];
};
static_assert(sizeof(GridBlockHeader) == 64);

inline constexpr u32 grid_block_header_size = sizeof(GridBlockHeader);
inline constexpr u32 manifest_references_per_block =
    (state_machine::checkpoint_block_size - grid_block_header_size) / sizeof(BlockReference);

// The reference's contents are the data file's: checked by their reader, not asserted here.
inline CheckpointVsrState checkpoint_vsr_state_read(const journal::CheckpointReference& ref) {
  TALLY_ASSERT(ref.op > 0, "op 0 is the root, not a checkpoint with a state");
  CheckpointVsrState state;
  std::memcpy(&state, ref.state.data(), sizeof(state));
  return state;
}

inline void checkpoint_vsr_state_write(const CheckpointVsrState& state,
                                       journal::CheckpointReference& ref) {
  // The checkpoint op's own prepare anchors the chain: the same one twice, of the same op.
  TALLY_ASSERT(ref.op > 0 && state.prepare_checksum != 0);
  TALLY_ASSERT(state.prepare_header.checksum == state.prepare_checksum &&
               state.prepare_header.prepare.op == ref.op);
  // As many manifest blocks as the references need, no more, and the superblock holds them.
  TALLY_ASSERT(state.manifest_block_count <= manifest_blocks_max);
  TALLY_ASSERT(state.manifest_reference_count <=
                   u64{state.manifest_block_count} * manifest_references_per_block &&
               state.manifest_reference_count + manifest_references_per_block >
                   u64{state.manifest_block_count} * manifest_references_per_block);
  ref.state.fill(0);
  std::memcpy(ref.state.data(), &state, sizeof(state));
}

// The block's payload if it is the block `reference` names, of the kind and index expected.
inline std::span<const std::byte> grid_block_verify(std::span<const std::byte> block,
                                                    const BlockReference& reference,
                                                    GridBlockKind kind, u32 index) {
  // The caller's own arguments (the block's bytes and the reference are the data file's).
  TALLY_ASSERT(block.size() >= grid_block_header_size);
  TALLY_ASSERT(kind == GridBlockKind::sessions ? index == 0
                                                : kind == GridBlockKind::manifest &&
                                                      index < manifest_blocks_max);
  GridBlockHeader header;
  std::memcpy(&header, block.data(), sizeof(header));
  if (header.checksum != reference.checksum || header.kind != kind || header.index != index) {
    return {};
  }
  if (header.size > block.size() - grid_block_header_size) return {};
  if (tally::checksum(block.subspan(32, grid_block_header_size - 32 + header.size)) !=
      header.checksum) {
    return {};
  }
  return block.subspan(grid_block_header_size, header.size);
}

// Seals a grid block: the header's checksum over everything after the checksum fields.
inline u128 grid_block_seal(std::span<std::byte> block, GridBlockKind kind, u32 index,
                            u32 size) {
  TALLY_ASSERT(grid_block_header_size + size <= block.size());
  // One sessions block; manifest blocks numbered as the superblock's references to them.
  TALLY_ASSERT(kind == GridBlockKind::sessions ? index == 0
                                                : kind == GridBlockKind::manifest &&
                                                      index < manifest_blocks_max);
  GridBlockHeader header{};
  header.kind = kind;
  header.index = index;
  header.size = size;
  std::memcpy(block.data(), &header, sizeof(header));
  header.checksum = tally::checksum(block.subspan(32, grid_block_header_size - 32 + size));
  std::memcpy(block.data(), &header, sizeof(header));
  // What the reader will check (once per checkpoint and block, off the hot path).
  TALLY_ASSERT(grid_block_verify(block, BlockReference{.checksum = header.checksum, .address = 0,
                                                       .reserved = {}},
                                 kind, index)
                   .size() == size);
  return header.checksum;
}

}  // namespace tally::vsr
