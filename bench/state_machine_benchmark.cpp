// Execution throughput of the state machine (src/state_machine), the number that bounds how many
// transfers a replica can commit per second on one core, next to a baseline that does the bare
// minimum work per transfer.
//
//   create_transfers/grow     10,000 accounts, batches of 8189, the store growing from empty to
//                             10,000,000 transfers (uniform or zipfian account choice)
//   create_transfers/at_10M   more batches on top of the 10,000,000-transfer store
//   baseline/minimum          per transfer: two hash lookups, a balance check, two balance
//                             updates, an id insert, in a plain open-addressing table sized like
//                             the real one, at the same fill
//   baseline/with_store       the same, plus appending the 128-byte record to a store
//   lookup_transfers, lookup_accounts, get_account_transfers, query_transfers
//   get_change_events         2730 events (a full reply) from a random point of the store
//   change_event_append       the change event part of create_transfers alone: 8189 rows
//                             appended per iteration to a table of 8,388,608 (committed)
//
// create_transfers includes recording each transfer's change event (both accounts' balances
// after it, 65 bytes); get_change_events rebuilds the 384-byte events from those rows.
//
// Inputs are generated while the clock is paused. Every benchmark reports allocations per
// iteration (allocation guard counter): it must be 0. Results are in perf/state-machine.md.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "src/base/allocation_guard.hpp"
#include "src/base/large_array.hpp"
#include "src/base/prefetch.hpp"
#include "src/base/prng.hpp"
#include "src/state_machine/change_events.hpp"
#include "src/state_machine/hash.hpp"
#include "src/state_machine/state_machine.hpp"

namespace {

using namespace tally;
using state_machine::StateMachine;

constexpr u32 account_count = 10'000;
constexpr u32 batch_size = 8189;
constexpr u64 store_target = 10'000'000;
constexpr u32 grow_batches = (store_target + batch_size - 1) / batch_size;
constexpr u32 at_target_batches = 64;

enum class Distribution { uniform, zipfian };

// Account choice. Zipfian with exponent 1 over the 10,000 accounts: the hottest account takes
// about 10% of all transfers (a few merchants, many customers).
class AccountChooser {
 public:
  AccountChooser(Distribution distribution, u64 seed) : distribution_(distribution), prng_(seed) {
    double total = 0;
    for (u32 rank = 1; rank <= account_count; rank += 1) total += 1.0 / rank;
    double sum = 0;
    cumulative_.resize(account_count);
    for (u32 rank = 1; rank <= account_count; rank += 1) {
      sum += 1.0 / rank / total;
      cumulative_[rank - 1] = static_cast<u64>(sum * 18446744073709551615.0);
    }
    cumulative_.back() = ~u64{0};
  }

  u32 next() {
    if (distribution_ == Distribution::uniform) return prng_.index<u32>(account_count);
    const u64 draw = prng_.next_u64();
    u32 low = 0;
    u32 high = account_count - 1;
    while (low < high) {
      const u32 middle = (low + high) / 2;
      if (cumulative_[middle] < draw) {
        low = middle + 1;
      } else {
        high = middle;
      }
    }
    return low;
  }

 private:
  Distribution distribution_;
  base::Prng prng_;
  std::vector<u64> cumulative_;
};

u128 account_id(u32 index) { return u128{index} + 1; }

struct Ledger {
  std::unique_ptr<StateMachine> state_machine = std::make_unique<StateMachine>();
  u64 timestamp = 1'700'000'000'000'000'000;
  u64 transfer_id_next = 1;
  std::vector<Transfer> batch = std::vector<Transfer>(batch_size);
  std::vector<CreateTransferResult> results = std::vector<CreateTransferResult>(batch_size);

  Ledger() {
    state_machine->init(state_machine::Config{});
    std::vector<Account> accounts(account_count);
    for (u32 index = 0; index < account_count; index += 1) {
      accounts[index] = Account{};
      accounts[index].id = account_id(index);
      accounts[index].ledger = 1;
      accounts[index].code = 1;
    }
    std::vector<CreateAccountResult> created(account_count);
    state_machine->create_accounts(accounts, timestamp + 1, created);
    timestamp += account_count;
  }

  void batch_fill(AccountChooser& chooser) {
    for (Transfer& transfer : batch) {
      transfer = Transfer{};
      transfer.id = transfer_id_next;
      transfer_id_next += 1;
      const u32 debit = chooser.next();
      u32 credit = chooser.next();
      if (credit == debit) credit = (credit + 1) % account_count;
      transfer.debit_account_id = account_id(debit);
      transfer.credit_account_id = account_id(credit);
      transfer.amount = 1 + transfer.id % 100;
      transfer.ledger = 1;
      transfer.code = static_cast<u16>(1 + transfer.id % 4);
    }
  }

