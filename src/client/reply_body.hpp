// Reply bodies: checking what the cluster answered against what was asked (§8.3), and reading
// the results as typed spans.
//
// The rules, per request batch k and reply batch k (multi-batch operations, §8.2):
//   - the reply decodes with the operation's result size, and has as many batches as the request;
//   - create_accounts / create_transfers (dense): exactly one result per event;
//   - deprecated sparse creates and lookups: at most one result per event;
//   - queries (one filter per batch): at most min(filter.limit, result_max) results.
// Raw (not multi-batch) operations are one batch with the same rules; pulse replies are empty.
// TigerBeetle's clients crash on a reply that breaks these rules; here it is a ReplyBodyError,
// which tally::Client reports as ClientError::reply_invalid. The session has already accepted
// such a reply (its header matched the request, so it is the cluster's committed answer), which
// keeps the session usable.
//
// Invariants: nothing here reads outside the spans it is given or trusts a count from the body
// before checking it; ReplyReader hands out typed spans only after read() succeeded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "src/base/assert.hpp"
#include "src/client/request_body.hpp"
#include "tally/client.hpp"
#include "tally/multi_batch.hpp"
#include "tally/operation.hpp"
#include "tally/records.hpp"
#include "tally/types.hpp"

namespace tally::client {

enum class ReplyBodyError : u8 {
  none = 0,
  operation_invalid,      // Not a state-machine operation.
  request_invalid,        // The request body does not decode (the caller's bug).
  multi_batch_invalid,    // The reply does not decode with the result size.
  batch_count_mismatch,   // Not as many reply batches as request batches.
  body_size_invalid,      // A raw reply that is not a whole number of results.
  result_count_mismatch,  // A dense create batch without exactly one result per event.
  result_count_exceeded,  // More results than the batch's events or filter limit allow.
};

constexpr const char* name(ReplyBodyError error) {
  switch (error) {
    case ReplyBodyError::none: return "none";
    case ReplyBodyError::operation_invalid: return "operation_invalid";
    case ReplyBodyError::request_invalid: return "request_invalid";
    case ReplyBodyError::multi_batch_invalid: return "multi_batch_invalid";
    case ReplyBodyError::batch_count_mismatch: return "batch_count_mismatch";
    case ReplyBodyError::body_size_invalid: return "body_size_invalid";
    case ReplyBodyError::result_count_mismatch: return "result_count_mismatch";
    case ReplyBodyError::result_count_exceeded: return "result_count_exceeded";
  }
  return "unknown";
}

namespace reply_body_detail {

// Dense results: one per event, exactly.
constexpr bool results_dense(Operation operation) {
  return operation == Operation::create_accounts || operation == Operation::create_transfers;
}

// The most results one request batch allows.
inline u32 results_allowed(Operation operation, std::span<const std::byte> request_batch) {
  const OperationInfo info = operation_info(operation);
  if (info.batchable) return static_cast<u32>(request_batch.size() / info.event_size);
  const u32 limit = multi_batch_detail::filter_limit(operation, request_batch);
  return limit < info.result_max ? limit : info.result_max;
}

inline ReplyBodyError batch_check(Operation operation, std::span<const std::byte> request_batch,
                                  u64 result_count) {
  const u32 allowed = results_allowed(operation, request_batch);
  if (results_dense(operation) && result_count != allowed) {
    return ReplyBodyError::result_count_mismatch;
  }
  if (result_count > allowed) return ReplyBodyError::result_count_exceeded;
  return ReplyBodyError::none;
}

}  // namespace reply_body_detail

// Checks a reply body against the request body it answers.
inline ReplyBodyError validate_reply_body(Operation operation,
                                          std::span<const std::byte> request_body,
                                          std::span<const std::byte> reply_body) {
  using reply_body_detail::batch_check;
  if (!operation_is_state_machine(operation)) return ReplyBodyError::operation_invalid;
  const OperationInfo info = operation_info(operation);
  if (info.result_size == 0) {
    return reply_body.empty() ? ReplyBodyError::none : ReplyBodyError::body_size_invalid;
  }

  if (!info.multi_batch) {
    if (validate_request_body(operation, request_body) != RequestBodyError::none) {
      return ReplyBodyError::request_invalid;
    }
    if (reply_body.size() % info.result_size != 0) return ReplyBodyError::body_size_invalid;
    return batch_check(operation, request_body, reply_body.size() / info.result_size);
  }

  MultiBatchDecoder request;
  if (request.decode(request_body, info.event_size) != MultiBatchError::none) {
    return ReplyBodyError::request_invalid;
  }
  MultiBatchDecoder reply;
  if (reply.decode(reply_body, info.result_size) != MultiBatchError::none) {
    return ReplyBodyError::multi_batch_invalid;
  }
  if (reply.batch_count() != request.batch_count()) return ReplyBodyError::batch_count_mismatch;
  u32 batch_index = 0;
  for (const std::span<const std::byte> request_batch : request) {
    if (!info.batchable && request_batch.size() != info.event_size) {
      return ReplyBodyError::request_invalid;
    }
    const ReplyBodyError error =
        batch_check(operation, request_batch, reply.element_count(batch_index));
    if (error != ReplyBodyError::none) return error;
    batch_index++;
  }
  return ReplyBodyError::none;
}

struct ReplySizeMax {
  ClientError error = ClientError::ok;
  u64 size = 0;  // Bytes, when ok.
};

// The largest reply body a request may produce (every event a result, every query at its limit
// capped at result_max): what a buffer for its reply must hold. The body must be one the cluster
// accepts; otherwise the error says why not.
inline ReplySizeMax reply_size_max(Operation operation, std::span<const std::byte> request_body) {
  const ClientError error = request_body_error(validate_request_body(operation, request_body));
  if (error != ClientError::ok) return {.error = error};
  const OperationInfo info = operation_info(operation);
  if (info.result_size == 0) return {};
  if (!info.multi_batch) {
    return {.size = u64{reply_body_detail::results_allowed(operation, request_body)} *
                    info.result_size};
  }
  MultiBatchDecoder request;
  const MultiBatchError decoded = request.decode(request_body, info.event_size);
  TALLY_ASSERT(decoded == MultiBatchError::none);
  u64 size = multi_batch_trailer_size(info.result_size, request.batch_count());
  for (const std::span<const std::byte> batch : request) {
    size += u64{reply_body_detail::results_allowed(operation, batch)} * info.result_size;
  }
  return {.size = size};
}

// A checked reply, read batch by batch as typed results. Holds views of the bodies, which must
// outlive it (for a session reply: the duration of the callback, or a reference taken on it).
class ReplyReader {
 public:
  ReplyBodyError read(Operation operation, std::span<const std::byte> request_body,
                      std::span<const std::byte> reply_body) {
    *this = ReplyReader{};
    const ReplyBodyError error = validate_reply_body(operation, request_body, reply_body);
    if (error != ReplyBodyError::none) return error;
    operation_ = operation;
    const OperationInfo info = operation_info(operation);
    if (info.multi_batch) {
      const MultiBatchError decoded = decoder_.decode(reply_body, info.result_size);
      TALLY_ASSERT(decoded == MultiBatchError::none);
      batch_count_ = decoder_.batch_count();
    } else {
      raw_ = reply_body;
      batch_count_ = 1;
    }
    return ReplyBodyError::none;
  }

