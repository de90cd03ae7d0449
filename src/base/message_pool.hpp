// MessagePool: the fixed set of message buffers that every message of a process lives in.
//
// A message is a 256-byte header and its body, at most `message_size` bytes, in a buffer that is
// sector-aligned so that a prepare can go to the WAL with O_DIRECT straight from where the
// network put it. One message is often held by several owners at once: a prepare is being written
// to the WAL, sent to every backup and kept in the primary's pipeline. Hence reference counts:
// get() hands out a message with one reference, ref() adds one, unref() drops one, and the last
// unref() returns the buffer to the pool. Nothing is allocated after init().
//
// Exhaustion: get() returns nullptr when every buffer is held. Owners whose budget guarantees a
// buffer (the replica's pipeline, journal reads) assert on it; owners that can shed load (the
// message bus receiving from a connection) wait or drop. The budget is the owner's business:
// the pool only counts.
//
// Invariants: every complete message is zero from `size` to the next sector boundary
// (pad_zero()), so the WAL can write any prepare as it is; a message on the free list has zero
// references; a message handed out has at
// least one; free_count() + messages held == capacity(). The free order is deterministic (last
// freed, first reused) so a seeded simulation reuses the same buffers in the same order.
#pragma once

#include <cstddef>
#include <cstring>
#include <span>

#include "src/base/assert.hpp"
#include "src/base/large_array.hpp"
#include "tally/header.hpp"
#include "tally/types.hpp"

namespace tally::base {

inline constexpr u32 message_alignment = 4096;

struct Message {
  std::byte* buffer = nullptr;  // message_size bytes, message_alignment-aligned.
  u32 references = 0;
  u32 index = 0;              // Position in the pool, stable.
  Message* next = nullptr;    // For one owner's intrusive queue at a time (the owner's to use).

  Header& header() { return *reinterpret_cast<Header*>(buffer); }
  const Header& header() const { return *reinterpret_cast<const Header*>(buffer); }
  // The whole message as the header's `size` describes it.
  std::span<std::byte> bytes() { return {buffer, header().size}; }
  std::span<const std::byte> bytes() const { return {buffer, header().size}; }
  std::span<std::byte> body() { return bytes().subspan(header_size); }
  std::span<const std::byte> body() const { return bytes().subspan(header_size); }

  // The message padded with zeros to a whole number of sectors, as the WAL writes it with
  // O_DIRECT. Valid only once pad_zero() has run (or the filler zeroed the padding otherwise).
  std::span<const std::byte> padded() const { return {buffer, padded_size()}; }
  u32 padded_size() const {
    return (header().size + message_alignment - 1) / message_alignment * message_alignment;
  }
  // Whoever fills a message (a builder, the bus receiving it) calls this once it is complete,
  // so that every complete message in the pool carries zero padding: receivers may share a
  // message and must not write to it.
  void pad_zero() {
    std::memset(buffer + header().size, 0, padded_size() - header().size);
  }
};

class MessagePool {
 public:
  MessagePool() = default;
  MessagePool(const MessagePool&) = delete;
  MessagePool& operator=(const MessagePool&) = delete;

  // Reserves `capacity` buffers of `message_size` bytes (a multiple of 4096). Before sealing.
  void init(u32 capacity, u32 message_size) {
    TALLY_ASSERT(capacity > 0 && messages_.capacity() == 0);
    TALLY_ASSERT(message_size >= header_size && message_size % message_alignment == 0);
    message_size_ = message_size;
    buffers_.init(std::size_t{capacity} * message_size);
    messages_.init(capacity);
    free_.init(capacity);
    for (u32 index = 0; index < capacity; index += 1) {
      Message& message = messages_[index];
      message.buffer = buffers_.data() + std::size_t{index} * message_size;
      message.index = index;
      // Reverse, so that the first get() gives message 0.
      free_[index] = capacity - 1 - index;
    }
    capacity_ = capacity;
    free_count_ = capacity;
  }

  u32 capacity() const { return capacity_; }
  u32 free_count() const { return free_count_; }
  u32 message_size() const { return message_size_; }

  // A message with one reference and a zeroed header, or nullptr when every buffer is held.
  Message* get() {
    if (free_count_ == 0) return nullptr;
    free_count_ -= 1;
    Message* message = &messages_[free_[free_count_]];
    TALLY_ASSERT(message->references == 0);
    message->references = 1;
    message->next = nullptr;
    std::memset(message->buffer, 0, header_size);
    return message;
  }

  Message* ref(Message* message) {
    TALLY_ASSERT(owned(message) && message->references > 0);
    message->references += 1;
    return message;
  }

  void unref(Message* message) {
    TALLY_ASSERT(owned(message) && message->references > 0, "message unreferenced twice");
    message->references -= 1;
    if (message->references > 0) return;
    TALLY_ASSERT(free_count_ < capacity_);
    free_[free_count_] = message->index;
    free_count_ += 1;
  }

  bool owned(const Message* message) const {
    return message != nullptr && message->index < capacity_ &&
           &messages_[message->index] == message;
  }

 private:
  LargeArray<std::byte> buffers_;
  LargeArray<Message> messages_;
  LargeArray<u32> free_;
  u32 capacity_ = 0;
  u32 free_count_ = 0;
  u32 message_size_ = 0;
};

}  // namespace tally::base
