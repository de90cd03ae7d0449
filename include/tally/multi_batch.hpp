// The multi-batch body encoding of §8.2, and the server-side request body checks of §8.4.
//
// A multi-batch body is the batches' elements back to back, then a trailer read from the end:
//
//   | batch 0 elements | batch 1 elements | ... | FF .. FF | count(n-1) .. count(1) count(0) | n |
//   |<------------------ payload ------------------>|<--------------- trailer --------------->|
//
// Every count and n (the postamble) is a little-endian u16; 1 <= n <= 65534. The counts are in
// reverse batch order: the one right before the postamble is batch 0's. The filler, all 0xFF,
// makes the trailer a multiple of the element size:
//   trailer_size = ceil((2 * n + 2) / element_size) * element_size.
// Example (§14 V6): lookups of ids [17, 19] and [21], element size 16: 48 bytes of ids, then
// ff*10, 01 00 (batch 1: one id), 02 00 (batch 0: two ids), 02 00 (two batches): 64 bytes.
//
// Element sizes must be even (every protocol element is), so the trailer's u16s tile exactly and
// no pad byte sits between payload and trailer. Bodies come from the network: the decoder checks
// every byte it relies on, never reads outside the span, allocates nothing and reports the first
// broken rule; the encoder writes only inside the caller's buffer and reports a full buffer
// instead of overrunning it. No function here throws or traps.
#pragma once

#include <cstddef>
#include <cstring>
#include <iterator>
#include <span>

#include "tally/constants.hpp"
#include "tally/operation.hpp"
#include "tally/records.hpp"
#include "tally/types.hpp"

namespace tally {

enum class MultiBatchError : u8 {
  none = 0,
  element_size_invalid,   // Zero, odd, or larger than a body.
  body_too_large,         // Longer than message_body_size_max.
  body_too_short,         // No room for the postamble.
  batch_count_zero,       // Postamble 0: a body always holds at least one batch.
  batch_count_reserved,   // Postamble 0xFFFF, the filler value.
  trailer_too_long,       // The trailer the postamble implies is longer than the body.
  filler_invalid,         // A filler byte is not 0xFF.
  payload_size_mismatch,  // The counts times the element size are not the payload's length.
};

constexpr const char* name(MultiBatchError error) {
  switch (error) {
    case MultiBatchError::none: return "none";
    case MultiBatchError::element_size_invalid: return "element_size_invalid";
    case MultiBatchError::body_too_large: return "body_too_large";
    case MultiBatchError::body_too_short: return "body_too_short";
    case MultiBatchError::batch_count_zero: return "batch_count_zero";
    case MultiBatchError::batch_count_reserved: return "batch_count_reserved";
    case MultiBatchError::trailer_too_long: return "trailer_too_long";
    case MultiBatchError::filler_invalid: return "filler_invalid";
    case MultiBatchError::payload_size_mismatch: return "payload_size_mismatch";
  }
  return "unknown";
}

// Per-batch element counts are u16; 0xFFFF is positional, hence still a valid count.
inline constexpr u32 multi_batch_element_count_max = 0xFFFF;

// Every filler byte between the payload and the counts.
inline constexpr u8 multi_batch_filler = 0xFF;

constexpr bool multi_batch_element_size_valid(u32 element_size) {
  return element_size >= 2 && element_size % 2 == 0 && element_size <= message_body_size_max;
}

namespace multi_batch_detail {

inline u16 load_u16(const std::byte* bytes) {
  u16 value;
  std::memcpy(&value, bytes, sizeof(value));
  return value;
}

inline void store_u16(std::byte* bytes, u16 value) { std::memcpy(bytes, &value, sizeof(value)); }

}  // namespace multi_batch_detail

// ---------------------------------------------------------------------------------------------
// Decoding.

// A validated view of one multi-batch body; it does not copy the body, which must outlive it.
// Empty (zero batches) until decode() succeeds, and again after a failed decode().
class MultiBatchDecoder {
 public:
  class Iterator {
   public:
    using value_type = std::span<const std::byte>;
    using difference_type = std::ptrdiff_t;

    Iterator() = default;

    std::span<const std::byte> operator*() const {
      const u32 size = decoder_->element_count(batch_index_) * decoder_->element_size_;
      return {decoder_->body_ + payload_offset_, size};
    }

    Iterator& operator++() {
      payload_offset_ += decoder_->element_count(batch_index_) * decoder_->element_size_;
      batch_index_++;
      return *this;
    }

