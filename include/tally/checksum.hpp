// The checksum of every header, body, WAL entry and grid block: AEGIS-128L used as a MAC.
//
// Key and nonce are zero, the data is absorbed as associated data, the message is empty, and the
// 128-bit tag (bytes in output order, read little-endian) is the u128 result. The finalization
// uses the AEAD length block (ad_bits, 0), which is what TigerBeetle 0.17 clients expect: it is
// not the later "AEGIS-MAC" mode. The protocol document §2 has the definition and vectors.
//
// The implementation (src/simd) dispatches at run time to the best AES instructions the CPU has
// and falls back to portable code; every target gives identical results.
#pragma once

#include <cstddef>
#include <span>

#include "tally/types.hpp"

namespace tally {

// One-shot checksum of `size` bytes at `data`.
u128 checksum(const void* data, std::size_t size);

inline u128 checksum(std::span<const std::byte> bytes) {
  return checksum(bytes.data(), bytes.size());
}

// The checksum of the empty input, which is every empty body's `checksum_body`.
inline constexpr u128 checksum_empty = make_u128(0x49f174618255402d, 0xe6e7e3c40d60cc83);

// Streaming form: `add` any number of times, then `finish`. The result equals the one-shot
// checksum of the concatenated input, however it was split. Holds no pointers and allocates
// nothing; finishing does not change the stream, so a running checksum can be read and extended.
class ChecksumStream {
 public:
  ChecksumStream();

  void add(const void* data, std::size_t size);
  void add(std::span<const std::byte> bytes) { add(bytes.data(), bytes.size()); }

  u128 finish() const;

 private:
  static constexpr std::size_t block_size = 32;

  alignas(16) u8 state_[8][16];
  alignas(16) u8 pending_[block_size];  // A partial block, not yet absorbed.
  std::size_t pending_size_ = 0;
  u64 total_size_ = 0;
};

}  // namespace tally
