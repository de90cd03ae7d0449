// Test support for the client library: a recording bus and a scripted replica.
//
// For unit tests only (`*_test.cpp`). TestBus stands in for io::MessageBus: it records every
// message the session sends (taking a reference, as the real bus does) and owns the pool.
// ScriptedReplica plays the cluster: it builds replies, pongs and evictions from the requests the
// session sent, correctly sealed (checksum_body, context, checksum) unless a test changes a field
// and reseals on purpose. Hex helpers read the protocol document's vectors (§14). Misuse of the
// helpers themselves asserts; what the session got wrong is a doctest CHECK.
#pragma once

#include <doctest/doctest.h>

#include <cstddef>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include "src/base/assert.hpp"
#include "src/base/message_pool.hpp"
#include "tally/constants.hpp"
#include "tally/header.hpp"
#include "tally/records.hpp"
#include "tally/types.hpp"

namespace tally::client::testing {

// Small messages keep test pools small; 8 KiB holds every body the tests send.
inline constexpr u32 test_message_size = 8192;

struct Sent {
  u8 replica = 0;
  base::Message* message = nullptr;
};

class TestBus {
 public:
  explicit TestBus(u32 capacity, u32 message_size = test_message_size) {
    pool_.init(capacity, message_size);
  }
  ~TestBus() { clear(); }
  TestBus(const TestBus&) = delete;
  TestBus& operator=(const TestBus&) = delete;

  void send_to_replica(u8 replica, base::Message* message) {
    TALLY_ASSERT(pool_.owned(message));
    CHECK(checksum_valid(message->header()));
    sent.push_back(Sent{.replica = replica, .message = pool_.ref(message)});
  }

  base::MessagePool& pool() { return pool_; }

  void clear() {
    for (const Sent& entry : sent) pool_.unref(entry.message);
    sent.clear();
  }

  // Sends of one command, in order.
  std::vector<Sent> sent_of(Command command) const {
    std::vector<Sent> result;
    for (const Sent& entry : sent) {
      if (entry.message->header().command == command) result.push_back(entry);
    }
    return result;
  }

  std::vector<Sent> sent;

 private:
  base::MessagePool pool_;
};

inline void seal(Header& header, std::span<const std::byte> body) {
  set_checksum_body(header, body);
  if (header.command == Command::reply) set_reply_context(header);
  set_checksum(header);
}

inline void reseal(base::Message* message) { seal(message->header(), message->body()); }

class ScriptedReplica {
 public:
  explicit ScriptedReplica(base::MessagePool& pool) : pool_(pool) {}

  u32 view = 0;
  u8 index = 0;
  u64 commit = 0;
  u64 timestamp = 1'700'000'000'000'000'000;

  // A correct reply to `request` carrying `body`; one reference, the caller's.
  base::Message* reply(const base::Message& request, std::span<const std::byte> body) {
    const Header& asked = request.header();
    TALLY_ASSERT(asked.command == Command::request);
    base::Message* message = pool_.get();
    TALLY_ASSERT(message != nullptr);
    TALLY_ASSERT(header_size + body.size() <= pool_.message_size());
    commit += 1;
    timestamp += 1;
    Header& header = message->header();
    header.command = Command::reply;
    header.cluster = asked.cluster;
    header.size = static_cast<u32>(header_size + body.size());
    header.view = view;
    header.release = asked.release;
    header.replica = index;
    header.reply.request_checksum = asked.checksum;
    header.reply.client = asked.request.client;
    header.reply.op = commit;
    header.reply.commit = commit;
    header.reply.timestamp = timestamp;
    header.reply.request = asked.request.request;
    header.reply.operation = asked.request.operation;
    if (!body.empty()) std::memcpy(message->buffer + header_size, body.data(), body.size());
    reseal(message);
    CHECK(validate_reply(header) == HeaderError::none);
    return message;
  }

  base::Message* register_reply(const base::Message& request,
                                u32 batch_size_limit = message_body_size_max) {
    RegisterResult result = {};
    result.batch_size_limit = batch_size_limit;
    return reply(request, std::as_bytes(std::span<const RegisterResult, 1>(&result, 1)));
  }

  base::Message* pong(u64 ping_timestamp_monotonic, u32 pong_view) {
    base::Message* message = frame(Command::pong_client, pong_view);
    message->header().pong_client.ping_timestamp_monotonic = ping_timestamp_monotonic;
    reseal(message);
    CHECK(validate_pong_client(message->header()) == HeaderError::none);
    return message;
  }

  base::Message* eviction(u128 client, EvictionReason reason, u32 eviction_view) {
    base::Message* message = frame(Command::eviction, eviction_view);
    message->header().eviction.client = client;
    message->header().eviction.reason = reason;
    reseal(message);
    return message;
  }

  u128 cluster = 0;

 private:
  base::Message* frame(Command command, u32 message_view) {
    base::Message* message = pool_.get();
    TALLY_ASSERT(message != nullptr);
    Header& header = message->header();
    header.command = command;
    header.cluster = cluster;
    header.size = header_size;
    header.view = message_view;
    header.release = release_server;
    header.replica = index;
    return message;
  }

  base::MessagePool& pool_;
};

// "0000: f2af59..." lines (offsets are skipped) or plain hex, whitespace ignored.
inline std::vector<std::byte> hex_bytes(std::string_view text) {
  std::vector<std::byte> bytes;
  auto digit = [](char character) -> int {
    if (character >= '0' && character <= '9') return character - '0';
    if (character >= 'a' && character <= 'f') return character - 'a' + 10;
    return -1;
  };
  std::size_t position = 0;
  while (position < text.size()) {
    const std::size_t line_end = text.find('\n', position);
    std::string_view line = text.substr(position, line_end == std::string_view::npos
                                                      ? std::string_view::npos
                                                      : line_end - position);
    position = line_end == std::string_view::npos ? text.size() : line_end + 1;
    const std::size_t colon = line.find(':');
    if (colon != std::string_view::npos) line.remove_prefix(colon + 1);
    int high = -1;
    for (const char character : line) {
      const int value = digit(character);
      if (value < 0) continue;
      if (high < 0) {
        high = value;
      } else {
        bytes.push_back(static_cast<std::byte>(high * 16 + value));
        high = -1;
      }
    }
    TALLY_ASSERT(high < 0, "an odd number of hex digits");
  }
  return bytes;
}

inline std::vector<std::byte> bytes_of(std::span<const std::byte> span) {
  return {span.begin(), span.end()};
}

}  // namespace tally::client::testing
