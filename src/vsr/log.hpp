// Log: a replica's log of prepares, the hash chain from its checkpoint's op to its head, over the
// WAL (journal/wal.hpp) plus what is on its way there: prepares accepted but still queued for a
// WAL write, and a cache of recent prepares by op.
//
//   anchor: op_checkpoint, the checkpoint's prepare checksum (op 0: the cluster's root prepare)
//     │
//     ▼ parent ◄── parent ◄── parent
//   op_checkpoint+1 ... op (the head)        each entry: WAL slot op % slot_count, or queued
//
// Writes go to the WAL in op order: write_enqueue() appends to a queue of prepare_cache_max
// entries, write_pump() starts them while the WAL has room (wal_write_count_max in flight, one
// per slot, one at all for a solo replica), and `written` (set by init()) runs once a prepare and
// its header are durable. A primary's queue never fills (its pipeline is shorter); a backup
// stops accepting prepares while its queue is full.
//
// Invariants:
// - every entry at op_checkpoint+1..op names its predecessor as parent, and its timestamp is
//   above its predecessor's (append() asserts follows_head());
// - the queue holds ops in increasing order, each the entry of its op; the cache holds at most
//   one prepare per op % prepare_cache_max and takes its own reference;
// - truncate_after() never removes an entry whose WAL write is in flight (it reports false and
//   the caller retries); `written` runs only for a prepare that is still the entry of its op.
#pragma once

#include <bit>
#include <cstddef>
#include <optional>
#include <span>

#include "journal/layout.hpp"
#include "journal/storage.hpp"
#include "journal/wal.hpp"
#include "src/base/assert.hpp"
#include "src/base/message_pool.hpp"
#include "tally/header.hpp"
#include "tally/types.hpp"

namespace tally::vsr {

// Recent prepares kept in memory by op (a power of two), so that commits rarely read the WAL;
// also the length of the WAL write queue.
inline constexpr u32 prepare_cache_max = 64;
static_assert(std::has_single_bit(prepare_cache_max));

// The cluster's op 0: the anchor of the hash chain, the same on every replica of a cluster.
inline Header root_prepare(u128 cluster) {
  Header header{};
  header.cluster = cluster;
  header.size = header_size;
  header.release = release_server;
  header.command = Command::prepare;
  header.prepare.operation = Operation::root;
  header.checksum_body = checksum_empty;
  set_checksum(header);
  return header;
}

template <journal::Storage S>
class Log {
 public:
  using WrittenCallback = void (*)(void* context, const Header& header);

  Log(S& storage, const journal::Layout& layout, u128 cluster, bool solo)
      : wal_(storage, layout, journal::WalOptions{.cluster = cluster, .solo = solo}),
        root_(root_prepare(cluster)),
        solo_(solo),
        checkpoint_checksum_(root_.checksum),
        head_checksum_(root_.checksum) {
    for (WriteSlot& slot : write_slots_) slot.write.context = this;
  }

  Log(const Log&) = delete;
  Log& operator=(const Log&) = delete;
  ~Log() { TALLY_ASSERT(pool_ == nullptr, "Log::release() before destruction"); }

  // The pool the queued and cached prepares come from, and who hears of durable writes.
  void init(base::MessagePool* pool, WrittenCallback written, void* context) {
    TALLY_ASSERT(pool != nullptr && written != nullptr);
    TALLY_ASSERT(pool_ == nullptr);
    pool_ = pool;
    written_ = written;
    written_context_ = context;
  }

