// Tests of the multi-batch encoding (tally/multi_batch.hpp, §8.2) and of the request body checks
// (§8.4).
//
// - Every decode error has a malformed body that produces exactly it.
// - Encoder limits: capacity, batch and element count maxima, misuse; it never writes outside
//   its buffer (canary bytes around it).
// - A randomized round trip against a reference encoder written here from the §8.2 prose.
// - A fuzz loop of random and mutated bodies: the decoder must never read outside the body (the
//   bodies live in exactly-sized heap vectors, so ASan in the sanitizer build catches any stray
//   read), and whatever it accepts must re-encode to the identical bytes.
// - §8.4 validation, one test per reason, at the limits of §8.5.
//
// Randomness is a fixed-seed splitmix64, so every run checks the same cases.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tally/constants.hpp"
#include "tally/multi_batch.hpp"
#include "tally/operation.hpp"
#include "tally/records.hpp"

// REQUIRE without exceptions: the unit test binary may be built with -fno-exceptions, where
// doctest has no REQUIRE. A failed condition is reported and ends the test case.
#define TALLY_WIRE_REQUIRE(...)              \
  do {                                       \
    if (!(__VA_ARGS__)) {                    \
      FAIL_CHECK("required: " #__VA_ARGS__); \
      return;                                \
    }                                        \
  } while (0)

namespace {

using tally::MultiBatchDecoder;
using tally::MultiBatchEncodeError;
using tally::MultiBatchEncoder;
using tally::MultiBatchError;
using tally::Operation;
using tally::RequestBodyError;
using tally::u128;
using tally::u16;
using tally::u32;
using tally::u64;
using tally::u8;

using Bytes = std::vector<std::byte>;
using Batches = std::vector<Bytes>;

// splitmix64 (Steele, Lea, Flood 2014): small, and identical on every platform.
class SplitMix64 {
 public:
  explicit SplitMix64(u64 seed) : state_(seed) {}

  u64 next() {
    state_ += 0x9e3779b97f4a7c15;
    u64 z = state_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
    z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
    return z ^ (z >> 31);
  }

  // Uniform enough for tests in [0, bound); bound > 0.
  u32 below(u32 bound) { return static_cast<u32>(next() % bound); }

  std::byte byte() { return static_cast<std::byte>(next()); }

 private:
  u64 state_;
};

std::string name_of(MultiBatchError error) { return tally::name(error); }
std::string name_of(MultiBatchEncodeError error) { return tally::name(error); }
std::string name_of(RequestBodyError error) { return tally::name(error); }

MultiBatchError decode_error(const Bytes& body, u32 element_size) {
  MultiBatchDecoder decoder;
  return decoder.decode(body, element_size);
}

void append_u16(Bytes& bytes, u16 value) {
  bytes.push_back(static_cast<std::byte>(value & 0xFF));
  bytes.push_back(static_cast<std::byte>(value >> 8));
}

// §8.2 written out directly: payload, 0xFF filler, counts from the last batch to the first,
// then the batch count.
Bytes reference_encode(const Batches& batches, u32 element_size) {
  Bytes body;
  for (const Bytes& batch : batches) body.insert(body.end(), batch.begin(), batch.end());
  const std::size_t unpadded = 2 * batches.size() + 2;
  const std::size_t trailer = (unpadded + element_size - 1) / element_size * element_size;
  body.insert(body.end(), trailer - unpadded, std::byte{0xFF});
  for (std::size_t index = batches.size(); index-- > 0;) {
    append_u16(body, static_cast<u16>(batches[index].size() / element_size));
  }
  append_u16(body, static_cast<u16>(batches.size()));
  return body;
}

Bytes random_bytes(SplitMix64& prng, std::size_t size) {
  Bytes bytes(size);
  for (std::size_t offset = 0; offset < size; offset += sizeof(u64)) {
    const u64 word = prng.next();
    std::memcpy(bytes.data() + offset, &word, std::min(sizeof(u64), size - offset));
  }
  return bytes;
}

Batches batches_of(const MultiBatchDecoder& decoder) {
  Batches batches;
  for (const std::span<const std::byte> batch : decoder) {
    batches.emplace_back(batch.begin(), batch.end());
  }
  return batches;
}

// Encodes with the encoder into an exactly-sized buffer, exercising all three ways of adding
// elements; returns the body, or empty on any encoder error.
Bytes encode(const Batches& batches, u32 element_size, SplitMix64& prng) {
  Bytes buffer(reference_encode(batches, element_size).size());
  MultiBatchEncoder encoder(buffer, element_size);
  for (const Bytes& batch : batches) {
    switch (prng.below(3)) {
      case 0:
        if (encoder.batch_add(batch) != MultiBatchEncodeError::none) return {};
        break;
      case 1:
        if (encoder.batch_begin() != MultiBatchEncodeError::none) return {};
        for (std::size_t offset = 0; offset < batch.size(); offset += element_size) {
          const std::span<const std::byte> element(batch.data() + offset, element_size);
          if (encoder.element_add(element) != MultiBatchEncodeError::none) return {};
        }
        break;
      default: {
        if (encoder.batch_begin() != MultiBatchEncodeError::none) return {};
        const std::span<std::byte> writable = encoder.writable();
        if (writable.size() < batch.size()) return {};
        if (!batch.empty()) std::memcpy(writable.data(), batch.data(), batch.size());
        if (encoder.commit(static_cast<u32>(batch.size() / element_size)) !=
            MultiBatchEncodeError::none) {
          return {};
        }
        break;
      }
    }
  }
  if (encoder.finish() != MultiBatchEncodeError::none) return {};
  return Bytes(encoder.body().begin(), encoder.body().end());
}

// A body of `count` events of `event_size` bytes (contents zero except where set) per batch.
Bytes request_body(u32 event_size, const std::vector<u32>& counts) {
  Batches batches;
  for (const u32 count : counts) batches.emplace_back(std::size_t{count} * event_size);
  return reference_encode(batches, event_size);
}

// Query filter batches, each one filter of `filter_size` bytes with `limit` at `limit_offset`.
Bytes query_body(u32 filter_size, std::size_t limit_offset, const std::vector<u32>& limits) {
  Batches batches;
  for (const u32 limit : limits) {
    Bytes filter(filter_size);
    std::memcpy(filter.data() + limit_offset, &limit, sizeof(limit));
    batches.push_back(filter);
  }
  return reference_encode(batches, filter_size);
}

}  // namespace

TEST_SUITE("wire_multi_batch") {
  TEST_CASE("decode errors: element size, body length and postamble") {
    const Bytes one_empty_batch = reference_encode({Bytes{}}, 128);
    CHECK(name_of(decode_error(one_empty_batch, 128)) == "none");

    for (const u32 element_size : {0u, 1u, 3u, 127u, tally::message_body_size_max + 2}) {
      INFO("element size: " << element_size);
      CHECK(name_of(decode_error(one_empty_batch, element_size)) == "element_size_invalid");
    }

    Bytes too_large = reference_encode({Bytes(8190 * 128)}, 128);
    CHECK(too_large.size() == tally::message_body_size_max + 128);
    CHECK(name_of(decode_error(too_large, 128)) == "body_too_large");
    too_large.resize(tally::message_body_size_max + 2);
    CHECK(name_of(decode_error(too_large, 2)) == "body_too_large");

    CHECK(name_of(decode_error(Bytes{}, 16)) == "body_too_short");
    CHECK(name_of(decode_error(Bytes{std::byte{1}}, 16)) == "body_too_short");

    Bytes zero_batches = one_empty_batch;
    zero_batches[126] = std::byte{0};
    zero_batches[127] = std::byte{0};
    CHECK(name_of(decode_error(zero_batches, 128)) == "batch_count_zero");
    CHECK(name_of(decode_error(Bytes{std::byte{0}, std::byte{0}}, 2)) == "batch_count_zero");

    Bytes reserved = one_empty_batch;
    reserved[126] = std::byte{0xFF};
    reserved[127] = std::byte{0xFF};
    CHECK(name_of(decode_error(reserved, 128)) == "batch_count_reserved");
  }

  TEST_CASE("decode errors: trailer longer than the body, huge batch counts, truncation") {
    // One batch needs a 128-byte trailer with 128-byte elements: 16 bytes are too few.
    Bytes short_trailer(16, std::byte{0xFF});
    short_trailer[12] = std::byte{0};
    short_trailer[13] = std::byte{0};
    short_trailer[14] = std::byte{1};
    short_trailer[15] = std::byte{0};
    CHECK(name_of(decode_error(short_trailer, 128)) == "trailer_too_long");
    CHECK(name_of(decode_error(short_trailer, 16)) == "none");

    // The largest batch count over a small body: 131,070 bytes of trailer over 128.
    Bytes huge = reference_encode({Bytes{}}, 128);
    huge[126] = std::byte{0xFE};
    huge[127] = std::byte{0xFF};
    CHECK(name_of(decode_error(huge, 128)) == "trailer_too_long");

    // A body that is exactly the trailer of 65,534 empty batches is valid.
    const Batches empty_batches(tally::batch_count_max);
    const Bytes max_batches = reference_encode(empty_batches, 2);
    CHECK(max_batches.size() == 2 * std::size_t{tally::batch_count_max} + 2);
    MultiBatchDecoder decoder;
    CHECK(name_of(decoder.decode(max_batches, 2)) == "none");
    CHECK(decoder.batch_count() == tally::batch_count_max);
    CHECK(decoder.element_count(tally::batch_count_max - 1) == 0);
    const Bytes max_batches_128 = reference_encode(empty_batches, 128);
    CHECK(max_batches_128.size() == 131'072);
    CHECK(name_of(decoder.decode(max_batches_128, 128)) == "none");
    CHECK(name_of(decode_error(Bytes(max_batches_128.begin() + 128, max_batches_128.end()), 128)) ==
          "trailer_too_long");

    // Every strict prefix and suffix of a valid body is rejected.
    const Bytes body = reference_encode({Bytes(2 * 16, std::byte{7}), Bytes(16, std::byte{9})}, 16);
    for (std::size_t size = 0; size < body.size(); size++) {
      INFO("size: " << size);
      CHECK(decode_error(Bytes(body.begin(), body.begin() + static_cast<std::ptrdiff_t>(size)),
                         16) != MultiBatchError::none);
      CHECK(decode_error(Bytes(body.end() - static_cast<std::ptrdiff_t>(size), body.end()), 16) !=
            MultiBatchError::none);
    }
  }

  TEST_CASE("decode errors: filler and payload size") {
    const Bytes v7 = reference_encode({Bytes{}}, 128);
    for (const std::size_t index : {std::size_t{0}, std::size_t{63}, std::size_t{123}}) {
      Bytes broken = v7;
      broken[index] = std::byte{0xFE};
      INFO("filler byte: " << index);
      CHECK(name_of(decode_error(broken, 128)) == "filler_invalid");
    }

    // §14 V6: [17, 19] and [21]; filler is bytes 48..57, counts 58..61, postamble 62..63.
    Bytes v6 = reference_encode({Bytes(32, std::byte{0}), Bytes(16, std::byte{0})}, 16);
    CHECK(v6.size() == 64);
    Bytes filler = v6;
    filler[57] = std::byte{0x00};
    CHECK(name_of(decode_error(filler, 16)) == "filler_invalid");

    Bytes count_high = v6;
    count_high[60] = std::byte{3};  // Batch 0 claims three ids: 64 bytes of payload, not 48.
    CHECK(name_of(decode_error(count_high, 16)) == "payload_size_mismatch");
    Bytes count_low = v6;
    count_low[58] = std::byte{0};  // Batch 1 claims none.
    CHECK(name_of(decode_error(count_low, 16)) == "payload_size_mismatch");
    Bytes count_huge = v6;
    count_huge[58] = std::byte{0xFF};
    count_huge[59] = std::byte{0xFF};  // A count of 0xFFFF is positional, but far too large.
    CHECK(name_of(decode_error(count_huge, 16)) == "payload_size_mismatch");

    // A payload that is not a whole number of elements.
    Bytes misaligned = v6;
    misaligned.insert(misaligned.begin(), 2, std::byte{0});
    CHECK(name_of(decode_error(misaligned, 16)) == "payload_size_mismatch");
    // The same bytes read with the wrong element size.
    CHECK(name_of(decode_error(v6, 8)) == "payload_size_mismatch");
    CHECK(name_of(decode_error(v6, 128)) == "trailer_too_long");
  }

  TEST_CASE("a failed decode leaves the decoder empty") {
    MultiBatchDecoder decoder;
    CHECK(decoder.batch_count() == 0);
    CHECK(decoder.begin() == decoder.end());
    const Bytes body = reference_encode({Bytes(16), Bytes{}}, 16);
    CHECK(decoder.decode(body, 16) == MultiBatchError::none);
    CHECK(decoder.batch_count() == 2);
    CHECK(decoder.decode(Bytes{}, 16) == MultiBatchError::body_too_short);
    CHECK(decoder.batch_count() == 0);
    CHECK(decoder.payload().empty());
    CHECK(decoder.element_count(0) == 0);
    CHECK(decoder.begin() == decoder.end());
  }

  TEST_CASE("encoder: capacity is checked before anything is written") {
    // Canaries on both sides of the 256-byte buffer catch any write outside it.
    std::array<std::byte, 256 + 64> storage{};
    storage.fill(std::byte{0xA5});
    const std::span<std::byte> buffer(storage.data() + 32, 256);
    auto canaries_intact = [&storage] {
      for (std::size_t index = 0; index < 32; index++) {
        if (storage[index] != std::byte{0xA5}) return false;
        if (storage[storage.size() - 1 - index] != std::byte{0xA5}) return false;
      }
      return true;
    };

    MultiBatchEncoder encoder(buffer, 16);
    CHECK(encoder.writable().empty());
    CHECK(name_of(encoder.commit(1)) == "batch_none");
    CHECK(name_of(encoder.element_add(Bytes(16))) == "batch_none");
    CHECK(name_of(encoder.finish()) == "batch_none");
    CHECK(name_of(encoder.batch_begin()) == "none");
    // One batch: a 16-byte trailer leaves 240 bytes, 15 elements.
    CHECK(encoder.writable().size() == 240);
    CHECK(name_of(encoder.element_add(Bytes(15))) == "element_size_mismatch");
    CHECK(name_of(encoder.element_add(Bytes(17))) == "element_size_mismatch");
    CHECK(name_of(encoder.commit(16)) == "buffer_full");
    std::memset(encoder.writable().data(), 0x11, 14 * 16);
    CHECK(name_of(encoder.commit(14)) == "none");
    CHECK(name_of(encoder.element_add(Bytes(16, std::byte{0x22}))) == "none");
    CHECK(name_of(encoder.element_add(Bytes(16))) == "buffer_full");
    CHECK(encoder.writable().empty());
    // Six more (empty) batches fit in the same 16-byte trailer: 2 * 7 + 2 = 16 bytes for seven
    // batches, but eight need 18, rounded up to 32.
    for (int batch = 0; batch < 5; batch++) CHECK(name_of(encoder.batch_begin()) == "none");
    CHECK(name_of(encoder.batch_add(Bytes{})) == "none");
    CHECK(encoder.batch_count() == 7);
    CHECK(name_of(encoder.batch_begin()) == "buffer_full");
    CHECK(name_of(encoder.batch_add(Bytes{})) == "buffer_full");
    CHECK(encoder.batch_count() == 7);
    CHECK(canaries_intact());
    CHECK(encoder.body().empty());

    CHECK(name_of(encoder.finish()) == "none");
    CHECK(encoder.size() == 256);
    CHECK(canaries_intact());
    CHECK(name_of(encoder.finish()) == "finished");
    CHECK(name_of(encoder.batch_begin()) == "finished");
    CHECK(name_of(encoder.element_add(Bytes(16))) == "finished");
    CHECK(name_of(encoder.commit(0)) == "finished");
    CHECK(encoder.writable().empty());

    Batches expected = {Bytes(15 * 16, std::byte{0x11})};
    std::memset(expected[0].data() + 14 * 16, 0x22, 16);
    expected.resize(7);
    const Bytes reference = reference_encode(expected, 16);
    CHECK(Bytes(encoder.body().begin(), encoder.body().end()) == reference);
  }

  TEST_CASE("encoder: buffers too small, odd or oversized, and invalid element sizes") {
    std::array<std::byte, 127> small{};
    MultiBatchEncoder too_small(small, 128);
    CHECK(name_of(too_small.batch_begin()) == "buffer_full");
    CHECK(name_of(too_small.finish()) == "batch_none");

    MultiBatchEncoder empty(std::span<std::byte>{}, 16);
    CHECK(name_of(empty.batch_add(Bytes{})) == "buffer_full");

    // An odd buffer loses its last byte: of 33 bytes, 32 are usable.
    std::array<std::byte, 33> odd{};
    odd.fill(std::byte{0x5A});
    MultiBatchEncoder odd_encoder(std::span<std::byte>(odd.data(), 33), 2);
    CHECK(name_of(odd_encoder.batch_add(Bytes(28))) == "none");  // 28 + 4 = 32 bytes.
    CHECK(name_of(odd_encoder.element_add(Bytes(2))) == "buffer_full");
    CHECK(name_of(odd_encoder.finish()) == "none");
    CHECK(odd_encoder.size() == 32);
    CHECK(odd[32] == std::byte{0x5A});

    for (const u32 element_size : {0u, 1u, 7u}) {
      std::array<std::byte, 64> buffer{};
      MultiBatchEncoder encoder(buffer, element_size);
      INFO("element size: " << element_size);
      CHECK(name_of(encoder.batch_begin()) == "element_size_invalid");
      CHECK(name_of(encoder.batch_add(Bytes{})) == "element_size_invalid");
      CHECK(name_of(encoder.element_add(Bytes(element_size))) == "element_size_invalid");
      CHECK(name_of(encoder.commit(0)) == "element_size_invalid");
      CHECK(name_of(encoder.finish()) == "element_size_invalid");
      CHECK(encoder.writable().empty());
    }

    // Capacity is capped at message_body_size_max, whatever the buffer.
    Bytes large(tally::message_body_size_max + 4096);
    MultiBatchEncoder capped(large, 128);
    CHECK(name_of(capped.batch_add(Bytes(8190 * 128))) == "buffer_full");
    CHECK(name_of(capped.batch_add(Bytes(8189 * 128))) == "none");
    CHECK(name_of(capped.finish()) == "none");
    CHECK(capped.size() == tally::message_body_size_max);
  }

  TEST_CASE("encoder: batch count and per-batch element count maxima") {
    Bytes buffer(tally::message_body_size_max);
    MultiBatchEncoder batches(buffer, 2);
    for (u32 batch = 0; batch < tally::batch_count_max; batch++) {
      if (batches.batch_begin() != MultiBatchEncodeError::none) {
        FAIL_CHECK("batch " << batch << " did not fit");
        break;
      }
    }
    CHECK(name_of(batches.batch_begin()) == "batch_count_exceeded");
    CHECK(name_of(batches.batch_add(Bytes{})) == "batch_count_exceeded");
    CHECK(name_of(batches.finish()) == "none");
    MultiBatchDecoder decoder;
    CHECK(name_of(decoder.decode(batches.body(), 2)) == "none");
    CHECK(decoder.batch_count() == tally::batch_count_max);

    MultiBatchEncoder elements(buffer, 2);
    const Bytes full_batch(2 * std::size_t{tally::multi_batch_element_count_max});
    CHECK(name_of(elements.batch_add(Bytes(full_batch.size() + 2))) == "element_count_exceeded");
    CHECK(name_of(elements.batch_add(full_batch)) == "none");
    CHECK(name_of(elements.element_add(Bytes(2))) == "element_count_exceeded");
    CHECK(name_of(elements.commit(1)) == "element_count_exceeded");
    CHECK(elements.writable().empty());
    CHECK(name_of(elements.finish()) == "none");
    CHECK(name_of(decoder.decode(elements.body(), 2)) == "none");
    CHECK(decoder.element_count(0) == 0xFFFF);
  }

  TEST_CASE("randomized round trip against the reference encoder") {
    SplitMix64 prng(0x7a11'5eed'0001);
    constexpr std::array<u32, 6> element_sizes = {2, 8, 16, 64, 128, 384};
    u32 encoded = 0;
    for (int iteration = 0; iteration < 1000; iteration++) {
      const u32 element_size = element_sizes[prng.below(static_cast<u32>(element_sizes.size()))];
      // Mostly a few batches of a few elements; sometimes many batches or large batches.
      const u32 batch_count = prng.below(8) == 0 ? 1 + prng.below(3000) : 1 + prng.below(8);
      const u32 count_bound = prng.below(16) == 0 ? 300 : 6;
      std::vector<u32> counts(batch_count);
      std::size_t payload_size = 0;
      for (u32& count : counts) {
        count = prng.below(4) == 0 ? 0 : prng.below(count_bound);
        payload_size += std::size_t{count} * element_size;
      }
      // Bodies above the protocol maximum are not made at all (the encoder would refuse them).
      if (payload_size +
              tally::multi_batch_trailer_size(element_size, static_cast<u16>(batch_count)) >
          tally::message_body_size_max) {
        continue;
      }
      Batches batches;
      for (const u32 count : counts) {
        batches.push_back(random_bytes(prng, std::size_t{count} * element_size));
      }
      const Bytes expected = reference_encode(batches, element_size);
      CHECK(expected.size() <= tally::message_body_size_max);
      encoded++;
      INFO("iteration: " << iteration << ", element size: " << element_size
                         << ", batches: " << batch_count);

      const Bytes body = encode(batches, element_size, prng);
      CHECK(body == expected);

      MultiBatchDecoder decoder;
      TALLY_WIRE_REQUIRE(decoder.decode(body, element_size) == MultiBatchError::none);
      CHECK(decoder.batch_count() == batch_count);
      CHECK(decoder.element_size() == element_size);
      CHECK(decoder.trailer_size() ==
            tally::multi_batch_trailer_size(element_size, static_cast<u16>(batch_count)));
      CHECK(decoder.payload().size() + decoder.trailer_size() == body.size());
      CHECK(batches_of(decoder) == batches);
      u32 element_count_total = 0;
      for (u32 batch = 0; batch < batch_count; batch++) {
        element_count_total += decoder.element_count(batch);
      }
      CHECK(element_count_total == decoder.element_count_total());
      CHECK(decoder.element_count(batch_count) == 0);
    }
    CHECK(encoded > 750);
  }

  TEST_CASE("fuzz: random and mutated bodies never read out of bounds; accepted ones round-trip") {
    SplitMix64 prng(0xf022'0001);
    constexpr std::array<u32, 9> element_sizes = {0, 1, 2, 3, 8, 16, 64, 128, 384};
    u32 accepted = 0;
    for (int iteration = 0; iteration < 20000; iteration++) {
      const u32 element_size = element_sizes[prng.below(static_cast<u32>(element_sizes.size()))];
      Bytes body;
      if (prng.below(2) == 0) {
        body = random_bytes(prng, prng.below(600));
        // Small postambles make it past the first checks more often.
        if (body.size() >= 2 && prng.below(2) == 0) {
          body[body.size() - 2] = static_cast<std::byte>(prng.below(4));
          body[body.size() - 1] = std::byte{0};
        }
      } else {
        // A valid body, intact or with a few bytes flipped, cut, or grown.
        const u32 size = element_size < 2 ? 16 : element_size;
        Batches batches(1 + prng.below(5));
        for (Bytes& batch : batches) batch = random_bytes(prng, std::size_t{prng.below(4)} * size);
        body = reference_encode(batches, size);
        switch (prng.below(4)) {
          case 0:
            for (u32 flip = 1 + prng.below(3); flip > 0; flip--) {
              body[prng.below(static_cast<u32>(body.size()))] ^= prng.byte();
            }
            break;
          case 1: body.resize(prng.below(static_cast<u32>(body.size()))); break;
          case 2: body.insert(body.begin(), prng.below(4), prng.byte()); break;
          default: break;  // Intact: the accepting path must be reached often.
        }
      }
      // An exactly-sized copy, so that any read past the end is a heap overflow under ASan.
      const Bytes exact(body);
      MultiBatchDecoder decoder;
      if (decoder.decode(exact, element_size) != MultiBatchError::none) continue;
      accepted++;
      INFO("iteration: " << iteration);
      std::size_t payload_size = 0;
      for (const std::span<const std::byte> batch : decoder) {
        CHECK(batch.data() >= exact.data());
        CHECK(batch.data() + batch.size() <= exact.data() + decoder.payload().size());
        payload_size += batch.size();
      }
      CHECK(payload_size == decoder.payload().size());
      CHECK(encode(batches_of(decoder), element_size, prng) == exact);
    }
    // The mutated half must reach the accepting path often, or the round trip is untested.
    CHECK(accepted > 1000);
  }

  TEST_CASE("validate_request_body: multi-batch creates and lookups (§8.4, §8.5)") {
    constexpr u32 account = sizeof(tally::Account);
    constexpr u32 id = sizeof(u128);
    auto check = [](Operation operation, const Bytes& body, std::string_view expected) {
      CHECK(name_of(tally::validate_request_body(operation, body)) == expected);
    };
    check(Operation::create_accounts, request_body(account, {0}), "none");
    check(Operation::create_accounts, request_body(account, {1, 0, 3}), "none");
    check(Operation::create_transfers, request_body(account, {8189}), "none");
    CHECK(request_body(account, {8189}).size() == tally::message_body_size_max);
    check(Operation::create_transfers, request_body(account, {8190}), "body_too_large");
    check(Operation::create_accounts, request_body(account, {4000, 4000}), "none");
    check(Operation::create_accounts, request_body(account, {4000, 4200}), "body_too_large");
    check(Operation::create_accounts, request_body(16, {1}), "multi_batch_invalid");
    check(Operation::create_accounts, Bytes{}, "multi_batch_invalid");

    check(Operation::lookup_accounts, request_body(id, {8189}), "none");
    check(Operation::lookup_transfers, request_body(id, {8190}), "event_count_exceeded");
    check(Operation::lookup_accounts, request_body(id, {3, 8190}), "event_count_exceeded");
    // Each batch is within its limit, but the accounts returned would not fit one reply.
    check(Operation::lookup_accounts, request_body(id, {4094, 4094}), "none");
    check(Operation::lookup_accounts, request_body(id, {4095, 4095}), "reply_too_large");
    check(Operation::lookup_accounts, request_body(id, {8189, 1}), "reply_too_large");
  }

  TEST_CASE("validate_request_body: multi-batch queries") {
    constexpr u32 account_filter = sizeof(tally::AccountFilter);
    constexpr u32 query_filter = sizeof(tally::QueryFilter);
    constexpr std::size_t account_limit = offsetof(tally::AccountFilter, limit);
    constexpr std::size_t query_limit = offsetof(tally::QueryFilter, limit);
    auto check = [](Operation operation, const Bytes& body, std::string_view expected) {
      CHECK(name_of(tally::validate_request_body(operation, body)) == expected);
    };
    check(Operation::get_account_transfers, query_body(account_filter, account_limit, {10}),
          "none");
    check(Operation::get_account_balances, query_body(account_filter, account_limit, {0, 8189}),
          "none");
    // A limit above result_max is capped (pre-0.17 clients sent such limits), not rejected.
    check(Operation::query_accounts, query_body(query_filter, query_limit, {0xFFFFFFFF}), "none");
    check(Operation::query_transfers, query_body(query_filter, query_limit, {8189, 1}),
          "reply_too_large");
    check(Operation::query_transfers, query_body(query_filter, query_limit, {4094, 4094}), "none");
    check(Operation::get_account_transfers,
          query_body(account_filter, account_limit, {0xFFFFFFFF, 0xFFFFFFFF}), "reply_too_large");
    // Each batch is exactly one filter.
    check(Operation::query_accounts, request_body(query_filter, {0}), "filter_count_invalid");
    check(Operation::query_accounts, request_body(query_filter, {2}), "filter_count_invalid");
    check(Operation::get_account_balances, request_body(account_filter, {1, 2}),
          "filter_count_invalid");
    check(Operation::query_accounts, query_body(query_filter, query_limit, {1}), "none");
    check(Operation::query_accounts, query_body(account_filter, account_limit, {1}),
          "multi_batch_invalid");
  }

  TEST_CASE("validate_request_body: raw bodies and operations without one") {
    auto check = [](Operation operation, const Bytes& body, std::string_view expected) {
      CHECK(name_of(tally::validate_request_body(operation, body)) == expected);
    };
    check(Operation::state_machine_pulse, Bytes{}, "none");
    check(Operation::state_machine_pulse, Bytes(2), "body_size_invalid");
    check(Operation::deprecated_create_accounts_unbatched, Bytes{}, "none");
    check(Operation::deprecated_create_accounts_unbatched, Bytes(3 * 128), "none");
    check(Operation::deprecated_create_transfers_unbatched, Bytes(100), "body_size_invalid");
    check(Operation::deprecated_create_transfers_unbatched, Bytes(8190 * 128), "none");
    check(Operation::deprecated_lookup_accounts_unbatched, Bytes(8190 * 16), "none");
    check(Operation::deprecated_lookup_accounts_unbatched, Bytes(8191 * 16),
          "event_count_exceeded");
    check(Operation::deprecated_query_accounts_unbatched, Bytes(64), "none");
    check(Operation::deprecated_query_accounts_unbatched, Bytes(128), "filter_count_invalid");
    check(Operation::deprecated_get_account_transfers_unbatched, Bytes{}, "filter_count_invalid");
    check(Operation::get_change_events, Bytes(64), "none");
    check(Operation::get_change_events, Bytes(64 + 2), "filter_count_invalid");

    for (const int value : {0, 2, 4, 6, 127, 148, 255}) {
      INFO("operation: " << value);
      check(static_cast<Operation>(value), Bytes{}, "operation_invalid");
    }
    check(Operation::lookup_accounts, Bytes(tally::batch_size_limit + 16), "body_too_large");

    // The u8 overload agrees.
    const std::vector<u8> body_u8(2 * 16 + 16, 0);
    CHECK(tally::validate_request_body(Operation::lookup_accounts, body_u8) ==
          RequestBodyError::multi_batch_invalid);
    const Bytes valid = request_body(16, {2});
    std::vector<u8> valid_u8(valid.size());
    std::memcpy(valid_u8.data(), valid.data(), valid.size());
    CHECK(tally::validate_request_body(Operation::lookup_accounts, valid_u8) ==
          RequestBodyError::none);
  }

  TEST_CASE("error enums have distinct names") {
    std::vector<std::string> names;
    for (int value = 0; value <= static_cast<int>(MultiBatchError::payload_size_mismatch);
         value++) {
      names.push_back(name_of(static_cast<MultiBatchError>(value)));
    }
    for (int value = 0; value <= static_cast<int>(RequestBodyError::reply_too_large); value++) {
      names.push_back("request_" + name_of(static_cast<RequestBodyError>(value)));
    }
    for (int value = 0; value <= static_cast<int>(MultiBatchEncodeError::finished); value++) {
      names.push_back("encode_" + name_of(static_cast<MultiBatchEncodeError>(value)));
    }
    for (const std::string& name : names) CHECK(name.find("unknown") == std::string::npos);
    std::sort(names.begin(), names.end());
    CHECK(std::adjacent_find(names.begin(), names.end()) == names.end());
  }
}
