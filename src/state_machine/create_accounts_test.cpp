// Scenario tests of create_accounts (protocol §7.2, §7.3), one test case per CreateAccountStatus
// of §6.4 (deprecated_ok is never produced by op 146).
//
// Every case checks the three things a client sees or relies on:
// - the status, including the precedence of §7.2: each rejected event also breaks a rule that is
//   checked later, so a reordering of the checks fails the test;
// - the result timestamp: created -> the stored timestamp, exists -> the existing account's,
//   everything else -> the event's assigned timestamp (timestamp_first + index);
// - the state: a rejected event leaves every stored record as it was (a snapshot of the whole
//   ledger is compared byte for byte), and the lookup of its id shows nothing new.
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
using tally::CreateAccountStatus;
using tally::Transfer;
using tally::u128;
using tally::u128_max;
using tally::u16;
using tally::u32;
using tally::u64;
using tally::u8;
using tally::state_machine::Config;
using tally::state_machine::StateMachine;
namespace account_flags = tally::account_flags;
namespace transfer_flags = tally::transfer_flags;
using S = CreateAccountStatus;

// A realistic cluster time: nanoseconds since the epoch, late 2023.
constexpr u64 timestamp_initial = 1'700'000'000'000'000'000;
constexpr u64 timestamp_max = (u64{1} << 63) - 1;

// Checks one dense result: status (reported by name), timestamp, reserved bytes.
#define TALLY_CHECK_RESULT(result, expected_status, expected_timestamp)                  \
  do {                                                                                   \
    const CreateAccountResult result_ = (result);                                        \
    CHECK_MESSAGE(result_.status == (expected_status), "status ",                        \
                  std::string(tally::name(result_.status)), ", expected ",               \
                  std::string(tally::name(expected_status)));                            \
    CHECK(result_.timestamp == (expected_timestamp));                                    \
    CHECK(result_.reserved == 0);                                                        \
  } while (0)

using tally::state_machine::testing::AccountSpec;
using tally::state_machine::testing::account_of;

Transfer transfer_of(u128 id, u128 debit_account_id, u128 credit_account_id, u128 amount,
                     u16 flags) {
  Transfer transfer{};
  transfer.id = id;
  transfer.debit_account_id = debit_account_id;
  transfer.credit_account_id = credit_account_id;
  transfer.amount = amount;
  transfer.ledger = 1;
  transfer.code = 1;
  transfer.flags = flags;
  return transfer;
}

// Everything stored, for "the event changed nothing" checks.
struct Snapshot {
  std::vector<Account> accounts;
  std::vector<Transfer> transfers;
  u32 pending_count = 0;
  u32 change_event_count = 0;
  u32 failed_count = 0;
};

template <typename T>
bool bytes_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

// One state machine plus the cluster clock: every batch gets the next timestamps.
class Harness {
 public:
  explicit Harness(const Config& config = Config::testing()) { state_machine.init(config); }

  std::vector<CreateAccountResult> create_accounts(const std::vector<Account>& events) {
    std::vector<CreateAccountResult> results(events.size());
    batch_timestamp_first = timestamp_next;
    state_machine.create_accounts(events, batch_timestamp_first, results);
    timestamp_next += events.size();
    return results;
  }

  std::vector<tally::CreateTransferResult> create_transfers(const std::vector<Transfer>& events) {
    std::vector<tally::CreateTransferResult> results(events.size());
    batch_timestamp_first = timestamp_next;
    state_machine.create_transfers(events, batch_timestamp_first, results);
    timestamp_next += events.size();
    return results;
  }

  std::optional<Account> account(u128 id) const {
    const u128 ids[1] = {id};
    Account found[1] = {};
    if (state_machine.lookup_accounts(ids, found) == 0) return std::nullopt;
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
    result.pending_count = ledger.pending_count();
    result.change_event_count = ledger.change_events().row_count();
    result.failed_count = ledger.failed_count();
    return result;
  }