  // Gives back every message the log holds (writes in flight included: their storage goes with
  // the replica, a crash in the simulator or process exit).
  void release() {
    if (pool_ == nullptr) return;
    for (base::Message*& message : prepare_cache_) {
      if (message != nullptr) pool_->unref(message);
      message = nullptr;
    }
    while (write_queue_count_ > 0) {
      // The queue holds a reference of its own for each of its count_ entries.
      TALLY_ASSERT(write_queue_[write_queue_head_] != nullptr);
      pool_->unref(write_queue_[write_queue_head_]);
      write_queue_[write_queue_head_] = nullptr;
      write_queue_head_ = (write_queue_head_ + 1) % prepare_cache_max;
      write_queue_count_ -= 1;
    }
    for (WriteSlot& slot : write_slots_) {
      if (slot.message != nullptr) pool_->unref(slot.message);
      slot.message = nullptr;
    }
    pool_ = nullptr;
  }

  journal::Wal<S>& wal() { return wal_; }
  const journal::Wal<S>& wal() const { return wal_; }
  u32 slot_count() const { return wal_.slot_count(); }

  // -------------------------------------------------------------------------------------------
  // The anchor and the head.

  // The checkpoint the chain starts from: its op, its prepare's checksum, its commit timestamp.
  // Set when a checkpoint is loaded (before head_recover()) or written (at most the head).
  void anchor_set(u64 op_checkpoint, u128 checksum, u64 timestamp) {
    TALLY_ASSERT(op_checkpoint >= op_checkpoint_);
    TALLY_ASSERT(op_checkpoint == 0 || checksum != root_.checksum);
    op_checkpoint_ = op_checkpoint;
    checkpoint_checksum_ = checksum;
    checkpoint_timestamp_ = timestamp;
    anchor_capture();
    if (op_ < op_checkpoint_) {
      op_ = op_checkpoint_;
      head_checksum_ = checksum;
    }
    invariants();
  }

  // Keeps a copy of the anchor's own header while the WAL still names it, so that the log can
  // show its anchor's header after the slot is reused or damaged (a head at the checkpoint).
  void anchor_capture() {
    if (anchor_header_valid_ && anchor_header_.prepare.op == op_checkpoint_) return;
    anchor_header_valid_ = false;
    if (!wal_.recovered() || op_checkpoint_ == 0) return;
    const Header* entry = wal_.header_with_op(op_checkpoint_);
    if (entry == nullptr || entry->checksum != checkpoint_checksum_) return;
    TALLY_ASSERT(entry->prepare.op == op_checkpoint_ && entry->command == Command::prepare);
    anchor_header_ = *entry;
    anchor_header_valid_ = true;
  }

  // The anchor's header as the checkpoint recorded it.
  void anchor_header_set(const Header& header) {
    TALLY_ASSERT(header.prepare.op == op_checkpoint_ && header.checksum == checkpoint_checksum_);
    // Shown as the anchor's entry (header()): an intact prepare header, as any entry.
    TALLY_ASSERT(checksum_valid(header) && header.command == Command::prepare);
    anchor_header_ = header;
    anchor_header_valid_ = true;
    invariants();
  }

  u64 op_checkpoint() const { return op_checkpoint_; }
  u128 checkpoint_checksum() const { return checkpoint_checksum_; }
  // The highest op the log may hold: a WAL slot is reused only for an op whose previous
  // occupant the durable checkpoint covers.
  u64 op_max() const { return op_checkpoint_ + wal_.slot_count(); }

  u64 op() const { return op_; }
  u128 head_checksum() const { return head_checksum_; }

  // The head's timestamp: every op's is above its parent's.
  u64 head_timestamp() const {
    if (const Header* head = header(op_); head != nullptr && op_ > 0) {
      return head->prepare.timestamp;
    }
    TALLY_ASSERT(op_ == op_checkpoint_);
    return checkpoint_timestamp_;
  }

