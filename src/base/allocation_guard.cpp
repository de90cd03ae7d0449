// The allocation guard's implementation: the replacement of every global operator new/delete.
//
// Invariants:
// - Every operator new form counts exactly one allocation, whatever its size, alignment or
//   nothrow-ness, and counts it before asking the backend, so a failed allocation is counted too.
// - Every block is freed by the backend that allocated it: mimalloc in normal builds, the C
//   allocator (malloc/aligned_alloc/free) in sanitizer builds, where ASan must see every block.
// - Nothing here allocates through operator new, so the guard cannot recurse into itself.
//
// Linking: tally_base is a static library, and a static library member is linked only when
// something needs a symbol it defines. Two things make sure this member is always linked into
// an executable that links tally_base: operator new lives in the same translation unit as
// seal() and allocations_total(), which every executable that seals the heap references; and
// src/base/CMakeLists.txt passes `--undefined=_Znwm` to the linker, so even an executable that
// never names the guard pulls this member in to resolve operator new(size_t).
#include "src/base/allocation_guard.hpp"

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#include "src/base/assert.hpp"

#if !defined(TALLY_SANITIZE)
#include <mimalloc.h>
#endif

namespace tally::base::allocation_guard {

namespace {

enum class State : u8 { open, sealed_abort, sealed_count };

// Relaxed atomics: the counters are statistics and the state is set once at start-up by the
// thread that sealed; no other memory is published through them. All three are constant-
// initialised, so allocations made by static constructors before main() are safe to count.
constinit std::atomic<State> state{State::open};
constinit std::atomic<u64> allocation_count_total{0};
constinit std::atomic<u64> allocation_count_after_seal{0};

// Traps rather than calling fatal(): an allocation after seal is a programmer error (the first
// tier of errors), not an environmental stop. A trap leaves a core dump and stops a debugger
// with the culprit on the stack just below operator new, whereas fatal() exits with a code and
// the stack is lost. FatalReason::allocation_after_seal stays reserved
// for a future mode that prefers a clean exit code over a core dump.
[[noreturn, gnu::cold, gnu::noinline]] void allocation_after_seal_trap(std::size_t size) {
  assert_fail_message("allocation after seal", __FILE__, __LINE__, __func__,
                      "allocation of %zu bytes after seal", size);
}

void allocation_note(std::size_t size) {
  allocation_count_total.fetch_add(1, std::memory_order_relaxed);
  const State state_now = state.load(std::memory_order_relaxed);
  if (state_now == State::open) [[likely]] return;

  allocation_count_after_seal.fetch_add(1, std::memory_order_relaxed);
  if (state_now == State::sealed_abort) allocation_after_seal_trap(size);
  TALLY_ASSERT(state_now == State::sealed_count);
}

#if defined(TALLY_SANITIZE)

// malloc(0) may return nullptr, but operator new(0) must return a unique pointer.
void* backend_allocate(std::size_t size) { return std::malloc(size == 0 ? 1 : size); }

void* backend_allocate_aligned(std::size_t size, std::size_t alignment) {
  // aligned_alloc wants a size that is a multiple of the alignment (ASan checks it), so round
  // up: size 100 at alignment 64 becomes 128. A size near SIZE_MAX wraps to a small value;
  // refuse it instead, as an allocation failure.
  const std::size_t size_rounded = (size + alignment - 1) & ~(alignment - 1);
  if (size_rounded < size) return nullptr;
  return std::aligned_alloc(alignment, size_rounded == 0 ? alignment : size_rounded);
}

void backend_free(void* pointer) { std::free(pointer); }
void backend_free_sized(void* pointer, std::size_t) { std::free(pointer); }
void backend_free_aligned(void* pointer, std::size_t) { std::free(pointer); }
void backend_free_sized_aligned(void* pointer, std::size_t, std::size_t) { std::free(pointer); }

#else

void* backend_allocate(std::size_t size) { return mi_malloc(size); }

void* backend_allocate_aligned(std::size_t size, std::size_t alignment) {
  return mi_malloc_aligned(size, alignment);
}

void backend_free(void* pointer) { mi_free(pointer); }
void backend_free_sized(void* pointer, std::size_t size) { mi_free_size(pointer, size); }

void backend_free_aligned(void* pointer, std::size_t alignment) {
  mi_free_aligned(pointer, alignment);
}

void backend_free_sized_aligned(void* pointer, std::size_t size, std::size_t alignment) {
  mi_free_size_aligned(pointer, size, alignment);
}

#endif

std::size_t alignment_checked(std::align_val_t alignment) {
  const auto alignment_size = static_cast<std::size_t>(alignment);
  TALLY_ASSERT(std::has_single_bit(alignment_size), "alignment %zu", alignment_size);
  return alignment_size;
}

// The nothrow forms: nullptr on failure, as the standard requires.
void* allocate_or_null(std::size_t size) {
  allocation_note(size);
  return backend_allocate(size);
}

void* allocate_aligned_or_null(std::size_t size, std::align_val_t alignment) {
  const std::size_t alignment_size = alignment_checked(alignment);
  allocation_note(size);
  void* pointer = backend_allocate_aligned(size, alignment_size);
  TALLY_ASSERT(pointer == nullptr || reinterpret_cast<std::uintptr_t>(pointer) %
                                             alignment_size == 0);
  return pointer;
}

// The throwing forms would throw std::bad_alloc, but the engine has no exceptions: running out
// of memory is an environmental stop. Start-up is the only time Tally allocates, so this is
// where a configuration too large for the machine ends.
[[noreturn, gnu::cold, gnu::noinline]] void allocation_failed(std::size_t size) {
  fatal(FatalReason::out_of_memory,
        "allocation of %zu bytes failed; lower the configured limits or add memory", size);
}

void* allocate(std::size_t size) {
  void* pointer = allocate_or_null(size);
  if (pointer == nullptr) [[unlikely]] allocation_failed(size);
  return pointer;
}

void* allocate_aligned(std::size_t size, std::align_val_t alignment) {
  void* pointer = allocate_aligned_or_null(size, alignment);
  if (pointer == nullptr) [[unlikely]] allocation_failed(size);
  return pointer;
}

}  // namespace

Mode default_mode() {
#if defined(TALLY_DEBUG)
  return Mode::abort;
#else
  return Mode::count;
#endif
}

void seal(Mode mode) {
  TALLY_ASSERT(mode == Mode::abort || mode == Mode::count);
  const State state_sealed = mode == Mode::abort ? State::sealed_abort : State::sealed_count;
  const State state_before = state.exchange(state_sealed, std::memory_order_relaxed);
  TALLY_ASSERT(state_before == State::open, "the heap is already sealed");
}

void unseal() {
  const State state_before = state.exchange(State::open, std::memory_order_relaxed);
  TALLY_ASSERT(state_before != State::open, "the heap is not sealed");
}

bool sealed() { return state.load(std::memory_order_relaxed) != State::open; }

u64 allocations_total() { return allocation_count_total.load(std::memory_order_relaxed); }

u64 allocations_after_seal() {
  return allocation_count_after_seal.load(std::memory_order_relaxed);
}

}  // namespace tally::base::allocation_guard

