// Wal: the write-ahead log over the data file's two WAL zones, generic over Storage.
//
// Format (docs/journal.md has the pictures): slot s of `slot_count` holds the op with
// op % slot_count == s. The prepares ring holds the whole prepare (header and body, padded with
// zeros to a sector) at layout.wal_prepare_offset(s); the headers ring holds a redundant copy of
// its 256-byte header at byte (s % 16) * 256 of the sector at layout.wal_header_sector_offset(s).
// The Wal keeps the whole headers ring in memory (`redundant_`) and writes it a whole sector at a
// time, so a header write carries the 15 neighbouring slots' headers too.
//
// Write order: the prepare first; once it is durable its header goes into the in-memory ring and
// the ring sector is written; once that is durable the caller's callback runs. Hence a redundant
// header on disk always names a durable prepare (unless a storage fault intervened), and every
// acknowledged write shows in both copies: recovery (wal_recovery.hpp) depends on this. Writes to
// one ring sector are serialized: while one is in flight, later requests wait and then go out
// together in one write of the sector as it is then, so an older sector image can never land
// after a newer one.
//
// Reads verify everything: header checksum, command, op and checksum as asked, body checksum. A
// mismatch or a storage read error reports faulty; the VSR layer then repairs from a peer.
//
// Lifecycle: construct (allocates everything, before the heap is sealed), optionally format(),
// then recover(), then write_prepare() / read_prepare() for the life of the replica. Concurrency
// is bounded: at most wal_write_count_max writes (the pipeline) and wal_read_count_max reads in
// flight, and at most one write per slot at a time, all asserted. Nothing is allocated after
// construction. Completions (Write, Read, Completion) are owned by the caller and must stay
// untouched until their callback has run; message buffers likewise.
//
// Per-slot state after recovery (and kept up to date by writes):
//   header(slot)  what the VSR layer uses as its log: the slot's prepare header when recovery
//                 trusts it, else the reserved header (wal_format_header).
//   dirty(slot)   the slot needs a write (set for faulty slots and while a write is in flight).
//   faulty(slot)  the slot's content is unknown locally: repair from a peer; never nack it.
//   slot_status() what recovery (or the last write) concluded, for diagnostics and tests.
// Invariants: faulty implies dirty; header(slot), when not reserved, has op % slot_count == slot
// and a checksum that verifies; right after recovery a faulty slot's header() is reserved (its
// op is unknown), later it may name the prepare to fetch (a read found it damaged, or
// set_header_as_dirty()).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>

#include "journal/layout.hpp"
#include "journal/storage.hpp"
#include "journal/wal_recovery.hpp"
#include "src/base/assert.hpp"
#include "src/base/bounded_array.hpp"
#include "src/base/large_array.hpp"
#include "tally/header.hpp"
#include "tally/types.hpp"

namespace tally::journal {

// Writes in flight: the prepare pipeline. Reads in flight: repairs and commits, and recovery.
inline constexpr u32 wal_write_count_max = 8;
inline constexpr u32 wal_read_count_max = 8;

static_assert(sector_size % wal_header_size == 0);
static_assert(wal_headers_per_sector == 16);
// Torn-prepare detection (recovery_torn) and the header sectors' write queues assume that the
// writes in flight cover less than the smallest ring.
static_assert(wal_write_count_max < slot_count_min);

enum class SlotStatus : u8 {
  empty = 0,   // Never written (or truncated): the reserved header.
  valid = 1,   // Both copies agree and verify.
  fixed = 2,   // Recovered from the prepare copy; the redundant copy was rewritten.
  stale = 3,   // Valid, but from an older wrap than the log's head: the op that belongs in
               // this slot now was never written here (a gap the VSR layer repairs).
  torn = 4,    // A prepare torn by the crash, never acknowledged: truncated, now empty.
  faulty = 5,  // Unknown locally: repair from a peer.
};

constexpr const char* slot_status_name(SlotStatus status) {
  switch (status) {
    case SlotStatus::empty: return "empty";
    case SlotStatus::valid: return "valid";
    case SlotStatus::fixed: return "fixed";
    case SlotStatus::stale: return "stale";
    case SlotStatus::torn: return "torn";
    case SlotStatus::faulty: return "faulty";
  }
  return "unknown";
}

enum class PrepareStatus : u8 { ok = 0, faulty = 1 };

struct WalOptions {
  u128 cluster = 0;
  // A single-replica cluster: no peer can repair, so recovery takes the two riskier decisions
  // of the table (bad_empty, bad_ok_behind) instead of reporting faulty, and writes go one at
  // a time.
  bool solo = false;
};

struct RecoverOptions {
  // The checkpoint's op (superblock), none before the first checkpoint: ops up to it are no
  // longer needed from the WAL, so a torn write may have overwritten one (recovery_torn).
  std::optional<u64> op_checkpoint;
  // Classify only and write nothing (`tally inspect`): slots that recovery would fix are
  // reported `fixed` but stay unfixed on disk, and the Wal can then be inspected, never written.
  bool read_only = false;
};

template <Storage S>
class Wal {
 public:
  // A prepare write, owned by the caller.
  struct Write {
    void* context = nullptr;
    const Header& header() const { return header_; }

   private:
    friend class Wal;
    Wal* wal_ = nullptr;
    void (*callback_)(Write*) = nullptr;
    Header header_{};
    u32 slot_ = 0;
    u32 buffer_index_ = 0;  // This write's header sector buffer.
    Write* next_ = nullptr;  // In its header sector's queue.
    typename S::Write storage_write_{};
  };