  // After WAL recovery: the head is the end of the hash chain from the anchor, as far as it
  // goes unbroken. Entries past a break stay in the WAL until truncate_after() removes them.
  void head_recover() {
    TALLY_ASSERT(wal_.recovered());
    anchor_capture();
    TALLY_ASSERT(write_queue_count_ == 0);
    op_ = op_checkpoint_;
    head_checksum_ = checkpoint_checksum_;
    for (u64 op = op_checkpoint_ + 1; op <= op_max(); op += 1) {
      // The data file is input like any other: an entry that names the head as its parent but
      // whose timestamp does not rise was not made by a primary, and ends the chain.
      const Header* entry = wal_.header_with_op(op);
      if (entry == nullptr || !follows_head(*entry)) break;
      op_ = op;
      head_checksum_ = entry->checksum;
    }
    TALLY_ASSERT(op_ >= op_checkpoint_ && op_ <= op_max());
    TALLY_ASSERT_SLOW(chain_min() == op_checkpoint_);  // One chain, from the anchor up.
    invariants();
  }

  // Whether a prepare is the head's successor in the hash chain, as a primary makes them.
  bool follows_head(const Header& prepare) const {
    TALLY_ASSERT(prepare.command == Command::prepare);
    return prepare.prepare.op == op_ + 1 && prepare.prepare.parent == head_checksum_ &&
           prepare.prepare.timestamp > head_timestamp();
  }

  // After WAL recovery, in a cluster: the head is the highest op the log holds once the WAL's
  // entries are reconciled with the durable view headers (newest first) of `log_view`:
  //   - above the newest view header, an entry must be of `log_view` itself (appended while
  //     normal in that view) when log_view == view, and there is none when log_view < view (a
  //     replica in a view change appends nothing): anything else is an entry a view change
  //     truncated here in memory, which a crash brought back;
  //   - at a view header's op, the entry must be that header; a missing or different one is
  //     replaced by the header (dirty: its prepare is fetched from a peer);
  //   - at a blank view header's op (no header for it when the headers were taken), an entry
  //     of a view above `log_view` cannot be one of that log's;
  //   - below the oldest view header, entries stay: the hash chain from the head decides;
  //   - unless every view header is above op_max (a start_view whose headers this WAL could
  //     not hold, for a replica a checkpoint or more behind): the install truncated the log
  //     to the executed op in memory only, and no header here anchors a chain to tell the
  //     view's entries from those it truncated, so none above the checkpoint stays (the
  //     replica fetches them again, or takes a peer's checkpoint).
  // Breaks in the chain are left for repair (chain_min()).
  void head_recover_cluster(std::span<const Header> view_headers, u32 log_view, u32 view) {
    TALLY_ASSERT(wal_.recovered() && write_queue_count_ == 0);
    anchor_capture();
    TALLY_ASSERT(log_view <= view);
    u64 newest = op_checkpoint_;
    u64 oldest = op_checkpoint_ + 1;
    if (!view_headers.empty()) {
      newest = view_headers.front().prepare.op;
      oldest = view_headers.back().prepare.op;
      TALLY_ASSERT(newest >= oldest && newest - oldest + 1 == view_headers.size());
    }
    const bool headers_beyond_wal = !view_headers.empty() && oldest > op_max();
    for (u64 op = op_checkpoint_ + 1; op <= op_max(); op += 1) {
      const Header* entry = wal_.header_with_op(op);
      if (entry == nullptr) continue;
      bool keep = !headers_beyond_wal;
      if (headers_beyond_wal) {
        // None stays (above).
      } else if (op > newest) {
        keep = log_view == view && entry->view == log_view;
      } else if (op >= oldest) {
        TALLY_ASSERT(newest - op < view_headers.size());
        const Header& expected = view_headers[newest - op];
        keep = header_blank(expected) ? entry->view <= log_view
                                      : entry->checksum == expected.checksum;
      }
      if (!keep) wal_.remove_entry(wal_.slot_for_op(op));
    }
    for (const Header& expected : view_headers) {
      const u64 op = expected.prepare.op;
      if (header_blank(expected) || op <= op_checkpoint_ || op > op_max()) continue;
      if (wal_.header_with_op(op) == nullptr) wal_.set_header_as_dirty(expected);
      // Kept above only if it was this header, or named dirty just now: the view's entry.
      TALLY_ASSERT(wal_.header_with_op(op) != nullptr &&
                   wal_.header_with_op(op)->checksum == expected.checksum);
    }
    op_ = op_checkpoint_;
    head_checksum_ = checkpoint_checksum_;
    for (u64 op = op_max(); op > op_checkpoint_; op -= 1) {
      if (const Header* entry = wal_.header_with_op(op); entry != nullptr) {
        op_ = op;
        head_checksum_ = entry->checksum;
        break;
      }
    }
    TALLY_ASSERT(op_ >= op_checkpoint_ && op_ <= op_max());
    // The highest op left (the write queue is empty: O(1)).
    TALLY_ASSERT(op_ == op_max() || header(op_ + 1) == nullptr);
    invariants();
  }

