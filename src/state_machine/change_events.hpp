// ChangeEventTable: what get_change_events (op 137) and get_account_balances (op 143) need about
// each change event that the stored records cannot give back: both accounts' balances and
// `closed` flags right after it, and the timestamp of an expiry.
//
// A change event is a transfer being created (single-phase, pending, post or void) or a pending
// transfer expiring. Everything else in a ChangeEvent is derived at query time: the transfer's
// fields from its record (for an expiry, the pending transfer's); the accounts' id, user data,
// ledger, code and timestamp from their records, where they never change; the account flags
// from the stored ones and the `closed` bit kept here, `closed` being the only flag that changes;
// the type from the transfer's flags; the timestamp from the transfer or the expiry record.
//
// Rows. Every event appends one row, in the order the events happen:
//
//   flags      1 B   debit_closed, credit_closed, balances_high
//   balances  64 B   the low 64 bits of the eight balances: the debit account's debits_pending,
//                    debits_posted, credits_pending, credits_posted, then the credit account's
//
// A balance of 2^64 or more (1.8 * 10^19; real ledgers seldom get there) sets balances_high and
// puts all eight high halves in a side table, sorted by row:
//
//   high      72 B   {row, the eight high halves}
//
// An expiry also appends a record to the expiry table, in the order of the expiries, which is
// their timestamp order:
//
//   expiry    16 B   {timestamp, row, the pending transfer's row}
//
// So a transfer costs 65 bytes here and an expiry 81, plus 72 with huge balances; a 64-byte row
// is one cache line, written once, with streaming stores that bypass the caches.
//
// Row numbers. Transfers and expiries interleave in row order, but a transfer never records its
// row: it is the transfer's own row plus the number of expiries recorded before it. Expiry j was
// recorded after row_j - j transfers, a count that never decreases with j, so that number is a
// binary search over the expiry table. Example: transfers t0 t1, a pulse expiring x0, transfer
// t2, a pulse expiring x1 x2, transfer t3:
//
//   row       0   1   2   3   4   5   6
//   event     t0  t1  x0  t2  x1  x2  t3      expiry table: x0 row 2, x1 row 4, x2 row 5
//   row_j - j for x0, x1, x2: 2, 3, 3         t3 = transfer 3: three of them are <= 3, row 6
//
// Rows are in the order the events happened, which is timestamp order for the transfers and for
// the expiries each, but not across them: an imported transfer may carry a timestamp older than
// an expiry recorded before it. Queries therefore merge the two by timestamp.
//
// Rows only get appended; the latest transfer's row is removed again when its linked chain rolls
// back (expiries never happen inside a chain). Bytes past the counts are always zero, so a table
// restored from a checkpoint is identical to the original.
#pragma once

#include <optional>

#include "src/base/assert.hpp"
#include "src/base/large_array.hpp"
#include "tally/checksum.hpp"
#include "tally/records.hpp"
#include "tally/types.hpp"

namespace tally::state_machine {

// The four balances of an account.
struct Balances {
  u128 debits_pending;
  u128 debits_posted;
  u128 credits_pending;
  u128 credits_posted;
};
static_assert(sizeof(Balances) == 64);

// Both accounts' balances right after an event.
struct EventBalances {
  Balances debit_account;
  Balances credit_account;
};
static_assert(sizeof(EventBalances) == 128);

inline constexpr u32 event_balance_count = 8;

struct EventBalancesLow {
  u64 values[event_balance_count];  // Debit account's four, then the credit account's.
};
static_assert(sizeof(EventBalancesLow) == 64);

struct EventBalancesHigh {
  u32 row;
  u32 reserved;
  u64 values[event_balance_count];
};
static_assert(sizeof(EventBalancesHigh) == 72);

struct ExpiryEvent {
  u64 timestamp;
  u32 row;           // The event's row.
  u32 transfer_row;  // The pending transfer that expired.
};
static_assert(sizeof(ExpiryEvent) == 16);

namespace event_flags {
inline constexpr u8 debit_closed = 1u << 0;   // The debit account was closed after the event.
inline constexpr u8 credit_closed = 1u << 1;  // The credit account was closed after the event.
inline constexpr u8 balances_high = 1u << 2;  // Some balance needs more than 64 bits.
inline constexpr u8 mask = debit_closed | credit_closed | balances_high;
}  // namespace event_flags

class ChangeEventTable {
 public:
  // `rows_max`: transfers plus expiries; `expiries_max`: pending transfers (each expires once).
  void init(u32 rows_max, u32 expiries_max);
  void reset();
  // Commits the per-row tables, which every transfer writes (Config::prefault).
  void prefault();

  u32 row_count() const { return row_count_; }
  u32 rows_free() const { return rows_max_ - row_count_; }
  u32 high_count() const { return high_count_; }
  u32 expiry_count() const { return expiry_count_; }

  // Appends the row of a transfer just stored: its accounts as they are now. Returns the row.
  u32 transfer_append(const Account& debit, const Account& credit);
  // Appends the row and the expiry record of a pending transfer that just expired.
  void expiry_append(u64 timestamp, u32 transfer_row, const Account& debit,
                     const Account& credit);
  // Removes the latest row, which is a transfer's (chain rollback).
  void transfer_remove_latest();
  // Rows are written with streaming stores, which other cores may see late or out of order:
  // this orders them before whatever the caller stores next (an sfence). After each batch.
  void publish() const;

  // The row of transfer `transfer_row`, which is stored (and so has one).
  u32 row_of_transfer(u32 transfer_row) const;
  const ExpiryEvent& expiry(u32 index) const {
    TALLY_ASSERT(index < expiry_count_);
    return expiries_.data()[index];
  }
  // Expiry records [begin, end) with timestamp_from <= timestamp <= timestamp_to.
  void expiries_in(u64 timestamp_from, u64 timestamp_to, u32* begin, u32* end) const;
  u64 expiry_timestamp_max() const {
    return expiry_count_ == 0 ? 0 : expiries_.data()[expiry_count_ - 1].timestamp;
  }

  EventBalances balances(u32 row) const;
  u8 flags(u32 row) const {
    TALLY_ASSERT(row < row_count_);
    return flags_.data()[row];
  }

  // Adds every counted byte and the counts (Ledger::digest()).
  void digest_add(ChecksumStream& stream) const;

 private:
  friend class CheckpointAccess;

  u32 row_append(const Account& debit, const Account& credit);
  std::optional<u32> high_of(u32 row) const;

  u32 rows_max_ = 0;
  u32 expiries_max_ = 0;
  base::LargeArray<u8> flags_;
  base::LargeArray<EventBalancesLow> balances_low_;
  u32 row_count_ = 0;
  base::LargeArray<EventBalancesHigh> balances_high_;
  u32 high_count_ = 0;
  base::LargeArray<ExpiryEvent> expiries_;
  u32 expiry_count_ = 0;
};

}  // namespace tally::state_machine
