// The node contract shared by the intrusive containers (IntrusiveQueue, IntrusiveStack).
//
// An intrusive container links the objects themselves through their own `T* next` member
// instead of allocating list cells, so it can hold objects from a pool after the heap is sealed
// and costs nothing per push. The price is that a node sits in at most one container at a time:
// `next == nullptr` means "not linked", and the containers assert it on push and restore it on
// pop, so a node that is pushed twice is caught at once.
#pragma once

#include <concepts>

namespace tally::base {

template <typename T>
concept IntrusiveNode = requires(T& node) {
  requires std::same_as<decltype(node.next), T*>;
};

}  // namespace tally::base
