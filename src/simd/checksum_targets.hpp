// The checksum's compiled targets, for tests and benchmarks: which instruction sets checksum.cpp
// was compiled for, which one the public functions dispatch to, and a way to force one.
//
// Targets are Highway target bits (HWY_SSE4, HWY_AVX2, ..., HWY_SCALAR), passed as i64 so that
// this header needs no Highway include. Production code never includes this header: the public
// API in tally/checksum.hpp always picks the best target for the CPU by itself.
#pragma once

#include "tally/types.hpp"

namespace tally::simd {

// Targets compiled into checksum.cpp that this CPU can run, as a mask of target bits. Always
// contains the portable target.
i64 checksum_targets();

// The portable target: software AES rounds, no vector instructions (HWY_SCALAR).
i64 checksum_target_portable();

// The target that tally::checksum and ChecksumStream dispatch to right now.
i64 checksum_target_current();

// "AVX3", "AVX2", "SSE4", "SSSE3", "SCALAR", ...
const char* checksum_target_name(i64 target);

// Makes the public functions dispatch to `target` (one bit of checksum_targets()) while it lives,
// then restores detection of the best target. It works by mocking Highway's CPU detection, which
// is process-wide and affects every Highway kernel: only for single-threaded tests and
// benchmarks, one at a time, with no checksum running on another thread meanwhile.
class ChecksumTargetOverride {
 public:
  explicit ChecksumTargetOverride(i64 target);
  ~ChecksumTargetOverride();

  ChecksumTargetOverride(const ChecksumTargetOverride&) = delete;
  ChecksumTargetOverride& operator=(const ChecksumTargetOverride&) = delete;
};

}  // namespace tally::simd
