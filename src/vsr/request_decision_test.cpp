// Every row of the primary's request decision table (protocol §5.4) and the session table's
// eviction rule (§5.5), on their own.
#include <cstring>
#include <vector>

#include "doctest/doctest.h"
#include "src/vsr/client_sessions.hpp"
#include "src/vsr/request_decision.hpp"
#include "tally/header.hpp"
#include "tally/multi_batch.hpp"

namespace {

using namespace tally;
using vsr::ClientSessions;
using vsr::RequestAction;
using vsr::RequestDecision;

constexpr u128 client = 77;
constexpr vsr::RequestLimits limits{
    .batch_size_limit = message_body_size_max, .view = 0, .commit_min = 1'000'000};

struct Request {
  Header header{};
  std::vector<std::byte> body;
};

Request register_make() {
  Request request;
  request.header.size = header_size + sizeof(RegisterRequest);
  request.header.release = release_client_node;
  request.header.command = Command::request;
  request.header.request.client = client;
  request.header.request.operation = Operation::register_session;
  request.body.resize(sizeof(RegisterRequest));
  set_checksum_body(request.header, request.body);
  set_checksum(request.header);
  return request;
}

// A lookup_accounts request (one id) in the session `session`, numbered `number`.
Request lookup_make(u64 session, u32 number, u128 parent) {
  Request request;
  request.body.resize(message_body_size_max);
  MultiBatchEncoder encoder(request.body, sizeof(u128));
  REQUIRE(encoder.batch_begin() == MultiBatchEncodeError::none);
  const u128 id = 1;
  std::memcpy(encoder.writable().data(), &id, sizeof(id));
  REQUIRE(encoder.commit(1) == MultiBatchEncodeError::none);
  REQUIRE(encoder.finish() == MultiBatchEncodeError::none);
  request.body.resize(encoder.size());
  request.header.size = header_size + static_cast<u32>(request.body.size());
  request.header.release = release_client_node;
  request.header.command = Command::request;
  request.header.request.client = client;
  request.header.request.session = session;
  request.header.request.request = number;
  request.header.request.parent = parent;
  request.header.request.operation = Operation::lookup_accounts;
  set_checksum_body(request.header, request.body);
  set_checksum(request.header);
  return request;
}

RequestDecision decide(const Request& request, const ClientSessions& sessions) {
  return vsr::request_decide(request.header, request.body, sessions, limits);
}

// Records a committed reply for the entry, as the replica does: returns its context.
u128 reply_commit(ClientSessions& sessions, u32 index, const Request& request, u64 op) {
  Header reply{};
  reply.size = header_size;
  reply.release = request.header.release;
  reply.command = Command::reply;
  reply.reply.client = client;
  reply.reply.request_checksum = request.header.checksum;
  reply.reply.op = op;
  reply.reply.commit = op;
  reply.reply.timestamp = op;
  reply.reply.request = request.header.request.request;
  reply.reply.operation = request.header.request.operation;
  reply.checksum_body = checksum_empty;
  set_reply_context(reply);
  set_checksum(reply);
  std::memcpy(sessions.reply_buffer(index).data(), &reply, header_size);
  sessions.reply_record(index, request.header.request.request, request.header.checksum, op);
  return reply.reply.context;
}

// A session opened by a register at op 5, its first request committed at op 6.
struct Session {
  ClientSessions sessions;
  Request first;
  u128 context = 0;

  Session() {
    sessions.init(4, message_size_max);
    const Request registered = register_make();
    const u32 index = sessions.open(client, 5, release_client_node, registered.header.checksum);
    const u128 register_context = reply_commit(sessions, index, registered, 5);
    first = lookup_make(5, 1, register_context);
    context = reply_commit(sessions, index, first, 6);
  }
};

}  // namespace

TEST_CASE("request decision: a new client registers and an unknown one is evicted") {
  ClientSessions sessions;
  sessions.init(4, message_size_max);
  CHECK(decide(register_make(), sessions).action == RequestAction::prepare);
  const RequestDecision decision = decide(lookup_make(5, 1, 0), sessions);
  CHECK(decision.action == RequestAction::evict);
  CHECK(decision.reason == EvictionReason::no_session);
  // A replica that has not executed op 5 (the register that opened session 5) cannot know the
  // session: it drops the request rather than evict a client another view's primary serves.
  const Request request = lookup_make(5, 1, 0);
  const vsr::RequestLimits behind{
      .batch_size_limit = message_body_size_max, .view = 0, .commit_min = 4};
  CHECK(vsr::request_decide(request.header, request.body, sessions, behind).action ==
        RequestAction::drop);
}

