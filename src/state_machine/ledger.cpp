// Ledger: storage primitives and their last-in first-out undo. See ledger.hpp.
#include "src/state_machine/ledger.hpp"

#include <algorithm>
#include <cstring>

#include "tally/checksum.hpp"

namespace tally::state_machine {

namespace {

template <typename Record>
u32 rows_lower_bound(const Record* records, u32 count, u64 timestamp) {
  const Record* found = std::lower_bound(
      records, records + count, timestamp,
      [](const Record& record, u64 value) { return record.timestamp < value; });
  return static_cast<u32>(found - records);
}

template <typename Record>
u32 rows_upper_bound(const Record* records, u32 count, u64 timestamp) {
  const Record* found = std::upper_bound(
      records, records + count, timestamp,
      [](u64 value, const Record& record) { return value < record.timestamp; });
  return static_cast<u32>(found - records);
}

}  // namespace

void Ledger::init(const Config& config) {
  config.assert_valid();
  config_ = config;

  accounts_.init(config.accounts_max);
  account_ids_.init(config.accounts_max);
  for (ValueIndex& index : account_values_) index.init(config.accounts_max);
  transfers_by_debit_.init(config.accounts_max, config.transfers_max);
  transfers_by_credit_.init(config.accounts_max, config.transfers_max);

  transfers_.init(config.transfers_max);
  transfer_ids_.init(config.transfers_max);
  for (ValueIndex& index : transfer_values_) index.init(config.transfers_max);

  pending_rows_.init(config.pending_transfers_max);
  pending_statuses_.init(config.pending_transfers_max);
  expiry_heap_.init(config.pending_transfers_max);

  change_events_.init(config.change_events_max(), config.pending_transfers_max);

  failed_ids_.init(config.failed_transfer_ids_max);
  failed_ids_index_.init(config.failed_transfer_ids_max);

  // A chain lies within one batch, and the raw deprecated_create_transfers_unbatched body holds
  // the most events: 8190, one more than a multi-batch one (§8.5, no trailer).
  static_assert(operation_event_max(Operation::deprecated_create_transfers_unbatched) >=
                operation_event_max(Operation::create_transfers));
  if (config.prefault) {
    accounts_.prefault();
    account_ids_.prefault();
    transfers_.prefault();
    transfer_ids_.prefault();
    change_events_.prefault();
  }

  undo_.init(u64{operation_event_max(Operation::deprecated_create_transfers_unbatched)} *
             undo_per_event_max);

  accounts_dirty_.init(u64{config.accounts_max} * sizeof(Account),
                       checkpoint_elements_per_block(sizeof(Account)) * sizeof(Account));
  pending_statuses_dirty_.init(config.pending_transfers_max,
                               checkpoint_elements_per_block(sizeof(u8)));
}

void Ledger::reset() {
  TALLY_ASSERT(!chain_open_);
  accounts_.reset();
  account_count_ = 0;
  account_ids_.reset();
  for (ValueIndex& index : account_values_) index.reset();
  transfers_by_debit_.reset();
  transfers_by_credit_.reset();
  transfers_.reset();
  transfer_count_ = 0;
  indexed_count_ = 0;
  transfer_ids_.reset();
  for (ValueIndex& index : transfer_values_) index.reset();
  pending_rows_.reset();
  pending_statuses_.reset();
  pending_count_ = 0;
  expiry_heap_.reset();
  expiry_count_ = 0;
  expiry_registered_count_ = 0;
  change_events_.reset();
  failed_ids_.reset();
  failed_ids_index_.reset();
  failed_count_ = 0;
  undo_count_ = 0;
  accounts_dirty_.reset();
  pending_statuses_dirty_.reset();
  expiry_dirty_ = false;
  // reset() gave the pages back; commit them again, as init() did.
  if (config_.prefault) {
    accounts_.prefault();
    account_ids_.prefault();
    transfers_.prefault();
    transfer_ids_.prefault();
    change_events_.prefault();
  }
}

// ----- Accounts.

bool Ledger::account_timestamp_exists(u64 timestamp) const {
  const u32 row = rows_lower_bound(accounts_.data(), account_count_, timestamp);
  return row < account_count_ && accounts_.data()[row].timestamp == timestamp;
}

void Ledger::account_rows_in(u64 timestamp_from, u64 timestamp_to, u32* begin, u32* end) const {
  *begin = rows_lower_bound(accounts_.data(), account_count_, timestamp_from);
  *end = rows_upper_bound(accounts_.data(), account_count_, timestamp_to);
  if (*end < *begin) *end = *begin;
}

u32 Ledger::account_insert(const Account& account) {
  TALLY_ASSERT(account_count_ < config_.accounts_max);
  TALLY_ASSERT(account.timestamp > account_timestamp_max(), "accounts are in timestamp order");
  TALLY_ASSERT(!account_find(account.id).has_value());
  const u32 row = account_count_;
  accounts_[row] = account;
  account_count_ += 1;
  accounts_dirty_.mark(u64{row} * sizeof(Account), sizeof(Account));
  account_index(row);
  if (chain_open_) undo_push(UndoEntry{.kind = UndoKind::account_insert, .row = row});
  return row;
}

void Ledger::account_index(u32 row) {
  const Account& account = accounts_.data()[row];
  account_ids_.insert(account.id, row);
  for (u32 field = 0; field < field_count; field += 1) {
    const Field f = static_cast<Field>(field);
    account_values_[field].insert(field_value(account, f), row, [this, f](u32 r) {
      return field_value(accounts_.data()[r], f);
    });
  }
  const u32 debit_list = transfers_by_debit_.create();
  const u32 credit_list = transfers_by_credit_.create();
  TALLY_ASSERT(debit_list == row && credit_list == row);
}

void Ledger::account_remove_latest(u32 row) {
  TALLY_ASSERT(row + 1 == account_count_);
  const Account& account = accounts_.data()[row];
  transfers_by_debit_.destroy_latest(row);
  transfers_by_credit_.destroy_latest(row);
  for (u32 field = field_count; field > 0; field -= 1) {
    const Field f = static_cast<Field>(field - 1);
    account_values_[field - 1].remove_latest(field_value(account, f), row, [this, f](u32 r) {
      return field_value(accounts_.data()[r], f);
    });
  }
  account_ids_.remove_latest(account.id, row);
  accounts_[row] = Account{};
  account_count_ -= 1;
}

Account& Ledger::account_modify(u32 row) {
  TALLY_ASSERT(row < account_count_);
  Account& stored = accounts_[row];
  if (chain_open_) {
    undo_push(UndoEntry{.kind = UndoKind::account_modify, .row = row, .account_old = stored});
  }
  accounts_dirty_.mark(u64{row} * sizeof(Account), sizeof(Account));
  return stored;
}

// ----- Transfers.

bool Ledger::transfer_timestamp_exists(u64 timestamp) const {
  const u32 row = rows_lower_bound(transfers_.data(), transfer_count_, timestamp);
  return row < transfer_count_ && transfers_.data()[row].timestamp == timestamp;
}

void Ledger::transfer_rows_in(u64 timestamp_from, u64 timestamp_to, u32* begin,
                              u32* end) const {
  *begin = rows_lower_bound(transfers_.data(), transfer_count_, timestamp_from);
  *end = rows_upper_bound(transfers_.data(), transfer_count_, timestamp_to);
  if (*end < *begin) *end = *begin;
}

u32 Ledger::transfer_insert(const Transfer& transfer, u32 debit_row, u32 credit_row) {
  return transfer_insert(transfer, transfer.amount, transfer.timestamp, debit_row, credit_row);
}

u32 Ledger::transfer_insert(const Transfer& source, u128 amount, u64 timestamp, u32 debit_row,
                            u32 credit_row) {
  TALLY_ASSERT(transfer_count_ < config_.transfers_max);
  TALLY_ASSERT(timestamp > transfer_timestamp_max(), "transfers are in timestamp order");
  TALLY_ASSERT(debit_row < account_count_ && credit_row < account_count_);
  TALLY_ASSERT(debit_row != credit_row);
  // Every stored transfer has its change event, so the transfer capacity bounds the events.
  TALLY_ASSERT(change_events_.rows_free() > 0);
  const u32 row = transfer_count_;
  // Straight into the store: a 128-byte local copy first costs measurably on the hot path.
  Transfer& stored = transfers_[row];
  std::memcpy(&stored, &source, sizeof(Transfer));
  stored.amount = amount;
  stored.timestamp = timestamp;
  transfer_count_ += 1;
  // Only the id index is needed while a batch executes (duplicates within the batch); the query
  // indexes follow in indexes_catch_up().
  transfer_ids_.insert(stored.id, row);
  if (stored.flags & transfer_flags::pending) {
    TALLY_ASSERT(pending_count_ < config_.pending_transfers_max);
    pending_rows_[pending_count_] = row;
    pending_statuses_[pending_count_] = static_cast<u8>(PendingStatus::pending);
    pending_statuses_dirty_.mark(pending_count_, 1);
    pending_count_ += 1;
  }
  const u32 event_row =
      change_events_.transfer_append(accounts_.data()[debit_row], accounts_.data()[credit_row]);
  TALLY_ASSERT(event_row == row + change_events_.expiry_count(),
               "every earlier transfer and expiry has its row");
  if (chain_open_) undo_push(UndoEntry{.kind = UndoKind::transfer_insert, .row = row});
  return row;
}

void Ledger::transfer_index(u32 row, u32 debit_row, u32 credit_row) {
  const Transfer& transfer = transfers_.data()[row];
  transfers_by_debit_.append(debit_row, row);
  transfers_by_credit_.append(credit_row, row);
  for (u32 field = 0; field < field_count; field += 1) {
    const Field f = static_cast<Field>(field);
    transfer_values_[field].insert(field_value(transfer, f), row, [this, f](u32 r) {
      return field_value(transfers_.data()[r], f);
    });
  }
}

void Ledger::indexes_rebuild() {
  TALLY_ASSERT(!chain_open_);
  TALLY_ASSERT(account_ids_.count() == 0 && transfer_ids_.count() == 0);
  TALLY_ASSERT(failed_ids_index_.count() == 0);
  // Same order as the original inserts (row order), so every index is rebuilt bit for bit.
  for (u32 row = 0; row < account_count_; row += 1) account_index(row);
  for (u32 row = 0; row < transfer_count_; row += 1) {
    transfer_ids_.insert(transfers_.data()[row].id, row);
  }
  indexed_count_ = 0;
  indexes_catch_up();
  for (u32 row = 0; row < failed_count_; row += 1) {
    failed_ids_index_.insert(failed_ids_.data()[row], row);
  }
}

void Ledger::indexes_catch_up() {
  TALLY_ASSERT(!chain_open_);
  TALLY_ASSERT(indexed_count_ <= transfer_count_);
  // The appends land on list tails scattered over memory (one per account), so each row's list
  // heads are fetched `distance` rows ahead and its tails half as far ahead, once the heads are
  // in cache. The account rows come from the small, hot account id index.
  constexpr u32 distance = 16;
  struct AccountRows {
    u32 debit;
    u32 credit;
  };
  AccountRows ahead[distance] = {};  // Row r's accounts at ahead[r % distance].
  const Transfer* transfers = transfers_.data();
  const auto resolve = [&](u32 row) {
    const std::optional<u32> debit = account_find(transfers[row].debit_account_id);
    const std::optional<u32> credit = account_find(transfers[row].credit_account_id);
    TALLY_ASSERT(debit.has_value() && credit.has_value());
    ahead[row % distance] = AccountRows{.debit = *debit, .credit = *credit};
    transfers_by_debit_.prefetch_head(*debit);
    transfers_by_credit_.prefetch_head(*credit);
  };
  const u32 begin = indexed_count_;
  for (u32 row = begin; row < transfer_count_ && row < begin + distance; row += 1) resolve(row);
  for (u32 row = begin; row < transfer_count_; row += 1) {
    const AccountRows rows = ahead[row % distance];
    if (row + distance / 2 < transfer_count_) {
      const AccountRows later = ahead[(row + distance / 2) % distance];
      transfers_by_debit_.prefetch_tail(later.debit);
      transfers_by_credit_.prefetch_tail(later.credit);
    }
    transfer_index(row, rows.debit, rows.credit);
    if (row + distance < transfer_count_) resolve(row + distance);
  }
  indexed_count_ = transfer_count_;
}

void Ledger::transfer_remove_latest(u32 row) {
  TALLY_ASSERT(row + 1 == transfer_count_);
  TALLY_ASSERT(row >= indexed_count_, "rows of an open chain are not indexed yet");
  const Transfer& transfer = transfers_.data()[row];
  TALLY_ASSERT(change_events_.row_of_transfer(row) + 1 == change_events_.row_count());
  change_events_.transfer_remove_latest();
  if (transfer.flags & transfer_flags::pending) {
    TALLY_ASSERT(pending_count_ > expiry_registered_count_);
    TALLY_ASSERT(pending_rows_.data()[pending_count_ - 1] == row);
    pending_count_ -= 1;
    pending_rows_[pending_count_] = 0;
    pending_statuses_[pending_count_] = 0;
  }
  transfer_ids_.remove_latest(transfer.id, row);
  transfers_[row] = Transfer{};
  transfer_count_ -= 1;
}

// ----- Pending transfers.

u32 Ledger::pending_of(u32 transfer_row) const {
  const u32* rows = pending_rows_.data();
  const u32* found = std::lower_bound(rows, rows + pending_count_, transfer_row);
  TALLY_ASSERT(found != rows + pending_count_ && *found == transfer_row,
               "transfer row %u is not pending", transfer_row);
  return static_cast<u32>(found - rows);
}

void Ledger::pending_status_set(u32 pending, PendingStatus status) {
  TALLY_ASSERT(pending < pending_count_);
  TALLY_ASSERT(status != PendingStatus::none && status != PendingStatus::pending);
  TALLY_ASSERT(pending_status(pending) == PendingStatus::pending, "only a pending one changes");
  if (chain_open_) {
    undo_push(UndoEntry{.kind = UndoKind::pending_status,
                        .pending_status_old = pending_status(pending),
                        .row = pending});
  }
  pending_statuses_[pending] = static_cast<u8>(status);
  pending_statuses_dirty_.mark(pending, 1);
}

namespace {

bool expiry_before(const ExpiryEntry& a, const ExpiryEntry& b) {
  if (a.expires_at != b.expires_at) return a.expires_at < b.expires_at;
  return a.pending < b.pending;
}

}  // namespace

void Ledger::expiry_push(ExpiryEntry entry) {
  TALLY_ASSERT(expiry_count_ < config_.pending_transfers_max);
  expiry_heap_[expiry_count_] = entry;
  expiry_count_ += 1;
  expiry_sift_up(expiry_count_ - 1);
  expiry_dirty_ = true;
}

void Ledger::expiry_pop() {
  TALLY_ASSERT(expiry_count_ > 0);
  TALLY_ASSERT(!chain_open_);
  expiry_count_ -= 1;
  expiry_heap_[0] = expiry_heap_[expiry_count_];
  expiry_heap_[expiry_count_] = ExpiryEntry{};
  if (expiry_count_ > 0) expiry_sift_down(0);
  expiry_dirty_ = true;
}

void Ledger::expiry_register_new() {
  TALLY_ASSERT(!chain_open_);
  TALLY_ASSERT(expiry_registered_count_ <= pending_count_);
  for (; expiry_registered_count_ < pending_count_; expiry_registered_count_ += 1) {
    const u32 pending = expiry_registered_count_;
    const Transfer& transfer = transfers_.data()[pending_rows_.data()[pending]];
    if (transfer.timeout == 0) continue;
    // create_transfers rejected timeouts that overflow (overflows_timeout).
    const u64 expires_at = transfer.timestamp + u64{transfer.timeout} * nanoseconds_per_second;
    TALLY_ASSERT(expires_at > transfer.timestamp);
    expiry_push(ExpiryEntry{.expires_at = expires_at, .pending = pending, .reserved = 0});
  }
}

void Ledger::expiry_sift_up(u32 position) {
  ExpiryEntry* heap = expiry_heap_.data();
  while (position > 0) {
    const u32 parent = (position - 1) / 2;
    if (!expiry_before(heap[position], heap[parent])) break;
    std::swap(heap[position], heap[parent]);
    position = parent;
  }
}

void Ledger::expiry_sift_down(u32 position) {
  ExpiryEntry* heap = expiry_heap_.data();
  for (;;) {
    const u32 left = position * 2 + 1;
    const u32 right = left + 1;
    u32 smallest = position;
    if (left < expiry_count_ && expiry_before(heap[left], heap[smallest])) smallest = left;
    if (right < expiry_count_ && expiry_before(heap[right], heap[smallest])) smallest = right;
    if (smallest == position) return;
    std::swap(heap[position], heap[smallest]);
    position = smallest;
  }
}

// ----- Change events.

void Ledger::expiry_event_insert(u32 transfer_row, u64 timestamp, u32 debit_row,
                                 u32 credit_row) {
  TALLY_ASSERT(!chain_open_, "expiries happen between operations, never in a chain");
  TALLY_ASSERT(transfer_row < transfer_count_);
  const Transfer& pending = transfers_.data()[transfer_row];
  TALLY_ASSERT(pending.flags & transfer_flags::pending);
  TALLY_ASSERT(debit_row < account_count_ && credit_row < account_count_);
  TALLY_ASSERT(accounts_.data()[debit_row].id == pending.debit_account_id);
  TALLY_ASSERT(accounts_.data()[credit_row].id == pending.credit_account_id);
  // Its timestamp is newer than every event before it: the pulse's timestamps follow every
  // operation executed so far (imported transfers may only come later with older timestamps).
  TALLY_ASSERT(timestamp > transfer_timestamp_max() && timestamp > pending.timestamp);
  change_events_.expiry_append(timestamp, transfer_row, accounts_.data()[debit_row],
                               accounts_.data()[credit_row]);
}

// ----- Failed ids.

void Ledger::failed_insert(u128 id) {
  TALLY_ASSERT(failed_count_ < config_.failed_transfer_ids_max);
  TALLY_ASSERT(!failed_contains(id));
  failed_ids_[failed_count_] = id;
  failed_ids_index_.insert(id, failed_count_);
  failed_count_ += 1;
}

// ----- Linked chains.

void Ledger::chain_open() {
  TALLY_ASSERT(!chain_open_);
  TALLY_ASSERT(undo_count_ == 0);
  chain_open_ = true;
}

void Ledger::chain_commit() {
  TALLY_ASSERT(chain_open_);
  chain_open_ = false;
  undo_count_ = 0;
}

void Ledger::chain_rollback() {
  TALLY_ASSERT(chain_open_);
  while (undo_count_ > 0) {
    undo_count_ -= 1;
    const UndoEntry& entry = undo_.data()[undo_count_];
    switch (entry.kind) {
      case UndoKind::account_insert: account_remove_latest(entry.row); break;
      case UndoKind::account_modify:
        accounts_[entry.row] = entry.account_old;
        accounts_dirty_.mark(u64{entry.row} * sizeof(Account), sizeof(Account));
        break;
      case UndoKind::transfer_insert: transfer_remove_latest(entry.row); break;
      case UndoKind::pending_status:
        pending_statuses_[entry.row] = static_cast<u8>(entry.pending_status_old);
        pending_statuses_dirty_.mark(entry.row, 1);
        break;
    }
  }
  chain_open_ = false;
}

void Ledger::undo_push(const UndoEntry& entry) {
  TALLY_ASSERT(chain_open_);
  TALLY_ASSERT(undo_count_ < undo_.capacity(), "undo log full");
  undo_[undo_count_] = entry;
  undo_count_ += 1;
}

}  // namespace tally::state_machine

