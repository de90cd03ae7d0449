// Scenario tests of the read operations (protocol §7.7-§7.10): lookups, get_account_transfers,
// get_account_balances, query_accounts and query_transfers, and the query tests of the Node
// client suite (§9 #18-#22) reproduced at the state machine level.
//
// Results are compared as id sequences ("1 2 3"), so order, limit and filtering are all checked
// at once. Every invalid-filter rule of §7.8 has its own filter that is valid except for that
// one rule, next to a valid filter that does return results (so "empty" cannot pass by
// accident).
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
using tally::AccountBalance;
using tally::AccountFilter;
using tally::CreateAccountResult;
using tally::CreateTransferResult;
using tally::QueryFilter;
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
namespace tf = tally::transfer_flags;
namespace af = tally::account_filter_flags;
namespace qf = tally::query_filter_flags;

constexpr u64 timestamp_initial = 1'700'000'000'000'000'000;
constexpr u64 timestamp_max = (u64{1} << 63) - 1;
constexpr u64 u64_max = ~u64{0};
constexpr u32 batch_max = 8189;  // BATCH_MAX of the Node client.

using tally::state_machine::testing::AccountSpec;
using tally::state_machine::testing::account_of;
using tally::state_machine::testing::TransferSpec;
using tally::state_machine::testing::transfer_of;

struct AccountFilterSpec {
  u128 account_id = 0;
  u128 user_data_128 = 0;
  u64 user_data_64 = 0;
  u32 user_data_32 = 0;
  u16 code = 0;
  u64 timestamp_min = 0;
  u64 timestamp_max = 0;
  u32 limit = batch_max;
  u32 flags = af::debits | af::credits;
};

AccountFilter account_filter_of(const AccountFilterSpec& spec) {
  AccountFilter filter{};
  filter.account_id = spec.account_id;
  filter.user_data_128 = spec.user_data_128;
  filter.user_data_64 = spec.user_data_64;
  filter.user_data_32 = spec.user_data_32;
  filter.code = spec.code;
  filter.timestamp_min = spec.timestamp_min;
  filter.timestamp_max = spec.timestamp_max;
  filter.limit = spec.limit;
  filter.flags = spec.flags;
  return filter;
}

struct QueryFilterSpec {
  u128 user_data_128 = 0;
  u64 user_data_64 = 0;
  u32 user_data_32 = 0;
  u32 ledger = 0;
  u16 code = 0;
  u64 timestamp_min = 0;
  u64 timestamp_max = 0;
  u32 limit = batch_max;
  u32 flags = 0;
};

QueryFilter query_filter_of(const QueryFilterSpec& spec) {
  QueryFilter filter{};
  filter.user_data_128 = spec.user_data_128;
  filter.user_data_64 = spec.user_data_64;
  filter.user_data_32 = spec.user_data_32;
  filter.ledger = spec.ledger;
  filter.code = spec.code;
  filter.timestamp_min = spec.timestamp_min;
  filter.timestamp_max = spec.timestamp_max;
  filter.limit = spec.limit;
  filter.flags = spec.flags;
  return filter;
}

std::string u128_text(u128 value) { return doctest::StringMaker<u128>::convert(value).c_str(); }

// "1 2 3": the ids of a result list, in order.
template <typename Record>
std::string ids_text(const std::vector<Record>& records) {
  std::string text;
  for (const Record& record : records) {
    if (!text.empty()) text += ' ';
    text += u128_text(record.id);
  }
  return text;
}

class Harness {
 public:
  explicit Harness(const Config& config = Config::testing()) { state_machine.init(config); }

  u64 create_accounts_ok(const std::vector<Account>& events) {
    std::vector<CreateAccountResult> results(events.size());
    const u64 first = timestamp_next;
    state_machine.create_accounts(events, first, results);
    timestamp_next += events.size();
    for (const CreateAccountResult& result : results) {
      CHECK_MESSAGE(result.status == tally::CreateAccountStatus::created, "setup account: ",
                    std::string(tally::name(result.status)));
    }
    return first;
  }

  u64 create_transfers_ok(const std::vector<Transfer>& events) {
    std::vector<CreateTransferResult> results(events.size());
    const u64 first = timestamp_next;
    state_machine.create_transfers(events, first, results);
    timestamp_next += events.size();
    for (const CreateTransferResult& result : results) {
      CHECK_MESSAGE(result.status == tally::CreateTransferStatus::created, "setup transfer: ",
                    std::string(tally::name(result.status)));
    }
    return first;
  }

  std::vector<Account> lookup_accounts(const std::vector<u128>& ids) const {
    std::vector<Account> results(ids.size());
    results.resize(state_machine.lookup_accounts(ids, results));
    return results;
  }

  std::vector<Transfer> lookup_transfers(const std::vector<u128>& ids) const {
    std::vector<Transfer> results(ids.size());
    results.resize(state_machine.lookup_transfers(ids, results));
    return results;
  }

  std::vector<Transfer> get_account_transfers(const AccountFilterSpec& spec) {
    std::vector<Transfer> results(batch_max);
    results.resize(state_machine.get_account_transfers(account_filter_of(spec), results));
    return results;
  }

  std::vector<AccountBalance> get_account_balances(const AccountFilterSpec& spec) {
    std::vector<AccountBalance> results(batch_max);
    results.resize(state_machine.get_account_balances(account_filter_of(spec), results));
    return results;
  }

  std::vector<Account> query_accounts(const QueryFilterSpec& spec) {
    std::vector<Account> results(batch_max);
    results.resize(state_machine.query_accounts(query_filter_of(spec), results));
    return results;
  }

  std::vector<Transfer> query_transfers(const QueryFilterSpec& spec) {
    std::vector<Transfer> results(batch_max);
    results.resize(state_machine.query_transfers(query_filter_of(spec), results));
    return results;
  }

  std::string account_transfers_text(const AccountFilterSpec& spec) {
    return ids_text(get_account_transfers(spec));
  }
  std::string query_accounts_text(const QueryFilterSpec& spec) {
    return ids_text(query_accounts(spec));
  }
  std::string query_transfers_text(const QueryFilterSpec& spec) {
    return ids_text(query_transfers(spec));
  }

