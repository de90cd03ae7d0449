// DirtyBlocks: which fixed-size blocks of a table changed since the last checkpoint.
//
// Tables that change in place (accounts, pending statuses) mark the bytes they write; a
// checkpoint writes only the marked blocks and then clears the marks. One byte per block keeps
// marking branch-free and cheap; a 1M-account table has 2048 blocks of 64 KiB.
#pragma once

#include "src/base/assert.hpp"
#include "src/base/large_array.hpp"
#include "tally/types.hpp"

namespace tally::state_machine {

class DirtyBlocks {
 public:
  void init(u64 bytes_max, u32 block_size) {
    TALLY_ASSERT(block_size > 0);
    block_size_ = block_size;
    block_count_ = (bytes_max + block_size - 1) / block_size;
    marks_.init(block_count_ == 0 ? 1 : block_count_);
  }

  void reset() { marks_.reset(); }

  void mark(u64 offset, u64 size) {
    TALLY_ASSERT(size > 0);
    const u64 first = offset / block_size_;
    const u64 last = (offset + size - 1) / block_size_;
    TALLY_ASSERT(last < block_count_);
    for (u64 block = first; block <= last; block += 1) marks_.data()[block] = 1;
  }

  bool dirty(u64 block) const {
    TALLY_ASSERT(block < block_count_);
    return marks_.data()[block] != 0;
  }

  void clear(u64 block) {
    TALLY_ASSERT(block < block_count_);
    marks_.data()[block] = 0;
  }

  u64 block_count() const { return block_count_; }

 private:
  base::LargeArray<u8> marks_;
  u64 block_count_ = 0;
  u32 block_size_ = 0;
};

}  // namespace tally::state_machine
