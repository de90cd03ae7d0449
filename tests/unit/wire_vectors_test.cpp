// The full-message vectors of the protocol document (§14 V2-V10, and the client header captured
// in §13), read with the wire types and rebuilt from field values.
//
// Each message is checked both ways: decoding (every header field reads back as the vector says,
// both checksums verify, the header passes validation) and encoding (a header built from the
// field values, sealed with set_checksum_body / set_reply_context / set_checksum, and a body built
// with the record types and the multi-batch encoder are byte for byte the vector). The vectors were
// produced by an encoder that passed the official client's test suite, so agreement here is
// agreement with the client.
#include <doctest/doctest.h>

#include <array>
#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tally/checksum.hpp"
#include "tally/constants.hpp"
#include "tally/header.hpp"
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

using tally::Command;
using tally::Header;
using tally::make_u128;
using tally::Operation;
using tally::u128;
using tally::u16;
using tally::u32;
using tally::u64;
using tally::u8;

// Vectors, copied from §14 without the offset column: 32 bytes per line.
constexpr std::string_view v2_header =
    "f2af59ee4977ffd34506c8b7cfd0885000000000000000000000000000000000"
    "651b82f3ddd4fcbf2deb8496e8ff613c00000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "0002000000000000000000000911000000000500000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "efcdab8967452301efcdab896745230100000000000000000000000000000000"
    "0000000002000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000";
constexpr std::string_view v3_header =
    "36286725586eb31414d11e5253896a2600000000000000000000000000000000"
    "b5d20e04fd672c08f88ed62b32da1c1900000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "4001000000000000000000000911000000000800000000000000000000000000"
    "f2af59ee4977ffd34506c8b7cfd0885000000000000000000000000000000000"
    "946f8d83c30b90175f2059c80ca5248c00000000000000000000000000000000"
    "efcdab8967452301efcdab896745230101000000000000000100000000000000"
    "00002a36fe9c9717000000000200000000000000000000000000000000000000";
constexpr std::string_view v4_header =
    "b898576259b1a07f5b0a0e73bf684b2e00000000000000000000000000000000"
    "44096d0f68fff0b8f3baf92ad9f5314400000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "0002000000000000000000000911000000000500000000000000000000000000"
    "946f8d83c30b90175f2059c80ca5248c00000000000000000000000000000000"
    "efcdab8967452301efcdab896745230101000000000000000000000000000000"
    "0100000092000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000";
constexpr std::string_view v4_body =
    "1100000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000001000000ce0200000000000000000000"
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffff01000100";
constexpr std::string_view v5_header =
    "ec3795ad0c0831bd193119d63aca591500000000000000000000000000000000"
    "e8b0a25d518424be11af7583f934d91100000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "2001000000000000000000000911000000000800000000000000000000000000"
    "b898576259b1a07f5b0a0e73bf684b2e00000000000000000000000000000000"
    "cb3d19cbd2001523b080fc9e2cd844ec00000000000000000000000000000000"
    "efcdab8967452301efcdab896745230102000000000000000200000000000000"
    "01002a36fe9c9717010000009200000000000000000000000000000000000000";
constexpr std::string_view v5_body =
    "01002a36fe9c9717ffffffff00000000ffffffffffffffffffffffff01000100";
constexpr std::string_view v6_body =
    "1100000000000000000000000000000013000000000000000000000000000000"
    "15000000000000000000000000000000ffffffffffffffffffff010002000200";
constexpr std::string_view v7_body =
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffff00000100";
constexpr std::string_view v8_body =
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffff00000100";
constexpr std::string_view v9_header =
    "db6fd1d0e7e1f47fc5d226c7b671c50500000000000000000000000000000000"
    "83cc600dc4e3e7e62d4055826174f14900000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "0001000000000000000000000911000000000400000000000000000000000000"
    "15cd5b0700000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000";
constexpr std::string_view v10_header =
    "b053f2bbd3d54e03b93de0bdc067799a00000000000000000000000000000000"
    "83cc600dc4e3e7e62d4055826174f14900000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "0001000000000000000000000911000000001200000000000000000000000000"
    "efcdab8967452301efcdab896745230100000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000001";