  StateMachine state_machine;
  u64 timestamp_next = timestamp_initial;
};

// Accounts 1 and 2 (with history), 3 (without), and TigerBeetle's "get_account_transfers:
// single-phase" transfers, plus one that does not touch account 1:
//
//   id  debit credit amount  ud128  ud64 ud32 code
//    1    1     2      10    1000    10    1    1
//    2    2     1      11    1001    10    2    2
//    3    1     2      12    1000    20    2    1
//    4    2     1      13    1001    20    1    2
//    5    3     2       7    1000    10    1    1
struct SinglePhase {
  Harness harness;
  u64 t = 0;  // Transfer n has timestamp t + n - 1.

  SinglePhase() {
    harness.create_accounts_ok({
        account_of({.id = 1, .flags = account_flags::history}),
        account_of({.id = 2, .flags = account_flags::history}),
        account_of({.id = 3}),
    });
    const auto transfer = [](u128 id, u128 debit, u128 credit, u128 amount, u128 ud128,
                             u64 ud64, u32 ud32, u16 code) {
      return transfer_of({.id = id, .debit_account_id = debit, .credit_account_id = credit,
                          .amount = amount, .user_data_128 = ud128, .user_data_64 = ud64,
                          .user_data_32 = ud32, .code = code});
    };
    t = harness.create_transfers_ok({
        transfer(1, 1, 2, 10, 1000, 10, 1, 1),
        transfer(2, 2, 1, 11, 1001, 10, 2, 2),
        transfer(3, 1, 2, 12, 1000, 20, 2, 1),
        transfer(4, 2, 1, 13, 1001, 20, 1, 2),
        transfer(5, 3, 2, 7, 1000, 10, 1, 1),
    });
  }
  u64 ts(u32 id) const { return t + id - 1; }
};

// "debits_pending debits_posted credits_pending credits_posted @timestamp" per balance.
std::string balances_text(const std::vector<AccountBalance>& balances) {
  std::string text;
  for (const AccountBalance& balance : balances) {
    if (!text.empty()) text += " | ";
    text += u128_text(balance.debits_pending) + " " + u128_text(balance.debits_posted) + " " +
            u128_text(balance.credits_pending) + " " + u128_text(balance.credits_posted);
  }
  return text;
}

// get_account_balances returns exactly one entry per transfer get_account_transfers returns,
// with the transfer's timestamp, and zero reserved bytes.
void check_balances_line_up(Harness& harness, const AccountFilterSpec& spec) {
  const std::vector<Transfer> transfers = harness.get_account_transfers(spec);
  const std::vector<AccountBalance> balances = harness.get_account_balances(spec);
  REQUIRE(balances.size() == transfers.size());
  for (std::size_t index = 0; index < transfers.size(); index += 1) {
    CAPTURE(index);
    CHECK(balances[index].timestamp == transfers[index].timestamp);
    for (const u8 byte : balances[index].reserved) CHECK(byte == 0);
  }
}

}  // namespace

