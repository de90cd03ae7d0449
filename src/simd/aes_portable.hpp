// One AES encryption round in portable C++, with exactly the semantics of x86 AESENC: SubBytes,
// ShiftRows, MixColumns, then XOR with the round key. It serves the checksum's fallback target
// (Highway's HWY_SCALAR, which has no 128-bit vectors and so no hn::AESRound) and, being
// constexpr, the compile-time AEGIS-128L initial state.
//
// Invariants: the tables are computed at compile time from the field arithmetic of FIPS-197
// (nothing is typed in by hand, and spot values are asserted below); a Block holds the same 16
// bytes, in the same order, as an xmm register. There are no secrets here (the checksum's key is
// zero), so table lookups indexed by data are fine.
#pragma once

#include <cstddef>

#include "tally/types.hpp"

namespace tally::simd::portable {

// AES lays its 4x4 state out column by column: byte i of the block is row i % 4 of column i / 4.
// A column is kept as one little-endian word, so row r of column c is bits [8r, 8r + 8) of
// column[c]. Example: bytes 00 01 02 .. 0f give column[0] = 0x03020100, column[3] = 0x0f0e0d0c.
struct Block {
  u32 column[4];
};

// Written out rather than looped: GCC at -O2 then merges the four byte loads into one load.
constexpr u32 load_le32(const u8* bytes) {
  return u32{bytes[0]} | u32{bytes[1]} << 8 | u32{bytes[2]} << 16 | u32{bytes[3]} << 24;
}

constexpr Block block_load(const u8* bytes) {
  return Block{{load_le32(bytes), load_le32(bytes + 4), load_le32(bytes + 8),
                load_le32(bytes + 12)}};
}

constexpr void block_store(const Block& block, u8* bytes) {
  for (std::size_t c = 0; c < 4; c++) {
    for (std::size_t r = 0; r < 4; r++) {
      bytes[4 * c + r] = static_cast<u8>(block.column[c] >> (8 * r));
    }
  }
}

constexpr Block block_xor(const Block& a, const Block& b) {
  return Block{{a.column[0] ^ b.column[0], a.column[1] ^ b.column[1], a.column[2] ^ b.column[2],
                a.column[3] ^ b.column[3]}};
}

// Multiplication in GF(2^8) modulo the AES polynomial x^8 + x^4 + x^3 + x + 1 (0x11b).
constexpr u8 gf_multiply(u8 a, u8 b) {
  u8 product = 0;
  for (int bit = 0; bit < 8; bit++) {
    if ((b & 1) != 0) product = static_cast<u8>(product ^ a);
    const bool carry = (a & 0x80) != 0;
    a = static_cast<u8>(a << 1);
    if (carry) a = static_cast<u8>(a ^ 0x1b);
    b = static_cast<u8>(b >> 1);
  }
  return product;
}

// a^254, which is a's inverse for a != 0 (the group has order 255) and 0 for a == 0, as AES
// requires. 254 = 2 + 4 + ... + 128, so multiply the seven successive squares together.
constexpr u8 gf_inverse(u8 a) {
  u8 square = a;
  u8 result = 1;
  for (int i = 0; i < 7; i++) {
    square = gf_multiply(square, square);
    result = gf_multiply(result, square);
  }
  return result;
}

constexpr u8 rotate_left_8(u8 value, int shift) {
  return static_cast<u8>(value << shift | value >> (8 - shift));
}

constexpr u32 rotate_left_32(u32 value, int shift) {
  return shift == 0 ? value : (value << shift | value >> (32 - shift));
}

// mix[r][x] is the MixColumns image of S-box(x) sitting in row r of a column (other rows zero):
// column r of the matrix
//   2 3 1 1
//   1 2 3 1
//   1 1 2 3
//   3 1 1 2
// times S-box(x), as a column word. Column 0 is (2s, s, s, 3s); each next column is the previous
// one rotated down one row, which in a little-endian word is a left rotation by 8 bits.
struct AesTables {
  u8 sbox[256];
  u32 mix[4][256];
};

constexpr AesTables aes_tables_make() {
  AesTables tables{};
  for (std::size_t x = 0; x < 256; x++) {
    const u8 inverse = gf_inverse(static_cast<u8>(x));
    const u8 s = static_cast<u8>(inverse ^ rotate_left_8(inverse, 1) ^ rotate_left_8(inverse, 2) ^
                                 rotate_left_8(inverse, 3) ^ rotate_left_8(inverse, 4) ^ 0x63);
    tables.sbox[x] = s;
    const u32 column0 = u32{gf_multiply(s, 2)} | u32{s} << 8 | u32{s} << 16 |
                        u32{gf_multiply(s, 3)} << 24;
    for (std::size_t r = 0; r < 4; r++) {
      tables.mix[r][x] = rotate_left_32(column0, static_cast<int>(8 * r));
    }
  }
  return tables;
}

inline constexpr AesTables aes_tables = aes_tables_make();

// FIPS-197 figure 7 spot values, so a slip in the field arithmetic fails the build.
static_assert(aes_tables.sbox[0x00] == 0x63 && aes_tables.sbox[0x01] == 0x7c);
static_assert(aes_tables.sbox[0x53] == 0xed && aes_tables.sbox[0xff] == 0x16);
static_assert(aes_tables.mix[0][0x01] == 0x847c7cf8);  // S(1) = 7c: 2*7c = f8, 3*7c = f8^7c = 84.

// The contribution of row `row` of an input column: S-box, then that row's MixColumns column.
constexpr u32 mix_row(std::size_t row, u32 column) {
  return aes_tables.mix[row][column >> (8 * row) & 0xff];
}

// ShiftRows moves row r left by r columns, so output column c takes row r from input column
// (c + r) % 4; SubBytes and MixColumns are the `mix` lookups; then AddRoundKey. Written out
// rather than looped so that the compiler keeps the columns in registers.
// Always inlined: GCC otherwise calls it once per round, which made the portable target about
// 1.4x slower (measured).
[[gnu::always_inline]] constexpr Block aes_round(const Block& state, const Block& round_key) {
  const u32* in = state.column;
  return Block{{
      mix_row(0, in[0]) ^ mix_row(1, in[1]) ^ mix_row(2, in[2]) ^ mix_row(3, in[3]) ^
          round_key.column[0],
      mix_row(0, in[1]) ^ mix_row(1, in[2]) ^ mix_row(2, in[3]) ^ mix_row(3, in[0]) ^
          round_key.column[1],
      mix_row(0, in[2]) ^ mix_row(1, in[3]) ^ mix_row(2, in[0]) ^ mix_row(3, in[1]) ^
          round_key.column[2],
      mix_row(0, in[3]) ^ mix_row(1, in[0]) ^ mix_row(2, in[1]) ^ mix_row(3, in[2]) ^
          round_key.column[3],
  }};
}

}  // namespace tally::simd::portable