  // A prepare read, owned by the caller. On callback: `status`, and when ok, the prepare in
  // `buffer` (header() is its header).
  struct Read {
    void* context = nullptr;
    PrepareStatus status = PrepareStatus::faulty;
    u64 op = 0;
    u128 checksum = 0;
    std::span<std::byte> buffer;

    const Header& header() const {
      TALLY_ASSERT(status == PrepareStatus::ok);
      return *reinterpret_cast<const Header*>(buffer.data());
    }

   private:
    friend class Wal;
    Wal* wal_ = nullptr;
    void (*callback_)(Read*) = nullptr;
    typename S::Read storage_read_{};
  };

  // format() and recover(), owned by the caller.
  struct Completion {
    void* context = nullptr;

   private:
    friend class Wal;
    void (*callback_)(Completion*) = nullptr;
  };

  Wal(S& storage, const Layout& layout, const WalOptions& options)
      : storage_(storage),
        layout_(layout),
        options_(options),
        slot_count_(layout.config().slot_count),
        message_size_max_(layout.config().message_size_max) {
    TALLY_ASSERT(slot_count_ % wal_headers_per_sector == 0);
    TALLY_ASSERT(slot_count_ > wal_write_count_max);
    TALLY_ASSERT(storage.size() >= layout.zone(ZoneKind::wal_prepares).end(),
                 "the data file ends before the WAL");
    headers_.init(slot_count_);
    redundant_.init(slot_count_);
    prepare_copies_.init(slot_count_);
    copies_.init(slot_count_);
    decisions_.init(slot_count_);
    dirty_.init(slot_count_);
    faulty_.init(slot_count_);
    slot_statuses_.init(slot_count_);
    recovery_case_indexes_.init(slot_count_);
    sectors_.init(sector_count());
    sector_flags_.init(sector_count());
    sector_buffers_.init(u64{wal_write_count_max} * sector_size);
    recovery_buffers_.init(u64{wal_read_count_max} * message_size_max_);
    for (u32 index = 0; index < wal_write_count_max; index += 1) {
      sector_buffers_free_.push(index);
    }
    for (u32 slot = 0; slot < slot_count_; slot += 1) {
      headers_[slot] = wal_format_header(options_.cluster, slot);
      redundant_[slot] = headers_[slot];
    }
  }

  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // -------------------------------------------------------------------------------------------
  // The log, as recovered and as written since.

  u32 slot_count() const { return slot_count_; }
  // Ring slot of an op. slot_count is a power of two; with 1024 slots, op 1030 -> slot 6.
  u32 slot_for_op(u64 op) const { return static_cast<u32>(op & (slot_count_ - 1)); }

  const Header& header(u32 slot) const { return headers_[slot]; }
  std::span<const Header> headers() const { return headers_.first(slot_count_); }
  bool dirty(u32 slot) const { return dirty_[slot] != 0; }
  bool faulty(u32 slot) const { return faulty_[slot] != 0; }
  u32 dirty_count() const { return dirty_count_; }
  u32 faulty_count() const { return faulty_count_; }
  SlotStatus slot_status(u32 slot) const { return slot_statuses_[slot]; }
  // The decision table row recovery chose for the slot.
  const RecoveryCase& recovery_case_of(u32 slot) const {
    TALLY_ASSERT(status_ == Status::recovered || status_ == Status::inspected);
    return recovery_cases()[recovery_case_indexes_[slot]];
  }
  // How many slots recovery decided torn (truncated).
  u32 torn_count() const { return torn_count_; }
  // What recovery read in a slot's copies: for a faulty slot, the newest op either copy names
  // when one verified (a redundant header is written only after its prepare is durable, so no
  // write that completed, hence none acknowledged, can be of a higher op), none when neither did.
  // The op and view of the slot's redundant header as recovery read it, if it verified: the
  // last entry of the slot whose write completed (the one that may have been acknowledged).
  struct HeaderCopy {
    u64 op;
    u32 view;
  };
  std::optional<HeaderCopy> recovered_header_copy(u32 slot) const {
    TALLY_ASSERT(status_ == Status::recovered || status_ == Status::inspected);
    const SlotCopies& copies = copies_[slot];
    if (copies.header != Copy::ok) return std::nullopt;
    return HeaderCopy{.op = copies.header_op, .view = copies.header_view};
  }

  std::optional<u64> recovered_op_max(u32 slot) const {
    TALLY_ASSERT(status_ == Status::recovered || status_ == Status::inspected);
    const SlotCopies& copies = copies_[slot];
    std::optional<u64> op;
    if (copies.header == Copy::ok) op = copies.header_op;
    if (copies.prepare == Copy::ok && (!op || *op < copies.prepare_op)) op = copies.prepare_op;
    if (copies.header == Copy::empty && !op) op = 0;
    return op;
  }

  // The highest op among the log's entries: those recovery trusted, and those written (or being
  // written) since; none for an empty log.
  std::optional<u64> op_max() const { return op_max_; }

  // The header of `op`, if the log holds that op (not a faulty, empty or older entry).
  const Header* header_with_op(u64 op) const {
    const Header& header = headers_[slot_for_op(op)];
    if (header.prepare.operation == Operation::reserved || header.prepare.op != op) return nullptr;
    TALLY_ASSERT(checksum_valid(header));
    return &header;
  }

  bool recovered() const { return status_ == Status::recovered; }
  u32 writes_in_flight() const { return writes_.count(); }
  u32 reads_in_flight() const { return reads_count_; }

  // Whether a write to this slot is in flight.
  bool writing(u32 slot) const {
    for (const Write* write : writes_) {
      if (write->slot_ == slot) return true;
    }
    return false;
  }

