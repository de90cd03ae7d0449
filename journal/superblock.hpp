// The superblock: the root of a data file. It says whose file this is (cluster, replica), where
// the zones are (LayoutConfig), the replica's durable VSR state (view, log_view, commit_max) and
// which checkpoint to start from. Everything else in the file is found from here.
//
// On disk: superblock_copies (4) copies at the start of the file, each superblock_copy_size
// (8 KiB) bytes, copy i at offset i * 8 KiB. Every copy of one version is identical except for
// its `copy` field (the slot it was written for), which the checksum excludes, so the four
// copies of one version share one checksum. Each version has a `sequence` one above its parent's
// and records its parent's checksum, so consecutive versions form a verifiable chain.
//
// Reading (open): read all four copies; ignore copies that cannot be read, fail their checksum,
// or hold invalid fields; group the rest by checksum, counting distinct `copy` values (a write
// misdirected into another slot is not counted twice); a group of at least quorum_open (2)
// copies is a quorum; the working superblock is the quorum of the highest sequence. No quorum:
// "no valid superblock quorum". Then repair: rewrite every slot that does not hold the working
// superblock, so that the next update starts from four good copies (see SuperblockStore).
//
// Writing (format, update, repair): one copy at a time, each write started when the previous
// one has completed; then all four copies are read back and any slot that does not hold the new
// version is rewritten (up to verify_rounds_max rounds), so a completed format or update means
// four good copies, not merely four writes that the device acknowledged.
//
// What survives (the claim the tests check):
// - At rest (no write in flight), any 2 of the 4 copies damaged in any way (bit flip, latent
//   sector error, torn, overwritten by a misdirected write): open() finds the superblock.
// - A crash at any point of update() or of open()'s repair, whatever happens to the write in
//   flight (torn, lost, landed, or misdirected onto another slot, there or as well): open()
//   finds the old or the new version, never anything else, never "no quorum".
// - A crash plus one more damaged slot (a bit flip, a latent sector error, an earlier write of
//   the same update misdirected onto another slot) survives when the crash comes after copy 2
//   is complete, or before copy 0 is and the write in flight was not misdirected (see the table
//   at SuperblockStore); otherwise it may report "no quorum", never a wrong superblock.
//   Surviving that too would need a second set of copies written alternately (copy-on-write);
//   see docs/data-file.md.
// - A misdirected write that straddles two slots damages two copies, and counts as two faults.
// - A crash during format() leaves sequence 1 or no quorum: the file was never formatted.
#pragma once

#include <array>
#include <cstddef>
#include <cstring>
#include <span>
#include <type_traits>

#include "journal/layout.hpp"
#include "journal/storage.hpp"
#include "src/base/assert.hpp"
#include "tally/checksum.hpp"
#include "tally/header.hpp"
#include "tally/types.hpp"

namespace tally::journal {

// "TALLYSB1" as little-endian bytes.
inline constexpr u64 superblock_magic = 0x3142'5359'4c4c'4154;
inline constexpr u32 superblock_version = 1;
inline constexpr u32 quorum_open = 2;
inline constexpr u32 verify_rounds_max = 4;
inline constexpr u32 checkpoint_state_size = 2048;
inline constexpr u32 replica_count_max = 6;
// The checksum covers every byte from `version` on: all but itself and `copy`.
inline constexpr u32 superblock_checksum_offset = 20;

// The replica's VSR state that must survive a restart. Monotonic across updates.
struct VsrState {
  u32 view;
  u32 log_view;  // The last view in which the replica's status was normal; <= view.
  u64 commit_max;