  void check_unchanged(const Snapshot& before) const {
    const Snapshot after = snapshot();
    CHECK(after.accounts.size() == before.accounts.size());
    CHECK(after.transfers.size() == before.transfers.size());
    CHECK(bytes_equal(after.accounts, before.accounts));
    CHECK(bytes_equal(after.transfers, before.transfers));
    CHECK(after.pending_count == before.pending_count);
    CHECK(after.change_event_count == before.change_event_count);
    CHECK(after.failed_count == before.failed_count);
  }

  StateMachine state_machine;
  u64 timestamp_next = timestamp_initial;  // The timestamp the next event gets.
  u64 batch_timestamp_first = 0;           // The first timestamp of the latest batch.
};

// Runs one rejected event in a batch of its own and checks status, timestamp and state.
void check_rejected(Harness& harness, const Account& event, CreateAccountStatus status) {
  const Snapshot before = harness.snapshot();
  const bool existed = harness.account(event.id).has_value();
  const std::vector<CreateAccountResult> results = harness.create_accounts({event});
  REQUIRE(results.size() == 1);
  TALLY_CHECK_RESULT(results[0], status, harness.batch_timestamp_first);
  CHECK(harness.account(event.id).has_value() == existed);
  harness.check_unchanged(before);
}

// The account every "exists" case compares against.
Account account_existing() {
  return account_of({.id = 17,
                     .user_data_128 = 1000,
                     .user_data_64 = 100,
                     .user_data_32 = 10,
                     .ledger = 1,
                     .code = 718,
                     .flags = account_flags::history});
}

}  // namespace

