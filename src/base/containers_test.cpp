// Tests of the fixed-capacity containers: behaviour within capacity against real values, and an
// assertion (a trap, in a forked child) for every overflow, underflow and out-of-range access.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "src/base/bounded_array.hpp"
#include "src/base/death_test.hpp"
#include "src/base/intrusive_queue.hpp"
#include "src/base/intrusive_stack.hpp"
#include "src/base/pool.hpp"
#include "src/base/ring_buffer.hpp"

namespace {

using tally::u32;
using tally::u64;
using tally::base::BoundedArray;
using tally::base::IntrusiveQueue;
using tally::base::IntrusiveStack;
using tally::base::Pool;
using tally::base::RingBuffer;
using tally::base::RingBufferDynamic;
using tally::base::death_test::ChildResult;
using tally::base::death_test::run_in_child;

struct Node {
  u32 id = 0;
  Node* next = nullptr;
};

static_assert(tally::base::IntrusiveNode<Node>);
static_assert(!tally::base::IntrusiveNode<int>);

template <typename Container>
std::vector<u32> values(const Container& container) {
  std::vector<u32> result;
  for (const auto& value : container) result.push_back(value);
  return result;
}

std::vector<u32> queue_ids(const IntrusiveQueue<Node>& queue) {
  std::vector<u32> result;
  queue.for_each([&](const Node* node) { result.push_back(node->id); });
  return result;
}

// A death test's verdict: the child trapped and said why.
void check_trapped(const ChildResult& result, const char* message) {
  INFO(result.stderr_text);
  CHECK(result.trapped());
  CHECK(result.stderr_contains(message));
}

}  // namespace

TEST_SUITE("intrusive_queue") {
  TEST_CASE("intrusive_queue: first in first out with the links restored on pop") {
    std::array<Node, 4> nodes{};
    for (u32 index = 0; index < nodes.size(); index += 1) nodes[index].id = index;
    IntrusiveQueue<Node> queue;
    CHECK(queue.empty());
    CHECK(queue.peek() == nullptr);

    for (Node& node : nodes) queue.push(&node);
    CHECK(queue.count() == 4);
    CHECK(queue.peek() == &nodes[0]);
    CHECK(queue.peek_last() == &nodes[3]);
    CHECK(queue_ids(queue) == std::vector<u32>{0, 1, 2, 3});
    CHECK(queue.contains(&nodes[2]));

    CHECK(queue.pop() == &nodes[0]);
    CHECK(nodes[0].next == nullptr);
    CHECK_FALSE(queue.contains(&nodes[0]));
    queue.push(&nodes[0]);  // Popped nodes may be pushed again.
    CHECK(queue_ids(queue) == std::vector<u32>{1, 2, 3, 0});

    while (!queue.empty()) queue.pop();
    CHECK(queue.count() == 0);
    CHECK(queue.peek() == nullptr);
    CHECK(queue.peek_last() == nullptr);
  }

  TEST_CASE("intrusive_queue: remove unlinks the head and a middle node and the tail") {
    std::array<Node, 5> nodes{};
    for (u32 index = 0; index < nodes.size(); index += 1) nodes[index].id = index;
    IntrusiveQueue<Node> queue;
    for (Node& node : nodes) queue.push(&node);

    queue.remove(&nodes[2]);
    CHECK(queue_ids(queue) == std::vector<u32>{0, 1, 3, 4});
    queue.remove(&nodes[0]);
    CHECK(queue_ids(queue) == std::vector<u32>{1, 3, 4});
    queue.remove(&nodes[4]);
    CHECK(queue_ids(queue) == std::vector<u32>{1, 3});
    CHECK(queue.peek_last() == &nodes[3]);
    CHECK(queue.count() == 2);
    for (const Node& node : {nodes[0], nodes[2], nodes[4]}) CHECK(node.next == nullptr);

    // The tail moved: pushing after removing the tail must link after the new tail.
    queue.push(&nodes[4]);
    CHECK(queue_ids(queue) == std::vector<u32>{1, 3, 4});
  }

  TEST_CASE("intrusive_queue: misuse asserts") {
    check_trapped(run_in_child([] {
                    IntrusiveQueue<Node> queue;
                    queue.pop();
                  }),
                  "pop from an empty queue");
    check_trapped(run_in_child([] {
                    std::array<Node, 2> nodes{};
                    IntrusiveQueue<Node> queue;
                    queue.push(&nodes[0]);
                    queue.push(&nodes[1]);
                    queue.push(&nodes[0]);  // Linked (next is set).
                  }),
                  "node is already in a queue");
    check_trapped(run_in_child([] {
                    Node node;
                    IntrusiveQueue<Node> queue;
                    queue.push(&node);
                    queue.push(&node);  // The tail: next is nullptr, caught by identity.
                  }),
                  "node is already in a queue");
    check_trapped(run_in_child([] {
                    std::array<Node, 2> nodes{};
                    IntrusiveQueue<Node> queue;
                    queue.push(&nodes[0]);
                    queue.remove(&nodes[1]);
                  }),
                  "node is not in this queue");
  }
}