  friend constexpr bool operator==(const VsrState&, const VsrState&) = default;
};
static_assert(sizeof(VsrState) == 16);
static_assert(std::has_unique_object_representations_v<VsrState>);

// The view headers: the newest prepare headers of the log this replica stands for in its view,
// newest first, written with the view (docs/vsr-protocol.md, "View change"). While the replica
// is normal (log_view == view) they are the start_view headers of its view; while it is in a
// view change (log_view < view) they are the headers its do_view_change carries. At most a
// pipeline's worth of uncommitted ops and the last committed one. A header with checksum 0 is a
// blank: the replica had no header for that op.
inline constexpr u32 view_headers_max = 9;

// The checkpoint to start from. `state` is opaque here: the VSR issue defines what goes in it
// (the state machine's CheckpointState and the reference to the grid's manifest).
struct CheckpointReference {
  u64 op;                // The last op the checkpoint includes; replay starts after it.
  u64 commit_timestamp;  // The timestamp of that op.
  std::array<u8, checkpoint_state_size> state;

  friend constexpr bool operator==(const CheckpointReference&,
                                   const CheckpointReference&) = default;
};
static_assert(sizeof(CheckpointReference) == 16 + checkpoint_state_size);
static_assert(std::has_unique_object_representations_v<CheckpointReference>);

// One copy, as on disk:
//
//   offset  size  field
//        0    16  checksum          AEGIS-128L of bytes [20, 8192)
//       16     4  copy              slot written for, 0..3; not checksummed
//       20     4  version           superblock_version
//       24     8  magic             "TALLYSB1"
//       32    16  cluster
//       48    16  parent            checksum of sequence - 1; 0 for sequence 1
//       64     8  sequence          1 at format, +1 per update
//       72     1  replica
//       73     1  replica_count
//       74     6  reserved_replica  zero
//       80    32  layout            LayoutConfig
//      112    16  vsr_state         view, log_view, commit_max
//      128  2064  checkpoint        op, commit_timestamp, state (2048 opaque bytes)
//     2192     4  view_headers_count  0..view_headers_max
//     2196     2  view_headers_blanks_unknown  bit i: header i is a blank for a damaged slot
//     2198     1  view_headers_head_uncertain  1: taken from a log whose head was uncertain
//     2199     9  reserved_view     zero
//     2208  2304  view_headers      prepare headers, newest first; unused ones zero
//     4512     1  checkpoint_syncing  1: the checkpoint's blocks may not be here yet (state
//                                     sync: fetched from peers before the checkpoint is read)
//     4513  3679  reserved          zero: room for later fields
struct Superblock {
  u128 checksum;
  u32 copy;
  u32 version;
  u64 magic;
  u128 cluster;
  u128 parent;
  u64 sequence;
  u8 replica;
  u8 replica_count;
  std::array<u8, 6> reserved_replica;
  LayoutConfig layout;
  VsrState vsr_state;
  CheckpointReference checkpoint;
  u32 view_headers_count;
  u16 view_headers_blanks_unknown;
  u8 view_headers_head_uncertain;
  std::array<u8, 9> reserved_view;
  std::array<Header, view_headers_max> view_headers;
  u8 checkpoint_syncing;
  std::array<u8, superblock_copy_size - 4513> reserved;
};
static_assert(sizeof(Superblock) == superblock_copy_size);
static_assert(std::has_unique_object_representations_v<Superblock>);
static_assert(offsetof(Superblock, copy) == 16);
static_assert(offsetof(Superblock, version) == superblock_checksum_offset);
static_assert(offsetof(Superblock, cluster) == 32);
static_assert(offsetof(Superblock, sequence) == 64);
static_assert(offsetof(Superblock, layout) == 80);
static_assert(offsetof(Superblock, vsr_state) == 112);
static_assert(offsetof(Superblock, checkpoint) == 128);
static_assert(offsetof(Superblock, view_headers_count) == 2192);
static_assert(offsetof(Superblock, view_headers) == 2208);
static_assert(offsetof(Superblock, checkpoint_syncing) == 4512);
static_assert(offsetof(Superblock, reserved) == 4513);
static_assert(std::is_trivially_copyable_v<Superblock>);

// What open() concluded. Only `ok` gives a working superblock.
enum class SuperblockResult : u8 {
  ok = 0,
  no_quorum = 1,             // No version has 2 good copies.
  fork = 2,                  // Two versions of one sequence: never written by Tally.
  sequence_skipped = 3,      // A copy two or more sequences above the quorum's.
  parent_not_connected = 4,  // A copy of sequence - 1 that is not the quorum's parent.
};
const char* superblock_result_message(SuperblockResult result);

// One slot, as read.
enum class CopyStatus : u8 {
  valid = 0,
  read_error = 1,
  checksum_invalid = 2,  // Torn, corrupt, never written, or overwritten by something else.
  magic_invalid = 3,     // A valid checksum over something that is not a Tally superblock.
  version_unsupported = 4,
  fields_invalid = 5,  // Checksummed, but values out of range: a bug wrote it.
};
const char* copy_status_name(CopyStatus status);

struct CopyReport {
  CopyStatus status;
  u32 copy;  // The copy field as read (meaningful when the status is valid).
  u64 sequence;
  u128 checksum;
  bool working;  // In the working quorum (a valid copy with the working checksum).
};

// open()'s decision over four copies, a pure function: see superblock_quorum().
struct QuorumDecision {
  SuperblockResult result;
  u32 working_slot;  // A slot holding the working superblock; meaningful when result is ok.
  u32 quorum_count;  // Distinct copies in the working quorum.
  std::array<CopyReport, superblock_copies> reports;
  // The slots to rewrite, in the order to rewrite them (see superblock_repair_order()).
  std::array<u8, superblock_copies> repair_order;
  u32 repair_count;
};

struct SuperblockFormatOptions {
  u128 cluster;
  u8 replica;
  u8 replica_count;
  LayoutConfig layout;
  // The view the replica starts in: 0, except for a replica whose data file was lost and is
  // recreated (`tally recover`, docs/data-file.md "Replacing a lost data file"): a view above
  // any its lost file may have taken part in, with log_view 0.
  u32 view = 0;
};

// The view headers an update writes (the superblock's own are zero beyond `count`).
struct ViewHeaders {
  u32 count = 0;
  // Bit i: headers[i] is a blank for an op whose WAL slot was damaged when the headers were
  // taken: the slot may have held that op, acknowledged, so the blank is never a nack (even
  // once repair has made the slot whole again).
  u16 blanks_unknown = 0;
  // Taken from a log whose head was uncertain (a damaged slot above it may hold an op this
  // replica acknowledged): the headers' head is then no proof that nothing above it was.
  bool head_uncertain = false;
  std::array<Header, view_headers_max> headers{};

