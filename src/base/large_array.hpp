// LargeArray: a fixed-capacity array of trivially copyable records, reserved once at start-up.
//
// The state machine's tables are sized for the worst case (millions of transfers), most of which
// a given run never touches. The memory comes from anonymous mmap: it reads as zero and the kernel
// commits a page on first touch, so an idle capacity costs address space, not RAM, and no start-up
// time is spent zeroing. Zero is therefore every element's initial value, and the tables built on
// top choose their encodings so that all-zero bytes mean "empty".
//
// Invariants: capacity is fixed between init() and deinit(); every access is bounds-checked by an
// assertion (the index is below capacity, not below some logical count, which the owner tracks).
#pragma once

#include <cstddef>
#include <span>
#include <type_traits>

#include "src/base/assert.hpp"
#include "tally/types.hpp"

namespace tally::base {

// Page-granular zeroed memory. Returns nullptr only if the kernel refuses the reservation.
void* pages_reserve(std::size_t size);
void pages_release(void* pages, std::size_t size);
// Whether later reservations of 2 MiB and more ask for transparent huge pages (the default:
// random reads of the tables miss the TLB less). A process that touches a few scattered pages of
// many short-lived reservations (the simulator, restarting replicas all the time) pays less
// with small ones: a huge page is zeroed whole on its first touch.
void pages_huge_set(bool wanted);
// Gives the pages back to the kernel and makes them read as zero again, keeping the reservation.
void pages_zero(void* pages, std::size_t size);
// Commits every page now, so that the hot path never takes a page fault (and the kernel never
// clears a fresh page in the middle of a batch).
void pages_prefault(void* pages, std::size_t size);

template <typename T>
class LargeArray {
  static_assert(std::is_trivially_copyable_v<T>);
  static_assert(alignof(T) <= 4096);

 public:
  LargeArray() = default;
  LargeArray(const LargeArray&) = delete;
  LargeArray& operator=(const LargeArray&) = delete;
  ~LargeArray() { deinit(); }

  void init(std::size_t capacity) {
    TALLY_ASSERT(data_ == nullptr);
    TALLY_ASSERT(capacity > 0);
    void* pages = pages_reserve(capacity * sizeof(T));
    if (pages == nullptr) {
      fatal(FatalReason::out_of_memory, "cannot reserve %zu bytes for %zu records of %zu bytes",
            capacity * sizeof(T), capacity, sizeof(T));
    }
    data_ = static_cast<T*>(pages);
    capacity_ = capacity;
  }

  void deinit() {
    if (data_ == nullptr) return;
    pages_release(data_, capacity_ * sizeof(T));
    data_ = nullptr;
    capacity_ = 0;
  }

  // Every element back to zero, the capacity kept.
  void reset() {
    TALLY_ASSERT(data_ != nullptr);
    pages_zero(data_, capacity_ * sizeof(T));
  }

  // Commits the whole capacity now (see pages_prefault). The elements stay zero.
  void prefault() {
    TALLY_ASSERT(data_ != nullptr);
    pages_prefault(data_, capacity_ * sizeof(T));
  }

  std::size_t capacity() const { return capacity_; }

  T& operator[](std::size_t index) {
    TALLY_ASSERT(index < capacity_, "index %zu, capacity %zu", index, capacity_);
    return data_[index];
  }
  const T& operator[](std::size_t index) const {
    TALLY_ASSERT(index < capacity_, "index %zu, capacity %zu", index, capacity_);
    return data_[index];
  }

  // Unchecked access for loops whose bounds were asserted once outside.
  T* data() { return data_; }
  const T* data() const { return data_; }

  std::span<T> first(std::size_t count) {
    TALLY_ASSERT(count <= capacity_);
    return {data_, count};
  }
  std::span<const T> first(std::size_t count) const {
    TALLY_ASSERT(count <= capacity_);
    return {data_, count};
  }

 private:
  T* data_ = nullptr;
  std::size_t capacity_ = 0;
};

}  // namespace tally::base
