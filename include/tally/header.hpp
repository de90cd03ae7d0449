// The 256-byte message header of the TigerBeetle 0.17 protocol (§3, §4), shared by client
// messages, replica messages and WAL entries.
//
//     0 checksum               16 checksum_padding     32 checksum_body
//    48 checksum_body_padding  64 nonce_reserved       80 cluster
//    96 size  100 epoch  104 view  108 release  112 protocol  114 command  115 replica
//   116 reserved_frame[12]
//   128 the command-specific part: one of the views in the anonymous union below, up to 256
//
// Invariants (static_asserts at the end): 256 bytes, 16-byte aligned, every offset as in §3.1 and
// §4, no padding anywhere, trivially copyable, so a header is read and written as raw bytes.
//
// Sealing order (§2.2): fill every field, set_checksum_body(), then for a reply
// set_reply_context(), then set_checksum() last, because the header checksum covers bytes
// 16..255, which include checksum_body and context.
//
// Validation returns the first broken rule as a HeaderError; it does not verify checksums (do
// that first, as the receiver must, and §1.3 gives the order). Commands and operations come off
// the network as any u8, so nothing here assumes an enum holds a named value.
#pragma once

#include <cstddef>
#include <cstring>
#include <span>
#include <type_traits>

#include "tally/checksum.hpp"
#include "tally/constants.hpp"
#include "tally/operation.hpp"
#include "tally/records.hpp"
#include "tally/types.hpp"

namespace tally {

// §3.2. Values 12, 21, 22 and 23 are retired: known (a client does not exit on them) but never
// valid. Values above 24 are unknown; a 0.17 client that receives one exits at once.
enum class Command : u8 {
  reserved = 0,
  ping = 1,
  pong = 2,
  ping_client = 3,
  pong_client = 4,
  request = 5,
  prepare = 6,
  prepare_ok = 7,
  reply = 8,
  commit = 9,
  exit_view = 10,
  join_view = 11,
  deprecated_12 = 12,
  get_view = 13,
  get_headers = 14,
  get_prepare = 15,
  get_reply = 16,
  headers = 17,
  eviction = 18,
  get_blocks = 19,
  block = 20,
  deprecated_21 = 21,
  deprecated_22 = 22,
  deprecated_23 = 23,
  view = 24,
};

inline constexpr u8 command_last = 24;

constexpr bool command_known(Command command) {
  return static_cast<u8>(command) <= command_last;
}

constexpr bool command_retired(Command command) {
  return command == Command::deprecated_12 || command == Command::deprecated_21 ||
         command == Command::deprecated_22 || command == Command::deprecated_23;
}

// Whether a message with this command can ever be valid.
constexpr bool command_valid(Command command) {
  return command_known(command) && !command_retired(command) && command != Command::reserved;
}

// §4.5. The client maps 2 and 3 to release errors and every other reason to "evicted".
enum class EvictionReason : u8 {
  reserved = 0,
  no_session = 1,
  client_release_too_low = 2,
  client_release_too_high = 3,
  invalid_request_operation = 4,
  invalid_request_body = 5,
  invalid_request_body_size = 6,
  session_too_low = 7,
  session_release_mismatch = 8,
};

inline constexpr u8 eviction_reason_last = 8;

// The pieces of a checkpoint that get_blocks asks for (replica to replica, state sync).
enum class BlockKind : u8 {
  reserved = 0,
  checkpoint = 1,  // The sender's durable checkpoint reference.
  grid_vsr = 2,    // A manifest or client sessions block (src/vsr/checkpoint_format.hpp).
  grid_state = 3,  // A state machine block (src/state_machine/checkpoint.hpp).
  reply = 4,       // The stored reply of a client sessions entry.
};
inline constexpr u8 block_kind_last = 4;

struct alignas(16) Header {
  // -------------------------------------------------------------------------------------------
  // Command-specific parts (bytes 128..255). Fields of the client commands follow §4; the replica
  // commands' fields are Tally's own and are defined with the replica (reserved until then).

  struct Request {  // §4.1, client -> replica.
    u128 parent;    // The previous reply's context; 0 for register.
    u128 parent_padding;
    u128 client;
    u64 session;    // The register reply's commit; 0 for register.
    u64 timestamp;  // Always 0 from clients; the real server drops requests with it set.
    u32 request;    // 0 for register, then 1, 2, 3, ...
    Operation operation;
    u8 previous_request_latency_padding[3];
    u32 previous_request_latency;  // Microseconds; informational.
    u8 reserved[52];
  };

  struct Reply {  // §4.2, replica -> client.
    u128 request_checksum;  // The answered request's checksum.
    u128 request_checksum_padding;
    u128 context;  // Becomes the client's next parent (reply_context()).
    u128 context_padding;
    u128 client;
    u64 op;
    u64 commit;     // Equal to op; for register, the new session number.
    u64 timestamp;  // The operation's timestamp, at least 1.
    u32 request;
    Operation operation;
    u8 reserved[19];
  };