  // -------------------------------------------------------------------------------------------
  // Writing.

  // Writes a prepare to slot op % slot_count, then its header sector; `callback` runs once both
  // are durable. `message` is the prepare padded to a whole number of sectors: its length is
  // sector_ceil(header.size), its address sector-aligned, its padding zero. The header becomes
  // the slot's entry at once (dirty until durable); a write completing makes the slot clean and
  // no longer faulty.
  void write_prepare(Write* write, void (*callback)(Write*), std::span<const std::byte> message) {
    TALLY_ASSERT(status_ == Status::recovered);
    TALLY_ASSERT(!writes_.full(), "more than %u WAL writes in flight", wal_write_count_max);
    // Alone, one write at a time (as TigerBeetle does): then a crash can tear only the op after
    // the head, which recovery truncates; an op torn below the head would be faulty, and a
    // single replica cannot repair it.
    TALLY_ASSERT(!options_.solo || writes_.empty(), "a solo replica writes one prepare at a time");
    TALLY_ASSERT(callback != nullptr);
    TALLY_ASSERT(message.size() >= sector_size && message.size() % sector_size == 0);
    TALLY_ASSERT(reinterpret_cast<std::uintptr_t>(message.data()) % sector_size == 0);

    const Header header = header_read(message.first<header_size>());
    prepare_assert(header, message);
    const u32 slot = slot_for_op(header.prepare.op);
    TALLY_ASSERT(!writing(slot), "a write to slot %u is already in flight", slot);
    // Overwriting an entry with an older op would lose the newer one (a VSR bug).
    TALLY_ASSERT(headers_[slot].prepare.operation == Operation::reserved ||
                     headers_[slot].prepare.op <= header.prepare.op,
                 "slot %u: op %llu over op %llu", slot,
                 static_cast<unsigned long long>(header.prepare.op),
                 static_cast<unsigned long long>(headers_[slot].prepare.op));

    write->wal_ = this;
    write->callback_ = callback;
    write->header_ = header;
    write->slot_ = slot;
    write->buffer_index_ = sector_buffers_free_.pop();
    write->next_ = nullptr;
    write->storage_write_.context = write;
    writes_.push(write);

    headers_[slot] = header;
    flag_set(dirty_, dirty_count_, slot);
    op_max_advance(header.prepare.op);
    storage_.write(&write->storage_write_, write_prepare_callback, message,
                   layout_.wal_prepare_offset(slot));
  }

  // -------------------------------------------------------------------------------------------
  // Reading.

  // Reads the prepare of (op, checksum) into `buffer` (sector-aligned, at least
  // message_size_max bytes) and verifies it. A read that fails to verify the entry this Wal
  // believed clean marks the slot faulty (and dirty).
  void read_prepare(Read* read, void (*callback)(Read*), u64 op, u128 checksum,
                    std::span<std::byte> buffer) {
    TALLY_ASSERT(status_ == Status::recovered);
    TALLY_ASSERT(reads_count_ < wal_read_count_max, "more than %u WAL reads in flight",
                 wal_read_count_max);
    TALLY_ASSERT(buffer.size() >= message_size_max_);
    TALLY_ASSERT(reinterpret_cast<std::uintptr_t>(buffer.data()) % sector_size == 0);

    const u32 slot = slot_for_op(op);
    const Header& known = headers_[slot];
    // The size is known when the entry is the one asked for; otherwise the slot may still hold
    // it (e.g. a slot recovery could not vouch for), so read all of it.
    const bool expected = known.prepare.op == op && known.checksum == checksum &&
                          known.prepare.operation != Operation::reserved;
    const u64 size = expected ? size_sector_ceil(known.size) : message_size_max_;

    read->status = PrepareStatus::faulty;
    read->op = op;
    read->checksum = checksum;
    read->buffer = buffer;
    read->wal_ = this;
    read->callback_ = callback;
    read->storage_read_.context = read;
    reads_count_ += 1;
    storage_.read(&read->storage_read_, read_prepare_callback, buffer.first(size),
                  layout_.wal_prepare_offset(slot));
  }

  // -------------------------------------------------------------------------------------------
  // For the VSR layer: changing the log without writing.

  // The log's entry for header.op is `header`, whose prepare this replica does not have yet:
  // the slot becomes dirty (a later write_prepare fills it). A faulty slot whose header was
  // unknown stays faulty: this replica may have held that prepare before the crash, so it must
  // not deny having it. A slot that held another header is no longer faulty: this one it never
  // had.
  void set_header_as_dirty(const Header& header) {
    TALLY_ASSERT(status_ == Status::recovered);
    TALLY_ASSERT(checksum_valid(header) && header.command == Command::prepare);
    TALLY_ASSERT(header.cluster == options_.cluster);
    TALLY_ASSERT(header.prepare.operation != Operation::reserved);
    const u32 slot = slot_for_op(header.prepare.op);
    TALLY_ASSERT(!writing(slot));
    const Header& current = headers_[slot];
    if (current.checksum == header.checksum) {
      TALLY_ASSERT(current.prepare.op == header.prepare.op);
      return;
    }
    TALLY_ASSERT(current.prepare.operation == Operation::reserved ||
                     current.prepare.op <= header.prepare.op,
                 "replacing op %llu with the older op %llu",
                 static_cast<unsigned long long>(current.prepare.op),
                 static_cast<unsigned long long>(header.prepare.op));
    if (current.prepare.operation != Operation::reserved) {
      flag_clear(faulty_, faulty_count_, slot);
    }
    headers_[slot] = header;
    flag_set(dirty_, dirty_count_, slot);
    op_max_advance(header.prepare.op);
  }

