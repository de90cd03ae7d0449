// Tests of the AEGIS-128L checksum (tally/checksum.hpp), run on every target compiled into
// src/simd/checksum.cpp that this CPU supports, the portable one included: the protocol's
// vectors (§2.3 / §14 V1), a header captured from the real client (§13) and a generated one
// (§14 V2), agreement of all targets on random inputs of every length up to 4 KiB, and the
// streaming form against the one-shot form.
//
// Random inputs come from a fixed-seed splitmix64, so every run checks the same bytes.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include "src/simd/aes_portable.hpp"
#include "src/simd/checksum_targets.hpp"
#include "tally/checksum.hpp"

namespace {

using tally::i64;
using tally::make_u128;
using tally::u128;
using tally::u64;
using tally::u8;

// splitmix64 (Steele, Lea, Flood 2014): small, fast, and identical on every platform.
class SplitMix64 {
 public:
  explicit SplitMix64(u64 seed) : state_(seed) {}

  u64 next() {
    state_ += 0x9e3779b97f4a7c15u;
    u64 z = state_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
  }

  // Uniform enough in [0, bound) for choosing lengths and splits.
  std::size_t below(std::size_t bound) { return static_cast<std::size_t>(next() % bound); }

 private:
  u64 state_;
};

std::vector<u8> random_bytes(u64 seed, std::size_t size) {
  SplitMix64 random(seed);
  std::vector<u8> bytes(size);
  for (u8& byte : bytes) byte = static_cast<u8>(random.next());
  return bytes;
}

u8 hex_digit(char c) {
  if (c >= '0' && c <= '9') return static_cast<u8>(c - '0');
  CHECK((c >= 'a' && c <= 'f'));
  return static_cast<u8>(c - 'a' + 10);
}

// Parses hex digit pairs, skipping spaces and newlines.
std::vector<u8> hex_bytes(std::string_view hex) {
  std::vector<u8> bytes;
  std::size_t i = 0;
  while (i < hex.size()) {
    if (hex[i] == ' ' || hex[i] == '\n') {
      i++;
      continue;
    }
    CHECK(i + 1 < hex.size());
    if (i + 1 >= hex.size()) break;
    bytes.push_back(static_cast<u8>(hex_digit(hex[i]) << 4 | hex_digit(hex[i + 1])));
    i += 2;
  }
  return bytes;
}

// A u128 field of a header: the bytes at `offset`, read little-endian.
u128 u128_at(const std::vector<u8>& bytes, std::size_t offset) {
  CHECK(offset + 16 <= bytes.size());
  if (offset + 16 > bytes.size()) return 0;
  u128 value = 0;
  for (std::size_t i = 16; i > 0; i--) value = value << 8 | bytes[offset + i - 1];
  return value;
}

// All targets to test, best first as Highway numbers them (lower bit = better target).
std::vector<i64> targets_all() {
  std::vector<i64> targets;
  for (i64 rest = tally::simd::checksum_targets(); rest != 0; rest &= rest - 1) {
    targets.push_back(rest & -rest);
  }
  return targets;
}

// Runs `body` once per target, with the public functions dispatched to that target.
template <class Body>
void for_each_target(Body&& body) {
  for (const i64 target : targets_all()) {
    const doctest::String target_name = tally::simd::checksum_target_name(target);
    CAPTURE(target_name);
    const tally::simd::ChecksumTargetOverride target_override(target);
    CHECK(tally::simd::checksum_target_current() == target);
    body();
  }
}

u128 checksum_of(const std::vector<u8>& bytes) {
  return tally::checksum(bytes.data(), bytes.size());
}

u128 checksum_streamed(const std::vector<u8>& bytes) {
  tally::ChecksumStream stream;
  stream.add(bytes.data(), bytes.size());
  return stream.finish();
}

}  // namespace

