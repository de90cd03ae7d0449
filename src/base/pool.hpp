// Pool: a fixed set of objects, allocated once by the constructor, handed out and taken back.
//
// The budget of static allocation (DESIGN.md §6): each object type gets its worst-case count
// from the configuration, one Pool is built before the heap is sealed, and from then on
// acquire() and release() only move indices on a free list. The objects live as long as the
// pool; acquire() hands out an object in whatever state its last user left it, so the caller
// resets what it needs.
//
// Layout, for a pool of 4 with objects 1 and 3 acquired:
//
//   objects:   [ o0 | o1 | o2 | o3 ]
//   acquired:  [  0 |  1 |  0 |  1 ]
//   free:      [  2 |  0 ]              a stack of indices, top last: the next acquire gives o0
//
// Invariants: free_count + acquired_count == capacity; an index is on the free stack exactly
// when its acquired flag is clear; the free order is deterministic (last released, first
// reused), so a seeded simulation reuses the same objects in the same order on every run.
// Misuse (acquire from an exhausted pool, releasing twice, releasing a foreign pointer) asserts.
#pragma once

#include <cstdint>
#include <memory>

#include "src/base/assert.hpp"
#include "tally/types.hpp"

namespace tally::base {

template <typename T>
class Pool {
 public:
  // Value-initialises `capacity` objects. Call before the heap is sealed.
  explicit Pool(u32 capacity)
      : objects_(std::make_unique<T[]>(capacity)),
        free_indices_(std::make_unique<u32[]>(capacity)),
        acquired_(std::make_unique<bool[]>(capacity)),
        capacity_(capacity),
        free_count_(capacity) {
    TALLY_ASSERT(capacity > 0);
    // Pushed in reverse so that the first acquire() gives object 0, then 1, and so on.
    for (u32 index = 0; index < capacity; index += 1) free_indices_[index] = capacity - 1 - index;
  }
  // Objects are handed out by address, so the pool never moves or copies.
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  u32 capacity() const { return capacity_; }
  u32 free_count() const { return free_count_; }
  u32 acquired_count() const { return capacity_ - free_count_; }
  bool exhausted() const { return free_count_ == 0; }

  // For consumers whose budget guarantees a free object: exhaustion is a bug.
  T* acquire() {
    TALLY_ASSERT(!exhausted(), "pool exhausted (capacity %u)", capacity_);
    return try_acquire();
  }

  // For consumers that can shed load (drop a message, delay a request): nullptr when exhausted.
  T* try_acquire() {
    if (exhausted()) return nullptr;
    free_count_ -= 1;
    const u32 index = free_indices_[free_count_];
    TALLY_ASSERT(index < capacity_);
    TALLY_ASSERT(!acquired_[index], "object %u is on the free list but acquired", index);
    acquired_[index] = true;
    return &objects_[index];
  }

  void release(T* object) {
    const u32 index = index_of(object);
    TALLY_ASSERT(acquired_[index], "object %u released twice (or never acquired)", index);
    TALLY_ASSERT(free_count_ < capacity_);
    acquired_[index] = false;
    free_indices_[free_count_] = index;
    free_count_ += 1;
  }

  bool acquired(const T* object) const { return acquired_[index_of(object)]; }

  // The object's position in the pool, stable for the pool's life: a compact handle to store
  // or send instead of a pointer. Asserts that the pointer belongs to this pool.
  u32 index_of(const T* object) const {
    TALLY_ASSERT(object != nullptr);
    // Integer arithmetic, because comparing pointers into different arrays is unspecified. A
    // pointer below the first object wraps to a huge offset and fails the range check.
    const std::uintptr_t offset = reinterpret_cast<std::uintptr_t>(object) -
                                  reinterpret_cast<std::uintptr_t>(objects_.get());
    TALLY_ASSERT(offset % sizeof(T) == 0, "pointer is not an object of this pool");
    TALLY_ASSERT(offset / sizeof(T) < capacity_, "pointer is not an object of this pool");
    return static_cast<u32>(offset / sizeof(T));
  }

  T& at(u32 index) {
    TALLY_ASSERT(index < capacity_, "index %u out of range (capacity %u)", index, capacity_);
    return objects_[index];
  }

 private:
  std::unique_ptr<T[]> objects_;
  std::unique_ptr<u32[]> free_indices_;  // A stack: [0, free_count) are free, top last.
  std::unique_ptr<bool[]> acquired_;
  u32 capacity_;
  u32 free_count_;
};

}  // namespace tally::base
