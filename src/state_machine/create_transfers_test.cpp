// Scenario tests of create_transfers (protocol §7.3-§7.6, §7.9): one test case per
// CreateTransferStatus of §6.4 (except deprecated_ok and the retired 18), then the scenarios
// around them: linked chains, burned ids, two-phase transfers and expiry, balancing, closing,
// imported events, amounts near 2^128, and the transfer tests of the Node client suite (§9).
//
// Every status case checks the status (with §7.4's precedence: a rejected event also breaks a
// rule that is checked later), the result timestamp (created: stored; exists: the existing
// transfer's; otherwise the event's assigned timestamp) and the state: a rejected event leaves
// every stored record as it was (a whole-ledger snapshot compared byte for byte), except that a
// transient status burns the id (§7.4), which is checked by the count of failed ids.
//
// Expected values come from the protocol document and were cross-checked against TigerBeetle
// 0.17's src/state_machine.zig and src/state_machine_tests.zig.
#include <doctest/doctest.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "src/state_machine/doctest_u128.hpp"
#include "src/state_machine/state_machine.hpp"
#include "src/state_machine/test_records.hpp"
#include "tally/records.hpp"

namespace {

using tally::Account;
using tally::CreateAccountResult;
using tally::CreateTransferResult;
using tally::CreateTransferStatus;
using tally::Transfer;
using tally::u128;
using tally::u128_max;
using tally::u16;
using tally::u32;
using tally::u64;
using tally::state_machine::Config;
using tally::state_machine::StateMachine;
namespace account_flags = tally::account_flags;
namespace tf = tally::transfer_flags;
using S = CreateTransferStatus;

constexpr u64 timestamp_initial = 1'700'000'000'000'000'000;
constexpr u64 timestamp_max = (u64{1} << 63) - 1;
constexpr u64 second = 1'000'000'000;
constexpr u128 two_127 = u128{1} << 127;

#define TALLY_CHECK_RESULT(result, expected_status, expected_timestamp)                  \
  do {                                                                                   \
    const CreateTransferResult result_ = (result);                                       \
    CHECK_MESSAGE(result_.status == (expected_status), "status ",                        \
                  std::string(tally::name(result_.status)), ", expected ",               \
                  std::string(tally::name(expected_status)));                            \
    CHECK(result_.timestamp == (expected_timestamp));                                    \
    CHECK(result_.reserved == 0);                                                        \
  } while (0)

using tally::state_machine::testing::TransferSpec;
using tally::state_machine::testing::transfer_of;

Account account_of(u128 id, u32 ledger, u16 flags, u64 timestamp = 0) {
  Account account{};
  account.id = id;
  account.ledger = ledger;
  account.code = 1;
  account.flags = flags;
  account.timestamp = timestamp;
  return account;
}

// A post or void of `pending_id` that leaves every optional field to the pending transfer.
Transfer resolve(u128 id, u128 pending_id, u16 flags, u128 amount) {
  return transfer_of({.id = id, .amount = amount, .pending_id = pending_id, .ledger = 0,
                      .code = 0, .flags = flags});
}

struct Snapshot {
  std::vector<Account> accounts;
  std::vector<Transfer> transfers;
  std::vector<tally::state_machine::PendingStatus> pending_statuses;
  u32 change_event_count = 0;
  u32 failed_count = 0;
};

template <typename T>
bool bytes_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

class Harness {
 public:
  explicit Harness(const Config& config = Config::testing()) { state_machine.init(config); }

  // The accounts most tests start from, created at timestamp_initial + id - 1:
  //   1, 2, 7, 8, 9  ledger 1, no flags
  //   3              ledger 2
  //   4              ledger 1, debits_must_not_exceed_credits
  //   5              ledger 1, credits_must_not_exceed_debits
  //   6              ledger 1, history
  void accounts_setup() {
    const std::vector<CreateAccountResult> results = create_accounts({
        account_of(1, 1, 0),
        account_of(2, 1, 0),
        account_of(3, 2, 0),
        account_of(4, 1, account_flags::debits_must_not_exceed_credits),
        account_of(5, 1, account_flags::credits_must_not_exceed_debits),
        account_of(6, 1, account_flags::history),
        account_of(7, 1, 0),
        account_of(8, 1, 0),
        account_of(9, 1, 0),
    });
    for (const CreateAccountResult& result : results) {
      REQUIRE(result.status == tally::CreateAccountStatus::created);
    }
  }

  std::vector<CreateAccountResult> create_accounts(const std::vector<Account>& events) {
    std::vector<CreateAccountResult> results(events.size());
    batch_timestamp_first = timestamp_next;
    state_machine.create_accounts(events, batch_timestamp_first, results);
    timestamp_next += events.size();
    return results;
  }

  std::vector<CreateTransferResult> create_transfers(const std::vector<Transfer>& events) {
    std::vector<CreateTransferResult> results(events.size());
    batch_timestamp_first = timestamp_next;
    state_machine.create_transfers(events, batch_timestamp_first, results);
    timestamp_next += events.size();
    return results;
  }

  // Creates transfers that must all succeed; returns the timestamp of the first.
  u64 create_transfers_ok(const std::vector<Transfer>& events) {
    const std::vector<CreateTransferResult> results = create_transfers(events);
    for (const CreateTransferResult& result : results) {
      CHECK_MESSAGE(result.status == S::created, "setup transfer: ",
                    std::string(tally::name(result.status)));
    }
    return batch_timestamp_first;
  }

  std::optional<Account> account(u128 id) const {
    const u128 ids[1] = {id};
    Account found[1] = {};
    if (state_machine.lookup_accounts(ids, found) == 0) return std::nullopt;
    return found[0];
  }

  std::optional<Transfer> transfer(u128 id) const {
    const u128 ids[1] = {id};
    Transfer found[1] = {};
    if (state_machine.lookup_transfers(ids, found) == 0) return std::nullopt;
    return found[0];
  }

  Snapshot snapshot() const {
    const tally::state_machine::Ledger& ledger = state_machine.ledger();
    Snapshot result;
    for (u32 row = 0; row < ledger.account_count(); row += 1) {
      result.accounts.push_back(ledger.account(row));
    }
    for (u32 row = 0; row < ledger.transfer_count(); row += 1) {
      result.transfers.push_back(ledger.transfer(row));
    }
    for (u32 pending = 0; pending < ledger.pending_count(); pending += 1) {
      result.pending_statuses.push_back(ledger.pending_status(pending));
    }
    result.change_event_count = ledger.change_events().row_count();
    result.failed_count = ledger.failed_count();
    return result;
  }

  // Nothing changed since `before`, except `burned` more ids were burned.
  void check_unchanged(const Snapshot& before, u32 burned = 0) const {
    const Snapshot after = snapshot();
    CHECK(after.accounts.size() == before.accounts.size());
    CHECK(after.transfers.size() == before.transfers.size());
    CHECK(bytes_equal(after.accounts, before.accounts));
    CHECK(bytes_equal(after.transfers, before.transfers));
    CHECK(bytes_equal(after.pending_statuses, before.pending_statuses));
    CHECK(after.change_event_count == before.change_event_count);
    CHECK(after.failed_count == before.failed_count + burned);
  }

  StateMachine state_machine;
  u64 timestamp_next = timestamp_initial;
  u64 batch_timestamp_first = 0;
};

bool status_is_transient(CreateTransferStatus status) {
  return status == S::debit_account_not_found || status == S::credit_account_not_found ||
         status == S::pending_transfer_not_found || status == S::exceeds_credits ||
         status == S::exceeds_debits || status == S::debit_account_already_closed ||
         status == S::credit_account_already_closed;
}

// Runs one rejected event in a batch of its own: status, the event's timestamp, no state change
// (a transient status burns the id, and then the id is refused for good with 68).
void check_rejected(Harness& harness, const Transfer& event, CreateTransferStatus status) {
  const bool existed = harness.transfer(event.id).has_value();
  const Snapshot before = harness.snapshot();
  const std::vector<CreateTransferResult> results = harness.create_transfers({event});
  REQUIRE(results.size() == 1);
  TALLY_CHECK_RESULT(results[0], status, harness.batch_timestamp_first);
  CHECK(harness.transfer(event.id).has_value() == existed);
  const bool transient = status_is_transient(status);
  harness.check_unchanged(before, transient ? 1 : 0);
  if (transient) {
    CHECK(harness.state_machine.ledger().failed_contains(event.id));
    const Snapshot burned = harness.snapshot();
    const std::vector<CreateTransferResult> again = harness.create_transfers({event});
    TALLY_CHECK_RESULT(again[0], S::id_already_failed, harness.batch_timestamp_first);
    harness.check_unchanged(burned);
  }
}

void check_balances(const Harness& harness, u128 id, u128 debits_pending, u128 debits_posted,
                    u128 credits_pending, u128 credits_posted) {
  CAPTURE(id);
  const std::optional<Account> account = harness.account(id);
  REQUIRE(account.has_value());
  CHECK(account->debits_pending == debits_pending);
  CHECK(account->debits_posted == debits_posted);
  CHECK(account->credits_pending == credits_pending);
  CHECK(account->credits_posted == credits_posted);
}

}  // namespace