namespace tally::state_machine {

u128 Ledger::digest() const {
  TALLY_ASSERT(indexes_caught_up());
  ChecksumStream stream;
  const auto add = [&stream](const auto& span) { stream.add(span.data(), span.size_bytes()); };
  const auto add_value = [&stream](const auto& value) { stream.add(&value, sizeof(value)); };
  const auto add_index = [&](const ValueIndex& index) {
    add(index.values().slots());
    add(index.lists().heads());
    add(index.lists().words());
  };
  add_value(account_count_);
  add(accounts_.first(account_count_));
  add(account_ids_.slots());
  for (const ValueIndex& index : account_values_) add_index(index);
  add(transfers_by_debit_.heads());
  add(transfers_by_debit_.words());
  add(transfers_by_credit_.heads());
  add(transfers_by_credit_.words());
  add_value(transfer_count_);
  add(transfers_.first(transfer_count_));
  add(transfer_ids_.slots());
  for (const ValueIndex& index : transfer_values_) add_index(index);
  add_value(pending_count_);
  add(pending_rows_.first(pending_count_));
  add(pending_statuses_.first(pending_count_));
  add_value(expiry_count_);
  add_value(expiry_registered_count_);
  add(expiry_heap_.first(expiry_count_));
  change_events_.digest_add(stream);
  add_value(failed_count_);
  add(failed_ids_.first(failed_count_));
  add(failed_ids_index_.slots());
  return stream.finish();
}

}  // namespace tally::state_machine
