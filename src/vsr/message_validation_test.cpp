// validate_replica_message() on real headers: a valid message of every replica command, then for
// each MessageError one header, otherwise valid, that breaks exactly that rule. Every header here
// is sealed and passes validate_header() first, as on the replica's boundary, so each case is one
// a peer (or anything reaching a replica's port) can really send.
#include <cstring>
#include <span>
#include <vector>

#include "doctest/doctest.h"
#include "src/vsr/message_validation.hpp"
#include "tally/header.hpp"
#include "tally/multi_batch.hpp"

namespace {

using namespace tally;
using vsr::MessageError;
using vsr::ValidationContext;

constexpr u128 cluster = 7;
// Replica 1 of 3 validates: replica 0 is the primary of view 0 (and of views 3, 6, ...), replica
// 2 a peer backup, and replica 1 of view 1.
constexpr ValidationContext context{.replica = 1, .replica_count = 3};

struct TestMessage {
  Header header{};
  std::vector<std::byte> body;

  // Sets the size and both checksums, as a sender does last.
  void seal() {
    header.size = header_size + static_cast<u32>(body.size());
    set_checksum_body(header, std::span<const std::byte>(body));
    set_checksum(header);
  }

  MessageError validate(const ValidationContext& validator = context) {
    seal();
    REQUIRE(checksum_valid(header));
    REQUIRE(checksum_body_valid(header, std::span<const std::byte>(body)));
    REQUIRE(validate_header(header) == HeaderError::none);
    return vsr::validate_replica_message(header, body, validator);
  }
};

TestMessage frame_make(Command command, u8 replica, u32 view) {
  TestMessage message;
  message.header.cluster = cluster;
  message.header.view = view;
  message.header.release = release_server;
  message.header.command = command;
  message.header.replica = replica;
  return message;
}

// Two accounts in one batch, multi-batch encoded (protocol §8.2) as a client sends them.
std::vector<std::byte> accounts_body() {
  Account accounts[2] = {};
  accounts[0].id = 1;
  accounts[1].id = 2;
  for (Account& account : accounts) {
    account.ledger = 1;
    account.code = 1;
  }
  std::vector<std::byte> body(message_body_size_max);
  MultiBatchEncoder encoder(body, sizeof(Account));
  REQUIRE(encoder.batch_add(std::as_bytes(std::span(accounts))) == MultiBatchEncodeError::none);
  REQUIRE(encoder.finish() == MultiBatchEncodeError::none);
  body.resize(encoder.size());
  REQUIRE(validate_request_body(Operation::create_accounts, body) == RequestBodyError::none);
  return body;
}

// A prepare of op 5 from the primary of view 0, as the primary prepares a client's request.
TestMessage prepare_make(Operation operation) {
  TestMessage message = frame_make(Command::prepare, 0, 0);
  Header::Prepare& prepare = message.header.prepare;
  prepare.parent = 0xAB;
  prepare.op = 5;
  prepare.commit = 3;
  prepare.timestamp = 1'000'000;
  prepare.checkpoint_id = 0xC0DE;
  prepare.operation = operation;
  if (operation == Operation::pulse) return message;  // The primary's own: no client, no body.
  prepare.client = 0xC11E;
  prepare.request_checksum = 0xCAFE;
  if (operation == Operation::register_session) {
    message.body.resize(sizeof(RegisterRequest));
    return message;
  }
  prepare.request = 4;
  message.body = accounts_body();
  return message;
}

TestMessage prepare_ok_make() {
  TestMessage message = frame_make(Command::prepare_ok, 2, 0);
  message.header.prepare_ok.prepare_checksum = 0xFEED;
  message.header.prepare_ok.parent = 0xAB;
  message.header.prepare_ok.op = 5;
  message.header.prepare_ok.commit = 3;
  message.header.prepare_ok.timestamp = 1'000'000;
  return message;
}

TestMessage commit_make() {
  TestMessage message = frame_make(Command::commit, 0, 0);
  message.header.commit.commit_checksum = 0xFEED;
  message.header.commit.commit = 9;
  message.header.commit.checkpoint_op = 4;
  message.header.commit.checkpoint_id = 0xC0FFEE;
  return message;
}

TestMessage get_prepare_make() {
  TestMessage message = frame_make(Command::get_prepare, 2, 0);
  message.header.get_prepare.op = 5;
  return message;
}

}  // namespace

