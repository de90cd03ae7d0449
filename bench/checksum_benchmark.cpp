// Throughput of the AEGIS-128L checksum (tally/checksum.hpp): one-shot at message sizes from a
// header-sized 256 B to 1 MiB, the streaming form, and the portable target for comparison.
//
// Every benchmark reports allocations_per_iteration from the allocation guard's counter, taken
// around the timed loop only; it must be 0 (the checksum never allocates). Results and the
// machine they were measured on are in perf/checksum.md.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "src/base/allocation_guard.hpp"
#include "src/base/assert.hpp"
#include "src/simd/checksum_targets.hpp"
#include "tally/checksum.hpp"

namespace {

using tally::u128;
using tally::u64;
using tally::u8;

constexpr std::size_t input_size_max = std::size_t{1} << 20;

// Static, so that no benchmark allocates its input. Filled once with splitmix64 output: the
// content does not change the work, but zeros would make a broken benchmark look plausible.
alignas(64) u8 input[input_size_max];

const u8* input_bytes() {
  static const bool filled = [] {
    u64 seed = 0x7a11c4ec5u;
    for (std::size_t i = 0; i < input_size_max; i += 8) {
      seed += 0x9e3779b97f4a7c15u;
      u64 z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
      z ^= z >> 31;
      for (std::size_t j = 0; j < 8; j++) input[i + j] = static_cast<u8>(z >> (8 * j));
    }
    return true;
  }();
  (void)filled;
  return input;
}

std::size_t size_argument(const benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  TALLY_ASSERT(size <= input_size_max);
  return size;
}

void report(benchmark::State& state, std::size_t size, u64 allocations) {
  const auto iterations = static_cast<u64>(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(iterations * size));
  state.counters["allocations_per_iteration"] =
      static_cast<double>(allocations) / static_cast<double>(iterations);
}

void checksum_one_shot(benchmark::State& state) {
  const std::size_t size = size_argument(state);
  const u8* data = input_bytes();
  state.SetLabel(tally::simd::checksum_target_name(tally::simd::checksum_target_current()));

  const u64 allocations_before = tally::base::allocation_guard::allocations_total();
  for (auto _ : state) {
    u128 result = tally::checksum(data, size);
    benchmark::DoNotOptimize(result);
  }
  report(state, size,
         tally::base::allocation_guard::allocations_total() - allocations_before);
}
BENCHMARK(checksum_one_shot)->Arg(256)->Arg(4 << 10)->Arg(64 << 10)->Arg(1 << 20);

// The same, forced onto the portable target (software AES rounds): what a CPU without AES
// instructions would get.
void checksum_one_shot_portable(benchmark::State& state) {
  const std::size_t size = size_argument(state);
  const u8* data = input_bytes();
  const tally::simd::ChecksumTargetOverride portable(tally::simd::checksum_target_portable());
  state.SetLabel(tally::simd::checksum_target_name(tally::simd::checksum_target_current()));

  const u64 allocations_before = tally::base::allocation_guard::allocations_total();
  for (auto _ : state) {
    u128 result = tally::checksum(data, size);
    benchmark::DoNotOptimize(result);
  }
  report(state, size,
         tally::base::allocation_guard::allocations_total() - allocations_before);
}
BENCHMARK(checksum_one_shot_portable)->Arg(4 << 10);

// The streaming form fed in 1000-byte pieces, which are not a multiple of the 32-byte block, so
// most adds complete a pending block first: the cost of the stream's bookkeeping.
void checksum_stream(benchmark::State& state) {
  const std::size_t size = size_argument(state);
  const u8* data = input_bytes();
  constexpr std::size_t piece_size = 1000;

  const u64 allocations_before = tally::base::allocation_guard::allocations_total();
  for (auto _ : state) {
    tally::ChecksumStream stream;
    for (std::size_t offset = 0; offset < size; offset += piece_size) {
      stream.add(data + offset, std::min(piece_size, size - offset));
    }
    u128 result = stream.finish();
    benchmark::DoNotOptimize(result);
  }
  report(state, size,
         tally::base::allocation_guard::allocations_total() - allocations_before);
}
BENCHMARK(checksum_stream)->Arg(64 << 10);

}  // namespace

BENCHMARK_MAIN();
