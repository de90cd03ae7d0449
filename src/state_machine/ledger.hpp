// Ledger: the stored state of the state machine and the primitive mutations on it.
//
// What is stored (capacities from Config):
//   accounts   Account records in row order, which is timestamp order (an imported account must
//              postdate every stored one), with an id index, per-field value indexes, and per
//              account the rows of its transfers as debit and as credit account.
//   transfers  Transfer records, append-only, in timestamp order, with an id index and per-field
//              value indexes. A stored transfer never changes.
//   pending    For every pending transfer ever created (ordinal p, ascending by transfer row):
//              its row and its status; and an expiry heap of (expires_at, p).
//   events     Per change event (every stored transfer, every expiry of a pending transfer): both
//              accounts' balances and `closed` flags right after it, and the timestamp of an
//              expiry (change_events.hpp). get_change_events and get_account_balances read it.
//   failed     Transfer ids burned by a transient failure (`id_already_failed`).
//
// Mutation and undo. Linked chains must be all-or-nothing, so while a chain is open every
// mutation is recorded in an undo log, and rollback() undoes the log in reverse. Every structure
// supports exactly that last-in first-out undo and returns to its prior bytes, so the state after
// a rolled-back chain is identical to the state before it. Burned ids are not logged: a burn
// survives the rollback of its chain (protocol §7.4).
#pragma once

#include <optional>

#include "src/base/assert.hpp"
#include "src/base/large_array.hpp"
#include "src/base/prefetch.hpp"
#include "src/state_machine/change_events.hpp"
#include "src/state_machine/config.hpp"
#include "src/state_machine/dirty_blocks.hpp"
#include "src/state_machine/id_table.hpp"
#include "src/state_machine/posting_lists.hpp"
#include "src/state_machine/value_index.hpp"
#include "tally/operation.hpp"
#include "tally/records.hpp"
#include "tally/types.hpp"

namespace tally::state_machine {

// Valid timestamps are 1 .. 2^63 - 1 nanoseconds since the Unix epoch (protocol §7.1).
inline constexpr u64 timestamp_max = (u64{1} << 63) - 1;
inline constexpr u64 nanoseconds_per_second = 1'000'000'000;

// The fields that query_accounts / query_transfers filter on, in filter order.
enum class Field : u8 { user_data_128, user_data_64, user_data_32, ledger, code };
inline constexpr u32 field_count = 5;

template <typename Record>
constexpr u128 field_value(const Record& record, Field field) {
  switch (field) {
    case Field::user_data_128: return record.user_data_128;
    case Field::user_data_64: return record.user_data_64;
    case Field::user_data_32: return record.user_data_32;
    case Field::ledger: return record.ledger;
    case Field::code: return record.code;
  }
  return 0;
}

enum class PendingStatus : u8 { none = 0, pending = 1, posted = 2, voided = 3, expired = 4 };

struct ExpiryEntry {
  u64 expires_at;  // Nanoseconds: timestamp + timeout * 10^9.
  u32 pending;     // Pending ordinal.
  u32 reserved;
};
static_assert(sizeof(ExpiryEntry) == 16);

inline void account_flag_clear(Account& account, u16 bit) {
  account.flags = static_cast<u16>(account.flags & ~bit);
}

// Checkpoint blocks: a 64-byte header and a payload of whole elements of one table.
inline constexpr u32 checkpoint_block_size = 64 * 1024;
inline constexpr u32 checkpoint_block_header_size = 64;
constexpr u32 checkpoint_elements_per_block(u32 element_size) {
  return (checkpoint_block_size - checkpoint_block_header_size) / element_size;
}

class Ledger {
 public:
  void init(const Config& config);
  void reset();

  const Config& config() const { return config_; }

  // ----- Accounts.
  u32 account_count() const { return account_count_; }
  const Account& account(u32 row) const {
    TALLY_ASSERT(row < account_count_);
    return accounts_.data()[row];
  }
  std::optional<u32> account_find(u128 id) const {
    return account_ids_.find(id, [this](u32 row) { return accounts_.data()[row].id; });
  }
  void account_prefetch(u128 id) const { account_ids_.prefetch(id); }
  // Records are 128 bytes: two cache lines, both needed (balances first, ledger and flags last).
  void account_prefetch_record(u128 id) const {
    account_ids_.prefetch_row(id, [this](u32 row) {
      base::prefetch(reinterpret_cast<const std::byte*>(&accounts_.data()[row]) + 64);
      return &accounts_.data()[row];
    });
  }
  u64 account_timestamp_max() const {
    return account_count_ == 0 ? 0 : accounts_.data()[account_count_ - 1].timestamp;
  }
  bool account_timestamp_exists(u64 timestamp) const;
  // Rows [begin, end) of accounts with timestamp_from <= timestamp <= timestamp_to.
  void account_rows_in(u64 timestamp_from, u64 timestamp_to, u32* begin, u32* end) const;

