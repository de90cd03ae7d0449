// Tests of vsr::Timeout (src/vsr/timeout.hpp): when a timeout fires (exactly `after` ticks after
// start() or reset(), never while stopped), and how backoff() lengthens the wait: after * 2^n
// for attempt n, capped at 2^attempts_shift_max, plus a jitter of at most after / 2 drawn from
// the seeded PRNG, so that the same seed gives the same waits.
#include <vector>

#include "doctest/doctest.h"
#include "src/base/death_test.hpp"
#include "src/base/prng.hpp"
#include "src/vsr/timeout.hpp"
#include "tally/types.hpp"

namespace {

using tally::u32;
using tally::u64;
using tally::base::Prng;
using tally::vsr::Timeout;

// Ticks `timeout` until it fires; returns how many ticks that took (at most `limit`, else
// limit + 1), checking that it did not fire earlier.
u64 ticks_until_fired(Timeout& timeout, u64 limit) {
  for (u64 ticks = 1; ticks <= limit; ticks += 1) {
    timeout.tick();
    if (timeout.fired()) return ticks;
  }
  return limit + 1;
}

// The waits of `attempts` successive backoffs of a timeout of `after` ticks with a PRNG of
// `seed`.
std::vector<u64> backoff_waits(u64 after, u64 seed, u32 attempts) {
  Prng prng(seed);
  Timeout timeout("backoff", after);
  timeout.start();
  std::vector<u64> waits;
  for (u32 attempt = 0; attempt < attempts; attempt += 1) {
    timeout.backoff(prng);
    waits.push_back(timeout.wait());
  }
  return waits;
}

}  // namespace

