// StateMachine: executes committed operations against the Ledger, exactly as TigerBeetle 0.17
// does (protocol §6-§7), and encodes their results.
//
// Pure and deterministic: the inputs are the operation, its body and the prepare timestamp;
// there is no IO, clock or randomness, and no iteration over unordered containers, so every
// replica that executes the same operations in the same order reaches the same bytes.
//
// Timestamps (§7.1). The replica assigns each prepare a timestamp P; create operations consume
// one timestamp per event, so the N events of a create request get P - N + 1 ... P, in order
// over all batches. timestamp_event_count() tells the replica N before it prepares. A pulse
// reserves pulse_expiries_max timestamps and expires at most that many pending transfers, in
// expiry order; when it expires n of them, the i-th (from 0) gets P - n + 1 + i, as in
// TigerBeetle, so each expiry is a change event with a timestamp of its own.
//
// Capacity. Tables never grow. The replica asks capacity_admits() before preparing a request;
// a request that could need more room than is left in the worst case is not prepared (the replica
// answers it with an error) rather than failing half-way. Execution therefore never runs out,
// and asserts so. See docs/state-machine.md.
//
// Execution of a batch is two passes: first every record the batch will touch is prefetched
// (id index slots, accounts), then a tight loop runs the checks and mutations in event order.
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>

#include "src/state_machine/config.hpp"
#include "src/state_machine/ledger.hpp"
#include "tally/operation.hpp"
#include "tally/records.hpp"
#include "tally/types.hpp"

namespace tally::state_machine {

class StateMachine {
 public:
  // The most pending transfers one pulse expires, and the timestamps it reserves: TigerBeetle's
  // batch_max.create_transfers, the most events of any create_transfers encoding (the raw
  // deprecated one holds 8190).
  static constexpr u32 pulse_expiries_max =
      std::max({operation_event_max(Operation::create_transfers),
                operation_event_max(Operation::deprecated_create_transfers_sparse),
                operation_event_max(Operation::deprecated_create_transfers_unbatched)});
  static_assert(pulse_expiries_max == 8190);

  void init(const Config& config);
  void reset();

  const Ledger& ledger() const { return ledger_; }
  Ledger& ledger_mutable() { return ledger_; }

  // The timestamp of the latest executed operation (0 before the first).
  u64 commit_timestamp() const { return commit_timestamp_; }
  void commit_timestamp_set(u64 timestamp) { commit_timestamp_ = timestamp; }

  // How many timestamps the operation consumes for its events (N above): the number of events
  // of a create operation, pulse_expiries_max for a pulse, else 0. The body must be valid
  // (validate_request_body).
  static u32 timestamp_event_count(Operation operation, std::span<const std::byte> body);

  // Whether executing this (valid) request cannot exceed any capacity, even if every event
  // succeeds. `reserved` events are already admitted but not yet executed (the pipeline).
  struct Reservation {
    u32 accounts;
    u32 transfers;
  };
  bool capacity_admits(Operation operation, std::span<const std::byte> body,
                       Reservation reserved) const;

  // Executes a committed operation with prepare timestamp `timestamp` and writes its reply body
  // into `reply` (message_body_size_max bytes suffice). Returns the reply body size.
  u32 execute(Operation operation, u64 timestamp, std::span<const std::byte> body,
              std::span<std::byte> reply);

  // Whether a pulse at `timestamp` may expire a pending transfer. Stays true after a pulse that
  // expired pulse_expiries_max while more are due.
  bool pulse_needed(u64 timestamp) const;

  // Lower-level entry points, one batch each; used by execute() and by tests and benchmarks.
  // `timestamp_first` is the timestamp of the batch's first event.
  void create_accounts(std::span<const Account> events, u64 timestamp_first,
                       std::span<CreateAccountResult> results);
  void create_transfers(std::span<const Transfer> events, u64 timestamp_first,
                        std::span<CreateTransferResult> results);
  // The execution half of create_transfers: the query indexes are left behind until
  // ledger().indexes_catch_up() (the benchmark times the two stages apart).
  void create_transfers_unindexed(std::span<const Transfer> events, u64 timestamp_first,
                                  std::span<CreateTransferResult> results);
  u32 lookup_accounts(std::span<const u128> ids, std::span<Account> results) const;
  u32 lookup_transfers(std::span<const u128> ids, std::span<Transfer> results) const;
  u32 get_account_transfers(const AccountFilter& filter, std::span<Transfer> results);
  u32 get_account_balances(const AccountFilter& filter, std::span<AccountBalance> results);
  u32 query_accounts(const QueryFilter& filter, std::span<Account> results);
  u32 query_transfers(const QueryFilter& filter, std::span<Transfer> results);
  // Change events with filter.timestamp_min <= timestamp <= filter.timestamp_max (0: unbounded),
  // ascending, at most min(filter.limit, results.size()); none for an invalid filter.
  u32 get_change_events(const ChangeEventsFilter& filter, std::span<ChangeEvent> results) const;
  // Expires the pending transfers whose expiry is at or before `timestamp`, at most
  // pulse_expiries_max, earliest expiry first, with the timestamps described above (they must
  // be newer than every stored transfer); returns how many.
  u32 pulse(u64 timestamp);

 private:
  CreateAccountStatus create_account(const Account& event, u64 timestamp, u64 batch_timestamp,
                                     bool batch_imported, u64* result_timestamp);
  CreateTransferStatus create_transfer(const Transfer& event, u64 timestamp, u64 batch_timestamp,
                                       bool batch_imported, u64* result_timestamp);
  CreateTransferStatus create_transfer_exists(const Transfer& event, const Transfer& existing);
  CreateTransferStatus post_or_void(const Transfer& event, u64 timestamp, bool imported,
                                    u64* result_timestamp);
  void expire(u32 pending, u64 timestamp);
  ChangeEvent change_event(u32 transfer_row, ChangeEventType type, u32 event_row,
                           u64 timestamp) const;
  // Rows of an account's transfers that match a filter, in result order, at most `limit`.
  u32 account_transfer_rows(const AccountFilter& filter, u32 limit, u32* rows);

  Ledger ledger_;
  u64 commit_timestamp_ = 0;
  // Scratch for merging an account's debit and credit transfer rows (result_max each), and for
  // the pending ordinals a pulse expires.
  base::LargeArray<u32> scratch_debits_;
  base::LargeArray<u32> scratch_credits_;
  base::LargeArray<u32> scratch_rows_;
  // Dense results of the deprecated sparse operations, before the failures are picked out.
  base::LargeArray<CreateAccountResult> scratch_account_results_;
  base::LargeArray<CreateTransferResult> scratch_transfer_results_;
};

}  // namespace tally::state_machine
