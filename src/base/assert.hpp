// Assertions and fatal stops: the first and second of the three tiers of errors.
//
// - TALLY_ASSERT(condition, format, ...) is a programmer error. It is on in every build,
//   independent of NDEBUG: it prints the condition, the place and an optional printf-style
//   message to stderr, then traps (SIGILL via __builtin_trap), so a core dump or debugger lands
//   on the exact spot.
// - TALLY_ASSERT_SLOW is for checks that cost O(n) or more; it runs only in debug, sanitizer and
//   simulator builds (TALLY_DEBUG) and compiles to nothing otherwise (the condition is not
//   evaluated, but still type-checked).
// - fatal(reason, format, ...) is an environmental stop (disk, kernel, configuration): a clear
//   message with a hint and a distinct exit code per reason, no trap, no core dump.
//
// The third tier, bad input, is never handled here: it is a status code, an eviction, a closed
// connection or a CLI message.
#pragma once

namespace tally::base {

[[noreturn]] void assert_fail(const char* condition, const char* file, int line,
                              const char* function);
[[noreturn, gnu::format(printf, 5, 6)]] void assert_fail_message(const char* condition,
                                                                 const char* file, int line,
                                                                 const char* function,
                                                                 const char* format, ...);

// Exit codes of environmental stops. Values are part of the CLI's contract (scripts test them)
// and never change meaning; 1 and 2 stay with generic failure and usage errors.
enum class FatalReason : int {
  io_uring_unavailable = 10,      // io_uring_setup failed: seccomp, sysctl, old kernel.
  direct_io_unsupported = 11,     // The file system refuses O_DIRECT.
  storage_error = 12,             // A read or write failed in a way that cannot be retried.
  data_file_invalid = 13,         // Not a Tally data file, or no valid superblock quorum.
  data_file_exists = 14,          // `format` would overwrite an existing file.
  data_file_mismatch = 15,        // Data file from another cluster, replica or replica count.
  address_in_use = 16,            // bind() found the port taken.
  address_invalid = 17,           // An address that cannot be parsed or resolved.
  configuration_invalid = 18,     // A configuration value outside its limits.
  out_of_memory = 19,             // Start-up allocation failed.
  allocation_after_seal = 20,     // A heap allocation after start-up (abort mode only).
  no_space = 21,                  // ENOSPC or a data file too small for its zones.
};

const char* fatal_reason_name(FatalReason reason);

[[noreturn, gnu::format(printf, 2, 3)]] void fatal(FatalReason reason, const char* format, ...);

}  // namespace tally::base

#define TALLY_ASSERT(condition, ...)                                                          \
  do {                                                                                        \
    if (!(condition)) [[unlikely]] {                                                          \
      TALLY_ASSERT_FAIL_(#condition __VA_OPT__(, ) __VA_ARGS__);                              \
    }                                                                                         \
  } while (0)

#define TALLY_ASSERT_FAIL_(condition, ...)                                                    \
  __VA_OPT__(::tally::base::assert_fail_message(condition, __FILE__, __LINE__, __func__,      \
                                                __VA_ARGS__);)                                \
  ::tally::base::assert_fail(condition, __FILE__, __LINE__, __func__)

#if defined(TALLY_DEBUG)
#define TALLY_ASSERT_SLOW(condition, ...) TALLY_ASSERT(condition __VA_OPT__(, ) __VA_ARGS__)
#else
#define TALLY_ASSERT_SLOW(condition, ...)                                                     \
  do {                                                                                        \
    (void)sizeof(static_cast<bool>(condition));                                               \
  } while (0)
#endif

// Marks code that must never run (a switch over a closed enum, a state that cannot occur).
#define TALLY_UNREACHABLE() ::tally::base::assert_fail("unreachable", __FILE__, __LINE__, __func__)