  // Execution only: the query indexes are left to indexes_catch_up(), the next stage.
  void batch_execute() {
    state_machine->create_transfers_unindexed(batch, timestamp + 1, results);
    timestamp += batch_size;
  }
};

Ledger& ledger_of(Distribution distribution) {
  static Ledger uniform;
  if (distribution == Distribution::uniform) return uniform;
  static Ledger zipfian;
  return zipfian;
}

void report(benchmark::State& state, u64 items, u64 allocations) {
  state.SetItemsProcessed(static_cast<int64_t>(items));
  state.counters["allocations_per_iteration"] =
      static_cast<double>(allocations) / static_cast<double>(state.iterations());
}

// The benchmark's own time is execution alone. The index stage (indexes_catch_up) is timed
// apart and reported as counters: its own rate and the rate of both stages on one core.
void create_transfers(benchmark::State& state, Distribution distribution, bool grow) {
  Ledger& ledger = ledger_of(distribution);
  AccountChooser chooser(distribution, grow ? 1 : 2);
  u64 allocations = 0;
  std::chrono::nanoseconds execution{0};
  std::chrono::nanoseconds indexing{0};
  for (auto _ : state) {
    state.PauseTiming();
    ledger.batch_fill(chooser);
    const u64 before = base::allocation_guard::allocations_total();
    const auto execution_start = std::chrono::steady_clock::now();
    state.ResumeTiming();
    ledger.batch_execute();
    state.PauseTiming();
    const auto indexing_start = std::chrono::steady_clock::now();
    ledger.state_machine->ledger_mutable().indexes_catch_up();
    const auto indexing_end = std::chrono::steady_clock::now();
    execution += indexing_start - execution_start;
    indexing += indexing_end - indexing_start;
    allocations += base::allocation_guard::allocations_total() - before;
    for (const CreateTransferResult& result : ledger.results) {
      TALLY_ASSERT(result.status == CreateTransferStatus::created);
    }
    state.ResumeTiming();
  }
  const u64 transfers = static_cast<u64>(state.iterations()) * batch_size;
  report(state, transfers, allocations);
  const auto per_second = [&](std::chrono::nanoseconds time) {
    return static_cast<double>(transfers) * 1e9 / static_cast<double>(time.count());
  };
  state.counters["index_stage_per_second"] = per_second(indexing);
  state.counters["both_stages_per_second"] = per_second(execution + indexing);
  state.counters["transfers_stored"] = static_cast<double>(
      ledger.state_machine->ledger().transfer_count());
}

// The bare minimum per transfer, with the same fill and table size as the real id index.
class Baseline {
 public:
  Baseline() {
    accounts_.init(account_slots);
    for (u32 index = 0; index < account_count; index += 1) account_insert(account_id(index));
    u64 slots = 16;
    while (slots < u64{state_machine::Config{}.transfers_max} * 2) slots *= 2;
    ids_.init(slots);
    id_mask_ = slots - 1;
    for (u64 id = 1; id <= store_target; id += 1) id_insert(id);
    store_.init(state_machine::Config{}.transfers_max);
    store_count_ = store_target;  // As if the first 10,000,000 were stored.
    // Committed up front, as the state machine's store is (Config::prefault).
    store_.prefault();
    ids_.prefault();
  }

  // The bare minimum plus what every ledger must also do: append the 128-byte record to a store.
  bool apply_and_store(const Transfer& transfer) {
    if (!apply(transfer)) return false;
    std::memcpy(&store_.data()[store_count_], &transfer, sizeof(Transfer));
    store_count_ += 1;
    return true;
  }

  // Returns whether the transfer was applied.
  bool apply(const Transfer& transfer) {
    BaselineAccount* debit = account_find(transfer.debit_account_id);
    BaselineAccount* credit = account_find(transfer.credit_account_id);
    if (debit == nullptr || credit == nullptr) return false;
    if (debit->debits + transfer.amount < debit->debits) return false;
    debit->debits += transfer.amount;
    credit->credits += transfer.amount;
    return id_insert(transfer.id);
  }

  void prefetch(u128 id) const {
    base::prefetch(&ids_.data()[state_machine::hash_u128(id) & id_mask_]);
  }

 private:
  struct BaselineAccount {
    u128 id;
    u128 debits;
    u128 credits;
    u128 reserved;
  };
  static constexpr u64 account_slots = 1u << 15;