  struct PingClient {  // §4.3, client -> replica.
    u128 client;
    u64 ping_timestamp_monotonic;
    u64 session;  // 0 before registration completes (since 0.17.6).
    u8 reserved[96];
  };

  struct PongClient {  // §4.4, replica -> client.
    u64 ping_timestamp_monotonic;  // Echo of the ping.
    u8 reserved[120];
  };

  struct Eviction {  // §4.5, replica -> client.
    u128 client;
    u8 reserved[111];
    EvictionReason reason;
  };

  // Replica commands: reserved until the replica defines them. Distinct types so that a view of
  // one command cannot be passed where another is expected.
  struct Ping {
    u8 reserved[128];
  };
  struct Pong {
    u8 reserved[128];
  };
  // One operation of the replicated log, as the primary prepared it (docs/vsr-protocol.md).
  // The body is the request's body. Stored as-is in the WAL: its checksum identifies the op.
  struct Prepare {
    u128 parent;            // The checksum of the prepare at op - 1: the log's hash chain.
    u128 client;            // The requesting client; 0 for the primary's own operations.
    u128 request_checksum;  // The request's checksum; 0 for the primary's own operations.
    u128 checkpoint_id;     // Identifies the checkpoint this op builds on (superblock).
    u64 op;                 // Position in the log; op 0 is the cluster's root prepare.
    u64 commit;             // The primary's commit number when it prepared this op.
    u64 timestamp;          // The operation's timestamp P (protocol §7.1).
    u32 request;            // The client's request number.
    Operation operation;
    u8 reserved[35];
  };
  // A backup's acknowledgement: the prepare is durable in its WAL (docs/vsr-protocol.md).
  struct PrepareOk {
    u128 prepare_checksum;  // The acknowledged prepare's checksum.
    u128 parent;            // Its parent, so a primary can tell a stale chain from its own.
    u64 op;
    u64 commit;             // The backup's commit_min: how far it has executed.
    u64 timestamp;          // The prepare's timestamp.
    u8 reserved[72];
  };
  // The primary's commit number, sent to backups when no prepare carries it (a heartbeat).
  struct Commit {
    u128 commit_checksum;  // The checksum of the prepare at `commit`, to check the chain.
    u64 commit;            // Every op up to this one is committed.
    u64 checkpoint_op;     // The primary's durable checkpoint (repair limits).
    u128 checkpoint_id;    // That checkpoint's identity: backups at the same op compare theirs.
    u8 reserved[80];
  };
  // A vote to leave the frame's view (start_view_change): a quorum of votes starts a view
  // change to the next view (docs/vsr-protocol.md, "View change").
  struct ExitView {
    u8 reserved[128];
  };
  // A replica's log for the view change to the frame's view (do_view_change), sent to that
  // view's primary. Body: the replica's durable view headers, newest first, op - index each; a
  // header that is all zero but for command and op is blank (no header for that op here).
  struct JoinView {
    u64 op;             // The head: the first body header's op.
    u64 commit_min;     // What the sender has executed.
    u64 checkpoint_op;  // The sender's durable checkpoint.
    u32 log_view;       // The view of the log the headers stand for (< the frame's view).
    u16 nack_bitset;    // Bit i: the sender never acknowledged body[i] (no, or not durable).
    u16 present_bitset;  // Bit i: the sender holds body[i]'s prepare intact.
    // 1: a damaged slot may hold an op above `op` that the sender acknowledged; its log's end
    // says nothing about the ops above it (no nacks for them).
    u8 head_uncertain;
    u8 reserved[95];
  };
  // Asks the primary of the frame's view for its start_view (request_start_view).
  struct GetView {
    u128 nonce;  // Echoed by the answer: a restarted replica knows it is not an old one.
    u8 reserved[112];
  };
  // Asks the primary of the frame's view for its log's headers of ops op_min..op_max (at most
  // a pipeline's worth): how a backup behind learns what to fetch (answered with headers).
  struct GetHeaders {
    u64 op_min;
    u64 op_max;
    u8 reserved[112];
  };
  // Asks a peer for the prepare of `op` (answered with the prepare itself).
  struct GetPrepare {
    u128 prepare_checksum;  // The prepare wanted, or 0 for whatever the peer holds at `op`.
    u64 op;
    u8 reserved[104];
  };
  struct GetReply {
    u8 reserved[128];
  };
  // The sender's log's headers, newest first, consecutive and hash-chained (the body).
  struct Headers {
    u8 reserved[128];
  };
  // State sync and block repair (docs/vsr-protocol.md, "State sync"): asks a peer for one
  // piece of a checkpoint, named by kind, index and checksum. Answered with a `block`, or not at
  // all (the peer does not hold it intact, or is busy): the asker asks again, maybe elsewhere.
  struct GetBlocks {
    u128 checksum;  // The piece's checksum (grid block, reply header); 0 for kind checkpoint.
    u64 op_min;     // Kind checkpoint: the lowest checkpoint op of use to the asker.
    u32 index;      // Grid blocks: the address; replies: the client sessions entry.
    BlockKind kind;
    u8 reserved[99];
  };
  // One piece of a checkpoint (the body), as a get_blocks named it: a grid block's used bytes
  // (header and payload), a stored reply (header and body), or, for kind checkpoint, the
  // sender's durable CheckpointReference (op, commit timestamp, state).
  struct Block {
    u128 checksum;  // As asked; for kind checkpoint, checkpoint_id() of the body.
    u64 op;         // Kind checkpoint: the checkpoint's op.
    u32 index;
    BlockKind kind;
    u8 reserved[99];
  };
  // The new primary's log for the frame's view (start_view). Body: its view headers, newest
  // first, consecutive and hash-chained, the oldest at or below commit_max.
  struct View {
    u128 nonce;  // 0 when sent to every backup; a get_view's nonce when it answers one.
    u64 op;             // The view's head: the first body header's op.
    u64 commit_max;     // Every op up to here is committed.
    u64 checkpoint_op;  // The primary's durable checkpoint.
    u8 reserved[88];
  };

