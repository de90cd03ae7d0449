// AEGIS-128L as a MAC (see tally/checksum.hpp and protocol §2.1), written once over 16-byte
// blocks and compiled by Highway for every attainable x86 target plus a portable one. The public
// functions dispatch at run time, once per call, to the best target the CPU runs.
//
// Highway re-includes this file once per target (foreach_target.h), each time with a different
// HWY_NAMESPACE and instruction set; code outside the per-target namespace is guarded so that it
// is compiled once. Targets and their AES round:
//   AVX3, AVX2, SSE4   hn::AESRound = AESENC (no VAES on our CPUs, so one block per instruction)
//   SSSE3              hn::AESRound, emulated by Highway with byte shuffles (constant time)
//   SCALAR             portable::aes_round (tables), the fallback when nothing else runs
//
// Invariants:
// - every target gives the same u128 for the same bytes (checksum_test.cpp runs all of them);
// - on the vector targets, the eight state blocks stay in registers while 32-byte blocks are
//   absorbed: update() is always inlined and the loop makes no calls (perf/checksum.md shows
//   the loop);
// - nothing allocates: the stream's state lives in the caller's ChecksumStream, the rest on the
//   stack.
#ifndef HWY_COMPILE_ALL_ATTAINABLE
// All attainable targets, not only those better than the baseline: so the portable target and
// SSE4 exist next to AVX2/AVX3, and tests can prove that they all agree.
#define HWY_COMPILE_ALL_ATTAINABLE
#endif

#include <algorithm>
#include <bit>
#include <cstring>

#include "src/base/assert.hpp"
#include "src/simd/aes_portable.hpp"
#include "src/simd/checksum_targets.hpp"
#include "tally/checksum.hpp"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/simd/checksum.cpp"
#include <hwy/foreach_target.h>  // Re-includes this file once per target.
#include <hwy/highway.h>

#ifndef TALLY_SIMD_CHECKSUM_SHARED_
#define TALLY_SIMD_CHECKSUM_SHARED_

namespace tally::simd {

// AEGIS-128L absorbs 32 bytes (two AES blocks) per update.
constexpr std::size_t aegis_block_size = 32;

// The Fibonacci sequence mod 256, the constants of the AEGIS family.
constexpr u8 aegis_c0[16] = {0x00, 0x01, 0x01, 0x02, 0x03, 0x05, 0x08, 0x0d,
                             0x15, 0x22, 0x37, 0x59, 0x90, 0xe9, 0x79, 0x62};
constexpr u8 aegis_c1[16] = {0xdb, 0x3d, 0x18, 0x55, 0x6d, 0xc2, 0x2f, 0xf1,
                             0x20, 0x11, 0x31, 0x42, 0x73, 0xb5, 0x28, 0xdd};

struct InitialState {
  alignas(16) u8 blocks[8][16];
};

// With key and nonce zero, the state after initialization (load, then 10 x Update(0, 0)) is the
// same for every input. Computing it at compile time saves 80 AES rounds per checksum, which is
// as much work as absorbing 320 bytes: more than a whole header.
constexpr InitialState initial_state_make() {
  using portable::Block;
  const Block zero{};
  const Block c0 = portable::block_load(aegis_c0);
  const Block c1 = portable::block_load(aegis_c1);
  Block state[8] = {zero, c1, c0, c1, zero, c0, c1, c0};
  for (int round = 0; round < 10; round++) {
    Block next[8] = {};
    next[0] = portable::aes_round(state[7], state[0]);  // The message blocks are zero.
    for (std::size_t i = 1; i < 8; i++) next[i] = portable::aes_round(state[i - 1], state[i]);
    for (std::size_t i = 0; i < 8; i++) state[i] = next[i];
  }
  InitialState result{};
  for (std::size_t i = 0; i < 8; i++) portable::block_store(state[i], result.blocks[i]);
  return result;
}

inline constexpr InitialState initial_state = initial_state_make();

}  // namespace tally::simd

#endif  // TALLY_SIMD_CHECKSUM_SHARED_