  // Removes the slot's entry (a view change truncates the log): the reserved header, clean and
  // not faulty. The disk is not touched; the redundant ring keeps what is durable.
  void remove_entry(u32 slot) {
    TALLY_ASSERT(status_ == Status::recovered);
    TALLY_ASSERT(slot < slot_count_ && !writing(slot));
    headers_[slot] = wal_format_header(options_.cluster, slot);
    flag_clear(dirty_, dirty_count_, slot);
    flag_clear(faulty_, faulty_count_, slot);
    slot_statuses_[slot] = SlotStatus::empty;
    op_max_recompute();
  }

  // -------------------------------------------------------------------------------------------
  // Format and recovery.

  // Writes the reserved header to every slot of both rings: an empty WAL. Optional (an all-zero
  // WAL is also empty) but makes every slot's copies checksummed. Run before recover().
  void format(Completion* completion, void (*callback)(Completion*)) {
    TALLY_ASSERT(status_ == Status::init);
    TALLY_ASSERT(callback != nullptr);
    completion->callback_ = callback;
    completion_ = completion;
    status_ = Status::formatting;
    job_next_ = 0;
    job_in_flight_ = 0;
    format_continue();
  }

  // Reads both rings and decides every slot (wal_recovery.hpp); rewrites the header sectors of
  // the slots it fixed; then runs `callback`. Must run once, before any write or read.
  void recover(Completion* completion, void (*callback)(Completion*),
               const RecoverOptions& options) {
    TALLY_ASSERT(status_ == Status::init);
    recover_options_ = options;
    TALLY_ASSERT(callback != nullptr);
    TALLY_ASSERT(writes_.empty() && reads_count_ == 0);
    completion->callback_ = callback;
    completion_ = completion;
    status_ = Status::recovering_headers;
    job_next_ = 0;
    job_in_flight_ = 0;
    for (u32 index = 0; index < wal_read_count_max; index += 1) {
      recovery_reads_[index].wal = this;
      recovery_reads_[index].index = index;
      recovery_reads_[index].storage_read.context = &recovery_reads_[index];
      recovery_reads_free_.push(index);
    }
    recover_headers_continue();
  }

 private:
  enum class Status : u8 {
    init,
    formatting,
    recovering_headers,
    recovering_prepares,
    recovering_fix,
    recovered,
    inspected,  // Recovered read-only: the statuses hold, nothing may be written.
  };

  // A header sector's write queue: `writing` lists the writes that the sector write in flight
  // covers (the first one lends its buffer and storage completion), `waiting` those that
  // arrived since and will go together in the next one.
  struct SectorQueue {
    Write* writing;
    Write* waiting_head;
    Write* waiting_tail;
  };

  // Internal reads and writes of format() and recover().
  struct JobRead {
    typename S::Read storage_read{};
    Wal* wal = nullptr;
    u32 index = 0;   // Also its buffer in recovery_buffers_.
    u32 target = 0;  // The ring sector or the slot being read.
    bool rest = false;  // Reading the prepare's sectors after the first.
  };
  struct JobWrite {
    typename S::Write storage_write{};
    Wal* wal = nullptr;
    u32 index = 0;  // Also its buffer in sector_buffers_.
  };

  static constexpr u8 sector_read_failed = 1 << 0;
  static constexpr u8 sector_fix = 1 << 1;

  static u64 size_sector_ceil(u64 size) {
    return (size + sector_size - 1) / sector_size * sector_size;
  }

  u32 sector_count() const { return slot_count_ / wal_headers_per_sector; }

  std::span<std::byte> sector_buffer(u32 index) {
    TALLY_ASSERT(index < wal_write_count_max);
    return {sector_buffers_.data() + u64{index} * sector_size, sector_size};
  }

  std::span<std::byte> recovery_buffer(u32 index) {
    TALLY_ASSERT(index < wal_read_count_max);
    return {recovery_buffers_.data() + u64{index} * message_size_max_, message_size_max_};
  }

  static void flag_set(base::LargeArray<u8>& flags, u32& count, u32 slot) {
    if (flags[slot] != 0) return;
    flags[slot] = 1;
    count += 1;
  }

  static void flag_clear(base::LargeArray<u8>& flags, u32& count, u32 slot) {
    if (flags[slot] == 0) return;
    TALLY_ASSERT(count > 0);
    flags[slot] = 0;
    count -= 1;
  }

  void op_max_advance(u64 op) {
    if (!op_max_ || *op_max_ < op) op_max_ = op;
  }

  void op_max_recompute() {
    op_max_.reset();
    for (u32 slot = 0; slot < slot_count_; slot += 1) {
      const Header& header = headers_[slot];
      if (header.prepare.operation != Operation::reserved) op_max_advance(header.prepare.op);
    }
  }

  // What a message handed to write_prepare() must be, asserted: a checksummed prepare of this
  // cluster, padded with zeros to `message`'s whole sectors.
  void prepare_assert(const Header& header, std::span<const std::byte> message) const {
    TALLY_ASSERT(checksum_valid(header));
    TALLY_ASSERT(header.command == Command::prepare);
    TALLY_ASSERT(header.cluster == options_.cluster);
    TALLY_ASSERT(header.prepare.operation != Operation::reserved);
    TALLY_ASSERT(header.size >= header_size && header.size <= message_size_max_,
                 "prepare size %u", header.size);
    TALLY_ASSERT(size_sector_ceil(header.size) == message.size(),
                 "message span %zu bytes for a %u-byte prepare", message.size(), header.size);
    for (u64 index = header.size; index < message.size(); index += 1) {
      TALLY_ASSERT(message[index] == std::byte{0}, "sector padding must be zero");
    }
    TALLY_ASSERT_SLOW(checksum_body_valid(
        header, message.subspan(header_size, header.size - header_size)));
  }

