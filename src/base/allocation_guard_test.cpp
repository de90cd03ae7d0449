// Tests of the allocation guard: every form of operator new goes through it and is counted;
// count mode counts allocations after seal; abort mode kills the process at the first one;
// code that stays within reserved capacity allocates nothing while sealed.
//
// doctest allocates (names, expressions, reports), so the heap is sealed only around the
// measured statements, results are kept in locals, and CHECKs run after unsealing. Deaths happen
// in forked children that seal, allocate and end with _exit.
#include "src/base/allocation_guard.hpp"

#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <limits>
#include <new>
#include <string>
#include <vector>

#include "src/base/bounded_array.hpp"
#include "src/base/death_test.hpp"
#include "src/base/intrusive_queue.hpp"
#include "src/base/intrusive_stack.hpp"
#include "src/base/pool.hpp"
#include "src/base/prng.hpp"
#include "src/base/ring_buffer.hpp"

namespace {

namespace guard = tally::base::allocation_guard;
using guard::Mode;
using tally::u32;
using tally::u64;
using tally::u8;
using tally::base::death_test::run_in_child;

struct alignas(64) CacheLine {
  u8 bytes[64];
};

struct alignas(4096) Page {
  u8 bytes[4096];
};

struct Node {
  u64 value = 0;
  Node* next = nullptr;
};

// How many allocations `body` made, read straight from the counter around it.
template <typename Body>
u64 allocations_during(Body&& body) {
  const u64 before = guard::allocations_total();
  body();
  return guard::allocations_total() - before;
}

bool aligned(const void* pointer, std::size_t alignment) {
  return reinterpret_cast<std::uintptr_t>(pointer) % alignment == 0;
}

}  // namespace