    Iterator operator++(int) {
      Iterator before = *this;
      ++*this;
      return before;
    }

    bool operator==(const Iterator& other) const { return batch_index_ == other.batch_index_; }

   private:
    friend class MultiBatchDecoder;
    Iterator(const MultiBatchDecoder* decoder, u32 batch_index)
        : decoder_(decoder), batch_index_(batch_index) {}

    const MultiBatchDecoder* decoder_ = nullptr;
    u32 batch_index_ = 0;
    u32 payload_offset_ = 0;
  };

  MultiBatchError decode(std::span<const std::byte> body, u32 element_size) {
    *this = MultiBatchDecoder{};
    const MultiBatchError error = check(body, element_size);
    if (error != MultiBatchError::none) return error;

    body_ = body.data();
    element_size_ = element_size;
    batch_count_ = multi_batch_detail::load_u16(body.data() + body.size() - 2);
    trailer_size_ = static_cast<u32>(multi_batch_trailer_size(element_size, batch_count_));
    payload_size_ = static_cast<u32>(body.size()) - trailer_size_;
    return MultiBatchError::none;
  }

  MultiBatchError decode(std::span<const u8> body, u32 element_size) {
    return decode(std::as_bytes(body), element_size);
  }

  u16 batch_count() const { return batch_count_; }
  u32 element_size() const { return element_size_; }
  u32 trailer_size() const { return trailer_size_; }
  std::span<const std::byte> payload() const { return {body_, payload_size_}; }
  u32 element_count_total() const {
    return element_size_ == 0 ? 0 : payload_size_ / element_size_;
  }

  // O(1): counts sit at fixed places in the trailer. Zero for a batch index out of range.
  u32 element_count(u32 batch_index) const {
    if (batch_index >= batch_count_) return 0;
    const u32 body_size = payload_size_ + trailer_size_;
    return multi_batch_detail::load_u16(body_ + body_size - 4 - 2 * batch_index);
  }

  // Batches in order, each as its elements' bytes; O(1) per step.
  Iterator begin() const { return Iterator(this, 0); }
  Iterator end() const { return Iterator(this, batch_count_); }

 private:
  // Every rule of §8.2, in the order the bytes are reached from the end of the body.
  static MultiBatchError check(std::span<const std::byte> body, u32 element_size) {
    using multi_batch_detail::load_u16;
    if (!multi_batch_element_size_valid(element_size)) return MultiBatchError::element_size_invalid;
    if (body.size() > message_body_size_max) return MultiBatchError::body_too_large;
    if (body.size() < 2) return MultiBatchError::body_too_short;

    const u32 body_size = static_cast<u32>(body.size());
    const u16 batch_count = load_u16(body.data() + body_size - 2);
    if (batch_count == 0) return MultiBatchError::batch_count_zero;
    if (batch_count > batch_count_max) return MultiBatchError::batch_count_reserved;

    const u64 trailer_size = multi_batch_trailer_size(element_size, batch_count);
    if (trailer_size > body_size) return MultiBatchError::trailer_too_long;

    // The trailer fits, so both the counts and the filler lie inside the body.
    const u32 payload_size = body_size - static_cast<u32>(trailer_size);
    const u32 counts_offset = body_size - 2 - 2 * u32{batch_count};
    for (u32 offset = payload_size; offset < counts_offset; offset++) {
      if (body[offset] != std::byte{multi_batch_filler}) return MultiBatchError::filler_invalid;
    }

    u64 element_count_total = 0;
    for (u32 offset = counts_offset; offset < body_size - 2; offset += 2) {
      element_count_total += load_u16(body.data() + offset);
    }
    if (element_count_total * element_size != payload_size) {
      return MultiBatchError::payload_size_mismatch;
    }
    return MultiBatchError::none;
  }