TEST_SUITE("simd/checksum") {
  TEST_CASE("the portable and at least one vector target are compiled and supported") {
    const i64 targets = tally::simd::checksum_targets();
    CHECK((targets & tally::simd::checksum_target_portable()) != 0);
    // On x86-64 every CPU since 2006 has SSSE3, so a lone portable target means a build problem.
    CHECK(targets_all().size() >= 2);
    for (const i64 target : targets_all()) {
      MESSAGE(doctest::String(tally::simd::checksum_target_name(target)));
    }
    // Without an override the public functions use the best target, the lowest bit.
    CHECK(tally::simd::checksum_target_current() == (targets & -targets));
  }

  TEST_CASE("portable AES round equals AESENC (Intel AES-NI white paper example)") {
    // Written as xmm register values (most significant byte first); memory order is reversed.
    const auto xmm_bytes = [](u128 value) {
      std::array<u8, 16> bytes{};
      for (std::size_t i = 0; i < 16; i++) bytes[i] = static_cast<u8>(value >> (8 * i));
      return bytes;
    };
    const auto state = xmm_bytes(make_u128(0x7b5b546573745665, 0x63746f725d53475d));
    const auto round_key = xmm_bytes(make_u128(0x4869285368617929, 0x5b477565726f6e5d));
    const auto expected = xmm_bytes(make_u128(0xa8311c2f9fdba3c5, 0x8b104b58ded7e595));

    namespace portable = tally::simd::portable;
    const portable::Block result_block = portable::aes_round(
        portable::block_load(state.data()), portable::block_load(round_key.data()));
    std::array<u8, 16> result{};
    portable::block_store(result_block, result.data());
    CHECK(result == expected);
  }

  TEST_CASE("protocol vectors (§2.3, §14 V1) on every target, one-shot and streamed") {
    std::vector<u8> bytes_00_to_ff(256);
    for (std::size_t i = 0; i < 256; i++) bytes_00_to_ff[i] = static_cast<u8>(i);
    const std::string_view tiger_beetle = "TigerBeetle";

    struct Vector {
      const char* name;
      std::vector<u8> input;
      const char* tag_hex;  // Tag bytes in output (wire) order.
      u128 expected;
    };
    const Vector vectors[] = {
        {"empty", {}, "83cc600dc4e3e7e62d4055826174f149",
         make_u128(0x49f174618255402d, 0xe6e7e3c40d60cc83)},
        {"16 zero bytes", std::vector<u8>(16), "f72ad48dd05dd1656133101cd4be3a26",
         make_u128(0x263abed41c103361, 0x65d15dd08dd42af7)},
        {"32 zero bytes", std::vector<u8>(32), "087545991d8771ea723fef90d9f515cd",
         make_u128(0xcd15f5d990ef3f72, 0xea71871d99457508)},
        {"256 zero bytes", std::vector<u8>(256), "651b82f3ddd4fcbf2deb8496e8ff613c",
         make_u128(0x3c61ffe89684eb2d, 0xbffcd4ddf3821b65)},
        {"bytes 00..ff", bytes_00_to_ff, "d6ba1c495ca4c976f5d0993644aa9acd",
         make_u128(0xcd9aaa443699d0f5, 0x76c9a45c491cbad6)},
        {"TigerBeetle", std::vector<u8>(tiger_beetle.begin(), tiger_beetle.end()),
         "dcab7433824ec28d90d401f97b039685", make_u128(0x8596037bf901d490, 0x8dc24e823374abdc)},
    };

    // The u128 is the tag bytes read little-endian: the two columns of the table agree.
    for (const Vector& vector : vectors) {
      CAPTURE(vector.name);
      CHECK(u128_at(hex_bytes(vector.tag_hex), 0) == vector.expected);
    }
    CHECK(tally::checksum_empty == vectors[0].expected);

    for_each_target([&] {
      for (const Vector& vector : vectors) {
        CAPTURE(vector.name);
        CHECK(checksum_of(vector.input) == vector.expected);
        CHECK(checksum_streamed(vector.input) == vector.expected);
        CHECK(tally::checksum(std::as_bytes(std::span(vector.input))) == vector.expected);
      }
      CHECK(tally::checksum(nullptr, 0) == tally::checksum_empty);
      CHECK(tally::ChecksumStream().finish() == tally::checksum_empty);
    });
  }

  TEST_CASE("headers: captured from the real client (§13) and generated (§14 V2)") {
    // A lookup_accounts request, size 512; its body is 256 zero bytes.
    const std::vector<u8> captured = hex_bytes(
        "e9d9c4543669455027668bea6fde2187 00000000000000000000000000000000\n"
        "651b82f3ddd4fcbf2deb8496e8ff613c 00000000000000000000000000000000\n"
        "00000000000000000000000000000000 00000000000000000000000000000000\n"
        "00020000000000000000000009110000 00000500000000000000000000000000\n"
        "00000000000000000000000000000000 00000000000000000000000000000000\n"
        "ea259c50028d345f92a69d2fecf53882 00000000000000000000000000000000\n"
        "00000000020000000000000000000000 00000000000000000000000000000000\n"
        "00000000000000000000000000000000 00000000000000000000000000000000\n");
    // A register request, size 512; its body is 256 zero bytes.
    const std::vector<u8> generated = hex_bytes(
        "f2af59ee4977ffd34506c8b7cfd0885000000000000000000000000000000000\n"
        "651b82f3ddd4fcbf2deb8496e8ff613c00000000000000000000000000000000\n"
        "0000000000000000000000000000000000000000000000000000000000000000\n"
        "0002000000000000000000000911000000000500000000000000000000000000\n"
        "0000000000000000000000000000000000000000000000000000000000000000\n"
        "efcdab8967452301efcdab896745230100000000000000000000000000000000\n"
        "0000000002000000000000000000000000000000000000000000000000000000\n"
        "0000000000000000000000000000000000000000000000000000000000000000\n");
    CHECK(captured.size() == 256);
    CHECK(generated.size() == 256);
    if (captured.size() != 256 || generated.size() != 256) return;
    CHECK(u128_at(generated, 0) == make_u128(0x5088d0cfb7c80645, 0xd3ff7749ee59aff2));
    const std::vector<u8> body(256);

    for_each_target([&] {
      for (const std::vector<u8>* header : {&captured, &generated}) {
        // `checksum` (offset 0) covers header bytes 16..256; `checksum_body` (offset 32) the body.
        CHECK(tally::checksum(header->data() + 16, 240) == u128_at(*header, 0));
        CHECK(checksum_of(body) == u128_at(*header, 32));
      }
    });
  }

  TEST_CASE("every length 0..4096: all targets agree with the portable one") {
    constexpr std::size_t length_max = 4096;
    // Inputs start at varying offsets, so vector loads are tried at every alignment.
    constexpr std::size_t offset_modulus = 17;
    const std::vector<u8> buffer = random_bytes(0x5eed0001, length_max + offset_modulus);

    std::vector<u128> expected(length_max + 1);
    {
      const tally::simd::ChecksumTargetOverride portable(tally::simd::checksum_target_portable());
      for (std::size_t length = 0; length <= length_max; length++) {
        expected[length] = tally::checksum(buffer.data() + length % offset_modulus, length);
      }
    }
    // Different inputs give different checksums: a checksum that ignored (some of) its input
    // could still agree across targets.
    std::vector<u128> sorted = expected;
    std::sort(sorted.begin(), sorted.end());
    CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());

    for_each_target([&] {
      std::size_t mismatch_count = 0;
      std::size_t mismatch_first = 0;
      for (std::size_t length = 0; length <= length_max; length++) {
        if (tally::checksum(buffer.data() + length % offset_modulus, length) != expected[length]) {
          if (mismatch_count == 0) mismatch_first = length;
          mismatch_count++;
        }
      }
      CAPTURE(mismatch_first);
      CHECK(mismatch_count == 0);
    });
  }

  TEST_CASE("streaming equals one-shot however the input is split") {
    const std::vector<u8> buffer = random_bytes(0x5eed0002, 4096);
    const auto one_shot = [&](std::size_t length) {
      return tally::checksum(buffer.data(), length);
    };

    for_each_target([&] {
      // Every two-way split of 100 bytes, and every three-way split of 70 bytes: pieces that
      // end inside, exactly at, and across the 32-byte block boundaries, and empty pieces.
      for (std::size_t split = 0; split <= 100; split++) {
        tally::ChecksumStream stream;
        stream.add(buffer.data(), split);
        stream.add(buffer.data() + split, 100 - split);
        CHECK(stream.finish() == one_shot(100));
      }
      for (std::size_t first = 0; first <= 70; first++) {
        for (std::size_t second = first; second <= 70; second++) {
          tally::ChecksumStream stream;
          stream.add(buffer.data(), first);
          stream.add(buffer.data() + first, second - first);
          stream.add(buffer.data() + second, 70 - second);
          CHECK(stream.finish() == one_shot(70));
        }
      }

      // Random splits of random lengths, reading the running checksum along the way.
      SplitMix64 random(0x5eed0003);
      for (int trial = 0; trial < 300; trial++) {
        const std::size_t length = random.below(8) == 0 ? random.below(4097) : random.below(300);
        tally::ChecksumStream stream;
        std::size_t offset = 0;
        while (offset < length) {
          std::size_t piece = 0;
          switch (random.below(5)) {
            case 0: piece = 0; break;
            case 1: piece = 1 + random.below(31); break;
            case 2: piece = 32; break;
            case 3: piece = 33 + random.below(100); break;
            default: piece = random.below(length - offset + 1); break;
          }
          piece = std::min(piece, length - offset);
          stream.add(buffer.data() + offset, piece);
          offset += piece;
          if (random.below(4) == 0) CHECK(stream.finish() == one_shot(offset));
        }
        CAPTURE(length);
        CHECK(stream.finish() == one_shot(length));
      }
    });
  }

  TEST_CASE("finish() leaves the stream unchanged, so it can be read and extended") {
    const std::vector<u8> buffer = random_bytes(0x5eed0004, 1000);

    for_each_target([&] {
      for (const std::size_t first : {std::size_t{0}, std::size_t{5}, std::size_t{32},
                                       std::size_t{77}}) {
        CAPTURE(first);
        tally::ChecksumStream stream;
        stream.add(buffer.data(), first);

        static_assert(std::is_trivially_copyable_v<tally::ChecksumStream>);
        std::array<unsigned char, sizeof(tally::ChecksumStream)> before{};
        std::memcpy(before.data(), &stream, sizeof(stream));
        const u128 prefix = stream.finish();
        std::array<unsigned char, sizeof(tally::ChecksumStream)> after{};
        std::memcpy(after.data(), &stream, sizeof(stream));
        CHECK(before == after);
        CHECK(stream.finish() == prefix);
        CHECK(prefix == tally::checksum(buffer.data(), first));

        stream.add(buffer.data() + first, buffer.size() - first);
        CHECK(stream.finish() == tally::checksum(buffer.data(), buffer.size()));
      }
    });
  }
}