TEST_SUITE("allocation_guard") {
  TEST_CASE("allocation_guard: new int is counted so the replacement operator new is linked in") {
    const u64 before = guard::allocations_total();
    int* volatile pointer = new int(7);  // volatile: the allocation cannot be elided.
    const u64 after = guard::allocations_total();
    delete pointer;
    CHECK(after - before == 1);
  }

  TEST_CASE("allocation_guard: every form of operator new counts exactly one allocation") {
    CHECK(allocations_during([] {
            int* volatile pointer = new int[3];
            delete[] pointer;
          }) == 1);
    CHECK(allocations_during([] {
            int* volatile pointer = new (std::nothrow) int;
            delete pointer;
          }) == 1);
    CHECK(allocations_during([] {
            int* volatile pointer = new (std::nothrow) int[3];
            delete[] pointer;
          }) == 1);

    bool all_aligned = true;
    CHECK(allocations_during([&] {
            CacheLine* volatile pointer = new CacheLine;
            all_aligned = all_aligned && aligned(pointer, 64);
            delete pointer;
          }) == 1);
    CHECK(allocations_during([&] {
            CacheLine* volatile pointer = new CacheLine[3];
            all_aligned = all_aligned && aligned(pointer, 64);
            delete[] pointer;
          }) == 1);
    CHECK(allocations_during([&] {
            CacheLine* volatile pointer = new (std::nothrow) CacheLine;
            all_aligned = all_aligned && aligned(pointer, 64);
            delete pointer;
          }) == 1);
    CHECK(allocations_during([&] {
            CacheLine* volatile pointer = new (std::nothrow) CacheLine[2];
            all_aligned = all_aligned && aligned(pointer, 64);
            delete[] pointer;
          }) == 1);
    CHECK(allocations_during([&] {
            Page* volatile pointer = new Page;
            all_aligned = all_aligned && aligned(pointer, 4096);
            delete pointer;
          }) == 1);
    CHECK(all_aligned);

    // Direct calls, with the sized and aligned deletes they pair with.
    CHECK(allocations_during([] {
            void* pointer = ::operator new(100);
            ::operator delete(pointer, 100);
          }) == 1);
    CHECK(allocations_during([&] {
            void* pointer = ::operator new(100, std::align_val_t{256});
            all_aligned = all_aligned && aligned(pointer, 256);
            ::operator delete(pointer, 100, std::align_val_t{256});
          }) == 1);
    CHECK(allocations_during([&] {
            void* pointer = ::operator new[](100, std::align_val_t{128}, std::nothrow);
            all_aligned = all_aligned && aligned(pointer, 128);
            ::operator delete[](pointer, std::align_val_t{128}, std::nothrow);
          }) == 1);
    CHECK(all_aligned);

    // The standard library allocates through it too.
    CHECK(allocations_during([] {
            std::vector<int> vector(100);
            std::string text(1000, 'x');
            // Let the blocks escape, so the compiler cannot elide them.
            asm volatile("" : : "r"(vector.data()), "r"(text.data()) : "memory");
          }) == 2);
  }

  TEST_CASE("allocation_guard: a zero-byte allocation returns distinct non-null pointers") {
    void* first = ::operator new(0);
    void* second = ::operator new(0);
    CHECK(first != nullptr);
    CHECK(second != nullptr);
    CHECK(first != second);
    ::operator delete(first);
    ::operator delete(second);
  }

  TEST_CASE("allocation_guard: the default mode is abort in debug builds and count otherwise") {
#if defined(TALLY_DEBUG)
    CHECK(guard::default_mode() == Mode::abort);
#else
    CHECK(guard::default_mode() == Mode::count);
#endif
  }

  TEST_CASE("allocation_guard: count mode counts allocations after seal and only while sealed") {
    CHECK_FALSE(guard::sealed());
    const u64 after_seal_before = guard::allocations_after_seal();
    const u64 total_before = guard::allocations_total();

    guard::seal(Mode::count);
    const bool sealed_inside = guard::sealed();
    int* volatile single = new int(1);
    CacheLine* volatile line = new (std::nothrow) CacheLine[2];
    guard::unseal();

    const u64 after_seal_counted = guard::allocations_after_seal() - after_seal_before;
    const u64 total_counted = guard::allocations_total() - total_before;
    delete single;
    delete[] line;
    CHECK(sealed_inside);
    CHECK_FALSE(guard::sealed());
    CHECK(after_seal_counted == 2);
    CHECK(total_counted == 2);

    const u64 after_unseal = guard::allocations_after_seal();
    int* volatile unsealed = new int(2);
    delete unsealed;
    CHECK(guard::allocations_after_seal() == after_unseal);
  }

  TEST_CASE("allocation_guard: abort mode kills the process at the first allocation after seal") {
    const auto result = run_in_child([] {
      guard::seal(Mode::abort);
      int* volatile pointer = new int(1);
      (void)pointer;
    });
    INFO(result.stderr_text);
    CHECK(result.trapped());
    CHECK_FALSE(result.exited);
    CHECK(result.stderr_contains("allocation of 4 bytes after seal"));

    const auto aligned_result = run_in_child([] {
      guard::seal(Mode::abort);
      CacheLine* volatile pointer = new (std::nothrow) CacheLine;
      (void)pointer;
    });
    CHECK(aligned_result.trapped());
    CHECK(aligned_result.stderr_contains("allocation of 64 bytes after seal"));
  }

  TEST_CASE("allocation_guard: abort mode lets a process that only frees live") {
    // The control for the test above: the same child without the allocation exits cleanly.
    const auto result = run_in_child([] {
      int* volatile pointer = new int(1);
      guard::seal(Mode::abort);
      delete pointer;
      guard::unseal();
    });
    INFO(result.stderr_text);
    CHECK(result.exited);
    CHECK(result.exit_code == 0);
  }

  TEST_CASE("allocation_guard: sealing twice or unsealing an open heap asserts") {
    const auto twice = run_in_child([] {
      guard::seal(Mode::count);
      guard::seal(Mode::count);
    });
    CHECK(twice.trapped());
    CHECK(twice.stderr_contains("the heap is already sealed"));
    const auto open = run_in_child([] { guard::unseal(); });
    CHECK(open.trapped());
    CHECK(open.stderr_contains("the heap is not sealed"));
  }

  TEST_CASE("allocation_guard: reserved capacity and fixed-capacity containers allocate nothing") {
    // Everything is built before sealing, as start-up would.
    std::vector<u64> vector;
    vector.reserve(64);
    tally::base::BoundedArray<u64, 64> bounded;
    tally::base::RingBuffer<u64, 16> ring;
    tally::base::RingBufferDynamic<u64> ring_dynamic(16);
    tally::base::Pool<Node> pool(8);
    tally::base::IntrusiveQueue<Node> queue;
    tally::base::IntrusiveStack<Node> stack;
    tally::base::Prng prng(1);
    std::array<u8, 100> bytes{};
    std::array<u64, 32> items{};
    u64 sum = 0;

    const u64 total_before = guard::allocations_total();
    const u64 after_seal_before = guard::allocations_after_seal();
    guard::seal(Mode::count);
    for (u64 value = 0; value < 64; value += 1) {
      vector.push_back(value);
      bounded.push(value);
    }
    bounded.insert_at(0, bounded.ordered_remove(63));
    sum += bounded.swap_remove(10) + bounded.pop();
    for (u64 value = 0; value < 1000; value += 1) {  // Many wraps around both buffers.
      if (ring.full()) sum += ring.pop_front();
      ring.push_back(value);
      if (ring_dynamic.full()) sum += ring_dynamic.pop_back();
      ring_dynamic.push_front(value);
    }
    for (const u64 value : ring) sum += value;
    while (!pool.exhausted()) {
      Node* node = pool.acquire();
      node->value = prng.next_u64();
      queue.push(node);
    }
    while (!queue.empty()) stack.push(queue.pop());
    while (!stack.empty()) pool.release(stack.pop());
    for (u32 draw = 0; draw < 1000; draw += 1) sum += prng.range_inclusive<u64>(1, 6);
    prng.fill(bytes);
    prng.shuffle(std::span<u64>(items));
    vector.clear();
    guard::unseal();
    const u64 total_counted = guard::allocations_total() - total_before;
    const u64 after_seal_counted = guard::allocations_after_seal() - after_seal_before;

    CHECK(total_counted == 0);
    CHECK(after_seal_counted == 0);
    CHECK(sum > 0);
    CHECK(pool.free_count() == 8);

    // The control: one push beyond the reserved capacity makes the vector reallocate, and the
    // guard sees it.
    guard::seal(Mode::count);
    for (u64 value = 0; value < 65; value += 1) vector.push_back(value);
    guard::unseal();
    CHECK(guard::allocations_after_seal() - after_seal_before >= 1);
  }

#if !defined(TALLY_SANITIZE)
  // In sanitizer builds ASan refuses an impossible size itself (allocation-size-too-big) before
  // the guard can, so these run only in normal builds.
  TEST_CASE("allocation_guard: a failed allocation is a fatal stop or nullptr when nothrow") {
    static volatile std::size_t size_impossible = std::numeric_limits<std::size_t>::max() - 4096;
    // The results go to volatile pointers: an unused allocation may be removed by the compiler.
    const auto plain = run_in_child([] {
      void* volatile pointer = ::operator new(size_impossible);
      (void)pointer;
    });
    INFO(plain.stderr_text);
    CHECK(plain.exited);
    CHECK(plain.exit_code == static_cast<int>(tally::base::FatalReason::out_of_memory));
    CHECK(plain.stderr_contains("tally: fatal: out of memory: allocation of"));

    const auto aligned_plain = run_in_child([] {
      void* volatile pointer = ::operator new(size_impossible, std::align_val_t{64});
      (void)pointer;
    });
    CHECK(aligned_plain.exit_code == static_cast<int>(tally::base::FatalReason::out_of_memory));

    const u64 before = guard::allocations_total();
    void* volatile nothrow = ::operator new(size_impossible, std::nothrow);
    void* volatile nothrow_aligned =
        ::operator new[](size_impossible, std::align_val_t{64}, std::nothrow);
    const u64 counted = guard::allocations_total() - before;
    CHECK(nothrow == nullptr);
    CHECK(nothrow_aligned == nullptr);
    CHECK(counted == 2);  // Failed attempts are counted too.
  }
#endif
}