constexpr std::string_view v3_body =
    "00ff0f0000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000";
// §13: the register request header captured from the real client (random client id).
constexpr std::string_view captured_header =
    "e9d9c4543669455027668bea6fde218700000000000000000000000000000000"
    "651b82f3ddd4fcbf2deb8496e8ff613c00000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "0002000000000000000000000911000000000500000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "ea259c50028d345f92a69d2fecf5388200000000000000000000000000000000"
    "0000000002000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000";

constexpr u128 client_id = make_u128(0x0123456789abcdef, 0x0123456789abcdef);
constexpr u128 v2_checksum = make_u128(0x5088d0cfb7c80645, 0xd3ff7749ee59aff2);
constexpr u128 v3_context = make_u128(0x8c24a50cc859205f, 0x17900bc3838d6f94);
constexpr u128 v3_checksum = make_u128(0x266a8953521ed114, 0x14b36e5825672836);
constexpr u64 v3_timestamp = 1'700'000'000'000'000'000;

u8 nibble(char digit) {
  if (digit >= '0' && digit <= '9') return static_cast<u8>(digit - '0');
  if (digit >= 'a' && digit <= 'f') return static_cast<u8>(digit - 'a' + 10);
  FAIL_CHECK("not a lowercase hex digit: " << digit);
  return 0;
}

std::vector<std::byte> bytes_from_hex(std::string_view hex) {
  CHECK(hex.size() % 2 == 0);
  std::vector<std::byte> bytes;
  for (std::size_t index = 0; index + 1 < hex.size(); index += 2) {
    bytes.push_back(static_cast<std::byte>((nibble(hex[index]) << 4) | nibble(hex[index + 1])));
  }
  return bytes;
}

std::string hex_from_bytes(std::span<const std::byte> bytes) {
  constexpr char digits[] = "0123456789abcdef";
  std::string hex;
  for (const std::byte byte : bytes) {
    hex.push_back(digits[std::to_integer<u8>(byte) >> 4]);
    hex.push_back(digits[std::to_integer<u8>(byte) & 0xF]);
  }
  return hex;
}

// u128 as 0x-prefixed hex, so that a failed CHECK prints both values.
std::string hex(u128 value) {
  constexpr char digits[] = "0123456789abcdef";
  std::string text = "0x";
  for (int shift = 124; shift >= 0; shift -= 4) {
    text.push_back(digits[static_cast<u8>(value >> shift) & 0xF]);
  }
  return text;
}

Header header_from_hex(std::string_view hex_text) {
  std::vector<std::byte> bytes = bytes_from_hex(hex_text);
  CHECK(bytes.size() == tally::header_size);
  bytes.resize(tally::header_size);
  return tally::header_read(std::span<const std::byte, tally::header_size>(bytes.data(), 256));
}

template <typename Record>
std::span<const std::byte> record_bytes(const Record& record) {
  return std::as_bytes(std::span<const Record, 1>(&record, 1));
}

// What every §14 message shares: cluster 0, view 0, replica 0, release 0.17.9, protocol 0.
void check_frame_common(const Header& header) {
  CHECK(hex(header.checksum_padding) == hex(0));
  CHECK(hex(header.checksum_body_padding) == hex(0));
  CHECK(hex(header.nonce_reserved) == hex(0));
  CHECK(hex(header.cluster) == hex(0));
  CHECK(header.epoch == 0);
  CHECK(header.view == 0);
  CHECK(header.release == tally::release_client_node);
  CHECK(header.protocol == 0);
  CHECK(header.replica == 0);
}

// A header with the frame fields every §14 message shares.
Header header_make(Command command, u32 size) {
  Header header{};
  header.command = command;
  header.size = size;
  header.release = tally::release_encode({.major = 0, .minor = 17, .patch = 9});
  return header;
}

}  // namespace

