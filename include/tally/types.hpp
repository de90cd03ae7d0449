// Fixed-width integer names used everywhere in Tally. Everything persisted or sent uses these;
// `u128` is the compiler's 128-bit integer (16-byte aligned on x86-64, little-endian in memory),
// which is exactly the wire's u128.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tally {

using u8 = std::uint8_t;
using u16 = std::uint16_t;
using u32 = std::uint32_t;
using u64 = std::uint64_t;
__extension__ using u128 = unsigned __int128;

using i8 = std::int8_t;
using i16 = std::int16_t;
using i32 = std::int32_t;
using i64 = std::int64_t;

static_assert(sizeof(u128) == 16);
static_assert(alignof(u128) == 16);

inline constexpr u128 u128_max = ~u128{0};

// Builds a u128 from its two 64-bit halves; literals above 2^64 cannot be written directly.
constexpr u128 make_u128(u64 high, u64 low) { return (u128{high} << 64) | u128{low}; }
constexpr u64 u128_high(u128 value) { return static_cast<u64>(value >> 64); }
constexpr u64 u128_low(u128 value) { return static_cast<u64>(value); }

}  // namespace tally
