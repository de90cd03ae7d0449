// Assertion failure and fatal stop: print, then trap or exit. No allocation on these paths, so
// they stay usable after the heap is sealed and when memory is exhausted.
#include "src/base/assert.hpp"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>

namespace tally::base {

namespace {

void print_assert_context(const char* condition, const char* file, int line,
                          const char* function) {
  std::fprintf(stderr, "tally: assertion failed: %s\n  at %s:%d in %s\n", condition, file, line,
               function);
}

}  // namespace

void assert_fail(const char* condition, const char* file, int line, const char* function) {
  print_assert_context(condition, file, line, function);
  std::fflush(stderr);
  __builtin_trap();
}

void assert_fail_message(const char* condition, const char* file, int line,
                         const char* function, const char* format, ...) {
  print_assert_context(condition, file, line, function);
  std::fputs("  ", stderr);
  va_list arguments;
  va_start(arguments, format);
  std::vfprintf(stderr, format, arguments);
  va_end(arguments);
  std::fputc('\n', stderr);
  std::fflush(stderr);
  __builtin_trap();
}

const char* fatal_reason_name(FatalReason reason) {
  switch (reason) {
    case FatalReason::io_uring_unavailable: return "io_uring unavailable";
    case FatalReason::direct_io_unsupported: return "direct IO unsupported";
    case FatalReason::storage_error: return "storage error";
    case FatalReason::data_file_invalid: return "invalid data file";
    case FatalReason::data_file_exists: return "data file exists";
    case FatalReason::data_file_mismatch: return "data file mismatch";
    case FatalReason::address_in_use: return "address in use";
    case FatalReason::address_invalid: return "invalid address";
    case FatalReason::configuration_invalid: return "invalid configuration";
    case FatalReason::out_of_memory: return "out of memory";
    case FatalReason::allocation_after_seal: return "allocation after seal";
    case FatalReason::no_space: return "no space";
  }
  return "unknown";
}

void fatal(FatalReason reason, const char* format, ...) {
  std::fprintf(stderr, "tally: fatal: %s: ", fatal_reason_name(reason));
  va_list arguments;
  va_start(arguments, format);
  std::vfprintf(stderr, format, arguments);
  va_end(arguments);
  std::fputc('\n', stderr);
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(static_cast<int>(reason));
}

}  // namespace tally::base