  // The lowest op from which the log up to its head is one unbroken hash chain: every entry
  // there present and naming its predecessor as parent (the anchor counts as an entry). The log
  // is trusted from the head down; what lies below a break is repaired before it is used.
  //   ops    7   8   9  10  11 (head)
  //   held   x   -   x   x   x      chain_min() == 9: op 8 is missing, 9..11 chain
  u64 chain_min() const {
    u64 op = op_;
    while (op > op_checkpoint_) {
      const Header* entry = header(op);
      TALLY_ASSERT(entry != nullptr || op < op_);
      if (entry == nullptr) return op + 1;
      const std::optional<u128> parent = checksum_of(op - 1);
      if (!parent.has_value() || *parent != entry->prepare.parent) return op;
      op -= 1;
    }
    // Unbroken down to the anchor, which is always an entry.
    TALLY_ASSERT(op == op_checkpoint_);
    return op;
  }

  // The checksum the log expects at `op` from the head down: its entry's when the chain reaches
  // it, or, just below a break, the parent the chain names. None elsewhere.
  std::optional<u128> checksum_expected(u64 op) const {
    if (op > op_) return std::nullopt;
    const u64 chained = chain_min();
    TALLY_ASSERT(chained >= op_checkpoint_ && chained <= op_);
    if (op >= chained) {
      // The chain reaches `op`: every entry from it up to the head is present.
      const std::optional<u128> checksum = checksum_of(op);
      TALLY_ASSERT(checksum.has_value());
      return checksum;
    }
    if (op + 1 == chained && header(chained) != nullptr) return header(chained)->prepare.parent;
    return std::nullopt;
  }

  // A blank view header: "no header for this op", only the command and the op set.
  static bool header_blank(const Header& header) {
    return header.checksum == 0 && header.command == Command::prepare;
  }

  // -------------------------------------------------------------------------------------------
  // Entries.

  // The entry at `op`: the root for op 0, a queued prepare, or the WAL's; none if the log does
  // not hold that op (never written, truncated, faulty, or its slot reused).
  const Header* header(u64 op) const {
    if (op == 0) return &root_;
    for (u32 index = 0; index < write_queue_count_; index += 1) {
      const base::Message* queued = write_queue_[write_queue_index(index)];
      if (queued->header().prepare.op == op) return &queued->header();
    }
    const Header* entry = wal_.header_with_op(op);
    if (entry == nullptr && op == op_checkpoint_ && anchor_header_valid_) return &anchor_header_;
    TALLY_ASSERT(entry == nullptr || entry->prepare.op == op);
    return entry;
  }

  // The checksum of the prepare at `op`, for ops from the anchor on that the log still names.
  std::optional<u128> checksum_of(u64 op) const {
    // Below the anchor the checkpoint speaks for the ops, not the WAL: after a state sync its
    // slots may still hold entries this replica never executed.
    if (op < op_checkpoint_) return std::nullopt;
    if (op == op_checkpoint_) return checkpoint_checksum_;
    const Header* entry = header(op);
    if (entry == nullptr) return std::nullopt;
    return entry->checksum;
  }