  // The prepare copy found in `bytes` (read from slot `slot`), verified as far as `bytes` goes.
  Copy prepare_verify(std::span<const std::byte> bytes, u32 slot) const {
    TALLY_ASSERT(bytes.size() >= sector_size && bytes.size() % sector_size == 0);
    const Header header = header_read(bytes.first<header_size>());
    const Copy copy = classify_header(header, options_.cluster, slot, slot_count_,
                                      message_size_max_);
    if (copy != Copy::ok) return copy;
    if (size_sector_ceil(header.size) > bytes.size()) return Copy::bad;
    if (!checksum_body_valid(header, bytes.subspan(header_size, header.size - header_size))) {
      return Copy::bad;
    }
    // The padding is not covered by any checksum; a sector that is not what was written is not
    // trusted either.
    for (u64 index = header.size; index < size_sector_ceil(header.size); index += 1) {
      if (bytes[index] != std::byte{0}) return Copy::bad;
    }
    return Copy::ok;
  }

  // -------------------------------------------------------------------------------------------
  // Write path.

  static void write_prepare_callback(typename S::Write* storage_write) {
    Write* write = static_cast<Write*>(storage_write->context);
    Wal& wal = *write->wal_;
    TALLY_ASSERT(wal.status_ == Status::recovered);
    // Nothing may change a slot while it is being written.
    TALLY_ASSERT(wal.headers_[write->slot_].checksum == write->header_.checksum);

    // Only now may the redundant copy name this prepare: it is durable.
    wal.redundant_[write->slot_] = write->header_;
    const u32 sector = write->slot_ / wal_headers_per_sector;
    SectorQueue& queue = wal.sectors_[sector];
    if (queue.writing == nullptr) {
      queue.writing = write;
      wal.header_sector_write(sector, write);
    } else {
      // The sector write in flight may have copied the ring before this header was in it.
      if (queue.waiting_tail == nullptr) {
        queue.waiting_head = write;
      } else {
        queue.waiting_tail->next_ = write;
      }
      queue.waiting_tail = write;
    }
  }

  // Writes the ring sector as it is now, through `leader`'s buffer and storage completion.
  void header_sector_write(u32 sector, Write* leader) {
    TALLY_ASSERT(sectors_[sector].writing == leader);
    TALLY_ASSERT(leader->slot_ / wal_headers_per_sector == sector);
    const std::span<std::byte> buffer = sector_buffer(leader->buffer_index_);
    std::memcpy(buffer.data(), &redundant_[sector * wal_headers_per_sector], sector_size);
    storage_.write(&leader->storage_write_, header_sector_callback, buffer,
                   layout_.wal_header_sector_offset(sector * wal_headers_per_sector));
  }

  static void header_sector_callback(typename S::Write* storage_write) {
    Write* leader = static_cast<Write*>(storage_write->context);
    Wal& wal = *leader->wal_;
    const u32 sector = leader->slot_ / wal_headers_per_sector;
    SectorQueue& queue = wal.sectors_[sector];
    TALLY_ASSERT(queue.writing == leader);

    // Start the next sector write before any callback runs, so that writes a callback starts
    // queue behind it in order.
    Write* done = queue.writing;
    queue.writing = queue.waiting_head;
    queue.waiting_head = nullptr;
    queue.waiting_tail = nullptr;
    if (queue.writing != nullptr) wal.header_sector_write(sector, queue.writing);

    while (done != nullptr) {
      Write* next = done->next_;
      done->next_ = nullptr;
      wal.write_complete(done);
      done = next;
    }
  }

  void write_complete(Write* write) {
    const u32 slot = write->slot_;
    TALLY_ASSERT(headers_[slot].checksum == write->header_.checksum);
    TALLY_ASSERT(redundant_[slot].checksum == write->header_.checksum);
    flag_clear(dirty_, dirty_count_, slot);
    flag_clear(faulty_, faulty_count_, slot);
    slot_statuses_[slot] = SlotStatus::valid;

    bool found = false;
    for (u32 index = 0; index < writes_.count(); index += 1) {
      if (writes_.at(index) != write) continue;
      writes_.swap_remove(index);
      found = true;
      break;
    }
    TALLY_ASSERT(found);
    sector_buffers_free_.push(write->buffer_index_);
    write->callback_(write);
  }

  // -------------------------------------------------------------------------------------------
  // Read path.

  static void read_prepare_callback(typename S::Read* storage_read) {
    Read* read = static_cast<Read*>(storage_read->context);
    Wal& wal = *read->wal_;
    TALLY_ASSERT(wal.reads_count_ > 0);
    wal.reads_count_ -= 1;

    const u32 slot = wal.slot_for_op(read->op);
    bool ok = false;
    if (storage_read->result == ReadResult::ok &&
        wal.prepare_verify(storage_read->buffer, slot) == Copy::ok) {
      const Header header = header_read(read->buffer.template first<header_size>());
      ok = header.prepare.op == read->op && header.checksum == read->checksum;
    }
    read->status = ok ? PrepareStatus::ok : PrepareStatus::faulty;

    const Header& known = wal.headers_[slot];
    if (!ok && known.prepare.op == read->op && known.checksum == read->checksum &&
        !wal.dirty(slot) && !wal.writing(slot)) {
      // The entry was believed durable and clean: the disk lost it since. The header stays, so
      // that the VSR layer knows which prepare to fetch.
      flag_set(wal.dirty_, wal.dirty_count_, slot);
      flag_set(wal.faulty_, wal.faulty_count_, slot);
      wal.slot_statuses_[slot] = SlotStatus::faulty;
    }
    read->callback_(read);
  }

