// RingBuffer: a double-ended queue of values with a fixed capacity and no allocation after init.
//
// One template, two storage policies:
// - RingBuffer<T, capacity>: the slots are inline (a std::array), for capacities known at
//   compile time; the buffer allocates nothing, ever.
// - RingBufferDynamic<T>: the slots are allocated once by the constructor, for capacities that
//   come from the configuration; construct it before the heap is sealed.
//
// Layout: `head` is the slot of the front element, and logical index i lives in slot
// (head + i) % capacity. Capacity 4, after push_back(a, b, c, d), pop_front() twice, push_back(e):
//
//   slot:     0     1     2     3
//          [  e  |  .  |  c  |  d  ]      head = 2, count = 3
//                         ^front   ^      order: c (slot 2), d (slot 3), e (slot 0, wrapped)
//
// Invariants: head < capacity; count <= capacity. Slots outside the live range hold stale or
// moved-from values, never read. T must be default-constructible and movable.
// Misuse (push when full, pop/front/back when empty, at() out of range) asserts.
#pragma once

#include <array>
#include <cstddef>
#include <iterator>
#include <memory>
#include <type_traits>
#include <utility>

#include "src/base/assert.hpp"
#include "tally/types.hpp"

namespace tally::base {

// Inline slots: the capacity is part of the type.
template <typename T, u32 capacity_static>
class InlineStorage {
  static_assert(capacity_static > 0);

 public:
  static constexpr u32 capacity() { return capacity_static; }
  T* data() { return items_.data(); }
  const T* data() const { return items_.data(); }

 private:
  std::array<T, capacity_static> items_{};
};

// Heap slots, allocated once by the constructor and never resized. Not copyable or movable, so
// no buffer ever shares or loses its slots; guaranteed copy elision still allows
// `auto buffer = RingBufferDynamic<T>(capacity);`.
template <typename T>
class HeapStorage {
 public:
  explicit HeapStorage(u32 capacity)
      : items_(std::make_unique<T[]>(capacity)), capacity_(capacity) {
    TALLY_ASSERT(capacity > 0);
    TALLY_ASSERT(items_ != nullptr);
  }
  HeapStorage(const HeapStorage&) = delete;
  HeapStorage& operator=(const HeapStorage&) = delete;

  u32 capacity() const { return capacity_; }
  T* data() { return items_.get(); }
  const T* data() const { return items_.get(); }

 private:
  std::unique_ptr<T[]> items_;
  u32 capacity_;
};

template <typename T, typename Storage>
class RingBufferType {
  template <bool is_const>
  class IteratorType;

 public:
  using iterator = IteratorType<false>;
  using const_iterator = IteratorType<true>;

  RingBufferType() = default;
  explicit RingBufferType(u32 capacity)
    requires std::is_constructible_v<Storage, u32>
      : storage_(capacity) {}

  u32 capacity() const { return storage_.capacity(); }
  u32 count() const { return count_; }
  bool empty() const { return count_ == 0; }

  bool full() const {
    TALLY_ASSERT(count_ <= capacity());
    return count_ == capacity();
  }

  void clear() {
    head_ = 0;
    count_ = 0;
  }

  void push_back(T value) {
    TALLY_ASSERT(!full(), "push_back on a full ring buffer (capacity %u)", capacity());
    storage_.data()[slot(count_)] = std::move(value);
    count_ += 1;
  }

  void push_front(T value) {
    TALLY_ASSERT(!full(), "push_front on a full ring buffer (capacity %u)", capacity());
    head_ = static_cast<u32>((u64{head_} + capacity() - 1) % capacity());
    storage_.data()[head_] = std::move(value);
    count_ += 1;
  }

  T pop_front() {
    TALLY_ASSERT(!empty(), "pop_front on an empty ring buffer");
    T value = std::move(storage_.data()[head_]);
    head_ = static_cast<u32>((u64{head_} + 1) % capacity());
    count_ -= 1;
    return value;
  }

  T pop_back() {
    TALLY_ASSERT(!empty(), "pop_back on an empty ring buffer");
    count_ -= 1;
    return std::move(storage_.data()[slot(count_)]);
  }

  T& front() {
    TALLY_ASSERT(!empty(), "front of an empty ring buffer");
    return at(0);
  }

  const T& front() const {
    TALLY_ASSERT(!empty(), "front of an empty ring buffer");
    return at(0);
  }

  T& back() {
    TALLY_ASSERT(!empty(), "back of an empty ring buffer");
    return at(count_ - 1);
  }

  const T& back() const {
    TALLY_ASSERT(!empty(), "back of an empty ring buffer");
    return at(count_ - 1);
  }

  // Logical index: 0 is the front, count - 1 the back.
  T& at(u32 index) {
    TALLY_ASSERT(index < count_, "index %u out of range (count %u)", index, count_);
    return storage_.data()[slot(index)];
  }

  const T& at(u32 index) const {
    TALLY_ASSERT(index < count_, "index %u out of range (count %u)", index, count_);
    return storage_.data()[slot(index)];
  }

  // Front to back. Pushing or popping invalidates iterators.
  iterator begin() { return iterator(this, 0); }
  iterator end() { return iterator(this, count_); }
  const_iterator begin() const { return const_iterator(this, 0); }
  const_iterator end() const { return const_iterator(this, count_); }

 private:
  template <bool is_const>
  class IteratorType {
    using Buffer = std::conditional_t<is_const, const RingBufferType, RingBufferType>;

   public:
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using reference = std::conditional_t<is_const, const T&, T&>;
    using iterator_category = std::forward_iterator_tag;

    IteratorType() = default;
    IteratorType(Buffer* buffer, u32 index) : buffer_(buffer), index_(index) {}

    reference operator*() const { return buffer_->at(index_); }

    IteratorType& operator++() {
      TALLY_ASSERT(index_ < buffer_->count());
      index_ += 1;
      return *this;
    }

    IteratorType operator++(int) {
      IteratorType before = *this;
      ++*this;
      return before;
    }

    bool operator==(const IteratorType&) const = default;

   private:
    Buffer* buffer_ = nullptr;
    u32 index_ = 0;
  };

  // Widened to u64 so that head + index cannot wrap for capacities near 2^32.
  u32 slot(u32 index) const {
    TALLY_ASSERT(index < capacity());
    return static_cast<u32>((u64{head_} + index) % capacity());
  }

  Storage storage_;
  u32 head_ = 0;
  u32 count_ = 0;
};

template <typename T, u32 capacity>
using RingBuffer = RingBufferType<T, InlineStorage<T, capacity>>;

template <typename T>
using RingBufferDynamic = RingBufferType<T, HeapStorage<T>>;

}  // namespace tally::base
