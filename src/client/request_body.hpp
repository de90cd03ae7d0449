// Request bodies of the typed client calls: events (or one filter) per batch, in the multi-batch
// encoding of §8.2, with the limits a client enforces before anything is sent (§8.5).
//
// Limits, as TigerBeetle's clients apply them (their ERR_TOO_MUCH_DATA is ClientError::
// batch_too_large here): a batch of more than event_max events (8189 for creates and lookups),
// a query filter whose limit is above result_max (8189), a body larger than the buffer. A query
// batch is exactly one filter. Encoding writes only inside the caller's buffer and never traps
// on caller input; a record type that does not match the operation is a programmer error.
#pragma once

#include <cstddef>
#include <cstring>
#include <span>

#include "src/base/assert.hpp"
#include "tally/client.hpp"
#include "tally/multi_batch.hpp"
#include "tally/operation.hpp"
#include "tally/records.hpp"
#include "tally/types.hpp"

namespace tally::client {

struct BodyEncoding {
  ClientError error = ClientError::ok;
  u32 size = 0;  // Bytes of body written, when ok.
};

namespace request_body_detail {

// The `limit` of a query filter, read from the record so that no raw offset is involved.
inline u32 filter_limit(const AccountFilter& filter) { return filter.limit; }
inline u32 filter_limit(const QueryFilter& filter) { return filter.limit; }
inline u32 filter_limit(const ChangeEventsFilter& filter) { return filter.limit; }
template <typename Event>
u32 filter_limit(const Event&) {
  return 0;
}

template <typename Event>
ClientError batch_check(Operation operation, std::span<const Event> events) {
  const OperationInfo info = operation_info(operation);
  if (info.batchable) {
    return events.size() > info.event_max ? ClientError::batch_too_large : ClientError::ok;
  }
  if (events.size() != 1) return ClientError::body_invalid;
  return filter_limit(events[0]) > info.result_max ? ClientError::batch_too_large
                                                   : ClientError::ok;
}

template <typename Event>
void event_type_check(Operation operation) {
  TALLY_ASSERT(operation_is_multi_batch(operation), "%s is not multi-batch encoded",
               name(operation));
  TALLY_ASSERT(sizeof(Event) == operation_event_size(operation),
               "a %zu-byte event for %s, whose events are %u bytes", sizeof(Event),
               name(operation), operation_event_size(operation));
}

inline ClientError encode_error(MultiBatchEncodeError error) {
  switch (error) {
    case MultiBatchEncodeError::none: return ClientError::ok;
    case MultiBatchEncodeError::buffer_full:
    case MultiBatchEncodeError::batch_count_exceeded:
    case MultiBatchEncodeError::element_count_exceeded: return ClientError::batch_too_large;
    case MultiBatchEncodeError::element_size_invalid:
    case MultiBatchEncodeError::element_size_mismatch:
    case MultiBatchEncodeError::batch_none:
    case MultiBatchEncodeError::finished: break;
  }
  TALLY_ASSERT(false, "the encoder was misused: %s", name(error));
  return ClientError::body_invalid;
}

}  // namespace request_body_detail

// How a client reports a body the cluster would refuse (and evict the session for, §8.4).
constexpr ClientError request_body_error(RequestBodyError error) {
  switch (error) {
    case RequestBodyError::none: return ClientError::ok;
    case RequestBodyError::body_too_large:
    case RequestBodyError::event_count_exceeded:
    case RequestBodyError::reply_too_large: return ClientError::batch_too_large;
    case RequestBodyError::operation_invalid: return ClientError::operation_invalid;
    case RequestBodyError::multi_batch_invalid:
    case RequestBodyError::body_size_invalid:
    case RequestBodyError::filter_count_invalid: return ClientError::body_invalid;
  }
  return ClientError::body_invalid;
}

// Any number of batches (one per span) of `operation`'s events into `buffer`. An empty batch is
// allowed for batchable operations (it is answered with an empty batch); there must be at least
// one batch.
template <typename Event>
BodyEncoding encode_batches(Operation operation, std::span<const std::span<const Event>> batches,
                            std::span<std::byte> buffer) {
  using namespace request_body_detail;
  event_type_check<Event>(operation);
  if (batches.empty()) return {.error = ClientError::body_invalid};
  if (batches.size() > batch_count_max) return {.error = ClientError::batch_too_large};
  MultiBatchEncoder encoder(buffer, operation_event_size(operation));
  for (const std::span<const Event> events : batches) {
    if (const ClientError error = batch_check(operation, events); error != ClientError::ok) {
      return {.error = error};
    }
    const ClientError error = encode_error(encoder.batch_add(std::as_bytes(events)));
    if (error != ClientError::ok) return {.error = error};
  }
  const ClientError error = encode_error(encoder.finish());
  if (error != ClientError::ok) return {.error = error};
  return {.error = ClientError::ok, .size = encoder.size()};
}

// One batch: the body of every typed call of tally::Client.
template <typename Event>
BodyEncoding encode_batch(Operation operation, std::span<const Event> events,
                          std::span<std::byte> buffer) {
  const std::span<const Event> batches[1] = {events};
  return encode_batches<Event>(operation, batches, buffer);
}

}  // namespace tally::client