  u32 account_insert(const Account& account);
  // The stored account at `row`, for changing its balances and flags in place (never its id,
  // timestamp, ledger or code). Logged for undo inside a chain and marked for the checkpoint.
  Account& account_modify(u32 row);

  // ----- Transfers.
  u32 transfer_count() const { return transfer_count_; }
  const Transfer& transfer(u32 row) const {
    TALLY_ASSERT(row < transfer_count_);
    return transfers_.data()[row];
  }
  std::optional<u32> transfer_find(u128 id) const {
    return transfer_ids_.find(id, [this](u32 row) { return transfers_.data()[row].id; });
  }
  void transfer_prefetch(u128 id) const { transfer_ids_.prefetch(id); }
  void transfer_prefetch_record(u128 id) const {
    transfer_ids_.prefetch_row(id, [this](u32 row) {
      base::prefetch(reinterpret_cast<const std::byte*>(&transfers_.data()[row]) + 64);
      return &transfers_.data()[row];
    });
  }
  u64 transfer_timestamp_max() const {
    return transfer_count_ == 0 ? 0 : transfers_.data()[transfer_count_ - 1].timestamp;
  }
  bool transfer_timestamp_exists(u64 timestamp) const;
  void transfer_rows_in(u64 timestamp_from, u64 timestamp_to, u32* begin, u32* end) const;

  // Stores a transfer and indexes its id; a pending one also gets a pending ordinal. `debit_row`
  // and `credit_row` are its accounts' rows, which already hold their balances and flags after
  // the transfer: the transfer's change event row records them. The query indexes (per-account
  // lists, per-value lists) are updated later, by indexes_catch_up(), off the execution loop:
  // they are a separate stage (DESIGN.md §8) that could run on its own core, and rows of an open
  // chain never need undoing there.
  //
  // Invariant: the query indexes hold exactly the rows below indexed_count(); every operation
  // that reads them (queries, checkpoints, digests) runs with indexes_caught_up().
  u32 transfer_insert(const Transfer& transfer, u32 debit_row, u32 credit_row);
  // The same, storing `source` with its amount and timestamp replaced.
  u32 transfer_insert(const Transfer& source, u128 amount, u64 timestamp, u32 debit_row,
                      u32 credit_row);

  u32 indexed_count() const { return indexed_count_; }
  bool indexes_caught_up() const { return indexed_count_ == transfer_count_; }
  void indexes_catch_up();

  // The rows of an account's transfers, as debit or as credit account.
  const PostingLists& transfers_by_debit_account() const { return transfers_by_debit_; }
  const PostingLists& transfers_by_credit_account() const { return transfers_by_credit_; }
  const ValueIndex& account_index(Field field) const {
    return account_values_[static_cast<u32>(field)];
  }
  const ValueIndex& transfer_index(Field field) const {
    return transfer_values_[static_cast<u32>(field)];
  }

  // ----- Pending transfers.
  u32 pending_count() const { return pending_count_; }
  // The pending ordinal of a transfer row that has the `pending` flag.
  u32 pending_of(u32 transfer_row) const;
  PendingStatus pending_status(u32 pending) const {
    TALLY_ASSERT(pending < pending_count_);
    return static_cast<PendingStatus>(pending_statuses_.data()[pending]);
  }
  u32 pending_row(u32 pending) const {
    TALLY_ASSERT(pending < pending_count_);
    return pending_rows_.data()[pending];
  }
  void pending_status_set(u32 pending, PendingStatus status);
  // The expiry heap: the earliest (expires_at, pending) first.
  u32 expiry_count() const { return expiry_count_; }
  const ExpiryEntry& expiry_top() const {
    TALLY_ASSERT(expiry_count_ > 0);
    return expiry_heap_.data()[0];
  }
  void expiry_pop();
  // Pushes the expiry of every pending transfer with a timeout created since the last call.
  // Called once an event or a whole chain has committed, so rollback never touches the heap.
  void expiry_register_new();