  std::span<const Header> span() const { return std::span(headers).first(count); }
  friend bool operator==(const ViewHeaders& a, const ViewHeaders& b) {
    if (a.count != b.count || a.blanks_unknown != b.blanks_unknown ||
        a.head_uncertain != b.head_uncertain) {
      return false;
    }
    for (u32 index = 0; index < a.count; index += 1) {
      if (a.headers[index].checksum != b.headers[index].checksum) return false;
    }
    return true;
  }
};

struct SuperblockUpdate {
  VsrState vsr_state;
  CheckpointReference checkpoint;
  ViewHeaders view_headers;
  bool checkpoint_syncing = false;
};

// The superblock's view headers, as an update would write them.
ViewHeaders superblock_view_headers(const Superblock& superblock);

// Pure functions over copies.
u128 superblock_checksum(const Superblock& superblock);
// Why the fields are invalid (nullptr if valid): magic, version and checksum aside.
const char* superblock_fields_error(const Superblock& superblock);
CopyStatus superblock_copy_status(const Superblock& superblock);
// Sequence 1, as format() writes it; checksum set, copy 0.
Superblock superblock_format(const SuperblockFormatOptions& options);
// The successor of `parent` with the new state; checksum set, copy 0. Asserts monotonicity.
Superblock superblock_next(const Superblock& parent, const SuperblockUpdate& update);
// Does `next` follow from `previous` without going back (view, log_view, commit_max, checkpoint)?
bool superblock_monotonic(const Superblock& previous, const Superblock& next);
// True if the two copies hold the same version (ignores `copy`).
bool superblock_equal(const Superblock& a, const Superblock& b);
QuorumDecision superblock_quorum(std::span<const Superblock, superblock_copies> copies,
                                 std::span<const bool, superblock_copies> read_ok);
// The slots that do not hold `checksum` in their own slot, to be rewritten: first those that do
// not hold it at all, then those holding it under another copy index (a misdirected copy), so
// that a crash while rewriting never destroys a member of the quorum before the slots that are
// no use anyway. Returns the count.
u32 superblock_repair_order(std::span<const Superblock, superblock_copies> copies,
                            std::span<const CopyStatus, superblock_copies> statuses,
                            u128 checksum, std::array<u8, superblock_copies>& order);

// SuperblockStore: format, open and update over a Storage, asynchronously.
//
// One operation at a time; each calls its callback once, from a storage completion (never from
// inside the call that started it), after which the store is idle again and the callback may
// start the next operation. `context` is the caller's, untouched by the store.
//
// update() argument. The copies are written one after another, so a crash damages at most the
// copy in flight (k is the number of copies that completed before the crash; N new, O old, T
// torn or lost):
//
//   k   slots 0 1 2 3   quorums          open() finds     ...plus one more damaged copy
//   0         T O O O   O: 3             old              O: 2, old (*)
//   1         N T O O   N: 1, O: 2       old              N: 1, O: 1: no quorum
//   2         N N T O   N: 2, O: 1       new              N: 1, O: 1: no quorum
//   3         N N N T   N: 3             new              N: 2, new
//   4         N N N N   N: 4             new              N: 3, new
//
// (*) Unless copy 0 was misdirected onto slot 1 and landed at both: N N O O, one new copy
// counted once and two old ones; one more damaged old copy leaves no quorum.
//
// Why a quorum of 2 and not a majority of 3: row k = 2 would have no quorum at all. Two
// quorums (N N O O) cannot mislead: the higher sequence is taken, and its parent checksum must
// match the old copies. Either answer is right after a crash: the update's callback had not
// run, so nobody relied on the new version.
//
// The argument needs four good copies of the old version when update() starts. format() and
// update() leave four (they verify), and open() restores them by repair: after the crash in row
// k = 2 above, open() finds N N T O; without repair, the next update would write copy 0 first
// and a crash tearing it would leave T N T O, one copy of N: no quorum after a single fault.
//
// A misdirected write of copy j lands in slot i != j. It is counted as copy j wherever it is,
// and counted once, so it never makes one write look like two. If it is the write in flight at
// the crash, the table still holds: it either replaces one more old copy by a new one (k = 1,
// copy 1 onto slot 3: N O O N, new with 2 copies) or a new copy by a new one (k = 2, copy 2
// onto slot 0: N N O O, new with 2 copies, as copy 2 is counted and copy 0 is not). If it is an
// earlier write, the later writes may not cover it, and it counts as the "one more damaged
// slot" of the last column; without a crash, the verify pass finds and rewrites it.
template <Storage S>
class SuperblockStore {
 public:
  using Callback = void (*)(SuperblockStore* store);