TEST_SUITE("intrusive_stack") {
  TEST_CASE("intrusive_stack: last in first out") {
    std::array<Node, 3> nodes{};
    IntrusiveStack<Node> stack;
    CHECK(stack.empty());
    CHECK(stack.peek() == nullptr);
    for (Node& node : nodes) stack.push(&node);
    CHECK(stack.count() == 3);
    CHECK(stack.contains(&nodes[0]));
    CHECK(stack.pop() == &nodes[2]);
    CHECK(stack.pop() == &nodes[1]);
    CHECK(nodes[1].next == nullptr);
    CHECK(stack.peek() == &nodes[0]);
    CHECK(stack.pop() == &nodes[0]);
    CHECK(stack.empty());
  }

  TEST_CASE("intrusive_stack: misuse asserts") {
    check_trapped(run_in_child([] {
                    IntrusiveStack<Node> stack;
                    stack.pop();
                  }),
                  "pop from an empty stack");
    check_trapped(run_in_child([] {
                    Node node;
                    IntrusiveStack<Node> stack;
                    stack.push(&node);
                    stack.push(&node);
                  }),
                  "node is already in a container");
  }
}

TEST_SUITE("ring_buffer") {
  TEST_CASE("ring_buffer: push_back and pop_front wrap around the end of the slots") {
    RingBuffer<u32, 4> ring;
    CHECK(ring.capacity() == 4);
    CHECK(ring.empty());
    for (u32 value : {10u, 11u, 12u, 13u}) ring.push_back(value);
    CHECK(ring.full());
    CHECK(ring.pop_front() == 10);
    CHECK(ring.pop_front() == 11);
    ring.push_back(14);  // Slot 0.
    ring.push_back(15);  // Slot 1.
    CHECK(ring.full());
    CHECK(values(ring) == std::vector<u32>{12, 13, 14, 15});
    CHECK(ring.front() == 12);
    CHECK(ring.back() == 15);
    CHECK(ring.at(2) == 14);
    ring.at(2) = 40;
    CHECK(values(ring) == std::vector<u32>{12, 13, 40, 15});
  }

  TEST_CASE("ring_buffer: push_front and pop_back at both ends") {
    RingBuffer<u32, 5> ring;
    ring.push_back(2);
    ring.push_front(1);  // Wraps head from slot 0 to slot 4.
    ring.push_front(0);
    ring.push_back(3);
    CHECK(values(ring) == std::vector<u32>{0, 1, 2, 3});
    CHECK(ring.pop_back() == 3);
    CHECK(ring.pop_front() == 0);
    CHECK(ring.pop_back() == 2);
    CHECK(ring.pop_back() == 1);
    CHECK(ring.empty());
  }

  TEST_CASE("ring_buffer: a long run against a reference model") {
    // Mixed operations over many wraps, checked against std::vector used as a deque.
    RingBuffer<u32, 7> ring;
    std::vector<u32> model;
    bool counts_agree = true;
    u64 state = 1;
    for (u32 step = 0; step < 10'000; step += 1) {
      state = state * 6364136223846793005 + 1442695040888963407;
      const u32 choice = static_cast<u32>(state >> 61);  // 0..7
      if (choice < 2 && model.size() < 7) {
        ring.push_back(step);
        model.push_back(step);
      } else if (choice < 4 && model.size() < 7) {
        ring.push_front(step);
        model.insert(model.begin(), step);
      } else if (choice < 6 && !model.empty()) {
        CHECK(ring.pop_front() == model.front());
        model.erase(model.begin());
      } else if (!model.empty()) {
        CHECK(ring.pop_back() == model.back());
        model.pop_back();
      }
      counts_agree = counts_agree && ring.count() == model.size();
    }
    CHECK(counts_agree);
    CHECK(values(ring) == model);
  }

  TEST_CASE("ring_buffer: clear empties and const iteration works") {
    RingBuffer<u32, 3> ring;
    ring.push_back(1);
    ring.push_back(2);
    const auto& view = ring;
    CHECK(std::count(view.begin(), view.end(), 2u) == 1);
    ring.clear();
    CHECK(ring.empty());
    CHECK(view.begin() == view.end());
  }

  TEST_CASE("ring_buffer: the dynamic variant takes its capacity from the constructor") {
    RingBufferDynamic<std::string> ring(3);
    CHECK(ring.capacity() == 3);
    ring.push_back("a");
    ring.push_back("b");
    CHECK(ring.pop_front() == "a");
    ring.push_back("c");
    ring.push_back("d");
    CHECK(ring.full());
    CHECK(ring.front() == "b");
    CHECK(ring.back() == "d");
    CHECK(ring.at(1) == "c");
  }

  TEST_CASE("ring_buffer: misuse asserts") {
    check_trapped(run_in_child([] {
                    RingBuffer<u32, 2> ring;
                    ring.push_back(1);
                    ring.push_back(2);
                    ring.push_back(3);
                  }),
                  "push_back on a full ring buffer (capacity 2)");
    check_trapped(run_in_child([] {
                    RingBufferDynamic<u32> ring(1);
                    ring.push_back(1);
                    ring.push_front(2);
                  }),
                  "push_front on a full ring buffer (capacity 1)");
    check_trapped(run_in_child([] {
                    RingBuffer<u32, 2> ring;
                    ring.pop_front();
                  }),
                  "pop_front on an empty ring buffer");
    check_trapped(run_in_child([] {
                    RingBufferDynamic<u32> ring(2);
                    ring.push_back(1);
                    ring.pop_back();
                    ring.pop_back();
                  }),
                  "pop_back on an empty ring buffer");
    check_trapped(run_in_child([] {
                    RingBuffer<u32, 2> ring;
                    (void)ring.front();
                  }),
                  "front of an empty ring buffer");
    check_trapped(run_in_child([] {
                    RingBuffer<u32, 4> ring;
                    ring.push_back(1);
                    (void)ring.at(1);  // Within capacity, beyond count.
                  }),
                  "index 1 out of range (count 1)");
  }
}