  // -------------------------------------------------------------------------------------------
  // Format.

  // Writes the ring sectors (targets 0 .. sector_count - 1), then the first sector of every
  // prepare slot, up to wal_write_count_max at a time.
  void format_continue() {
    TALLY_ASSERT(status_ == Status::formatting);
    const u32 target_count = sector_count() + slot_count_;
    while (job_in_flight_ < wal_write_count_max && job_next_ < target_count) {
      const u32 target = job_next_;
      job_next_ += 1;
      JobWrite& job = job_writes_[job_write_acquire()];
      const std::span<std::byte> buffer = sector_buffer(job.index);
      std::memset(buffer.data(), 0, sector_size);
      u64 offset = 0;
      if (target < sector_count()) {
        for (u32 index = 0; index < wal_headers_per_sector; index += 1) {
          const Header header =
              wal_format_header(options_.cluster, target * wal_headers_per_sector + index);
          std::memcpy(buffer.data() + u64{index} * header_size, &header, header_size);
        }
        offset = layout_.wal_header_sector_offset(target * wal_headers_per_sector);
      } else {
        const u32 slot = target - sector_count();
        const Header header = wal_format_header(options_.cluster, slot);
        std::memcpy(buffer.data(), &header, header_size);
        offset = layout_.wal_prepare_offset(slot);
      }
      job_in_flight_ += 1;
      storage_.write(&job.storage_write, format_callback, buffer, offset);
    }
    if (job_in_flight_ == 0 && job_next_ == target_count) {
      status_ = Status::init;
      completion_done();
    }
  }

  // Claims a job write that is not in flight.
  u32 job_write_acquire() {
    for (u32 index = 0; index < wal_write_count_max; index += 1) {
      if (job_writes_busy_[index]) continue;
      job_writes_busy_[index] = true;
      job_writes_[index].wal = this;
      job_writes_[index].index = index;
      job_writes_[index].storage_write.context = &job_writes_[index];
      return index;
    }
    TALLY_UNREACHABLE();
  }

  static void format_callback(typename S::Write* storage_write) {
    JobWrite* job = static_cast<JobWrite*>(storage_write->context);
    Wal& wal = *job->wal;
    TALLY_ASSERT(wal.job_writes_busy_[job->index]);
    wal.job_writes_busy_[job->index] = false;
    wal.job_in_flight_ -= 1;
    wal.format_continue();
  }

  void completion_done() {
    Completion* completion = completion_;
    completion_ = nullptr;
    TALLY_ASSERT(completion != nullptr);
    completion->callback_(completion);
  }

  // -------------------------------------------------------------------------------------------
  // Recovery: read the headers ring, sector by sector (a latent sector error then costs one
  // sector's 16 headers, not the ring).

  void recover_headers_continue() {
    TALLY_ASSERT(status_ == Status::recovering_headers);
    while (!recovery_reads_free_.empty() && job_next_ < sector_count()) {
      JobRead& job = recovery_reads_[recovery_reads_free_.pop()];
      job.target = job_next_;
      job.rest = false;
      job_next_ += 1;
      job_in_flight_ += 1;
      const u32 slot_first = job.target * wal_headers_per_sector;
      const std::span<std::byte> buffer{reinterpret_cast<std::byte*>(&redundant_[slot_first]),
                                        sector_size};
      storage_.read(&job.storage_read, recover_headers_callback, buffer,
                    layout_.wal_header_sector_offset(slot_first));
    }
    if (job_in_flight_ == 0 && job_next_ == sector_count()) {
      status_ = Status::recovering_prepares;
      job_next_ = 0;
      recover_prepares_continue();
    }
  }

  static void recover_headers_callback(typename S::Read* storage_read) {
    JobRead* job = static_cast<JobRead*>(storage_read->context);
    Wal& wal = *job->wal;
    TALLY_ASSERT(wal.status_ == Status::recovering_headers);
    if (storage_read->result != ReadResult::ok) {
      wal.sector_flags_[job->target] |= sector_read_failed;
    }
    wal.job_in_flight_ -= 1;
    wal.recovery_reads_free_.push(job->index);
    wal.recover_headers_continue();
  }

  // Then every prepare slot: its first sector, and if that holds a prepare header, the rest of
  // the message, so that the body checksum is verified too.
  void recover_prepares_continue() {
    TALLY_ASSERT(status_ == Status::recovering_prepares);
    while (!recovery_reads_free_.empty() && job_next_ < slot_count_) {
      JobRead& job = recovery_reads_[recovery_reads_free_.pop()];
      job.target = job_next_;
      job.rest = false;
      job_next_ += 1;
      job_in_flight_ += 1;
      storage_.read(&job.storage_read, recover_prepare_callback,
                    recovery_buffer(job.index).first(sector_size),
                    layout_.wal_prepare_offset(job.target));
    }
    if (job_in_flight_ == 0 && job_next_ == slot_count_) recover_decide();
  }

