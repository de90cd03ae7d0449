// Timeout: a named countdown in ticks (10 ms each), owned by the part of the replica that needs
// it, in place of `ticks % N` checks scattered through tick().
//
//   start()    begins counting from zero (attempts back to zero);
//   stop()     stops; a stopped timeout never fires;
//   reset()    counts from zero again, attempts kept (an event that shows progress calls it);
//   tick()     one tick passes; call once per replica tick, fired() or not;
//   fired()    running and its wait has passed: the owner acts, then calls reset() to wait
//              again, backoff() to wait longer, or stop();
//   backoff()  one more attempt: the wait grows as after * 2^attempts (capped at 2^5 times),
//              plus a jitter drawn from the replica's PRNG, up to half of after, so that
//              replicas that time out together (two candidates of one view change, say) do not
//              retry in lockstep forever. Deterministic: the jitter comes from the seeded PRNG.
//
// Invariants: after_ticks > 0; a stopped timeout has ticks == 0; the wait is at least after
// and at most after * 2^attempts_shift_max + after / 2.
#pragma once

#include "src/base/assert.hpp"
#include "src/base/prng.hpp"
#include "tally/types.hpp"

namespace tally::vsr {

class Timeout {
 public:
  static constexpr u32 attempts_shift_max = 5;

  constexpr Timeout(const char* name, u64 after_ticks)
      : name_(name), after_(after_ticks), wait_(after_ticks) {
    TALLY_ASSERT(after_ticks > 0);
    // The longest wait, after << attempts_shift_max plus the jitter, must not overflow.
    TALLY_ASSERT(after_ticks <= (u64{1} << 32));
    TALLY_ASSERT(name != nullptr);
  }

  const char* name() const { return name_; }
  bool ticking() const { return ticking_; }
  u32 attempts() const { return attempts_; }
  u64 after() const { return after_; }
  u64 wait() const { return wait_; }

  void start() {
    invariants();
    ticking_ = true;
    ticks_ = 0;
    attempts_ = 0;
    wait_ = after_;
    TALLY_ASSERT(!fired(), "timeout %s fired at its start", name_);
  }

  void stop() {
    invariants();
    ticking_ = false;
    ticks_ = 0;
    attempts_ = 0;
    wait_ = after_;
    TALLY_ASSERT(!fired(), "timeout %s fired while stopped", name_);
  }

  void reset() {
    TALLY_ASSERT(ticking_, "timeout %s reset while stopped", name_);
    ticks_ = 0;
    TALLY_ASSERT(!fired(), "timeout %s fired at its reset", name_);
  }

  void tick() {
    // A stopped timeout stays at zero: it never fires.
    TALLY_ASSERT(ticking_ || ticks_ == 0, "timeout %s counted while stopped", name_);
    if (!ticking_) return;
    ticks_ += 1;
    TALLY_ASSERT(ticks_ > 0);
  }

  bool fired() const {
    TALLY_ASSERT(wait_ >= after_, "timeout %s waits less than its base", name_);
    return ticking_ && ticks_ >= wait_;
  }

  void backoff(base::Prng& prng) {
    TALLY_ASSERT(ticking_, "timeout %s backed off while stopped", name_);
    invariants();
    attempts_ += 1;
    const u32 shift = attempts_ < attempts_shift_max ? attempts_ : attempts_shift_max;
    const u64 jitter = prng.range_inclusive<u64>(0, after_ / 2);
    TALLY_ASSERT(jitter <= after_ / 2);
    wait_ = (after_ << shift) + jitter;
    ticks_ = 0;
    TALLY_ASSERT(wait_ >= after_ && wait_ <= (after_ << attempts_shift_max) + after_ / 2);
    TALLY_ASSERT(!fired(), "timeout %s fired at its backoff", name_);
  }

 private:
  // The file comment's invariants: the wait within its bounds; a stopped timeout at zero, with
  // no attempts and the base wait.
  constexpr void invariants() const {
    TALLY_ASSERT(after_ > 0, "timeout %s without a wait", name_);
    TALLY_ASSERT(wait_ >= after_ && wait_ <= (after_ << attempts_shift_max) + after_ / 2,
                 "timeout %s waits %llu ticks", name_, static_cast<unsigned long long>(wait_));
    TALLY_ASSERT(ticking_ || (ticks_ == 0 && attempts_ == 0 && wait_ == after_),
                 "timeout %s is stopped but counting", name_);
  }

  const char* name_;
  u64 after_;
  u64 wait_;
  u64 ticks_ = 0;
  u32 attempts_ = 0;
  bool ticking_ = false;
};

}  // namespace tally::vsr