  void* context = nullptr;

  explicit SuperblockStore(S& storage) : storage_(storage) {
    for (auto& read : reads_) read.context = this;
    write_.context = this;
    std::memset(static_cast<void*>(&working_), 0, sizeof(working_));
  }
  SuperblockStore(const SuperblockStore&) = delete;
  SuperblockStore& operator=(const SuperblockStore&) = delete;

  // Writes sequence 1 to every copy. The rest of the file is left as it is.
  void format(const SuperblockFormatOptions& options, Callback callback) {
    TALLY_ASSERT(operation_ == Operation::none);
    TALLY_ASSERT(storage_.size() >= superblock_zone_size);
    staging_ = superblock_format(options);
    operation_begin(Operation::format, callback);
    write_round_begin_all();
  }

  // Reads the copies and chooses the working superblock (result(), working()). With `repair`,
  // then rewrites the slots that do not hold it; `tally inspect` opens without.
  void open(bool repair, Callback callback) {
    TALLY_ASSERT(operation_ == Operation::none);
    repair_ = repair;
    opened_ = false;
    updatable_ = false;
    operation_begin(Operation::open, callback);
    reads_begin(Phase::reading);
  }

  // Writes the working superblock's successor. Needs a working superblock from format(), an
  // update() or an open() with repair (the argument below starts from four good copies).
  void update(const SuperblockUpdate& update, Callback callback) {
    TALLY_ASSERT(operation_ == Operation::none);
    TALLY_ASSERT(opened_, "update without a working superblock");
    TALLY_ASSERT(updatable_, "update after an open without repair");
    staging_ = superblock_next(working_, update);
    operation_begin(Operation::update, callback);
    write_round_begin_all();
  }