TEST_SUITE("state_machine create_transfers") {

// ---------------------------------------------------------------------------------------------
// One case per status.

TEST_CASE("created: single-phase and pending transfers are stored with the event's timestamp") {
  // Goal: §7.4 step 20: the stored record is the event plus the timestamp; single-phase moves
  // posted balances, pending moves pending balances; results carry the stored timestamps.
  Harness harness;
  harness.accounts_setup();
  const Transfer single = transfer_of({.id = 100, .debit_account_id = 1, .credit_account_id = 2,
                                       .amount = 123, .user_data_128 = u128_max - 5,
                                       .user_data_64 = 64, .user_data_32 = 32, .code = 9});
  const Transfer pending = transfer_of({.id = 101, .debit_account_id = 2, .credit_account_id = 1,
                                        .amount = 50, .timeout = 3600, .code = 2,
                                        .flags = tf::pending});
  const Transfer zero = transfer_of({.id = 102, .debit_account_id = 1, .credit_account_id = 7});
  const std::vector<CreateTransferResult> results =
      harness.create_transfers({single, pending, zero});
  const u64 t = harness.batch_timestamp_first;
  TALLY_CHECK_RESULT(results[0], S::created, t);
  TALLY_CHECK_RESULT(results[1], S::created, t + 1);
  TALLY_CHECK_RESULT(results[2], S::created, t + 2);  // Amount 0 is allowed.

  Transfer expected = single;
  expected.timestamp = t;
  const std::optional<Transfer> stored = harness.transfer(100);
  REQUIRE(stored.has_value());
  CHECK(std::memcmp(&*stored, &expected, sizeof(Transfer)) == 0);
  const std::optional<Transfer> stored_pending = harness.transfer(101);
  REQUIRE(stored_pending.has_value());
  CHECK(stored_pending->timeout == 3600);
  CHECK(stored_pending->flags == tf::pending);
  CHECK(stored_pending->timestamp == t + 1);
  CHECK(harness.transfer(102)->amount == 0);

  check_balances(harness, 1, 0, 123, 50, 0);
  check_balances(harness, 2, 50, 0, 0, 123);
  check_balances(harness, 7, 0, 0, 0, 0);
  CHECK(harness.state_machine.ledger().pending_count() == 1);
}

TEST_CASE("linked_event_failed (1): a failure in the middle rolls the whole chain back") {
  // Goal: §7.3 with every kind of effect in the chain: a posted transfer, a pending transfer
  // with a timeout, and a post of an older pending transfer. The fourth event fails: the first
  // three become linked_event_failed with their timestamps kept, the fifth is not run, and the
  // balances, the older pending transfer's status and its expiry are exactly as before.
  Harness harness;
  harness.accounts_setup();
  harness.create_transfers_ok({transfer_of({.id = 100, .debit_account_id = 1,
                                            .credit_account_id = 2, .amount = 30,
                                            .timeout = 10, .flags = tf::pending})});
  const u64 t_pending = harness.batch_timestamp_first;
  const Snapshot before = harness.snapshot();

  const std::vector<CreateTransferResult> results = harness.create_transfers({
      transfer_of({.id = 1, .debit_account_id = 1, .credit_account_id = 2, .amount = 100,
                   .flags = tf::linked}),
      transfer_of({.id = 2, .debit_account_id = 7, .credit_account_id = 8, .amount = 50,
                   .timeout = 1, .flags = tf::linked | tf::pending}),
      resolve(3, 100, tf::linked | tf::post_pending_transfer, u128_max),
      transfer_of({.id = 4, .debit_account_id = 1, .credit_account_id = 2, .amount = 1,
                   .ledger = 0, .flags = tf::linked}),
      transfer_of({.id = 5, .debit_account_id = 1, .credit_account_id = 2, .amount = 1}),
      transfer_of({.id = 6, .debit_account_id = 1, .credit_account_id = 2, .amount = 1}),
  });
  const u64 t = harness.batch_timestamp_first;
  TALLY_CHECK_RESULT(results[0], S::linked_event_failed, t);
  TALLY_CHECK_RESULT(results[1], S::linked_event_failed, t + 1);
  TALLY_CHECK_RESULT(results[2], S::linked_event_failed, t + 2);
  TALLY_CHECK_RESULT(results[3], S::ledger_must_not_be_zero, t + 3);
  TALLY_CHECK_RESULT(results[4], S::linked_event_failed, t + 4);
  TALLY_CHECK_RESULT(results[5], S::created, t + 5);  // After the chain: runs normally.

  for (u128 id = 1; id <= 5; id += 1) CHECK_FALSE(harness.transfer(id).has_value());
  // Only transfer 6 (1 -> 2, amount 1) remains of the batch.
  const Snapshot after = harness.snapshot();
  CHECK(after.transfers.size() == before.transfers.size() + 1);
  CHECK(after.pending_statuses.size() == before.pending_statuses.size());
  CHECK(after.failed_count == before.failed_count);  // ledger_must_not_be_zero burns nothing.
  check_balances(harness, 1, 30, 1, 0, 0);  // Transfer 100's 30 is still pending.
  check_balances(harness, 2, 0, 0, 30, 1);
  check_balances(harness, 7, 0, 0, 0, 0);
  check_balances(harness, 8, 0, 0, 0, 0);

  // The rolled-back pending transfer 2 never expires (its expiry was never registered) and the
  // rolled-back post left transfer 100 pending: it expires at its own time.
  CHECK(harness.state_machine.pulse(t + 1 + second) == 0);
  CHECK(harness.state_machine.pulse(t_pending + 10 * second) == 1);
  check_balances(harness, 1, 0, 1, 0, 0);
  check_balances(harness, 2, 0, 0, 0, 1);

  // None of the chain's ids was burned: they can all be created now.
  harness.timestamp_next = t_pending + 11 * second;
  harness.create_transfers_ok({
      transfer_of({.id = 1, .debit_account_id = 1, .credit_account_id = 2, .amount = 100}),
      transfer_of({.id = 3, .debit_account_id = 1, .credit_account_id = 2, .amount = 100}),
  });
}

TEST_CASE("linked_event_failed (1): a failing chain element's later chain events are not run") {
  // Goal: after a break, later events of the chain get linked_event_failed even when they would
  // fail on their own (they are not executed), and the chain ends at the first unlinked event.
  Harness harness;
  harness.accounts_setup();
  const Snapshot before = harness.snapshot();
  const std::vector<CreateTransferResult> results = harness.create_transfers({
      transfer_of({.id = 1, .debit_account_id = 1, .credit_account_id = 1, .flags = tf::linked}),
      transfer_of({.id = 0, .flags = tf::linked}),
      transfer_of({.id = 3, .debit_account_id = 99, .credit_account_id = 2}),
  });
  const u64 t = harness.batch_timestamp_first;
  TALLY_CHECK_RESULT(results[0], S::accounts_must_be_different, t);
  TALLY_CHECK_RESULT(results[1], S::linked_event_failed, t + 1);
  TALLY_CHECK_RESULT(results[2], S::linked_event_failed, t + 2);
  // Event 2 was not executed, so it burned nothing (debit_account_not_found would have).
  harness.check_unchanged(before);
}

TEST_CASE("linked chains of transfers that all succeed are committed") {
  // Goal: a successful chain keeps every effect; later chain events see earlier ones (a post of
  // a pending transfer created earlier in the same chain).
  Harness harness;
  harness.accounts_setup();
  const std::vector<CreateTransferResult> results = harness.create_transfers({
      transfer_of({.id = 1, .debit_account_id = 1, .credit_account_id = 2, .amount = 10,
                   .flags = tf::linked | tf::pending}),
      resolve(2, 1, tf::linked | tf::post_pending_transfer, 4),
      transfer_of({.id = 3, .debit_account_id = 2, .credit_account_id = 1, .amount = 1}),
  });
  const u64 t = harness.batch_timestamp_first;
  TALLY_CHECK_RESULT(results[0], S::created, t);
  TALLY_CHECK_RESULT(results[1], S::created, t + 1);
  TALLY_CHECK_RESULT(results[2], S::created, t + 2);
  check_balances(harness, 1, 0, 4, 0, 1);
  check_balances(harness, 2, 0, 1, 0, 4);
  CHECK(harness.transfer(2)->amount == 4);
  CHECK(harness.transfer(2)->flags == (tf::linked | tf::post_pending_transfer));
}

TEST_CASE("linked_event_chain_open (2)") {
  // Goal: a batch that ends inside a chain: the last event gets 2, the rest of the open chain
  // 1, and nothing of the chain remains. An event before the chain is unaffected.
  Harness harness;
  harness.accounts_setup();
  const Snapshot before = harness.snapshot();
  std::vector<CreateTransferResult> results = harness.create_transfers({
      transfer_of({.id = 1, .debit_account_id = 1, .credit_account_id = 2, .amount = 1,
                   .flags = tf::linked}),
  });
  TALLY_CHECK_RESULT(results[0], S::linked_event_chain_open, harness.batch_timestamp_first);
  harness.check_unchanged(before);

  results = harness.create_transfers({
      transfer_of({.id = 1, .debit_account_id = 1, .credit_account_id = 2, .amount = 1}),
      transfer_of({.id = 2, .debit_account_id = 1, .credit_account_id = 2, .amount = 2,
                   .flags = tf::linked}),
      transfer_of({.id = 3, .debit_account_id = 99, .credit_account_id = 2, .amount = 3,
                   .flags = tf::linked}),
  });
  const u64 t = harness.batch_timestamp_first;
  TALLY_CHECK_RESULT(results[0], S::created, t);
  TALLY_CHECK_RESULT(results[1], S::linked_event_failed, t + 1);
  // The open-chain status wins over the event's own failure: it is not executed, burns nothing.
  TALLY_CHECK_RESULT(results[2], S::linked_event_chain_open, t + 2);
  CHECK_FALSE(harness.transfer(2).has_value());
  CHECK_FALSE(harness.state_machine.ledger().failed_contains(3));
  check_balances(harness, 1, 0, 1, 0, 0);
}

TEST_CASE("timestamp_must_be_zero (3)") {
  // Goal: a non-imported event with a timestamp, which also has a reserved flag and id 0.
  Harness harness;
  harness.accounts_setup();
  check_rejected(harness,
                 transfer_of({.id = 0, .ledger = 0, .flags = tf::pending | (1u << 9),
                              .timestamp = 1}),
                 S::timestamp_must_be_zero);
}

TEST_CASE("reserved_flag (4)") {
  // Goal: each of bits 9..15; checked before the id.
  Harness harness;
  harness.accounts_setup();
  for (u32 bit = 9; bit < 16; bit += 1) {
    CAPTURE(bit);
    check_rejected(harness, transfer_of({.id = 0, .flags = static_cast<u16>(1u << bit)}),
                   S::reserved_flag);
  }
}

TEST_CASE("id_must_not_be_zero (5) and id_must_not_be_int_max (6)") {
  // Goal: the id checks come before everything but the flags and the timestamp.
  Harness harness;
  harness.accounts_setup();
  SUBCASE("id_must_not_be_zero (5)") {
    check_rejected(harness, transfer_of({.id = 0, .ledger = 0}), S::id_must_not_be_zero);
  }
  SUBCASE("id_must_not_be_int_max (6)") {
    check_rejected(harness, transfer_of({.id = u128_max, .ledger = 0}), S::id_must_not_be_int_max);
  }
}

TEST_CASE("flags_are_mutually_exclusive (7)") {
  // Goal: §7.6 step 1: post or void with each flag that conflicts; checked before the pending
  // id (0 here) and the timeout (1 here).
  Harness harness;
  harness.accounts_setup();
  const u16 conflicts[] = {
      tf::post_pending_transfer | tf::void_pending_transfer,
      tf::post_pending_transfer | tf::pending,
      tf::void_pending_transfer | tf::pending,
      tf::post_pending_transfer | tf::balancing_debit,
      tf::void_pending_transfer | tf::balancing_credit,
      tf::post_pending_transfer | tf::closing_debit,
      tf::void_pending_transfer | tf::closing_credit,
  };
  for (const u16 flags : conflicts) {
    CAPTURE(flags);
    check_rejected(harness, transfer_of({.id = 10, .timeout = 1, .flags = flags}),
                   S::flags_are_mutually_exclusive);
  }
}

TEST_CASE("debit/credit account id checks (8, 9, 10, 11) and accounts_must_be_different (12)") {
  // Goal: §7.4 step 8 in order; each event also has a pending id (13 would come next).
  Harness harness;
  harness.accounts_setup();
  const auto event = [](u128 debit, u128 credit) {
    return transfer_of({.id = 10, .debit_account_id = debit, .credit_account_id = credit,
                        .pending_id = 5});
  };
  SUBCASE("debit_account_id_must_not_be_zero (8)") {
    check_rejected(harness, event(0, 0), S::debit_account_id_must_not_be_zero);
  }
  SUBCASE("debit_account_id_must_not_be_int_max (9)") {
    check_rejected(harness, event(u128_max, 0), S::debit_account_id_must_not_be_int_max);
  }
  SUBCASE("credit_account_id_must_not_be_zero (10)") {
    check_rejected(harness, event(1, 0), S::credit_account_id_must_not_be_zero);
  }
  SUBCASE("credit_account_id_must_not_be_int_max (11)") {
    check_rejected(harness, event(1, u128_max), S::credit_account_id_must_not_be_int_max);
  }
  SUBCASE("accounts_must_be_different (12)") {
    check_rejected(harness, event(1, 1), S::accounts_must_be_different);
  }
}

TEST_CASE("pending_id_must_be_zero (13)") {
  // Goal: a transfer that is not a post/void must not name a pending id; checked before the
  // timeout (a non-pending transfer with a timeout) and the ledger.
  Harness harness;
  harness.accounts_setup();
  check_rejected(harness,
                 transfer_of({.id = 10, .debit_account_id = 1, .credit_account_id = 2,
                              .pending_id = 5, .timeout = 1, .ledger = 0}),
                 S::pending_id_must_be_zero);
}

TEST_CASE("pending_id_must_not_be_zero (14), _int_max (15), _be_different (16)") {
  // Goal: §7.6 step 2 in order, each event also carrying a timeout (17 would come next).
  Harness harness;
  harness.accounts_setup();
  SUBCASE("pending_id_must_not_be_zero (14): post") {
    check_rejected(harness,
                   transfer_of({.id = 10, .timeout = 1, .flags = tf::post_pending_transfer}),
                   S::pending_id_must_not_be_zero);
  }
  SUBCASE("pending_id_must_not_be_zero (14): void") {
    check_rejected(harness,
                   transfer_of({.id = 10, .timeout = 1, .flags = tf::void_pending_transfer}),
                   S::pending_id_must_not_be_zero);
  }
  SUBCASE("pending_id_must_not_be_int_max (15)") {
    check_rejected(harness,
                   transfer_of({.id = 10, .pending_id = u128_max, .timeout = 1,
                                .flags = tf::post_pending_transfer}),
                   S::pending_id_must_not_be_int_max);
  }
  SUBCASE("pending_id_must_be_different (16)") {
    check_rejected(harness,
                   transfer_of({.id = 10, .pending_id = 10, .timeout = 1,
                                .flags = tf::void_pending_transfer}),
                   S::pending_id_must_be_different);
  }
}

TEST_CASE("timeout_reserved_for_pending_transfer (17)") {
  // Goal: a timeout on a single-phase transfer (checked before closing_transfer_must_be_pending
  // and the ledger) and on a post (checked before the pending transfer is looked up).
  Harness harness;
  harness.accounts_setup();
  check_rejected(harness,
                 transfer_of({.id = 10, .debit_account_id = 1, .credit_account_id = 2,
                              .timeout = 1, .ledger = 0, .flags = tf::closing_debit}),
                 S::timeout_reserved_for_pending_transfer);
  check_rejected(harness,
                 transfer_of({.id = 10, .pending_id = 99, .timeout = 1,
                              .flags = tf::post_pending_transfer}),
                 S::timeout_reserved_for_pending_transfer);
}

TEST_CASE("ledger_must_not_be_zero (19) and code_must_not_be_zero (20)") {
  // Goal: both checked before the accounts are looked up (account 99 does not exist, which
  // would burn the id).
  Harness harness;
  harness.accounts_setup();
  SUBCASE("ledger_must_not_be_zero (19)") {
    check_rejected(harness,
                   transfer_of({.id = 10, .debit_account_id = 99, .credit_account_id = 2,
                                .ledger = 0, .code = 0}),
                   S::ledger_must_not_be_zero);
  }
  SUBCASE("code_must_not_be_zero (20)") {
    check_rejected(harness,
                   transfer_of({.id = 10, .debit_account_id = 99, .credit_account_id = 2,
                                .code = 0}),
                   S::code_must_not_be_zero);
  }
}

TEST_CASE("debit_account_not_found (21) and credit_account_not_found (22) burn the id") {
  // Goal: both are transient (§7.4): the id is refused afterwards with 68, even for an event
  // that would now succeed (check_rejected also resubmits the same event: 68).
  Harness harness;
  harness.accounts_setup();
  SUBCASE("debit_account_not_found (21)") {
    check_rejected(harness,
                   transfer_of({.id = 10, .debit_account_id = 99, .credit_account_id = 98,
                                .ledger = 2}),
                   S::debit_account_not_found);
  }
  SUBCASE("credit_account_not_found (22)") {
    check_rejected(harness,
                   transfer_of({.id = 10, .debit_account_id = 1, .credit_account_id = 98,
                                .ledger = 2}),
                   S::credit_account_not_found);
  }
  const std::vector<CreateTransferResult> results = harness.create_transfers(
      {transfer_of({.id = 10, .debit_account_id = 1, .credit_account_id = 2, .amount = 1})});
  TALLY_CHECK_RESULT(results[0], S::id_already_failed, harness.batch_timestamp_first);
}

TEST_CASE("accounts_must_have_the_same_ledger (23), transfer_must_have_the_same_ledger (24)") {
  // Goal: §7.4 step 13; neither burns the id.
  Harness harness;
  harness.accounts_setup();
  SUBCASE("accounts_must_have_the_same_ledger (23)") {
    check_rejected(harness,
                   transfer_of({.id = 10, .debit_account_id = 1, .credit_account_id = 3,
                                .ledger = 2}),
                   S::accounts_must_have_the_same_ledger);
  }
  SUBCASE("transfer_must_have_the_same_ledger_as_accounts (24)") {
    check_rejected(harness,
                   transfer_of({.id = 10, .debit_account_id = 1, .credit_account_id = 2,
                                .ledger = 2}),
                   S::transfer_must_have_the_same_ledger_as_accounts);
  }
  harness.create_transfers_ok(
      {transfer_of({.id = 10, .debit_account_id = 1, .credit_account_id = 2, .amount = 1})});
}

TEST_CASE("pending_transfer_not_found (25) and pending_transfer_not_pending (26)") {
  // Goal: §7.6 step 3; 25 is transient and burns the id, 26 does not.
  Harness harness;
  harness.accounts_setup();
  harness.create_transfers_ok(
      {transfer_of({.id = 50, .debit_account_id = 1, .credit_account_id = 2, .amount = 15})});
  SUBCASE("pending_transfer_not_found (25)") {
    check_rejected(harness, resolve(10, 99, tf::post_pending_transfer, 1),
                   S::pending_transfer_not_found);
  }
  SUBCASE("pending_transfer_not_pending (26)") {
    check_rejected(harness, resolve(11, 50, tf::void_pending_transfer, 0),
                   S::pending_transfer_not_pending);
    CHECK_FALSE(harness.state_machine.ledger().failed_contains(11));
  }
}

TEST_CASE("pending_transfer_has_different_debit/credit_account_id/ledger/code (27..30)") {
  // Goal: §7.6 step 4 in order; non-zero fields must match the pending transfer. Each event
  // matches the fields checked before its status's field and differs in that field, every
  // later one and the amount (checked after); user data may always differ.
  Harness harness;
  harness.accounts_setup();
  harness.create_transfers_ok({transfer_of({.id = 50, .debit_account_id = 1,
                                            .credit_account_id = 2, .amount = 15,
                                            .user_data_128 = 9, .flags = tf::pending})});
  const auto differing_from = [](u32 first_different) {
    Transfer event = transfer_of({.id = 10, .debit_account_id = 1, .credit_account_id = 2,
                                  .amount = 16, .pending_id = 50, .user_data_128 = 1,
                                  .ledger = 1, .code = 1, .flags = tf::post_pending_transfer});
    if (first_different == 0) event.debit_account_id = 7;
    if (first_different <= 1) event.credit_account_id = 8;
    if (first_different <= 2) event.ledger = 2;
    if (first_different <= 3) event.code = 2;
    return event;
  };
  SUBCASE("pending_transfer_has_different_debit_account_id (27)") {
    check_rejected(harness, differing_from(0),
                   S::pending_transfer_has_different_debit_account_id);
  }
  SUBCASE("pending_transfer_has_different_credit_account_id (28)") {
    check_rejected(harness, differing_from(1),
                   S::pending_transfer_has_different_credit_account_id);
  }
  SUBCASE("pending_transfer_has_different_ledger (29)") {
    check_rejected(harness, differing_from(2), S::pending_transfer_has_different_ledger);
  }
  SUBCASE("pending_transfer_has_different_code (30)") {
    check_rejected(harness, differing_from(3), S::pending_transfer_has_different_code);
  }
  SUBCASE("every field matching: only the amount is wrong") {
    check_rejected(harness, differing_from(4), S::exceeds_pending_transfer_amount);
  }
}

TEST_CASE("exceeds_pending_transfer_amount (31) and pending_transfer_has_different_amount (32)") {
  // Goal: §7.6 step 5: post more than pending (31); void more (31) or less (32) than pending.
  // The checks come before the pending transfer's status, so they also win over 33.
  Harness harness;
  harness.accounts_setup();
  harness.create_transfers_ok({transfer_of({.id = 50, .debit_account_id = 1,
                                            .credit_account_id = 2, .amount = 15,
                                            .flags = tf::pending})});
  SUBCASE("exceeds_pending_transfer_amount (31)") {
    check_rejected(harness, resolve(10, 50, tf::post_pending_transfer, 16),
                   S::exceeds_pending_transfer_amount);
    check_rejected(harness, resolve(11, 50, tf::void_pending_transfer, 16),
                   S::exceeds_pending_transfer_amount);
    check_rejected(harness, resolve(12, 50, tf::post_pending_transfer, u128_max - 1),
                   S::exceeds_pending_transfer_amount);
  }
  SUBCASE("pending_transfer_has_different_amount (32)") {
    check_rejected(harness, resolve(10, 50, tf::void_pending_transfer, 14),
                   S::pending_transfer_has_different_amount);
    check_rejected(harness, resolve(11, 50, tf::void_pending_transfer, 1),
                   S::pending_transfer_has_different_amount);
  }
  SUBCASE("after the pending transfer was posted") {
    harness.create_transfers_ok({resolve(11, 50, tf::post_pending_transfer, 15)});
    check_rejected(harness, resolve(10, 50, tf::post_pending_transfer, 16),
                   S::exceeds_pending_transfer_amount);
    check_rejected(harness, resolve(10, 50, tf::void_pending_transfer, 1),
                   S::pending_transfer_has_different_amount);
  }
}

TEST_CASE("pending_transfer_already_posted (33) and pending_transfer_already_voided (34)") {
  // Goal: a pending transfer is resolved once; neither status burns the id.
  Harness harness;
  harness.accounts_setup();
  harness.create_transfers_ok({
      transfer_of({.id = 50, .debit_account_id = 1, .credit_account_id = 2, .amount = 15,
                   .flags = tf::pending}),
      transfer_of({.id = 51, .debit_account_id = 1, .credit_account_id = 2, .amount = 15,
                   .flags = tf::pending}),
      resolve(52, 50, tf::post_pending_transfer, u128_max),
      resolve(53, 51, tf::void_pending_transfer, 0),
  });
  SUBCASE("pending_transfer_already_posted (33): post") {
    check_rejected(harness, resolve(10, 50, tf::post_pending_transfer, u128_max),
                   S::pending_transfer_already_posted);
  }
  SUBCASE("pending_transfer_already_posted (33): void") {
    check_rejected(harness, resolve(10, 50, tf::void_pending_transfer, 0),
                   S::pending_transfer_already_posted);
  }
  SUBCASE("pending_transfer_already_voided (34): post") {
    check_rejected(harness, resolve(10, 51, tf::post_pending_transfer, 15),
                   S::pending_transfer_already_voided);
  }
  SUBCASE("pending_transfer_already_voided (34): void") {
    check_rejected(harness, resolve(10, 51, tf::void_pending_transfer, 15),
                   S::pending_transfer_already_voided);
  }
  check_balances(harness, 1, 0, 15, 0, 0);
}

TEST_CASE("pending_transfer_expired (35): after a pulse expired it") {
  // Goal: §7.9: a pulse at exactly timestamp + timeout expires the transfer (not one ns before);
  // expiry releases the pending balances; a later post or void gets 35, which burns nothing.
  Harness harness;
  harness.accounts_setup();
  const u64 t = harness.create_transfers_ok(
      {transfer_of({.id = 50, .debit_account_id = 1, .credit_account_id = 2, .amount = 15,
                    .timeout = 1, .flags = tf::pending})});
  CHECK(harness.state_machine.pulse_needed(t + second));
  CHECK_FALSE(harness.state_machine.pulse_needed(t + second - 1));
  CHECK(harness.state_machine.pulse(t + second - 1) == 0);
  check_balances(harness, 1, 15, 0, 0, 0);
  CHECK(harness.state_machine.pulse(t + second) == 1);
  CHECK_FALSE(harness.state_machine.pulse_needed(t + 100 * second));
  check_balances(harness, 1, 0, 0, 0, 0);
  check_balances(harness, 2, 0, 0, 0, 0);
  CHECK(harness.transfer(50)->flags == tf::pending);  // The record itself never changes.

  harness.timestamp_next = t + 2 * second;
  check_rejected(harness, resolve(10, 50, tf::post_pending_transfer, u128_max),
                 S::pending_transfer_expired);
  check_rejected(harness, resolve(10, 50, tf::void_pending_transfer, 0),
                 S::pending_transfer_expired);
  harness.create_transfers_ok(
      {transfer_of({.id = 10, .debit_account_id = 1, .credit_account_id = 2, .amount = 1})});
}

TEST_CASE("pending_transfer_expired (35): without a pulse, by the event's timestamp (§7.6.6)") {
  // Goal: a post at timestamp + timeout - 1 still succeeds; one at timestamp + timeout gets 35
  // even though no pulse has run (the balances stay pending until one does).
  Harness harness;
  harness.accounts_setup();
  const u64 t = harness.create_transfers_ok({
      transfer_of({.id = 50, .debit_account_id = 1, .credit_account_id = 2, .amount = 15,
                   .timeout = 1, .flags = tf::pending}),
      transfer_of({.id = 51, .debit_account_id = 1, .credit_account_id = 2, .amount = 20,
                   .timeout = 1, .flags = tf::pending}),
  });
  harness.timestamp_next = t + second - 1;  // Transfer 50 expires at t + 1 s.
  std::vector<CreateTransferResult> results = harness.create_transfers(
      {resolve(10, 50, tf::post_pending_transfer, u128_max)});
  TALLY_CHECK_RESULT(results[0], S::created, t + second - 1);

  harness.timestamp_next = t + 1 + second;  // Transfer 51 expires at t + 1 + 1 s.
  check_rejected(harness, resolve(11, 51, tf::void_pending_transfer, 0),
                 S::pending_transfer_expired);
  check_balances(harness, 1, 20, 15, 0, 0);
  CHECK(harness.state_machine.pulse(t + 1 + second) == 1);  // Transfer 50's expiry: skipped.
  check_balances(harness, 1, 0, 15, 0, 0);
}

TEST_CASE("exists_with_different_* (36..45, 67) and exists (46) for a single-phase transfer") {
  // Goal: §7.5 in order: flags, pending_id, timeout, then debit, credit, amount, user data,
  // ledger, code. Each event matches the fields compared before its status's field and differs
  // in that field and every later one. The exists comparison comes before the validity checks
  // (a debit account id 0 gives 37, not 8).
  Harness harness;
  harness.accounts_setup();
  const Transfer e = transfer_of({.id = 60, .debit_account_id = 1, .credit_account_id = 2,
                                  .amount = 123, .timeout = 1, .flags = tf::pending});
  const u64 t_existing = harness.create_transfers_ok({e});
  const auto differing_from = [&](u32 first_different) {
    Transfer event = e;
    if (first_different == 0) event.flags = 0;
    if (first_different <= 1) event.pending_id = 5;
    if (first_different <= 2) event.timeout = 2;
    if (first_different <= 3) event.debit_account_id = 0;
    if (first_different <= 4) event.credit_account_id = 7;
    if (first_different <= 5) event.amount = 0;
    if (first_different <= 6) event.user_data_128 = 1;
    if (first_different <= 7) event.user_data_64 = 1;
    if (first_different <= 8) event.user_data_32 = 1;
    if (first_different <= 9) event.ledger = 2;
    if (first_different <= 10) event.code = 2;
    return event;
  };
  SUBCASE("exists_with_different_flags (36)") {
    check_rejected(harness, differing_from(0), S::exists_with_different_flags);
  }
  SUBCASE("exists_with_different_pending_id (40)") {
    check_rejected(harness, differing_from(1), S::exists_with_different_pending_id);
  }
  SUBCASE("exists_with_different_timeout (44)") {
    check_rejected(harness, differing_from(2), S::exists_with_different_timeout);
  }
  SUBCASE("exists_with_different_debit_account_id (37)") {
    check_rejected(harness, differing_from(3), S::exists_with_different_debit_account_id);
  }
  SUBCASE("exists_with_different_credit_account_id (38)") {
    check_rejected(harness, differing_from(4), S::exists_with_different_credit_account_id);
  }
  SUBCASE("exists_with_different_amount (39)") {
    check_rejected(harness, differing_from(5), S::exists_with_different_amount);
  }
  SUBCASE("exists_with_different_user_data_128 (41)") {
    check_rejected(harness, differing_from(6), S::exists_with_different_user_data_128);
  }
  SUBCASE("exists_with_different_user_data_64 (42)") {
    check_rejected(harness, differing_from(7), S::exists_with_different_user_data_64);
  }
  SUBCASE("exists_with_different_user_data_32 (43)") {
    check_rejected(harness, differing_from(8), S::exists_with_different_user_data_32);
  }
  SUBCASE("exists_with_different_ledger (67)") {
    check_rejected(harness, differing_from(9), S::exists_with_different_ledger);
  }
  SUBCASE("exists_with_different_code (45)") {
    check_rejected(harness, differing_from(10), S::exists_with_different_code);
  }
  SUBCASE("exists (46): the existing transfer's timestamp") {
    harness.timestamp_next += 1000;
    const Snapshot before = harness.snapshot();
    const std::vector<CreateTransferResult> results =
        harness.create_transfers({differing_from(11)});
    TALLY_CHECK_RESULT(results[0], S::exists, t_existing);
    harness.check_unchanged(before);
  }
}

TEST_CASE("exists_with_different_* and exists (46) for a post and a void (§7.5)") {
  // Goal: the post/void comparison: zero fields stand for the pending transfer's values
  // (amount: 2^128-1 for a post, 0 for a void), non-zero ones must equal the stored record.
  // Each event matches the fields compared before its status's field.
  Harness harness;
  harness.accounts_setup();
  harness.create_transfers_ok({
      transfer_of({.id = 70, .debit_account_id = 1, .credit_account_id = 2, .amount = 15,
                   .user_data_128 = 9, .user_data_64 = 9, .user_data_32 = 9,
                   .flags = tf::pending}),
      transfer_of({.id = 72, .debit_account_id = 1, .credit_account_id = 2, .amount = 20,
                   .flags = tf::pending}),
  });
  // Stored: 1 -> 2, amount 13, user data 1/1/1, ledger 1, code 1.
  const Transfer post = transfer_of({.id = 71, .amount = 13, .pending_id = 70,
                                     .user_data_128 = 1, .user_data_64 = 1, .user_data_32 = 1,
                                     .ledger = 0, .code = 0, .flags = tf::post_pending_transfer});
  const u64 t_post = harness.create_transfers_ok({post});
  // Stored: amount 20, user data 0/0/0 (the pending transfer's).
  const u64 t_void = harness.create_transfers_ok({resolve(73, 72, tf::void_pending_transfer, 0)});
  Transfer event = post;

  SUBCASE("exists_with_different_flags (36)") {
    event.flags = tf::void_pending_transfer;
    check_rejected(harness, event, S::exists_with_different_flags);
  }
  SUBCASE("exists_with_different_pending_id (40)") {
    event.pending_id = 72;
    check_rejected(harness, event, S::exists_with_different_pending_id);
  }
  SUBCASE("exists_with_different_timeout (44)") {
    event.timeout = 1;
    check_rejected(harness, event, S::exists_with_different_timeout);
  }
  SUBCASE("exists_with_different_debit_account_id (37)") {
    event.debit_account_id = 7;
    event.credit_account_id = 7;
    event.amount = 14;
    check_rejected(harness, event, S::exists_with_different_debit_account_id);
  }
  SUBCASE("exists_with_different_credit_account_id (38)") {
    event.debit_account_id = 1;
    event.credit_account_id = 7;
    event.amount = 14;
    check_rejected(harness, event, S::exists_with_different_credit_account_id);
  }
  SUBCASE("exists_with_different_amount (39)") {
    event.amount = 14;
    event.user_data_128 = 5;
    check_rejected(harness, event, S::exists_with_different_amount);
    event.amount = u128_max;  // "The pending amount", 15, but 13 was posted.
    check_rejected(harness, event, S::exists_with_different_amount);
    event.amount = 0;  // Not a default for a post.
    check_rejected(harness, event, S::exists_with_different_amount);
    check_rejected(harness, resolve(73, 72, tf::void_pending_transfer, 19),
                   S::exists_with_different_amount);
  }
  SUBCASE("exists_with_different_user_data_128 (41)") {
    event.user_data_128 = 0;  // Stands for the pending transfer's 9; 1 was stored.
    event.user_data_64 = 5;
    check_rejected(harness, event, S::exists_with_different_user_data_128);
    Transfer void_event = resolve(73, 72, tf::void_pending_transfer, 0);
    void_event.user_data_128 = 5;
    check_rejected(harness, void_event, S::exists_with_different_user_data_128);
  }
  SUBCASE("exists_with_different_user_data_64 (42)") {
    event.user_data_64 = 0;
    event.user_data_32 = 5;
    check_rejected(harness, event, S::exists_with_different_user_data_64);
  }
  SUBCASE("exists_with_different_user_data_32 (43)") {
    event.user_data_32 = 2;
    event.ledger = 2;
    check_rejected(harness, event, S::exists_with_different_user_data_32);
  }
  SUBCASE("exists_with_different_ledger (67)") {
    event.ledger = 2;
    event.code = 2;
    check_rejected(harness, event, S::exists_with_different_ledger);
  }
  SUBCASE("exists_with_different_code (45)") {
    event.ledger = 1;
    event.code = 2;
    check_rejected(harness, event, S::exists_with_different_code);
  }
  SUBCASE("exists (46)") {
    // Explicit values equal to the stored ones, or zero fields standing for the pending one's.
    Transfer explicit_post = post;
    explicit_post.debit_account_id = 1;
    explicit_post.credit_account_id = 2;
    explicit_post.ledger = 1;
    explicit_post.code = 1;
    std::vector<CreateTransferResult> results = harness.create_transfers({explicit_post, post});
    TALLY_CHECK_RESULT(results[0], S::exists, t_post);
    TALLY_CHECK_RESULT(results[1], S::exists, t_post);
    results = harness.create_transfers({resolve(73, 72, tf::void_pending_transfer, 0),
                                        resolve(73, 72, tf::void_pending_transfer, 20)});
    TALLY_CHECK_RESULT(results[0], S::exists, t_void);
    TALLY_CHECK_RESULT(results[1], S::exists, t_void);
  }
}

TEST_CASE("overflows_debits_pending (47) and overflows_credits_pending (48)") {
  // Goal: pending balances near 2^128: one pending transfer of 2^128-1 fills them, one more
  // unit overflows. A pending transfer of 0 still fits. Only pending transfers check these:
  // a single-phase one of 1 fails later, on the pending + posted sum (51, 52).
  Harness harness;
  harness.accounts_setup();
  harness.create_transfers_ok({transfer_of({.id = 1, .debit_account_id = 1,
                                            .credit_account_id = 2, .amount = u128_max,
                                            .flags = tf::pending})});
  check_balances(harness, 1, u128_max, 0, 0, 0);
  check_balances(harness, 2, 0, 0, u128_max, 0);
  SUBCASE("overflows_debits_pending (47)") {
    check_rejected(harness,
                   transfer_of({.id = 10, .debit_account_id = 1, .credit_account_id = 2,
                                .amount = 1, .timeout = 0xFFFF'FFFF, .flags = tf::pending}),
                   S::overflows_debits_pending);
  }
  SUBCASE("overflows_credits_pending (48)") {
    check_rejected(harness,
                   transfer_of({.id = 11, .debit_account_id = 7, .credit_account_id = 2,
                                .amount = 1, .flags = tf::pending}),
                   S::overflows_credits_pending);
  }
  SUBCASE("a single-phase transfer: overflows_debits (51)") {
    check_rejected(harness,
                   transfer_of({.id = 12, .debit_account_id = 1, .credit_account_id = 7,
                                .amount = 1}),
                   S::overflows_debits);
  }
  SUBCASE("a single-phase transfer: overflows_credits (52)") {
    check_rejected(harness,
                   transfer_of({.id = 13, .debit_account_id = 8, .credit_account_id = 2,
                                .amount = 1}),
                   S::overflows_credits);
  }
  harness.create_transfers_ok({transfer_of({.id = 14, .debit_account_id = 1,
                                            .credit_account_id = 2, .amount = 0,
                                            .flags = tf::pending})});
}

TEST_CASE("overflows_debits_posted (49) and overflows_credits_posted (50)") {
  // Goal: posted balances at 2^128-1; the posted checks also apply to a pending transfer.
  Harness harness;
  harness.accounts_setup();
  harness.create_transfers_ok({transfer_of({.id = 1, .debit_account_id = 1,
                                            .credit_account_id = 2, .amount = u128_max})});
  SUBCASE("overflows_debits_posted (49)") {
    check_rejected(harness,
                   transfer_of({.id = 10, .debit_account_id = 1, .credit_account_id = 2,
                                .amount = 1}),
                   S::overflows_debits_posted);
  }
  SUBCASE("overflows_debits_posted (49): also for a pending transfer") {
    check_rejected(harness,
                   transfer_of({.id = 11, .debit_account_id = 1, .credit_account_id = 7,
                                .amount = 1, .flags = tf::pending}),
                   S::overflows_debits_posted);
  }
  SUBCASE("overflows_credits_posted (50)") {
    check_rejected(harness,
                   transfer_of({.id = 12, .debit_account_id = 7, .credit_account_id = 2,
                                .amount = 1}),
                   S::overflows_credits_posted);
  }
  // Posting a pending amount into a full posted balance cannot happen: the pending transfer
  // itself is refused (above), so the invariant pending + posted <= 2^128-1 always holds.
}

TEST_CASE("overflows_debits (51) and overflows_credits (52): pending + posted near 2^128") {
  // Goal: neither balance alone overflows, their sum with the amount does.
  Harness harness;
  harness.accounts_setup();
  harness.create_transfers_ok({
      transfer_of({.id = 1, .debit_account_id = 1, .credit_account_id = 9, .amount = two_127,
                   .flags = tf::pending}),
      transfer_of({.id = 2, .debit_account_id = 1, .credit_account_id = 9,
                   .amount = two_127 - 1}),
  });
  check_balances(harness, 1, two_127, two_127 - 1, 0, 0);
  check_balances(harness, 9, 0, 0, two_127, two_127 - 1);
  SUBCASE("overflows_debits (51)") {
    check_rejected(harness,
                   transfer_of({.id = 10, .debit_account_id = 1, .credit_account_id = 8,
                                .amount = 1}),
                   S::overflows_debits);
  }
  SUBCASE("overflows_credits (52)") {
    check_rejected(harness,
                   transfer_of({.id = 11, .debit_account_id = 2, .credit_account_id = 9,
                                .amount = 1}),
                   S::overflows_credits);
  }
  // Amount 0 fits exactly.
  harness.create_transfers_ok({transfer_of({.id = 12, .debit_account_id = 1,
                                            .credit_account_id = 9, .amount = 0})});
}

TEST_CASE("overflows_timeout (53)") {
  // Goal: timestamp + timeout * 10^9 may equal 2^63-1 but not exceed it; checked before
  // exceeds_credits (account 4 has no credits).
  Harness harness;
  harness.accounts_setup();
  constexpr u32 timeout = 4'000'000'000;
  harness.timestamp_next = timestamp_max - u64{timeout} * second;
  const u64 t = harness.create_transfers_ok({transfer_of({.id = 1, .debit_account_id = 1,
                                                          .credit_account_id = 2, .amount = 1,
                                                          .timeout = timeout,
                                                          .flags = tf::pending})});
  CHECK(t + u64{timeout} * second == timestamp_max);
  check_rejected(harness,
                 transfer_of({.id = 10, .debit_account_id = 4, .credit_account_id = 2,
                              .amount = 1, .timeout = timeout, .flags = tf::pending}),
                 S::overflows_timeout);
  check_rejected(harness,
                 transfer_of({.id = 10, .debit_account_id = 1, .credit_account_id = 2,
                              .amount = 1, .timeout = 0xFFFF'FFFF, .flags = tf::pending}),
                 S::overflows_timeout);
}

TEST_CASE("exceeds_credits (54) and exceeds_debits (55)") {
  // Goal: §7.4 step 19: account 4 (debits must not exceed credits) counts its pending and
  // posted debits against posted credits only; account 5 the mirror image. Both burn the id.
  Harness harness;
  harness.accounts_setup();
  harness.create_transfers_ok({
      transfer_of({.id = 1, .debit_account_id = 1, .credit_account_id = 4, .amount = 10}),
      transfer_of({.id = 2, .debit_account_id = 4, .credit_account_id = 2, .amount = 5,
                   .flags = tf::pending}),
      // Pending credits do not count as credits.
      transfer_of({.id = 3, .debit_account_id = 2, .credit_account_id = 4, .amount = 100,
                   .flags = tf::pending}),
      transfer_of({.id = 4, .debit_account_id = 5, .credit_account_id = 1, .amount = 10}),
  });
  SUBCASE("exceeds_credits (54)") {
    check_rejected(harness,
                   transfer_of({.id = 10, .debit_account_id = 4, .credit_account_id = 2,
                                .amount = 6}),
                   S::exceeds_credits);
  }
  SUBCASE("exceeds_debits (55)") {
    check_rejected(harness,
                   transfer_of({.id = 11, .debit_account_id = 1, .credit_account_id = 5,
                                .amount = 11}),
                   S::exceeds_debits);
  }
  // Both limits broken: exceeds_credits first.
  SUBCASE("both limits broken: exceeds_credits (54) first") {
    check_rejected(harness,
                   transfer_of({.id = 12, .debit_account_id = 4, .credit_account_id = 5,
                                .amount = 11}),
                   S::exceeds_credits);
  }
  // Exactly at the limits.
  harness.create_transfers_ok({
      transfer_of({.id = 13, .debit_account_id = 4, .credit_account_id = 2, .amount = 5}),
      transfer_of({.id = 14, .debit_account_id = 4, .credit_account_id = 2, .amount = 0}),
      transfer_of({.id = 15, .debit_account_id = 1, .credit_account_id = 5, .amount = 10}),
  });
  check_balances(harness, 4, 5, 5, 100, 10);
  check_balances(harness, 5, 0, 10, 0, 10);
}

TEST_CASE("imported_event_expected (56) and imported_event_not_expected (57)") {
  // Goal: the first event decides the batch mode (§7.4 via §7.2 step 3); neither burns an id.
  Harness harness;
  harness.accounts_setup();
  harness.timestamp_next += 1000;
  const u64 t_accounts = timestamp_initial;  // Accounts 1..9 at t_accounts + id - 1.
  const Snapshot before = harness.snapshot();
  SUBCASE("imported_event_expected (56)") {
    const std::vector<CreateTransferResult> results = harness.create_transfers({
        transfer_of({.id = 1, .debit_account_id = 1, .credit_account_id = 2, .amount = 3,
                     .flags = tf::imported, .timestamp = t_accounts + 10}),
        transfer_of({.id = 2, .debit_account_id = 1, .credit_account_id = 2, .amount = 3}),
    });
    const u64 t = harness.batch_timestamp_first;
    TALLY_CHECK_RESULT(results[0], S::created, t_accounts + 10);
    TALLY_CHECK_RESULT(results[1], S::imported_event_expected, t + 1);
    CHECK(harness.transfer(1)->timestamp == t_accounts + 10);
    CHECK_FALSE(harness.transfer(2).has_value());
  }
  SUBCASE("imported_event_not_expected (57)") {
    const std::vector<CreateTransferResult> results = harness.create_transfers({
        transfer_of({.id = 3, .debit_account_id = 1, .credit_account_id = 2, .amount = 3}),
        transfer_of({.id = 4, .debit_account_id = 1, .credit_account_id = 2, .amount = 3,
                     .flags = tf::imported, .timestamp = t_accounts + 11}),
    });
    TALLY_CHECK_RESULT(results[0], S::created, harness.batch_timestamp_first);
    TALLY_CHECK_RESULT(results[1], S::imported_event_not_expected,
                       harness.batch_timestamp_first + 1);
    CHECK_FALSE(harness.transfer(4).has_value());
  }
  CHECK(harness.snapshot().transfers.size() == before.transfers.size() + 1);
  CHECK(harness.snapshot().failed_count == 0);
}

TEST_CASE("imported_event_timestamp_out_of_range (58) and _must_not_advance (59)") {
  // Goal: the imported timestamp is in [1, 2^63-1] and below the batch's last timestamp (t + 2
  // in a batch at t, t + 1, t + 2; event 0 may import t); both checked before the flags.
  Harness harness;
  harness.accounts_setup();
  SUBCASE("imported_event_timestamp_out_of_range (58)") {
    for (const u64 timestamp : {u64{0}, timestamp_max + 1}) {
      CAPTURE(timestamp);
      check_rejected(harness,
                     transfer_of({.id = 1, .flags = tf::imported | (1u << 15),
                                  .timestamp = timestamp}),
                     S::imported_event_timestamp_out_of_range);
    }
  }
  SUBCASE("imported_event_timestamp_must_not_advance (59)") {
    const u64 t = harness.timestamp_next;
    const std::vector<CreateTransferResult> results = harness.create_transfers({
        transfer_of({.id = 1, .debit_account_id = 1, .credit_account_id = 2, .amount = 1,
                     .flags = tf::imported, .timestamp = t + 2}),
        transfer_of({.id = 2, .debit_account_id = 1, .credit_account_id = 2, .amount = 1,
                     .flags = tf::imported | (1u << 15), .timestamp = timestamp_max}),
        transfer_of({.id = 3, .debit_account_id = 1, .credit_account_id = 2, .amount = 1,
                     .flags = tf::imported, .timestamp = t}),
    });
    TALLY_CHECK_RESULT(results[0], S::imported_event_timestamp_must_not_advance, t);
    TALLY_CHECK_RESULT(results[1], S::imported_event_timestamp_must_not_advance, t + 1);
    TALLY_CHECK_RESULT(results[2], S::created, t);
    CHECK_FALSE(harness.transfer(1).has_value());
  }
}

TEST_CASE("imported_event_timestamp_must_not_regress (60), _must_postdate_*_account (61, 62), "
          "imported_event_timeout_must_be_zero (63)") {
  // Goal: §7.4 step 14 in order, with imported accounts 1 (at 1000), 2 (2000), 7 (3000). Then
  // an imported post or void is also checked for regression (§7.6 step 7).
  Harness harness;
  harness.timestamp_next += 10;
  const std::vector<CreateAccountResult> accounts = harness.create_accounts({
      account_of(1, 1, account_flags::imported, 1000),
      account_of(2, 1, account_flags::imported, 2000),
      account_of(7, 1, account_flags::imported, 3000),
  });
  for (const CreateAccountResult& result : accounts) {
    REQUIRE(result.status == tally::CreateAccountStatus::created);
  }
  const auto imported = [](u128 id, u128 debit, u128 credit, u64 timestamp, u16 flags) {
    return transfer_of({.id = id, .debit_account_id = debit, .credit_account_id = credit,
                        .amount = 5, .flags = static_cast<u16>(flags | tf::imported),
                        .timestamp = timestamp});
  };
  SUBCASE("imported_event_timestamp_must_not_regress (60): equal to an account's timestamp") {
    // Before the postdate checks (account 7 is at 3000).
    check_rejected(harness, imported(10, 1, 7, 3000, 0),
                   S::imported_event_timestamp_must_not_regress);
    check_rejected(harness, imported(10, 1, 2, 2000, 0),
                   S::imported_event_timestamp_must_not_regress);
  }
  SUBCASE("imported_event_timestamp_must_postdate_debit_account (61)") {
    check_rejected(harness, imported(10, 7, 1, 2500, 0),
                   S::imported_event_timestamp_must_postdate_debit_account);
  }
  SUBCASE("imported_event_timestamp_must_postdate_credit_account (62)") {
    check_rejected(harness, imported(10, 1, 7, 2500, 0),
                   S::imported_event_timestamp_must_postdate_credit_account);
  }
  SUBCASE("imported_event_timeout_must_be_zero (63)") {
    Transfer with_timeout = imported(10, 1, 2, 3500, tf::pending);
    with_timeout.timeout = 1;
    check_rejected(harness, with_timeout, S::imported_event_timeout_must_be_zero);
  }

  // Then, in every run: a created import and the checks against stored transfers.
  std::vector<CreateTransferResult> results =
      harness.create_transfers({imported(10, 1, 2, 3500, tf::pending)});
  TALLY_CHECK_RESULT(results[0], S::created, 3500);
  CHECK(harness.transfer(10)->timestamp == 3500);
  check_balances(harness, 1, 5, 0, 0, 0);
  // At or below the newest transfer: 60.
  check_rejected(harness, imported(11, 1, 2, 3500, 0),
                 S::imported_event_timestamp_must_not_regress);
  check_rejected(harness, imported(11, 1, 2, 3499, 0),
                 S::imported_event_timestamp_must_not_regress);
  // Imported posts: the same regression check.
  Transfer post = resolve(12, 10, tf::post_pending_transfer | tf::imported, u128_max);
  post.timestamp = 3400;
  check_rejected(harness, post, S::imported_event_timestamp_must_not_regress);
  post.timestamp = 3000;
  check_rejected(harness, post, S::imported_event_timestamp_must_not_regress);
  post.timestamp = 3600;
  results = harness.create_transfers({post});
  TALLY_CHECK_RESULT(results[0], S::created, 3600);
  CHECK(harness.transfer(12)->timestamp == 3600);
  check_balances(harness, 1, 0, 5, 0, 0);
  // Re-importing: idempotency comes first, whatever the timestamp.
  results = harness.create_transfers({imported(10, 1, 2, 1, tf::pending)});
  TALLY_CHECK_RESULT(results[0], S::exists, 3500);
}

TEST_CASE("imported post of an expired pending transfer: expiry uses the assigned timestamp") {
  // Goal: §7.6 step 6 compares the pending transfer's expiry with "this event's timestamp",
  // the timestamp the cluster assigned (P - N + j + 1), as TigerBeetle does (it passes
  // timestamp_event, not the imported timestamp). The pending transfer was created with a 1 s
  // timeout; the import batch runs 2 s later but imports a timestamp 1 ns after it.
  Harness harness;
  harness.accounts_setup();
  const u64 t = harness.create_transfers_ok({transfer_of({.id = 50, .debit_account_id = 1,
                                                          .credit_account_id = 2, .amount = 15,
                                                          .timeout = 1, .flags = tf::pending})});
  harness.timestamp_next = t + 2 * second;
  Transfer post = resolve(51, 50, tf::post_pending_transfer | tf::imported, u128_max);
  post.timestamp = t + 1;
  check_rejected(harness, post, S::pending_transfer_expired);
  check_balances(harness, 1, 15, 0, 0, 0);
}

TEST_CASE("closing_transfer_must_be_pending (64)") {
  // Goal: closing flags need `pending`; checked before the ledger.
  Harness harness;
  harness.accounts_setup();
  check_rejected(harness,
                 transfer_of({.id = 10, .debit_account_id = 1, .credit_account_id = 2,
                              .ledger = 0, .flags = tf::closing_debit}),
                 S::closing_transfer_must_be_pending);
  check_rejected(harness,
                 transfer_of({.id = 10, .debit_account_id = 1, .credit_account_id = 2,
                              .flags = tf::closing_credit}),
                 S::closing_transfer_must_be_pending);
}

TEST_CASE("debit_account_already_closed (65) and credit_account_already_closed (66)") {
  // Goal: a closed account takes no new transfer and no post, in either role; only voids of
  // its pending transfers. Both statuses burn the id. Voiding the closing transfer re-opens.
  Harness harness;
  harness.accounts_setup();
  harness.create_transfers_ok({
      transfer_of({.id = 1, .debit_account_id = 1, .credit_account_id = 2, .amount = 10,
                   .flags = tf::pending}),
      transfer_of({.id = 2, .debit_account_id = 7, .credit_account_id = 1, .amount = 20,
                   .flags = tf::pending}),
      transfer_of({.id = 3, .debit_account_id = 1, .credit_account_id = 8,
                   .flags = tf::pending | tf::closing_debit}),
  });
  CHECK(harness.account(1)->flags == account_flags::closed);
  CHECK(harness.account(8)->flags == 0);

  SUBCASE("debit_account_already_closed (65)") {
    check_rejected(harness,
                   transfer_of({.id = 10, .debit_account_id = 1, .credit_account_id = 2,
                                .amount = 1}),
                   S::debit_account_already_closed);
  }
  SUBCASE("credit_account_already_closed (66)") {
    check_rejected(harness,
                   transfer_of({.id = 11, .debit_account_id = 2, .credit_account_id = 1,
                                .amount = 1}),
                   S::credit_account_already_closed);
  }
  SUBCASE("debit_account_already_closed (65): closing it again") {
    check_rejected(harness,
                   transfer_of({.id = 12, .debit_account_id = 1, .credit_account_id = 2,
                                .flags = tf::pending | tf::closing_debit}),
                   S::debit_account_already_closed);
  }
  SUBCASE("debit_account_already_closed (65): posting its pending debit") {
    check_rejected(harness, resolve(13, 1, tf::post_pending_transfer, u128_max),
                   S::debit_account_already_closed);
  }
  SUBCASE("credit_account_already_closed (66): posting its pending credit") {
    check_rejected(harness, resolve(14, 2, tf::post_pending_transfer, u128_max),
                   S::credit_account_already_closed);
  }
  SUBCASE("debit_account_already_closed (65): posting the closing transfer") {
    check_rejected(harness, resolve(15, 3, tf::post_pending_transfer, u128_max),
                   S::debit_account_already_closed);
  }

  // Voids are allowed in a closed account; they keep it closed unless they void the closing one.
  harness.create_transfers_ok({resolve(16, 1, tf::void_pending_transfer, 0),
                               resolve(17, 2, tf::void_pending_transfer, 0)});
  CHECK(harness.account(1)->flags == account_flags::closed);
  check_balances(harness, 1, 0, 0, 0, 0);
  harness.create_transfers_ok({resolve(18, 3, tf::void_pending_transfer, 0)});
  CHECK(harness.account(1)->flags == 0);
  harness.create_transfers_ok(
      {transfer_of({.id = 19, .debit_account_id = 1, .credit_account_id = 2, .amount = 1})});
}

TEST_CASE("id_already_failed (68): only the seven transient statuses burn ids") {
  // Goal: §7.4: 21, 22, 25, 54, 55, 65, 66 burn the id for good; a non-transient failure
  // (here 19, 23, 26, 31, 36) does not, so the id is created afterwards.
  Harness harness;
  harness.accounts_setup();
  harness.create_transfers_ok({
      transfer_of({.id = 100, .debit_account_id = 1, .credit_account_id = 2, .amount = 5}),
      transfer_of({.id = 101, .debit_account_id = 1, .credit_account_id = 2, .amount = 5,
                   .flags = tf::pending}),
      transfer_of({.id = 102, .debit_account_id = 8, .credit_account_id = 9,
                   .flags = tf::pending | tf::closing_debit | tf::closing_credit}),
  });
  const std::vector<Transfer> transient = {
      transfer_of({.id = 1, .debit_account_id = 99, .credit_account_id = 2}),
      transfer_of({.id = 2, .debit_account_id = 1, .credit_account_id = 99}),
      resolve(3, 99, tf::post_pending_transfer, u128_max),
      transfer_of({.id = 4, .debit_account_id = 4, .credit_account_id = 2, .amount = 1}),
      transfer_of({.id = 5, .debit_account_id = 1, .credit_account_id = 5, .amount = 1}),
      transfer_of({.id = 6, .debit_account_id = 8, .credit_account_id = 2, .amount = 1}),
      transfer_of({.id = 7, .debit_account_id = 1, .credit_account_id = 9, .amount = 1}),
  };
  const Snapshot before = harness.snapshot();
  std::vector<CreateTransferResult> results = harness.create_transfers(transient);
  const CreateTransferStatus expected[] = {
      S::debit_account_not_found, S::credit_account_not_found, S::pending_transfer_not_found,
      S::exceeds_credits,         S::exceeds_debits,           S::debit_account_already_closed,
      S::credit_account_already_closed,
  };
  for (u32 index = 0; index < 7; index += 1) {
    TALLY_CHECK_RESULT(results[index], expected[index], harness.batch_timestamp_first + index);
  }
  harness.check_unchanged(before, 7);

  // A valid event with a burned id: 68, also for a post/void, and also for an id that would
  // otherwise be `exists`-compared (burned ids never get stored).
  std::vector<Transfer> valid;
  for (u128 id = 1; id <= 7; id += 1) {
    valid.push_back(transfer_of({.id = id, .debit_account_id = 1, .credit_account_id = 2,
                                 .amount = 1}));
  }
  valid[2] = resolve(3, 101, tf::post_pending_transfer, u128_max);
  results = harness.create_transfers(valid);
  for (u32 index = 0; index < 7; index += 1) {
    TALLY_CHECK_RESULT(results[index], S::id_already_failed,
                       harness.batch_timestamp_first + index);
  }
  harness.check_unchanged(before, 7);

  // Non-transient failures leave the id free.
  results = harness.create_transfers({
      transfer_of({.id = 20, .debit_account_id = 1, .credit_account_id = 2, .ledger = 0}),
      transfer_of({.id = 21, .debit_account_id = 1, .credit_account_id = 3}),
      resolve(22, 100, tf::post_pending_transfer, u128_max),
      resolve(23, 101, tf::void_pending_transfer, 6),
      transfer_of({.id = 100, .debit_account_id = 1, .credit_account_id = 2, .amount = 5,
                   .flags = tf::pending}),
  });
  CHECK(results[0].status == S::ledger_must_not_be_zero);
  CHECK(results[1].status == S::accounts_must_have_the_same_ledger);
  CHECK(results[2].status == S::pending_transfer_not_pending);
  CHECK(results[3].status == S::exceeds_pending_transfer_amount);
  CHECK(results[4].status == S::exists_with_different_flags);
  harness.check_unchanged(before, 7);
  harness.create_transfers_ok({
      transfer_of({.id = 20, .debit_account_id = 1, .credit_account_id = 2, .amount = 1}),
      transfer_of({.id = 21, .debit_account_id = 1, .credit_account_id = 2, .amount = 1}),
      transfer_of({.id = 22, .debit_account_id = 1, .credit_account_id = 2, .amount = 1}),
      resolve(23, 101, tf::void_pending_transfer, 0),
  });
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

TEST_CASE("burned ids survive the rollback of their chain") {
  // Goal: §7.4: a transient failure inside a linked chain burns the id although the chain is
  // rolled back; the other ids of the chain stay free.
  Harness harness;
  harness.accounts_setup();
  const Snapshot before = harness.snapshot();
  const std::vector<CreateTransferResult> results = harness.create_transfers({
      transfer_of({.id = 1, .debit_account_id = 1, .credit_account_id = 2, .amount = 1,
                   .flags = tf::linked}),
      transfer_of({.id = 2, .debit_account_id = 1, .credit_account_id = 99, .amount = 1,
                   .flags = tf::linked}),
      transfer_of({.id = 3, .debit_account_id = 1, .credit_account_id = 2, .amount = 1}),
  });
  const u64 t = harness.batch_timestamp_first;
  TALLY_CHECK_RESULT(results[0], S::linked_event_failed, t);
  TALLY_CHECK_RESULT(results[1], S::credit_account_not_found, t + 1);
  TALLY_CHECK_RESULT(results[2], S::linked_event_failed, t + 2);
  harness.check_unchanged(before, 1);
  CHECK(harness.state_machine.ledger().failed_contains(2));

  const std::vector<CreateTransferResult> again = harness.create_transfers({
      transfer_of({.id = 1, .debit_account_id = 1, .credit_account_id = 2, .amount = 1}),
      transfer_of({.id = 2, .debit_account_id = 1, .credit_account_id = 2, .amount = 1}),
      transfer_of({.id = 3, .debit_account_id = 1, .credit_account_id = 2, .amount = 1}),
  });
  TALLY_CHECK_RESULT(again[0], S::created, harness.batch_timestamp_first);
  TALLY_CHECK_RESULT(again[1], S::id_already_failed, harness.batch_timestamp_first + 1);
  TALLY_CHECK_RESULT(again[2], S::created, harness.batch_timestamp_first + 2);
}

TEST_CASE("two-phase: post the full amount (2^128-1 and exact), partially, zero; void") {
  // Goal: §7.6 steps 5 and 9: the post record takes the pending transfer's accounts, ledger,
  // code and (for zero fields) user data; the whole pending amount leaves the pending balances
  // and the posted amount goes to the posted balances.
  Harness harness;
  harness.accounts_setup();
  const auto pending = [](u128 id, u128 amount) {
    return transfer_of({.id = id, .debit_account_id = 1, .credit_account_id = 2,
                        .amount = amount, .user_data_128 = 7, .user_data_64 = 8,
                        .user_data_32 = 9, .timeout = 100, .code = 5, .flags = tf::pending});
  };
  harness.create_transfers_ok({pending(1, 50), pending(2, 50), pending(3, 50), pending(4, 50),
                               pending(5, 50), pending(6, 50)});
  check_balances(harness, 1, 300, 0, 0, 0);

  Transfer partial = resolve(13, 3, tf::post_pending_transfer, 20);
  partial.user_data_64 = 80;
  const u64 t = harness.create_transfers_ok({
      resolve(11, 1, tf::post_pending_transfer, u128_max),
      resolve(12, 2, tf::post_pending_transfer, 50),
      partial,
      resolve(14, 4, tf::post_pending_transfer, 0),
      resolve(15, 5, tf::void_pending_transfer, 0),
      resolve(16, 6, tf::void_pending_transfer, 50),
  });
  check_balances(harness, 1, 0, 50 + 50 + 20 + 0, 0, 0);
  check_balances(harness, 2, 0, 0, 0, 120);

  const std::optional<Transfer> full = harness.transfer(11);
  REQUIRE(full.has_value());
  CHECK(full->amount == 50);
  CHECK(full->debit_account_id == 1);
  CHECK(full->credit_account_id == 2);
  CHECK(full->pending_id == 1);
  CHECK(full->user_data_128 == 7);
  CHECK(full->user_data_64 == 8);
  CHECK(full->user_data_32 == 9);
  CHECK(full->timeout == 0);
  CHECK(full->ledger == 1);
  CHECK(full->code == 5);
  CHECK(full->flags == tf::post_pending_transfer);
  CHECK(full->timestamp == t);
  CHECK(harness.transfer(12)->amount == 50);
  CHECK(harness.transfer(13)->amount == 20);
  CHECK(harness.transfer(13)->user_data_64 == 80);
  CHECK(harness.transfer(13)->user_data_128 == 7);
  CHECK(harness.transfer(14)->amount == 0);
  CHECK(harness.transfer(15)->amount == 50);
  CHECK(harness.transfer(16)->amount == 50);
  CHECK(harness.transfer(15)->flags == tf::void_pending_transfer);
  // The pending records are unchanged.
  CHECK(harness.transfer(1)->flags == tf::pending);
  CHECK(harness.transfer(1)->amount == 50);
  // The posted/voided transfers do not expire at their old time.
  CHECK(harness.state_machine.pulse(t + 200 * second) == 0);
  check_balances(harness, 1, 0, 120, 0, 0);
}

TEST_CASE("two-phase: a pending transfer of 2^128-1 posted with the 2^128-1 pun") {
  // Goal: TigerBeetle's "create/lookup 2-phase transfers (amount=maxInt)": the full amount is
  // posted and the duplicate post is `exists`.
  Harness harness;
  harness.accounts_setup();
  harness.create_transfers_ok({transfer_of({.id = 1, .debit_account_id = 1,
                                            .credit_account_id = 2, .amount = u128_max,
                                            .flags = tf::pending})});
  const u64 t = harness.create_transfers_ok({resolve(2, 1, tf::post_pending_transfer,
                                                     u128_max)});
  const std::vector<CreateTransferResult> results =
      harness.create_transfers({resolve(2, 1, tf::post_pending_transfer, u128_max)});
  TALLY_CHECK_RESULT(results[0], S::exists, t);
  check_balances(harness, 1, 0, u128_max, 0, 0);
  check_balances(harness, 2, 0, 0, 0, u128_max);
  CHECK(harness.transfer(2)->amount == u128_max);
}

TEST_CASE("balancing_debit and balancing_credit clamp the amount") {
  // Goal: §7.4 step 16 and the exists rule for balancing transfers (§7.5: `exists` while the
  // resubmitted amount is at least the stored one).
  Harness harness;
  harness.accounts_setup();
  harness.create_transfers_ok({
      transfer_of({.id = 1, .debit_account_id = 1, .credit_account_id = 4, .amount = 10}),
      transfer_of({.id = 2, .debit_account_id = 5, .credit_account_id = 1, .amount = 10}),
      transfer_of({.id = 3, .debit_account_id = 4, .credit_account_id = 2, .amount = 3,
                   .flags = tf::pending}),
  });
  // Account 4: credits_posted 10, debits_pending 3 -> at most 7 more debits.
  const u64 t = harness.create_transfers_ok({
      transfer_of({.id = 10, .debit_account_id = 4, .credit_account_id = 2, .amount = 100,
                   .flags = tf::balancing_debit}),
      transfer_of({.id = 11, .debit_account_id = 4, .credit_account_id = 2, .amount = 100,
                   .flags = tf::balancing_debit}),
      // Account 5: debits_posted 10 -> at most 10 credits; amount 4 is below.
      transfer_of({.id = 12, .debit_account_id = 1, .credit_account_id = 5, .amount = 4,
                   .flags = tf::balancing_credit}),
      transfer_of({.id = 13, .debit_account_id = 1, .credit_account_id = 5, .amount = 100,
                   .flags = tf::balancing_credit}),
      // Both flags: the smaller of both limits (account 4 has 0 left, so 0).
      transfer_of({.id = 14, .debit_account_id = 4, .credit_account_id = 5, .amount = 100,
                   .flags = tf::balancing_debit | tf::balancing_credit}),
  });
  CHECK(harness.transfer(10)->amount == 7);
  CHECK(harness.transfer(11)->amount == 0);
  CHECK(harness.transfer(12)->amount == 4);
  CHECK(harness.transfer(13)->amount == 6);
  CHECK(harness.transfer(14)->amount == 0);
  CHECK(harness.transfer(10)->flags == tf::balancing_debit);
  check_balances(harness, 4, 3, 7, 0, 10);
  check_balances(harness, 5, 0, 10, 0, 10);

  // Exists: resubmitting with amount >= the stored 7 is `exists`, below is 39.
  const Transfer first = transfer_of({.id = 10, .debit_account_id = 4, .credit_account_id = 2,
                                      .amount = 100, .flags = tf::balancing_debit});
  Transfer same = first;
  for (const u128 amount : {u128{100}, u128{8}, u128{7}, u128_max}) {
    same.amount = amount;
    const std::vector<CreateTransferResult> results = harness.create_transfers({same});
    TALLY_CHECK_RESULT(results[0], S::exists, t);
  }
  same.amount = 6;
  check_rejected(harness, same, S::exists_with_different_amount);
  same.amount = 0;
  check_rejected(harness, same, S::exists_with_different_amount);
}

TEST_CASE("balancing: the clamped amount still meets the limits of the other account") {
  // Goal: TigerBeetle's "balancing_debit | balancing_credit (*_must_not_exceed_*, exceeds_*)":
  // balancing_credit clamps to the credit account's net debit (5), which then exceeds the
  // debit account's credits (4); balancing_debit clamps to 4 and succeeds.
  Harness harness;
  harness.accounts_setup();
  harness.create_transfers_ok({
      transfer_of({.id = 1, .debit_account_id = 1, .credit_account_id = 4, .amount = 4}),
      transfer_of({.id = 2, .debit_account_id = 8, .credit_account_id = 9, .amount = 5}),
  });
  check_rejected(harness,
                 transfer_of({.id = 10, .debit_account_id = 4, .credit_account_id = 8,
                              .amount = 10, .flags = tf::balancing_credit}),
                 S::exceeds_credits);
  harness.create_transfers_ok({transfer_of({.id = 11, .debit_account_id = 4,
                                            .credit_account_id = 8, .amount = 10,
                                            .flags = tf::balancing_debit})});
  CHECK(harness.transfer(11)->amount == 4);
  check_balances(harness, 4, 0, 4, 0, 4);
}

TEST_CASE("balancing with an amount of 2^128-1 against balances of 2^128-2") {
  // Goal: TigerBeetle's "balancing (amount=maxInt, balance≈maxInt)": the clamp uses the whole
  // u128 range, and the account limits are met exactly.
  Harness harness;
  harness.accounts_setup();
  harness.create_transfers_ok({
      transfer_of({.id = 1, .debit_account_id = 1, .credit_account_id = 4,
                   .amount = u128_max - 1}),
      transfer_of({.id = 2, .debit_account_id = 5, .credit_account_id = 7,
                   .amount = u128_max - 1}),
      transfer_of({.id = 3, .debit_account_id = 4, .credit_account_id = 2, .amount = u128_max,
                   .flags = tf::balancing_debit}),
      transfer_of({.id = 4, .debit_account_id = 8, .credit_account_id = 5, .amount = u128_max,
                   .flags = tf::balancing_credit}),
  });
  CHECK(harness.transfer(3)->amount == u128_max - 1);
  CHECK(harness.transfer(4)->amount == u128_max - 1);
  check_balances(harness, 4, 0, u128_max - 1, 0, u128_max - 1);
  check_balances(harness, 5, 0, u128_max - 1, 0, u128_max - 1);
}

TEST_CASE("closing_debit and closing_credit, then a void or an expiry re-opens") {
  // Goal: the Node suite's "can close accounts" (§9 #17) and TigerBeetle's "closing accounts":
  // one pending transfer closes both accounts; voiding it re-opens both. A closing transfer
  // with a timeout re-opens its account when it expires.
  Harness harness;
  harness.accounts_setup();
  const u64 t = harness.create_transfers_ok(
      {transfer_of({.id = 1, .debit_account_id = 2, .credit_account_id = 1,
                    .flags = tf::pending | tf::closing_debit | tf::closing_credit})});
  CHECK(harness.account(1)->flags == account_flags::closed);
  CHECK(harness.account(2)->flags == account_flags::closed);
  std::vector<CreateTransferResult> results = harness.create_transfers(
      {resolve(2, 1, tf::void_pending_transfer, 0)});
  TALLY_CHECK_RESULT(results[0], S::created, harness.batch_timestamp_first);
  CHECK(harness.account(1)->flags == 0);
  CHECK(harness.account(2)->flags == 0);

  const u64 t_expiring = harness.create_transfers_ok(
      {transfer_of({.id = 3, .debit_account_id = 7, .credit_account_id = 8, .amount = 5,
                    .timeout = 2, .flags = tf::pending | tf::closing_credit})});
  CHECK(harness.account(8)->flags == account_flags::closed);
  CHECK(harness.account(7)->flags == 0);
  CHECK(harness.state_machine.pulse(t_expiring + 2 * second) == 1);
  CHECK(harness.account(8)->flags == 0);
  check_balances(harness, 7, 0, 0, 0, 0);
  check_balances(harness, 8, 0, 0, 0, 0);
  CHECK(t < t_expiring);
}

TEST_CASE("the Node client suite's transfer tests (§9 #11-#17) at the state machine level") {
  // Goal: the exact sequence of test.ts: accounts A (17) and B (19), transfers 1..7.
  Harness harness;
  const std::vector<CreateAccountResult> accounts = harness.create_accounts({
      account_of(17, 1, 0), account_of(19, 1, 0)});
  REQUIRE(accounts[1].status == tally::CreateAccountStatus::created);
  // #11: can create a transfer.
  harness.create_transfers_ok({transfer_of({.id = 1, .debit_account_id = 19,
                                            .credit_account_id = 17, .amount = 100})});
  check_balances(harness, 17, 0, 0, 0, 100);
  check_balances(harness, 19, 0, 100, 0, 0);
  // #12: can create a two-phase transfer (timeout 2e9 s).
  harness.create_transfers_ok({transfer_of({.id = 2, .debit_account_id = 19,
                                            .credit_account_id = 17, .amount = 50,
                                            .timeout = 2'000'000'000, .flags = tf::pending})});
  check_balances(harness, 17, 0, 0, 50, 100);
  CHECK(harness.transfer(2)->flags == 2);
  CHECK(harness.transfer(2)->timeout == 2'000'000'000);
  // #13: can post a two-phase transfer (amount 2^128-1, accounts 0, ledger/code 1).
  harness.create_transfers_ok({transfer_of({.id = 3, .amount = u128_max, .pending_id = 2,
                                            .flags = tf::post_pending_transfer})});
  check_balances(harness, 17, 0, 0, 0, 150);
  check_balances(harness, 19, 0, 150, 0, 0);
  // #14: can reject a two-phase transfer.
  harness.create_transfers_ok({transfer_of({.id = 4, .debit_account_id = 19,
                                            .credit_account_id = 17, .amount = 50,
                                            .timeout = 1'000'000'000, .flags = tf::pending})});
  harness.create_transfers_ok({transfer_of({.id = 5, .amount = 0, .pending_id = 4,
                                            .flags = tf::void_pending_transfer})});
  check_balances(harness, 17, 0, 0, 0, 150);
  check_balances(harness, 19, 0, 150, 0, 0);
  // #15: can link transfers.
  const Snapshot before = harness.snapshot();
  std::vector<CreateTransferResult> results = harness.create_transfers({
      transfer_of({.id = 6, .debit_account_id = 19, .credit_account_id = 17, .amount = 100,
                   .flags = tf::linked}),
      transfer_of({.id = 6, .debit_account_id = 19, .credit_account_id = 17, .amount = 100}),
  });
  TALLY_CHECK_RESULT(results[0], S::linked_event_failed, harness.batch_timestamp_first);
  TALLY_CHECK_RESULT(results[1], S::exists_with_different_flags,
                     harness.batch_timestamp_first + 1);
  harness.check_unchanged(before);
  // #16: cannot void an expired transfer (id 6 is still free).
  const u64 t6 = harness.create_transfers_ok(
      {transfer_of({.id = 6, .debit_account_id = 19, .credit_account_id = 17, .amount = 50,
                    .timeout = 1, .flags = tf::pending})});
  check_balances(harness, 17, 0, 0, 50, 150);
  harness.timestamp_next = t6 + 1'500'000'000;
  CHECK(harness.state_machine.pulse(harness.timestamp_next - 1) == 1);
  check_balances(harness, 17, 0, 0, 0, 150);
  check_rejected(harness, transfer_of({.id = 7, .amount = 0, .pending_id = 6,
                                       .flags = tf::void_pending_transfer}),
                 S::pending_transfer_expired);
  // #17: can close accounts (covered in detail above): close both, void, both open.
  harness.create_transfers_ok({transfer_of({.id = 8, .debit_account_id = 19,
                                            .credit_account_id = 17,
                                            .flags = tf::closing_debit | tf::closing_credit |
                                                     tf::pending})});
  CHECK(harness.account(17)->flags == account_flags::closed);
  CHECK(harness.account(19)->flags == account_flags::closed);
  harness.create_transfers_ok({transfer_of({.id = 9, .debit_account_id = 19,
                                            .credit_account_id = 17, .pending_id = 8,
                                            .flags = tf::void_pending_transfer})});
  CHECK(harness.account(17)->flags == 0);
  CHECK(harness.account(19)->flags == 0);
}

}  // TEST_SUITE
