// ClientSessions: the replicated table of client sessions (protocol §5), one entry per client.
//
// Every replica changes it only while committing (register opens a session, every committed
// request records its reply), in op order, so all replicas hold the same table at the same op.
// Each entry keeps the whole latest reply, header and body, so a duplicate request is answered
// with the identical bytes, as §5.4 requires.
//
// Registering when every entry is taken evicts the session whose latest reply has the smallest
// commit number (the least recently active, §5.5); the evicted client learns it from the
// eviction reason `no_session` on its next request.
//
// Memory: `capacity` entries of `message_size` bytes of reply each, reserved at init.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <type_traits>

#include "journal/storage.hpp"
#include "src/base/assert.hpp"
#include "src/base/large_array.hpp"
#include "tally/header.hpp"
#include "tally/types.hpp"

namespace tally::vsr {

struct ClientSession {
  u128 client;  // 0: the entry is free.
  u64 session;  // The op of the register that opened it.
  // The latest committed request and its reply. Register is request 0.
  u32 request;
  u32 release;
  u128 request_checksum;
  u64 reply_op;  // The op that produced the reply: orders sessions for eviction.
  u64 reserved;  // Zero: no padding, so a checkpoint writes only defined bytes.
  Header reply;  // The reply's header (size, context, checksum); the body is in reply_body().
};

static_assert(sizeof(ClientSession) == 320);
static_assert(std::has_unique_object_representations_v<ClientSession>);

class ClientSessions {
 public:
  void init(u32 capacity, u32 message_size) {
    TALLY_ASSERT(capacity > 0 && message_size >= header_size);
    TALLY_ASSERT(capacity_ == 0, "client sessions are initialized once");
    // Replies go to and come from the data file with O_DIRECT straight from their buffers
    // (CheckpointStore): every buffer must start on a sector.
    TALLY_ASSERT(message_size % journal::sector_size == 0);
    capacity_ = capacity;
    message_size_ = message_size;
    entries_.init(capacity);
    replies_.init(std::size_t{capacity} * message_size);
    reset();
  }

  void reset() {
    TALLY_ASSERT(capacity_ > 0, "reset() before init()");
    for (u32 index = 0; index < capacity_; index += 1) entries_[index] = ClientSession{};
  }

  u32 capacity() const { return capacity_; }
  const ClientSession& entry(u32 index) const {
    TALLY_ASSERT(index < capacity_);
    return entries_[index];
  }

  std::optional<u32> find(u128 client) const {
    TALLY_ASSERT(client != 0);
    for (u32 index = 0; index < capacity_; index += 1) {
      if (entries_[index].client == client) {
        // One entry per client (open() reuses a client's entry): none after this one.
        TALLY_ASSERT_SLOW(!find_after(client, index + 1));
        return index;
      }
    }
    return std::nullopt;
  }

  u32 count() const {
    u32 result = 0;
    for (u32 index = 0; index < capacity_; index += 1) result += entries_[index].client != 0;
    return result;
  }

  // Opens a session for `client` at op `session` and returns its index. A client that already
  // has a session (a register committed twice, e.g. after its first reply was lost) gets a
  // fresh one in the same entry. When full, the least recently active session is evicted.
  u32 open(u128 client, u64 session, u32 release, u128 request_checksum) {
    TALLY_ASSERT(client != 0 && session > 0);
    std::optional<u32> index = find(client);
    if (!index.has_value()) index = free_or_evict();
    ClientSession& entry = entries_[*index];
    // Free, the client's own, or the least recently active: in every case its latest reply
    // came from an op before this register's (ops execute once each, in order).
    TALLY_ASSERT(entry.client == 0 || entry.reply_op < session,
                 "session at op %llu over a reply of op %llu",
                 static_cast<unsigned long long>(session),
                 static_cast<unsigned long long>(entry.reply_op));
    entry = ClientSession{};
    entry.client = client;
    entry.session = session;
    entry.request = 0;
    entry.release = release;
    entry.request_checksum = request_checksum;
    entry.reply_op = session;
    // One entry per client: the one returned is the one find() sees.
    TALLY_ASSERT_SLOW(find(client) == index);
    return *index;
  }

  // Where the reply of the entry's next committed request is built: the whole message buffer.
  std::span<std::byte> reply_buffer(u32 index) {
    TALLY_ASSERT(index < capacity_);
    std::byte* buffer = replies_.data() + std::size_t{index} * message_size_;
    // O_DIRECT straight from here (init()): on a sector, as the pages and the sizes are.
    TALLY_ASSERT(reinterpret_cast<std::uintptr_t>(buffer) % journal::sector_size == 0);
    return {buffer, message_size_};
  }

