// Tests of the seeded PRNG: published reference vectors (so the transcription of xoshiro256**
// and splitmix64 is right, not merely self-consistent), fixed outputs per seed (so a seed means
// the same run on every machine), bounds, exact edge probabilities and rough uniformity.
#include "src/base/prng.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <limits>
#include <map>
#include <numeric>
#include <vector>

#include "src/base/death_test.hpp"

namespace {

using tally::i64;
using tally::u32;
using tally::u64;
using tally::u8;
using tally::base::Prng;
using tally::base::Ratio;

// Pearson's chi-square statistic of observed counts against a uniform expectation, times the
// expected count to stay in integers: sum((observed - expected)^2) / expected.
u64 chi_square(const std::vector<u64>& counts) {
  const u64 total = std::accumulate(counts.begin(), counts.end(), u64{0});
  const u64 expected = total / counts.size();
  u64 sum = 0;
  for (const u64 count : counts) {
    const u64 difference = count > expected ? count - expected : expected - count;
    sum += difference * difference;
  }
  return sum / expected;
}

}  // namespace

TEST_SUITE("prng") {
  TEST_CASE("prng: splitmix64 matches its published reference outputs") {
    u64 state = 0;
    CHECK(tally::base::splitmix64_next(state) == 0xe220a8397b1dcdaf);
    CHECK(tally::base::splitmix64_next(state) == 0x6e789e6aa1b965f4);
    CHECK(tally::base::splitmix64_next(state) == 0x06c45d188009454f);
    CHECK(tally::base::splitmix64_next(state) == 0xf88bb8a8724c81ec);
    state = 1234567;
    for (const u64 expected : {6457827717110365317ull, 3203168211198807973ull,
                               9817491932198370423ull, 4593380528125082431ull,
                               16408922859458223821ull}) {
      CHECK(tally::base::splitmix64_next(state) == expected);
    }
  }

  TEST_CASE("prng: xoshiro256 starstar matches the published vector from state 1 2 3 4") {
    auto prng = Prng::from_state({1, 2, 3, 4});
    for (const u64 expected : {11520ull, 0ull, 1509978240ull, 1215971899390074240ull,
                               1216172134540287360ull, 607988272756665600ull,
                               16172922978634559625ull, 8476171486693032832ull,
                               10595114339597558777ull, 2904607092377533576ull}) {
      CHECK(prng.next_u64() == expected);
    }
  }

  TEST_CASE("prng: a seed gives the same outputs on every machine") {
    // The state is the first four splitmix64 outputs of the seed; the outputs were computed by
    // an independent transcription of both algorithms.
    Prng zero(0);
    CHECK(zero.state() == Prng::State{0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4,
                                      0x06c45d188009454f, 0xf88bb8a8724c81ec});
    CHECK(zero.next_u64() == 0x99ec5f36cb75f2b4);
    CHECK(zero.next_u64() == 0xbf6e1f784956452a);
    CHECK(zero.next_u64() == 0x1a5f849d4933e6e0);
    CHECK(zero.next_u64() == 0x6aa594f1262d2d2c);

    Prng answer(42);
    CHECK(answer.next_u64() == 0x15780b2e0c2ec716);
    CHECK(answer.next_u64() == 0x6104d9866d113a7e);
    CHECK(answer.next_u64() == 0xae17533239e499a1);
    CHECK(answer.next_u64() == 0xecb8ad4703b360a1);

    // Bounded draws are part of the contract too: a simulator seed replays its choices.
    Prng choices(42);
    std::vector<u32> drawn;
    for (u32 draw = 0; draw < 16; draw += 1) drawn.push_back(choices.index(10u));
    CHECK(drawn == std::vector<u32>{0, 3, 6, 9, 9, 7, 7, 8, 7, 5, 6, 2, 8, 3, 7, 8});

    Prng signed_draws(7);
    std::vector<int> drawn_signed;
    for (u32 draw = 0; draw < 8; draw += 1) {
      drawn_signed.push_back(signed_draws.range_inclusive(-5, 5));
    }
    CHECK(drawn_signed == std::vector<int>{2, -2, 4, 5, 5, 4, -5, -4});
  }

  TEST_CASE("prng: the generator works at compile time") {
    constexpr u64 first = [] {
      Prng prng(0);
      return prng.next_u64();
    }();
    static_assert(first == 0x99ec5f36cb75f2b4);
    CHECK(first == 0x99ec5f36cb75f2b4);
  }

  TEST_CASE("prng: same seed gives same sequence and different seed differs") {
    Prng a(123), b(123), c(124);
    bool same = true;
    bool differs = false;
    for (u32 draw = 0; draw < 1000; draw += 1) {
      const u64 value = a.next_u64();
      same = same && value == b.next_u64();
      differs = differs || value != c.next_u64();
    }
    CHECK(same);
    CHECK(differs);
    const Prng::State saved = a.state();
    const u64 next = a.next_u64();
    CHECK(Prng::from_state(saved).next_u64() == next);
  }

  TEST_CASE("prng: int_inclusive stays within 0 to max and reaches both ends") {
    Prng prng(1);
    for (const u64 max : {0ull, 1ull, 2ull, 6ull, 255ull, 1000ull}) {
      bool within = true;
      bool saw_zero = false;
      bool saw_max = false;
      for (u32 draw = 0; draw < 20'000; draw += 1) {
        const u64 value = prng.int_inclusive(max);
        within = within && value <= max;
        saw_zero = saw_zero || value == 0;
        saw_max = saw_max || value == max;
      }
      CHECK(within);
      CHECK(saw_zero);
      CHECK(saw_max);
    }
    // Narrow types are drawn in their own type and stay in range.
    bool bytes_within = true;
    for (u32 draw = 0; draw < 1000; draw += 1) {
      bytes_within = bytes_within && prng.int_inclusive(u8{200}) <= 200;
    }
    CHECK(bytes_within);
    // The full range is the raw generator, and must not loop or assert.
    u64 accumulated = 0;
    for (u32 draw = 0; draw < 100; draw += 1) {
      accumulated |= prng.int_inclusive(std::numeric_limits<u64>::max());
    }
    const u64 top_bit = accumulated >> 63;
    CHECK(top_bit == 1);
  }

  TEST_CASE("prng: range_inclusive stays within min to max for signed and unsigned") {
    Prng prng(2);
    std::map<i64, u32> seen;
    for (u32 draw = 0; draw < 10'000; draw += 1) seen[prng.range_inclusive<i64>(-3, 3)] += 1;
    CHECK(seen.size() == 7);  // Every value of [-3, 3] was drawn...
    CHECK(seen.begin()->first == -3);  // ...and nothing outside it.
    CHECK(seen.rbegin()->first == 3);
    CHECK(prng.range_inclusive<u64>(9, 9) == 9);
    CHECK(prng.range_inclusive<i64>(-9, -9) == -9);
    bool within = true;
    for (u32 draw = 0; draw < 10'000; draw += 1) {
      const u32 value = prng.range_inclusive<u32>(1000, 1010);
      within = within && value >= 1000 && value <= 1010;
    }
    CHECK(within);
    // The widest signed range must not overflow.
    const i64 min = std::numeric_limits<i64>::min();
    const i64 max = std::numeric_limits<i64>::max();
    bool saw_negative = false;
    bool saw_positive = false;
    for (u32 draw = 0; draw < 100; draw += 1) {
      const i64 value = prng.range_inclusive(min, max);
      saw_negative = saw_negative || value < 0;
      saw_positive = saw_positive || value > 0;
    }
    CHECK(saw_negative);
    CHECK(saw_positive);
  }

  TEST_CASE("prng: index is below count") {
    Prng prng(3);
    bool within = true;
    for (const u32 count : {1u, 2u, 3u, 100u}) {
      for (u32 draw = 0; draw < 5000; draw += 1) within = within && prng.index(count) < count;
    }
    CHECK(within);
  }

  TEST_CASE("prng: bounded draws have no modulo bias") {
    // With bound = 3 * 2^62, taking next_u64() % bound would land below 2^62 half the time
    // (from [0, 2^62) and again from [3 * 2^62, 2^64)); an unbiased draw lands there a third of
    // the time.
    Prng prng(4);
    const u64 bound = 3ull << 62;
    u32 below = 0;
    const u32 draws = 60'000;
    for (u32 draw = 0; draw < draws; draw += 1) {
      if (prng.int_inclusive(bound - 1) < (1ull << 62)) below += 1;
    }
    CHECK(below > draws / 3 - 1000);
    CHECK(below < draws / 3 + 1000);
  }

  TEST_CASE("prng: chance is never at 0 and always at 1 and about right between") {
    Prng prng(5);
    u32 hits_quarter = 0;
    u32 hits_ppm = 0;
    u32 hits_never = 0;
    u32 misses_always = 0;
    for (u32 draw = 0; draw < 100'000; draw += 1) {
      if (prng.chance(Ratio{.numerator = 0, .denominator = 7})) hits_never += 1;
      if (prng.chance_ppm(0)) hits_never += 1;
      if (!prng.chance(Ratio{.numerator = 7, .denominator = 7})) misses_always += 1;
      if (!prng.chance_ppm(1'000'000)) misses_always += 1;
      if (prng.chance(Ratio{.numerator = 1, .denominator = 4})) hits_quarter += 1;
      if (prng.chance_ppm(100'000)) hits_ppm += 1;  // 10%.
    }
    CHECK(hits_never == 0);
    CHECK(misses_always == 0);
    // Expected 25000 (standard deviation 137) and 10000 (standard deviation 95).
    CHECK(hits_quarter > 24'000);
    CHECK(hits_quarter < 26'000);
    CHECK(hits_ppm > 9'300);
    CHECK(hits_ppm < 10'700);
  }

  TEST_CASE("prng: index is roughly uniform by chi-square and the check can fail") {
    Prng prng(6);
    std::vector<u64> counts(10, 0);
    for (u32 draw = 0; draw < 1'000'000; draw += 1) counts[prng.index(10u)] += 1;
    // 9 degrees of freedom: the statistic exceeds 33.7 with probability 1e-4.
    CHECK(chi_square(counts) < 34);
    // A slightly skewed histogram (one bucket 2% heavy, one 2% light) is rejected.
    std::vector<u64> skewed(10, 100'000);
    skewed[0] += 2000;
    skewed[1] -= 2000;
    CHECK(chi_square(skewed) >= 34);
  }

  TEST_CASE("prng: boolean is about half true") {
    Prng prng(7);
    u32 trues = 0;
    for (u32 draw = 0; draw < 100'000; draw += 1) trues += prng.boolean() ? 1u : 0u;
    CHECK(trues > 49'000);
    CHECK(trues < 51'000);
  }

  TEST_CASE("prng: fill writes each draw least significant byte first") {
    Prng words(8);
    const u64 first = words.next_u64();
    const u64 second = words.next_u64();
    Prng bytes_prng(8);
    std::array<u8, 13> bytes{};
    bytes_prng.fill(bytes);
    for (u32 index = 0; index < 8; index += 1) {
      CHECK(bytes[index] == static_cast<u8>(first >> (8 * index)));
    }
    for (u32 index = 8; index < 13; index += 1) {
      CHECK(bytes[index] == static_cast<u8>(second >> (8 * (index - 8))));
    }
    // The 13 bytes used two draws, so the next draw is the third.
    CHECK(bytes_prng.next_u64() == words.next_u64());
  }

  TEST_CASE("prng: shuffle permutes deterministically and every order is about equally likely") {
    std::array<u32, 8> items{0, 1, 2, 3, 4, 5, 6, 7};
    Prng prng(9);
    prng.shuffle(std::span<u32>(items));
    std::array<u32, 8> sorted = items;
    std::sort(sorted.begin(), sorted.end());
    CHECK(sorted == std::array<u32, 8>{0, 1, 2, 3, 4, 5, 6, 7});

    std::array<u32, 8> again{0, 1, 2, 3, 4, 5, 6, 7};
    Prng prng_again(9);
    prng_again.shuffle(std::span<u32>(again));
    CHECK(again == items);

    // Three items have six orders; 60000 shuffles give about 10000 each.
    std::map<std::array<u32, 3>, u64> orders;
    for (u32 round = 0; round < 60'000; round += 1) {
      std::array<u32, 3> small{0, 1, 2};
      prng.shuffle(std::span<u32>(small));
      orders[small] += 1;
    }
    CHECK(orders.size() == 6);
    std::vector<u64> counts;
    for (const auto& [order, count] : orders) counts.push_back(count);
    // 5 degrees of freedom: the statistic exceeds 25.7 with probability 1e-4.
    CHECK(chi_square(counts) < 26);
  }

  TEST_CASE("prng: misuse asserts") {
    using tally::base::death_test::run_in_child;
    const auto empty_range = run_in_child([] {
      Prng prng(1);
      (void)prng.range_inclusive(5, 4);
    });
    CHECK(empty_range.trapped());
    CHECK(empty_range.stderr_contains("empty range"));
    const auto above_one = run_in_child([] {
      Prng prng(1);
      (void)prng.chance(Ratio{.numerator = 2, .denominator = 1});
    });
    CHECK(above_one.trapped());
    CHECK(above_one.stderr_contains("probability above 1"));
    const auto empty_index = run_in_child([] {
      Prng prng(1);
      (void)prng.index(0u);
    });
    CHECK(empty_index.trapped());
    CHECK(empty_index.stderr_contains("index into an empty collection"));
  }
}