HWY_BEFORE_NAMESPACE();
namespace tally::simd::HWY_NAMESPACE {

#if HWY_TARGET == HWY_SCALAR
// No 128-bit vectors on this target, hence no hn::AESRound: blocks are four words and the round
// is the portable table-driven one.
using portable::aes_round;
using portable::Block;
using portable::block_load;
using portable::block_store;
using portable::block_xor;
#else
namespace hn = hwy::HWY_NAMESPACE;
using Block = hn::Vec128<u8>;

HWY_INLINE Block block_load(const u8* bytes) { return hn::LoadU(hn::Full128<u8>(), bytes); }
HWY_INLINE void block_store(Block block, u8* bytes) {
  hn::StoreU(block, hn::Full128<u8>(), bytes);
}
HWY_INLINE Block block_xor(Block a, Block b) { return hn::Xor(a, b); }
HWY_INLINE Block aes_round(Block state, Block round_key) {
  return hn::AESRound(state, round_key);
}
#endif

// Named members rather than an array, so that the compiler keeps each block in its own register.
struct State {
  Block s0, s1, s2, s3, s4, s5, s6, s7;
};

HWY_INLINE State state_load(const u8 (*blocks)[16]) {
  return State{block_load(blocks[0]), block_load(blocks[1]), block_load(blocks[2]),
               block_load(blocks[3]), block_load(blocks[4]), block_load(blocks[5]),
               block_load(blocks[6]), block_load(blocks[7])};
}

HWY_INLINE void state_store(const State& state, u8 (*blocks)[16]) {
  block_store(state.s0, blocks[0]);
  block_store(state.s1, blocks[1]);
  block_store(state.s2, blocks[2]);
  block_store(state.s3, blocks[3]);
  block_store(state.s4, blocks[4]);
  block_store(state.s5, blocks[5]);
  block_store(state.s6, blocks[6]);
  block_store(state.s7, blocks[7]);
}

// Update(M0, M1): every new block is a function of the old state. Going from S7 down to S1, each
// block is overwritten only after its last reader; only the old S7 (read by S0) needs a copy.
// The eight rounds are independent, so the CPU overlaps them: the cost is AES throughput.
HWY_INLINE void update(State& state, const Block& m0, const Block& m1) {
  const Block s7 = state.s7;
  state.s7 = aes_round(state.s6, state.s7);
  state.s6 = aes_round(state.s5, state.s6);
  state.s5 = aes_round(state.s4, state.s5);
  state.s4 = block_xor(aes_round(state.s3, state.s4), m1);
  state.s3 = aes_round(state.s2, state.s3);
  state.s2 = aes_round(state.s1, state.s2);
  state.s1 = aes_round(state.s0, state.s1);
  state.s0 = block_xor(aes_round(s7, state.s0), m0);
}

// The hot loop: two loads and eight AES rounds per 32 bytes.
#if HWY_TARGET == HWY_SCALAR
// Here the state is 32 words, more than the general registers: on its own the loop spills
// moderately, but inlined into its callers it ran about 2x slower (measured), so it stays a call.
static HWY_NOINLINE
#else
HWY_INLINE
#endif
void absorb(State& state, const u8* data, std::size_t block_count) {
  for (std::size_t i = 0; i < block_count; i++) {
    update(state, block_load(data), block_load(data + 16));
    data += aegis_block_size;
  }
}

// A final partial block is zero-padded to 32 bytes.
HWY_INLINE void absorb_partial(State& state, const u8* data, std::size_t size) {
  TALLY_ASSERT(size > 0 && size < aegis_block_size);
  alignas(16) u8 block[aegis_block_size] = {};
  std::memcpy(block, data, size);
  absorb(state, block, 1);
}

// The AEAD finalization with the message empty: the length block is LE64(ad_bits) || LE64(0),
// not the "AEGIS-MAC" one with the tag length in the second word (protocol §2.1, pitfall a).
HWY_INLINE u128 finalize(State& state, u64 size) {
  alignas(16) u8 lengths[16] = {};
  const u64 bits = size * 8;  // Modulo 2^64, as the specification defines it.
  for (std::size_t i = 0; i < 8; i++) lengths[i] = static_cast<u8>(bits >> (8 * i));
  const Block t = block_xor(state.s2, block_load(lengths));
  for (int i = 0; i < 7; i++) update(state, t, t);

  const Block tag = block_xor(
      block_xor(block_xor(state.s0, state.s1), block_xor(state.s2, state.s3)),
      block_xor(block_xor(state.s4, state.s5), state.s6));  // S7 is not part of the tag.
  alignas(16) u8 tag_bytes[16];
  block_store(tag, tag_bytes);
  // The u128 is the tag bytes read little-endian, which is how u128 sits in memory here.
  static_assert(std::endian::native == std::endian::little);
  u128 result;
  std::memcpy(&result, tag_bytes, sizeof(result));
  return result;
}

static u128 checksum_one_shot(const u8* data, std::size_t size) {
  State state = state_load(initial_state.blocks);
  absorb(state, data, size / aegis_block_size);
  const std::size_t tail_size = size % aegis_block_size;
  if (tail_size > 0) absorb_partial(state, data + (size - tail_size), tail_size);
  return finalize(state, size);
}

// Absorbs the stream's completed pending block (`head`, may be null), then `block_count` blocks
// of `data`, with one load and one store of the state.
static void stream_absorb(u8 (*blocks)[16], const u8* head, const u8* data,
                          std::size_t block_count) {
  State state = state_load(blocks);
  if (head != nullptr) absorb(state, head, 1);
  absorb(state, data, block_count);
  state_store(state, blocks);
}

// Finishes a copy of the stream's state, so the stream itself stays unchanged.
static u128 stream_finish(const u8 (*blocks)[16], const u8* pending, std::size_t pending_size,
                          u64 total_size) {
  State state = state_load(blocks);
  if (pending_size > 0) absorb_partial(state, pending, pending_size);
  return finalize(state, total_size);
}

static i64 target_current() { return HWY_TARGET; }

}  // namespace tally::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE

namespace tally::simd {

HWY_EXPORT(checksum_one_shot);
HWY_EXPORT(stream_absorb);
HWY_EXPORT(stream_finish);
HWY_EXPORT(target_current);

i64 checksum_targets() { return hwy::SupportedTargets() & HWY_TARGETS; }

i64 checksum_target_portable() { return HWY_SCALAR; }

i64 checksum_target_current() { return HWY_DYNAMIC_DISPATCH(target_current)(); }

const char* checksum_target_name(i64 target) { return hwy::TargetName(target); }

ChecksumTargetOverride::ChecksumTargetOverride(i64 target) {
  TALLY_ASSERT(std::has_single_bit(static_cast<u64>(target)));
  TALLY_ASSERT((checksum_targets() & target) != 0, "target %s is not compiled or not supported",
               hwy::TargetName(target));
  hwy::SetSupportedTargetsForTest(target);
  hwy::GetChosenTarget().Update(hwy::SupportedTargets());
  // Otherwise a test would silently check the best target again instead of this one.
  TALLY_ASSERT(checksum_target_current() == target);
}

ChecksumTargetOverride::~ChecksumTargetOverride() {
  hwy::SetSupportedTargetsForTest(0);
  hwy::GetChosenTarget().Update(hwy::SupportedTargets());
}

}  // namespace tally::simd

namespace tally {

u128 checksum(const void* data, std::size_t size) {
  TALLY_ASSERT(data != nullptr || size == 0);
  return HWY_DYNAMIC_DISPATCH(simd::checksum_one_shot)(static_cast<const u8*>(data), size);
}

ChecksumStream::ChecksumStream() {
  static_assert(sizeof(state_) == sizeof(simd::initial_state.blocks));
  static_assert(block_size == simd::aegis_block_size);
  std::memcpy(state_, simd::initial_state.blocks, sizeof(state_));
  std::memset(pending_, 0, sizeof(pending_));
}

void ChecksumStream::add(const void* data, std::size_t size) {
  TALLY_ASSERT(data != nullptr || size == 0);
  TALLY_ASSERT(pending_size_ < block_size);
  if (size == 0) return;  // Also keeps a null `data` away from memcpy.
  const u8* bytes = static_cast<const u8*>(data);
  total_size_ += size;

  // Top up a partial block first; it is absorbed only once full, because a partial block is
  // padded and that may happen only at the end.
  const u8* head = nullptr;
  if (pending_size_ > 0) {
    const std::size_t take = std::min(block_size - pending_size_, size);
    std::memcpy(pending_ + pending_size_, bytes, take);
    pending_size_ += take;
    bytes += take;
    size -= take;
    if (pending_size_ < block_size) {
      TALLY_ASSERT(size == 0);
      return;
    }
    head = pending_;
    pending_size_ = 0;
  }

  const std::size_t block_count = size / block_size;
  if (head != nullptr || block_count > 0) {
    HWY_DYNAMIC_DISPATCH(simd::stream_absorb)(state_, head, bytes, block_count);
  }
  const std::size_t tail_size = size % block_size;
  if (tail_size > 0) std::memcpy(pending_, bytes + block_count * block_size, tail_size);
  pending_size_ = tail_size;
}

u128 ChecksumStream::finish() const {
  TALLY_ASSERT(pending_size_ < block_size);
  TALLY_ASSERT(total_size_ % block_size == pending_size_);
  return HWY_DYNAMIC_DISPATCH(simd::stream_finish)(state_, pending_, pending_size_, total_size_);
}

}  // namespace tally

#endif  // HWY_ONCE
