// BoundedArray: a vector whose capacity is fixed at compile time and whose slots are inline.
//
// For lists with a hard limit (the replicas of a cluster, the events of a batch, the results of
// a request): it never allocates, so it is usable after the heap is sealed, and reaching the
// limit is an assertion rather than a silent reallocation.
//
// Invariants: count <= capacity_max; items [0, count) are live, in order; slots past count hold
// stale or moved-from values and are never read. T must be default-constructible and movable.
// Misuse (push when full, pop when empty, any index out of range) asserts.
#pragma once

#include <array>
#include <span>
#include <utility>

#include "src/base/assert.hpp"
#include "tally/types.hpp"

namespace tally::base {

template <typename T, u32 capacity_max>
class BoundedArray {
  static_assert(capacity_max > 0);

 public:
  static constexpr u32 capacity() { return capacity_max; }
  u32 count() const { return count_; }
  bool empty() const { return count_ == 0; }

  bool full() const {
    TALLY_ASSERT(count_ <= capacity_max);
    return count_ == capacity_max;
  }

  void clear() { count_ = 0; }

  void push(T value) {
    TALLY_ASSERT(!full(), "push on a full bounded array (capacity %u)", capacity_max);
    items_[count_] = std::move(value);
    count_ += 1;
  }

  T pop() {
    TALLY_ASSERT(!empty(), "pop from an empty bounded array");
    count_ -= 1;
    return std::move(items_[count_]);
  }

  T& at(u32 index) {
    TALLY_ASSERT(index < count_, "index %u out of range (count %u)", index, count_);
    return items_[index];
  }

  const T& at(u32 index) const {
    TALLY_ASSERT(index < count_, "index %u out of range (count %u)", index, count_);
    return items_[index];
  }

  // The live items, in order. Pushing or removing invalidates the span's length, not its data.
  std::span<T> span() { return std::span<T>(items_.data(), count_); }
  std::span<const T> span() const { return std::span<const T>(items_.data(), count_); }

  T* begin() { return items_.data(); }
  T* end() { return items_.data() + count_; }
  const T* begin() const { return items_.data(); }
  const T* end() const { return items_.data() + count_; }

  // Inserts at `index` (0 <= index <= count), shifting later items one slot up. O(count).
  // [a b c] insert_at(1, x) -> [a x b c].
  void insert_at(u32 index, T value) {
    TALLY_ASSERT(!full(), "insert_at on a full bounded array (capacity %u)", capacity_max);
    TALLY_ASSERT(index <= count_, "index %u out of range (count %u)", index, count_);
    for (u32 slot = count_; slot > index; slot -= 1) items_[slot] = std::move(items_[slot - 1]);
    items_[index] = std::move(value);
    count_ += 1;
  }

  // Removes the item at `index`, shifting later items one slot down, keeping order. O(count).
  // [a b c d] ordered_remove(1) -> returns b, leaves [a c d].
  T ordered_remove(u32 index) {
    TALLY_ASSERT(index < count_, "index %u out of range (count %u)", index, count_);
    T value = std::move(items_[index]);
    for (u32 slot = index; slot + 1 < count_; slot += 1) items_[slot] = std::move(items_[slot + 1]);
    count_ -= 1;
    return value;
  }

  // Removes the item at `index` by moving the last item into its place. O(1), changes order.
  // [a b c d] swap_remove(1) -> returns b, leaves [a d c].
  T swap_remove(u32 index) {
    TALLY_ASSERT(index < count_, "index %u out of range (count %u)", index, count_);
    T value = std::move(items_[index]);
    count_ -= 1;
    if (index != count_) items_[index] = std::move(items_[count_]);
    return value;
  }

 private:
  std::array<T, capacity_max> items_{};
  u32 count_ = 0;
};

}  // namespace tally::base
