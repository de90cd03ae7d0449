// Checkpoint round trips: a state machine restored from its checkpoint blocks is identical to the
// original (same digest over every table and index, same answers, change events included), for
// random states built by random workloads; checkpoints after the first write only what changed;
// a corrupt or misplaced block is refused, and so is a state whose counts disagree.
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "src/base/prng.hpp"
#include "src/state_machine/checkpoint.hpp"

namespace tally::state_machine {
namespace {

// Stands in for the grid: the latest version of every (table, block index).
using Grid = std::map<std::pair<u32, u32>, std::vector<std::byte>>;

struct Workload {
  explicit Workload(u64 seed) : prng(seed) {}

  base::Prng prng;
  u64 timestamp = 1'000'000'000;

  u128 account_id() { return prng.range_inclusive<u64>(1, 64); }

  void accounts(StateMachine& state_machine) {
    std::vector<Account> events(prng.range_inclusive<u32>(1, 16));
    for (Account& event : events) {
      event = Account{};
      event.id = account_id();
      event.ledger = 1;
      event.code = static_cast<u16>(prng.range_inclusive<u32>(1, 3));
      event.user_data_64 = prng.index<u64>(4);
      if (prng.chance_ppm(300'000)) event.flags |= account_flags::history;
      if (prng.chance_ppm(100'000)) event.flags |= account_flags::debits_must_not_exceed_credits;
      if (prng.chance_ppm(200'000)) event.flags |= account_flags::linked;
    }
    std::vector<CreateAccountResult> results(events.size());
    const u64 first = timestamp + 1;
    timestamp += events.size();
    state_machine.create_accounts(events, first, results);
    state_machine.commit_timestamp_set(timestamp);
  }

  void transfers(StateMachine& state_machine) {
    std::vector<Transfer> events(prng.range_inclusive<u32>(1, 64));
    for (Transfer& event : events) {
      event = Transfer{};
      event.id = prng.range_inclusive<u64>(1, 4096);
      event.debit_account_id = account_id();
      event.credit_account_id = account_id();
      event.amount = prng.range_inclusive<u64>(0, 1000);
      // Now and then past 2^64: change events keep such balances in a table of their own.
      if (prng.chance_ppm(30'000)) event.amount += u128{prng.range_inclusive<u64>(1, 3)} << 64;
      event.ledger = 1;
      event.code = static_cast<u16>(prng.range_inclusive<u32>(1, 3));
      event.user_data_32 = static_cast<u32>(prng.index<u64>(3));
      const u32 kind = prng.index<u32>(10);
      if (kind < 3) {
        event.flags |= transfer_flags::pending;
        event.timeout = static_cast<u32>(prng.index<u64>(3));
      } else if (kind < 5) {
        event.flags |= kind == 3 ? transfer_flags::post_pending_transfer
                                 : transfer_flags::void_pending_transfer;
        event.pending_id = prng.range_inclusive<u64>(1, 4096);
        event.debit_account_id = 0;
        event.credit_account_id = 0;
        event.amount = kind == 3 ? u128_max : 0;
      }
      if (prng.chance_ppm(150'000)) event.flags |= transfer_flags::linked;
    }
    std::vector<CreateTransferResult> results(events.size());
    const u64 first = timestamp + 1;
    timestamp += events.size();
    state_machine.create_transfers(events, first, results);
    state_machine.commit_timestamp_set(timestamp);
  }

  void step(StateMachine& state_machine) {
    const u32 kind = prng.index<u32>(10);
    if (kind < 2) {
      accounts(state_machine);
    } else if (kind < 9) {
      transfers(state_machine);
    } else {
      timestamp += prng.range_inclusive<u64>(1, 3) * 1'000'000'000;
      state_machine.pulse(timestamp);
      state_machine.commit_timestamp_set(timestamp);
    }
  }
};

u32 checkpoint_write(const StateMachine& state_machine, Checkpointer& checkpointer, Grid& grid) {
  std::vector<std::byte> block(checkpoint_block_size);
  u32 written = 0;
  checkpointer.blocks_changed(state_machine, [&](CheckpointTable table, u32 index) {
    const u32 size = Checkpointer::block_encode(state_machine, table, index, block);
    grid[{static_cast<u32>(table), index}] = std::vector<std::byte>(block.begin(),
                                                                     block.begin() + size);
    written += 1;
  });
  return written;
}

// Every change event, as get_change_events pages through them: the bytes a client would see.
std::vector<std::byte> change_events_of(const StateMachine& state_machine) {
  std::vector<std::byte> bytes;
  std::vector<ChangeEvent> page(2730);
  ChangeEventsFilter filter{};
  filter.limit = 2730;
  for (;;) {
    const u32 count = state_machine.get_change_events(filter, page);
    const auto* first = reinterpret_cast<const std::byte*>(page.data());
    bytes.insert(bytes.end(), first, first + count * sizeof(ChangeEvent));
    if (count < page.size()) return bytes;
    filter.timestamp_min = page.back().timestamp + 1;
  }
}

void checkpoint_restore(StateMachine& target, const CheckpointState& state, const Grid& grid) {
  REQUIRE(CheckpointRestorer::begin(target, state));
  for (u32 table = 0; table < checkpoint_table_count; table += 1) {
    const u32 block_count = checkpoint_block_count(state, static_cast<CheckpointTable>(table));
    for (u32 index = 0; index < block_count; index += 1) {
      const auto found = grid.find({table, index});
      REQUIRE(found != grid.end());
      const CheckpointBlockError error = CheckpointRestorer::block(target, state, found->second);
      REQUIRE_MESSAGE(error == CheckpointBlockError::none, checkpoint_block_error_name(error));
    }
  }
  CheckpointRestorer::finish(target, state);
}

TEST_CASE("checkpoint: restore equals the original after every checkpoint") {
  const Config config = Config::testing();
  auto original = std::make_unique<StateMachine>();
  auto restored = std::make_unique<StateMachine>();
  original->init(config);
  restored->init(config);
  u64 event_tables_seen[checkpoint_table_count] = {};

  for (u64 seed = 1; seed <= 8; seed += 1) {
    CAPTURE(seed);
    original->reset();
    Workload workload(seed);
    Checkpointer checkpointer;
    Grid grid;
    u32 blocks_total = 0;
    for (u32 checkpoint = 0; checkpoint < 6; checkpoint += 1) {
      CAPTURE(checkpoint);
      const u32 steps = workload.prng.range_inclusive<u32>(1, 200);
      for (u32 step = 0; step < steps; step += 1) workload.step(*original);

      const CheckpointState state = Checkpointer::state(*original);
      const u32 written = checkpoint_write(*original, checkpointer, grid);
      checkpointer.done(*original);
      u32 blocks_now = 0;
      for (u32 table = 0; table < checkpoint_table_count; table += 1) {
        blocks_now += checkpoint_block_count(state, static_cast<CheckpointTable>(table));
      }
      CHECK(written <= blocks_now);
      blocks_total += written;

      checkpoint_restore(*restored, state, grid);
      REQUIRE(restored->ledger().digest() == original->ledger().digest());
      CHECK(restored->commit_timestamp() == original->commit_timestamp());
      CHECK(change_events_of(*restored) == change_events_of(*original));
      for (const CheckpointTable table :
           {CheckpointTable::event_flags, CheckpointTable::event_balances_high,
            CheckpointTable::expiry_events}) {
        event_tables_seen[static_cast<u32>(table)] += state.counts[static_cast<u32>(table)];
      }

      // The restored machine keeps going exactly like the original.
      Workload twin = workload;
      workload.step(*original);
      twin.step(*restored);
      REQUIRE(restored->ledger().digest() == original->ledger().digest());
      workload = twin;
      // Bring the restored copy's checkpointer baseline along: the original's next checkpoint
      // includes this extra step, which is what the grid will receive.
    }
    CHECK(blocks_total > 0);
  }
  // The change events' tables were part of it, every one of them.
  CHECK(event_tables_seen[static_cast<u32>(CheckpointTable::event_flags)] > 0);
  CHECK(event_tables_seen[static_cast<u32>(CheckpointTable::event_balances_high)] > 0);
  CHECK(event_tables_seen[static_cast<u32>(CheckpointTable::expiry_events)] > 0);
}

TEST_CASE("checkpoint: an unchanged state writes nothing the second time") {
  auto state_machine = std::make_unique<StateMachine>();
  state_machine->init(Config::testing());
  Workload workload(42);
  for (u32 step = 0; step < 300; step += 1) workload.step(*state_machine);
  Checkpointer checkpointer;
  Grid grid;
  const u32 first = checkpoint_write(*state_machine, checkpointer, grid);
  checkpointer.done(*state_machine);
  CHECK(first > 0);
  // Appended-only tables rewrite their last (partial) block; in-place tables nothing.
  u32 again = 0;
  checkpointer.blocks_changed(*state_machine, [&](CheckpointTable table, u32 index) {
    const CheckpointState state = Checkpointer::state(*state_machine);
    CHECK(index + 1 == checkpoint_block_count(state, table));
    CHECK(table != CheckpointTable::expiry_heap);
    again += 1;
  });
  CHECK(again < first);
}

TEST_CASE("checkpoint: corrupt and misplaced blocks are refused") {
  auto state_machine = std::make_unique<StateMachine>();
  state_machine->init(Config::testing());
  Workload workload(7);
  for (u32 step = 0; step < 100; step += 1) workload.step(*state_machine);
  const CheckpointState state = Checkpointer::state(*state_machine);
  REQUIRE(state.counts[static_cast<u32>(CheckpointTable::transfers)] > 0);
  std::vector<std::byte> block(checkpoint_block_size);
  const u32 size = Checkpointer::block_encode(*state_machine, CheckpointTable::transfers, 0, block);
  block.resize(size);

  auto target = std::make_unique<StateMachine>();
  target->init(Config::testing());
  REQUIRE(CheckpointRestorer::begin(*target, state));
  CHECK(CheckpointRestorer::block(*target, state, block) == CheckpointBlockError::none);

  std::vector<std::byte> flipped = block;
  flipped[100] ^= std::byte{0x01};
  CHECK(CheckpointRestorer::block(*target, state, flipped) ==
        CheckpointBlockError::checksum_mismatch);

  std::vector<std::byte> truncated(block.begin(), block.begin() + 32);
  CHECK(CheckpointRestorer::block(*target, state, truncated) == CheckpointBlockError::too_short);

  CheckpointState smaller = state;
  smaller.counts[static_cast<u32>(CheckpointTable::transfers)] = 0;
  CHECK(CheckpointRestorer::block(*target, smaller, block) ==
        CheckpointBlockError::index_out_of_range);

  CheckpointState other_config = state;
  other_config.config_transfers_max += 1;
  CHECK_FALSE(CheckpointRestorer::begin(*target, other_config));

  // Counts that contradict each other: an event row per transfer and per expiry, the same
  // count for the tables that share one.
  const auto count_of = [](CheckpointState& s, CheckpointTable table) -> u32& {
    return s.counts[static_cast<u32>(table)];
  };
  CheckpointState fewer_rows = state;
  count_of(fewer_rows, CheckpointTable::event_flags) -= 1;
  count_of(fewer_rows, CheckpointTable::event_balances) -= 1;
  CHECK_FALSE(CheckpointRestorer::begin(*target, fewer_rows));
  CheckpointState split = state;
  count_of(split, CheckpointTable::event_balances) -= 1;
  CHECK_FALSE(CheckpointRestorer::begin(*target, split));
  // More expiries than pending transfers, every other count consistent with them.
  CheckpointState more_expiries = state;
  const u32 extra = count_of(more_expiries, CheckpointTable::pending_rows) + 1 -
                    count_of(more_expiries, CheckpointTable::expiry_events);
  count_of(more_expiries, CheckpointTable::expiry_events) += extra;
  count_of(more_expiries, CheckpointTable::event_flags) += extra;
  count_of(more_expiries, CheckpointTable::event_balances) += extra;
  CHECK_FALSE(CheckpointRestorer::begin(*target, more_expiries));
  CHECK(CheckpointRestorer::begin(*target, state));
}

}  // namespace
}  // namespace tally::state_machine
