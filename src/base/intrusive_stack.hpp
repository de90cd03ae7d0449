// IntrusiveStack: a last-in first-out stack of nodes linked through their `T* next` member.
//
// The natural free list: releasing pushes, acquiring pops, and the most recently released
// object (warm in cache) is reused first. Like IntrusiveQueue it owns no memory and never
// allocates. Picture after push(a), push(b), push(c):
//
//   top ──> c ──next──> b ──next──> a ──next──> nullptr        count = 3
//
// Invariants:
// - top == nullptr  <=>  count == 0; count is the number of nodes reachable from top.
// - A node outside every container has next == nullptr (pop resets it). The bottom node also
//   has next == nullptr, so pushing the bottom node twice is caught only by the debug check.
// Misuse (popping an empty stack, pushing a linked node) asserts.
#pragma once

#include "src/base/assert.hpp"
#include "src/base/intrusive_node.hpp"
#include "tally/types.hpp"

namespace tally::base {

template <IntrusiveNode T>
class IntrusiveStack {
 public:
  IntrusiveStack() = default;
  // A copy would share nodes with the original and break both.
  IntrusiveStack(const IntrusiveStack&) = delete;
  IntrusiveStack& operator=(const IntrusiveStack&) = delete;

  u32 count() const { return count_; }

  bool empty() const {
    TALLY_ASSERT((top_ == nullptr) == (count_ == 0));
    return top_ == nullptr;
  }

  // O(1), plus an O(count) membership check in debug builds.
  void push(T* node) {
    TALLY_ASSERT(node != nullptr);
    TALLY_ASSERT(node->next == nullptr && node != top_, "node is already in a container");
    TALLY_ASSERT_SLOW(!contains(node));
    node->next = top_;
    top_ = node;
    count_ += 1;
    TALLY_ASSERT(count_ > 0, "count overflow");
  }

  // Removes and returns the top. The stack must not be empty: check empty() or peek() first.
  T* pop() {
    TALLY_ASSERT(!empty(), "pop from an empty stack");
    T* node = top_;
    top_ = node->next;
    node->next = nullptr;
    count_ -= 1;
    TALLY_ASSERT((top_ == nullptr) == (count_ == 0));
    return node;
  }

  // The top without removing it, or nullptr when empty (asking is not misuse).
  T* peek() const { return top_; }

  // O(count): for assertions and tests, not for logic on the hot path.
  bool contains(const T* node) const {
    u32 visited = 0;
    for (const T* current = top_; current != nullptr; current = current->next) {
      if (current == node) return true;
      visited += 1;
      TALLY_ASSERT(visited <= count_, "stack is longer than its count (a cycle?)");
    }
    return false;
  }

 private:
  T* top_ = nullptr;
  u32 count_ = 0;
};

}  // namespace tally::base
