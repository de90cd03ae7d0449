// The state machine's capacities. Every table and index is sized from these at init and never
// grows. The defaults hold `tally benchmark`'s default workload (10,000 accounts, 10,000,000
// transfers) with room to spare; the memory is reserved as address space and committed only as
// it is used (base::LargeArray), so a small ledger costs little RAM even with large capacities.
//
// All replicas of a cluster must use the same configuration: results depend on it when a
// capacity is reached (see docs/state-machine.md, "Capacity").
#pragma once

#include "src/base/assert.hpp"
#include "tally/types.hpp"

namespace tally::state_machine {

struct Config {
  u32 accounts_max = 1u << 20;               // 1,048,576 accounts.
  u32 transfers_max = 1u << 24;              // 16,777,216 transfers (2 GiB of records).
  u32 pending_transfers_max = 1u << 22;      // Pending transfers ever created.
  u32 history_rows_max = 1u << 22;           // Transfers touching an account with `history`.
  u32 failed_transfer_ids_max = 1u << 20;    // Ids burned by a transient failure.
  // Commit the memory of the tables that every transfer touches (accounts, the transfer store
  // and its id index) at init rather than on first touch: a page fault, and the kernel clearing
  // a fresh 2 MiB page, in the middle of a batch halves the append rate (perf/state-machine.md).
  // About 2.4 GiB with the defaults. Not part of the state: replicas may differ here.
  bool prefault = true;

  // Small capacities for tests: every table wraps around quickly.
  static constexpr Config testing() {
    return Config{
        .accounts_max = 1u << 12,
        .transfers_max = 1u << 16,
        .pending_transfers_max = 1u << 14,
        .history_rows_max = 1u << 14,
        .failed_transfer_ids_max = 1u << 12,
        .prefault = false,
    };
  }

  void assert_valid() const {
    TALLY_ASSERT(accounts_max > 0 && accounts_max < (1u << 31));
    TALLY_ASSERT(transfers_max > 0 && transfers_max < (1u << 31));
    TALLY_ASSERT(pending_transfers_max > 0 && pending_transfers_max <= transfers_max);
    TALLY_ASSERT(history_rows_max > 0 && history_rows_max <= transfers_max);
    TALLY_ASSERT(failed_transfer_ids_max > 0);
  }
};

}  // namespace tally::state_machine
