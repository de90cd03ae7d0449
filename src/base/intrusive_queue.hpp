// IntrusiveQueue: a first-in first-out queue of nodes linked through their `T* next` member.
//
// The queue owns no memory and never allocates; it only links nodes that live elsewhere
// (usually in a Pool). Picture of a queue holding a, b, c:
//
//   head ──> a ──next──> b ──next──> c ──next──> nullptr
//                                    ^
//   tail ────────────────────────────┘          count = 3
//
// Invariants:
// - head == nullptr  <=>  tail == nullptr  <=>  count == 0.
// - tail->next == nullptr, and count is the number of nodes reachable from head.
// - A node outside every queue has next == nullptr (pop and remove reset it).
// Misuse (popping an empty queue, pushing a linked node, removing an absent node) asserts.
#pragma once

#include "src/base/assert.hpp"
#include "src/base/intrusive_node.hpp"
#include "tally/types.hpp"

namespace tally::base {

template <IntrusiveNode T>
class IntrusiveQueue {
 public:
  IntrusiveQueue() = default;
  // A copy would share nodes with the original and break both.
  IntrusiveQueue(const IntrusiveQueue&) = delete;
  IntrusiveQueue& operator=(const IntrusiveQueue&) = delete;

  u32 count() const { return count_; }

  bool empty() const {
    TALLY_ASSERT((head_ == nullptr) == (tail_ == nullptr));
    TALLY_ASSERT((head_ == nullptr) == (count_ == 0));
    return head_ == nullptr;
  }

  // Appends at the tail. O(1), plus an O(count) membership check in debug builds.
  void push(T* node) {
    TALLY_ASSERT(node != nullptr);
    // The tail is the one linked node whose next is nullptr, so it needs its own check.
    TALLY_ASSERT(node->next == nullptr && node != tail_, "node is already in a queue");
    TALLY_ASSERT_SLOW(!contains(node));
    if (empty()) {
      head_ = node;
    } else {
      tail_->next = node;
    }
    tail_ = node;
    count_ += 1;
    TALLY_ASSERT(count_ > 0, "count overflow");
  }

  // Removes and returns the head. The queue must not be empty: check empty() or peek() first.
  T* pop() {
    TALLY_ASSERT(!empty(), "pop from an empty queue");
    T* node = head_;
    head_ = node->next;
    if (head_ == nullptr) {
      TALLY_ASSERT(tail_ == node && count_ == 1);
      tail_ = nullptr;
    }
    node->next = nullptr;
    count_ -= 1;
    return node;
  }

  // The head without removing it, or nullptr when empty (asking is not misuse).
  T* peek() const { return head_; }
  T* peek_last() const { return tail_; }

  // Unlinks a node from anywhere in the queue. O(count); the node must be in the queue.
  void remove(T* node) {
    TALLY_ASSERT(node != nullptr);
    TALLY_ASSERT(!empty(), "remove from an empty queue");
    if (head_ == node) {
      pop();
      return;
    }
    T* previous = head_;
    while (previous->next != nullptr && previous->next != node) previous = previous->next;
    TALLY_ASSERT(previous->next == node, "node is not in this queue");
    previous->next = node->next;
    if (tail_ == node) tail_ = previous;
    node->next = nullptr;
    count_ -= 1;
    TALLY_ASSERT(count_ > 0);
  }

  // O(count): for assertions and tests, not for logic on the hot path.
  bool contains(const T* node) const {
    u32 visited = 0;
    for (const T* current = head_; current != nullptr; current = current->next) {
      if (current == node) return true;
      visited += 1;
      TALLY_ASSERT(visited <= count_, "queue is longer than its count (a cycle?)");
    }
    return false;
  }

  // Calls `visit(T*)` on every node from head to tail. The visitor must not push or pop.
  template <typename Visit>
  void for_each(Visit&& visit) const {
    u32 visited = 0;
    for (T* current = head_; current != nullptr; current = current->next) {
      visit(current);
      visited += 1;
    }
    TALLY_ASSERT(visited == count_);
  }

 private:
  T* head_ = nullptr;
  T* tail_ = nullptr;
  u32 count_ = 0;
};

}  // namespace tally::base