TEST_SUITE("bounded_array") {
  TEST_CASE("bounded_array: push and pop and at and span") {
    BoundedArray<u32, 4> array;
    CHECK(array.capacity() == 4);
    CHECK(array.empty());
    CHECK(array.span().empty());
    for (u32 value : {5u, 6u, 7u, 8u}) array.push(value);
    CHECK(array.full());
    CHECK(array.count() == 4);
    CHECK(array.at(3) == 8);
    CHECK(array.span().size() == 4);
    CHECK(array.span()[1] == 6);
    CHECK(array.pop() == 8);
    CHECK(values(array) == std::vector<u32>{5, 6, 7});
    array.clear();
    CHECK(array.empty());
  }

  TEST_CASE("bounded_array: ordered insert and remove keep order and swap_remove moves the last") {
    BoundedArray<u32, 8> array;
    for (u32 value : {1u, 2u, 3u}) array.push(value);
    array.insert_at(0, 0);  // Front.
    array.insert_at(4, 4);  // Back (index == count).
    array.insert_at(2, 9);  // Middle.
    CHECK(values(array) == std::vector<u32>{0, 1, 9, 2, 3, 4});
    CHECK(array.ordered_remove(2) == 9);
    CHECK(values(array) == std::vector<u32>{0, 1, 2, 3, 4});
    CHECK(array.ordered_remove(4) == 4);
    CHECK(values(array) == std::vector<u32>{0, 1, 2, 3});
    CHECK(array.swap_remove(1) == 1);
    CHECK(values(array) == std::vector<u32>{0, 3, 2});
    CHECK(array.swap_remove(2) == 2);  // The last item: nothing to move.
    CHECK(values(array) == std::vector<u32>{0, 3});
  }

  TEST_CASE("bounded_array: misuse asserts") {
    check_trapped(run_in_child([] {
                    BoundedArray<u32, 2> array;
                    array.push(1);
                    array.push(2);
                    array.push(3);
                  }),
                  "push on a full bounded array (capacity 2)");
    check_trapped(run_in_child([] {
                    BoundedArray<u32, 2> array;
                    array.pop();
                  }),
                  "pop from an empty bounded array");
    check_trapped(run_in_child([] {
                    BoundedArray<u32, 4> array;
                    array.push(1);
                    (void)array.at(1);
                  }),
                  "index 1 out of range (count 1)");
    check_trapped(run_in_child([] {
                    BoundedArray<u32, 4> array;
                    array.insert_at(1, 1);
                  }),
                  "index 1 out of range (count 0)");
    check_trapped(run_in_child([] {
                    BoundedArray<u32, 1> array;
                    array.push(1);
                    array.insert_at(0, 2);
                  }),
                  "insert_at on a full bounded array (capacity 1)");
    check_trapped(run_in_child([] {
                    BoundedArray<u32, 4> array;
                    array.push(1);
                    array.ordered_remove(1);
                  }),
                  "index 1 out of range (count 1)");
    check_trapped(run_in_child([] {
                    BoundedArray<u32, 4> array;
                    array.swap_remove(0);
                  }),
                  "index 0 out of range (count 0)");
  }
}

