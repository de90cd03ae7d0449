// Tests of the 256-byte header (tally/header.hpp): command classification, the validity rules of
// §3.3 (frame) and §4.1-§4.5 (per command), and the checksum and reply-context helpers.
//
// Validation tests start from a header that is valid for its command (asserted first, so a rule
// that rejects good headers is caught too), break exactly one field, and expect exactly the
// reason for that field. Names are compared rather than enum values so a failure reads clearly.
#include <doctest/doctest.h>

#include <array>
#include <cstddef>
#include <cstring>
#include <functional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tally/checksum.hpp"
#include "tally/constants.hpp"
#include "tally/header.hpp"
#include "tally/operation.hpp"
#include "tally/records.hpp"

namespace {

using tally::Command;
using tally::EvictionReason;
using tally::Header;
using tally::HeaderError;
using tally::make_u128;
using tally::Operation;
using tally::u128;
using tally::u32;
using tally::u8;

constexpr u128 client_id = make_u128(0x0123456789abcdef, 0x0123456789abcdef);

Header frame_make(Command command, u32 size) {
  Header header{};
  header.command = command;
  header.size = size;
  header.release = tally::release_server;
  return header;
}

Header register_request_make() {
  Header header = frame_make(Command::request, tally::header_size + 256);
  header.request.client = client_id;
  header.request.operation = Operation::register_session;
  return header;
}

Header create_request_make() {
  Header header = frame_make(Command::request, tally::header_size + 128 + 128);
  header.request.parent = make_u128(1, 2);
  header.request.client = client_id;
  header.request.session = 1;
  header.request.request = 1;
  header.request.operation = Operation::create_accounts;
  return header;
}

Header register_reply_make() {
  Header header = frame_make(Command::reply, tally::header_size + 64);
  header.reply.request_checksum = make_u128(3, 4);
  header.reply.context = make_u128(5, 6);
  header.reply.client = client_id;
  header.reply.op = 1;
  header.reply.commit = 1;
  header.reply.timestamp = 1;
  header.reply.operation = Operation::register_session;
  return header;
}

Header create_reply_make() {
  Header header = frame_make(Command::reply, tally::header_size + 32);
  header.reply.client = client_id;
  header.reply.op = 2;
  header.reply.commit = 2;
  header.reply.timestamp = 2;
  header.reply.request = 1;
  header.reply.operation = Operation::create_accounts;
  return header;
}

Header ping_client_make() {
  Header header = frame_make(Command::ping_client, tally::header_size);
  header.checksum_body = tally::checksum_empty;
  header.ping_client.client = client_id;
  header.ping_client.ping_timestamp_monotonic = 7;
  return header;
}

Header pong_client_make() {
  Header header = frame_make(Command::pong_client, tally::header_size);
  header.checksum_body = tally::checksum_empty;
  header.pong_client.ping_timestamp_monotonic = 7;
  return header;
}

Header eviction_make() {
  Header header = frame_make(Command::eviction, tally::header_size);
  header.checksum_body = tally::checksum_empty;
  header.eviction.client = client_id;
  header.eviction.reason = EvictionReason::no_session;
  return header;
}

struct Breakage {
  const char* field;
  std::function<void(Header&)> mutate;
  HeaderError expected;
};

// The valid header passes; each breakage of it fails with exactly the expected reason.
void check_breakages(const Header& valid, const std::vector<Breakage>& breakages) {
  CHECK(std::string_view(name(tally::validate_header(valid))) == "none");
  for (const Breakage& breakage : breakages) {
    Header header = valid;
    breakage.mutate(header);
    INFO("field: " << breakage.field);
    CHECK(std::string_view(name(tally::validate_header(header))) == name(breakage.expected));
  }
}

std::string bytes_hex(std::span<const std::byte> bytes) {
  constexpr char digits[] = "0123456789abcdef";
  std::string hex;
  for (const std::byte byte : bytes) {
    hex.push_back(digits[std::to_integer<u8>(byte) >> 4]);
    hex.push_back(digits[std::to_integer<u8>(byte) & 0xF]);
  }
  return hex;
}

}  // namespace