  // Whether a write to `slot` is queued or in flight, whichever op it is for.
  bool slot_busy(u32 slot) const {
    TALLY_ASSERT(slot < wal_.slot_count());
    if (wal_.writing(slot)) return true;
    for (u32 index = 0; index < write_queue_count_; index += 1) {
      if (wal_.slot_for_op(write_queue_[write_queue_index(index)]->header().prepare.op) == slot) {
        return true;
      }
    }
    return false;
  }

  bool write_queued(u64 op) const {
    for (u32 index = 0; index < write_queue_count_; index += 1) {
      if (write_queue_[write_queue_index(index)]->header().prepare.op == op) return true;
    }
    return false;
  }

  // Whether the entry at `op` is not (yet) durable here: queued, being written, or damaged.
  bool dirty(u64 op) const { return write_queued(op) || wal_.dirty(wal_.slot_for_op(op)); }

  // The checksum of the prepare at `op` as the log vouches for it: the entry's own, the
  // anchor's, or, for an entry the log lost to storage damage, its successor's parent.
  std::optional<u128> checksum_vouched(u64 op) const {
    if (const std::optional<u128> checksum = checksum_of(op)) return checksum;
    if (op >= op_) return std::nullopt;
    const Header* next = header(op + 1);
    if (next == nullptr) return std::nullopt;
    return next->prepare.parent;
  }

  // Whether an intact copy of the prepare (op, checksum) may restore the log's entry at `op`
  // now: the log vouches for that checksum, does not hold it durably (a read or recovery found
  // the slot damaged), no write of it is pending, and no newer op of the log uses the slot.
  bool restorable(u64 op, u128 checksum) const {
    if (op == 0 || op > op_ || op + wal_.slot_count() <= op_) return false;
    if (checksum_vouched(op) != checksum) return false;
    const Header* entry = header(op);
    if (entry != nullptr && !dirty(op)) return false;
    return !write_queue_full() && !slot_busy(wal_.slot_for_op(op));
  }

  // -------------------------------------------------------------------------------------------
  // Changes.

  // The head's successor: it becomes the head and is queued for its WAL write.
  void append(base::Message* message) {
    const Header& prepare = message->header();
    TALLY_ASSERT(follows_head(prepare));
    TALLY_ASSERT(prepare.prepare.op <= op_max());
    op_ = prepare.prepare.op;
    head_checksum_ = prepare.checksum;
    cache_put(message);
    write_enqueue(message);
    // Not durable until `written` says so: queued, or being written.
    TALLY_ASSERT_SLOW(dirty(op_));
    invariants();
  }

  // Writes an intact copy of an entry the log does not hold durably (restorable()): the entry
  // is named again if storage damage had made it unknown, and the slot is rewritten.
  void restore(base::Message* message) {
    const Header& prepare = message->header();
    TALLY_ASSERT(restorable(prepare.prepare.op, prepare.checksum));
    if (header(prepare.prepare.op) == nullptr) wal_.set_header_as_dirty(prepare);
    TALLY_ASSERT(header(prepare.prepare.op)->checksum == prepare.checksum);
    cache_put(message);
    write_enqueue(message);
    TALLY_ASSERT_SLOW(dirty(prepare.prepare.op));
    invariants();
  }

  // Names `prepare` as the log's entry for its op, its prepare to come (dirty) unless it is the
  // entry already; the head moves up to it. False if a write to the slot is in flight (the
  // caller retries).
  bool install(const Header& prepare) {
    const u64 op = prepare.prepare.op;
    TALLY_ASSERT(prepare.command == Command::prepare && checksum_valid(prepare));
    TALLY_ASSERT(prepare.cluster == root_.cluster);  // Validated: this cluster's log only.
    TALLY_ASSERT(op > op_checkpoint_ && op <= op_max());
    const Header* entry = header(op);
    if (entry != nullptr && entry->checksum == prepare.checksum) return true;
    // Not while a write to the slot is queued or in flight: of this op, or of the op a wrap
    // before it (a slow disk's backup can execute and checkpoint past an op still queued).
    if (slot_busy(wal_.slot_for_op(op))) return false;
    wal_.set_header_as_dirty(prepare);
    if (op >= op_) {
      op_ = op;
      head_checksum_ = prepare.checksum;
    }
    TALLY_ASSERT(header(op) != nullptr && header(op)->checksum == prepare.checksum);
    invariants();
    return true;
  }