  BaselineAccount* account_find(u128 id) {
    for (u64 slot = state_machine::hash_u128(id) & (account_slots - 1);;
         slot = (slot + 1) & (account_slots - 1)) {
      BaselineAccount& account = accounts_.data()[slot];
      if (account.id == id) return &account;
      if (account.id == 0) return nullptr;
    }
  }

  void account_insert(u128 id) {
    u64 slot = state_machine::hash_u128(id) & (account_slots - 1);
    while (accounts_.data()[slot].id != 0) slot = (slot + 1) & (account_slots - 1);
    accounts_.data()[slot].id = id;
  }

  bool id_insert(u128 id) {
    u128* ids = ids_.data();
    for (u64 slot = state_machine::hash_u128(id) & id_mask_;; slot = (slot + 1) & id_mask_) {
      if (ids[slot] == id) return false;
      if (ids[slot] == 0) {
        ids[slot] = id;
        return true;
      }
    }
  }

  base::LargeArray<BaselineAccount> accounts_;
  base::LargeArray<u128> ids_;
  base::LargeArray<Transfer> store_;
  u64 store_count_ = 0;
  u64 id_mask_ = 0;
};

void baseline(benchmark::State& state, bool store) {
  static Baseline table;
  static u64 id_next = store_target + 1;
  AccountChooser chooser(Distribution::uniform, 2);
  std::vector<Transfer> batch(batch_size);
  u64 allocations = 0;
  for (auto _ : state) {
    state.PauseTiming();
    for (Transfer& transfer : batch) {
      transfer = Transfer{};
      transfer.id = id_next;
      id_next += 1;
      const u32 debit = chooser.next();
      transfer.debit_account_id = account_id(debit);
      transfer.credit_account_id = account_id((debit + 1) % account_count);
      transfer.amount = 1 + transfer.id % 100;
    }
    const u64 before = base::allocation_guard::allocations_total();
    state.ResumeTiming();
    for (const Transfer& transfer : batch) table.prefetch(transfer.id);
    u32 applied = 0;
    for (const Transfer& transfer : batch) {
      applied += (store ? table.apply_and_store(transfer) : table.apply(transfer)) ? 1u : 0u;
    }
    benchmark::DoNotOptimize(applied);
    state.PauseTiming();
    allocations += base::allocation_guard::allocations_total() - before;
    TALLY_ASSERT(applied == batch_size);
    state.ResumeTiming();
  }
  report(state, static_cast<u64>(state.iterations()) * batch_size, allocations);
}

void lookup_transfers(benchmark::State& state) {
  Ledger& ledger = ledger_of(Distribution::uniform);
  base::Prng prng(3);
  std::vector<u128> ids(batch_size);
  std::vector<Transfer> results(batch_size);
  const u64 stored = ledger.transfer_id_next - 1;
  u64 allocations = 0;
  for (auto _ : state) {
    state.PauseTiming();
    for (u128& id : ids) id = prng.range_inclusive<u64>(1, stored);
    const u64 before = base::allocation_guard::allocations_total();
    state.ResumeTiming();
    const u32 found = ledger.state_machine->lookup_transfers(ids, results);
    state.PauseTiming();
    allocations += base::allocation_guard::allocations_total() - before;
    TALLY_ASSERT(found == batch_size);
    state.ResumeTiming();
  }
  report(state, static_cast<u64>(state.iterations()) * batch_size, allocations);
}

void lookup_accounts(benchmark::State& state) {
  Ledger& ledger = ledger_of(Distribution::uniform);
  base::Prng prng(4);
  std::vector<u128> ids(batch_size);
  std::vector<Account> results(batch_size);
  u64 allocations = 0;
  for (auto _ : state) {
    state.PauseTiming();
    for (u128& id : ids) id = account_id(prng.index<u32>(account_count));
    const u64 before = base::allocation_guard::allocations_total();
    state.ResumeTiming();
    const u32 found = ledger.state_machine->lookup_accounts(ids, results);
    state.PauseTiming();
    allocations += base::allocation_guard::allocations_total() - before;
    TALLY_ASSERT(found == batch_size);
    state.ResumeTiming();
  }
  report(state, static_cast<u64>(state.iterations()) * batch_size, allocations);
}

// An account's latest 8189 transfers (both sides, newest first): about 2,000 stored per account.
void get_account_transfers(benchmark::State& state) {
  Ledger& ledger = ledger_of(Distribution::uniform);
  base::Prng prng(5);
  std::vector<Transfer> results(batch_size);
  u64 allocations = 0;
  u64 items = 0;
  for (auto _ : state) {
    AccountFilter filter{};
    filter.account_id = account_id(prng.index<u32>(account_count));
    filter.limit = batch_size;
    filter.flags = account_filter_flags::debits | account_filter_flags::credits |
                   account_filter_flags::reversed;
    const u64 before = base::allocation_guard::allocations_total();
    items += ledger.state_machine->get_account_transfers(filter, results);
    allocations += base::allocation_guard::allocations_total() - before;
  }
  report(state, items, allocations);
}

// What recording a transfer's change event costs: the 64-byte row (streamed) and the flag byte,
// from two accounts whose balances change, as create_transfers does after each transfer.
void change_event_append(benchmark::State& state) {
  constexpr u32 rows_max = 1u << 23;
  static state_machine::ChangeEventTable table;
  static bool ready = false;
  if (!ready) {
    table.init(rows_max, 1);
    table.prefault();
    ready = true;
  }
  Account debit{};
  debit.id = 1;
  Account credit{};
  credit.id = 2;
  u64 allocations = 0;
  for (auto _ : state) {
    if (table.rows_free() < batch_size) {
      state.PauseTiming();
      table.reset();
      table.prefault();
      state.ResumeTiming();
    }
    const u64 before = base::allocation_guard::allocations_total();
    for (u32 index = 0; index < batch_size; index += 1) {
      debit.debits_posted += 1 + index % 100;
      credit.credits_posted += 1 + index % 100;
      table.transfer_append(debit, credit);
    }
    table.publish();
    allocations += base::allocation_guard::allocations_total() - before;
  }
  benchmark::DoNotOptimize(table.row_count());
  report(state, static_cast<u64>(state.iterations()) * batch_size, allocations);
}

// A full reply of change events (2730) starting at a random transfer's timestamp.
void get_change_events(benchmark::State& state) {
  Ledger& ledger = ledger_of(Distribution::uniform);
  const state_machine::Ledger& stored = ledger.state_machine->ledger();
  base::Prng prng(6);
  constexpr u32 events_max = 2730;
  std::vector<ChangeEvent> results(events_max);
  u64 allocations = 0;
  u64 items = 0;
  for (auto _ : state) {
    ChangeEventsFilter filter{};
    filter.timestamp_min = stored.transfer(prng.index<u32>(stored.transfer_count() - events_max))
                               .timestamp;
    filter.limit = events_max;
    const u64 before = base::allocation_guard::allocations_total();
    const u32 count = ledger.state_machine->get_change_events(filter, results);
    allocations += base::allocation_guard::allocations_total() - before;
    TALLY_ASSERT(count == events_max);
    items += count;
  }
  report(state, items, allocations);
}

// The oldest 8189 transfers with one code (a quarter of the store matches).
void query_transfers(benchmark::State& state) {
  Ledger& ledger = ledger_of(Distribution::uniform);
  std::vector<Transfer> results(batch_size);
  u64 allocations = 0;
  u64 items = 0;
  u16 code = 1;
  for (auto _ : state) {
    QueryFilter filter{};
    filter.code = code;
    filter.limit = batch_size;
    code = static_cast<u16>(code % 4 + 1);
    const u64 before = base::allocation_guard::allocations_total();
    items += ledger.state_machine->query_transfers(filter, results);
    allocations += base::allocation_guard::allocations_total() - before;
  }
  report(state, items, allocations);
}

}  // namespace

BENCHMARK_CAPTURE(create_transfers, grow_uniform, Distribution::uniform, true)
    ->Iterations(grow_batches)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(create_transfers, at_10M_uniform, Distribution::uniform, false)
    ->Iterations(at_target_batches)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(create_transfers, grow_zipfian, Distribution::zipfian, true)
    ->Iterations(grow_batches)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(create_transfers, at_10M_zipfian, Distribution::zipfian, false)
    ->Iterations(at_target_batches)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(baseline, minimum, false)
    ->Iterations(at_target_batches)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(baseline, with_store, true)
    ->Iterations(at_target_batches)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(lookup_transfers)->Unit(benchmark::kMillisecond);
BENCHMARK(lookup_accounts)->Unit(benchmark::kMillisecond);
BENCHMARK(get_account_transfers)->Unit(benchmark::kMicrosecond);
BENCHMARK(query_transfers)->Unit(benchmark::kMicrosecond);
BENCHMARK(get_change_events)->Unit(benchmark::kMicrosecond);
BENCHMARK(change_event_append)->Iterations(1000)->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
