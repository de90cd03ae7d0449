// Tests of the first two tiers of errors: TALLY_ASSERT traps with its context printed, and
// fatal() exits with its reason's code and name. Every death happens in a forked child.
#include "src/base/assert.hpp"

#include <doctest/doctest.h>

#include <set>
#include <string>

#include "src/base/death_test.hpp"

namespace {

using tally::base::FatalReason;
using tally::base::death_test::run_in_child;

// Kept out of line and opaque to the optimiser, so the asserted conditions below are decided
// at run time rather than folded away.
[[gnu::noinline]] int opaque(int value) {
  asm volatile("" : "+r"(value));
  return value;
}

}  // namespace

TEST_SUITE("assert") {
  TEST_CASE("assert: a true assertion does nothing and evaluates its condition once") {
    int evaluated = 0;
    TALLY_ASSERT(++evaluated == 1);
    TALLY_ASSERT(opaque(2) == 2, "with a message %d", 2);
    CHECK(evaluated == 1);
  }

  TEST_CASE("assert: a false assertion traps and prints condition and place and message") {
    const auto result = run_in_child([] { TALLY_ASSERT(opaque(1) + 1 == 3, "value %d", 42); });
    INFO(result.stderr_text);
    CHECK(result.trapped());
    CHECK_FALSE(result.exited);
    CHECK(result.stderr_contains("assertion failed: opaque(1) + 1 == 3"));
    CHECK(result.stderr_contains("src/base/assert_test.cpp:"));
    CHECK(result.stderr_contains("value 42"));
    CHECK(result.stderr_contains(" in operator()"));  // The enclosing function: the lambda.
  }

  TEST_CASE("assert: a false assertion without a message prints condition and place") {
    const auto result = run_in_child([] { TALLY_ASSERT(opaque(0) != 0); });
    CHECK(result.trapped());
    CHECK(result.stderr_contains("assertion failed: opaque(0) != 0"));
    CHECK(result.stderr_contains("src/base/assert_test.cpp:"));
  }

  TEST_CASE("assert: TALLY_UNREACHABLE traps") {
    const auto result = run_in_child([] {
      if (opaque(1) == 1) TALLY_UNREACHABLE();
    });
    CHECK(result.trapped());
    CHECK(result.stderr_contains("assertion failed: unreachable"));
  }

  TEST_CASE("assert: a child that does not assert exits cleanly") {
    const auto result = run_in_child([] { TALLY_ASSERT(opaque(1) == 1); });
    CHECK(result.exited);
    CHECK(result.exit_code == 0);
    CHECK_FALSE(result.trapped());
    CHECK(result.stderr_text.empty());
  }

  TEST_CASE("assert: TALLY_ASSERT_SLOW runs if and only if TALLY_DEBUG is defined") {
    int evaluated = 0;
    TALLY_ASSERT_SLOW(++evaluated == 1);
    const auto result = run_in_child([] { TALLY_ASSERT_SLOW(opaque(1) == 2, "slow"); });
#if defined(TALLY_DEBUG)
    CHECK(evaluated == 1);
    CHECK(result.trapped());
    CHECK(result.stderr_contains("assertion failed: opaque(1) == 2"));
#else
    CHECK(evaluated == 0);
    CHECK(result.exited);
    CHECK(result.exit_code == 0);
#endif
  }

  TEST_CASE("assert: fatal exits with the code of its reason and prints reason and message") {
    const auto result = run_in_child([] {
      tally::base::fatal(FatalReason::data_file_invalid, "no superblock quorum in %s", "0_0.tally");
    });
    CHECK(result.exited);
    CHECK_FALSE(result.signaled);
    CHECK(result.exit_code == 13);
    CHECK(result.stderr_contains(
        "tally: fatal: invalid data file: no superblock quorum in 0_0.tally"));
  }

  TEST_CASE("assert: every fatal reason has its own exit code and its own name") {
    const FatalReason reasons[] = {
        FatalReason::io_uring_unavailable, FatalReason::direct_io_unsupported,
        FatalReason::storage_error,        FatalReason::data_file_invalid,
        FatalReason::data_file_exists,     FatalReason::data_file_mismatch,
        FatalReason::address_in_use,       FatalReason::address_invalid,
        FatalReason::configuration_invalid, FatalReason::out_of_memory,
        FatalReason::allocation_after_seal, FatalReason::no_space,
    };
    std::set<int> codes;
    std::set<std::string> names;
    for (const FatalReason reason : reasons) {
      const int code = static_cast<int>(reason);
      CHECK(code >= 10);  // 1 and 2 stay with generic failure and usage errors.
      CHECK(code < 126);  // 126 and up mean "not executable", "not found" or a signal to shells.
      codes.insert(code);
      const std::string name = tally::base::fatal_reason_name(reason);
      CHECK(name != "unknown");
      names.insert(name);
    }
    CHECK(codes.size() == std::size(reasons));
    CHECK(names.size() == std::size(reasons));
    CHECK(std::string(tally::base::fatal_reason_name(static_cast<FatalReason>(99))) == "unknown");
  }
}
