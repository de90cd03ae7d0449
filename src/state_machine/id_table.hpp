// IdTable: an open-addressing index from a 128-bit key to a row of an append-only store.
//
// The table never holds the keys: a slot is {fingerprint, row + 1}, 8 bytes, and a match is
// confirmed by reading the key from the store (`key_of(row)`). A lookup of a new id, the common
// case when creating transfers, therefore touches one cache line of the table and no record.
// Linear probing, capacity a power of two at least twice the row capacity (load factor <= 1/2).
//
//   slot:  [ fingerprint u32 | row_plus_one u32 ]     row_plus_one == 0: empty
//   hash:  [ fingerprint (high 32 bits) | home slot (low bits) ]
//
// Removal is only ever of the most recently inserted key (linked-chain rollback undoes inserts
// in reverse order). Under that discipline clearing the slot restores the table bit for bit: a
// key probing past the removed slot would have been inserted after it, and so removed before it.
// This keeps the layout a pure function of the committed inserts, which checkpoints rely on.
#pragma once

#include <optional>
#include <span>

#include "src/base/assert.hpp"
#include "src/base/large_array.hpp"
#include "src/base/prefetch.hpp"
#include "src/state_machine/hash.hpp"
#include "tally/types.hpp"

namespace tally::state_machine {

class IdTable {
 public:
  struct Slot {
    u32 fingerprint;
    u32 row_plus_one;
    bool operator==(const Slot&) const = default;
  };
  static_assert(sizeof(Slot) == 8);

  void init(u32 rows_max) {
    TALLY_ASSERT(rows_max > 0);
    u64 slot_count = 16;
    while (slot_count < u64{rows_max} * 2) slot_count *= 2;
    slots_.init(slot_count);
    mask_ = slot_count - 1;
    rows_max_ = rows_max;
    count_ = 0;
  }

  void reset() {
    slots_.reset();
    count_ = 0;
  }

  void prefault() { slots_.prefault(); }

  u32 count() const { return count_; }
  u32 rows_max() const { return rows_max_; }
  u64 slot_count() const { return mask_ + 1; }

  // The raw slots, for digests that prove two tables identical byte for byte.
  std::span<const Slot> slots() const { return slots_.first(slot_count()); }

  void prefetch(u128 key) const {
    base::prefetch(&slots_.data()[hash_u128(key) & mask_]);
  }

  // The second stage of a prefetch, once prefetch(key) has brought the slot in: if the home slot
  // looks like the key's (same fingerprint), prefetches that row's record, `address_of(row)`.
  // A guess, never a result: a wrong guess costs one wasted prefetch.
  template <typename AddressOf>
  void prefetch_row(u128 key, const AddressOf& address_of) const {
    const u64 hash = hash_u128(key);
    const Slot slot = slots_.data()[hash & mask_];
    if (slot.row_plus_one != 0 && slot.fingerprint == static_cast<u32>(hash >> 32)) {
      base::prefetch(address_of(slot.row_plus_one - 1));
    }
  }

  // The row holding `key`, if any. `key_of(row)` reads a stored row's key.
  template <typename KeyOf>
  std::optional<u32> find(u128 key, const KeyOf& key_of) const {
    const u64 hash = hash_u128(key);
    const u32 fingerprint = static_cast<u32>(hash >> 32);
    const Slot* slots = slots_.data();
    for (u64 position = hash & mask_;; position = (position + 1) & mask_) {
      const Slot slot = slots[position];
      if (slot.row_plus_one == 0) return std::nullopt;
      if (slot.fingerprint == fingerprint && key_of(slot.row_plus_one - 1) == key) {
        return slot.row_plus_one - 1;
      }
    }
  }

  // The caller has checked that `key` is absent.
  void insert(u128 key, u32 row) {
    TALLY_ASSERT(count_ < rows_max_, "id table full: %u rows", rows_max_);
    TALLY_ASSERT(row < rows_max_);
    const u64 hash = hash_u128(key);
    Slot* slots = slots_.data();
    u64 position = hash & mask_;
    while (slots[position].row_plus_one != 0) position = (position + 1) & mask_;
    slots[position] = Slot{.fingerprint = static_cast<u32>(hash >> 32), .row_plus_one = row + 1};
    count_ += 1;
  }

  // Undoes the latest insert (see the file comment for why clearing the slot suffices).
  void remove_latest(u128 key, u32 row) {
    TALLY_ASSERT(count_ > 0);
    const u64 hash = hash_u128(key);
    Slot* slots = slots_.data();
    for (u64 position = hash & mask_;; position = (position + 1) & mask_) {
      TALLY_ASSERT(slots[position].row_plus_one != 0, "removing a key that is not present");
      if (slots[position].row_plus_one == row + 1) {
        TALLY_ASSERT(slots[position].fingerprint == static_cast<u32>(hash >> 32));
        slots[position] = Slot{.fingerprint = 0, .row_plus_one = 0};
        count_ -= 1;
        return;
      }
    }
  }

 private:
  base::LargeArray<Slot> slots_;
  u64 mask_ = 0;
  u32 rows_max_ = 0;
  u32 count_ = 0;
};

}  // namespace tally::state_machine