  const std::byte* body_ = nullptr;
  u32 element_size_ = 0;
  u32 payload_size_ = 0;
  u32 trailer_size_ = 0;
  u16 batch_count_ = 0;
};

static_assert(std::forward_iterator<MultiBatchDecoder::Iterator>);

// ---------------------------------------------------------------------------------------------
// Encoding.

enum class MultiBatchEncodeError : u8 {
  none = 0,
  element_size_invalid,    // Zero, odd, or larger than a body.
  buffer_full,             // The element or batch and the grown trailer would not fit.
  batch_count_exceeded,    // Already batch_count_max batches.
  element_count_exceeded,  // The batch would exceed multi_batch_element_count_max elements.
  element_size_mismatch,   // A span that is not one element (or a whole number of them).
  batch_none,              // Elements before batch_begin(), or finish() with no batch.
  finished,                // Anything after finish().
};

constexpr const char* name(MultiBatchEncodeError error) {
  switch (error) {
    case MultiBatchEncodeError::none: return "none";
    case MultiBatchEncodeError::element_size_invalid: return "element_size_invalid";
    case MultiBatchEncodeError::buffer_full: return "buffer_full";
    case MultiBatchEncodeError::batch_count_exceeded: return "batch_count_exceeded";
    case MultiBatchEncodeError::element_count_exceeded: return "element_count_exceeded";
    case MultiBatchEncodeError::element_size_mismatch: return "element_size_mismatch";
    case MultiBatchEncodeError::batch_none: return "batch_none";
    case MultiBatchEncodeError::finished: return "finished";
  }
  return "unknown";
}

// Writes a multi-batch body into a caller-provided buffer: batch_begin(), then elements (copied
// with element_add() or written in place through writable() and commit()), more batches, then
// finish(). Usable capacity is the buffer, capped at message_body_size_max and rounded down to
// an even size. Invariant: payload + trailer_size(batch_count) <= capacity, so finish() always
// fits. While encoding, the counts are kept at the very end of the buffer, already in reverse
// order; finish() moves them next to the payload and adds the filler and the postamble:
//
//   while encoding:  | payload | ........ free ........ | count(n-1) .. count(0) |
//   after finish():  | payload | FF .. FF | count(n-1) .. count(0) | n | ... unused ...
class MultiBatchEncoder {
 public:
  MultiBatchEncoder(std::span<std::byte> buffer, u32 element_size)
      : buffer_(buffer.data()), element_size_(element_size) {
    const u64 capacity = buffer.size() < message_body_size_max ? buffer.size()
                                                               : message_body_size_max;
    capacity_ = static_cast<u32>(capacity) & ~u32{1};
  }

  MultiBatchEncoder(std::span<u8> buffer, u32 element_size)
      : MultiBatchEncoder(std::as_writable_bytes(buffer), element_size) {}

  MultiBatchEncodeError batch_begin() {
    const MultiBatchEncodeError error = usable();
    if (error != MultiBatchEncodeError::none) return error;
    if (batch_count_ == batch_count_max) return MultiBatchEncodeError::batch_count_exceeded;
    const u16 batch_count = static_cast<u16>(batch_count_ + 1);
    if (payload_size_ + multi_batch_trailer_size(element_size_, batch_count) > capacity_) {
      return MultiBatchEncodeError::buffer_full;
    }
    batch_count_ = batch_count;
    batch_element_count_ = 0;
    count_store();
    return MultiBatchEncodeError::none;
  }

  MultiBatchEncodeError element_add(std::span<const std::byte> element) {
    const MultiBatchEncodeError error = usable();
    if (error != MultiBatchEncodeError::none) return error;
    if (batch_count_ == 0) return MultiBatchEncodeError::batch_none;
    if (element.size() != element_size_) return MultiBatchEncodeError::element_size_mismatch;
    if (batch_element_count_ == multi_batch_element_count_max) {
      return MultiBatchEncodeError::element_count_exceeded;
    }
    if (element_fit_count() == 0) return MultiBatchEncodeError::buffer_full;
    std::memcpy(buffer_ + payload_size_, element.data(), element_size_);
    payload_size_ += element_size_;
    batch_element_count_++;
    count_store();
    return MultiBatchEncodeError::none;
  }

  MultiBatchEncodeError element_add(std::span<const u8> element) {
    return element_add(std::as_bytes(element));
  }

  // Opens a batch and copies all of `elements` (a whole number of elements) into it. On failure
  // nothing is added.
  MultiBatchEncodeError batch_add(std::span<const std::byte> elements) {
    const MultiBatchEncodeError error = usable();
    if (error != MultiBatchEncodeError::none) return error;
    if (elements.size() % element_size_ != 0) return MultiBatchEncodeError::element_size_mismatch;
    if (elements.size() / element_size_ > multi_batch_element_count_max) {
      return MultiBatchEncodeError::element_count_exceeded;
    }
    if (batch_count_ == batch_count_max) return MultiBatchEncodeError::batch_count_exceeded;
    const u16 batch_count = static_cast<u16>(batch_count_ + 1);
    if (payload_size_ + elements.size() + multi_batch_trailer_size(element_size_, batch_count) >
        capacity_) {
      return MultiBatchEncodeError::buffer_full;
    }
    batch_count_ = batch_count;
    if (!elements.empty()) std::memcpy(buffer_ + payload_size_, elements.data(), elements.size());
    payload_size_ += static_cast<u32>(elements.size());
    batch_element_count_ = static_cast<u32>(elements.size() / element_size_);
    count_store();
    return MultiBatchEncodeError::none;
  }

