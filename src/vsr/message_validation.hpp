// Validation of replica messages at the replica's boundary: every field a handler later relies
// on is checked here once, so that nothing a peer (or anything that reaches a replica's port)
// sends can reach an assertion, a WAL write or the state machine unchecked.
//
// Pure: a function of the header, the body and who this replica is. The frame rules (checksums,
// sizes, reserved bytes of §3.3 and of each command's zero part) are validate_header()'s and run
// before this; the message bus has verified both checksums. What is checked here is what only
// the replica protocol defines (docs/vsr-protocol.md, "Validation"):
//
//   every replica command   sender index within the cluster and not this replica
//   prepare                 sent by the primary of the view it names; op >= 1; commit < op;
//                           a timestamp; checkpoint_id 0; an operation a primary prepares
//                           (register, pulse, or a state-machine operation other than the
//                           state machine's pulse) with exactly the fields and body it gives
//                           that operation, the body passing the request body rules (§8)
//   prepare_ok              op >= 1; a prepare checksum
//   commit                  sent by the primary of the view it names; checkpoint_op <= commit
//   get_prepare             (nothing more)
//
// What depends on the replica's state (the view, the log, the pipeline) is the handlers' to
// check; each states it where it acts. Invariant: validate_replica_message() returns none only
// for prepare, prepare_ok, commit and get_prepare.
#pragma once

#include <span>

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
  checkpoint_id_nonzero,
  operation_invalid,     // An operation no primary prepares.
  pulse_fields_invalid,  // A pulse names a client, a request or a body.
  register_fields_invalid,
  request_fields_invalid,  // A state-machine prepare without its client or request number.
  body_invalid,            // The body fails the request body rules of its operation.
  prepare_checksum_zero,
  checkpoint_above_commit,
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
    case MessageError::checkpoint_id_nonzero: return "checkpoint_id_nonzero";
    case MessageError::operation_invalid: return "operation_invalid";
    case MessageError::pulse_fields_invalid: return "pulse_fields_invalid";
    case MessageError::register_fields_invalid: return "register_fields_invalid";
    case MessageError::request_fields_invalid: return "request_fields_invalid";
    case MessageError::body_invalid: return "body_invalid";
    case MessageError::prepare_checksum_zero: return "prepare_checksum_zero";
    case MessageError::checkpoint_above_commit: return "checkpoint_above_commit";
  }
  return "unknown";
}

// Who is validating: the message's claims are checked against the cluster's shape.
struct ValidationContext {
  u8 replica;        // This replica's index.
  u8 replica_count;  // 1..replicas_max.
};

// Whether `command` is one that replicas send each other.
constexpr bool command_is_replica(Command command) {
  return command == Command::prepare || command == Command::prepare_ok ||
         command == Command::commit || command == Command::get_prepare;
}

// The operations a primary prepares, with the fields and body each must carry.
inline MessageError validate_prepare_operation(const Header& header,
                                               std::span<const std::byte> body) {
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
  if (header.replica == context.replica) return MessageError::sender_self;
  const bool from_view_primary = header.view % context.replica_count == header.replica;
  switch (header.command) {
    case Command::prepare: {
      const Header::Prepare& prepare = header.prepare;
      if (!from_view_primary) return MessageError::sender_not_primary;
      if (prepare.op == 0) return MessageError::op_zero;
      if (prepare.commit >= prepare.op) return MessageError::commit_not_below_op;
      if (prepare.timestamp == 0) return MessageError::timestamp_zero;
      if (prepare.checkpoint_id != 0) return MessageError::checkpoint_id_nonzero;
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
      return MessageError::none;
    case Command::get_prepare: return MessageError::none;
    default: break;
  }
  TALLY_ASSERT(false, "command_is_replica() and the switch disagree");
  return MessageError::command_not_replica;
}

}  // namespace tally::vsr
