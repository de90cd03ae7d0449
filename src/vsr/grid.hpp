// Grid: the data file's zone of fixed-size blocks that checkpoints live in, and which of its
// blocks are in use.
//
// Copy-on-write: a checkpoint never overwrites a block that the durable checkpoint references.
// Every block it writes goes to a free address; the blocks it replaces are released only once
// the superblock names the new checkpoint. So a crash at any moment of a checkpoint leaves the
// previous one whole, and the free set after a restart is exactly "not referenced by the
// durable checkpoint" (rebuilt from its manifest by the reader).
//
//   state of an address   acquired  staged  releasing
//   free                      0        0        0
//   durable, kept             1        0        0
//   durable, replaced         1        0        1      free again at checkpoint_commit()
//   written for the next      0        1        0      durable at checkpoint_commit()
//
// Allocation takes the lowest free address, so replicas with the same history lay out their
// grids the same way (later issues repair blocks from peers by address).
#pragma once

#include <cstddef>
#include <optional>
#include <span>

#include "journal/layout.hpp"
#include "journal/storage.hpp"
#include "src/base/assert.hpp"
#include "src/base/large_array.hpp"
#include "tally/types.hpp"

namespace tally::vsr {

class GridFreeSet {
 public:
  void init(u64 block_count) {
    TALLY_ASSERT(block_count > 0 && block_count <= (u64{1} << 32));
    block_count_ = block_count;
    const u64 words = (block_count + 63) / 64;
    acquired_.init(words);
    staged_.init(words);
    releasing_.init(words);
  }

  u64 block_count() const { return block_count_; }
  u64 acquired_count() const { return acquired_count_; }
  u64 staged_count() const { return staged_count_; }

  // Marks a block of the durable checkpoint (while opening it).
  void mark_acquired(u32 address) {
    TALLY_ASSERT(address < block_count_ && !bit(acquired_, address));
    bit_set(acquired_, address, true);
    acquired_count_ += 1;
  }

  bool acquired(u32 address) const { return bit(acquired_, address); }

  // A free block for the checkpoint being written, or none when the grid is full.
  std::optional<u32> stage() {
    const u64 words = (block_count_ + 63) / 64;
    for (u64 word = search_from_ / 64; word < words; word += 1) {
      const u64 used = acquired_[word] | staged_[word];
      if (used == ~u64{0}) continue;
      const u64 address = word * 64 + static_cast<u64>(__builtin_ctzll(~used));
      if (address >= block_count_) break;
      bit_set(staged_, address, true);
      staged_count_ += 1;
      search_from_ = address;
      return static_cast<u32>(address);
    }
    return std::nullopt;
  }

  // The durable checkpoint's block at `address` is replaced by the one being written.
  void release_at_commit(u32 address) {
    TALLY_ASSERT(bit(acquired_, address) && !bit(releasing_, address));
    bit_set(releasing_, address, true);
  }

  // The superblock names the new checkpoint: staged blocks are durable, replaced ones free.
  void checkpoint_commit() {
    const u64 words = (block_count_ + 63) / 64;
    for (u64 word = 0; word < words; word += 1) {
      const u64 released = releasing_[word];
      TALLY_ASSERT((released & ~acquired_[word]) == 0);
      TALLY_ASSERT((staged_[word] & acquired_[word]) == 0);
      acquired_[word] = (acquired_[word] & ~released) | staged_[word];
      acquired_count_ = acquired_count_ - popcount(released) + popcount(staged_[word]);
      staged_[word] = 0;
      releasing_[word] = 0;
    }
    staged_count_ = 0;
    search_from_ = 0;
  }

 private:
  static u64 popcount(u64 word) { return static_cast<u64>(__builtin_popcountll(word)); }
  static bool bit(const base::LargeArray<u64>& bits, u64 address) {
    return ((bits[address / 64] >> (address % 64)) & 1) != 0;
  }
  static void bit_set(base::LargeArray<u64>& bits, u64 address, bool value) {
    const u64 mask = u64{1} << (address % 64);
    bits[address / 64] = value ? (bits[address / 64] | mask) : (bits[address / 64] & ~mask);
  }

  u64 block_count_ = 0;
  u64 acquired_count_ = 0;
  u64 staged_count_ = 0;
  u64 search_from_ = 0;
  base::LargeArray<u64> acquired_;
  base::LargeArray<u64> staged_;
  base::LargeArray<u64> releasing_;
};

}  // namespace tally::vsr