  bool busy() const { return operation_ != Operation::none; }
  SuperblockResult result() const { return result_; }
  bool opened() const { return opened_; }
  const Superblock& working() const {
    TALLY_ASSERT(opened_);
    return working_;
  }
  // The last open's view of each slot.
  const QuorumDecision& decision() const { return decision_; }
  // Whether the last format, update or repairing open verified all four copies.
  bool copies_verified() const { return copies_verified_; }
  // Copy writes completed by the operation in progress (or the last one): for tests.
  u32 writes_completed() const { return writes_completed_; }

 private:
  enum class Operation : u8 { none, format, open, update };
  enum class Phase : u8 { idle, reading, writing, verifying };

  void operation_begin(Operation operation, Callback callback) {
    TALLY_ASSERT(callback != nullptr);
    TALLY_ASSERT(phase_ == Phase::idle);
    operation_ = operation;
    callback_ = callback;
    verify_rounds_ = 0;
    writes_completed_ = 0;
    copies_verified_ = false;
  }

  void write_round_begin_all() {
    for (u32 slot = 0; slot < superblock_copies; slot += 1) {
      write_order_[slot] = static_cast<u8>(slot);
    }
    write_round_begin(superblock_copies);
  }

  void write_round_begin(u32 count) {
    TALLY_ASSERT(count > 0 && count <= superblock_copies);
    TALLY_ASSERT(staging_.checksum == superblock_checksum(staging_));
    write_count_ = count;
    write_index_ = 0;
    phase_ = Phase::writing;
    write_next();
  }

  void write_next() {
    TALLY_ASSERT(phase_ == Phase::writing);
    if (write_index_ == write_count_) {
      reads_begin(Phase::verifying);
      return;
    }
    const u32 slot = write_order_[write_index_];
    TALLY_ASSERT(slot < superblock_copies);
    staging_.copy = slot;  // Not checksummed: the one field that differs between copies.
    storage_.write(&write_, write_callback, bytes_of(staging_), u64{slot} * superblock_copy_size);
  }

  static void write_callback(typename S::Write* write) {
    auto* store = static_cast<SuperblockStore*>(write->context);
    TALLY_ASSERT(store->phase_ == Phase::writing);
    TALLY_ASSERT(write->offset == u64{store->staging_.copy} * superblock_copy_size);
    store->write_index_ += 1;
    store->writes_completed_ += 1;
    store->write_next();
  }

  void reads_begin(Phase phase) {
    TALLY_ASSERT(phase == Phase::reading || phase == Phase::verifying);
    phase_ = phase;
    reads_pending_ = superblock_copies;
    for (u32 slot = 0; slot < superblock_copies; slot += 1) {
      storage_.read(&reads_[slot], read_callback, bytes_of(copies_[slot]),
                    u64{slot} * superblock_copy_size);
    }
  }

