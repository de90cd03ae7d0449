// Prng: the seeded, deterministic pseudo-random number generator of the simulator and tests.
//
// The generator is xoshiro256** (Blackman and Vigna), its 256-bit state filled from a single u64
// seed by splitmix64, as its authors recommend. Everything is integer arithmetic on fixed-width
// types with explicit byte order, so the same seed gives the same sequence on every machine,
// compiler and build type: a failing simulator seed replays exactly. There is no floating point
// anywhere, so no result depends on rounding. Not for cryptography.
//
// Invariants: the state is never all zero (xoshiro's one fixed point); every bounded draw is
// unbiased (Lemire's multiply-and-reject, no modulo bias) and stays within its bounds.
#pragma once

#include <array>
#include <bit>
#include <concepts>
#include <cstddef>
#include <span>
#include <utility>

#include "src/base/assert.hpp"
#include "tally/types.hpp"

namespace tally::base {

// One step of splitmix64: advances `state` and returns the next output. From 0, the first
// outputs are 0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4 (the published reference values).
constexpr u64 splitmix64_next(u64& state) {
  state += 0x9e3779b97f4a7c15;
  u64 mixed = state;
  mixed = (mixed ^ (mixed >> 30)) * 0xbf58476d1ce4e5b9;
  mixed = (mixed ^ (mixed >> 27)) * 0x94d049bb133111eb;
  return mixed ^ (mixed >> 31);
}

// A probability as an exact fraction: numerator out of denominator, 0 <= numerator <= denominator.
struct Ratio {
  u64 numerator;
  u64 denominator;
};

inline constexpr u64 parts_per_million = 1'000'000;

class Prng {
 public:
  using State = std::array<u64, 4>;

  explicit constexpr Prng(u64 seed) {
    u64 seed_state = seed;
    for (u64& word : state_) word = splitmix64_next(seed_state);
    TALLY_ASSERT(state_valid(state_));
  }

  // For reference vectors and for saving and restoring a generator mid-run.
  static constexpr Prng from_state(const State& state) {
    TALLY_ASSERT(state_valid(state), "xoshiro256** state must not be all zero");
    Prng prng(0);
    prng.state_ = state;
    return prng;
  }

  constexpr const State& state() const { return state_; }

  // The raw xoshiro256** step.
  constexpr u64 next_u64() {
    const u64 result = std::rotl(state_[1] * 5, 7) * 9;
    const u64 shifted = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= shifted;
    state_[3] = std::rotl(state_[3], 45);
    return result;
  }

  // Uniform in [0, max], without modulo bias (Lemire, "Fast Random Integer Generation in an
  // Interval", 2019). The draw x maps to the high 64 bits of x * bound; the low 64 bits say
  // whether x falls in the short band of 2^64 % bound values that would give some outputs one
  // extra preimage, and such draws are rejected. Rejection is rare (at most bound / 2^64).
  template <std::unsigned_integral T>
  constexpr T int_inclusive(T max) {
    const u64 max_u64 = max;
    if (max_u64 == ~u64{0}) return static_cast<T>(next_u64());
    const u64 bound = max_u64 + 1;
    u128 product = u128{next_u64()} * bound;
    if (static_cast<u64>(product) < bound) {
      const u64 threshold = (u64{0} - bound) % bound;  // 2^64 % bound
      while (static_cast<u64>(product) < threshold) product = u128{next_u64()} * bound;
    }
    const u64 result = static_cast<u64>(product >> 64);
    TALLY_ASSERT(result <= max_u64);
    return static_cast<T>(result);
  }

  // Uniform in [min, max], for signed and unsigned types. The width max - min is computed in
  // u64 modulo 2^64, which is exact even for the full range of i64 (-2^63 .. 2^63 - 1).
  template <std::integral T>
  constexpr T range_inclusive(T min, T max) {
    TALLY_ASSERT(min <= max, "empty range");
    const u64 width = static_cast<u64>(max) - static_cast<u64>(min);
    const T result = static_cast<T>(static_cast<u64>(min) + int_inclusive(width));
    TALLY_ASSERT(min <= result && result <= max);
    return result;
  }

  // Uniform in [0, count): an index into a collection of `count` items.
  template <std::unsigned_integral T>
  constexpr T index(T count) {
    TALLY_ASSERT(count > 0, "index into an empty collection");
    return int_inclusive(static_cast<T>(count - 1));
  }

  // True with probability exactly numerator / denominator.
  constexpr bool chance(Ratio ratio) {
    TALLY_ASSERT(ratio.denominator > 0);
    TALLY_ASSERT(ratio.numerator <= ratio.denominator, "probability above 1");
    return index(ratio.denominator) < ratio.numerator;
  }

  // True with probability parts / 1'000'000: how fault rates are configured.
  constexpr bool chance_ppm(u64 parts) {
    return chance(Ratio{.numerator = parts, .denominator = parts_per_million});
  }

  constexpr bool boolean() { return (next_u64() >> 63) != 0; }

  // Fills `bytes` from successive draws, each written least significant byte first, so the
  // bytes do not depend on the machine's byte order.
  constexpr void fill(std::span<u8> bytes) {
    u64 word = 0;
    for (std::size_t index = 0; index < bytes.size(); index += 1) {
      if (index % 8 == 0) word = next_u64();
      bytes[index] = static_cast<u8>(word);
      word >>= 8;
    }
  }

  // Fisher-Yates: every permutation equally likely.
  template <typename T>
  constexpr void shuffle(std::span<T> items) {
    for (std::size_t index = items.size(); index > 1; index -= 1) {
      const std::size_t other = int_inclusive(index - 1);
      TALLY_ASSERT(other < index);
      std::swap(items[index - 1], items[other]);
    }
  }

 private:
  static constexpr bool state_valid(const State& state) {
    return (state[0] | state[1] | state[2] | state[3]) != 0;
  }

  State state_{};
};

}  // namespace tally::base