TEST_SUITE("state_machine queries") {

// ---------------------------------------------------------------------------------------------
// Lookups (§7.7).

TEST_CASE("lookup_accounts: missing ids skipped, repeated ids repeated, id 0 and max missing") {
  // Goal: §7.7 exactly, with current balances in the returned records.
  Harness harness;
  const u64 t = harness.create_accounts_ok({account_of({.id = 17, .code = 718}),
                                            account_of({.id = 19, .code = 719})});
  harness.create_transfers_ok(
      {transfer_of({.id = 1, .debit_account_id = 19, .credit_account_id = 17, .amount = 100})});
  const std::vector<Account> found =
      harness.lookup_accounts({17, 99, 19, 17, 0, u128_max, 19});
  CHECK(ids_text(found) == "17 19 17 19");
  REQUIRE(found.size() == 4);
  CHECK(found[0].code == 718);
  CHECK(found[0].credits_posted == 100);
  CHECK(found[0].timestamp == t);
  CHECK(found[1].code == 719);
  CHECK(found[1].debits_posted == 100);
  CHECK(found[1].timestamp == t + 1);
  CHECK(std::memcmp(&found[0], &found[2], sizeof(Account)) == 0);
  CHECK(harness.lookup_accounts({}).empty());
  CHECK(harness.lookup_accounts({0}).empty());
}

TEST_CASE("lookup_transfers: missing ids skipped, repeated ids repeated, failed ids missing") {
  // Goal: §7.7 for transfers; a transfer that failed (and burned its id) is not found.
  Harness harness;
  harness.create_accounts_ok({account_of({.id = 1}), account_of({.id = 2})});
  const u64 t = harness.create_transfers_ok({
      transfer_of({.id = 10, .debit_account_id = 1, .credit_account_id = 2, .amount = 5}),
      transfer_of({.id = 11, .debit_account_id = 2, .credit_account_id = 1, .amount = 6}),
  });
  std::vector<CreateTransferResult> results(1);
  harness.state_machine.create_transfers(
      std::vector<Transfer>{transfer_of({.id = 12, .debit_account_id = 1,
                                         .credit_account_id = 99})},
      harness.timestamp_next++, results);
  REQUIRE(results[0].status == tally::CreateTransferStatus::credit_account_not_found);

  const std::vector<Transfer> found = harness.lookup_transfers({11, 12, 10, 11, 0, u128_max});
  CHECK(ids_text(found) == "11 10 11");
  REQUIRE(found.size() == 3);
  CHECK(found[0].amount == 6);
  CHECK(found[0].timestamp == t + 1);
  CHECK(found[1].timestamp == t);
  CHECK(harness.lookup_transfers({}).empty());
}

// ---------------------------------------------------------------------------------------------
// get_account_transfers (§7.8).

TEST_CASE("get_account_transfers: direction, order, limit and timestamp bounds") {
  // Goal: TigerBeetle's "get_account_transfers: single-phase" cases, as id sequences.
  SinglePhase s;
  Harness& h = s.harness;
  CHECK(h.account_transfers_text({.account_id = 1}) == "1 2 3 4");
  CHECK(h.account_transfers_text({.account_id = 1, .flags = af::debits}) == "1 3");
  CHECK(h.account_transfers_text({.account_id = 1, .flags = af::credits}) == "2 4");
  CHECK(h.account_transfers_text({.account_id = 1, .flags = af::debits | af::credits |
                                                                af::reversed}) == "4 3 2 1");
  CHECK(h.account_transfers_text({.account_id = 1, .flags = af::debits | af::reversed}) ==
        "3 1");
  CHECK(h.account_transfers_text({.account_id = 2}) == "1 2 3 4 5");
  CHECK(h.account_transfers_text({.account_id = 2, .flags = af::credits}) == "1 3 5");
  CHECK(h.account_transfers_text({.account_id = 3}) == "5");

  CHECK(h.account_transfers_text({.account_id = 1, .limit = 2}) == "1 2");
  CHECK(h.account_transfers_text({.account_id = 1, .limit = 1}) == "1");
  CHECK(h.account_transfers_text({.account_id = 1, .limit = 3,
                                  .flags = af::debits | af::credits | af::reversed}) ==
        "4 3 2");
  CHECK(h.account_transfers_text({.account_id = 1, .timestamp_min = s.ts(3)}) == "3 4");
  CHECK(h.account_transfers_text({.account_id = 1, .timestamp_max = s.ts(2)}) == "1 2");
  CHECK(h.account_transfers_text({.account_id = 1, .timestamp_min = s.ts(2),
                                  .timestamp_max = s.ts(3)}) == "2 3");
  CHECK(h.account_transfers_text({.account_id = 1, .timestamp_min = s.ts(2),
                                  .timestamp_max = s.ts(2)}) == "2");
  CHECK(h.account_transfers_text({.account_id = 1, .timestamp_min = s.ts(2),
                                  .timestamp_max = s.ts(4), .limit = 1,
                                  .flags = af::debits | af::credits | af::reversed}) == "4");
  CHECK(h.account_transfers_text({.account_id = 1, .timestamp_min = s.ts(4) + 1}).empty());
  CHECK(h.account_transfers_text({.account_id = 1, .timestamp_max = s.ts(1) - 1}).empty());
  // Bounds at the ends of the valid range are valid.
  CHECK(h.account_transfers_text({.account_id = 1, .timestamp_min = 1,
                                  .timestamp_max = timestamp_max}) == "1 2 3 4");
  // Limits above the result count (and above batch_max) return everything.
  CHECK(h.account_transfers_text({.account_id = 1, .limit = 0xFFFF'FFFF}) == "1 2 3 4");
  // Transfers are returned as stored.
  const std::vector<Transfer> transfers = h.get_account_transfers({.account_id = 1, .limit = 1});
  REQUIRE(transfers.size() == 1);
  CHECK(transfers[0].amount == 10);
  CHECK(transfers[0].user_data_128 == 1000);
  CHECK(transfers[0].timestamp == s.ts(1));
}

TEST_CASE("get_account_transfers: user_data_128/64/32 and code filters, alone and combined") {
  // Goal: §7.8: each non-zero field must be equal; zero means no filter.
  SinglePhase s;
  Harness& h = s.harness;
  CHECK(h.account_transfers_text({.account_id = 1, .user_data_128 = 1001}) == "2 4");
  CHECK(h.account_transfers_text({.account_id = 1, .user_data_64 = 10}) == "1 2");
  CHECK(h.account_transfers_text({.account_id = 1, .user_data_32 = 1}) == "1 4");
  CHECK(h.account_transfers_text({.account_id = 1, .code = 1}) == "1 3");
  CHECK(h.account_transfers_text({.account_id = 1, .user_data_128 = 1000, .user_data_64 = 10,
                                  .user_data_32 = 1, .code = 1, .timestamp_min = s.ts(1),
                                  .timestamp_max = s.ts(3)}) == "1");
  CHECK(h.account_transfers_text({.account_id = 1, .user_data_128 = 1000, .user_data_64 = 10,
                                  .user_data_32 = 1, .code = 1, .timestamp_min = s.ts(1),
                                  .timestamp_max = s.ts(3), .flags = af::debits}) == "1");
  CHECK(h.account_transfers_text({.account_id = 2, .user_data_128 = 1000, .user_data_64 = 10,
                                  .user_data_32 = 1, .code = 1, .flags = af::credits}) == "1 5");
  CHECK(h.account_transfers_text({.account_id = 1, .user_data_64 = 20, .code = 2,
                                  .flags = af::debits | af::credits | af::reversed}) == "4");
  CHECK(h.account_transfers_text({.account_id = 1, .user_data_128 = 1000,
                                  .flags = af::credits}).empty());
  CHECK(h.account_transfers_text({.account_id = 1, .user_data_128 = 1000, .user_data_64 = 20,
                                  .user_data_32 = 2, .code = 2}).empty());
  CHECK(h.account_transfers_text({.account_id = 1, .user_data_128 = 7}).empty());
}

TEST_CASE("get_account_transfers: every invalid filter of §7.8 gives an empty result") {
  // Goal: each filter below is the valid "all transfers of account 1" filter (4 results) with
  // exactly one rule broken.
  SinglePhase s;
  Harness& h = s.harness;
  REQUIRE(h.account_transfers_text({.account_id = 1}) == "1 2 3 4");
  CHECK(h.get_account_transfers({.account_id = 0}).empty());
  CHECK(h.get_account_transfers({.account_id = u128_max}).empty());
  CHECK(h.get_account_transfers({.account_id = 99}).empty());  // Valid, but no such account.
  CHECK(h.get_account_transfers({.account_id = 1, .timestamp_min = timestamp_max + 1}).empty());
  CHECK(h.get_account_transfers({.account_id = 1, .timestamp_min = u64_max}).empty());
  CHECK(h.get_account_transfers({.account_id = 1, .timestamp_max = timestamp_max + 1}).empty());
  CHECK(h.get_account_transfers({.account_id = 1, .timestamp_max = u64_max}).empty());
  CHECK(h.get_account_transfers({.account_id = 1, .timestamp_min = s.ts(2),
                                 .timestamp_max = s.ts(2) - 1}).empty());
  CHECK(h.get_account_transfers({.account_id = 1, .timestamp_min = u64_max - 1,
                                 .timestamp_max = 1}).empty());
  CHECK(h.get_account_transfers({.account_id = 1, .limit = 0}).empty());
  CHECK(h.get_account_transfers({.account_id = 1, .flags = 0}).empty());
  CHECK(h.get_account_transfers({.account_id = 1, .flags = af::reversed}).empty());
  CHECK(h.get_account_transfers({.account_id = 1, .flags = 0xFFFF}).empty());
  for (u32 bit = 3; bit < 32; bit += 1) {
    CAPTURE(bit);
    CHECK(h.get_account_transfers({.account_id = 1, .flags = af::debits | af::credits |
                                                             (1u << bit)}).empty());
  }
  for (std::size_t index = 0; index < sizeof(AccountFilter::reserved); index += 1) {
    CAPTURE(index);
    AccountFilter filter = account_filter_of({.account_id = 1});
    filter.reserved[index] = 1;
    std::vector<Transfer> results(8);
    CHECK(h.state_machine.get_account_transfers(filter, results) == 0);
    std::vector<AccountBalance> balances(8);
    CHECK(h.state_machine.get_account_balances(filter, balances) == 0);
  }
}

TEST_CASE("get_account_transfers: posts and voids carry the pending transfer's accounts") {
  // Goal: §7.8: post/void records match the account filter through p's account ids (the events
  // named no accounts), as in TigerBeetle's "get_account_transfers: two-phase".
  Harness harness;
  harness.create_accounts_ok({account_of({.id = 1, .flags = account_flags::history}),
                              account_of({.id = 2, .flags = account_flags::history})});
  harness.create_transfers_ok({
      transfer_of({.id = 1, .debit_account_id = 1, .credit_account_id = 2, .amount = 2,
                   .flags = tf::pending}),
      transfer_of({.id = 2, .debit_account_id = 2, .credit_account_id = 1, .amount = 3,
                   .flags = tf::pending}),
  });
  harness.create_transfers_ok({
      transfer_of({.id = 3, .amount = 1, .pending_id = 1, .ledger = 0, .code = 0,
                   .flags = tf::post_pending_transfer}),
      transfer_of({.id = 4, .pending_id = 2, .ledger = 0, .code = 0,
                   .flags = tf::void_pending_transfer}),
  });
  CHECK(harness.account_transfers_text({.account_id = 1}) == "1 2 3 4");
  CHECK(harness.account_transfers_text({.account_id = 1, .flags = af::debits}) == "1 3");
  CHECK(harness.account_transfers_text({.account_id = 1, .flags = af::credits}) == "2 4");
  CHECK(harness.account_transfers_text({.account_id = 2, .flags = af::debits}) == "2 4");
  CHECK(harness.account_transfers_text({.account_id = 1, .code = 1}) == "1 2 3 4");

  // Balances right after each: pending 2; + credits pending 3; post 1 of 2; void of 3.
  CHECK(balances_text(harness.get_account_balances({.account_id = 1})) ==
        "2 0 0 0 | 2 0 3 0 | 0 1 3 0 | 0 1 0 0");
  CHECK(balances_text(harness.get_account_balances({.account_id = 2})) ==
        "0 0 2 0 | 3 0 2 0 | 3 0 0 1 | 0 0 0 1");
  check_balances_line_up(harness, {.account_id = 1});
}

// ---------------------------------------------------------------------------------------------
// get_account_balances (§7.10).

TEST_CASE("get_account_balances: the balances after each transfer, in line with the transfers") {
  // Goal: TigerBeetle's "get_account_balances: single-phase": account 1's balances after each
  // of its transfers, for the same filters as get_account_transfers, 1:1 with its results.
  SinglePhase s;
  Harness& h = s.harness;
  CHECK(balances_text(h.get_account_balances({.account_id = 1})) ==
        "0 10 0 0 | 0 10 0 11 | 0 22 0 11 | 0 22 0 24");
  CHECK(balances_text(h.get_account_balances({.account_id = 1, .limit = 2})) ==
        "0 10 0 0 | 0 10 0 11");
  CHECK(balances_text(h.get_account_balances({.account_id = 1, .timestamp_min = s.ts(3)})) ==
        "0 22 0 11 | 0 22 0 24");
  CHECK(balances_text(h.get_account_balances({.account_id = 1, .timestamp_max = s.ts(2)})) ==
        "0 10 0 0 | 0 10 0 11");
  CHECK(balances_text(h.get_account_balances({.account_id = 1, .flags = af::debits | af::credits |
                                                                        af::reversed})) ==
        "0 22 0 24 | 0 22 0 11 | 0 10 0 11 | 0 10 0 0");
  CHECK(balances_text(h.get_account_balances({.account_id = 1, .flags = af::debits})) ==
        "0 10 0 0 | 0 22 0 11");
  CHECK(balances_text(h.get_account_balances({.account_id = 1, .flags = af::credits})) ==
        "0 10 0 11 | 0 22 0 24");
  CHECK(balances_text(h.get_account_balances({.account_id = 1, .user_data_32 = 1})) ==
        "0 10 0 0 | 0 22 0 24");
  CHECK(balances_text(h.get_account_balances({.account_id = 1, .code = 1})) ==
        "0 10 0 0 | 0 22 0 11");
  // Account 2 is the other side of every transfer: its own balances are reported.
  CHECK(balances_text(h.get_account_balances({.account_id = 2, .user_data_128 = 1000,
                                              .user_data_64 = 10, .user_data_32 = 1,
                                              .code = 1, .timestamp_min = s.ts(1),
                                              .timestamp_max = s.ts(3),
                                              .flags = af::credits})) == "0 0 0 10");
  // Account 2's transfer 5 with account 3 (no history) is recorded for account 2.
  CHECK(balances_text(h.get_account_balances({.account_id = 2, .timestamp_min = s.ts(5)})) ==
        "0 24 0 29");
  CHECK(h.get_account_balances({.account_id = 1, .user_data_128 = 1000, .user_data_64 = 20,
                                .user_data_32 = 2, .code = 2}).empty());

  const AccountFilterSpec filters[] = {
      {.account_id = 1},
      {.account_id = 1, .flags = af::debits | af::reversed},
      {.account_id = 1, .limit = 3, .flags = af::credits | af::debits | af::reversed},
      {.account_id = 2, .timestamp_min = s.ts(2), .timestamp_max = s.ts(5)},
      {.account_id = 2, .user_data_64 = 10},
  };
  for (const AccountFilterSpec& filter : filters) check_balances_line_up(h, filter);
  const std::vector<AccountBalance> balances = h.get_account_balances({.account_id = 1});
  REQUIRE(balances.size() == 4);
  for (u32 index = 0; index < 4; index += 1) CHECK(balances[index].timestamp == s.ts(index + 1));
}

TEST_CASE("get_account_balances: requires the history flag, an existing account, a valid filter") {
  // Goal: §7.10 and TigerBeetle's "get_account_balances: invalid filter": account 3 has
  // transfers but no `history` flag, so its balances are empty while its transfers are not.
  SinglePhase s;
  Harness& h = s.harness;
  CHECK(h.account_transfers_text({.account_id = 3}) == "5");
  CHECK(h.get_account_balances({.account_id = 3}).empty());
  CHECK(h.get_account_balances({.account_id = 99}).empty());
  CHECK(h.get_account_balances({.account_id = 0}).empty());
  CHECK(h.get_account_balances({.account_id = 1, .flags = 0}).empty());
  CHECK(h.get_account_balances({.account_id = 1, .timestamp_min = s.ts(2),
                                .timestamp_max = s.ts(1)}).empty());
  CHECK(h.get_account_balances({.account_id = 1, .timestamp_min = u64_max}).empty());
  CHECK(h.get_account_balances({.account_id = 1, .timestamp_max = u64_max}).empty());
  CHECK(h.get_account_balances({.account_id = 1, .limit = 0}).empty());
  CHECK(h.get_account_balances({.account_id = 1, .flags = 0xFFFF}).empty());
  CHECK(h.get_account_balances({.account_id = 1}).size() == 4);
}

TEST_CASE("get_account_balances: history snapshots are not changed by a later expiry") {
  // Goal: the balances are those right after each transfer (§7.10); an expiry later does not
  // add an entry (it is not a transfer) and does not rewrite the snapshot of the pending one.
  Harness harness;
  harness.create_accounts_ok({account_of({.id = 1, .flags = account_flags::history}),
                              account_of({.id = 2})});
  const u64 t = harness.create_transfers_ok({
      transfer_of({.id = 1, .debit_account_id = 1, .credit_account_id = 2, .amount = 9,
                   .timeout = 1, .flags = tf::pending}),
      transfer_of({.id = 2, .debit_account_id = 2, .credit_account_id = 1, .amount = 4}),
  });
  CHECK(harness.state_machine.pulse(t + 1'000'000'000) == 1);
  CHECK(harness.lookup_accounts({1})[0].debits_pending == 0);
  CHECK(balances_text(harness.get_account_balances({.account_id = 1})) ==
        "9 0 0 0 | 9 0 0 4");
  check_balances_line_up(harness, {.account_id = 1});
}

// ---------------------------------------------------------------------------------------------
// query_accounts and query_transfers (§7.8).

// Accounts 1..8 with two values per field, so that each field alone and each combination
// selects a distinct subset; plus account 9 with all fields distinct.
//
//   id  ud128 ud64 ud32 ledger code
//    1    100   10    1     1    1
//    2    200   10    1     1    1
//    3    100   20    1     1    2
//    4    200   20    2     2    2
//    5    100   10    2     2    1
//    6    200   10    2     1    2
//    7    100   20    2     2    1
//    8    200   20    1     2    2
//    9    300   30    3     3    3
struct QuerySetup {
  Harness harness;
  u64 t = 0;  // Account n at t + n - 1; transfer 100 + n (same fields) at t + 9 + n - 1.

  QuerySetup() {
    struct Row {
      u128 ud128;
      u64 ud64;
      u32 ud32;
      u32 ledger;
      u16 code;
    };
    const Row rows[] = {{100, 10, 1, 1, 1}, {200, 10, 1, 1, 1}, {100, 20, 1, 1, 2},
                        {200, 20, 2, 2, 2}, {100, 10, 2, 2, 1}, {200, 10, 2, 1, 2},
                        {100, 20, 2, 2, 1}, {200, 20, 1, 2, 2}, {300, 30, 3, 3, 3}};
    std::vector<Account> accounts;
    for (u32 index = 0; index < 9; index += 1) {
      const Row& row = rows[index];
      accounts.push_back(account_of({.id = index + 1, .user_data_128 = row.ud128,
                                     .user_data_64 = row.ud64, .user_data_32 = row.ud32,
                                     .ledger = row.ledger, .code = row.code}));
    }
    // Accounts 10, 11, 12 (ledgers 1, 2, 3) are the sides of the transfers.
    accounts.push_back(account_of({.id = 10, .ledger = 1, .code = 50}));
    accounts.push_back(account_of({.id = 11, .ledger = 2, .code = 50}));
    accounts.push_back(account_of({.id = 12, .ledger = 3, .code = 50}));
    accounts.push_back(account_of({.id = 13, .ledger = 1, .code = 50}));
    accounts.push_back(account_of({.id = 14, .ledger = 2, .code = 50}));
    accounts.push_back(account_of({.id = 15, .ledger = 3, .code = 50}));
    t = harness.create_accounts_ok(accounts);

    std::vector<Transfer> transfers;
    for (u32 index = 0; index < 9; index += 1) {
      const Row& row = rows[index];
      const u128 debit = 10 + row.ledger - 1;
      transfers.push_back(transfer_of({.id = 101 + index, .debit_account_id = debit,
                                       .credit_account_id = debit + 3, .amount = 1,
                                       .user_data_128 = row.ud128, .user_data_64 = row.ud64,
                                       .user_data_32 = row.ud32, .ledger = row.ledger,
                                       .code = row.code}));
    }
    harness.timestamp_next += 100;
    t_transfers = harness.create_transfers_ok(transfers);
  }

  u64 t_transfers = 0;
  u64 account_ts(u32 id) const { return t + id - 1; }
  u64 transfer_ts(u32 id) const { return t_transfers + id - 101; }
};

TEST_CASE("query_accounts: each filter field alone and combined") {
  // Goal: §7.8: the non-zero fields must all match; all zero matches every account.
  QuerySetup q;
  Harness& h = q.harness;
  CHECK(h.query_accounts_text({}) == "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15");
  CHECK(h.query_accounts_text({.user_data_128 = 100}) == "1 3 5 7");
  CHECK(h.query_accounts_text({.user_data_64 = 20}) == "3 4 7 8");
  CHECK(h.query_accounts_text({.user_data_32 = 2}) == "4 5 6 7");
  CHECK(h.query_accounts_text({.ledger = 2}) == "4 5 7 8 11 14");
  CHECK(h.query_accounts_text({.code = 2}) == "3 4 6 8");
  CHECK(h.query_accounts_text({.user_data_128 = 100, .user_data_64 = 10}) == "1 5");
  CHECK(h.query_accounts_text({.user_data_128 = 200, .user_data_32 = 2}) == "4 6");
  CHECK(h.query_accounts_text({.user_data_64 = 20, .ledger = 2, .code = 2}) == "4 8");
  CHECK(h.query_accounts_text({.ledger = 1, .code = 1}) == "1 2");
  CHECK(h.query_accounts_text({.user_data_128 = 100, .user_data_64 = 20, .user_data_32 = 2,
                               .ledger = 2, .code = 1}) == "7");
  CHECK(h.query_accounts_text({.user_data_128 = 300, .code = 3}) == "9");
  CHECK(h.query_accounts_text({.user_data_128 = 100, .code = 3}).empty());
  CHECK(h.query_accounts_text({.user_data_64 = 999}).empty());
  CHECK(h.query_accounts_text({.ledger = 3, .code = 50}) == "12 15");
  CHECK(h.query_accounts_text({.ledger = 3, .code = 1}).empty());
}

TEST_CASE("query_accounts: reversed, limit and timestamp bounds") {
  // Goal: ascending timestamp order, descending with `reversed`, then min(limit, 8189); bounds
  // inclusive.
  QuerySetup q;
  Harness& h = q.harness;
  CHECK(h.query_accounts_text({.user_data_128 = 100, .flags = qf::reversed}) == "7 5 3 1");
  CHECK(h.query_accounts_text({.user_data_128 = 100, .limit = 2}) == "1 3");
  CHECK(h.query_accounts_text({.user_data_128 = 100, .limit = 2, .flags = qf::reversed}) ==
        "7 5");
  CHECK(h.query_accounts_text({.limit = 3}) == "1 2 3");
  CHECK(h.query_accounts_text({.limit = 3, .flags = qf::reversed}) == "15 14 13");
  CHECK(h.query_accounts_text({.timestamp_min = q.account_ts(3),
                               .timestamp_max = q.account_ts(6)}) == "3 4 5 6");
  CHECK(h.query_accounts_text({.user_data_128 = 200, .timestamp_min = q.account_ts(3),
                               .timestamp_max = q.account_ts(6)}) == "4 6");
  CHECK(h.query_accounts_text({.user_data_128 = 200, .timestamp_min = q.account_ts(4),
                               .timestamp_max = q.account_ts(4)}) == "4");
  CHECK(h.query_accounts_text({.code = 2, .timestamp_max = q.account_ts(5),
                               .flags = qf::reversed}) == "4 3");
  CHECK(h.query_accounts_text({.code = 2, .timestamp_min = q.account_ts(5), .limit = 1}) == "6");
  CHECK(h.query_accounts_text({.timestamp_min = q.account_ts(15) + 1}).empty());
  CHECK(h.query_accounts_text({.timestamp_min = 1, .timestamp_max = timestamp_max,
                               .limit = 4}) == "1 2 3 4");
}

TEST_CASE("query_transfers: each filter field alone and combined, reversed, limit, bounds") {
  // Goal: the same rules over transfers (which have the same field values as accounts 1..9).
  QuerySetup q;
  Harness& h = q.harness;
  CHECK(h.query_transfers_text({}) == "101 102 103 104 105 106 107 108 109");
  CHECK(h.query_transfers_text({.user_data_128 = 100}) == "101 103 105 107");
  CHECK(h.query_transfers_text({.user_data_64 = 20}) == "103 104 107 108");
  CHECK(h.query_transfers_text({.user_data_32 = 2}) == "104 105 106 107");
  CHECK(h.query_transfers_text({.ledger = 2}) == "104 105 107 108");
  CHECK(h.query_transfers_text({.code = 2}) == "103 104 106 108");
  CHECK(h.query_transfers_text({.user_data_64 = 20, .ledger = 2, .code = 2}) == "104 108");
  CHECK(h.query_transfers_text({.user_data_128 = 100, .user_data_64 = 20, .user_data_32 = 2,
                                .ledger = 2, .code = 1}) == "107");
  CHECK(h.query_transfers_text({.user_data_128 = 300, .ledger = 1}).empty());
  CHECK(h.query_transfers_text({.code = 2, .flags = qf::reversed}) == "108 106 104 103");
  CHECK(h.query_transfers_text({.code = 2, .limit = 3, .flags = qf::reversed}) ==
        "108 106 104");
  CHECK(h.query_transfers_text({.timestamp_min = q.transfer_ts(102),
                                .timestamp_max = q.transfer_ts(104)}) == "102 103 104");
  CHECK(h.query_transfers_text({.ledger = 1, .timestamp_min = q.transfer_ts(102)}) ==
        "102 103 106");
  CHECK(h.query_transfers_text({.timestamp_max = q.transfer_ts(101) - 1}).empty());
  const std::vector<Transfer> transfers = h.query_transfers({.user_data_128 = 300});
  REQUIRE(transfers.size() == 1);
  CHECK(transfers[0].timestamp == q.transfer_ts(109));
  CHECK(transfers[0].ledger == 3);
}

TEST_CASE("query_accounts / query_transfers: every invalid filter of §7.8 gives an empty result") {
  // Goal: each filter is "everything" (which returns results) with exactly one rule broken.
  QuerySetup q;
  Harness& h = q.harness;
  REQUIRE(h.query_accounts({}).size() == 15);
  REQUIRE(h.query_transfers({}).size() == 9);
  const QueryFilterSpec invalid[] = {
      {.timestamp_min = timestamp_max + 1},
      {.timestamp_min = u64_max},
      {.timestamp_max = timestamp_max + 1},
      {.timestamp_max = u64_max},
      {.timestamp_min = u64_max - 1, .timestamp_max = 1},
      {.timestamp_min = q.account_ts(3), .timestamp_max = q.account_ts(3) - 1},
      {.limit = 0},
      {.flags = 0xFFFF},
      {.flags = 1u << 1},
      {.flags = qf::reversed | (1u << 31)},
  };
  for (const QueryFilterSpec& spec : invalid) {
    CAPTURE(spec.timestamp_min);
    CAPTURE(spec.timestamp_max);
    CAPTURE(spec.limit);
    CAPTURE(spec.flags);
    CHECK(h.query_accounts(spec).empty());
    CHECK(h.query_transfers(spec).empty());
  }
  for (std::size_t index = 0; index < sizeof(QueryFilter::reserved); index += 1) {
    CAPTURE(index);
    QueryFilter filter = query_filter_of({});
    filter.reserved[index] = 0x80;
    std::vector<Account> accounts(20);
    std::vector<Transfer> transfers(20);
    CHECK(h.state_machine.query_accounts(filter, accounts) == 0);
    CHECK(h.state_machine.query_transfers(filter, transfers) == 0);
  }
  // The valid extremes.
  CHECK(h.query_accounts({.timestamp_min = timestamp_max}).empty());
  CHECK(h.query_accounts({.timestamp_max = timestamp_max}).size() == 15);
  CHECK(h.query_accounts({.timestamp_min = 1}).size() == 15);
  CHECK(h.query_accounts({.timestamp_min = q.account_ts(15)}).size() == 1);
}

// ---------------------------------------------------------------------------------------------
// The Node client suite's query tests (§9 #18-#22).

TEST_CASE("§9 #18: can get account transfers") {
  // Goal: account C (21, history) and ten transfers 10000..10009 alternating C->B and A->C,
  // then every query of the test, for transfers and balances alike.
  Harness harness;
  harness.create_accounts_ok({account_of({.id = 17, .code = 718}),
                              account_of({.id = 19, .code = 719})});
  harness.create_accounts_ok({account_of({.id = 21, .code = 718,
                                          .flags = account_flags::history})});
  std::vector<Transfer> transfers;
  for (u32 i = 0; i < 10; i += 1) {
    transfers.push_back(transfer_of({.id = 10000 + i,
                                     .debit_account_id = i % 2 == 0 ? 21u : 17u,
                                     .credit_account_id = i % 2 == 0 ? 19u : 21u,
                                     .amount = 100}));
  }
  harness.create_transfers_ok(transfers);

  // Both directions, ascending: all 10, strictly increasing, balances in line.
  AccountFilterSpec filter = {.account_id = 21};
  std::vector<Transfer> found = harness.get_account_transfers(filter);
  CHECK(found.size() == 10);
  for (std::size_t i = 1; i < found.size(); i += 1) {
    CHECK(found[i - 1].timestamp < found[i].timestamp);
  }
  check_balances_line_up(harness, filter);
  CHECK(balances_text(harness.get_account_balances({.account_id = 21, .limit = 3})) ==
        "0 100 0 0 | 0 100 0 100 | 0 200 0 100");

  // Debits only, descending: 5; credits only, descending: 5.
  filter = {.account_id = 21, .flags = af::debits | af::reversed};
  CHECK(harness.account_transfers_text(filter) == "10008 10006 10004 10002 10000");
  check_balances_line_up(harness, filter);
  filter = {.account_id = 21, .flags = af::credits | af::reversed};
  CHECK(harness.account_transfers_text(filter) == "10009 10007 10005 10003 10001");
  check_balances_line_up(harness, filter);

  // Pagination forwards: limit 5, then timestamp_min = last + 1, then again (empty).
  filter = {.account_id = 21, .limit = 5};
  found = harness.get_account_transfers(filter);
  CHECK(ids_text(found) == "10000 10001 10002 10003 10004");
  check_balances_line_up(harness, filter);
  filter.timestamp_min = found.back().timestamp + 1;
  found = harness.get_account_transfers(filter);
  CHECK(ids_text(found) == "10005 10006 10007 10008 10009");
  check_balances_line_up(harness, filter);
  filter.timestamp_min = found.back().timestamp + 1;
  CHECK(harness.get_account_transfers(filter).empty());
  CHECK(harness.get_account_balances(filter).empty());

  // Pagination backwards: limit 5 reversed, then timestamp_max = last - 1, then again.
  filter = {.account_id = 21, .limit = 5, .flags = af::debits | af::credits | af::reversed};
  found = harness.get_account_transfers(filter);
  CHECK(ids_text(found) == "10009 10008 10007 10006 10005");
  filter.timestamp_max = found.back().timestamp - 1;
  found = harness.get_account_transfers(filter);
  CHECK(ids_text(found) == "10004 10003 10002 10001 10000");
  check_balances_line_up(harness, filter);
  filter.timestamp_max = found.back().timestamp - 1;
  CHECK(harness.get_account_transfers(filter).empty());
  CHECK(harness.get_account_balances(filter).empty());

  // Invalid filters: all empty, for both operations.
  const AccountFilterSpec invalid[] = {
      {.account_id = 0},
      {.account_id = 21, .timestamp_min = u64_max},
      {.account_id = 21, .timestamp_max = u64_max},
      {.account_id = 21, .timestamp_min = u64_max - 1, .timestamp_max = 1},
      {.account_id = 21, .limit = 0},
      {.account_id = 21, .flags = 0},
      {.account_id = 21, .flags = 0xFFFF},
  };
  for (const AccountFilterSpec& spec : invalid) {
    CHECK(harness.get_account_transfers(spec).empty());
    CHECK(harness.get_account_balances(spec).empty());
  }
}

TEST_CASE("§9 #19: can query accounts") {
  // Goal: ten accounts with code 999 alternating (1000, 100, 10) and (2000, 200, 20), among
  // other accounts, and every query of the test.
  Harness harness;
  harness.create_accounts_ok({account_of({.id = 17, .code = 718}),
                              account_of({.id = 19, .code = 719})});
  std::vector<Account> accounts;
  for (u32 i = 0; i < 10; i += 1) {
    accounts.push_back(account_of({.id = 1000 + i,
                                   .user_data_128 = i % 2 == 0 ? 1000u : 2000u,
                                   .user_data_64 = i % 2 == 0 ? 100u : 200u,
                                   .user_data_32 = i % 2 == 0 ? 10u : 20u,
                                   .ledger = 1,
                                   .code = 999}));
  }
  harness.create_accounts_ok(accounts);

  std::vector<Account> found = harness.query_accounts(
      {.user_data_128 = 1000, .user_data_64 = 100, .user_data_32 = 10, .ledger = 1,
       .code = 999});
  CHECK(ids_text(found) == "1000 1002 1004 1006 1008");
  found = harness.query_accounts({.user_data_128 = 2000, .user_data_64 = 200,
                                  .user_data_32 = 20, .ledger = 1, .code = 999,
                                  .flags = qf::reversed});
  CHECK(ids_text(found) == "1009 1007 1005 1003 1001");
  CHECK(harness.query_accounts({.code = 999}).size() == 10);

  QueryFilterSpec filter = {.code = 999, .limit = 5, .flags = qf::reversed};
  found = harness.query_accounts(filter);
  CHECK(ids_text(found) == "1009 1008 1007 1006 1005");
  filter.timestamp_max = found.back().timestamp - 1;
  found = harness.query_accounts(filter);
  CHECK(ids_text(found) == "1004 1003 1002 1001 1000");
  filter.timestamp_max = found.back().timestamp - 1;
  CHECK(harness.query_accounts(filter).empty());

  CHECK(harness.query_accounts({.user_data_64 = 200, .user_data_32 = 10}).empty());
}

TEST_CASE("§9 #20: can query transfers") {
  // Goal: a new account and ten transfers with code 999 to/from A and B, alternating user data.
  Harness harness;
  harness.create_accounts_ok({account_of({.id = 17, .code = 718}),
                              account_of({.id = 19, .code = 719})});
  harness.create_transfers_ok({transfer_of({.id = 1, .debit_account_id = 19,
                                            .credit_account_id = 17, .amount = 100})});
  harness.create_accounts_ok({account_of({.id = 50, .code = 718})});
  std::vector<Transfer> transfers;
  for (u32 i = 0; i < 10; i += 1) {
    transfers.push_back(transfer_of({.id = 2000 + i,
                                     .debit_account_id = i % 2 == 0 ? 50u : 17u,
                                     .credit_account_id = i % 2 == 0 ? 19u : 50u,
                                     .amount = 100,
                                     .user_data_128 = i % 2 == 0 ? 1000u : 2000u,
                                     .user_data_64 = i % 2 == 0 ? 100u : 200u,
                                     .user_data_32 = i % 2 == 0 ? 10u : 20u,
                                     .code = 999}));
  }
  harness.create_transfers_ok(transfers);

  CHECK(harness.query_transfers_text({.user_data_128 = 1000, .user_data_64 = 100,
                                      .user_data_32 = 10, .ledger = 1, .code = 999}) ==
        "2000 2002 2004 2006 2008");
  CHECK(harness.query_transfers_text({.user_data_128 = 2000, .user_data_64 = 200,
                                      .user_data_32 = 20, .ledger = 1, .code = 999,
                                      .flags = qf::reversed}) == "2009 2007 2005 2003 2001");
  CHECK(harness.query_transfers({.code = 999}).size() == 10);
  QueryFilterSpec filter = {.code = 999, .limit = 5, .flags = qf::reversed};
  std::vector<Transfer> found = harness.query_transfers(filter);
  CHECK(ids_text(found) == "2009 2008 2007 2006 2005");
  filter.timestamp_max = found.back().timestamp - 1;
  found = harness.query_transfers(filter);
  CHECK(ids_text(found) == "2004 2003 2002 2001 2000");
  filter.timestamp_max = found.back().timestamp - 1;
  CHECK(harness.query_transfers(filter).empty());
  CHECK(harness.query_transfers({.user_data_64 = 200, .user_data_32 = 10}).empty());
}

TEST_CASE("§9 #21: query with invalid filter") {
  // Goal: the test's five invalid filters, each empty for both operations.
  QuerySetup q;
  Harness& h = q.harness;
  const QueryFilterSpec invalid[] = {
      {.timestamp_min = u64_max},
      {.timestamp_max = u64_max},
      {.timestamp_min = u64_max - 1, .timestamp_max = 1},
      {.limit = 0},
      {.limit = 0, .flags = 0xFFFF},
  };
  for (const QueryFilterSpec& spec : invalid) {
    CHECK(h.query_accounts(spec).empty());
    CHECK(h.query_transfers(spec).empty());
  }
}

TEST_CASE("§9 #22: can import accounts and transfers") {
  // Goal: a normal account at T; 10 ms later, imported accounts at T+1 and T+2 and an imported
  // transfer at T+3 between them; lookups show exactly those timestamps.
  Harness harness;
  const u64 t = harness.create_accounts_ok({account_of({.id = 1, .code = 718})});
  CHECK(harness.lookup_accounts({1})[0].timestamp == t);
  harness.timestamp_next += 10'000'000;
  harness.create_accounts_ok({
      account_of({.id = 2, .code = 718, .flags = account_flags::imported, .timestamp = t + 1}),
      account_of({.id = 3, .code = 718, .flags = account_flags::imported, .timestamp = t + 2}),
  });
  const std::vector<Account> accounts = harness.lookup_accounts({2, 3});
  REQUIRE(accounts.size() == 2);
  CHECK(accounts[0].timestamp == t + 1);
  CHECK(accounts[1].timestamp == t + 2);
  harness.create_transfers_ok({transfer_of({.id = 1, .debit_account_id = 2,
                                            .credit_account_id = 3, .amount = 100,
                                            .flags = tf::imported, .timestamp = t + 3})});
  const std::vector<Transfer> found = harness.lookup_transfers({1});
  REQUIRE(found.size() == 1);
  CHECK(found[0].timestamp == t + 3);
  // The imported records sit at their imported timestamps in the query order too.
  CHECK(harness.query_accounts_text({}) == "1 2 3");
  CHECK(harness.query_accounts_text({.timestamp_min = t + 2}) == "3");
  CHECK(harness.query_transfers_text({.timestamp_max = t + 3}) == "1");
}

}  // TEST_SUITE