  static void recover_prepare_callback(typename S::Read* storage_read) {
    JobRead* job = static_cast<JobRead*>(storage_read->context);
    Wal& wal = *job->wal;
    TALLY_ASSERT(wal.status_ == Status::recovering_prepares);
    const u32 slot = job->target;
    const std::span<std::byte> buffer = wal.recovery_buffer(job->index);

    Copy copy = Copy::bad;
    if (storage_read->result == ReadResult::ok) {
      const Header header = header_read(std::span<const std::byte>(buffer).first<header_size>());
      wal.prepare_copies_[slot] = header;
      copy = classify_header(header, wal.options_.cluster, slot, wal.slot_count_,
                             wal.message_size_max_);
      const u64 size = size_sector_ceil(header.size);
      if (copy == Copy::ok && !job->rest && size > sector_size) {
        // The header looks right: read the rest of the message to verify the body.
        job->rest = true;
        wal.storage_.read(&job->storage_read, recover_prepare_callback,
                          buffer.subspan(sector_size, size - sector_size),
                          wal.layout_.wal_prepare_offset(slot) + sector_size);
        return;
      }
      if (copy == Copy::ok) copy = wal.prepare_verify(buffer.first(size), slot);
    }
    wal.copies_[slot].prepare = copy;
    wal.job_in_flight_ -= 1;
    wal.recovery_reads_free_.push(job->index);
    wal.recover_prepares_continue();
  }

  // Classifies both copies of every slot, applies the table (wal_recovery.hpp), and decides.
  void recover_decide() {
    TALLY_ASSERT(status_ == Status::recovering_prepares);
    TALLY_ASSERT(job_in_flight_ == 0 && recovery_reads_free_.full());

    // The highest op that any ok copy claims, trusted or not.
    std::optional<u64> op_max_untrusted;
    for (u32 slot = 0; slot < slot_count_; slot += 1) {
      SlotCopies& copies = copies_[slot];
      const u32 sector = slot / wal_headers_per_sector;
      copies.header = (sector_flags_[sector] & sector_read_failed) != 0
                          ? Copy::bad
                          : classify_header(redundant_[slot], options_.cluster, slot,
                                            slot_count_, message_size_max_);
      copies.relation = Relation::none;
      if (copies.header == Copy::ok) {
        copies.header_op = redundant_[slot].prepare.op;
        copies.header_view = redundant_[slot].view;
        if (!op_max_untrusted || *op_max_untrusted < copies.header_op) {
          op_max_untrusted = copies.header_op;
        }
      }
      if (copies.prepare == Copy::ok) {
        copies.prepare_op = prepare_copies_[slot].prepare.op;
        if (!op_max_untrusted || *op_max_untrusted < copies.prepare_op) {
          op_max_untrusted = copies.prepare_op;
        }
      }
      if (copies.header == Copy::ok && copies.prepare == Copy::ok) {
        copies.relation = relation_of(redundant_[slot], prepare_copies_[slot]);
      }
    }

    const std::span<const RecoveryCase> cases = recovery_cases();
    for (u32 slot = 0; slot < slot_count_; slot += 1) {
      const RecoveryCase& row = recovery_case(copies_[slot], op_max_untrusted);
      recovery_case_indexes_[slot] = static_cast<u8>(&row - cases.data());
      decisions_[slot] = options_.solo ? row.decision_solo : row.decision;
    }
    torn_count_ = recovery_torn(copies_.first(slot_count_), decisions_.first(slot_count_),
                                op_max_untrusted, recover_options_.op_checkpoint,
                                wal_write_count_max);

    for (u32 slot = 0; slot < slot_count_; slot += 1) recover_slot(slot);

    // Entries from an older wrap than the head: the op that belongs there now is missing.
    op_max_recompute();
    for (u32 slot = 0; slot < slot_count_; slot += 1) {
      const Header& header = headers_[slot];
      if (header.prepare.operation == Operation::reserved) continue;
      if (header.prepare.op + slot_count_ <= *op_max_) slot_statuses_[slot] = SlotStatus::stale;
    }
    TALLY_ASSERT(!op_max_ || !op_max_untrusted || *op_max_ <= *op_max_untrusted);

    if (recover_options_.read_only) {
      status_ = Status::inspected;
      completion_done();
      return;
    }
    status_ = Status::recovering_fix;
    job_next_ = 0;
    recover_fix_continue();
  }

  void recover_slot(u32 slot) {
    const SlotCopies& copies = copies_[slot];
    const Header reserved = wal_format_header(options_.cluster, slot);
    const u32 sector = slot / wal_headers_per_sector;
    flag_clear(dirty_, dirty_count_, slot);
    flag_clear(faulty_, faulty_count_, slot);
    switch (decisions_[slot]) {
      case Decision::valid:
        TALLY_ASSERT(copies.relation == Relation::same);
        headers_[slot] = redundant_[slot];
        slot_statuses_[slot] = SlotStatus::valid;
        break;
      case Decision::empty:
        TALLY_ASSERT(copies.header == Copy::empty && copies.prepare == Copy::empty);
        headers_[slot] = reserved;
        slot_statuses_[slot] = SlotStatus::empty;
        break;
      case Decision::fix:
        // Only a prepare copy that verifies, body included, is ever trusted alone.
        TALLY_ASSERT(copies.prepare == Copy::ok || copies.prepare == Copy::empty);
        headers_[slot] = copies.prepare == Copy::ok ? prepare_copies_[slot] : reserved;
        redundant_[slot] = headers_[slot];
        slot_statuses_[slot] = copies.prepare == Copy::ok ? SlotStatus::fixed : SlotStatus::empty;
        // Dirty until recover_fix_continue() has rewritten the sector.
        flag_set(dirty_, dirty_count_, slot);
        sector_flags_[sector] |= sector_fix;
        break;
      case Decision::faulty:
        headers_[slot] = reserved;
        // A redundant copy that verifies stays as it is (it keeps the slot faulty on the next
        // recovery too); a bad one becomes deliberately bad, never zero (which reads as empty).
        if (copies.header != Copy::ok) redundant_[slot] = wal_faulty_header(options_.cluster, slot);
        flag_set(dirty_, dirty_count_, slot);
        flag_set(faulty_, faulty_count_, slot);
        slot_statuses_[slot] = SlotStatus::faulty;
        break;
      case Decision::torn:
        TALLY_ASSERT(copies.prepare == Copy::bad && copies.header != Copy::bad);
        // The redundant copy keeps the previous wrap (what is durable), so that a later
        // recovery sees the same torn prepare.
        headers_[slot] = reserved;
        slot_statuses_[slot] = SlotStatus::torn;
        break;
    }
    TALLY_ASSERT(!faulty(slot) || dirty(slot));
    // A sector that could not be read is rewritten from memory, which heals it.
    if ((sector_flags_[sector] & sector_read_failed) != 0) sector_flags_[sector] |= sector_fix;
  }

