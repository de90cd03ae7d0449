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
    TALLY_ASSERT(block_count_ == 0 && acquired_count_ == 0, "the free set is initialized once");
    block_count_ = block_count;
    const u64 words = (block_count + 63) / 64;
    acquired_.init(words);
    staged_.init(words);
    releasing_.init(words);
  }

  // Every block free again, nothing staged or releasing (state sync: the durable checkpoint is
  // about to be replaced by another replica's, whose blocks open() marks acquired).
  void clear() {
    TALLY_ASSERT(block_count_ > 0, "clear() before init()");
    const u64 words = (block_count_ + 63) / 64;
    for (u64 word = 0; word < words; word += 1) {
      acquired_[word] = 0;
      staged_[word] = 0;
      releasing_[word] = 0;
    }
    acquired_count_ = 0;
    staged_count_ = 0;
    search_from_ = 0;
    TALLY_ASSERT(acquired_count_ + staged_count_ == 0);
  }

  u64 block_count() const { return block_count_; }
  u64 acquired_count() const { return acquired_count_; }
  u64 staged_count() const { return staged_count_; }

  // Marks a block of the durable checkpoint (while opening it: nothing is staged yet).
  void mark_acquired(u32 address) {
    TALLY_ASSERT(address < block_count_ && !bit(acquired_, address));
    TALLY_ASSERT(staged_count_ == 0, "blocks of the durable checkpoint are known before staging");
    bit_set(acquired_, address, true);
    acquired_count_ += 1;
    invariants();
  }

  bool acquired(u32 address) const {
    TALLY_ASSERT(address < block_count_, "grid block %u of %llu", address,
                 static_cast<unsigned long long>(block_count_));
    const bool result = bit(acquired_, address);
    TALLY_ASSERT(!result || !bit(staged_, address), "staged and acquired are disjoint");
    return result;
  }

  // Whether the block is written for the checkpoint after the durable one.
  bool staged(u32 address) const {
    TALLY_ASSERT(address < block_count_, "grid block %u of %llu", address,
                 static_cast<unsigned long long>(block_count_));
    const bool result = bit(staged_, address);
    TALLY_ASSERT(!result || !bit(acquired_, address), "staged and acquired are disjoint");
    return result;
  }

  // A free block for the checkpoint being written, or none when the grid is full.
  std::optional<u32> stage() {
    TALLY_ASSERT(block_count_ > 0, "stage() before init()");
    invariants();
    const u64 words = (block_count_ + 63) / 64;
    for (u64 word = search_from_ / 64; word < words; word += 1) {
      const u64 used = acquired_[word] | staged_[word];
      if (used == ~u64{0}) continue;
      const u64 address = word * 64 + static_cast<u64>(__builtin_ctzll(~used));
      if (address >= block_count_) break;
      // Every address below search_from_ is taken: the lowest free one is at or above it.
      TALLY_ASSERT(address >= search_from_);
      bit_set(staged_, address, true);
      staged_count_ += 1;
      search_from_ = address;
      invariants();
      return static_cast<u32>(address);
    }
    // Full: every address is acquired or staged (those below search_from_ were already).
    TALLY_ASSERT(acquired_count_ + staged_count_ == block_count_);
    return std::nullopt;
  }

  // The durable checkpoint's block at `address` is replaced by the one being written.
  void release_at_commit(u32 address) {
    TALLY_ASSERT(address < block_count_, "grid block %u of %llu", address,
                 static_cast<unsigned long long>(block_count_));
    TALLY_ASSERT(bit(acquired_, address) && !bit(releasing_, address));
    TALLY_ASSERT(!bit(staged_, address));
    bit_set(releasing_, address, true);
  }

  // The superblock names the new checkpoint: staged blocks are durable, replaced ones free.
  // Per checkpoint, so it also checks the counts against the bits (a sweep of the whole set).
  void checkpoint_commit() {
    TALLY_ASSERT(block_count_ > 0, "checkpoint_commit() before init()");
    invariants();
    const u64 words = (block_count_ + 63) / 64;
    u64 staged_total = 0;
    u64 acquired_total = 0;
    for (u64 word = 0; word < words; word += 1) {
      const u64 released = releasing_[word];
      TALLY_ASSERT((released & ~acquired_[word]) == 0);
      TALLY_ASSERT((staged_[word] & acquired_[word]) == 0);
      staged_total += popcount(staged_[word]);
      acquired_[word] = (acquired_[word] & ~released) | staged_[word];
      acquired_total += popcount(acquired_[word]);
      acquired_count_ = acquired_count_ - popcount(released) + popcount(staged_[word]);
      staged_[word] = 0;
      releasing_[word] = 0;
    }
    TALLY_ASSERT(staged_total == staged_count_, "staged: %llu bits, count %llu",
                 static_cast<unsigned long long>(staged_total),
                 static_cast<unsigned long long>(staged_count_));
    TALLY_ASSERT(acquired_total == acquired_count_, "acquired: %llu bits, count %llu",
                 static_cast<unsigned long long>(acquired_total),
                 static_cast<unsigned long long>(acquired_count_));
    staged_count_ = 0;
    search_from_ = 0;
    invariants();
  }

 private:
  // Staged and acquired blocks are disjoint, so together they fit the grid.
  void invariants() const {
    TALLY_ASSERT(acquired_count_ + staged_count_ <= block_count_);
    TALLY_ASSERT(search_from_ <= block_count_);
  }

  static u64 popcount(u64 word) { return static_cast<u64>(__builtin_popcountll(word)); }
  static bool bit(const base::LargeArray<u64>& bits, u64 address) {
    return ((bits[address / 64] >> (address % 64)) & 1) != 0;
  }
  static void bit_set(base::LargeArray<u64>& bits, u64 address, bool value) {
    // Each caller sets a bit that was clear: the counts and the state table assume it.
    TALLY_ASSERT(bit(bits, address) != value, "grid block %llu already %s",
                 static_cast<unsigned long long>(address), value ? "set" : "clear");
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
