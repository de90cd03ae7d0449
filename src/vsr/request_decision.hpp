// What the primary does with an incoming request: protocol §5.4, in the real server's order.
//
// A pure function of the request, the committed session table and the limits, so that every
// row of the decision table is tested on its own (request_decision_test.cpp). Whether an
// identical request is already being prepared (step 10) is the replica's to check afterwards:
// it depends on the pipeline, not on committed state.
#pragma once

#include <span>

#include "src/vsr/client_sessions.hpp"
#include "tally/constants.hpp"
#include "tally/header.hpp"
#include "tally/multi_batch.hpp"
#include "tally/operation.hpp"
#include "tally/types.hpp"

namespace tally::vsr {

enum class RequestAction : u8 {
  drop,       // Ignore silently (the client retransmits, or it was a client bug).
  evict,      // Send an eviction with `reason`.
  duplicate,  // Resend the session's stored reply (`session_index`).
  prepare,    // A new request: prepare it.
};

struct RequestDecision {
  RequestAction action;
  EvictionReason reason = EvictionReason::reserved;
  u32 session_index = 0;
};

struct RequestLimits {
  u32 batch_size_limit;  // The body limit announced in register replies.
  u32 view;              // The replica's view.
  u64 commit_min;        // The replica's executed op: sessions registered later it cannot know.
};

inline RequestDecision request_decide(const Header& header, std::span<const std::byte> body,
                                      const ClientSessions& sessions,
                                      const RequestLimits& limits) {
  // The replica's own limits (the header and the body are the client's, checked below).
  TALLY_ASSERT(limits.batch_size_limit > 0 && limits.batch_size_limit <= message_body_size_max);
  auto drop = [] { return RequestDecision{.action = RequestAction::drop}; };
  auto evict = [](EvictionReason reason) {
    return RequestDecision{.action = RequestAction::evict, .reason = reason};
  };
  // 1. The header rules of §4.1.
  if (validate_request(header) != HeaderError::none) return drop();
  const Header::Request& request = header.request;
  // 2, 3. Releases.
  if (header.release < release_client_min) return evict(EvictionReason::client_release_too_low);
  if (header.release > release_server) return evict(EvictionReason::client_release_too_high);
  // 4. Size.
  if (header.size > header_size + limits.batch_size_limit) {
    return evict(EvictionReason::invalid_request_body_size);
  }
  // 5. Operations: known, and one a client may send. The state machine's pulse is the
  // primary's own operation (§5.6), like the VSR ones validate_request() already refused.
  if (!operation_known(request.operation) ||
      request.operation == Operation::state_machine_pulse) {
    return evict(EvictionReason::invalid_request_operation);
  }
  // 6, 7. The body.
  if (request.operation == Operation::register_session) {
    if (header.size != header_size + sizeof(RegisterRequest)) {
      return evict(EvictionReason::invalid_request_body_size);
    }
  } else if (validate_request_body(request.operation, body) != RequestBodyError::none) {
    return evict(EvictionReason::invalid_request_body);
  }
  // 8. A view from the future: this replica is behind; the client will find the primary.
  if (header.view > limits.view) return drop();
  // 9. The session.
  const bool is_register = request.operation == Operation::register_session;
  // What validate_request() established: a client, and the numbers its operation carries.
  TALLY_ASSERT(request.client != 0);
  TALLY_ASSERT(is_register ? request.session == 0 && request.request == 0
                           : request.session != 0 && request.request != 0);
  const std::optional<u32> index = sessions.find(request.client);
  if (index.has_value()) {
    const ClientSession& entry = sessions.entry(*index);
    if (!is_register && entry.session > request.session) {
      return evict(EvictionReason::session_too_low);
    }
    if (!is_register && entry.session < request.session) return drop();
    if (entry.release != header.release) return evict(EvictionReason::session_release_mismatch);
    if (request.request < entry.request) return drop();
    if (request.request == entry.request) {
      TALLY_ASSERT(entry.client == request.client && *index < sessions.capacity());
      if (header.checksum != entry.request_checksum) return drop();
      return RequestDecision{.action = RequestAction::duplicate, .session_index = *index};
    }
    if (request.request != entry.request + 1) return drop();
    if (request.parent != entry.reply.reply.context) return drop();
  } else if (!is_register) {
    // A session opened by a register this replica has not executed yet (a primary deposed
    // without knowing it, or behind): not for it to say the session is gone.
    if (request.session > limits.commit_min) return drop();
    return evict(EvictionReason::no_session);
  }
  // 11. The real server checks the timestamp only now (10 is the caller's).
  if (request.timestamp != 0) return drop();
  return RequestDecision{.action = RequestAction::prepare};
}

}  // namespace tally::vsr