  // ----- Change events. A transfer's row is appended by transfer_insert().
  const ChangeEventTable& change_events() const { return change_events_; }
  // Records the expiry of pending transfer `transfer_row` at `timestamp`; `debit_row` and
  // `credit_row` already hold the balances and flags after it. Never inside a chain.
  void expiry_event_insert(u32 transfer_row, u64 timestamp, u32 debit_row, u32 credit_row);

  // ----- Failed ids.
  u32 failed_count() const { return failed_count_; }
  bool failed_contains(u128 id) const {
    return failed_ids_index_.find(id, [this](u32 row) { return failed_ids_.data()[row]; })
        .has_value();
  }
  void failed_prefetch(u128 id) const { failed_ids_index_.prefetch(id); }
  u128 failed_id(u32 row) const {
    TALLY_ASSERT(row < failed_count_);
    return failed_ids_.data()[row];
  }
  void failed_insert(u128 id);

  // ----- Capacity: how many more of each can be stored.
  u32 accounts_free() const { return config_.accounts_max - account_count_; }
  u32 transfers_free() const { return config_.transfers_max - transfer_count_; }
  u32 pending_free() const { return config_.pending_transfers_max - pending_count_; }
  // Never below transfers_free() (Config: events <= transfers + expiries <= transfers_max +
  // pending_transfers_max), so admitting transfers admits their events.
  u32 change_events_free() const { return change_events_.rows_free(); }
  u32 failed_free() const { return config_.failed_transfer_ids_max - failed_count_; }

  // ----- Linked chains.
  void chain_open();
  void chain_commit();
  void chain_rollback();
  bool chain_is_open() const { return chain_open_; }

  const base::LargeArray<Account>& accounts_table() const { return accounts_; }
  const base::LargeArray<Transfer>& transfers_table() const { return transfers_; }

  // A checksum of every byte of the state, indexes included: equal digests mean identical
  // state. O(capacity); for tests and the simulator.
  u128 digest() const;

  // After a checkpoint restore loaded the tables: rebuilds every index from them.
  void indexes_rebuild();

 private:
  friend class CheckpointAccess;

  enum class UndoKind : u8 { account_insert, account_modify, transfer_insert, pending_status };
  struct UndoEntry {
    UndoKind kind;
    PendingStatus pending_status_old = PendingStatus::none;
    u32 row = 0;  // Account row, transfer row or pending ordinal.
    u32 reserved = 0;
    Account account_old{};  // account_modify only.
  };

  void undo_push(const UndoEntry& entry);
  void account_index(u32 row);
  void transfer_index(u32 row, u32 debit_row, u32 credit_row);
  void account_remove_latest(u32 row);
  void transfer_remove_latest(u32 row);
  void expiry_push(ExpiryEntry entry);
  void expiry_sift_up(u32 position);
  void expiry_sift_down(u32 position);

  Config config_{};

  base::LargeArray<Account> accounts_;
  u32 account_count_ = 0;
  IdTable account_ids_;
  ValueIndex account_values_[field_count];
  PostingLists transfers_by_debit_;   // List per account row.
  PostingLists transfers_by_credit_;  // List per account row.

  base::LargeArray<Transfer> transfers_;
  u32 transfer_count_ = 0;
  u32 indexed_count_ = 0;  // Transfers [0, indexed_count_) are in the query indexes.
  IdTable transfer_ids_;
  ValueIndex transfer_values_[field_count];

  base::LargeArray<u32> pending_rows_;
  base::LargeArray<u8> pending_statuses_;
  u32 pending_count_ = 0;
  base::LargeArray<ExpiryEntry> expiry_heap_;
  u32 expiry_count_ = 0;
  u32 expiry_registered_count_ = 0;  // Pending ordinals below this have their expiry pushed.

  ChangeEventTable change_events_;

  base::LargeArray<u128> failed_ids_;
  IdTable failed_ids_index_;
  u32 failed_count_ = 0;

  // What changed in place since the last checkpoint (append-only tables need no marks).
  DirtyBlocks accounts_dirty_;
  DirtyBlocks pending_statuses_dirty_;
  bool expiry_dirty_ = false;

  base::LargeArray<UndoEntry> undo_;
  u32 undo_count_ = 0;
  bool chain_open_ = false;
};

// The undo log holds at most a chain's worth of mutations: per event an insert, two account
// updates and a pending status change.
inline constexpr u32 undo_per_event_max = 4;

}  // namespace tally::state_machine
