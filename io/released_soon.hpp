// Retrying a resource that a process killed a moment ago may still hold.
//
// When a process dies, the kernel tears down its io_uring asynchronously: until the operations
// that were in flight have finished (a direct write cannot be cancelled), the ring keeps its
// files open. For a replica that means its data file's lock and its listening socket outlive
// the process by a moment, even after a parent's wait() has returned. A replica restarted at
// once (by a supervisor, an operator's script or a test) would then be refused a port or a file
// that is in fact being released. So "busy" is retried for a short grace period before it
// counts; a resource that is really taken is still refused, only later.
#pragma once

#include <ctime>

#include "tally/types.hpp"

namespace tally::io {

// Long enough for the direct writes of a killed replica to drain on a loaded machine; short
// enough that a real conflict is reported promptly.
inline constexpr u64 released_soon_grace_ns = 3'000'000'000;
inline constexpr u64 released_soon_interval_ns = 50'000'000;

// Calls attempt() until it returns something other than `busy` or the grace period is over;
// returns the last result.
template <typename Attempt>
int retry_while_busy(int busy, Attempt attempt) {
  constexpr u64 attempt_count = released_soon_grace_ns / released_soon_interval_ns;
  for (u64 attempt_index = 1;; attempt_index += 1) {
    const int result = attempt();
    if (result != busy || attempt_index == attempt_count) return result;
    const struct timespec interval = {0, static_cast<long>(released_soon_interval_ns)};
    nanosleep(&interval, nullptr);
  }
}

}  // namespace tally::io