  Operation operation() const { return operation_; }
  u32 batch_count() const { return batch_count_; }

  // The results of batch `batch_index` as bytes. O(batch_index): batches are located by adding
  // up the counts before them, and a request rarely holds more than a handful.
  std::span<const std::byte> batch_bytes(u32 batch_index) const {
    TALLY_ASSERT(batch_index < batch_count_, "batch %u of %u", batch_index, batch_count_);
    if (!operation_is_multi_batch(operation_)) return raw_;
    const u32 result_size = decoder_.element_size();
    u64 offset = 0;
    for (u32 index = 0; index < batch_index; index++) {
      offset += u64{decoder_.element_count(index)} * result_size;
    }
    return decoder_.payload().subspan(static_cast<std::size_t>(offset),
                                      u64{decoder_.element_count(batch_index)} * result_size);
  }

  // Typed view of one batch. The reply body must be aligned for Result, as message buffers are
  // (results start at a multiple of their size after the 256-byte header).
  template <typename Result>
  std::span<const Result> batch(u32 batch_index) const {
    TALLY_ASSERT(sizeof(Result) == operation_result_size(operation_),
                 "a %zu-byte result for %s, whose results are %u bytes", sizeof(Result),
                 name(operation_), operation_result_size(operation_));
    const std::span<const std::byte> bytes = batch_bytes(batch_index);
    TALLY_ASSERT(reinterpret_cast<std::uintptr_t>(bytes.data()) % alignof(Result) == 0,
                 "reply body not aligned for its results");
    return {reinterpret_cast<const Result*>(bytes.data()), bytes.size() / sizeof(Result)};
  }

 private:
  Operation operation_ = Operation::reserved;
  u32 batch_count_ = 0;
  MultiBatchDecoder decoder_;
  std::span<const std::byte> raw_;
};

}  // namespace tally::client
