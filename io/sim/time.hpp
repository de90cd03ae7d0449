// io::sim::Time: the simulator's clock. Time advances only when tick() is called, by one tick of
// 10 ms, so a run's notion of time is a pure function of how many ticks it has seen.
//
// Two readings, named as io::Time's (the real clocks), so that one Time concept covers both:
// - monotonic_ns(): nanoseconds since the clock was made, tick_count * 10 ms, exact, never jumps.
// - realtime_ns(): wall-clock nanoseconds since the Unix epoch. It starts at `epoch_ns`, follows
//   the monotonic clock, is shifted by `offset_ns` and runs fast or slow by `drift_ppm`, so clock
//   tests can give every replica a wrong or drifting wall clock:
//
//     realtime = epoch_ns + offset_ns + monotonic + monotonic * drift_ppm / 1'000'000
//
//   Example: drift_ppm = 500 (0.05% fast), after 1000 ticks (10 s): 10 s + 5 ms past the start.
//   Changing the offset or the drift moves realtime at once, like an NTP step on a real machine;
//   realtime is not monotonic, monotonic_ns() is.
//
// Invariants: monotonic_ns() never decreases; all arithmetic is integer (no rounding that
// depends on the machine); the products fit in 64 bits for runs of up to 290 years at any
// allowed drift.
#pragma once

#include "src/base/assert.hpp"
#include "tally/types.hpp"

namespace tally::io::sim {

inline constexpr u64 tick_ns = 10'000'000;

struct TimeOptions {
  i64 epoch_ns = 1'700'000'000'000'000'000;  // 2023-11-14T22:13:20Z.
  i64 offset_ns = 0;
  i64 drift_ppm = 0;
};

class Time {
 public:
  static constexpr i64 drift_ppm_max = 10'000;

  explicit constexpr Time(const TimeOptions& options)
      : epoch_ns_(options.epoch_ns), offset_ns_(options.offset_ns) {
    drift_set(options.drift_ppm);
  }

  constexpr void tick() { ticks_ += 1; }
  constexpr u64 ticks() const { return ticks_; }

  constexpr u64 monotonic_ns() const {
    const u64 result = ticks_ * tick_ns;
    TALLY_ASSERT(ticks_ == 0 || result / ticks_ == tick_ns, "monotonic clock overflow");
    return result;
  }

  constexpr i64 realtime_ns() const {
    const auto elapsed = static_cast<i64>(monotonic_ns());
    TALLY_ASSERT(elapsed >= 0);
    return epoch_ns_ + offset_ns_ + elapsed + elapsed / 1'000'000 * drift_ppm_ +
           elapsed % 1'000'000 * drift_ppm_ / 1'000'000;
  }

  constexpr void offset_set(i64 offset_ns) { offset_ns_ = offset_ns; }
  constexpr void drift_set(i64 drift_ppm) {
    TALLY_ASSERT(drift_ppm >= -drift_ppm_max && drift_ppm <= drift_ppm_max);
    drift_ppm_ = drift_ppm;
  }

 private:
  i64 epoch_ns_;
  i64 offset_ns_;
  i64 drift_ppm_ = 0;
  u64 ticks_ = 0;
};

}  // namespace tally::io::sim