TEST_SUITE("pool") {
  TEST_CASE("pool: acquire hands out every object once and release makes it reusable") {
    Pool<Node> pool(3);
    CHECK(pool.capacity() == 3);
    CHECK(pool.free_count() == 3);
    Node* first = pool.acquire();
    Node* second = pool.acquire();
    Node* third = pool.acquire();
    CHECK(pool.index_of(first) == 0);  // Deterministic order: 0, 1, 2.
    CHECK(pool.index_of(second) == 1);
    CHECK(pool.index_of(third) == 2);
    CHECK(pool.exhausted());
    CHECK(pool.acquired_count() == 3);
    CHECK(pool.try_acquire() == nullptr);

    pool.release(second);
    CHECK_FALSE(pool.acquired(second));
    CHECK(pool.acquired(first));
    CHECK(pool.free_count() == 1);
    CHECK(pool.acquire() == second);  // Last released, first reused.
    CHECK(&pool.at(2) == third);
    for (Node* node : {first, second, third}) pool.release(node);
    CHECK(pool.free_count() == 3);
  }

  TEST_CASE("pool: misuse asserts") {
    check_trapped(run_in_child([] {
                    Pool<Node> pool(1);
                    pool.acquire();
                    pool.acquire();
                  }),
                  "pool exhausted (capacity 1)");
    check_trapped(run_in_child([] {
                    Pool<Node> pool(2);
                    Node* node = pool.acquire();
                    pool.release(node);
                    pool.release(node);
                  }),
                  "object 0 released twice");
    check_trapped(run_in_child([] {
                    Pool<Node> pool(2);
                    Node foreign;
                    pool.release(&foreign);
                  }),
                  "pointer is not an object of this pool");
    check_trapped(run_in_child([] {
                    Pool<u64> pool(2);
                    u64* object = pool.acquire();
                    // Inside the pool's memory but not on an object boundary.
                    pool.release(reinterpret_cast<u64*>(reinterpret_cast<char*>(object) + 1));
                  }),
                  "pointer is not an object of this pool");
  }
}