TEST_SUITE("timeout") {
  TEST_CASE("timeout: fires exactly `after` ticks after start and stays fired") {
    // Goal: a started timeout is not fired for after - 1 ticks and is fired at tick `after`,
    // and it keeps reporting fired until its owner resets or stops it.
    Timeout timeout("prepare", 7);
    CHECK(timeout.after() == 7);
    CHECK(timeout.wait() == 7);
    CHECK(!timeout.ticking());
    timeout.start();
    CHECK(timeout.ticking());
    CHECK(!timeout.fired());
    for (u32 tick = 1; tick < 7; tick += 1) {
      timeout.tick();
      CHECK_MESSAGE(!timeout.fired(), "fired early, at tick ", tick);
    }
    timeout.tick();
    CHECK(timeout.fired());
    timeout.tick();
    timeout.tick();
    CHECK(timeout.fired());

    // A timeout of one tick fires at the first tick.
    Timeout short_timeout("short", 1);
    short_timeout.start();
    CHECK(!short_timeout.fired());
    CHECK(ticks_until_fired(short_timeout, 10) == 1);
  }

  TEST_CASE("timeout: never fires while stopped") {
    // Goal: a timeout that was never started, or was stopped, does not fire however long it is
    // ticked, and a stopped timeout starts counting from zero when started again.
    Timeout timeout("heartbeat", 3);
    CHECK(ticks_until_fired(timeout, 100) == 101);
    CHECK(!timeout.ticking());

    timeout.start();
    timeout.tick();
    timeout.tick();
    timeout.stop();
    CHECK(!timeout.ticking());
    CHECK(ticks_until_fired(timeout, 100) == 101);

    // Stopped after it fired: no longer fired.
    timeout.start();
    CHECK(ticks_until_fired(timeout, 100) == 3);
    timeout.stop();
    CHECK(!timeout.fired());

    // Started again: the two ticks before the first stop do not count.
    timeout.start();
    CHECK(ticks_until_fired(timeout, 100) == 3);
  }

  TEST_CASE("timeout: reset restarts the count") {
    // Goal: reset() makes the timeout wait its whole wait again from that moment, whether it
    // had fired or not.
    Timeout timeout("commit", 5);
    timeout.start();
    for (u32 tick = 0; tick < 4; tick += 1) timeout.tick();
    CHECK(!timeout.fired());
    timeout.reset();
    for (u32 tick = 0; tick < 4; tick += 1) timeout.tick();
    CHECK(!timeout.fired());  // Eight ticks since start, four since reset.
    timeout.tick();
    CHECK(timeout.fired());

    timeout.reset();
    CHECK(!timeout.fired());
    CHECK(timeout.ticking());
    CHECK(ticks_until_fired(timeout, 100) == 5);
  }

  TEST_CASE("timeout: backoff grows the wait by attempts, up to the documented maximum") {
    // Goal: attempt n waits after * 2^min(n, 5) plus a jitter of at most after / 2; the waits
    // grow strictly until the cap, never pass after * 2^5 + after / 2, and the timeout fires
    // exactly after its new wait, counted from the backoff.
    constexpr u64 after = 10;
    Prng prng(42);
    Timeout timeout("view_change", after);
    timeout.start();
    CHECK(ticks_until_fired(timeout, 1000) == after);

    u64 wait_previous = after;
    for (u32 attempt = 1; attempt <= 9; attempt += 1) {
      CAPTURE(attempt);
      timeout.backoff(prng);
      CHECK(timeout.attempts() == attempt);
      CHECK(!timeout.fired());
      const u32 shift = attempt < Timeout::attempts_shift_max ? attempt : 5;
      const u64 base = after << shift;
      CHECK(timeout.wait() >= base);
      CHECK(timeout.wait() <= base + after / 2);
      CHECK(timeout.wait() <= after * 32 + after / 2);
      if (attempt <= Timeout::attempts_shift_max) CHECK(timeout.wait() > wait_previous);
      wait_previous = timeout.wait();
      CHECK(ticks_until_fired(timeout, 1000) == timeout.wait());
    }
    CHECK(Timeout::attempts_shift_max == 5);

    // reset() keeps the longer wait and the attempts; start() goes back to the first wait.
    const u64 wait_backed_off = timeout.wait();
    timeout.reset();
    CHECK(timeout.attempts() == 9);
    CHECK(ticks_until_fired(timeout, 1000) == wait_backed_off);
    timeout.start();
    CHECK(timeout.attempts() == 0);
    CHECK(timeout.wait() == after);
    CHECK(ticks_until_fired(timeout, 1000) == after);

    // stop() also forgets the backoff.
    timeout.backoff(prng);
    CHECK(timeout.wait() >= 2 * after);
    timeout.stop();
    CHECK(timeout.attempts() == 0);
    CHECK(timeout.wait() == after);
  }

  TEST_CASE("timeout: backoff of a one-tick timeout has no jitter and doubles exactly") {
    // Goal: with after = 1 the jitter range is [0, 0], so the waits are exactly 2, 4, 8, 16,
    // 32, then 32 for every further attempt (the cap).
    CHECK(backoff_waits(1, 7, 8) == std::vector<u64>{2, 4, 8, 16, 32, 32, 32, 32});
    CHECK(backoff_waits(1, 8, 8) == std::vector<u64>{2, 4, 8, 16, 32, 32, 32, 32});
  }

  TEST_CASE("timeout: backoff jitter stays within after / 2 and varies") {
    // Goal: over many seeds, the jitter (wait minus after * 2^shift) is never above after / 2,
    // takes more than one value (it is drawn, not constant), and reaches both ends of its
    // range often enough to be seen.
    constexpr u64 after = 8;
    bool jitter_seen[after / 2 + 1] = {};
    for (u64 seed = 1; seed <= 200; seed += 1) {
      const std::vector<u64> waits = backoff_waits(after, seed, 7);
      for (u32 index = 0; index < waits.size(); index += 1) {
        const u32 attempt = index + 1;
        const u32 shift = attempt < Timeout::attempts_shift_max ? attempt : 5;
        const u64 base = after << shift;
        REQUIRE(waits[index] >= base);
        const u64 jitter = waits[index] - base;
        REQUIRE(jitter <= after / 2);
        jitter_seen[jitter] = true;
      }
    }
    for (u64 jitter = 0; jitter <= after / 2; jitter += 1) {
      CHECK_MESSAGE(jitter_seen[jitter], "jitter ", jitter, " never drawn");
    }
  }

  TEST_CASE("timeout: backoff is deterministic for a PRNG seed") {
    // Goal: the same seed gives the same waits, attempt for attempt; another seed gives other
    // waits (the jitter comes from the PRNG, nowhere else).
    const std::vector<u64> first = backoff_waits(100, 1234, 10);
    const std::vector<u64> second = backoff_waits(100, 1234, 10);
    const std::vector<u64> other = backoff_waits(100, 1235, 10);
    CHECK(first.size() == 10);
    CHECK(first == second);
    CHECK(first != other);

    // Two timeouts drawing from one PRNG in turn are deterministic as a pair too.
    const auto pair_waits = [] {
      Prng prng(99);
      Timeout left("left", 20);
      Timeout right("right", 20);
      left.start();
      right.start();
      left.backoff(prng);
      right.backoff(prng);
      return std::vector<u64>{left.wait(), right.wait()};
    };
    const std::vector<u64> pair_first = pair_waits();
    CHECK(pair_first == pair_waits());
    CHECK(pair_first[0] >= 40);
    CHECK(pair_first[1] >= 40);
  }

  TEST_CASE("timeout: reset or backoff of a stopped timeout asserts") {
    // Goal: the owner must start a timeout before resetting or backing it off; either misuse
    // traps with the timeout's name in the message.
    const tally::base::death_test::ChildResult reset = tally::base::death_test::run_in_child([] {
      Timeout timeout("stopped_reset", 4);
      timeout.reset();
    });
    CHECK(reset.trapped());
    CHECK(reset.stderr_contains("stopped_reset"));

    const tally::base::death_test::ChildResult backoff =
        tally::base::death_test::run_in_child([] {
          Prng prng(1);
          Timeout timeout("stopped_backoff", 4);
          timeout.start();
          timeout.stop();
          timeout.backoff(prng);
        });
    CHECK(backoff.trapped());
    CHECK(backoff.stderr_contains("stopped_backoff"));
  }
}