TEST_SUITE("wire_header") {
  TEST_CASE("Header{} is all zero, and a field lands on its protocol offset") {
    const Header zero{};
    for (const std::byte byte : tally::header_bytes(zero)) CHECK(byte == std::byte{0});

    // One field per region of the layout, written through the typed views, read as raw bytes.
    Header header{};
    header.size = 0x11223344;
    header.command = Command::eviction;
    header.request.operation = Operation::create_transfers;
    header.reply.timestamp = 0x0102030405060708;
    header.eviction.reason = EvictionReason::session_release_mismatch;
    const std::span<const std::byte, 256> bytes = tally::header_bytes(header);
    CHECK(bytes_hex(bytes.subspan(96, 4)) == "44332211");
    CHECK(bytes[114] == std::byte{18});
    CHECK(bytes[196] == std::byte{147});
    CHECK(bytes_hex(bytes.subspan(224, 8)) == "0807060504030201");
    CHECK(bytes[255] == std::byte{8});
  }

  TEST_CASE("commands: known, retired and valid values are exactly those of §3.2") {
    const std::set<int> retired = {12, 21, 22, 23};
    std::set<std::string> names;
    for (int value = 0; value < 256; value++) {
      const auto command = static_cast<Command>(value);
      INFO("command: " << value);
      CHECK(tally::command_known(command) == (value <= 24));
      CHECK(tally::command_retired(command) == (retired.count(value) == 1));
      CHECK(tally::command_valid(command) ==
            (value >= 1 && value <= 24 && retired.count(value) == 0));
      const std::string command_name = tally::name(command);
      if (value <= 24) {
        CHECK(command_name != "unknown");
        names.insert(command_name);
      } else {
        CHECK(command_name == "unknown");
      }
    }
    CHECK(names.size() == 25);
    CHECK(std::string_view(name(Command::pong_client)) == "pong_client");
    CHECK(static_cast<u8>(Command::view) == 24);
    CHECK(static_cast<u8>(Command::eviction) == 18);
  }

  TEST_CASE("eviction reasons and header errors have distinct names") {
    std::set<std::string> reasons;
    for (int value = 0; value <= tally::eviction_reason_last; value++) {
      reasons.insert(name(static_cast<EvictionReason>(value)));
    }
    CHECK(reasons.size() == 9);
    CHECK(reasons.count("unknown") == 0);
    CHECK(std::string_view(name(static_cast<EvictionReason>(9))) == "unknown");
    CHECK(std::string_view(name(EvictionReason::invalid_request_body)) == "invalid_request_body");
    CHECK(static_cast<u8>(EvictionReason::invalid_request_body) == 5);

    std::set<std::string> errors;
    const int error_last = static_cast<int>(HeaderError::reason_invalid);
    for (int value = 0; value <= error_last; value++) {
      errors.insert(name(static_cast<HeaderError>(value)));
    }
    CHECK(errors.size() == static_cast<std::size_t>(error_last + 1));
    CHECK(errors.count("unknown") == 0);
  }

  TEST_CASE("frame rules (§3.3) reject each broken field, whatever the command") {
    for (const Header& valid :
         {register_request_make(), create_reply_make(), pong_client_make(), eviction_make()}) {
      INFO("command: " << name(valid.command));
      check_breakages(
          valid,
          {
              {"checksum_padding", [](Header& h) { h.checksum_padding = 1; },
               HeaderError::checksum_padding_nonzero},
              {"checksum_body_padding", [](Header& h) { h.checksum_body_padding = u128{1} << 127; },
               HeaderError::checksum_body_padding_nonzero},
              {"nonce_reserved", [](Header& h) { h.nonce_reserved = 1; },
               HeaderError::nonce_reserved_nonzero},
              {"size 0", [](Header& h) { h.size = 0; }, HeaderError::size_below_header},
              {"size 255", [](Header& h) { h.size = 255; }, HeaderError::size_below_header},
              {"size 1 MiB + 1", [](Header& h) { h.size = tally::message_size_max + 1; },
               HeaderError::size_above_message_max},
              {"size u32 max", [](Header& h) { h.size = 0xFFFFFFFF; },
               HeaderError::size_above_message_max},
              {"epoch", [](Header& h) { h.epoch = 1; }, HeaderError::epoch_nonzero},
              {"reserved_frame[0]", [](Header& h) { h.reserved_frame[0] = 1; },
               HeaderError::reserved_frame_nonzero},
              {"reserved_frame[11]", [](Header& h) { h.reserved_frame[11] = 0x80; },
               HeaderError::reserved_frame_nonzero},
              {"protocol", [](Header& h) { h.protocol = 1; }, HeaderError::protocol_invalid},
              {"command 0", [](Header& h) { h.command = Command::reserved; },
               HeaderError::command_reserved},
              {"command 12", [](Header& h) { h.command = static_cast<Command>(12); },
               HeaderError::command_retired},
              {"command 21", [](Header& h) { h.command = static_cast<Command>(21); },
               HeaderError::command_retired},
              {"command 23", [](Header& h) { h.command = static_cast<Command>(23); },
               HeaderError::command_retired},
              {"command 25", [](Header& h) { h.command = static_cast<Command>(25); },
               HeaderError::command_unknown},
              {"command 99", [](Header& h) { h.command = static_cast<Command>(99); },
               HeaderError::command_unknown},
              {"command 255", [](Header& h) { h.command = static_cast<Command>(255); },
               HeaderError::command_unknown},
          });
    }
  }

  TEST_CASE("request rules (§4.1): register") {
    Header body_less = register_request_make();
    body_less.size = tally::header_size;
    CHECK(std::string_view(name(tally::validate_header(body_less))) == "none");

    check_breakages(
        register_request_make(),
        {
            {"release", [](Header& h) { h.release = 0; }, HeaderError::release_zero},
            {"parent_padding", [](Header& h) { h.request.parent_padding = 1; },
             HeaderError::parent_padding_nonzero},
            {"replica", [](Header& h) { h.replica = 1; }, HeaderError::replica_nonzero},
            {"client", [](Header& h) { h.request.client = 0; }, HeaderError::client_zero},
            {"parent", [](Header& h) { h.request.parent = 1; }, HeaderError::parent_nonzero},
            {"session", [](Header& h) { h.request.session = 1; }, HeaderError::session_nonzero},
            {"request", [](Header& h) { h.request.request = 1; }, HeaderError::request_nonzero},
            {"size 513", [](Header& h) { h.size = 513; }, HeaderError::size_invalid},
            {"size 384", [](Header& h) { h.size = 384; }, HeaderError::size_invalid},
            {"latency padding",
             [](Header& h) { h.request.previous_request_latency_padding[2] = 1; },
             HeaderError::latency_padding_nonzero},
            {"reserved[0]", [](Header& h) { h.request.reserved[0] = 1; },
             HeaderError::reserved_nonzero},
            {"reserved[51]", [](Header& h) { h.request.reserved[51] = 1; },
             HeaderError::reserved_nonzero},
        });
  }

  TEST_CASE("request rules (§4.1): operations") {
    check_breakages(
        create_request_make(),
        {
            {"release", [](Header& h) { h.release = 0; }, HeaderError::release_zero},
            {"replica", [](Header& h) { h.replica = 2; }, HeaderError::replica_nonzero},
            {"client", [](Header& h) { h.request.client = 0; }, HeaderError::client_zero},
            {"session", [](Header& h) { h.request.session = 0; }, HeaderError::session_zero},
            {"request", [](Header& h) { h.request.request = 0; }, HeaderError::request_zero},
            {"operation 0", [](Header& h) { h.request.operation = Operation::reserved; },
             HeaderError::operation_reserved},
            {"operation 1", [](Header& h) { h.request.operation = Operation::root; },
             HeaderError::operation_root},
            {"operation 3", [](Header& h) { h.request.operation = Operation::reconfigure; },
             HeaderError::operation_internal},
            {"operation 4", [](Header& h) { h.request.operation = Operation::pulse; },
             HeaderError::operation_internal},
            {"operation 6", [](Header& h) { h.request.operation = Operation::noop; },
             HeaderError::operation_internal},
            {"operation 7", [](Header& h) { h.request.operation = static_cast<Operation>(7); },
             HeaderError::operation_vsr_reserved},
            {"operation 127", [](Header& h) { h.request.operation = static_cast<Operation>(127); },
             HeaderError::operation_vsr_reserved},
            {"register with a session",
             [](Header& h) { h.request.operation = Operation::register_session; },
             HeaderError::parent_nonzero},
            {"latency padding",
             [](Header& h) { h.request.previous_request_latency_padding[0] = 1; },
             HeaderError::latency_padding_nonzero},
            {"reserved", [](Header& h) { h.request.reserved[20] = 1; },
             HeaderError::reserved_nonzero},
        });

    // Unknown state-machine operations pass the header rules: the server answers them with
    // eviction reason 4, which needs a valid header. So do all informational fields.
    for (const int value : {128, 137, 147, 148, 200, 255}) {
      Header header = create_request_make();
      header.request.operation = static_cast<Operation>(value);
      header.request.timestamp = 99;
      header.request.previous_request_latency = 1234;
      header.view = 3;
      INFO("operation: " << value);
      CHECK(std::string_view(name(tally::validate_header(header))) == "none");
    }
  }

  TEST_CASE("reply rules (§4.2)") {
    check_breakages(
        register_reply_make(),
        {
            {"release", [](Header& h) { h.release = 0; }, HeaderError::release_zero},
            {"client", [](Header& h) { h.reply.client = 0; }, HeaderError::client_zero},
            {"request_checksum_padding", [](Header& h) { h.reply.request_checksum_padding = 1; },
             HeaderError::request_checksum_padding_nonzero},
            {"context_padding", [](Header& h) { h.reply.context_padding = 1; },
             HeaderError::context_padding_nonzero},
            {"op", [](Header& h) { h.reply.op = 2; }, HeaderError::op_not_commit},
            {"timestamp", [](Header& h) { h.reply.timestamp = 0; }, HeaderError::timestamp_zero},
            {"op and commit 0",
             [](Header& h) {
               h.reply.op = 0;
               h.reply.commit = 0;
             },
             HeaderError::commit_zero},
            {"register size 256", [](Header& h) { h.size = 256; }, HeaderError::size_invalid},
            {"register size 576", [](Header& h) { h.size = 576; }, HeaderError::size_invalid},
            {"register request", [](Header& h) { h.reply.request = 1; },
             HeaderError::request_nonzero},
            {"reserved[18]", [](Header& h) { h.reply.reserved[18] = 1; },
             HeaderError::reserved_nonzero},
        });
    check_breakages(
        create_reply_make(),
        {
            {"request", [](Header& h) { h.reply.request = 0; }, HeaderError::request_zero},
            {"commit", [](Header& h) { h.reply.commit = 3; }, HeaderError::op_not_commit},
            {"reserved[0]", [](Header& h) { h.reply.reserved[0] = 1; },
             HeaderError::reserved_nonzero},
        });
  }

  TEST_CASE("ping_client, pong_client and eviction rules (§4.3-§4.5)") {
    check_breakages(
        ping_client_make(),
        {
            {"size", [](Header& h) { h.size = 512; }, HeaderError::size_invalid},
            {"checksum_body", [](Header& h) { h.checksum_body = 0; },
             HeaderError::checksum_body_not_empty},
            {"release", [](Header& h) { h.release = 0; }, HeaderError::release_zero},
            {"replica", [](Header& h) { h.replica = 1; }, HeaderError::replica_nonzero},
            {"view", [](Header& h) { h.view = 1; }, HeaderError::view_nonzero},
            {"client", [](Header& h) { h.ping_client.client = 0; }, HeaderError::client_zero},
            {"reserved[95]", [](Header& h) { h.ping_client.reserved[95] = 1; },
             HeaderError::reserved_nonzero},
        });
    check_breakages(
        pong_client_make(),
        {
            {"size", [](Header& h) { h.size = 257; }, HeaderError::size_invalid},
            {"checksum_body", [](Header& h) { h.checksum_body = 1; },
             HeaderError::checksum_body_not_empty},
            {"release", [](Header& h) { h.release = 0; }, HeaderError::release_zero},
            {"replica 6", [](Header& h) { h.replica = 6; }, HeaderError::replica_above_max},
            {"replica 255", [](Header& h) { h.replica = 255; }, HeaderError::replica_above_max},
            {"reserved[119]", [](Header& h) { h.pong_client.reserved[119] = 1; },
             HeaderError::reserved_nonzero},
        });
    check_breakages(
        eviction_make(),
        {
            {"size", [](Header& h) { h.size = 300; }, HeaderError::size_invalid},
            {"checksum_body", [](Header& h) { h.checksum_body = 0; },
             HeaderError::checksum_body_not_empty},
            {"release", [](Header& h) { h.release = 0; }, HeaderError::release_zero},
            {"client", [](Header& h) { h.eviction.client = 0; }, HeaderError::client_zero},
            {"reserved[110]", [](Header& h) { h.eviction.reserved[110] = 1; },
             HeaderError::reserved_nonzero},
            {"reason 0", [](Header& h) { h.eviction.reason = EvictionReason::reserved; },
             HeaderError::reason_invalid},
            {"reason 9", [](Header& h) { h.eviction.reason = static_cast<EvictionReason>(9); },
             HeaderError::reason_invalid},
        });

    Header pong = pong_client_make();
    pong.replica = tally::replicas_max - 1;
    pong.view = 7;
    CHECK(std::string_view(name(tally::validate_header(pong))) == "none");
    for (int reason = 1; reason <= tally::eviction_reason_last; reason++) {
      Header eviction = eviction_make();
      eviction.eviction.reason = static_cast<EvictionReason>(reason);
      CHECK(std::string_view(name(tally::validate_header(eviction))) == "none");
    }
  }

  TEST_CASE("prepare: fields are free and the reserved tail must be zero") {
    const Header valid = frame_make(Command::prepare, 1024);
    check_breakages(
        valid,
        {
            {"reserved[0]", [](Header& h) { h.prepare.reserved[0] = 1; },
             HeaderError::reserved_nonzero},
            {"reserved[34]", [](Header& h) { h.prepare.reserved[34] = 1; },
             HeaderError::reserved_nonzero},
            {"epoch", [](Header& h) { h.epoch = 1; }, HeaderError::epoch_nonzero},
        });
    Header with_fields = valid;
    with_fields.prepare.parent = 7;
    with_fields.prepare.op = 9;
    with_fields.prepare.operation = tally::Operation::create_transfers;
    CHECK(tally::validate_header(with_fields) == HeaderError::none);
  }

  TEST_CASE("replica commands without fields: frame rules and an all-zero part") {
    for (const Command command :
         {Command::ping, Command::pong, Command::get_reply, Command::headers}) {
      INFO("command: " << name(command));
      const Header valid = frame_make(command, 1024);
      check_breakages(
          valid,
          {
              {"part[0]", [](Header& h) { h.command_part[0] = 1; }, HeaderError::reserved_nonzero},
              {"part[127]", [](Header& h) { h.command_part[127] = 1; },
               HeaderError::reserved_nonzero},
              {"epoch", [](Header& h) { h.epoch = 1; }, HeaderError::epoch_nonzero},
          });
    }
  }

  TEST_CASE("get_blocks and block: their fields, zero reserved bytes, get_blocks header-only") {
    Header get_blocks = frame_make(Command::get_blocks, 256);
    get_blocks.get_blocks.checksum = 5;
    get_blocks.get_blocks.index = 3;
    get_blocks.get_blocks.kind = tally::BlockKind::grid_state;
    CHECK(tally::validate_header(get_blocks) == HeaderError::none);
    check_breakages(get_blocks,
                    {
                        {"reserved[0]", [](Header& h) { h.get_blocks.reserved[0] = 1; },
                         HeaderError::reserved_nonzero},
                        {"reserved[98]", [](Header& h) { h.get_blocks.reserved[98] = 1; },
                         HeaderError::reserved_nonzero},
                        {"size", [](Header& h) { h.size = 512; }, HeaderError::size_invalid},
                    });
    Header block = frame_make(Command::block, 4096);
    block.block.checksum = 5;
    block.block.kind = tally::BlockKind::grid_vsr;
    CHECK(tally::validate_header(block) == HeaderError::none);
    check_breakages(block, {
                               {"reserved[0]", [](Header& h) { h.block.reserved[0] = 1; },
                                HeaderError::reserved_nonzero},
                               {"reserved[98]", [](Header& h) { h.block.reserved[98] = 1; },
                                HeaderError::reserved_nonzero},
                           });
  }

  TEST_CASE("prepare_ok commit and get_prepare: header-only with zero reserved bytes") {
    // Goal: the replica commands with defined fields accept their fields, refuse a body and
    // refuse a non-zero reserved byte (a newer or corrupt peer), whatever the frame.
    for (const Command command : {Command::prepare_ok, Command::commit, Command::get_prepare}) {
      INFO("command: " << name(command));
      const Header valid = frame_make(command, 256);
      CHECK(tally::validate_header(valid) == HeaderError::none);
      check_breakages(valid,
                      {
                          {"part[127]", [](Header& h) { h.command_part[127] = 1; },
                           HeaderError::reserved_nonzero},
                          {"body", [](Header& h) { h.size = 512; }, HeaderError::size_invalid},
                      });
      Header with_fields = valid;
      with_fields.command_part[0] = 1;  // The first field of each: a checksum.
      with_fields.command_part[16] = 1;
      CHECK(tally::validate_header(with_fields) == HeaderError::none);
    }
  }

  TEST_CASE("view change commands: their fields pass, their reserved bytes must be zero") {
    // Goal: exit_view and get_view are header-only; join_view and view carry headers in their
    // body; each refuses a non-zero reserved byte (a newer or corrupt peer).
    struct Case {
      Command command;
      u32 size;
      u32 reserved_offset;  // The first reserved byte of the command part (from byte 128).
      bool header_only;
    };
    for (const Case& test : {Case{Command::exit_view, 256, 0, true},
                             Case{Command::get_view, 256, 16, true},
                             Case{Command::get_headers, 256, 16, true},
                             Case{Command::join_view, 512, 33, false},
                             Case{Command::view, 512, 40, false}}) {
      INFO("command: " << name(test.command));
      Header valid = frame_make(test.command, test.size);
      if (test.header_only) valid.checksum_body = tally::checksum_empty;
      CHECK(tally::validate_header(valid) == HeaderError::none);
      Header fields = valid;
      for (u32 index = 0; index < test.reserved_offset; index += 1) fields.command_part[index] = 1;
      CHECK(tally::validate_header(fields) == HeaderError::none);
      Header reserved = valid;
      reserved.command_part[test.reserved_offset] = 1;
      CHECK(tally::validate_header(reserved) == HeaderError::reserved_nonzero);
      reserved = valid;
      reserved.command_part[127] = 1;
      CHECK(tally::validate_header(reserved) == HeaderError::reserved_nonzero);
      if (test.header_only) {
        Header body = valid;
        body.size = 512;
        CHECK(tally::validate_header(body) == HeaderError::size_invalid);
      }
    }
  }

  TEST_CASE("a per-command validator refuses another command's header") {
    const Header request = create_request_make();
    const Header reply = create_reply_make();
    CHECK(tally::validate_request(reply) == HeaderError::command_mismatch);
    CHECK(tally::validate_reply(request) == HeaderError::command_mismatch);
    CHECK(tally::validate_ping_client(request) == HeaderError::command_mismatch);
    CHECK(tally::validate_pong_client(request) == HeaderError::command_mismatch);
    CHECK(tally::validate_eviction(request) == HeaderError::command_mismatch);
    CHECK(tally::validate_request(request) == HeaderError::none);
    CHECK(tally::validate_reply(reply) == HeaderError::none);
    // validate_frame alone ignores the command's own rules.
    Header broken = request;
    broken.request.client = 0;
    CHECK(tally::validate_frame(broken) == HeaderError::none);
    CHECK(tally::validate_header(broken) == HeaderError::client_zero);
  }

  TEST_CASE("the header checksum covers bytes 16..255 and nothing before") {
    Header header = create_request_make();
    const std::array<std::byte, 7> body = {std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4},
                                           std::byte{5}, std::byte{6}, std::byte{7}};
    header.size = tally::header_size + static_cast<u32>(body.size());
    tally::set_checksum_body(header, body);
    tally::set_checksum(header);
    CHECK(tally::checksum_valid(header));
    CHECK(tally::checksum_body_valid(header, body));
    CHECK(header.checksum_body == tally::checksum(body.data(), body.size()));

    for (std::size_t index = 0; index < tally::header_size; index++) {
      Header corrupt = header;
      tally::header_bytes_writable(corrupt)[index] ^= std::byte{0x10};
      INFO("byte: " << index);
      CHECK_FALSE(tally::checksum_valid(corrupt));
    }
    // The checksum is over the 240 bytes after itself, computed with the final checksum_body.
    const std::span<const std::byte, 256> bytes = tally::header_bytes(header);
    CHECK(header.checksum == tally::checksum(bytes.data() + 16, 240));

    // A body that does not match `size` never verifies, even when its checksum would.
    Header short_size = header;
    short_size.size -= 1;
    CHECK_FALSE(tally::checksum_body_valid(short_size, body));
    Header tiny_size = header;
    tiny_size.size = 10;
    CHECK_FALSE(tally::checksum_body_valid(tiny_size, std::span<const std::byte>{}));
    std::array<std::byte, 7> changed = body;
    changed[6] = std::byte{0};
    CHECK_FALSE(tally::checksum_body_valid(header, changed));

    // The u8 overloads agree with the byte overloads.
    std::array<u8, 7> body_u8{};
    std::memcpy(body_u8.data(), body.data(), body.size());
    CHECK(tally::checksum_body_valid(header, std::span<const u8>(body_u8)));
  }

  TEST_CASE("reply context: the checksum of the sealed reply with context zero") {
    Header reply = create_reply_make();
    tally::set_checksum_body(reply, std::span<const std::byte>{});
    reply.reply.context = make_u128(0xdead, 0xbeef);  // Whatever was there is ignored.
    tally::set_reply_context(reply);
    tally::set_checksum(reply);

    Header zeroed = reply;
    zeroed.reply.context = 0;
    CHECK(reply.reply.context == tally::header_checksum(zeroed));
    CHECK(reply.reply.context == tally::reply_context(reply));
    CHECK(reply.reply.context != reply.checksum);
    CHECK(tally::checksum_valid(reply));

    // Every other field feeds the chain: a different op, client or body gives another context.
    Header other_op = reply;
    other_op.reply.op = other_op.reply.commit = 3;
    CHECK(tally::reply_context(other_op) != reply.reply.context);
    Header other_body = reply;
    tally::set_checksum_body(other_body, std::span<const u8>(reply.command_part, 1));
    CHECK(tally::reply_context(other_body) != reply.reply.context);
    // But not the checksum field, which is computed after the context.
    Header other_checksum = reply;
    other_checksum.checksum = 0;
    CHECK(tally::reply_context(other_checksum) == reply.reply.context);
  }

  TEST_CASE("header_read copies from an unaligned buffer") {
    Header header = eviction_make();
    tally::set_checksum(header);
    alignas(16) std::array<std::byte, 257> buffer{};
    std::memcpy(buffer.data() + 1, &header, sizeof(header));
    const Header read = tally::header_read(std::span<const std::byte, 256>(buffer.data() + 1, 256));
    CHECK(std::memcmp(&read, &header, sizeof(header)) == 0);
    CHECK(tally::checksum_valid(read));
  }
}