  // Makes `message` the log's entry for its op and writes it (install(), then the WAL write),
  // unless it is durable here already. False if it cannot now (a write to the slot in flight,
  // or the write queue full): the caller retries.
  bool put(base::Message* message) {
    const Header& prepare = message->header();
    const u64 op = prepare.prepare.op;
    // An entry above the anchor, within the WAL's reach (callers: the executed op's successors).
    TALLY_ASSERT(op > op_checkpoint_ && op <= op_max());
    const Header* entry = header(op);
    if (entry != nullptr && entry->checksum == prepare.checksum && !dirty(op)) return true;
    if (write_queue_full() || slot_busy(wal_.slot_for_op(op))) return false;
    if (!install(prepare)) return false;
    cache_put(message);
    write_enqueue(message);
    TALLY_ASSERT_SLOW(dirty(op));
    invariants();
    return true;
  }

  // Removes every entry above `op` (at least the anchor). False if a WAL write to one of them
  // is in flight: the caller tries again later.
  bool truncate_after(u64 op) {
    TALLY_ASSERT(op >= op_checkpoint_);
    const std::optional<u64> wal_op_max = wal_.op_max();
    const u64 last = wal_op_max.has_value() && *wal_op_max > op_ ? *wal_op_max : op_;
    for (u64 candidate = op + 1; candidate <= last; candidate += 1) {
      if (wal_.writing(wal_.slot_for_op(candidate))) return false;
    }
    // Queued writes above `op` go, wherever they are in the queue (a repair's write of an older
    // op may be queued behind newer ones); the others keep their order.
    u32 kept = 0;
    for (u32 position = 0; position < write_queue_count_; position += 1) {
      base::Message*& queued = write_queue_[write_queue_index(position)];
      base::Message* message = queued;
      queued = nullptr;
      if (message->header().prepare.op > op) {
        pool_->unref(message);
      } else {
        write_queue_[write_queue_index(kept)] = message;
        kept += 1;
      }
    }
    write_queue_count_ = kept;
    for (u64 candidate = op + 1; candidate <= last; candidate += 1) {
      const u32 slot = wal_.slot_for_op(candidate);
      const Header& entry = wal_.header(slot);
      if (entry.prepare.operation != Operation::reserved && entry.prepare.op > op) {
        wal_.remove_entry(slot);
      }
    }
    const Header* head = header(op);
    TALLY_ASSERT(head != nullptr || op == op_checkpoint_);
    op_ = op;
    head_checksum_ = op == op_checkpoint_ ? checkpoint_checksum_ : head->checksum;
    TALLY_ASSERT(header(op_ + 1) == nullptr);
    // Nothing above `op` is left, in the WAL's entries or queued for it.
    TALLY_ASSERT(!wal_.op_max().has_value() || *wal_.op_max() <= op);
    invariants();
    return true;
  }

  // A primary's queue never fills (its pipeline is shorter); a backup stops accepting prepares
  // while its queue is full.
  bool write_queue_full() const { return write_queue_count_ == prepare_cache_max; }

  // -------------------------------------------------------------------------------------------
  // The prepare cache.

  void cache_put(base::Message* message) {
    TALLY_ASSERT(message->header().command == Command::prepare);
    TALLY_ASSERT(pool_ != nullptr, "Log::init() first");
    const u64 op = message->header().prepare.op;
    TALLY_ASSERT(op > 0);  // Op 0 is the root, which header() answers: never a prepare.
    base::Message*& slot = prepare_cache_[op % prepare_cache_max];
    if (slot == message) return;
    if (slot != nullptr) pool_->unref(slot);
    slot = pool_->ref(message);
  }

