// Validation of replica messages at the replica's boundary: every field a handler later relies
// on is checked here once, so that nothing a peer (or anything that reaches a replica's port)
// sends can reach an assertion, a WAL write or the state machine unchecked.
//
// Pure: a function of the header, the body and who this replica is. The frame rules (checksums,
// sizes, reserved bytes of §3.3 and of each command's zero part) are validate_header()'s and run
// before this; the message bus has verified both checksums. What is checked here is what only
// the replica protocol defines (docs/vsr-protocol.md, "Validation"):
//
//   every replica command   sender index within the cluster and, but for a prepare (which
//                           names the primary that prepared it), not this replica
//   prepare                 sent by the primary of the view it names; op >= 1; commit < op;
//                           a timestamp; a checkpoint_id; an operation a primary prepares
//                           (register, pulse, or a state-machine operation other than the
//                           state machine's pulse) with exactly the fields and body it gives
//                           that operation, the body passing the request body rules (§8)
//   prepare_ok              op >= 1; a prepare checksum
//   commit                  sent by the primary of the view it names; checkpoint_op <= commit
//   get_prepare, exit_view  (nothing more)
//   get_view                a nonce
//   get_headers             op_min <= op_max, at most a pipeline's worth
//   headers                 its body as a view's (no blanks)
//   join_view               log_view below its view; checkpoint <= commit_min <= op; its body
//                           (validate_view_headers, blanks allowed but first) headed by op; no
//                           bitset bit beyond the headers
//   view                    sent by the view's primary; checkpoint <= commit_max <= op, at most
//                           a pipeline apart; its body (no blanks) from op down to at or below
//                           commit_max
//
// What depends on the replica's state (the view, the log, the pipeline) is the handlers' to
// check; each states it where it acts. Invariant: validate_replica_message() returns none only
// for the commands of command_is_replica().
#pragma once

#include <cstring>
#include <span>

#include "journal/superblock.hpp"
#include "journal/wal.hpp"
#include "src/base/assert.hpp"
#include "tally/constants.hpp"
#include "tally/header.hpp"
#include "tally/multi_batch.hpp"
#include "tally/operation.hpp"
#include "tally/types.hpp"