// The replaceable global allocation functions, all twenty of them ([new.delete]). Deleting is
// always allowed, sealed or not: it never takes memory from the system.
namespace guard = tally::base::allocation_guard;

void* operator new(std::size_t size) { return guard::allocate(size); }
void* operator new[](std::size_t size) { return guard::allocate(size); }

void* operator new(std::size_t size, std::align_val_t alignment) {
  return guard::allocate_aligned(size, alignment);
}

void* operator new[](std::size_t size, std::align_val_t alignment) {
  return guard::allocate_aligned(size, alignment);
}

void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return guard::allocate_or_null(size);
}

void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return guard::allocate_or_null(size);
}

void* operator new(std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  return guard::allocate_aligned_or_null(size, alignment);
}

void* operator new[](std::size_t size, std::align_val_t alignment,
                     const std::nothrow_t&) noexcept {
  return guard::allocate_aligned_or_null(size, alignment);
}

void operator delete(void* pointer) noexcept { guard::backend_free(pointer); }
void operator delete[](void* pointer) noexcept { guard::backend_free(pointer); }

void operator delete(void* pointer, std::size_t size) noexcept {
  guard::backend_free_sized(pointer, size);
}

void operator delete[](void* pointer, std::size_t size) noexcept {
  guard::backend_free_sized(pointer, size);
}

void operator delete(void* pointer, std::align_val_t alignment) noexcept {
  guard::backend_free_aligned(pointer, static_cast<std::size_t>(alignment));
}

void operator delete[](void* pointer, std::align_val_t alignment) noexcept {
  guard::backend_free_aligned(pointer, static_cast<std::size_t>(alignment));
}

void operator delete(void* pointer, std::size_t size, std::align_val_t alignment) noexcept {
  guard::backend_free_sized_aligned(pointer, size, static_cast<std::size_t>(alignment));
}

void operator delete[](void* pointer, std::size_t size, std::align_val_t alignment) noexcept {
  guard::backend_free_sized_aligned(pointer, size, static_cast<std::size_t>(alignment));
}

void operator delete(void* pointer, const std::nothrow_t&) noexcept {
  guard::backend_free(pointer);
}

void operator delete[](void* pointer, const std::nothrow_t&) noexcept {
  guard::backend_free(pointer);
}

void operator delete(void* pointer, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  guard::backend_free_aligned(pointer, static_cast<std::size_t>(alignment));
}

void operator delete[](void* pointer, std::align_val_t alignment,
                       const std::nothrow_t&) noexcept {
  guard::backend_free_aligned(pointer, static_cast<std::size_t>(alignment));
}