TEST_SUITE("wire_vectors") {
  TEST_CASE("V2: register request decodes, verifies and re-encodes byte for byte") {
    const Header header = header_from_hex(v2_header);
    const std::vector<std::byte> body(sizeof(tally::RegisterRequest), std::byte{0});

    CHECK(tally::checksum_valid(header));
    CHECK(tally::checksum_body_valid(header, body));
    CHECK(hex(header.checksum) == hex(v2_checksum));
    CHECK(hex(header.checksum_body) == hex(make_u128(0x3c61ffe89684eb2d, 0xbffcd4ddf3821b65)));
    check_frame_common(header);
    CHECK(header.command == Command::request);
    CHECK(header.size == 512);
    CHECK(hex(header.request.parent) == hex(0));
    CHECK(hex(header.request.client) == hex(client_id));
    CHECK(header.request.session == 0);
    CHECK(header.request.timestamp == 0);
    CHECK(header.request.request == 0);
    CHECK(header.request.operation == Operation::register_session);
    CHECK(header.request.previous_request_latency == 0);
    CHECK(tally::validate_header(header) == tally::HeaderError::none);

    Header built = header_make(Command::request, 512);
    built.request.client = client_id;
    built.request.operation = Operation::register_session;
    const tally::RegisterRequest register_request{};
    tally::set_checksum_body(built, record_bytes(register_request));
    tally::set_checksum(built);
    CHECK(hex_from_bytes(tally::header_bytes(built)) == v2_header);
  }

  TEST_CASE("V3: register reply, with the reply context derived as TigerBeetle does") {
    const Header header = header_from_hex(v3_header);
    const std::vector<std::byte> body = bytes_from_hex(v3_body);

    CHECK(tally::checksum_valid(header));
    CHECK(tally::checksum_body_valid(header, body));
    CHECK(hex(header.checksum) == hex(v3_checksum));
    check_frame_common(header);
    CHECK(header.command == Command::reply);
    CHECK(header.size == 256 + 64);
    CHECK(hex(header.reply.request_checksum) == hex(v2_checksum));
    CHECK(hex(header.reply.context) == hex(v3_context));
    CHECK(hex(header.reply.client) == hex(client_id));
    CHECK(header.reply.op == 1);
    CHECK(header.reply.commit == 1);
    CHECK(header.reply.timestamp == v3_timestamp);
    CHECK(header.reply.request == 0);
    CHECK(header.reply.operation == Operation::register_session);
    CHECK(tally::validate_header(header) == tally::HeaderError::none);
    // The context is a function of the rest of the header, so the received one re-derives.
    CHECK(hex(tally::reply_context(header)) == hex(v3_context));

    tally::RegisterResult result{};
    std::memcpy(&result, body.data(), sizeof(result));
    CHECK(result.batch_size_limit == tally::batch_size_limit);

    Header built = header_make(Command::reply, 256 + sizeof(tally::RegisterResult));
    built.reply.request_checksum = v2_checksum;
    built.reply.client = client_id;
    built.reply.op = 1;
    built.reply.commit = 1;
    built.reply.timestamp = v3_timestamp;
    built.reply.operation = Operation::register_session;
    const tally::RegisterResult built_result{.batch_size_limit = tally::batch_size_limit,
                                             .reserved = {}};
    CHECK(hex_from_bytes(record_bytes(built_result)) == v3_body);
    tally::set_checksum_body(built, record_bytes(built_result));
    tally::set_reply_context(built);
    CHECK(hex(built.reply.context) == hex(v3_context));
    tally::set_checksum(built);
    CHECK(hex(built.checksum) == hex(v3_checksum));
    CHECK(hex_from_bytes(tally::header_bytes(built)) == v3_header);
  }

  TEST_CASE("V4: create_accounts request chained to V3, with its multi-batch body") {
    const Header header = header_from_hex(v4_header);
    const std::vector<std::byte> body = bytes_from_hex(v4_body);

    CHECK(tally::checksum_valid(header));
    CHECK(tally::checksum_body_valid(header, body));
    check_frame_common(header);
    CHECK(header.command == Command::request);
    CHECK(header.size == 512);
    CHECK(hex(header.request.parent) == hex(v3_context));
    CHECK(hex(header.request.client) == hex(client_id));
    CHECK(header.request.session == 1);
    CHECK(header.request.request == 1);
    CHECK(header.request.operation == Operation::create_accounts);
    CHECK(tally::validate_header(header) == tally::HeaderError::none);
    CHECK(tally::validate_request_body(header.request.operation, body) ==
          tally::RequestBodyError::none);

    tally::MultiBatchDecoder decoder;
    TALLY_WIRE_REQUIRE(decoder.decode(body, sizeof(tally::Account)) ==
                       tally::MultiBatchError::none);
    TALLY_WIRE_REQUIRE(decoder.batch_count() == 1);
    const std::span<const std::byte> batch = *decoder.begin();
    TALLY_WIRE_REQUIRE(batch.size() == sizeof(tally::Account));
    tally::Account account{};
    std::memcpy(&account, batch.data(), sizeof(account));
    CHECK(hex(account.id) == hex(17));
    CHECK(account.ledger == 1);
    CHECK(account.code == 718);
    CHECK(account.flags == 0);
    CHECK(account.timestamp == 0);

    tally::Account built_account{};
    built_account.id = 17;
    built_account.ledger = 1;
    built_account.code = 718;
    alignas(16) std::array<std::byte, 256> buffer{};
    tally::MultiBatchEncoder encoder(buffer, sizeof(tally::Account));
    TALLY_WIRE_REQUIRE(encoder.batch_add(record_bytes(built_account)) ==
                       tally::MultiBatchEncodeError::none);
    TALLY_WIRE_REQUIRE(encoder.finish() == tally::MultiBatchEncodeError::none);
    CHECK(hex_from_bytes(encoder.body()) == v4_body);

    Header built = header_make(Command::request, 256 + encoder.size());
    built.request.parent = v3_context;
    built.request.client = client_id;
    built.request.session = 1;
    built.request.request = 1;
    built.request.operation = Operation::create_accounts;
    tally::set_checksum_body(built, encoder.body());
    tally::set_checksum(built);
    CHECK(hex_from_bytes(tally::header_bytes(built)) == v4_header);
  }

  TEST_CASE("V5: create_accounts reply answering V4, context derived, dense result") {
    const Header request = header_from_hex(v4_header);
    const Header header = header_from_hex(v5_header);
    const std::vector<std::byte> body = bytes_from_hex(v5_body);
    constexpr u64 timestamp = v3_timestamp + 1;

    CHECK(tally::checksum_valid(header));
    CHECK(tally::checksum_body_valid(header, body));
    check_frame_common(header);
    CHECK(header.command == Command::reply);
    CHECK(header.size == 256 + 32);
    CHECK(hex(header.reply.request_checksum) == hex(request.checksum));
    CHECK(hex(header.reply.client) == hex(client_id));
    CHECK(header.reply.op == 2);
    CHECK(header.reply.commit == 2);
    CHECK(header.reply.timestamp == timestamp);
    CHECK(header.reply.request == 1);
    CHECK(header.reply.operation == Operation::create_accounts);
    CHECK(tally::validate_header(header) == tally::HeaderError::none);
    CHECK(hex(tally::reply_context(header)) == hex(header.reply.context));

    tally::MultiBatchDecoder decoder;
    TALLY_WIRE_REQUIRE(decoder.decode(body, sizeof(tally::CreateAccountResult)) ==
                       tally::MultiBatchError::none);
    TALLY_WIRE_REQUIRE(decoder.batch_count() == 1);
    TALLY_WIRE_REQUIRE(decoder.element_count(0) == 1);
    tally::CreateAccountResult result{};
    std::memcpy(&result, (*decoder.begin()).data(), sizeof(result));
    CHECK(result.timestamp == timestamp);
    CHECK(result.status == tally::CreateAccountStatus::created);
    CHECK(result.reserved == 0);

    const tally::CreateAccountResult built_result{
        .timestamp = timestamp, .status = tally::CreateAccountStatus::created, .reserved = 0};
    alignas(16) std::array<std::byte, 64> buffer{};
    tally::MultiBatchEncoder encoder(buffer, sizeof(tally::CreateAccountResult));
    TALLY_WIRE_REQUIRE(encoder.batch_begin() == tally::MultiBatchEncodeError::none);
    TALLY_WIRE_REQUIRE(encoder.element_add(record_bytes(built_result)) ==
                       tally::MultiBatchEncodeError::none);
    TALLY_WIRE_REQUIRE(encoder.finish() == tally::MultiBatchEncodeError::none);
    CHECK(hex_from_bytes(encoder.body()) == v5_body);

    Header built = header_make(Command::reply, 256 + encoder.size());
    built.reply.request_checksum = request.checksum;
    built.reply.client = client_id;
    built.reply.op = 2;
    built.reply.commit = 2;
    built.reply.timestamp = timestamp;
    built.reply.request = 1;
    built.reply.operation = Operation::create_accounts;
    tally::set_checksum_body(built, encoder.body());
    tally::set_reply_context(built);
    CHECK(hex(built.reply.context) == hex(header.reply.context));
    tally::set_checksum(built);
    CHECK(hex_from_bytes(tally::header_bytes(built)) == v5_header);
  }

  TEST_CASE("V6: two lookup batches decode to [17, 19] and [21] and re-encode") {
    const std::vector<std::byte> body = bytes_from_hex(v6_body);
    tally::MultiBatchDecoder decoder;
    TALLY_WIRE_REQUIRE(decoder.decode(body, sizeof(u128)) == tally::MultiBatchError::none);
    CHECK(decoder.batch_count() == 2);
    CHECK(decoder.element_count(0) == 2);
    CHECK(decoder.element_count(1) == 1);
    CHECK(decoder.trailer_size() == 16);
    CHECK(decoder.element_count_total() == 3);

    std::vector<std::vector<u64>> batches;
    for (const std::span<const std::byte> batch : decoder) {
      std::vector<u64> ids;
      for (std::size_t offset = 0; offset < batch.size(); offset += sizeof(u128)) {
        u128 id = 0;
        std::memcpy(&id, batch.data() + offset, sizeof(id));
        ids.push_back(tally::u128_low(id));
        CHECK(tally::u128_high(id) == 0);
      }
      batches.push_back(ids);
    }
    CHECK(batches == std::vector<std::vector<u64>>{{17, 19}, {21}});
    CHECK(tally::validate_request_body(Operation::lookup_accounts, body) ==
          tally::RequestBodyError::none);

    alignas(16) std::array<std::byte, 64> buffer{};
    tally::MultiBatchEncoder encoder(buffer, sizeof(u128));
    for (const std::vector<u64>& ids : {std::vector<u64>{17, 19}, std::vector<u64>{21}}) {
      TALLY_WIRE_REQUIRE(encoder.batch_begin() == tally::MultiBatchEncodeError::none);
      for (const u64 id : ids) {
        const u128 id_wide = id;
        TALLY_WIRE_REQUIRE(encoder.element_add(record_bytes(id_wide)) ==
                           tally::MultiBatchEncodeError::none);
      }
    }
    TALLY_WIRE_REQUIRE(encoder.finish() == tally::MultiBatchEncodeError::none);
    CHECK(hex_from_bytes(encoder.body()) == v6_body);
  }

  TEST_CASE("V7 and V8: one empty batch is a trailer of a whole 128-byte element") {
    for (const std::string_view vector : {v7_body, v8_body}) {
      const std::vector<std::byte> body = bytes_from_hex(vector);
      tally::MultiBatchDecoder decoder;
      TALLY_WIRE_REQUIRE(decoder.decode(body, 128) == tally::MultiBatchError::none);
      CHECK(decoder.batch_count() == 1);
      CHECK(decoder.element_count(0) == 0);
      CHECK(decoder.payload().empty());
      CHECK((*decoder.begin()).empty());

      alignas(16) std::array<std::byte, 1024> buffer{};
      tally::MultiBatchEncoder encoder(buffer, 128);
      TALLY_WIRE_REQUIRE(encoder.batch_add(std::span<const std::byte>{}) ==
                         tally::MultiBatchEncodeError::none);
      TALLY_WIRE_REQUIRE(encoder.finish() == tally::MultiBatchEncodeError::none);
      CHECK(hex_from_bytes(encoder.body()) == vector);
    }
    // V7 is a valid (empty) create_accounts request; V8 is the reply to an empty lookup.
    CHECK(tally::validate_request_body(Operation::create_accounts, bytes_from_hex(v7_body)) ==
          tally::RequestBodyError::none);
  }

  TEST_CASE("V9: pong_client") {
    const Header header = header_from_hex(v9_header);
    CHECK(tally::checksum_valid(header));
    CHECK(tally::checksum_body_valid(header, std::span<const std::byte>{}));
    CHECK(hex(header.checksum_body) == hex(tally::checksum_empty));
    check_frame_common(header);
    CHECK(header.command == Command::pong_client);
    CHECK(header.size == 256);
    CHECK(header.pong_client.ping_timestamp_monotonic == 123456789);
    CHECK(tally::validate_header(header) == tally::HeaderError::none);

    Header built = header_make(Command::pong_client, 256);
    built.pong_client.ping_timestamp_monotonic = 123456789;
    tally::set_checksum_body(built, std::span<const std::byte>{});
    tally::set_checksum(built);
    CHECK(hex_from_bytes(tally::header_bytes(built)) == v9_header);
  }

  TEST_CASE("V10: eviction with reason no_session") {
    const Header header = header_from_hex(v10_header);
    CHECK(tally::checksum_valid(header));
    CHECK(tally::checksum_body_valid(header, std::span<const std::byte>{}));
    check_frame_common(header);
    CHECK(header.command == Command::eviction);
    CHECK(header.size == 256);
    CHECK(hex(header.eviction.client) == hex(client_id));
    CHECK(header.eviction.reason == tally::EvictionReason::no_session);
    CHECK(tally::validate_header(header) == tally::HeaderError::none);

    Header built = header_make(Command::eviction, 256);
    built.eviction.client = client_id;
    built.eviction.reason = tally::EvictionReason::no_session;
    tally::set_checksum_body(built, std::span<const std::byte>{});
    tally::set_checksum(built);
    CHECK(hex_from_bytes(tally::header_bytes(built)) == v10_header);
  }

  TEST_CASE("§13: the header captured from the real client verifies and validates") {
    const Header header = header_from_hex(captured_header);
    const std::vector<std::byte> body(256, std::byte{0});
    CHECK(tally::checksum_valid(header));
    CHECK(tally::checksum_body_valid(header, body));
    CHECK(header.command == Command::request);
    CHECK(header.request.operation == Operation::register_session);
    CHECK(header.release == tally::release_client_node);
    CHECK(tally::validate_header(header) == tally::HeaderError::none);
  }

  TEST_CASE("a flipped bit anywhere in a vector fails a checksum") {
    const std::vector<std::byte> message = [] {
      std::vector<std::byte> bytes = bytes_from_hex(v4_header);
      const std::vector<std::byte> body = bytes_from_hex(v4_body);
      bytes.insert(bytes.end(), body.begin(), body.end());
      return bytes;
    }();
    for (std::size_t index = 0; index < message.size(); index++) {
      std::vector<std::byte> corrupt = message;
      corrupt[index] ^= std::byte{0x01};
      const Header header =
          tally::header_read(std::span<const std::byte, tally::header_size>(corrupt.data(), 256));
      const std::span<const std::byte> body(corrupt.data() + 256, corrupt.size() - 256);
      // Bytes 0..15 are the checksum itself; every other byte is covered by one of the two.
      CHECK_FALSE((tally::checksum_valid(header) && tally::checksum_body_valid(header, body)));
    }
  }
}