TEST_CASE("request decision: header rules drop and releases evict") {
  ClientSessions sessions;
  sessions.init(4, message_size_max);
  Request invalid = register_make();
  invalid.header.request.parent_padding = 1;  // §4.1: dropped before anything else.
  CHECK(decide(invalid, sessions).action == RequestAction::drop);

  Request old = register_make();
  old.header.release = release_client_min - 1;
  CHECK(decide(old, sessions).reason == EvictionReason::client_release_too_low);
  Request newer = register_make();
  newer.header.release = release_server + 1;
  CHECK(decide(newer, sessions).reason == EvictionReason::client_release_too_high);
}

TEST_CASE("request decision: size operation and body rules evict with their reasons") {
  Session session;
  Request big = lookup_make(5, 2, session.context);
  // The body is 32 bytes.
  const vsr::RequestLimits small{.batch_size_limit = 16, .view = 0, .commit_min = 1'000'000};
  CHECK(vsr::request_decide(big.header, big.body, session.sessions, small).reason ==
        EvictionReason::invalid_request_body_size);

  Request pulse = lookup_make(5, 2, session.context);
  pulse.header.request.operation = Operation::state_machine_pulse;
  CHECK(decide(pulse, session.sessions).reason == EvictionReason::invalid_request_operation);
  Request unknown = lookup_make(5, 2, session.context);
  unknown.header.request.operation = static_cast<Operation>(200);
  CHECK(decide(unknown, session.sessions).reason == EvictionReason::invalid_request_operation);

  Request garbage = lookup_make(5, 2, session.context);
  garbage.body.resize(garbage.body.size() - 1);  // No longer a whole multi-batch body.
  garbage.header.size -= 1;
  CHECK(decide(garbage, session.sessions).reason == EvictionReason::invalid_request_body);

  Request bodyless = register_make();
  bodyless.header.size = header_size;
  bodyless.body.clear();
  CHECK(decide(bodyless, session.sessions).reason == EvictionReason::invalid_request_body_size);
}

TEST_CASE("request decision: the session rules of a known client") {
  Session session;
  // The next request in the chain is prepared.
  CHECK(decide(lookup_make(5, 2, session.context), session.sessions).action ==
        RequestAction::prepare);
  // A wrong parent, a skipped number, an old number: dropped.
  CHECK(decide(lookup_make(5, 2, session.context + 1), session.sessions).action ==
        RequestAction::drop);
  CHECK(decide(lookup_make(5, 3, session.context), session.sessions).action ==
        RequestAction::drop);
  CHECK(decide(lookup_make(5, 0, 0), session.sessions).action == RequestAction::drop);
  // The same request again: the stored reply. Same number, other bytes: dropped.
  const RequestDecision duplicate = decide(session.first, session.sessions);
  CHECK(duplicate.action == RequestAction::duplicate);
  Request changed = session.first;
  changed.header.request.previous_request_latency = 1;
  set_checksum(changed.header);
  CHECK(decide(changed, session.sessions).action == RequestAction::drop);
  // Sessions: an older one is evicted, a newer one dropped.
  CHECK(decide(lookup_make(4, 2, session.context), session.sessions).reason ==
        EvictionReason::session_too_low);
  CHECK(decide(lookup_make(6, 2, session.context), session.sessions).action ==
        RequestAction::drop);
  // Another release than the session's.
  Request other_release = lookup_make(5, 2, session.context);
  other_release.header.release = release_client_min;
  set_checksum(other_release.header);
  CHECK(decide(other_release, session.sessions).reason ==
        EvictionReason::session_release_mismatch);
  // A non-zero timestamp is checked last: dropped.
  Request stamped = lookup_make(5, 2, session.context);
  stamped.header.request.timestamp = 1;
  set_checksum(stamped.header);
  CHECK(decide(stamped, session.sessions).action == RequestAction::drop);
  // A view from the future: this replica is behind.
  Request ahead = lookup_make(5, 2, session.context);
  ahead.header.view = 1;
  set_checksum(ahead.header);
  CHECK(decide(ahead, session.sessions).action == RequestAction::drop);
}

TEST_CASE("client sessions: a full table evicts the least recently active session") {
  ClientSessions sessions;
  sessions.init(3, message_size_max);
  for (u128 id = 1; id <= 3; id += 1) {
    sessions.open(id, static_cast<u64>(id), release_client_node, 0);
  }
  // Session 1 replies again at op 10: session 2 is now the least recently active.
  const u32 first = *sessions.find(1);
  Header reply{};
  reply.size = header_size;
  reply.command = Command::reply;
  std::memcpy(sessions.reply_buffer(first).data(), &reply, header_size);
  sessions.reply_record(first, 1, 0, 10);
  const u32 index = sessions.open(4, 11, release_client_node, 0);
  CHECK(sessions.entry(index).client == 4);
  CHECK_FALSE(sessions.find(2).has_value());
  CHECK(sessions.find(1).has_value());
  CHECK(sessions.find(3).has_value());
  CHECK(sessions.count() == 3);
}