namespace tally::vsr {

enum class MessageError : u8 {
  none = 0,
  command_not_replica,   // Not a command replicas send each other (or not one Tally uses yet).
  sender_invalid,        // The replica index is outside the cluster.
  sender_self,           // Claims to come from this replica.
  sender_not_primary,    // A primary's command from a replica that is not the view's primary.
  op_zero,               // Op 0 is the root prepare, never sent.
  commit_not_below_op,   // A prepare's commit number must precede its own op.
  timestamp_zero,
  operation_invalid,     // An operation no primary prepares.
  pulse_fields_invalid,  // A pulse names a client, a request or a body.
  register_fields_invalid,
  request_fields_invalid,  // A state-machine prepare without its client or request number.
  body_invalid,            // The body fails the request body rules of its operation.
  prepare_checksum_zero,
  checkpoint_above_commit,
  view_headers_invalid,  // A join_view's or view's body: count, ops, checksums, chain, views.
  log_view_invalid,      // A join_view's log_view is not below its view.
  view_fields_invalid,   // op, commit and checkpoint fields out of order.
  nonce_zero,
  block_fields_invalid,  // A get_blocks or block: kind, index, checksum or body size.
  checkpoint_id_zero,    // A prepare or commit names a checkpoint by a checksum, never 0.
};

constexpr const char* name(MessageError error) {
  switch (error) {
    case MessageError::none: return "none";
    case MessageError::command_not_replica: return "command_not_replica";
    case MessageError::sender_invalid: return "sender_invalid";
    case MessageError::sender_self: return "sender_self";
    case MessageError::sender_not_primary: return "sender_not_primary";
    case MessageError::op_zero: return "op_zero";
    case MessageError::commit_not_below_op: return "commit_not_below_op";
    case MessageError::timestamp_zero: return "timestamp_zero";
    case MessageError::operation_invalid: return "operation_invalid";
    case MessageError::pulse_fields_invalid: return "pulse_fields_invalid";
    case MessageError::register_fields_invalid: return "register_fields_invalid";
    case MessageError::request_fields_invalid: return "request_fields_invalid";
    case MessageError::body_invalid: return "body_invalid";
    case MessageError::prepare_checksum_zero: return "prepare_checksum_zero";
    case MessageError::checkpoint_above_commit: return "checkpoint_above_commit";
    case MessageError::view_headers_invalid: return "view_headers_invalid";
    case MessageError::log_view_invalid: return "log_view_invalid";
    case MessageError::view_fields_invalid: return "view_fields_invalid";
    case MessageError::nonce_zero: return "nonce_zero";
    case MessageError::block_fields_invalid: return "block_fields_invalid";
    case MessageError::checkpoint_id_zero: return "checkpoint_id_zero";
  }
  return "unknown";
}

// Who is validating: the message's claims are checked against the cluster's shape.
struct ValidationContext {
  u8 replica;        // This replica's index.
  u8 replica_count;  // 1..replicas_max.
  u64 grid_block_count = 0;  // The data file's layout: what get_blocks and block may name.
  u32 grid_block_size = 0;
  u32 clients_max = 0;
};


// Whether `command` is one that replicas send each other.
constexpr bool command_is_replica(Command command) {
  return command == Command::prepare || command == Command::prepare_ok ||
         command == Command::commit || command == Command::get_prepare ||
         command == Command::exit_view || command == Command::join_view ||
         command == Command::view || command == Command::get_view ||
         command == Command::get_headers || command == Command::headers ||
         command == Command::get_blocks || command == Command::block;
}

// The body of a join_view or a view: 1..view_headers_max prepare headers, newest first, one op
// apart, each of this cluster and at most `view_max`'s view (blanks: join_view only, never the
// first), adjacent ones hash-chained with rising timestamps.
inline MessageError validate_view_headers(const Header& message, std::span<const std::byte> body,
                                          bool blanks_allowed, u32 view_max) {
  // The caller's choice of rules, for the commands that carry a view's headers.
  TALLY_ASSERT(message.command == Command::join_view || message.command == Command::view ||
               message.command == Command::headers);
  TALLY_ASSERT(!blanks_allowed || message.command == Command::join_view);
  if (body.empty() || body.size() % header_size != 0) return MessageError::view_headers_invalid;
  const u64 count = body.size() / header_size;
  if (count > journal::view_headers_max) return MessageError::view_headers_invalid;
  Header newer{};
  bool newer_valid = false;
  for (u64 index = 0; index < count; index += 1) {
    Header header;
    TALLY_ASSERT((index + 1) * header_size <= body.size());  // The copy stays in the body.
    std::memcpy(&header, body.data() + index * header_size, header_size);
    const bool blank = header.checksum == 0 && header.command == Command::prepare;
    if (blank) {
      Header expected{};
      expected.command = Command::prepare;
      expected.prepare.op = header.prepare.op;
      if (!blanks_allowed || index == 0 || std::memcmp(&expected, &header, header_size) != 0) {
        return MessageError::view_headers_invalid;
      }
    } else {
      // The cluster's root prepare stands for op 0; every other header is a real prepare.
      const bool root = header.prepare.op == 0;
      if (!checksum_valid(header) || header.command != Command::prepare ||
          header.cluster != message.cluster || header.view > view_max ||
          (root != (header.prepare.operation == Operation::root)) ||
          header.prepare.operation == Operation::reserved ||
          (!root && header.prepare.timestamp == 0)) {
        return MessageError::view_headers_invalid;
      }
    }
    if (index > 0 && header.prepare.op + 1 != newer.prepare.op) {
      return MessageError::view_headers_invalid;
    }
    if (!blank && newer_valid &&
        (header.checksum != newer.prepare.parent ||
         header.prepare.timestamp >= newer.prepare.timestamp || header.view > newer.view)) {
      return MessageError::view_headers_invalid;
    }
    newer = header;
    newer_valid = !blank;
  }
  // What the callers rely on once the headers pass: 1..view_headers_max of them.
  TALLY_ASSERT(count >= 1 && count <= journal::view_headers_max);
  return MessageError::none;
}

// A get_blocks names one piece of a checkpoint that the data file's layout can hold.
inline bool validate_get_blocks(const Header::GetBlocks& fields, std::span<const std::byte> body,
                                const ValidationContext& context) {
  if (!body.empty()) return false;  // (validate_header(): reserved bytes are zero.)
  switch (fields.kind) {
    case BlockKind::checkpoint: return fields.checksum == 0 && fields.index == 0;
    case BlockKind::grid_vsr:
    case BlockKind::grid_state:
      return fields.checksum != 0 && fields.op_min == 0 && fields.index < context.grid_block_count;
    case BlockKind::reply:
      return fields.checksum != 0 && fields.op_min == 0 && fields.index < context.clients_max;
    case BlockKind::reserved: break;
  }
  return false;
}

// A block carries the piece its fields name, within the sizes that piece can have (its content
// is verified against the checksum by whoever asked for it).
inline bool validate_block(const Header::Block& fields, std::span<const std::byte> body,
                           const ValidationContext& context) {
  if (fields.checksum == 0) return false;
  switch (fields.kind) {
    case BlockKind::checkpoint:
      return fields.op > 0 && fields.index == 0 &&
             body.size() == sizeof(journal::CheckpointReference);
    case BlockKind::grid_vsr:
    case BlockKind::grid_state:
      return fields.op == 0 && fields.index < context.grid_block_count &&
             body.size() >= 64 && body.size() <= context.grid_block_size;
    case BlockKind::reply:
      return fields.op == 0 && fields.index < context.clients_max &&
             body.size() <= message_size_max - header_size;
    case BlockKind::reserved: break;
  }
  return false;
}

// The operations a primary prepares, with the fields and body each must carry.
inline MessageError validate_prepare_operation(const Header& header,
                                               std::span<const std::byte> body) {
  TALLY_ASSERT(header.command == Command::prepare);
  TALLY_ASSERT(body.size() + header_size == header.size);
  const Header::Prepare& prepare = header.prepare;
  if (prepare.operation == Operation::pulse) {
    const bool fields_empty = prepare.client == 0 && prepare.request_checksum == 0 &&
                              prepare.request == 0 && body.empty();
    return fields_empty ? MessageError::none : MessageError::pulse_fields_invalid;
  }
  if (prepare.operation == Operation::register_session) {
    // The primary prepares only a register with the RegisterRequest body (§5.4 step 6).
    const bool fields_valid = prepare.client != 0 && prepare.request == 0 &&
                              body.size() == sizeof(RegisterRequest);
    return fields_valid ? MessageError::none : MessageError::register_fields_invalid;
  }
  if (!operation_is_state_machine(prepare.operation) ||
      prepare.operation == Operation::state_machine_pulse) {
    return MessageError::operation_invalid;
  }
  if (prepare.client == 0 || prepare.request == 0) return MessageError::request_fields_invalid;
  if (validate_request_body(prepare.operation, body) != RequestBodyError::none) {
    return MessageError::body_invalid;
  }
  return MessageError::none;
}

// The replica protocol's rules for one message that passed validate_header() (see the file
// comment). `body` is the message's body (header.size - header_size bytes).
inline MessageError validate_replica_message(const Header& header,
                                             std::span<const std::byte> body,
                                             const ValidationContext& context) {
  TALLY_ASSERT(context.replica_count >= 1 && context.replica_count <= replicas_max);
  TALLY_ASSERT(context.replica < context.replica_count);
  TALLY_ASSERT(body.size() == header.size - header_size);
  if (!command_is_replica(header.command)) return MessageError::command_not_replica;
  if (header.replica >= context.replica_count) return MessageError::sender_invalid;
  // A prepare names the primary that prepared it, not who sent it: a peer answering a repair
  // forwards it as it is, possibly to the replica that prepared it in an earlier view.
  if (header.replica == context.replica && header.command != Command::prepare) {
    return MessageError::sender_self;
  }
  const bool from_view_primary = header.view % context.replica_count == header.replica;
  switch (header.command) {
    case Command::prepare: {
      const Header::Prepare& prepare = header.prepare;
      if (!from_view_primary) return MessageError::sender_not_primary;
      if (prepare.op == 0) return MessageError::op_zero;
      if (prepare.commit >= prepare.op) return MessageError::commit_not_below_op;
      if (prepare.timestamp == 0) return MessageError::timestamp_zero;
      if (prepare.checkpoint_id == 0) return MessageError::checkpoint_id_zero;
      return validate_prepare_operation(header, body);
    }
    case Command::prepare_ok:
      if (header.prepare_ok.op == 0) return MessageError::op_zero;
      if (header.prepare_ok.prepare_checksum == 0) return MessageError::prepare_checksum_zero;
      return MessageError::none;
    case Command::commit:
      if (!from_view_primary) return MessageError::sender_not_primary;
      if (header.commit.checkpoint_op > header.commit.commit) {
        return MessageError::checkpoint_above_commit;
      }
      if (header.commit.checkpoint_id == 0) return MessageError::checkpoint_id_zero;
      return MessageError::none;
    case Command::get_prepare: return MessageError::none;
    case Command::exit_view: return MessageError::none;
    case Command::get_headers: {
      const Header::GetHeaders& fields = header.get_headers;
      if (fields.op_min > fields.op_max ||
          fields.op_max - fields.op_min >= journal::wal_write_count_max) {
        return MessageError::view_fields_invalid;
      }
      return MessageError::none;
    }
    case Command::headers: return validate_view_headers(header, body, false, header.view);
    case Command::get_view:
      return header.get_view.nonce == 0 ? MessageError::nonce_zero : MessageError::none;
    case Command::join_view: {
      const Header::JoinView& fields = header.join_view;
      if (fields.log_view >= header.view) return MessageError::log_view_invalid;
      if (fields.commit_min > fields.op || fields.checkpoint_op > fields.commit_min ||
          fields.head_uncertain > 1) {
        return MessageError::view_fields_invalid;
      }
      const MessageError error = validate_view_headers(header, body, true, fields.log_view);
      if (error != MessageError::none) return error;
      const u64 count = body.size() / header_size;
      // Validated: 1..view_headers_max headers, few enough for the bitsets' shift below.
      static_assert(journal::view_headers_max < 32);
      TALLY_ASSERT(count >= 1 && count <= journal::view_headers_max);
      Header head;
      std::memcpy(&head, body.data(), header_size);
      if (head.prepare.op != fields.op) return MessageError::view_fields_invalid;
      const u32 bits_used = (1u << count) - 1;
      if ((fields.nack_bitset & ~bits_used) != 0 || (fields.present_bitset & ~bits_used) != 0) {
        return MessageError::view_fields_invalid;
      }
      return MessageError::none;
    }
    case Command::view: {
      const Header::View& fields = header.view_command;
      if (!from_view_primary) return MessageError::sender_not_primary;
      if (fields.commit_max > fields.op || fields.checkpoint_op > fields.commit_max ||
          fields.op - fields.commit_max > journal::view_headers_max - 1) {
        return MessageError::view_fields_invalid;
      }
      const MessageError error = validate_view_headers(header, body, false, header.view);
      if (error != MessageError::none) return error;
      // Validated: at least one header, a whole number of them.
      TALLY_ASSERT(body.size() >= header_size && body.size() % header_size == 0);
      Header head;
      Header oldest;
      std::memcpy(&head, body.data(), header_size);
      std::memcpy(&oldest, body.data() + body.size() - header_size, header_size);
      if (head.prepare.op != fields.op || oldest.prepare.op > fields.commit_max) {
        return MessageError::view_fields_invalid;
      }
      return MessageError::none;
    }
    case Command::get_blocks: {
      const bool valid = validate_get_blocks(header.get_blocks, body, context);
      return valid ? MessageError::none : MessageError::block_fields_invalid;
    }
    case Command::block: {
      const bool valid = validate_block(header.block, body, context);
      return valid ? MessageError::none : MessageError::block_fields_invalid;
    }
    default: break;
  }
  TALLY_ASSERT(false, "command_is_replica() and the switch disagree");
  return MessageError::command_not_replica;
}

}  // namespace tally::vsr
