// The state machine's capacities. Every table and index is sized from these at init and never
// grows. The defaults hold `tally benchmark`'s default workload (10,000 accounts, 10,000,000
// transfers) with room to spare; the memory is reserved as address space and committed only as
// it is used (base::LargeArray), so a small ledger costs little RAM even with large capacities.
//
// All replicas of a cluster must use the same configuration: results depend on it when a
// capacity is reached (see docs/state-machine.md, "Capacity").
//
// Change events (get_change_events) have no capacity of their own: every event is a transfer
// being created or a pending transfer expiring, and each pending transfer expires at most once,
// so there are never more than transfers_max + pending_transfers_max of them. That is the event
// table's size (change_events_max()), which makes the transfer capacity the one that binds.
#pragma once

#include "src/base/assert.hpp"
#include "tally/types.hpp"

namespace tally::state_machine {

struct Config {
  u32 accounts_max = 1u << 20;               // 1,048,576 accounts.
  u32 transfers_max = 1u << 24;              // 16,777,216 transfers (2 GiB of records).
  u32 pending_transfers_max = 1u << 22;      // Pending transfers ever created.
  u32 failed_transfer_ids_max = 1u << 20;    // Ids burned by a transient failure.
  // Commit the memory of the tables that every transfer touches (accounts, the transfer store
  // and its id index, the change events' per-event rows) at init rather than on first touch: a
  // page fault, and the kernel clearing a fresh 2 MiB page, in the middle of a batch halves the
  // append rate (perf/state-machine.md). About 3.8 GiB with the defaults. Not part of the state:
  // replicas may differ here.
  bool prefault = true;

  // Small capacities for tests: every table wraps around quickly.
  static constexpr Config testing() {
    return Config{
        .accounts_max = 1u << 12,
        .transfers_max = 1u << 16,
        .pending_transfers_max = 1u << 14,
        .failed_transfer_ids_max = 1u << 12,
        .prefault = false,
    };
  }

  // Change events: one per transfer, one per expiry of a pending transfer (see above).
  constexpr u32 change_events_max() const { return transfers_max + pending_transfers_max; }

  void assert_valid() const {
    TALLY_ASSERT(accounts_max > 0 && accounts_max < (1u << 31));
    TALLY_ASSERT(transfers_max > 0 && transfers_max < (1u << 31));
    TALLY_ASSERT(pending_transfers_max > 0 && pending_transfers_max <= transfers_max);
    TALLY_ASSERT(u64{transfers_max} + pending_transfers_max < (u64{1} << 31),
                 "change event rows are u32 and stay below 2^31");
    TALLY_ASSERT(failed_transfer_ids_max > 0);
  }
};

}  // namespace tally::state_machine