  // Records the committed request whose reply now sits in reply_buffer(index).
  void reply_record(u32 index, u32 request, u128 request_checksum, u64 op) {
    TALLY_ASSERT(index < capacity_);
    ClientSession& entry = entries_[index];
    TALLY_ASSERT(entry.client != 0);
    TALLY_ASSERT(op >= entry.reply_op);
    // The register's own reply (request 0) comes at the session's op, every other one after.
    TALLY_ASSERT(op > entry.session || (op == entry.session && request == 0));
    entry.request = request;
    entry.request_checksum = request_checksum;
    entry.reply_op = op;
    std::memcpy(&entry.reply, reply_buffer(index).data(), header_size);
    TALLY_ASSERT(entry.reply.command == Command::reply && entry.reply.size <= message_size_);
  }

  // The whole table, for checkpoints: written out as it is and restored as it was (the
  // replies are read back into reply_buffer() and checked with reply_verify()).
  std::span<const ClientSession> entries() const { return {entries_.data(), capacity_}; }
  void entry_restore(u32 index, const ClientSession& entry) {
    TALLY_ASSERT(index < capacity_);
    entries_[index] = entry;
  }

  // Whether reply_buffer(index) holds the entry's reply, header and body. If not, the buffer's
  // header is cleared, so that reply_available() says no until the next reply is recorded.
  bool reply_verify(u32 index) {
    const ClientSession& entry = entries_[index];
    // Only the replies of sessions in use are read back (the bytes checked here are the disk's).
    TALLY_ASSERT(entry.client != 0);
    std::span<std::byte> buffer = reply_buffer(index);
    Header stored;
    std::memcpy(&stored, buffer.data(), header_size);
    const bool intact =
        entry.reply.command == Command::reply && stored.checksum == entry.reply.checksum &&
        checksum_valid(stored) && stored.size == entry.reply.size &&
        stored.size >= header_size && stored.size <= message_size_ &&
        checksum_body_valid(stored, buffer.subspan(header_size, stored.size - header_size));
    if (!intact) std::memset(buffer.data(), 0, header_size);
    TALLY_ASSERT(!intact || reply_available(index));
    return intact;
  }

  // False only for a reply lost to storage damage (reply_verify()): a duplicate request of
  // that session then goes unanswered instead of getting wrong bytes.
  bool reply_available(u32 index) const {
    // The reply buffers are addressed by hand, past the entries' bounds check.
    TALLY_ASSERT(index < capacity_);
    const ClientSession& entry = entries_[index];
    u128 stored_checksum = 0;
    std::memcpy(&stored_checksum, replies_.data() + std::size_t{index} * message_size_,
                sizeof(stored_checksum));
    return entry.reply.command == Command::reply && stored_checksum == entry.reply.checksum;
  }

  // The latest reply, header and body, as sent.
  std::span<const std::byte> reply_bytes(u32 index) const {
    TALLY_ASSERT(index < capacity_);
    const ClientSession& entry = entries_[index];
    TALLY_ASSERT(entry.client != 0 && entry.reply.command == Command::reply);
    // Recorded (reply_record()) or read back intact (reply_verify()): within its buffer.
    TALLY_ASSERT(entry.reply.size >= header_size && entry.reply.size <= message_size_);
    return {replies_.data() + std::size_t{index} * message_size_, entry.reply.size};
  }

 private:
  u32 free_or_evict() const {
    TALLY_ASSERT(capacity_ > 0, "a session table without entries");
    std::optional<u32> oldest;
    for (u32 index = 0; index < capacity_; index += 1) {
      const ClientSession& entry = entries_[index];
      if (entry.client == 0) return index;
      // Ties cannot happen (one reply per op), but the lowest index wins deterministically.
      if (!oldest.has_value() || entry.reply_op < entries_[*oldest].reply_op) oldest = index;
    }
    TALLY_ASSERT(oldest.has_value() && entries_[*oldest].client != 0);
    return *oldest;
  }

  // Whether an entry at `from` or after belongs to `client` (TALLY_ASSERT_SLOW only).
  bool find_after(u128 client, u32 from) const {
    TALLY_ASSERT(client != 0 && from <= capacity_);
    for (u32 index = from; index < capacity_; index += 1) {
      if (entries_[index].client == client) return true;
    }
    return false;
  }

  u32 capacity_ = 0;
  u32 message_size_ = 0;
  base::LargeArray<ClientSession> entries_;
  base::LargeArray<std::byte> replies_;
};

}  // namespace tally::vsr