TEST_SUITE("state_machine create_accounts") {

TEST_CASE("created: stored with zero balances, the given fields and the event's timestamp") {
  // Goal: §7.2 step 10 and the result timestamp rule, for two events of one batch.
  Harness harness;
  const Account a = account_of({.id = 17, .ledger = 1, .code = 718});
  const Account b = account_of({.id = 19,
                                .user_data_128 = u128_max - 1,
                                .user_data_64 = 0xFFFF'FFFF'FFFF'FFFE,
                                .user_data_32 = 7,
                                .ledger = 0xFFFF'FFFF,
                                .code = 0xFFFF,
                                .flags = account_flags::debits_must_not_exceed_credits |
                                         account_flags::history | account_flags::closed});
  const std::vector<CreateAccountResult> results = harness.create_accounts({a, b});
  const u64 t = harness.batch_timestamp_first;
  REQUIRE(results.size() == 2);
  TALLY_CHECK_RESULT(results[0], S::created, t);
  TALLY_CHECK_RESULT(results[1], S::created, t + 1);

  const std::optional<Account> stored_a = harness.account(17);
  REQUIRE(stored_a.has_value());
  CHECK(stored_a->id == 17);
  CHECK(stored_a->ledger == 1);
  CHECK(stored_a->code == 718);
  CHECK(stored_a->flags == 0);
  CHECK(stored_a->timestamp == t);
  CHECK(stored_a->debits_pending == 0);
  CHECK(stored_a->credits_posted == 0);

  const std::optional<Account> stored_b = harness.account(19);
  REQUIRE(stored_b.has_value());
  CHECK(stored_b->user_data_128 == u128_max - 1);
  CHECK(stored_b->user_data_64 == 0xFFFF'FFFF'FFFF'FFFE);
  CHECK(stored_b->user_data_32 == 7);
  CHECK(stored_b->ledger == 0xFFFF'FFFF);
  CHECK(stored_b->code == 0xFFFF);
  // A closed account can be created (TigerBeetle "create_accounts: closed accounts").
  CHECK(stored_b->flags == (account_flags::debits_must_not_exceed_credits |
                            account_flags::history | account_flags::closed));
  CHECK(stored_b->reserved == 0);
  CHECK(stored_b->timestamp == t + 1);
  CHECK(harness.state_machine.ledger().account_count() == 2);
}

TEST_CASE("linked_event_failed (1): a chain fails as a whole and keeps its result timestamps") {
  // Goal: §7.3. Chain [1 linked, 2 linked, 1 linked (exists inside the chain), 3]: the third
  // event sees the first one (effects inside an intact chain are visible), returns `exists` with
  // the first event's timestamp, and breaks the chain: the earlier events turn into
  // linked_event_failed, the last one is not executed, and nothing of the chain remains.
  Harness harness;
  const std::vector<CreateAccountResult> seed = harness.create_accounts({account_of({.id = 7})});
  TALLY_CHECK_RESULT(seed[0], S::created, harness.batch_timestamp_first);
  const Account seven_before = *harness.account(7);
  const Snapshot before = harness.snapshot();

  const std::vector<CreateAccountResult> results = harness.create_accounts({
      account_of({.id = 1, .flags = account_flags::linked}),
      account_of({.id = 2, .flags = account_flags::linked}),
      account_of({.id = 1, .flags = account_flags::linked}),
      account_of({.id = 3}),
  });
  const u64 t = harness.batch_timestamp_first;
  REQUIRE(results.size() == 4);
  TALLY_CHECK_RESULT(results[0], S::linked_event_failed, t);
  TALLY_CHECK_RESULT(results[1], S::linked_event_failed, t + 1);
  TALLY_CHECK_RESULT(results[2], S::exists, t);  // The rolled-back account 1's timestamp.
  TALLY_CHECK_RESULT(results[3], S::linked_event_failed, t + 3);
  CHECK_FALSE(harness.account(1).has_value());
  CHECK_FALSE(harness.account(2).has_value());
  CHECK_FALSE(harness.account(3).has_value());
  harness.check_unchanged(before);
  const Account seven_after = *harness.account(7);
  CHECK(std::memcmp(&seven_after, &seven_before, sizeof(Account)) == 0);

  // The rolled-back accounts were never created: the same events, unlinked, succeed now and
  // see nothing of the failed chain.
  const std::vector<CreateAccountResult> again =
      harness.create_accounts({account_of({.id = 1}), account_of({.id = 2})});
  TALLY_CHECK_RESULT(again[0], S::created, harness.batch_timestamp_first);
  TALLY_CHECK_RESULT(again[1], S::created, harness.batch_timestamp_first + 1);
}

TEST_CASE("linked_event_failed (1): the first event of a chain fails, the rest is not run") {
  // Goal: a chain broken by its first event; the later events are linked_event_failed even
  // though they are valid, and an unlinked event after the chain runs normally.
  Harness harness;
  harness.create_accounts({account_of({.id = 1})});
  const std::vector<CreateAccountResult> results = harness.create_accounts({
      account_of({.id = 1, .code = 2, .flags = account_flags::linked}),
      account_of({.id = 2}),
      account_of({.id = 3}),
  });
  const u64 t = harness.batch_timestamp_first;
  TALLY_CHECK_RESULT(results[0], S::exists_with_different_flags, t);
  TALLY_CHECK_RESULT(results[1], S::linked_event_failed, t + 1);
  TALLY_CHECK_RESULT(results[2], S::created, t + 2);
  CHECK_FALSE(harness.account(2).has_value());
  CHECK(harness.account(3).has_value());
}

TEST_CASE("linked chains of accounts that all succeed are committed") {
  // Goal: a successful chain persists every event, and chains are delimited per §7.3.
  Harness harness;
  const std::vector<CreateAccountResult> results = harness.create_accounts({
      account_of({.id = 1, .flags = account_flags::linked}),
      account_of({.id = 2, .flags = account_flags::linked}),
      account_of({.id = 3}),
      account_of({.id = 4, .flags = account_flags::linked}),
      account_of({.id = 5}),
  });
  const u64 t = harness.batch_timestamp_first;
  for (u32 index = 0; index < 5; index += 1) {
    TALLY_CHECK_RESULT(results[index], S::created, t + index);
    const std::optional<Account> stored = harness.account(index + 1);
    REQUIRE(stored.has_value());
    CHECK(stored->timestamp == t + index);
  }
  // The linked flag is stored as given.
  CHECK(harness.account(1)->flags == account_flags::linked);
  CHECK(harness.account(3)->flags == 0);
}

TEST_CASE("linked_event_chain_open (2): the batch ends inside a chain") {
  // Goal: §7.2 step 1: a linked last event gets linked_event_chain_open, and the whole open
  // chain is rolled back; this status wins even over an already broken chain.
  Harness harness;
  harness.create_accounts({account_of({.id = 9})});

  SUBCASE("a batch of one linked event") {
    const Snapshot before = harness.snapshot();
    const std::vector<CreateAccountResult> results =
        harness.create_accounts({account_of({.id = 1, .flags = account_flags::linked})});
    TALLY_CHECK_RESULT(results[0], S::linked_event_chain_open, harness.batch_timestamp_first);
    CHECK_FALSE(harness.account(1).has_value());
    harness.check_unchanged(before);
  }
  SUBCASE("a successful chain that stays open") {
    const std::vector<CreateAccountResult> results = harness.create_accounts({
        account_of({.id = 1}),
        account_of({.id = 2, .flags = account_flags::linked}),
        account_of({.id = 3, .flags = account_flags::linked}),
    });
    const u64 t = harness.batch_timestamp_first;
    TALLY_CHECK_RESULT(results[0], S::created, t);
    TALLY_CHECK_RESULT(results[1], S::linked_event_failed, t + 1);
    TALLY_CHECK_RESULT(results[2], S::linked_event_chain_open, t + 2);
    CHECK(harness.account(1).has_value());
    CHECK_FALSE(harness.account(2).has_value());
    CHECK_FALSE(harness.account(3).has_value());
    CHECK(harness.state_machine.ledger().account_count() == 2);
  }
  SUBCASE("an already broken chain still ends with linked_event_chain_open") {
    const Snapshot before = harness.snapshot();
    const std::vector<CreateAccountResult> results = harness.create_accounts({
        account_of({.id = 2, .flags = account_flags::linked}),
        account_of({.id = 9, .flags = account_flags::linked}),  // Stored without `linked`.
        account_of({.id = 3, .flags = account_flags::linked}),
    });
    const u64 t = harness.batch_timestamp_first;
    TALLY_CHECK_RESULT(results[0], S::linked_event_failed, t);
    TALLY_CHECK_RESULT(results[1], S::exists_with_different_flags, t + 1);
    TALLY_CHECK_RESULT(results[2], S::linked_event_chain_open, t + 2);
    CHECK_FALSE(harness.account(2).has_value());
    CHECK_FALSE(harness.account(3).has_value());
    harness.check_unchanged(before);
  }
}

TEST_CASE("timestamp_must_be_zero (3)") {
  // Goal: a non-imported event with a timestamp; it also has a reserved field, id 0, ledger 0:
  // the timestamp check comes first (§7.2 step 4).
  Harness harness;
  check_rejected(harness, account_of({.id = 0, .reserved = 1, .ledger = 0, .timestamp = 2}),
                 S::timestamp_must_be_zero);
  check_rejected(harness, account_of({.id = 3, .timestamp = timestamp_initial - 1}),
                 S::timestamp_must_be_zero);
}

TEST_CASE("reserved_field (4)") {
  // Goal: Account.reserved != 0 is rejected before the flags and the id are looked at.
  Harness harness;
  check_rejected(harness, account_of({.id = 0, .reserved = 1, .flags = 1u << 6}),
                 S::reserved_field);
  check_rejected(harness, account_of({.id = 5, .reserved = 0x8000'0000}), S::reserved_field);
}

TEST_CASE("reserved_flag (5)") {
  // Goal: each of flag bits 6..15 is reserved, checked before the id.
  Harness harness;
  for (u32 bit = 6; bit < 16; bit += 1) {
    CAPTURE(bit);
    check_rejected(harness, account_of({.id = 0, .flags = static_cast<u16>(1u << bit)}),
                   S::reserved_flag);
  }
  // Bits 0..5 are all named (linked alone would give chain_open, so a closed account here).
  const std::vector<CreateAccountResult> results =
      harness.create_accounts({account_of({.id = 1, .flags = account_flags::closed})});
  TALLY_CHECK_RESULT(results[0], S::created, harness.batch_timestamp_first);
}

TEST_CASE("id_must_not_be_zero (6)") {
  // Goal: id 0 is rejected before the balances, the ledger and the code are checked.
  Harness harness;
  check_rejected(harness, account_of({.id = 0, .debits_pending = 1, .ledger = 0, .code = 0}),
                 S::id_must_not_be_zero);
  CHECK(harness.state_machine.ledger().account_count() == 0);
}

TEST_CASE("id_must_not_be_int_max (7)") {
  // Goal: id 2^128-1 is rejected; 2^128-2 is a valid id.
  Harness harness;
  check_rejected(harness, account_of({.id = u128_max, .ledger = 0}), S::id_must_not_be_int_max);
  const std::vector<CreateAccountResult> results =
      harness.create_accounts({account_of({.id = u128_max - 1})});
  TALLY_CHECK_RESULT(results[0], S::created, harness.batch_timestamp_first);
}

TEST_CASE("flags_are_mutually_exclusive (8)") {
  // Goal: both balance limits at once; precedes the balance, ledger and code checks.
  Harness harness;
  check_rejected(harness,
                 account_of({.id = 2,
                             .debits_pending = 1,
                             .ledger = 0,
                             .code = 0,
                             .flags = account_flags::debits_must_not_exceed_credits |
                                      account_flags::credits_must_not_exceed_debits}),
                 S::flags_are_mutually_exclusive);
}

TEST_CASE("debits_pending_must_be_zero (9) .. credits_posted_must_be_zero (12)") {
  // Goal: each balance field must be zero, checked in field order and before ledger/code.
  Harness harness;
  SUBCASE("debits_pending_must_be_zero (9)") {
    check_rejected(harness,
                   account_of({.id = 2, .debits_pending = 1, .debits_posted = 1,
                               .credits_pending = 1, .credits_posted = 1, .ledger = 0}),
                   S::debits_pending_must_be_zero);
  }
  SUBCASE("debits_posted_must_be_zero (10)") {
    check_rejected(harness,
                   account_of({.id = 2, .debits_posted = u128_max, .credits_pending = 1,
                               .credits_posted = 1, .ledger = 0}),
                   S::debits_posted_must_be_zero);
  }
  SUBCASE("credits_pending_must_be_zero (11)") {
    check_rejected(harness,
                   account_of({.id = 2, .credits_pending = 1, .credits_posted = 1, .code = 0}),
                   S::credits_pending_must_be_zero);
  }
  SUBCASE("credits_posted_must_be_zero (12)") {
    check_rejected(harness, account_of({.id = 2, .credits_posted = 1, .ledger = 0}),
                   S::credits_posted_must_be_zero);
  }
}

TEST_CASE("ledger_must_not_be_zero (13) and code_must_not_be_zero (14)") {
  // Goal: ledger 0 before code 0; and account creation never burns an id (§7.4): after either
  // failure the same id is created.
  Harness harness;
  SUBCASE("ledger_must_not_be_zero (13)") {
    check_rejected(harness, account_of({.id = 2, .ledger = 0, .code = 0}),
                   S::ledger_must_not_be_zero);
  }
  SUBCASE("code_must_not_be_zero (14)") {
    check_rejected(harness, account_of({.id = 2, .ledger = 1, .code = 0}),
                   S::code_must_not_be_zero);
  }
  const std::vector<CreateAccountResult> results =
      harness.create_accounts({account_of({.id = 2})});
  TALLY_CHECK_RESULT(results[0], S::created, harness.batch_timestamp_first);
}

TEST_CASE("exists_with_different_flags (15) .. exists_with_different_code (20)") {
  // Goal: §7.2 step 6 in order flags, user_data_128/64/32, ledger, code. Each event equals the
  // existing account in the fields compared before its status's field and differs in that
  // field and in every later one, so the first difference decides.
  Harness harness;
  harness.create_accounts({account_existing()});
  const Account e = account_existing();
  const auto differing_from = [&](u32 first_different) {
    Account event = e;
    if (first_different == 0) event.flags = 0;
    if (first_different <= 1) event.user_data_128 = 1;
    if (first_different <= 2) event.user_data_64 = 1;
    if (first_different <= 3) event.user_data_32 = 1;
    if (first_different <= 4) event.ledger = 9;
    if (first_different <= 5) event.code = 9;
    return event;
  };
  SUBCASE("exists_with_different_flags (15)") {
    check_rejected(harness, differing_from(0), S::exists_with_different_flags);
  }
  SUBCASE("exists_with_different_user_data_128 (16)") {
    check_rejected(harness, differing_from(1), S::exists_with_different_user_data_128);
  }
  SUBCASE("exists_with_different_user_data_64 (17)") {
    check_rejected(harness, differing_from(2), S::exists_with_different_user_data_64);
  }
  SUBCASE("exists_with_different_user_data_32 (18)") {
    check_rejected(harness, differing_from(3), S::exists_with_different_user_data_32);
  }
  SUBCASE("exists_with_different_ledger (19)") {
    check_rejected(harness, differing_from(4), S::exists_with_different_ledger);
  }
  SUBCASE("exists_with_different_code (20)") {
    check_rejected(harness, differing_from(5), S::exists_with_different_code);
  }
  SUBCASE("exists_with_different_flags (15): the linked flag counts too") {
    // A chain of one linked event would end open, so a second event closes the chain.
    const Snapshot before = harness.snapshot();
    Account linked = e;
    linked.flags = account_flags::history | account_flags::linked;
    const std::vector<CreateAccountResult> results =
        harness.create_accounts({linked, account_of({.id = 30})});
    TALLY_CHECK_RESULT(results[0], S::exists_with_different_flags,
                       harness.batch_timestamp_first);
    TALLY_CHECK_RESULT(results[1], S::linked_event_failed, harness.batch_timestamp_first + 1);
    harness.check_unchanged(before);
  }
}

TEST_CASE("exists (21): the result carries the existing account's timestamp") {
  // Goal: an identical event is `exists` with the stored timestamp; the comparison happens
  // before the balance and mutual-exclusion checks, so non-zero balances in the event do not
  // matter (they are not compared).
  Harness harness;
  harness.create_accounts({account_existing()});
  const u64 t_existing = harness.batch_timestamp_first;
  harness.timestamp_next += 1'000'000;  // Time passes.
  const Snapshot before = harness.snapshot();

  Account event = account_existing();
  std::vector<CreateAccountResult> results = harness.create_accounts({event});
  TALLY_CHECK_RESULT(results[0], S::exists, t_existing);
  CHECK(results[0].timestamp != harness.batch_timestamp_first);

  event.debits_posted = 5;
  event.credits_pending = u128_max;
  results = harness.create_accounts({event, account_of({.id = 18})});
  TALLY_CHECK_RESULT(results[0], S::exists, t_existing);
  TALLY_CHECK_RESULT(results[1], S::created, harness.batch_timestamp_first + 1);
  CHECK(harness.account(17)->timestamp == t_existing);
  CHECK(harness.snapshot().accounts.size() == before.accounts.size() + 1);
}

TEST_CASE("exists_with_different_flags (15) after a closing transfer changed the stored flags") {
  // Goal: the comparison uses the flags as stored (§7.2 step 6): once a pending closing transfer
  // closed account 1, resubmitting its original event is exists_with_different_flags, and the
  // event with `closed` added is `exists`. Voiding the closing transfer re-opens it.
  Harness harness;
  const Account one = account_of({.id = 1});
  harness.create_accounts({one, account_of({.id = 2})});
  const u64 t_one = harness.batch_timestamp_first;
  const std::vector<tally::CreateTransferResult> closing = harness.create_transfers(
      {transfer_of(10, 1, 2, 0, transfer_flags::pending | transfer_flags::closing_debit)});
  CHECK(closing[0].status == tally::CreateTransferStatus::created);
  CHECK(harness.account(1)->flags == account_flags::closed);

  check_rejected(harness, one, S::exists_with_different_flags);
  Account closed = one;
  closed.flags = account_flags::closed;
  std::vector<CreateAccountResult> results = harness.create_accounts({closed});
  TALLY_CHECK_RESULT(results[0], S::exists, t_one);

  Transfer void_closing = transfer_of(11, 0, 0, 0, transfer_flags::void_pending_transfer);
  void_closing.pending_id = 10;
  void_closing.ledger = 0;
  void_closing.code = 0;
  CHECK(harness.create_transfers({void_closing})[0].status ==
        tally::CreateTransferStatus::created);
  results = harness.create_accounts({one});
  TALLY_CHECK_RESULT(results[0], S::exists, t_one);
}

TEST_CASE("imported_event_expected (22)") {
  // Goal: the first event makes the batch an import batch; a later non-imported event is
  // rejected with 22, before its other checks (timestamp 0 is fine, id 0 is not looked at).
  Harness harness;
  const Snapshot before = harness.snapshot();
  const u64 t = harness.timestamp_next;
  const std::vector<CreateAccountResult> results = harness.create_accounts({
      account_of({.id = 1, .flags = account_flags::imported, .timestamp = t - 100}),
      account_of({.id = 0}),
      account_of({.id = 3, .flags = account_flags::imported, .timestamp = t - 99}),
  });
  TALLY_CHECK_RESULT(results[0], S::created, t - 100);  // Created: the imported timestamp.
  TALLY_CHECK_RESULT(results[1], S::imported_event_expected, t + 1);
  TALLY_CHECK_RESULT(results[2], S::created, t - 99);
  CHECK(harness.account(1)->timestamp == t - 100);
  CHECK(harness.account(1)->flags == account_flags::imported);
  CHECK(harness.account(3)->timestamp == t - 99);
  CHECK(harness.snapshot().accounts.size() == before.accounts.size() + 2);
}

TEST_CASE("imported_event_not_expected (23)") {
  // Goal: a non-imported first event; a later imported event gets 23 before its timestamp is
  // looked at (0 would otherwise be out of range).
  Harness harness;
  const std::vector<CreateAccountResult> first = harness.create_accounts({account_of({.id = 1})});
  const Snapshot before = harness.snapshot();
  const std::vector<CreateAccountResult> results = harness.create_accounts({
      account_of({.id = 2}),
      account_of({.id = 3, .flags = account_flags::imported, .timestamp = 0}),
  });
  const u64 t = harness.batch_timestamp_first;
  TALLY_CHECK_RESULT(results[0], S::created, t);
  TALLY_CHECK_RESULT(results[1], S::imported_event_not_expected, t + 1);
  CHECK_FALSE(harness.account(3).has_value());
  CHECK(harness.snapshot().accounts.size() == before.accounts.size() + 1);
}

TEST_CASE("imported_event_timestamp_out_of_range (24)") {
  // Goal: an imported timestamp must be in [1, 2^63-1]; checked before the reserved field.
  Harness harness;
  for (const u64 timestamp : {u64{0}, timestamp_max + 1, ~u64{0}}) {
    CAPTURE(timestamp);
    check_rejected(harness,
                   account_of({.id = 1, .reserved = 1, .flags = account_flags::imported,
                               .timestamp = timestamp}),
                   S::imported_event_timestamp_out_of_range);
  }
  // 1 is the smallest valid imported timestamp.
  const std::vector<CreateAccountResult> results = harness.create_accounts(
      {account_of({.id = 1, .flags = account_flags::imported, .timestamp = 1})});
  TALLY_CHECK_RESULT(results[0], S::created, 1);
}

TEST_CASE("imported_event_timestamp_must_not_advance (25)") {
  // Goal: an imported timestamp must be below the batch timestamp, which is the timestamp of the
  // batch's LAST event (§7.1), not the event's own: in a batch of three at t, t+1, t+2, event 0
  // may import t+1 but no event may import t+2.
  Harness harness;
  const u64 t = harness.timestamp_next;
  const Snapshot before = harness.snapshot();
  const std::vector<CreateAccountResult> results = harness.create_accounts({
      account_of({.id = 1, .flags = account_flags::imported, .timestamp = t + 2}),
      account_of({.id = 2, .reserved = 1, .flags = account_flags::imported,
                  .timestamp = timestamp_max}),
      account_of({.id = 3, .flags = account_flags::imported, .timestamp = t + 1}),
  });
  TALLY_CHECK_RESULT(results[0], S::imported_event_timestamp_must_not_advance, t);
  TALLY_CHECK_RESULT(results[1], S::imported_event_timestamp_must_not_advance, t + 1);
  TALLY_CHECK_RESULT(results[2], S::created, t + 1);
  CHECK_FALSE(harness.account(1).has_value());
  CHECK_FALSE(harness.account(2).has_value());
  CHECK(harness.snapshot().accounts.size() == before.accounts.size() + 1);
}

TEST_CASE("imported_event_timestamp_must_not_regress (26)") {
  // Goal: §7.2 step 9: an imported timestamp must be above every stored account's timestamp and
  // must not equal a transfer's; it is checked after the exists comparison, so re-importing an
  // existing account with any timestamp is `exists`.
  Harness harness;
  harness.create_accounts({account_of({.id = 1}), account_of({.id = 2})});
  const u64 t_two = harness.batch_timestamp_first + 1;
  harness.create_transfers({transfer_of(100, 1, 2, 5, 0)});
  const u64 t_transfer = harness.batch_timestamp_first;
  harness.timestamp_next += 1000;

  const auto imported = [](u128 id, u64 timestamp) {
    return account_of({.id = id, .flags = account_flags::imported, .timestamp = timestamp});
  };
  check_rejected(harness, imported(5, t_two), S::imported_event_timestamp_must_not_regress);
  check_rejected(harness, imported(5, t_two - 1), S::imported_event_timestamp_must_not_regress);
  check_rejected(harness, imported(5, t_transfer), S::imported_event_timestamp_must_not_regress);

  // Re-importing an account that exists: `exists` whatever the timestamp.
  harness.create_accounts({imported(6, t_transfer + 1)});
  const u64 t_six = t_transfer + 1;
  std::vector<CreateAccountResult> results = harness.create_accounts({imported(6, 1)});
  TALLY_CHECK_RESULT(results[0], S::exists, t_six);

  // Within one batch the events see each other: the second must postdate the first.
  const Snapshot before = harness.snapshot();
  results = harness.create_accounts({imported(7, t_six + 10), imported(8, t_six + 10),
                                     imported(9, t_six + 11)});
  TALLY_CHECK_RESULT(results[0], S::created, t_six + 10);
  TALLY_CHECK_RESULT(results[1], S::imported_event_timestamp_must_not_regress,
                     harness.batch_timestamp_first + 1);
  TALLY_CHECK_RESULT(results[2], S::created, t_six + 11);
  CHECK_FALSE(harness.account(8).has_value());
  CHECK(harness.snapshot().accounts.size() == before.accounts.size() + 2);
}

TEST_CASE("imported accounts in a failed chain are rolled back") {
  // Goal: TigerBeetle's "imported events: linked chain": imported accounts created earlier in a
  // chain vanish when a later event fails; re-running the chain with valid events succeeds with
  // the same imported timestamps (so the rollback also restored the timestamp maximum).
  Harness harness;
  harness.timestamp_next += 10;
  const auto imported = [](u128 id, u64 timestamp, u16 flags) {
    return account_of({.id = id, .flags = static_cast<u16>(flags | account_flags::imported),
                       .timestamp = timestamp});
  };
  std::vector<CreateAccountResult> results = harness.create_accounts({
      imported(1, 1, account_flags::linked),
      imported(2, 2, account_flags::linked),
      imported(3, 0, 0),
  });
  const u64 t = harness.batch_timestamp_first;
  TALLY_CHECK_RESULT(results[0], S::linked_event_failed, 1);
  TALLY_CHECK_RESULT(results[1], S::linked_event_failed, 2);
  TALLY_CHECK_RESULT(results[2], S::imported_event_timestamp_out_of_range, t + 2);
  CHECK(harness.state_machine.ledger().account_count() == 0);

  results = harness.create_accounts({
      imported(1, 1, account_flags::linked),
      imported(2, 2, account_flags::linked),
      imported(3, 3, 0),
  });
  TALLY_CHECK_RESULT(results[0], S::created, 1);
  TALLY_CHECK_RESULT(results[1], S::created, 2);
  TALLY_CHECK_RESULT(results[2], S::created, 3);
}

}  // TEST_SUITE