  // -------------------------------------------------------------------------------------------
  // The frame (bytes 0..127), common to every command (§3.1).

  u128 checksum;  // checksum(bytes 16..255), computed last.
  u128 checksum_padding;
  u128 checksum_body;  // checksum(body); checksum_empty for an empty body.
  u128 checksum_body_padding;
  u128 nonce_reserved;
  u128 cluster;
  u32 size;  // Header and body: 256..message_size_max.
  u32 epoch;
  u32 view;
  u32 release;  // constants.hpp encoding.
  u16 protocol;
  Command command;
  u8 replica;
  u8 reserved_frame[12];

  // The view to use is the one named by `command`. `command_part` comes first so that `Header{}`
  // zeroes all 128 bytes. The view command's part is `view_command`: `view` is the frame field.
  union {
    u8 command_part[128];
    Request request;
    Reply reply;
    PingClient ping_client;
    PongClient pong_client;
    Eviction eviction;
    Ping ping;
    Pong pong;
    Prepare prepare;
    PrepareOk prepare_ok;
    Commit commit;
    ExitView exit_view;
    JoinView join_view;
    GetView get_view;
    GetHeaders get_headers;
    GetPrepare get_prepare;
    GetReply get_reply;
    Headers headers;
    GetBlocks get_blocks;
    Block block;
    View view_command;
  };
};

// ---------------------------------------------------------------------------------------------
// Bytes and checksums.

inline std::span<const std::byte, header_size> header_bytes(const Header& header) {
  return std::as_bytes(std::span<const Header, 1>(&header, 1));
}

inline std::span<std::byte, header_size> header_bytes_writable(Header& header) {
  return std::as_writable_bytes(std::span<Header, 1>(&header, 1));
}

// Copies a header out of a receive buffer, which need not be aligned.
inline Header header_read(std::span<const std::byte, header_size> bytes) {
  Header header;
  std::memcpy(&header, bytes.data(), header_size);
  return header;
}

// The value `checksum` must hold: the checksum of every header byte after the field itself.
inline u128 header_checksum(const Header& header) {
  return tally::checksum(header_bytes(header).subspan<sizeof(u128)>());
}

inline void set_checksum_body(Header& header, std::span<const std::byte> body) {
  header.checksum_body = tally::checksum(body);
}

inline void set_checksum_body(Header& header, std::span<const u8> body) {
  set_checksum_body(header, std::as_bytes(body));
}

// Call after every other field, including checksum_body and a reply's context, is final.
inline void set_checksum(Header& header) { header.checksum = header_checksum(header); }

inline bool checksum_valid(const Header& header) {
  return header.checksum == header_checksum(header);
}

// False also when `size` does not describe this body, so a body cut short never passes.
inline bool checksum_body_valid(const Header& header, std::span<const std::byte> body) {
  if (header.size < header_size || header.size - header_size != body.size()) return false;
  return header.checksum_body == tally::checksum(body);
}

inline bool checksum_body_valid(const Header& header, std::span<const u8> body) {
  return checksum_body_valid(header, std::as_bytes(body));
}

// The reply context of §4.2, as TigerBeetle derives it: the header checksum computed with
// `context` zero (and checksum_body already final). Because it is a checksum of the whole reply
// header, the chain of requests and replies is a hash chain, and it does not depend on `checksum`.
inline u128 reply_context(const Header& reply) {
  Header copy = reply;
  copy.reply.context = 0;
  return header_checksum(copy);
}

// Call after set_checksum_body() and before set_checksum().
inline void set_reply_context(Header& reply) { reply.reply.context = reply_context(reply); }

// ---------------------------------------------------------------------------------------------
// Validation.

enum class HeaderError : u8 {
  none = 0,
  // Frame (§3.3), checked for every command.
  checksum_padding_nonzero,
  checksum_body_padding_nonzero,
  nonce_reserved_nonzero,
  size_below_header,
  size_above_message_max,
  epoch_nonzero,
  reserved_frame_nonzero,
  protocol_invalid,
  command_reserved,
  command_retired,
  command_unknown,
  // Rules shared by several commands.
  command_mismatch,  // A per-command validator was given another command's header.
  size_invalid,
  checksum_body_not_empty,
  release_zero,
  view_nonzero,
  replica_nonzero,
  replica_above_max,
  client_zero,
  reserved_nonzero,
  // Request (§4.1).
  parent_padding_nonzero,
  operation_reserved,
  operation_root,
  operation_internal,      // reconfigure, pulse, upgrade, noop: never taken from the network.
  operation_vsr_reserved,  // 7..127.
  parent_nonzero,
  session_nonzero,
  session_zero,
  request_nonzero,
  request_zero,
  latency_padding_nonzero,
  // Reply (§4.2).
  request_checksum_padding_nonzero,
  context_padding_nonzero,
  op_not_commit,
  commit_zero,
  timestamp_zero,
  // Eviction (§4.5).
  reason_invalid,
};

constexpr const char* name(HeaderError error) {
  switch (error) {
    case HeaderError::none: return "none";
    case HeaderError::checksum_padding_nonzero: return "checksum_padding_nonzero";
    case HeaderError::checksum_body_padding_nonzero: return "checksum_body_padding_nonzero";
    case HeaderError::nonce_reserved_nonzero: return "nonce_reserved_nonzero";
    case HeaderError::size_below_header: return "size_below_header";
    case HeaderError::size_above_message_max: return "size_above_message_max";
    case HeaderError::epoch_nonzero: return "epoch_nonzero";
    case HeaderError::reserved_frame_nonzero: return "reserved_frame_nonzero";
    case HeaderError::protocol_invalid: return "protocol_invalid";
    case HeaderError::command_reserved: return "command_reserved";
    case HeaderError::command_retired: return "command_retired";
    case HeaderError::command_unknown: return "command_unknown";
    case HeaderError::command_mismatch: return "command_mismatch";
    case HeaderError::size_invalid: return "size_invalid";
    case HeaderError::checksum_body_not_empty: return "checksum_body_not_empty";
    case HeaderError::release_zero: return "release_zero";
    case HeaderError::view_nonzero: return "view_nonzero";
    case HeaderError::replica_nonzero: return "replica_nonzero";
    case HeaderError::replica_above_max: return "replica_above_max";
    case HeaderError::client_zero: return "client_zero";
    case HeaderError::reserved_nonzero: return "reserved_nonzero";
    case HeaderError::parent_padding_nonzero: return "parent_padding_nonzero";
    case HeaderError::operation_reserved: return "operation_reserved";
    case HeaderError::operation_root: return "operation_root";
    case HeaderError::operation_internal: return "operation_internal";
    case HeaderError::operation_vsr_reserved: return "operation_vsr_reserved";
    case HeaderError::parent_nonzero: return "parent_nonzero";
    case HeaderError::session_nonzero: return "session_nonzero";
    case HeaderError::session_zero: return "session_zero";
    case HeaderError::request_nonzero: return "request_nonzero";
    case HeaderError::request_zero: return "request_zero";
    case HeaderError::latency_padding_nonzero: return "latency_padding_nonzero";
    case HeaderError::request_checksum_padding_nonzero: return "request_checksum_padding_nonzero";
    case HeaderError::context_padding_nonzero: return "context_padding_nonzero";
    case HeaderError::op_not_commit: return "op_not_commit";
    case HeaderError::commit_zero: return "commit_zero";
    case HeaderError::timestamp_zero: return "timestamp_zero";
    case HeaderError::reason_invalid: return "reason_invalid";
  }
  return "unknown";
}

namespace header_detail {

inline bool zeroed(const u8* bytes, std::size_t size) {
  for (std::size_t index = 0; index < size; index++) {
    if (bytes[index] != 0) return false;
  }
  return true;
}

template <std::size_t size>
bool zeroed(const u8 (&bytes)[size]) {
  return zeroed(bytes, size);
}

}  // namespace header_detail

// §3.3: the rules every message obeys, whatever its command.
inline HeaderError validate_frame(const Header& header) {
  using header_detail::zeroed;
  if (header.checksum_padding != 0) return HeaderError::checksum_padding_nonzero;
  if (header.checksum_body_padding != 0) return HeaderError::checksum_body_padding_nonzero;
  if (header.nonce_reserved != 0) return HeaderError::nonce_reserved_nonzero;
  if (header.size < header_size) return HeaderError::size_below_header;
  if (header.size > message_size_max) return HeaderError::size_above_message_max;
  if (header.epoch != 0) return HeaderError::epoch_nonzero;
  if (!zeroed(header.reserved_frame)) return HeaderError::reserved_frame_nonzero;
  if (header.protocol != protocol_version) return HeaderError::protocol_invalid;
  if (!command_known(header.command)) return HeaderError::command_unknown;
  if (header.command == Command::reserved) return HeaderError::command_reserved;
  if (command_retired(header.command)) return HeaderError::command_retired;
  return HeaderError::none;
}

// §4.1, in TigerBeetle's order. Operations 148..255 pass: they are answered with eviction reason
// 4 (§5.4), which needs a valid header to address the client.
inline HeaderError validate_request(const Header& header) {
  using header_detail::zeroed;
  if (header.command != Command::request) return HeaderError::command_mismatch;
  const Header::Request& request = header.request;
  if (header.release == 0) return HeaderError::release_zero;
  if (request.parent_padding != 0) return HeaderError::parent_padding_nonzero;
  const u8 operation = static_cast<u8>(request.operation);
  if (request.operation == Operation::reserved) return HeaderError::operation_reserved;
  if (request.operation == Operation::root) return HeaderError::operation_root;
  if (request.operation == Operation::register_session) {
    if (header.replica != 0) return HeaderError::replica_nonzero;
    if (request.client == 0) return HeaderError::client_zero;
    if (request.parent != 0) return HeaderError::parent_nonzero;
    if (request.session != 0) return HeaderError::session_nonzero;
    if (request.request != 0) return HeaderError::request_nonzero;
    // A body-less register comes from clients before 0.16; it is valid so that the server can
    // answer it with an eviction rather than silence.
    if (header.size != header_size && header.size != header_size + sizeof(RegisterRequest)) {
      return HeaderError::size_invalid;
    }
  } else if (operation <= operation_vsr_last) {
    // Tally's replicas create these themselves; a client never sends them (§4.1).
    return HeaderError::operation_internal;
  } else if (operation < vsr_operations_reserved) {
    return HeaderError::operation_vsr_reserved;
  } else {
    if (header.replica != 0) return HeaderError::replica_nonzero;
    if (request.client == 0) return HeaderError::client_zero;
    if (request.session == 0) return HeaderError::session_zero;
    if (request.request == 0) return HeaderError::request_zero;
  }
  if (!zeroed(request.previous_request_latency_padding)) {
    return HeaderError::latency_padding_nonzero;
  }
  if (!zeroed(request.reserved)) return HeaderError::reserved_nonzero;
  return HeaderError::none;
}

// §4.2: what the client checks before it accepts a reply (it ignores a reply that fails).
inline HeaderError validate_reply(const Header& header) {
  using header_detail::zeroed;
  if (header.command != Command::reply) return HeaderError::command_mismatch;
  const Header::Reply& reply = header.reply;
  if (header.release == 0) return HeaderError::release_zero;
  if (reply.client == 0) return HeaderError::client_zero;
  if (reply.request_checksum_padding != 0) return HeaderError::request_checksum_padding_nonzero;
  if (reply.context_padding != 0) return HeaderError::context_padding_nonzero;
  if (reply.op != reply.commit) return HeaderError::op_not_commit;
  if (reply.timestamp == 0) return HeaderError::timestamp_zero;
  if (reply.commit == 0) return HeaderError::commit_zero;
  if (reply.operation == Operation::register_session) {
    if (header.size != header_size + sizeof(RegisterResult)) return HeaderError::size_invalid;
    if (reply.request != 0) return HeaderError::request_nonzero;
  } else {
    if (reply.request == 0) return HeaderError::request_zero;
  }
  if (!zeroed(reply.reserved)) return HeaderError::reserved_nonzero;
  return HeaderError::none;
}

// §4.3.
inline HeaderError validate_ping_client(const Header& header) {
  if (header.command != Command::ping_client) return HeaderError::command_mismatch;
  if (header.size != header_size) return HeaderError::size_invalid;
  if (header.checksum_body != checksum_empty) return HeaderError::checksum_body_not_empty;
  if (header.release == 0) return HeaderError::release_zero;
  if (header.replica != 0) return HeaderError::replica_nonzero;
  if (header.view != 0) return HeaderError::view_nonzero;
  if (header.ping_client.client == 0) return HeaderError::client_zero;
  if (!header_detail::zeroed(header.ping_client.reserved)) return HeaderError::reserved_nonzero;
  return HeaderError::none;
}

// §4.4. The replica bound is the client's, not TigerBeetle's validator's: the client indexes a
// replicas_max-entry array with it.
inline HeaderError validate_pong_client(const Header& header) {
  if (header.command != Command::pong_client) return HeaderError::command_mismatch;
  if (header.size != header_size) return HeaderError::size_invalid;
  if (header.checksum_body != checksum_empty) return HeaderError::checksum_body_not_empty;
  if (header.release == 0) return HeaderError::release_zero;
  if (header.replica >= replicas_max) return HeaderError::replica_above_max;
  if (!header_detail::zeroed(header.pong_client.reserved)) return HeaderError::reserved_nonzero;
  return HeaderError::none;
}

// §4.5.
inline HeaderError validate_eviction(const Header& header) {
  if (header.command != Command::eviction) return HeaderError::command_mismatch;
  if (header.size != header_size) return HeaderError::size_invalid;
  if (header.checksum_body != checksum_empty) return HeaderError::checksum_body_not_empty;
  if (header.release == 0) return HeaderError::release_zero;
  if (header.eviction.client == 0) return HeaderError::client_zero;
  if (!header_detail::zeroed(header.eviction.reserved)) return HeaderError::reserved_nonzero;
  const u8 reason = static_cast<u8>(header.eviction.reason);
  if (reason == 0 || reason > eviction_reason_last) return HeaderError::reason_invalid;
  return HeaderError::none;
}

// The frame rules, then the command's own. Replica commands without defined fields yet must have
// an all-zero part; the replica replaces this rule as it defines them.
inline HeaderError validate_header(const Header& header) {
  const HeaderError frame = validate_frame(header);
  if (frame != HeaderError::none) return frame;
  switch (header.command) {
    case Command::request: return validate_request(header);
    case Command::reply: return validate_reply(header);
    case Command::ping_client: return validate_ping_client(header);
    case Command::pong_client: return validate_pong_client(header);
    case Command::eviction: return validate_eviction(header);
    case Command::prepare:
      if (!header_detail::zeroed(header.prepare.reserved)) return HeaderError::reserved_nonzero;
      return HeaderError::none;
    case Command::prepare_ok:
      if (header.size != header_size) return HeaderError::size_invalid;
      if (!header_detail::zeroed(header.prepare_ok.reserved)) return HeaderError::reserved_nonzero;
      return HeaderError::none;
    case Command::commit:
      if (header.size != header_size) return HeaderError::size_invalid;
      if (!header_detail::zeroed(header.commit.reserved)) return HeaderError::reserved_nonzero;
      return HeaderError::none;
    case Command::get_prepare:
      if (header.size != header_size) return HeaderError::size_invalid;
      if (!header_detail::zeroed(header.get_prepare.reserved)) return HeaderError::reserved_nonzero;
      return HeaderError::none;
    case Command::exit_view:
      if (header.size != header_size) return HeaderError::size_invalid;
      if (!header_detail::zeroed(header.exit_view.reserved)) return HeaderError::reserved_nonzero;
      return HeaderError::none;
    case Command::join_view:
      if (!header_detail::zeroed(header.join_view.reserved)) return HeaderError::reserved_nonzero;
      return HeaderError::none;
    case Command::get_view:
      if (header.size != header_size) return HeaderError::size_invalid;
      if (!header_detail::zeroed(header.get_view.reserved)) return HeaderError::reserved_nonzero;
      return HeaderError::none;
    case Command::view:
      if (!header_detail::zeroed(header.view_command.reserved)) {
        return HeaderError::reserved_nonzero;
      }
      return HeaderError::none;
    case Command::get_headers:
      if (header.size != header_size) return HeaderError::size_invalid;
      if (!header_detail::zeroed(header.get_headers.reserved)) {
        return HeaderError::reserved_nonzero;
      }
      return HeaderError::none;
    case Command::ping:
    case Command::pong:
    case Command::get_reply:
    case Command::headers:
      if (!header_detail::zeroed(header.command_part)) return HeaderError::reserved_nonzero;
      return HeaderError::none;
    case Command::get_blocks:
      if (header.size != header_size) return HeaderError::size_invalid;
      if (!header_detail::zeroed(header.get_blocks.reserved)) return HeaderError::reserved_nonzero;
      return HeaderError::none;
    case Command::block:
      if (!header_detail::zeroed(header.block.reserved)) return HeaderError::reserved_nonzero;
      return HeaderError::none;
    case Command::reserved:
    case Command::deprecated_12:
    case Command::deprecated_21:
    case Command::deprecated_22:
    case Command::deprecated_23: break;  // validate_frame() has rejected these.
  }
  return HeaderError::command_unknown;
}

// ---------------------------------------------------------------------------------------------
// Names.

constexpr const char* name(Command command) {
  switch (command) {
    case Command::reserved: return "reserved";
    case Command::ping: return "ping";
    case Command::pong: return "pong";
    case Command::ping_client: return "ping_client";
    case Command::pong_client: return "pong_client";
    case Command::request: return "request";
    case Command::prepare: return "prepare";
    case Command::prepare_ok: return "prepare_ok";
    case Command::reply: return "reply";
    case Command::commit: return "commit";
    case Command::exit_view: return "exit_view";
    case Command::join_view: return "join_view";
    case Command::deprecated_12: return "deprecated_12";
    case Command::get_view: return "get_view";
    case Command::get_headers: return "get_headers";
    case Command::get_prepare: return "get_prepare";
    case Command::get_reply: return "get_reply";
    case Command::headers: return "headers";
    case Command::eviction: return "eviction";
    case Command::get_blocks: return "get_blocks";
    case Command::block: return "block";
    case Command::deprecated_21: return "deprecated_21";
    case Command::deprecated_22: return "deprecated_22";
    case Command::deprecated_23: return "deprecated_23";
    case Command::view: return "view";
  }
  return "unknown";
}

constexpr const char* name(EvictionReason reason) {
  switch (reason) {
    case EvictionReason::reserved: return "reserved";
    case EvictionReason::no_session: return "no_session";
    case EvictionReason::client_release_too_low: return "client_release_too_low";
    case EvictionReason::client_release_too_high: return "client_release_too_high";
    case EvictionReason::invalid_request_operation: return "invalid_request_operation";
    case EvictionReason::invalid_request_body: return "invalid_request_body";
    case EvictionReason::invalid_request_body_size: return "invalid_request_body_size";
    case EvictionReason::session_too_low: return "session_too_low";
    case EvictionReason::session_release_mismatch: return "session_release_mismatch";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------
// Layout checks.

static_assert(sizeof(Header) == header_size);
static_assert(alignof(Header) == 16);
static_assert(std::is_trivially_copyable_v<Header>);
static_assert(std::is_standard_layout_v<Header>);
// No padding in the frame or in any view: every byte is a field, so checksums never cover
// uninitialised bytes.
static_assert(std::has_unique_object_representations_v<Header>);

#define TALLY_HEADER_PART_(part)                                                               \
  static_assert(sizeof(Header::part) == 128 &&                                                 \
                std::has_unique_object_representations_v<Header::part>)
TALLY_HEADER_PART_(Request);
TALLY_HEADER_PART_(Reply);
TALLY_HEADER_PART_(PingClient);
TALLY_HEADER_PART_(PongClient);
TALLY_HEADER_PART_(Eviction);
TALLY_HEADER_PART_(Ping);
TALLY_HEADER_PART_(Pong);
TALLY_HEADER_PART_(Prepare);
TALLY_HEADER_PART_(PrepareOk);
TALLY_HEADER_PART_(Commit);
TALLY_HEADER_PART_(ExitView);
TALLY_HEADER_PART_(JoinView);
TALLY_HEADER_PART_(GetView);
TALLY_HEADER_PART_(GetHeaders);
TALLY_HEADER_PART_(GetPrepare);
TALLY_HEADER_PART_(GetReply);
TALLY_HEADER_PART_(Headers);
TALLY_HEADER_PART_(GetBlocks);
TALLY_HEADER_PART_(Block);
TALLY_HEADER_PART_(View);
#undef TALLY_HEADER_PART_

#define TALLY_HEADER_FIELD_(field, offset) static_assert(offsetof(Header, field) == (offset))
// Frame, §3.1.
TALLY_HEADER_FIELD_(checksum, 0);
TALLY_HEADER_FIELD_(checksum_padding, 16);
TALLY_HEADER_FIELD_(checksum_body, 32);
TALLY_HEADER_FIELD_(checksum_body_padding, 48);
TALLY_HEADER_FIELD_(nonce_reserved, 64);
TALLY_HEADER_FIELD_(cluster, 80);
TALLY_HEADER_FIELD_(size, 96);
TALLY_HEADER_FIELD_(epoch, 100);
TALLY_HEADER_FIELD_(view, 104);
TALLY_HEADER_FIELD_(release, 108);
TALLY_HEADER_FIELD_(protocol, 112);
TALLY_HEADER_FIELD_(command, 114);
TALLY_HEADER_FIELD_(replica, 115);
TALLY_HEADER_FIELD_(reserved_frame, 116);
TALLY_HEADER_FIELD_(command_part, 128);
// Request, §4.1.
TALLY_HEADER_FIELD_(request.parent, 128);
TALLY_HEADER_FIELD_(request.parent_padding, 144);
TALLY_HEADER_FIELD_(request.client, 160);
TALLY_HEADER_FIELD_(request.session, 176);
TALLY_HEADER_FIELD_(request.timestamp, 184);
TALLY_HEADER_FIELD_(request.request, 192);
TALLY_HEADER_FIELD_(request.operation, 196);
TALLY_HEADER_FIELD_(request.previous_request_latency_padding, 197);
TALLY_HEADER_FIELD_(request.previous_request_latency, 200);
TALLY_HEADER_FIELD_(request.reserved, 204);
// Reply, §4.2.
TALLY_HEADER_FIELD_(reply.request_checksum, 128);
TALLY_HEADER_FIELD_(reply.request_checksum_padding, 144);
TALLY_HEADER_FIELD_(reply.context, 160);
TALLY_HEADER_FIELD_(reply.context_padding, 176);
TALLY_HEADER_FIELD_(reply.client, 192);
TALLY_HEADER_FIELD_(reply.op, 208);
TALLY_HEADER_FIELD_(reply.commit, 216);
TALLY_HEADER_FIELD_(reply.timestamp, 224);
TALLY_HEADER_FIELD_(reply.request, 232);
TALLY_HEADER_FIELD_(reply.operation, 236);
TALLY_HEADER_FIELD_(reply.reserved, 237);
// ping_client, §4.3.
TALLY_HEADER_FIELD_(ping_client.client, 128);
TALLY_HEADER_FIELD_(ping_client.ping_timestamp_monotonic, 144);
TALLY_HEADER_FIELD_(ping_client.session, 152);
TALLY_HEADER_FIELD_(ping_client.reserved, 160);
// pong_client, §4.4.
TALLY_HEADER_FIELD_(pong_client.ping_timestamp_monotonic, 128);
TALLY_HEADER_FIELD_(pong_client.reserved, 136);
// eviction, §4.5.
TALLY_HEADER_FIELD_(eviction.client, 128);
TALLY_HEADER_FIELD_(eviction.reserved, 144);
TALLY_HEADER_FIELD_(eviction.reason, 255);
// Replica commands.
TALLY_HEADER_FIELD_(ping.reserved, 128);
TALLY_HEADER_FIELD_(pong.reserved, 128);
TALLY_HEADER_FIELD_(prepare.parent, 128);
TALLY_HEADER_FIELD_(prepare.client, 144);
TALLY_HEADER_FIELD_(prepare.request_checksum, 160);
TALLY_HEADER_FIELD_(prepare.checkpoint_id, 176);
TALLY_HEADER_FIELD_(prepare.op, 192);
TALLY_HEADER_FIELD_(prepare.commit, 200);
TALLY_HEADER_FIELD_(prepare.timestamp, 208);
TALLY_HEADER_FIELD_(prepare.request, 216);
TALLY_HEADER_FIELD_(prepare.operation, 220);
TALLY_HEADER_FIELD_(prepare.reserved, 221);
TALLY_HEADER_FIELD_(prepare_ok.prepare_checksum, 128);
TALLY_HEADER_FIELD_(prepare_ok.parent, 144);
TALLY_HEADER_FIELD_(prepare_ok.op, 160);
TALLY_HEADER_FIELD_(prepare_ok.commit, 168);
TALLY_HEADER_FIELD_(prepare_ok.timestamp, 176);
TALLY_HEADER_FIELD_(prepare_ok.reserved, 184);
TALLY_HEADER_FIELD_(commit.commit_checksum, 128);
TALLY_HEADER_FIELD_(commit.commit, 144);
TALLY_HEADER_FIELD_(commit.checkpoint_op, 152);
TALLY_HEADER_FIELD_(commit.checkpoint_id, 160);
TALLY_HEADER_FIELD_(commit.reserved, 176);
TALLY_HEADER_FIELD_(exit_view.reserved, 128);
TALLY_HEADER_FIELD_(join_view.op, 128);
TALLY_HEADER_FIELD_(join_view.commit_min, 136);
TALLY_HEADER_FIELD_(join_view.checkpoint_op, 144);
TALLY_HEADER_FIELD_(join_view.log_view, 152);
TALLY_HEADER_FIELD_(join_view.nack_bitset, 156);
TALLY_HEADER_FIELD_(join_view.present_bitset, 158);
TALLY_HEADER_FIELD_(join_view.head_uncertain, 160);
TALLY_HEADER_FIELD_(join_view.reserved, 161);
TALLY_HEADER_FIELD_(get_headers.op_min, 128);
TALLY_HEADER_FIELD_(get_headers.op_max, 136);
TALLY_HEADER_FIELD_(get_headers.reserved, 144);
TALLY_HEADER_FIELD_(get_view.nonce, 128);
TALLY_HEADER_FIELD_(get_view.reserved, 144);
TALLY_HEADER_FIELD_(view_command.nonce, 128);
TALLY_HEADER_FIELD_(view_command.op, 144);
TALLY_HEADER_FIELD_(view_command.commit_max, 152);
TALLY_HEADER_FIELD_(view_command.checkpoint_op, 160);
TALLY_HEADER_FIELD_(view_command.reserved, 168);
TALLY_HEADER_FIELD_(get_prepare.prepare_checksum, 128);
TALLY_HEADER_FIELD_(get_prepare.op, 144);
TALLY_HEADER_FIELD_(get_prepare.reserved, 152);
TALLY_HEADER_FIELD_(get_reply.reserved, 128);
TALLY_HEADER_FIELD_(headers.reserved, 128);
TALLY_HEADER_FIELD_(get_blocks.checksum, 128);
TALLY_HEADER_FIELD_(get_blocks.op_min, 144);
TALLY_HEADER_FIELD_(get_blocks.index, 152);
TALLY_HEADER_FIELD_(get_blocks.kind, 156);
TALLY_HEADER_FIELD_(get_blocks.reserved, 157);
TALLY_HEADER_FIELD_(block.checksum, 128);
TALLY_HEADER_FIELD_(block.op, 144);
TALLY_HEADER_FIELD_(block.index, 152);
TALLY_HEADER_FIELD_(block.kind, 156);
TALLY_HEADER_FIELD_(block.reserved, 157);
#undef TALLY_HEADER_FIELD_

}  // namespace tally