  MultiBatchEncodeError batch_add(std::span<const u8> elements) {
    return batch_add(std::as_bytes(elements));
  }

  // Room for further elements of the open batch, a whole number of elements; empty when no
  // batch is open, after finish(), or when full. Write into it, then commit().
  std::span<std::byte> writable() const {
    if (usable() != MultiBatchEncodeError::none || batch_count_ == 0) return {};
    return {buffer_ + payload_size_, element_fit_count() * element_size_};
  }

  // Adds the first `element_count` elements written into writable().
  MultiBatchEncodeError commit(u32 element_count) {
    const MultiBatchEncodeError error = usable();
    if (error != MultiBatchEncodeError::none) return error;
    if (batch_count_ == 0) return MultiBatchEncodeError::batch_none;
    if (element_count > multi_batch_element_count_max - batch_element_count_) {
      return MultiBatchEncodeError::element_count_exceeded;
    }
    if (element_count > element_fit_count()) return MultiBatchEncodeError::buffer_full;
    payload_size_ += element_count * element_size_;
    batch_element_count_ += element_count;
    count_store();
    return MultiBatchEncodeError::none;
  }

  MultiBatchEncodeError finish() {
    const MultiBatchEncodeError error = usable();
    if (error != MultiBatchEncodeError::none) return error;
    if (batch_count_ == 0) return MultiBatchEncodeError::batch_none;
    const u32 trailer_size =
        static_cast<u32>(multi_batch_trailer_size(element_size_, batch_count_));
    const u32 counts_size = 2 * u32{batch_count_};
    const u32 counts_offset = payload_size_ + trailer_size - 2 - counts_size;
    // The counts only ever move towards the payload, and the filler ends before their old place.
    std::memmove(buffer_ + counts_offset, buffer_ + capacity_ - counts_size, counts_size);
    std::memset(buffer_ + payload_size_, multi_batch_filler, counts_offset - payload_size_);
    multi_batch_detail::store_u16(buffer_ + counts_offset + counts_size, batch_count_);
    size_ = payload_size_ + trailer_size;
    return MultiBatchEncodeError::none;
  }

  u16 batch_count() const { return batch_count_; }
  // The encoded body: empty until finish() succeeds.
  std::span<const std::byte> body() const { return {buffer_, size_}; }
  u32 size() const { return size_; }

 private:
  MultiBatchEncodeError usable() const {
    if (!multi_batch_element_size_valid(element_size_)) {
      return MultiBatchEncodeError::element_size_invalid;
    }
    if (size_ != 0) return MultiBatchEncodeError::finished;
    return MultiBatchEncodeError::none;
  }

  // Elements that still fit in the open batch, by space and by the u16 count.
  u32 element_fit_count() const {
    const u64 used = payload_size_ + multi_batch_trailer_size(element_size_, batch_count_);
    const u64 fit = used > capacity_ ? 0 : (capacity_ - used) / element_size_;
    const u32 count_room = multi_batch_element_count_max - batch_element_count_;
    return fit < count_room ? static_cast<u32>(fit) : count_room;
  }

  // The open batch (batch_count_ - 1) keeps its count at the end of the buffer.
  void count_store() {
    multi_batch_detail::store_u16(buffer_ + capacity_ - 2 * u32{batch_count_},
                                  static_cast<u16>(batch_element_count_));
  }