  base::Message* cache_get(u64 op) const {
    base::Message* message = prepare_cache_[op % prepare_cache_max];
    if (message == nullptr || message->header().prepare.op != op) return nullptr;
    // The cache's own reference keeps it (cache_put()).
    TALLY_ASSERT(message->references > 0);
    return message;
  }

  // The cached prepare of the entry at `op`, if the cache holds that very prepare.
  base::Message* cache_get_entry(u64 op) const {
    base::Message* cached = cache_get(op);
    const Header* entry = header(op);
    if (cached == nullptr || entry == nullptr || cached->header().checksum != entry->checksum) {
      return nullptr;
    }
    return cached;
  }

  // Forgets cached prepares above `op` (prepares held for later that may no longer belong).
  void cache_drop_above(u64 op) {
    for (base::Message*& cached : prepare_cache_) {
      if (cached != nullptr && cached->header().prepare.op > op) {
        pool_->unref(cached);
        cached = nullptr;
      }
    }
  }

 private:
  struct WriteSlot {
    typename journal::Wal<S>::Write write;
    base::Message* message = nullptr;
  };

  // The file comment's invariants, O(1) after every change: the head between the anchor and the
  // WAL's limit (at the anchor, the anchor's checksum), the anchor's kept header its own, the
  // write queue within its ring, a write slot in use only for a WAL write in flight; the sweeps
  // of the queue and the cache, and the head's own entry, only where slow checks run.
  void invariants() const {
    TALLY_ASSERT(op_checkpoint_ <= op_ && op_ <= op_max());
    TALLY_ASSERT(op_ > op_checkpoint_ || head_checksum_ == checkpoint_checksum_);
    TALLY_ASSERT(op_checkpoint_ == 0 || checkpoint_checksum_ != root_.checksum);
    TALLY_ASSERT(!anchor_header_valid_ || (anchor_header_.prepare.op == op_checkpoint_ &&
                                           anchor_header_.checksum == checkpoint_checksum_));
    TALLY_ASSERT(write_queue_count_ <= prepare_cache_max && write_queue_head_ < prepare_cache_max);
    TALLY_ASSERT(write_queue_count_ == 0 || pool_ != nullptr);
    // Alone, one WAL write at a time (write_pump()).
    TALLY_ASSERT(!solo_ || wal_.writes_in_flight() <= 1);
    // A queued write waits only for one in flight (write_pump() runs after each change).
    TALLY_ASSERT(write_queue_count_ == 0 || wal_.writes_in_flight() > 0);
    u32 writing = 0;
    for (const WriteSlot& slot : write_slots_) writing += slot.message != nullptr ? 1 : 0;
    TALLY_ASSERT(writing <= wal_.writes_in_flight());
    for (u32 position = 0; position < write_queue_count_; position += 1) {
      const base::Message* queued = write_queue_[write_queue_index(position)];
      TALLY_ASSERT_SLOW(queued != nullptr && queued->references > 0);
      TALLY_ASSERT_SLOW(queued->header().command == Command::prepare &&
                        queued->header().prepare.op <= op_);
    }
    for (u32 index = 0; index < prepare_cache_max; index += 1) {
      const base::Message* cached = prepare_cache_[index];
      TALLY_ASSERT_SLOW(cached == nullptr || cached->header().prepare.op % prepare_cache_max ==
                                                 index);
      TALLY_ASSERT_SLOW(cached == nullptr || cached->references > 0);  // Its own reference.
    }
    // The head is an entry of the log, the one head_checksum() names (chain_min() starts there).
    TALLY_ASSERT_SLOW(op_ == op_checkpoint_ ||
                      (header(op_) != nullptr && header(op_)->checksum == head_checksum_));
  }

