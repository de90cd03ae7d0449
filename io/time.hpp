// Time: the real clocks, read with clock_gettime. The one place outside tests where Tally asks
// the machine what time it is; the replica gets its time through this type (or the simulator's),
// never from a clock of its own.
//
// - monotonic_ns() counts nanoseconds from an arbitrary fixed point (boot) and never goes
//   backwards. It reads CLOCK_BOOTTIME rather than CLOCK_MONOTONIC: both are steady, but
//   CLOCK_MONOTONIC stops while the machine is suspended, and a replica that wakes from suspend
//   must see that its timeouts and leases have long expired, not resume as if no time passed.
//   The value is checked against the previous reading: a clock that regresses is a kernel or
//   hypervisor bug that would silently break every timeout, so it stops the process.
// - realtime_ns() is wall-clock time since the Unix epoch (CLOCK_REALTIME). It may jump forwards
//   or backwards (NTP, an operator); it is only a source for timestamps that the cluster then
//   agrees on, never for measuring durations.
#pragma once

#include <time.h>

#include "src/base/assert.hpp"
#include "tally/types.hpp"

namespace tally::io {

struct Time {
  // The largest value monotonic_ns() has returned; readings are checked against it. Mutable:
  // reading a clock is not a change to it, and io::sim::Time's readings are const too.
  mutable u64 monotonic_guard_ns = 0;

  u64 monotonic_ns() const {
    struct timespec now = {};
    const int result = clock_gettime(CLOCK_BOOTTIME, &now);
    TALLY_ASSERT(result == 0, "clock_gettime(CLOCK_BOOTTIME) failed");
    TALLY_ASSERT(now.tv_sec >= 0 && now.tv_nsec >= 0);
    const u64 now_ns = static_cast<u64>(now.tv_sec) * 1'000'000'000 + static_cast<u64>(now.tv_nsec);
    TALLY_ASSERT(now_ns >= monotonic_guard_ns,
                 "the monotonic clock went backwards (%llu ns after %llu ns): a kernel or "
                 "hypervisor clock bug",
                 static_cast<unsigned long long>(now_ns),
                 static_cast<unsigned long long>(monotonic_guard_ns));
    monotonic_guard_ns = now_ns;
    return now_ns;
  }

  i64 realtime_ns() const {
    struct timespec now = {};
    const int result = clock_gettime(CLOCK_REALTIME, &now);
    TALLY_ASSERT(result == 0, "clock_gettime(CLOCK_REALTIME) failed");
    return static_cast<i64>(now.tv_sec) * 1'000'000'000 + static_cast<i64>(now.tv_nsec);
  }

  // The real clock advances by itself. Present so that one Time concept covers this and
  // io::sim::Time, whose clock moves only when ticked.
  void tick() {}
};

}  // namespace tally::io