TEST_SUITE("message_validation") {
  TEST_CASE("message validation: every error has its own name") {
    const auto last = static_cast<u8>(MessageError::checkpoint_above_commit);
    for (u8 value = 0; value <= last; value += 1) {
      const char* error_name = vsr::name(static_cast<MessageError>(value));
      CHECK(std::strcmp(error_name, "unknown") != 0);
      for (u8 other = 0; other < value; other += 1) {
        CHECK(std::strcmp(error_name, vsr::name(static_cast<MessageError>(other))) != 0);
      }
    }
  }

  TEST_CASE("message validation: valid messages of every replica command pass") {
    for (const Operation operation :
         {Operation::pulse, Operation::register_session, Operation::create_accounts}) {
      CAPTURE(static_cast<int>(operation));
      TestMessage prepare = prepare_make(operation);
      CHECK(prepare.validate() == MessageError::none);
    }
    TestMessage prepare_ok = prepare_ok_make();
    CHECK(prepare_ok.validate() == MessageError::none);
    TestMessage commit = commit_make();
    CHECK(commit.validate() == MessageError::none);
    TestMessage get_prepare = get_prepare_make();
    CHECK(get_prepare.validate() == MessageError::none);
    // A later view of the same primary (it restarted): the sender rule holds there too.
    TestMessage restarted = prepare_make(Operation::create_accounts);
    restarted.header.view = 3;
    CHECK(restarted.validate() == MessageError::none);
    // The primary validates its backups' messages; a backup validates a peer backup's repair.
    TestMessage at_primary = prepare_ok_make();
    CHECK(at_primary.validate({.replica = 0, .replica_count = 3}) == MessageError::none);
    TestMessage get_prepare_peer = get_prepare_make();
    get_prepare_peer.header.replica = 0;
    CHECK(get_prepare_peer.validate() == MessageError::none);
  }

  TEST_CASE("message validation: command_not_replica: client commands, unused replica ones") {
    for (const Command command :
         {Command::ping, Command::pong, Command::get_reply}) {
      CAPTURE(static_cast<int>(command));
      TestMessage message = frame_make(command, 0, 0);
      CHECK(message.validate() == MessageError::command_not_replica);
    }
    TestMessage ping_client = frame_make(Command::ping_client, 0, 0);
    ping_client.header.ping_client.client = 0xC11E;
    CHECK(ping_client.validate() == MessageError::command_not_replica);
    // Checked before the sender: a request names replica 0 whoever receives it.
    TestMessage request = frame_make(Command::request, 0, 0);
    request.header.request.client = 0xC11E;
    request.header.request.operation = Operation::register_session;
    CHECK(request.validate({.replica = 0, .replica_count = 1}) ==
          MessageError::command_not_replica);
  }

  TEST_CASE("message validation: sender_invalid: a replica index outside the cluster") {
    TestMessage get_prepare = get_prepare_make();
    get_prepare.header.replica = 3;
    CHECK(get_prepare.validate() == MessageError::sender_invalid);
    TestMessage prepare_ok = prepare_ok_make();
    prepare_ok.header.replica = 255;
    CHECK(prepare_ok.validate() == MessageError::sender_invalid);
    // Index 3 is a replica of a 4-replica cluster.
    get_prepare.header.replica = 3;
    CHECK(get_prepare.validate({.replica = 1, .replica_count = 4}) == MessageError::none);
  }

  TEST_CASE("message validation: sender_self: a message claiming to come from its receiver") {
    TestMessage prepare_ok = prepare_ok_make();
    prepare_ok.header.replica = context.replica;
    CHECK(prepare_ok.validate() == MessageError::sender_self);
    // But a prepare names the primary that prepared it, not its sender: a peer answering a
    // repair forwards this replica's own prepare of an earlier view back to it.
    TestMessage prepare = prepare_make(Operation::create_accounts);
    prepare.header.view = 1;
    prepare.header.replica = 1;
    CHECK(prepare.validate() == MessageError::none);
  }

  TEST_CASE("message validation: sender_not_primary: a prepare or commit from a backup") {
    TestMessage prepare = prepare_make(Operation::create_accounts);
    prepare.header.replica = 2;
    CHECK(prepare.validate() == MessageError::sender_not_primary);
    TestMessage commit = commit_make();
    commit.header.replica = 2;
    CHECK(commit.validate() == MessageError::sender_not_primary);
    // Replica 0 is not the primary of view 1 (replica 1 is).
    commit = commit_make();
    commit.header.view = 1;
    CHECK(commit.validate() == MessageError::sender_not_primary);
    // Backups' own commands name any sender.
    TestMessage prepare_ok = prepare_ok_make();
    prepare_ok.header.view = 1;
    CHECK(prepare_ok.validate() == MessageError::none);
  }

  TEST_CASE("message validation: op_zero: the root prepare is never sent, nor acknowledged") {
    TestMessage prepare = prepare_make(Operation::pulse);
    prepare.header.prepare.op = 0;
    prepare.header.prepare.commit = 0;
    CHECK(prepare.validate() == MessageError::op_zero);
    TestMessage prepare_ok = prepare_ok_make();
    prepare_ok.header.prepare_ok.op = 0;
    CHECK(prepare_ok.validate() == MessageError::op_zero);
  }

  TEST_CASE("message validation: commit_not_below_op: a prepare is not committed when prepared") {
    TestMessage prepare = prepare_make(Operation::create_accounts);
    prepare.header.prepare.commit = prepare.header.prepare.op;
    CHECK(prepare.validate() == MessageError::commit_not_below_op);
    prepare.header.prepare.commit = ~u64{0};
    CHECK(prepare.validate() == MessageError::commit_not_below_op);
    prepare.header.prepare.commit = prepare.header.prepare.op - 1;
    CHECK(prepare.validate() == MessageError::none);
  }

  TEST_CASE("message validation: timestamp_zero") {
    TestMessage prepare = prepare_make(Operation::register_session);
    prepare.header.prepare.timestamp = 0;
    CHECK(prepare.validate() == MessageError::timestamp_zero);
  }

  TEST_CASE("message validation: checkpoint_id_zero: a prepare names its checkpoint") {
    TestMessage prepare = prepare_make(Operation::pulse);
    prepare.header.prepare.checkpoint_id = 0;
    CHECK(prepare.validate() == MessageError::checkpoint_id_zero);
  }

  TEST_CASE("message validation: operation_invalid: operations no primary prepares") {
    // VSR operations other than register and pulse, VSR-reserved values, the state machine's
    // own pulse, and values past the state machine's operations.
    const u8 operations[] = {static_cast<u8>(Operation::reserved),
                             static_cast<u8>(Operation::root),
                             static_cast<u8>(Operation::reconfigure),
                             static_cast<u8>(Operation::upgrade),
                             static_cast<u8>(Operation::noop),
                             7,
                             127,
                             static_cast<u8>(Operation::state_machine_pulse),
                             148,
                             255};
    for (const u8 operation : operations) {
      CAPTURE(static_cast<int>(operation));
      TestMessage prepare = prepare_make(Operation::create_accounts);
      prepare.header.prepare.operation = static_cast<Operation>(operation);
      CHECK(prepare.validate() == MessageError::operation_invalid);
    }
  }

  TEST_CASE("message validation: pulse_fields_invalid: a pulse names no client, request or body") {
    TestMessage with_client = prepare_make(Operation::pulse);
    with_client.header.prepare.client = 0xC11E;
    CHECK(with_client.validate() == MessageError::pulse_fields_invalid);
    TestMessage with_request_checksum = prepare_make(Operation::pulse);
    with_request_checksum.header.prepare.request_checksum = 1;
    CHECK(with_request_checksum.validate() == MessageError::pulse_fields_invalid);
    TestMessage with_request = prepare_make(Operation::pulse);
    with_request.header.prepare.request = 1;
    CHECK(with_request.validate() == MessageError::pulse_fields_invalid);
    TestMessage with_body = prepare_make(Operation::pulse);
    with_body.body.resize(16);
    CHECK(with_body.validate() == MessageError::pulse_fields_invalid);
  }

  TEST_CASE("message validation: register_fields_invalid: a client and exactly a RegisterRequest") {
    TestMessage no_client = prepare_make(Operation::register_session);
    no_client.header.prepare.client = 0;
    CHECK(no_client.validate() == MessageError::register_fields_invalid);
    TestMessage with_request = prepare_make(Operation::register_session);
    with_request.header.prepare.request = 1;
    CHECK(with_request.validate() == MessageError::register_fields_invalid);
    // A body-less register is a valid request (answered with an eviction), never a prepare.
    TestMessage no_body = prepare_make(Operation::register_session);
    no_body.body.clear();
    CHECK(no_body.validate() == MessageError::register_fields_invalid);
    TestMessage long_body = prepare_make(Operation::register_session);
    long_body.body.resize(sizeof(RegisterRequest) + 2);
    CHECK(long_body.validate() == MessageError::register_fields_invalid);
  }

  TEST_CASE("message validation: request_fields_invalid: a client and a request number") {
    TestMessage no_client = prepare_make(Operation::create_accounts);
    no_client.header.prepare.client = 0;
    CHECK(no_client.validate() == MessageError::request_fields_invalid);
    TestMessage no_request = prepare_make(Operation::create_accounts);
    no_request.header.prepare.request = 0;
    CHECK(no_request.validate() == MessageError::request_fields_invalid);
  }

  TEST_CASE("message validation: body_invalid: the request body rules of the operation") {
    TestMessage empty = prepare_make(Operation::create_accounts);
    empty.body.clear();
    CHECK(empty.validate() == MessageError::body_invalid);
    // Two bytes of junk: a trailer naming 0xFFFF batches.
    TestMessage junk = prepare_make(Operation::create_accounts);
    junk.body.assign(2, std::byte{0xFF});
    CHECK(junk.validate() == MessageError::body_invalid);
    // A valid create_accounts body is not a valid body of another operation: transfers are
    // as large as accounts, but lookup ids are not.
    TestMessage lookup = prepare_make(Operation::create_accounts);
    lookup.header.prepare.operation = Operation::lookup_transfers;
    CHECK(lookup.validate() == MessageError::body_invalid);
    TestMessage transfers = prepare_make(Operation::create_accounts);
    transfers.header.prepare.operation = Operation::create_transfers;
    CHECK(transfers.validate() == MessageError::none);
  }

  TEST_CASE("message validation: prepare_checksum_zero: an acknowledgement names the prepare") {
    TestMessage prepare_ok = prepare_ok_make();
    prepare_ok.header.prepare_ok.prepare_checksum = 0;
    CHECK(prepare_ok.validate() == MessageError::prepare_checksum_zero);
  }

  TEST_CASE("message validation: checkpoint_above_commit: a checkpoint holds only committed ops") {
    TestMessage commit = commit_make();
    commit.header.commit.checkpoint_op = commit.header.commit.commit + 1;
    CHECK(commit.validate() == MessageError::checkpoint_above_commit);
    commit.header.commit.checkpoint_op = commit.header.commit.commit;
    CHECK(commit.validate() == MessageError::none);
  }

  TEST_CASE("message validation: checkpoint_id_zero: a commit names its checkpoint") {
    TestMessage commit = commit_make();
    commit.header.commit.checkpoint_id = 0;
    CHECK(commit.validate() == MessageError::checkpoint_id_zero);
  }

  TEST_CASE("message validation: block_fields_invalid: get_blocks and block within the layout") {
    const ValidationContext layout{.replica = 1,
                                   .replica_count = 3,
                                   .grid_block_count = 100,
                                   .grid_block_size = 64 * 1024,
                                   .clients_max = 4};
    const auto get_blocks = [](BlockKind kind, u32 index, u128 checksum) {
      TestMessage message = frame_make(Command::get_blocks, 2, 0);
      message.header.get_blocks.kind = kind;
      message.header.get_blocks.index = index;
      message.header.get_blocks.checksum = checksum;
      return message;
    };
    CHECK(get_blocks(BlockKind::checkpoint, 0, 0).validate(layout) == MessageError::none);
    CHECK(get_blocks(BlockKind::grid_state, 99, 5).validate(layout) == MessageError::none);
    CHECK(get_blocks(BlockKind::grid_vsr, 0, 5).validate(layout) == MessageError::none);
    CHECK(get_blocks(BlockKind::reply, 3, 5).validate(layout) == MessageError::none);
    // Outside the grid, outside the sessions, no checksum, an unknown kind. (A body is refused
    // by validate_header().)
    CHECK(get_blocks(BlockKind::grid_state, 100, 5).validate(layout) ==
          MessageError::block_fields_invalid);
    CHECK(get_blocks(BlockKind::reply, 4, 5).validate(layout) ==
          MessageError::block_fields_invalid);
    CHECK(get_blocks(BlockKind::grid_vsr, 1, 0).validate(layout) ==
          MessageError::block_fields_invalid);
    CHECK(get_blocks(BlockKind::checkpoint, 0, 5).validate(layout) ==
          MessageError::block_fields_invalid);
    CHECK(get_blocks(static_cast<BlockKind>(9), 0, 5).validate(layout) ==
          MessageError::block_fields_invalid);

    const auto block = [](BlockKind kind, u32 index, u64 op, std::size_t size) {
      TestMessage message = frame_make(Command::block, 0, 0);
      message.header.block.kind = kind;
      message.header.block.index = index;
      message.header.block.op = op;
      message.header.block.checksum = 5;
      message.body.assign(size, std::byte{0});
      return message;
    };
    const std::size_t reference_size = sizeof(journal::CheckpointReference);
    CHECK(block(BlockKind::checkpoint, 0, 7, reference_size).validate(layout) ==
          MessageError::none);
    CHECK(block(BlockKind::grid_state, 9, 0, 4096).validate(layout) == MessageError::none);
    CHECK(block(BlockKind::reply, 1, 0, 0).validate(layout) == MessageError::none);
    CHECK(block(BlockKind::checkpoint, 0, 0, reference_size).validate(layout) ==
          MessageError::block_fields_invalid);
    CHECK(block(BlockKind::checkpoint, 0, 7, reference_size - 1).validate(layout) ==
          MessageError::block_fields_invalid);
    CHECK(block(BlockKind::grid_state, 9, 0, 64 * 1024 + 1).validate(layout) ==
          MessageError::block_fields_invalid);
    CHECK(block(BlockKind::grid_vsr, 9, 0, 63).validate(layout) ==
          MessageError::block_fields_invalid);
    CHECK(block(BlockKind::reply, 4, 0, 300).validate(layout) ==
          MessageError::block_fields_invalid);
    TestMessage unchecked = block(BlockKind::grid_state, 9, 0, 4096);
    unchecked.header.block.checksum = 0;
    CHECK(unchecked.validate(layout) == MessageError::block_fields_invalid);
  }
}  // TEST_SUITE