  std::byte* buffer_;
  u32 element_size_;
  u32 capacity_ = 0;
  u32 payload_size_ = 0;
  u32 batch_element_count_ = 0;
  u32 size_ = 0;  // Non-zero once finished: a finished body holds at least the postamble.
  u16 batch_count_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Request body validation (§8.4). A failure is answered with eviction reason 5
// (invalid_request_body).

enum class RequestBodyError : u8 {
  none = 0,
  operation_invalid,     // Not a state-machine operation: VSR operations have their own rules.
  body_too_large,        // Above batch_size_limit (reason 6 is checked before this, §5.4).
  multi_batch_invalid,   // Does not decode with the event size (MultiBatchDecoder says why).
  body_size_invalid,     // A raw body that is not a whole number of events (pulse: not empty).
  filter_count_invalid,  // A query batch (or raw query body) that is not exactly one filter.
  event_count_exceeded,  // A batch with more than event_max events.
  reply_too_large,       // The worst-case reply would not fit message_body_size_max.
};

constexpr const char* name(RequestBodyError error) {
  switch (error) {
    case RequestBodyError::none: return "none";
    case RequestBodyError::operation_invalid: return "operation_invalid";
    case RequestBodyError::body_too_large: return "body_too_large";
    case RequestBodyError::multi_batch_invalid: return "multi_batch_invalid";
    case RequestBodyError::body_size_invalid: return "body_size_invalid";
    case RequestBodyError::filter_count_invalid: return "filter_count_invalid";
    case RequestBodyError::event_count_exceeded: return "event_count_exceeded";
    case RequestBodyError::reply_too_large: return "reply_too_large";
  }
  return "unknown";
}

namespace multi_batch_detail {

// The `limit` of the filter that is a query batch: the most results the batch may produce.
inline u32 filter_limit(Operation operation, std::span<const std::byte> filter) {
  std::size_t offset = 0;
  switch (operation) {
    case Operation::get_account_transfers:
    case Operation::get_account_balances:
    case Operation::deprecated_get_account_transfers_unbatched:
    case Operation::deprecated_get_account_balances_unbatched:
      offset = offsetof(AccountFilter, limit);
      break;
    case Operation::query_accounts:
    case Operation::query_transfers:
    case Operation::deprecated_query_accounts_unbatched:
    case Operation::deprecated_query_transfers_unbatched:
      offset = offsetof(QueryFilter, limit);
      break;
    case Operation::get_change_events: offset = offsetof(ChangeEventsFilter, limit); break;
    default: return 0;
  }
  if (filter.size() < offset + sizeof(u32)) return 0;
  u32 limit;
  std::memcpy(&limit, filter.data() + offset, sizeof(limit));
  return limit;
}

}  // namespace multi_batch_detail

// Whether a request body is acceptable input for a state-machine operation, as the real server
// decides before executing anything: every batch decodes, has an acceptable size, and the reply
// the request could produce in the worst case (every event a result; every query at its limit,
// capped at result_max) fits a message.
inline RequestBodyError validate_request_body(Operation operation,
                                              std::span<const std::byte> body) {
  if (!operation_is_state_machine(operation)) return RequestBodyError::operation_invalid;
  if (body.size() > batch_size_limit) return RequestBodyError::body_too_large;
  const OperationInfo info = operation_info(operation);

  if (!info.multi_batch) {
    if (info.event_size == 0) {
      return body.empty() ? RequestBodyError::none : RequestBodyError::body_size_invalid;
    }
    if (!info.batchable) {
      return body.size() == info.event_size ? RequestBodyError::none
                                            : RequestBodyError::filter_count_invalid;
    }
    if (body.size() % info.event_size != 0) return RequestBodyError::body_size_invalid;
    if (body.size() / info.event_size > info.event_max) {
      return RequestBodyError::event_count_exceeded;
    }
    return RequestBodyError::none;
  }

  MultiBatchDecoder decoder;
  if (decoder.decode(body, info.event_size) != MultiBatchError::none) {
    return RequestBodyError::multi_batch_invalid;
  }
  u64 result_count = 0;
  for (const std::span<const std::byte> batch : decoder) {
    u64 batch_result_count = 0;
    if (info.batchable) {
      batch_result_count = batch.size() / info.event_size;
      if (batch_result_count > info.event_max) return RequestBodyError::event_count_exceeded;
    } else {
      if (batch.size() != info.event_size) return RequestBodyError::filter_count_invalid;
      batch_result_count = multi_batch_detail::filter_limit(operation, batch);
    }
    result_count += batch_result_count < info.result_max ? batch_result_count : info.result_max;
  }
  const u64 reply_size = result_count * info.result_size +
                         multi_batch_trailer_size(info.result_size, decoder.batch_count());
  if (reply_size > message_body_size_max) return RequestBodyError::reply_too_large;
  return RequestBodyError::none;
}

inline RequestBodyError validate_request_body(Operation operation, std::span<const u8> body) {
  return validate_request_body(operation, std::as_bytes(body));
}

}  // namespace tally