  u32 write_queue_index(u32 position) const {
    TALLY_ASSERT(position < prepare_cache_max && write_queue_head_ < prepare_cache_max);
    return (write_queue_head_ + position) % prepare_cache_max;
  }

  void write_enqueue(base::Message* message) {
    TALLY_ASSERT(!write_queue_full(), "WAL write queue overflow");
    // A real prepare (op 0 is the root, never written) within the WAL's reach.
    TALLY_ASSERT(message->header().prepare.op > 0 && message->header().prepare.op <= op_max());
    TALLY_ASSERT(write_queue_count_ == 0 ||
                 write_queue_[write_queue_index(write_queue_count_ - 1)]->header().prepare.op !=
                     message->header().prepare.op);
    write_queue_[write_queue_index(write_queue_count_)] = pool_->ref(message);
    write_queue_count_ += 1;
    write_pump();
  }

  void write_pump() {
    while (write_queue_count_ > 0) {
      if (wal_.writes_in_flight() == journal::wal_write_count_max) return;
      // Alone, one write at a time (journal/wal.hpp says why).
      if (solo_ && wal_.writes_in_flight() > 0) return;
      base::Message* message = write_queue_[write_queue_head_];
      if (wal_.writing(wal_.slot_for_op(message->header().prepare.op))) return;
      WriteSlot* slot = nullptr;
      for (WriteSlot& candidate : write_slots_) {
        if (candidate.message == nullptr) {
          slot = &candidate;
          break;
        }
      }
      TALLY_ASSERT(slot != nullptr);
      write_queue_[write_queue_head_] = nullptr;
      write_queue_head_ = (write_queue_head_ + 1) % prepare_cache_max;
      write_queue_count_ -= 1;
      slot->message = message;  // The queue's reference moves to the write.
      wal_.write_prepare(&slot->write, write_callback, message->padded());
      TALLY_ASSERT(wal_.writing(wal_.slot_for_op(message->header().prepare.op)));
      TALLY_ASSERT(!solo_ || wal_.writes_in_flight() == 1);
    }
  }

  static void write_callback(typename journal::Wal<S>::Write* write) {
    auto* self = static_cast<Log*>(write->context);
    TALLY_ASSERT(self->pool_ != nullptr);  // No write completes after release().
    WriteSlot* slot = nullptr;
    for (WriteSlot& candidate : self->write_slots_) {
      if (&candidate.write == write) slot = &candidate;
    }
    TALLY_ASSERT(slot != nullptr && slot->message != nullptr);
    base::Message* message = slot->message;
    slot->message = nullptr;
    const Header written = message->header();
    // The WAL counts the write done before its callback: the slot is free for the next.
    TALLY_ASSERT(!self->wal_.writing(self->wal_.slot_for_op(written.prepare.op)));
    self->pool_->unref(message);
    self->write_pump();
    // Only if it is still the entry of its op: a truncation may have removed it meanwhile.
    const Header* entry = self->header(written.prepare.op);
    if (entry == nullptr || entry->checksum != written.checksum) return;
    self->written_(self->written_context_, written);
  }

  journal::Wal<S> wal_;
  Header root_;
  bool solo_;
  base::MessagePool* pool_ = nullptr;
  WrittenCallback written_ = nullptr;
  void* written_context_ = nullptr;

  u64 op_checkpoint_ = 0;
  u128 checkpoint_checksum_ = 0;  // The prepare at op_checkpoint_: the chain's anchor.
  u64 checkpoint_timestamp_ = 0;
  Header anchor_header_{};
  bool anchor_header_valid_ = false;
  u64 op_ = 0;                    // The head.
  u128 head_checksum_ = 0;

  base::Message* prepare_cache_[prepare_cache_max] = {};
  base::Message* write_queue_[prepare_cache_max] = {};
  u32 write_queue_head_ = 0;
  u32 write_queue_count_ = 0;
  WriteSlot write_slots_[journal::wal_write_count_max] = {};
};

}  // namespace tally::vsr
