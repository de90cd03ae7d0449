// Hashes for the state machine's tables. Deterministic and identical on every machine (no seeds,
// no addresses), so that table layouts, and hence checkpoints, are the same on every replica.
//
// Ids are often sequential or time-ordered (TigerBeetle's id() is a ULID), so the mixer must
// spread nearby keys over the whole table: a 64-bit finalizer (the one of SplitMix64/Murmur3)
// applied to both halves.
#pragma once

#include "tally/types.hpp"

namespace tally::state_machine {

constexpr u64 hash_mix(u64 value) {
  value ^= value >> 30;
  value *= 0xbf58476d1ce4e5b9;
  value ^= value >> 27;
  value *= 0x94d049bb133111eb;
  value ^= value >> 31;
  return value;
}

constexpr u64 hash_u128(u128 value) {
  return hash_mix(u128_low(value) ^ hash_mix(u128_high(value) + 0x9e3779b97f4a7c15));
}

constexpr u64 hash_u64(u64 value) { return hash_mix(value + 0x9e3779b97f4a7c15); }

}  // namespace tally::state_machine