  static void read_callback(typename S::Read* read) {
    auto* store = static_cast<SuperblockStore*>(read->context);
    const auto slot = static_cast<u32>(read - store->reads_.data());
    TALLY_ASSERT(slot < superblock_copies && store->reads_pending_ > 0);
    TALLY_ASSERT(read->offset == u64{slot} * superblock_copy_size);
    store->read_ok_[slot] = read->result == ReadResult::ok;
    store->reads_pending_ -= 1;
    if (store->reads_pending_ > 0) return;
    if (store->phase_ == Phase::reading) {
      store->open_decide();
    } else {
      store->verify_decide();
    }
  }

  void open_decide() {
    decision_ = superblock_quorum(copies_, read_ok_);
    if (decision_.result != SuperblockResult::ok) {
      finish(decision_.result);
      return;
    }
    working_ = copies_[decision_.working_slot];
    working_.copy = 0;
    opened_ = true;
    TALLY_ASSERT(working_.checksum == superblock_checksum(working_));
    if (!repair_ || decision_.repair_count == 0) {
      copies_verified_ = decision_.repair_count == 0;
      finish(SuperblockResult::ok);
      return;
    }
    staging_ = working_;
    write_order_ = decision_.repair_order;
    write_round_begin(decision_.repair_count);
  }

  void verify_decide() {
    std::array<CopyStatus, superblock_copies> statuses{};
    for (u32 slot = 0; slot < superblock_copies; slot += 1) {
      statuses[slot] = read_ok_[slot] ? superblock_copy_status(copies_[slot])
                                      : CopyStatus::read_error;
    }
    const u32 count = superblock_repair_order(copies_, statuses, staging_.checksum, write_order_);
    if (count == 0) {
      copies_verified_ = true;
      if (operation_ != Operation::open) {
        working_ = staging_;
        working_.copy = 0;
        opened_ = true;
      }
      finish(SuperblockResult::ok);
      return;
    }
    if (verify_rounds_ == verify_rounds_max) {
      // The device keeps failing these slots: the caller sees copies_verified() false and
      // treats it as a storage error. The working superblock is the one intended.
      copies_verified_ = false;
      working_ = staging_;
      working_.copy = 0;
      opened_ = true;
      finish(SuperblockResult::ok);
      return;
    }
    verify_rounds_ += 1;
    write_round_begin(count);
  }

  void finish(SuperblockResult result) {
    TALLY_ASSERT(operation_ != Operation::none);
    TALLY_ASSERT(result == SuperblockResult::ok || operation_ == Operation::open);
    TALLY_ASSERT(opened_ == (result == SuperblockResult::ok));
    updatable_ = opened_ && (operation_ != Operation::open || repair_);
    operation_ = Operation::none;
    phase_ = Phase::idle;
    result_ = result;
    callback_(this);
  }

  static std::span<std::byte> bytes_of(Superblock& superblock) {
    return {reinterpret_cast<std::byte*>(&superblock), sizeof(Superblock)};
  }

  S& storage_;
  Operation operation_ = Operation::none;
  Phase phase_ = Phase::idle;
  Callback callback_ = nullptr;
  bool repair_ = false;
  bool opened_ = false;
  bool updatable_ = false;
  bool copies_verified_ = false;
  SuperblockResult result_ = SuperblockResult::ok;
  u32 reads_pending_ = 0;
  u32 write_count_ = 0;
  u32 write_index_ = 0;
  u32 writes_completed_ = 0;
  u32 verify_rounds_ = 0;
  std::array<u8, superblock_copies> write_order_{};
  std::array<bool, superblock_copies> read_ok_{};
  QuorumDecision decision_{};

  std::array<typename S::Read, superblock_copies> reads_{};
  typename S::Write write_{};

  // IO buffers, sector-aligned for O_DIRECT.
  alignas(sector_size) std::array<Superblock, superblock_copies> copies_;
  alignas(sector_size) Superblock staging_;
  Superblock working_;
};

}  // namespace tally::journal