  // Rewrites every header sector that holds a fixed slot (or could not be read).
  void recover_fix_continue() {
    TALLY_ASSERT(status_ == Status::recovering_fix);
    while (job_in_flight_ < wal_write_count_max && job_next_ < sector_count()) {
      const u32 sector = job_next_;
      job_next_ += 1;
      if ((sector_flags_[sector] & sector_fix) == 0) continue;
      JobWrite& job = job_writes_[job_write_acquire()];
      job.storage_write.context = &job;
      fix_sectors_[job.index] = sector;
      const std::span<std::byte> buffer = sector_buffer(job.index);
      std::memcpy(buffer.data(), &redundant_[sector * wal_headers_per_sector], sector_size);
      job_in_flight_ += 1;
      storage_.write(&job.storage_write, recover_fix_callback, buffer,
                     layout_.wal_header_sector_offset(sector * wal_headers_per_sector));
    }
    if (job_in_flight_ == 0 && job_next_ == sector_count()) recover_done();
  }

  static void recover_fix_callback(typename S::Write* storage_write) {
    JobWrite* job = static_cast<JobWrite*>(storage_write->context);
    Wal& wal = *job->wal;
    TALLY_ASSERT(wal.status_ == Status::recovering_fix);
    const u32 sector = wal.fix_sectors_[job->index];
    for (u32 index = 0; index < wal_headers_per_sector; index += 1) {
      const u32 slot = sector * wal_headers_per_sector + index;
      if (!wal.faulty(slot)) flag_clear(wal.dirty_, wal.dirty_count_, slot);
    }
    wal.sector_flags_[sector] = 0;
    wal.job_writes_busy_[job->index] = false;
    wal.job_in_flight_ -= 1;
    wal.recover_fix_continue();
  }

  void recover_done() {
    TALLY_ASSERT(dirty_count_ == faulty_count_);
    for (u32 slot = 0; slot < slot_count_; slot += 1) {
      const Header& header = headers_[slot];
      TALLY_ASSERT(checksum_valid(header) && header.cluster == options_.cluster);
      TALLY_ASSERT(dirty(slot) == faulty(slot));
      if (header.prepare.operation == Operation::reserved) {
        TALLY_ASSERT(header.prepare.op == slot);
      } else {
        TALLY_ASSERT(slot_for_op(header.prepare.op) == slot && !faulty(slot));
        TALLY_ASSERT(std::memcmp(&header, &redundant_[slot], sizeof(Header)) == 0);
      }
    }
    status_ = Status::recovered;
    completion_done();
  }

  S& storage_;
  const Layout layout_;
  const WalOptions options_;
  const u32 slot_count_;
  const u32 message_size_max_;
  Status status_ = Status::init;

  base::LargeArray<Header> headers_;    // The log: what VSR uses.
  base::LargeArray<Header> redundant_;  // The headers ring as durable (or about to be written).
  base::LargeArray<Header> prepare_copies_;  // Recovery: the header at the start of each slot.
  base::LargeArray<SlotCopies> copies_;      // Recovery: both copies classified.
  base::LargeArray<Decision> decisions_;     // Recovery: the table's decisions.
  base::LargeArray<u8> dirty_;
  base::LargeArray<u8> faulty_;
  u32 dirty_count_ = 0;
  u32 faulty_count_ = 0;
  base::LargeArray<SlotStatus> slot_statuses_;
  base::LargeArray<u8> recovery_case_indexes_;
  u32 torn_count_ = 0;
  std::optional<u64> op_max_;

  // One queue per header sector, and flags per sector for recovery.
  base::LargeArray<SectorQueue> sectors_;
  base::LargeArray<u8> sector_flags_;

  // One sector buffer per write in flight (for its header sector write); recovery and format
  // use them too, when no prepare write can be in flight.
  base::LargeArray<std::byte> sector_buffers_;
  base::BoundedArray<u32, wal_write_count_max> sector_buffers_free_;
  // One message buffer per recovery read.
  base::LargeArray<std::byte> recovery_buffers_;

  base::BoundedArray<Write*, wal_write_count_max> writes_;
  u32 reads_count_ = 0;

  // format() and recover().
  Completion* completion_ = nullptr;
  RecoverOptions recover_options_;
  u32 job_next_ = 0;
  u32 job_in_flight_ = 0;
  std::array<JobRead, wal_read_count_max> recovery_reads_{};
  base::BoundedArray<u32, wal_read_count_max> recovery_reads_free_;
  std::array<JobWrite, wal_write_count_max> job_writes_{};
  std::array<bool, wal_write_count_max> job_writes_busy_{};
  std::array<u32, wal_write_count_max> fix_sectors_{};
};

}  // namespace tally::journal
