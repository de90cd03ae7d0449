// Anonymous mappings for LargeArray. MAP_NORESERVE: the worst-case capacities are address space,
// committed page by page as they are touched.
#include "src/base/large_array.hpp"

#include <sys/mman.h>

namespace tally::base {

namespace {

constexpr std::size_t page_size = 4096;

std::size_t pages_round_up(std::size_t size) {
  return (size + page_size - 1) / page_size * page_size;
}

}  // namespace

void* pages_reserve(std::size_t size) {
  TALLY_ASSERT(size > 0);
  void* pages = mmap(nullptr, pages_round_up(size), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (pages == MAP_FAILED) return nullptr;
  return pages;
}

void pages_release(void* pages, std::size_t size) {
  TALLY_ASSERT(pages != nullptr);
  const int result = munmap(pages, pages_round_up(size));
  TALLY_ASSERT(result == 0);
}

void pages_zero(void* pages, std::size_t size) {
  TALLY_ASSERT(pages != nullptr);
  // MADV_DONTNEED on private anonymous memory drops the pages; the next touch reads zeros.
  const int result = madvise(pages, pages_round_up(size), MADV_DONTNEED);
  TALLY_ASSERT(result == 0);
}

}  // namespace tally::base
