// Anonymous mappings for LargeArray. MAP_NORESERVE: the worst-case capacities are address space,
// committed page by page as they are touched. Mappings of 2 MiB and more are aligned to 2 MiB and
// asked to use transparent huge pages: the state machine's tables are read at random (hash
// slots, account rows), and with 4 KiB pages most such reads would also miss the TLB.
#include "src/base/large_array.hpp"

#include <sys/mman.h>

#include <cstdint>

namespace tally::base {

namespace {

constexpr std::size_t page_size = 4096;
constexpr std::size_t huge_page_size = std::size_t{2} << 20;

// Whether large mappings ask for huge pages (pages_huge_set()).
bool huge_pages_wanted = true;

std::size_t pages_round_up(std::size_t size) {
  return (size + page_size - 1) / page_size * page_size;
}

}  // namespace

void* pages_reserve(std::size_t size) {
  TALLY_ASSERT(size > 0);
  const std::size_t length = pages_round_up(size);
  const bool huge = huge_pages_wanted && length >= huge_page_size;
  // Over-reserve by one huge page, then trim both ends so the mapping starts on a 2 MiB boundary.
  const std::size_t reserved = huge ? length + huge_page_size : length;
  void* mapping = mmap(nullptr, reserved, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mapping == MAP_FAILED) return nullptr;
  if (!huge) return mapping;

  const auto start = reinterpret_cast<std::uintptr_t>(mapping);
  const std::uintptr_t aligned = (start + huge_page_size - 1) & ~(huge_page_size - 1);
  const std::size_t head = aligned - start;
  const std::size_t tail = reserved - head - length;
  if (head > 0) {
    const int result = munmap(mapping, head);
    TALLY_ASSERT(result == 0);
  }
  if (tail > 0) {
    const int result = munmap(reinterpret_cast<void*>(aligned + length), tail);
    TALLY_ASSERT(result == 0);
  }
  void* pages = reinterpret_cast<void*>(aligned);
  // Advice only: where huge pages are disabled the mapping works with small ones.
  (void)madvise(pages, length, MADV_HUGEPAGE);
  return pages;
}

void pages_huge_set(bool wanted) { huge_pages_wanted = wanted; }

void pages_release(void* pages, std::size_t size) {
  TALLY_ASSERT(pages != nullptr);
  const int result = munmap(pages, pages_round_up(size));
  TALLY_ASSERT(result == 0);
}

void pages_prefault(void* pages, std::size_t size) {
  TALLY_ASSERT(pages != nullptr);
  const std::size_t length = pages_round_up(size);
  // MADV_POPULATE_WRITE (Linux 5.14) faults the range in with one call; older kernels get a
  // write to every page, which does the same more slowly.
  constexpr int populate_write = 23;
  if (madvise(pages, length, populate_write) == 0) return;
  auto* bytes = static_cast<volatile char*>(pages);
  for (std::size_t offset = 0; offset < length; offset += page_size) bytes[offset] = 0;
}

void pages_zero(void* pages, std::size_t size) {
  TALLY_ASSERT(pages != nullptr);
  // MADV_DONTNEED on private anonymous memory drops the pages; the next touch reads zeros.
  const int result = madvise(pages, pages_round_up(size), MADV_DONTNEED);
  TALLY_ASSERT(result == 0);
}

}  // namespace tally::base
