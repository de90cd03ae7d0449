// Tests of StateMachine::execute() on whole request bodies (protocol §7.1, §8), of
// capacity_admits(), and of determinism.
//
// - The §14 vectors: the V4 create_accounts body gives exactly the V5 reply body; V6, V7, V8.
// - Multi-batch requests: one reply batch per request batch, event timestamps consecutive over
//   all batches (P - N + 1 .. P), the imported-event batch timestamp per batch, chains that
//   cannot span batches, zero-event batches, query operations with one filter per batch.
// - The deprecated encodings: sparse multi-batch (138, 139) and raw unbatched (129..136),
//   including their larger limit of 8190 events or results.
// - capacity_admits() with a tiny Config, for each capacity it guards.
// - Determinism: state machines fed the same requests give identical reply bytes; one that also
//   executed rolled-back chains in between gives identical replies too (rollback is exact).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "src/base/death_test.hpp"
#include "src/state_machine/state_machine.hpp"
#include "tally/constants.hpp"
#include "tally/multi_batch.hpp"
#include "tally/records.hpp"

namespace {

using tally::Account;
using tally::AccountBalance;
using tally::AccountFilter;
using tally::CreateAccountErrorResult;
using tally::CreateAccountResult;
using tally::CreateAccountStatus;
using tally::CreateTransferErrorResult;
using tally::CreateTransferResult;
using tally::CreateTransferStatus;
using tally::message_body_size_max;
using tally::MultiBatchDecoder;
using tally::MultiBatchEncodeError;
using tally::MultiBatchEncoder;
using tally::MultiBatchError;
using tally::Operation;
using tally::QueryFilter;
using tally::RequestBodyError;
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

constexpr u64 second = 1'000'000'000;

// A message body in 16-byte aligned storage: records are read in place, as from a message.
class Body {
 public:
  Body() : words_(message_body_size_max / sizeof(u128)) {}

  std::span<std::byte> buffer() { return std::as_writable_bytes(std::span<u128>(words_)); }
  std::span<const std::byte> bytes() const {
    return std::as_bytes(std::span<const u128>(words_)).first(size);
  }
  std::string hex() const {
    static constexpr char digits[] = "0123456789abcdef";
    std::string text;
    for (const std::byte byte : bytes()) {
      text += digits[static_cast<u8>(byte) >> 4];
      text += digits[static_cast<u8>(byte) & 0xF];
    }
    return text;
  }

  std::size_t size = 0;

 private:
  std::vector<u128> words_;
};

Body body_from_hex(std::string_view hex) {
  Body body;
  std::span<std::byte> buffer = body.buffer();
  const auto nibble = [](char c) {
    return static_cast<u8>(c <= '9' ? c - '0' : c - 'a' + 10);
  };
  for (std::size_t index = 0; index + 1 < hex.size(); index += 2) {
    buffer[body.size] = static_cast<std::byte>(nibble(hex[index]) << 4 | nibble(hex[index + 1]));
    body.size += 1;
  }
  return body;
}

template <typename T>
Body multi_batch(const std::vector<std::vector<T>>& batches) {
  Body body;
  MultiBatchEncoder encoder(body.buffer(), sizeof(T));
  for (const std::vector<T>& batch : batches) {
    REQUIRE(encoder.batch_add(std::as_bytes(std::span<const T>(batch))) ==
            MultiBatchEncodeError::none);
  }
  REQUIRE(encoder.finish() == MultiBatchEncodeError::none);
  body.size = encoder.size();
  return body;
}

template <typename T>
Body raw(const std::vector<T>& events) {
  Body body;
  REQUIRE(events.size() * sizeof(T) <= message_body_size_max);
  if (!events.empty()) std::memcpy(body.buffer().data(), events.data(), events.size() * sizeof(T));
  body.size = events.size() * sizeof(T);
  return body;
}

// The batches of a multi-batch reply, decoded with the result size.
template <typename Result>
std::vector<std::vector<Result>> reply_batches(const Body& reply) {
  MultiBatchDecoder decoder;
  REQUIRE(decoder.decode(reply.bytes(), sizeof(Result)) == MultiBatchError::none);
  std::vector<std::vector<Result>> batches;
  for (const std::span<const std::byte> batch : decoder) {
    std::vector<Result> results(batch.size() / sizeof(Result));
    if (!results.empty()) std::memcpy(results.data(), batch.data(), batch.size());
    batches.push_back(results);
  }
  return batches;
}

template <typename Result>
std::vector<Result> reply_raw(const Body& reply) {
  REQUIRE(reply.size % sizeof(Result) == 0);
  std::vector<Result> results(reply.size / sizeof(Result));
  if (!results.empty()) std::memcpy(results.data(), reply.bytes().data(), reply.size);
  return results;
}

Account account_of(u128 id, u16 flags = 0, u64 timestamp = 0, u16 code = 1) {
  Account account{};
  account.id = id;
  account.ledger = 1;
  account.code = code;
  account.flags = flags;
  account.timestamp = timestamp;
  return account;
}

Transfer transfer_of(u128 id, u128 debit, u128 credit, u128 amount, u16 flags = 0) {
  Transfer transfer{};
  transfer.id = id;
  transfer.debit_account_id = debit;
  transfer.credit_account_id = credit;
  transfer.amount = amount;
  transfer.ledger = 1;
  transfer.code = 1;
  transfer.flags = flags;
  return transfer;
}

Transfer post_of(u128 id, u128 pending_id, u16 flags = tf::post_pending_transfer) {
  Transfer transfer = transfer_of(id, 0, 0, u128_max, flags);
  if (flags & tf::void_pending_transfer) transfer.amount = 0;
  transfer.pending_id = pending_id;
  return transfer;
}

AccountFilter account_filter_of(u128 account_id, u32 limit, u32 flags = af::debits | af::credits) {
  AccountFilter filter{};
  filter.account_id = account_id;
  filter.limit = limit;
  filter.flags = flags;
  return filter;
}

QueryFilter query_filter_of(u32 limit, u16 code = 0) {
  QueryFilter filter{};
  filter.code = code;
  filter.limit = limit;
  return filter;
}

// One state machine and the replica's timestamp rule of §7.1: P = max(P, C) + 1, then P += N.
class Node {
 public:
  explicit Node(const Config& config = Config::testing()) { state_machine.init(config); }

  Body execute(Operation operation, const Body& body) {
    REQUIRE(tally::validate_request_body(operation, body.bytes()) == RequestBodyError::none);
    const u32 events = StateMachine::timestamp_event_count(operation, body.bytes());
    timestamp = timestamp + 1 + events;
    Body reply;
    reply.size = state_machine.execute(operation, timestamp, body.bytes(), reply.buffer());
    CHECK(state_machine.commit_timestamp() == timestamp);
    return reply;
  }

  StateMachine state_machine;
  u64 timestamp = 1'700'000'000'000'000'000;  // The latest prepare timestamp P.
};

// splitmix64: a small fixed-seed generator, identical everywhere.
class Random {
 public:
  explicit Random(u64 seed) : state_(seed) {}
  u64 next() {
    state_ += 0x9e3779b97f4a7c15;
    u64 z = state_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
    z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
    return z ^ (z >> 31);
  }
  u32 below(u32 bound) { return static_cast<u32>(next() % bound); }
  bool chance(u32 percent) { return below(100) < percent; }

 private:
  u64 state_;
};

struct Request {
  Operation operation;
  Body body;
  u64 gap;  // Nanoseconds of cluster time before this request.
};

// A fixed-seed mix of every operation over accounts 1..22 (21 and 22 never exist): creates
// with chains, failures, duplicates, pending transfers with timeouts, posts and voids, balancing
// and closing transfers; lookups and queries with random filters; pulses.
std::vector<Request> workload(u64 seed, u32 count) {
  Random random(seed);
  std::vector<Request> requests;
  std::vector<Account> accounts;
  for (u32 id = 1; id <= 20; id += 1) {
    const u16 flags_choice[] = {0, 0, account_flags::history,
                                account_flags::debits_must_not_exceed_credits,
                                account_flags::credits_must_not_exceed_debits};
    Account account = account_of(id, flags_choice[random.below(5)], 0,
                                 static_cast<u16>(1 + random.below(3)));
    account.ledger = id <= 16 ? 1 : 2;
    account.user_data_64 = random.below(3);
    accounts.push_back(account);
  }
  // Accounts 30 and 31 exist everywhere but only the rolled-back chains of the test use them.
  accounts.push_back(account_of(30));
  accounts.push_back(account_of(31));
  requests.push_back({Operation::create_accounts, multi_batch<Account>({accounts}), 0});

  u128 transfer_id_next = 1;
  u128 account_id_next = 1000;
  std::vector<u128> pending_ids;
  const auto account_id = [&] { return u128{1 + random.below(22)}; };
  for (u32 index = 0; index < count; index += 1) {
    const u64 gap = random.chance(20) ? random.below(1'500'000'000) : 100 + random.below(1000);
    const u32 choice = random.below(100);
    if (choice < 40) {
      std::vector<std::vector<Transfer>> batches(1 + random.below(3));
      for (std::vector<Transfer>& batch : batches) {
        const u32 events = random.below(12);
        for (u32 event = 0; event < events; event += 1) {
          const u128 id = random.chance(10) && transfer_id_next > 1
                              ? 1 + random.below(static_cast<u32>(transfer_id_next - 1))
                              : transfer_id_next++;
          Transfer transfer = transfer_of(id, account_id(), account_id(), random.below(100));
          if (random.chance(5)) transfer.amount = u128_max / (1 + random.below(4));
          transfer.ledger = random.chance(90) ? 1 : 2;
          transfer.code = static_cast<u16>(1 + random.below(3));
          transfer.user_data_32 = random.below(3);
          u16 flags = random.chance(15) ? tf::linked : 0;
          const u32 kind = random.below(100);
          if (kind < 30) {
            flags |= tf::pending;
            transfer.timeout = random.below(3);
            if (random.chance(5)) flags |= tf::closing_debit;
            pending_ids.push_back(id);
          } else if (kind < 50 && !pending_ids.empty()) {
            const u128 pending_id = pending_ids[random.below(static_cast<u32>(pending_ids.size()))];
            transfer = post_of(id, pending_id,
                               random.chance(60) ? tf::post_pending_transfer
                                                 : tf::void_pending_transfer);
            if (random.chance(30)) transfer.amount = random.below(60);
          } else if (kind < 60) {
            flags |= random.chance(50) ? tf::balancing_debit : tf::balancing_credit;
          }
          transfer.flags = static_cast<u16>(transfer.flags | flags);
          batch.push_back(transfer);
        }
      }
      const Operation operation = random.chance(10) ? Operation::deprecated_create_transfers_sparse
                                                    : Operation::create_transfers;
      requests.push_back({operation, multi_batch<Transfer>(batches), gap});
    } else if (choice < 45) {
      std::vector<Account> created;
      for (u32 event = random.below(4); event > 0; event -= 1) {
        created.push_back(account_of(random.chance(20) ? account_id() : account_id_next++,
                                     random.chance(20) ? account_flags::linked : 0));
      }
      requests.push_back({Operation::create_accounts, multi_batch<Account>({created}), gap});
    } else if (choice < 55) {
      std::vector<u128> ids;
      for (u32 event = random.below(6); event > 0; event -= 1) {
        ids.push_back(random.chance(50) ? account_id() : 1 + random.below(200));
      }
      requests.push_back({random.chance(50) ? Operation::lookup_accounts
                                            : Operation::lookup_transfers,
                          multi_batch<u128>({ids, {}}), gap});
    } else if (choice < 75) {
      AccountFilter filter = account_filter_of(account_id(), 1 + random.below(20),
                                               1 + random.below(7));
      if (random.chance(20)) filter.code = static_cast<u16>(1 + random.below(3));
      if (random.chance(20)) filter.user_data_32 = random.below(3);
      requests.push_back({random.chance(50) ? Operation::get_account_transfers
                                            : Operation::get_account_balances,
                          multi_batch<AccountFilter>({{filter}}), gap});
    } else if (choice < 92) {
      QueryFilter filter = query_filter_of(1 + random.below(30));
      if (random.chance(40)) filter.code = static_cast<u16>(1 + random.below(3));
      if (random.chance(30)) filter.ledger = 1 + random.below(2);
      if (random.chance(30)) filter.user_data_32 = random.below(3);
      if (random.chance(30)) filter.user_data_64 = random.below(3);
      filter.flags = random.below(2);
      requests.push_back({random.chance(50) ? Operation::query_accounts
                                            : Operation::query_transfers,
                          multi_batch<QueryFilter>({{filter}}), gap});
    } else {
      requests.push_back({Operation::state_machine_pulse, Body(), gap});
    }
  }
  return requests;
}

}  // namespace

TEST_SUITE("state_machine execute") {

TEST_CASE("§14 V4 -> V5: the create_accounts reply body, byte for byte") {
  // Goal: the spec's full-message vectors: account 17 (ledger 1, code 718) created at
  // 1700000000000000001 (the register took ...000) gives the 32-byte V5 body.
  const Body request = body_from_hex(
      "1100000000000000000000000000000000000000000000000000000000000000"
      "0000000000000000000000000000000000000000000000000000000000000000"
      "0000000000000000000000000000000000000000000000000000000000000000"
      "0000000000000000000000000000000001000000ce0200000000000000000000"
      "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
      "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
      "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
      "ffffffffffffffffffffffffffffffffffffffffffffffffffffffff01000100");
  REQUIRE(request.size == 256);
  REQUIRE(tally::validate_request_body(Operation::create_accounts, request.bytes()) ==
          RequestBodyError::none);
  CHECK(StateMachine::timestamp_event_count(Operation::create_accounts, request.bytes()) == 1);

  StateMachine state_machine;
  state_machine.init(Config::testing());
  state_machine.commit_timestamp_set(1'700'000'000'000'000'000);
  Body reply;
  reply.size = state_machine.execute(Operation::create_accounts, 1'700'000'000'000'000'001,
                                     request.bytes(), reply.buffer());
  CHECK(reply.hex() == "01002a36fe9c9717ffffffff00000000ffffffffffffffffffffffff01000100");
  CHECK(state_machine.commit_timestamp() == 1'700'000'000'000'000'001);

  // V6 looks up [17, 19] and [21]: two reply batches, the first with account 17 only.
  const Body lookup = body_from_hex(
      "1100000000000000000000000000000013000000000000000000000000000000"
      "15000000000000000000000000000000ffffffffffffffffffff010002000200");
  reply.size = state_machine.execute(Operation::lookup_accounts, 1'700'000'000'000'000'002,
                                     lookup.bytes(), reply.buffer());
  CHECK(reply.size == 128 + 128);
  const std::vector<std::vector<Account>> accounts = reply_batches<Account>(reply);
  REQUIRE(accounts.size() == 2);
  REQUIRE(accounts[0].size() == 1);
  CHECK(accounts[1].empty());
  CHECK(accounts[0][0].id == 17);
  CHECK(accounts[0][0].code == 718);
  CHECK(accounts[0][0].timestamp == 1'700'000'000'000'000'001);
}

TEST_CASE("§14 V7 / V8: zero-event batches give zero-result batches") {
  // Goal: tests #23-#26: createAccounts([]) etc. send one batch of zero events; the reply is one
  // batch of zero results (V8 for lookups: 128 bytes; 16 bytes for create results). No
  // timestamps are consumed.
  Node node;
  const Body empty_accounts = body_from_hex(
      "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
      "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
      "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
      "ffffffffffffffffffffffffffffffffffffffffffffffffffffffff00000100");
  CHECK(StateMachine::timestamp_event_count(Operation::create_accounts,
                                            empty_accounts.bytes()) == 0);
  const std::string create_reply = "ffffffffffffffffffffffff00000100";
  const std::string lookup_reply =
      "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
      "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
      "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
      "ffffffffffffffffffffffffffffffffffffffffffffffffffffffff00000100";
  CHECK(node.execute(Operation::create_accounts, empty_accounts).hex() == create_reply);
  CHECK(node.execute(Operation::create_transfers, empty_accounts).hex() == create_reply);
  const Body empty_ids = multi_batch<u128>({{}});
  CHECK(empty_ids.hex() == "ffffffffffffffffffffffff00000100");
  CHECK(node.execute(Operation::lookup_accounts, empty_ids).hex() == lookup_reply);
  CHECK(node.execute(Operation::lookup_transfers, empty_ids).hex() == lookup_reply);
  CHECK(node.state_machine.ledger().account_count() == 0);

  // Zero-event batches among others keep their places.
  const Body mixed = multi_batch<Account>({{}, {account_of(1)}, {}});
  const u64 timestamp_before = node.timestamp;
  const std::vector<std::vector<CreateAccountResult>> results =
      reply_batches<CreateAccountResult>(node.execute(Operation::create_accounts, mixed));
  REQUIRE(results.size() == 3);
  CHECK(results[0].empty());
  REQUIRE(results[1].size() == 1);
  CHECK(results[2].empty());
  CHECK(results[1][0].status == CreateAccountStatus::created);
  CHECK(results[1][0].timestamp == timestamp_before + 2);
  CHECK(node.timestamp == timestamp_before + 2);
}

TEST_CASE("multi-batch create_accounts: consecutive timestamps, one reply batch per batch") {
  // Goal: §7.1: the N = 5 events of batches [2, 0, 3] get P-4 .. P in order over all batches,
  // and each reply batch answers its request batch.
  Node node;
  const Body body = multi_batch<Account>({
      {account_of(1), account_of(2)},
      {},
      {account_of(3), account_of(1), account_of(4, 0, 0, 0)},
  });
  CHECK(StateMachine::timestamp_event_count(Operation::create_accounts, body.bytes()) == 5);
  const Body reply = node.execute(Operation::create_accounts, body);
  const u64 p = node.timestamp;
  const std::vector<std::vector<CreateAccountResult>> results =
      reply_batches<CreateAccountResult>(reply);
  REQUIRE(results.size() == 3);
  REQUIRE(results[0].size() == 2);
  CHECK(results[1].empty());
  REQUIRE(results[2].size() == 3);
  CHECK(results[0][0].status == CreateAccountStatus::created);
  CHECK(results[0][0].timestamp == p - 4);
  CHECK(results[0][1].timestamp == p - 3);
  CHECK(results[2][0].status == CreateAccountStatus::created);
  CHECK(results[2][0].timestamp == p - 2);
  // Account 1 was created in the first batch: later batches see it.
  CHECK(results[2][1].status == CreateAccountStatus::exists);
  CHECK(results[2][1].timestamp == p - 4);
  CHECK(results[2][2].status == CreateAccountStatus::code_must_not_be_zero);
  CHECK(results[2][2].timestamp == p);
  CHECK(reply.size == 5 * 16 + 16);
}

TEST_CASE("multi-batch create_transfers: chains end at the batch boundary") {
  // Goal: linked chains are per batch (TigerBeetle executes each batch on its own): a linked
  // last event of a batch is linked_event_chain_open, and the next batch starts fresh.
  Node node;
  node.execute(Operation::create_accounts, multi_batch<Account>({{account_of(1), account_of(2)}}));
  const Body body = multi_batch<Transfer>({
      {transfer_of(10, 1, 2, 5), transfer_of(11, 1, 2, 6, tf::linked)},
      {transfer_of(12, 1, 2, 7)},
      {transfer_of(13, 1, 2, 8, tf::linked), transfer_of(14, 1, 99, 9)},
  });
  const std::vector<std::vector<CreateTransferResult>> results =
      reply_batches<CreateTransferResult>(node.execute(Operation::create_transfers, body));
  const u64 p = node.timestamp;
  REQUIRE(results.size() == 3);
  REQUIRE(results[0].size() == 2);
  REQUIRE(results[1].size() == 1);
  REQUIRE(results[2].size() == 2);
  CHECK(results[0][0].status == CreateTransferStatus::created);
  CHECK(results[0][1].status == CreateTransferStatus::linked_event_chain_open);
  CHECK(results[1][0].status == CreateTransferStatus::created);
  CHECK(results[2][0].status == CreateTransferStatus::linked_event_failed);
  CHECK(results[2][1].status == CreateTransferStatus::credit_account_not_found);
  for (u32 index = 0; index < 5; index += 1) {
    const CreateTransferResult& result =
        index < 2 ? results[0][index] : (index == 2 ? results[1][0] : results[2][index - 3]);
    CHECK(result.timestamp == p - 4 + index);
  }
  const std::vector<std::vector<Account>> accounts = reply_batches<Account>(
      node.execute(Operation::lookup_accounts, multi_batch<u128>({{1}})));
  CHECK(accounts[0][0].debits_posted == 5 + 7);
}

TEST_CASE("multi-batch: the imported-event batch timestamp is per batch") {
  // Goal: §7.1: "the batch timestamp" of the imported checks is the timestamp of the last event
  // of THAT batch. Batches of 2 (P-5, P-4) and 3 (P-3 .. P-1): importing P-4 is too late in the
  // first batch but fine in the second. The import mode is per batch too: the third batch
  // (event P) is not imported, and that is not imported_event_expected.
  Node node;
  const u64 p = node.timestamp + 1 + 6;
  const Body body = multi_batch<Account>({
      {account_of(1, account_flags::imported, p - 4), account_of(2, account_flags::imported,
                                                                p - 6)},
      {account_of(3, account_flags::imported, p - 4), account_of(4, account_flags::imported,
                                                                p - 1),
       account_of(5, account_flags::imported, p - 2)},
      {account_of(6)},
  });
  const std::vector<std::vector<CreateAccountResult>> results =
      reply_batches<CreateAccountResult>(node.execute(Operation::create_accounts, body));
  REQUIRE(node.timestamp == p);
  REQUIRE(results.size() == 3);
  CHECK(results[0][0].status == CreateAccountStatus::imported_event_timestamp_must_not_advance);
  CHECK(results[0][0].timestamp == p - 5);
  CHECK(results[0][1].status == CreateAccountStatus::created);
  CHECK(results[0][1].timestamp == p - 6);
  CHECK(results[1][0].status == CreateAccountStatus::created);
  CHECK(results[1][0].timestamp == p - 4);
  CHECK(results[1][1].status == CreateAccountStatus::imported_event_timestamp_must_not_advance);
  CHECK(results[1][1].timestamp == p - 2);
  CHECK(results[1][2].status == CreateAccountStatus::created);
  CHECK(results[1][2].timestamp == p - 2);
  CHECK(results[2][0].status == CreateAccountStatus::created);
  CHECK(results[2][0].timestamp == p);
}

TEST_CASE("multi-batch queries: one filter per batch, one result batch each") {
  // Goal: ops 140-145 with several batches: each batch is answered on its own, in order.
  Node node;
  node.execute(Operation::create_accounts,
               multi_batch<Account>({{account_of(1, account_flags::history), account_of(2),
                                      account_of(3, 0, 0, 7)}}));
  node.execute(Operation::create_transfers,
               multi_batch<Transfer>({{transfer_of(10, 1, 2, 5), transfer_of(11, 2, 1, 6),
                                       transfer_of(12, 2, 3, 7)}}));

  std::vector<std::vector<Transfer>> transfers = reply_batches<Transfer>(node.execute(
      Operation::get_account_transfers,
      multi_batch<AccountFilter>({{account_filter_of(1, 10)}, {account_filter_of(3, 10)},
                                  {account_filter_of(1, 0)}, {account_filter_of(2, 1)}})));
  REQUIRE(transfers.size() == 4);
  CHECK(transfers[0].size() == 2);
  REQUIRE(transfers[1].size() == 1);
  CHECK(transfers[1][0].id == 12);
  CHECK(transfers[2].empty());  // limit 0: invalid filter.
  REQUIRE(transfers[3].size() == 1);
  CHECK(transfers[3][0].id == 10);

  const std::vector<std::vector<AccountBalance>> balances = reply_batches<AccountBalance>(
      node.execute(Operation::get_account_balances,
                   multi_batch<AccountFilter>({{account_filter_of(2, 10)},
                                               {account_filter_of(1, 10)}})));
  REQUIRE(balances.size() == 2);
  CHECK(balances[0].empty());  // Account 2 has no history.
  REQUIRE(balances[1].size() == 2);
  CHECK(balances[1][1].credits_posted == 6);

  const std::vector<std::vector<Account>> accounts = reply_batches<Account>(
      node.execute(Operation::query_accounts,
                   multi_batch<QueryFilter>({{query_filter_of(10, 7)}, {query_filter_of(2)}})));
  REQUIRE(accounts.size() == 2);
  REQUIRE(accounts[0].size() == 1);
  CHECK(accounts[0][0].id == 3);
  CHECK(accounts[1].size() == 2);

  transfers = reply_batches<Transfer>(node.execute(
      Operation::query_transfers, multi_batch<QueryFilter>({{query_filter_of(1)},
                                                            {query_filter_of(10)}})));
  REQUIRE(transfers.size() == 2);
  CHECK(transfers[0].size() == 1);
  CHECK(transfers[1].size() == 3);

  transfers = reply_batches<Transfer>(
      node.execute(Operation::lookup_transfers, multi_batch<u128>({{12, 10}, {}, {99, 11}})));
  REQUIRE(transfers.size() == 3);
  REQUIRE(transfers[0].size() == 2);
  CHECK(transfers[0][0].id == 12);
  CHECK(transfers[1].empty());
  REQUIRE(transfers[2].size() == 1);
  CHECK(transfers[2][0].id == 11);
}

TEST_CASE("deprecated sparse create operations (138, 139): failures only, index per batch") {
  // Goal: §6.1: the sparse results list only failed events, with their index within their
  // batch, in index order (a rolled-back chain lists its earlier events too).
  Node node;
  std::vector<std::vector<CreateAccountErrorResult>> accounts =
      reply_batches<CreateAccountErrorResult>(node.execute(
          Operation::deprecated_create_accounts_sparse,
          multi_batch<Account>({{account_of(1), account_of(2, 0, 0, 0), account_of(3)},
                                {},
                                {account_of(4, account_flags::linked), account_of(1)}})));
  REQUIRE(accounts.size() == 3);
  REQUIRE(accounts[0].size() == 1);
  CHECK(accounts[0][0].index == 1);
  CHECK(accounts[0][0].status == CreateAccountStatus::code_must_not_be_zero);
  CHECK(accounts[1].empty());
  REQUIRE(accounts[2].size() == 2);
  CHECK(accounts[2][0].index == 0);
  CHECK(accounts[2][0].status == CreateAccountStatus::linked_event_failed);
  CHECK(accounts[2][1].index == 1);
  CHECK(accounts[2][1].status == CreateAccountStatus::exists);

  const std::vector<std::vector<CreateTransferErrorResult>> transfers =
      reply_batches<CreateTransferErrorResult>(node.execute(
          Operation::deprecated_create_transfers_sparse,
          multi_batch<Transfer>({{transfer_of(10, 1, 3, 5)},
                                 {transfer_of(11, 1, 99, 5), transfer_of(12, 3, 1, 5)}})));
  REQUIRE(transfers.size() == 2);
  CHECK(transfers[0].empty());
  REQUIRE(transfers[1].size() == 1);
  CHECK(transfers[1][0].index == 0);
  CHECK(transfers[1][0].status == CreateTransferStatus::credit_account_not_found);
}

TEST_CASE("deprecated unbatched operations (129..136): raw arrays in and out") {
  // Goal: §6.1/§8.1: no trailer in either direction; creates reply with sparse results.
  Node node;
  Body reply = node.execute(Operation::deprecated_create_accounts_unbatched,
                            raw<Account>({account_of(1, account_flags::history), account_of(2),
                                          account_of(0)}));
  std::vector<CreateAccountErrorResult> account_errors = reply_raw<CreateAccountErrorResult>(reply);
  REQUIRE(account_errors.size() == 1);
  CHECK(account_errors[0].index == 2);
  CHECK(account_errors[0].status == CreateAccountStatus::id_must_not_be_zero);

  const u64 p = node.timestamp;
  reply = node.execute(Operation::deprecated_create_transfers_unbatched,
                       raw<Transfer>({transfer_of(10, 1, 2, 5), transfer_of(11, 2, 1, 3)}));
  CHECK(reply.size == 0);  // No failures: an empty body.
  const std::vector<Transfer> transfers = reply_raw<Transfer>(
      node.execute(Operation::deprecated_lookup_transfers_unbatched, raw<u128>({11, 99, 10})));
  REQUIRE(transfers.size() == 2);
  CHECK(transfers[0].id == 11);
  CHECK(transfers[0].timestamp == p + 1 + 2);  // N = 2: P-1, P.
  CHECK(transfers[1].timestamp == p + 1 + 1);
  const std::vector<Account> accounts = reply_raw<Account>(
      node.execute(Operation::deprecated_lookup_accounts_unbatched, raw<u128>({2})));
  REQUIRE(accounts.size() == 1);
  CHECK(accounts[0].debits_posted == 3);

  CHECK(reply_raw<Transfer>(node.execute(Operation::deprecated_get_account_transfers_unbatched,
                                         raw<AccountFilter>({account_filter_of(1, 10)})))
            .size() == 2);
  CHECK(reply_raw<AccountBalance>(
            node.execute(Operation::deprecated_get_account_balances_unbatched,
                         raw<AccountFilter>({account_filter_of(1, 1)})))
            .size() == 1);
  CHECK(reply_raw<Account>(node.execute(Operation::deprecated_query_accounts_unbatched,
                                        raw<QueryFilter>({query_filter_of(10)})))
            .size() == 2);
  CHECK(reply_raw<Transfer>(node.execute(Operation::deprecated_query_transfers_unbatched,
                                         raw<QueryFilter>({query_filter_of(1)})))
            .size() == 1);
}

TEST_CASE("result limits: 8189 per multi-batch query, 8190 per unbatched query") {
  // Goal: TigerBeetle caps a query at result_max: (1,048,320 - 128) / 128 = 8189 results per
  // batch for multi-batch operations, 1,048,320 / 128 = 8190 for the raw unbatched ones (no
  // trailer: Operation.result_max in tigerbeetle.zig). With 8191 transfers a limit of 10,000
  // therefore returns 8189 and 8190 respectively, filling the reply body exactly.
  Config config = Config::testing();
  config.accounts_max = 1u << 14;
  Node node(config);
  std::vector<Account> accounts = {account_of(1, account_flags::history), account_of(2)};
  for (u32 index = 0; index < 8191 - 2; index += 1) accounts.push_back(account_of(100 + index));
  std::vector<CreateAccountResult> account_results(accounts.size());
  node.state_machine.create_accounts(accounts, node.timestamp + 1, account_results);
  node.timestamp += accounts.size() + 1;
  std::vector<Transfer> transfers;
  for (u32 index = 0; index < 8191; index += 1) {
    transfers.push_back(transfer_of(1 + index, 1, 2, 1));
  }
  std::vector<CreateTransferResult> results(transfers.size());
  node.state_machine.create_transfers(transfers, node.timestamp + 1, results);
  node.timestamp += transfers.size() + 1;
  REQUIRE(node.state_machine.ledger().transfer_count() == 8191);
  REQUIRE(node.state_machine.ledger().account_count() == 8191);

  const QueryFilter everything = query_filter_of(10'000);
  const AccountFilter account_one = account_filter_of(1, 10'000);
  Body reply = node.execute(Operation::query_transfers, multi_batch<QueryFilter>({{everything}}));
  CHECK(reply.size == message_body_size_max);
  CHECK(reply_batches<Transfer>(reply)[0].size() == 8189);
  reply = node.execute(Operation::query_accounts, multi_batch<QueryFilter>({{everything}}));
  CHECK(reply_batches<Account>(reply)[0].size() == 8189);
  reply = node.execute(Operation::get_account_transfers,
                       multi_batch<AccountFilter>({{account_one}}));
  CHECK(reply_batches<Transfer>(reply)[0].size() == 8189);
  reply = node.execute(Operation::get_account_balances,
                       multi_batch<AccountFilter>({{account_one}}));
  CHECK(reply_batches<AccountBalance>(reply)[0].size() == 8189);

  reply = node.execute(Operation::deprecated_query_transfers_unbatched,
                       raw<QueryFilter>({everything}));
  CHECK(reply.size == 8190 * 128);
  reply = node.execute(Operation::deprecated_query_accounts_unbatched,
                       raw<QueryFilter>({everything}));
  CHECK(reply.size == 8190 * 128);
  reply = node.execute(Operation::deprecated_get_account_transfers_unbatched,
                       raw<AccountFilter>({account_one}));
  CHECK(reply.size == 8190 * 128);
  const std::vector<Transfer> last_page = reply_raw<Transfer>(reply);
  CHECK(last_page.back().id == 8190);
  reply = node.execute(Operation::deprecated_get_account_balances_unbatched,
                       raw<AccountFilter>({account_one}));
  CHECK(reply.size == 8190 * 128);
}

TEST_CASE("unbatched create_transfers: one linked chain of 8190 posts") {
  // Goal: a raw deprecated_create_transfers_unbatched body holds up to 1,048,320 / 128 = 8190
  // events (one more than a multi-batch one). A single chain of 8190 posts is the largest
  // rollback there is (four undo entries per event); it must commit, and when its last event
  // fails it must roll back entirely. Run in a child process first, so that an assertion
  // reports a failure instead of ending the test run.
  const auto scenario = [](bool last_fails) {
    Node node;
    node.execute(Operation::create_accounts,
                 multi_batch<Account>({{account_of(1), account_of(2)}}));
    std::vector<Transfer> pending;
    for (u32 index = 0; index < 8190; index += 1) {
      pending.push_back(transfer_of(1 + index, 1, 2, 1, tf::pending));
    }
    std::vector<CreateTransferResult> results(pending.size());
    node.state_machine.create_transfers(pending, node.timestamp + 1, results);
    node.timestamp += pending.size() + 1;
    std::vector<Transfer> posts;
    for (u32 index = 0; index < 8190; index += 1) {
      posts.push_back(post_of(100'000 + index, 1 + index, tf::post_pending_transfer | tf::linked));
    }
    posts.back().flags = tf::post_pending_transfer;
    if (last_fails) posts.back().pending_id = 50'000;  // No such transfer.
    Body reply = node.execute(Operation::deprecated_create_transfers_unbatched,
                              raw<Transfer>(posts));
    return std::make_pair(reply, node.state_machine.ledger().transfer_count());
  };
  for (const bool last_fails : {false, true}) {
    CAPTURE(last_fails);
    const tally::base::death_test::ChildResult child =
        tally::base::death_test::run_in_child([&] { scenario(last_fails); });
    CHECK_MESSAGE(child.exited, child.stderr_text);
    if (!child.exited) continue;
    const auto [reply, transfer_count] = scenario(last_fails);
    const std::vector<CreateTransferErrorResult> errors =
        reply_raw<CreateTransferErrorResult>(reply);
    if (!last_fails) {
      CHECK(errors.empty());
      CHECK(transfer_count == 2 * 8190);
    } else {
      REQUIRE(errors.size() == 8190);
      CHECK(errors[0].status == CreateTransferStatus::linked_event_failed);
      CHECK(errors[8188].index == 8188);
      CHECK(errors[8189].status == CreateTransferStatus::pending_transfer_not_found);
      CHECK(transfer_count == 8190);
    }
  }
}

TEST_CASE("pulse through execute: expires due pending transfers") {
  // Goal: op 128 (the state machine's view of a VSR pulse) has an empty body and reply and
  // expires what is due at its timestamp.
  Node node;
  node.execute(Operation::create_accounts, multi_batch<Account>({{account_of(1), account_of(2)}}));
  Transfer pending = transfer_of(10, 1, 2, 5, tf::pending);
  pending.timeout = 1;
  node.execute(Operation::create_transfers, multi_batch<Transfer>({{pending}}));
  const u64 created = node.timestamp;
  CHECK_FALSE(node.state_machine.pulse_needed(created + second - 1));
  CHECK(node.state_machine.pulse_needed(created + second));
  // The next prepare is at created + 1 s: its expiry takes the last of its reserved timestamps.
  node.timestamp = created + second - 1 - StateMachine::pulse_expiries_max;
  const Body reply = node.execute(Operation::state_machine_pulse, Body());
  CHECK(reply.size == 0);
  CHECK(node.timestamp == created + second);
  CHECK(node.state_machine.ledger().change_events().expiry(0).timestamp == created + second);
  const std::vector<std::vector<Account>> accounts = reply_batches<Account>(
      node.execute(Operation::lookup_accounts, multi_batch<u128>({{1}})));
  CHECK(accounts[0][0].debits_pending == 0);
  CHECK_FALSE(node.state_machine.pulse_needed(created + 100 * second));
}

TEST_CASE("capacity_admits: refuses what could exceed a capacity, accepts what fits") {
  // Goal: each capacity that create operations consume, made the smallest in turn: accounts,
  // transfers, pending transfers, burned ids. A request is admitted only if it fits even if
  // every event succeeds (or, for burned ids, fails transiently), counting the `reserved` events
  // of requests admitted but not yet executed, over all its batches. Requests that create
  // nothing always fit. Filling a table exactly must execute cleanly. Change events never bind:
  // with every transfer pending and expired, the event table is exactly full.
  const auto accounts_body = [](u32 first, u32 count) {
    std::vector<Account> accounts;
    for (u32 index = 0; index < count; index += 1) accounts.push_back(account_of(first + index));
    return multi_batch<Account>({accounts});
  };
  // Pending transfers 1 -> 2 (account 1 has history) in two batches.
  const auto transfers_body = [](u128 first, u32 first_batch, u32 second_batch) {
    std::vector<std::vector<Transfer>> batches(2);
    for (u32 index = 0; index < first_batch + second_batch; index += 1) {
      batches[index < first_batch ? 0 : 1].push_back(
          transfer_of(first + index, 1, 2, 1, tf::pending));
    }
    return multi_batch<Transfer>(batches);
  };
  const auto config_with = [](u32 accounts, u32 transfers, u32 pending, u32 failed) {
    return Config{.accounts_max = accounts, .transfers_max = transfers,
                  .pending_transfers_max = pending, .failed_transfer_ids_max = failed};
  };
  const StateMachine::Reservation none = {.accounts = 0, .transfers = 0};
  const Body lookup = multi_batch<u128>({{1, 2, 3}});
  const Body no_accounts = multi_batch<Account>({{}});
  const Body no_transfers = multi_batch<Transfer>({{}, {}});
  const Body two_accounts =
      multi_batch<Account>({{account_of(1, account_flags::history), account_of(2)}});

  SUBCASE("accounts") {
    Node node(config_with(4, 64, 64, 64));
    const StateMachine& sm = node.state_machine;
    CHECK(sm.capacity_admits(Operation::create_accounts, accounts_body(100, 4).bytes(), none));
    CHECK_FALSE(sm.capacity_admits(Operation::create_accounts, accounts_body(100, 5).bytes(),
                                   none));
    // Duplicates count too: the admission is for the worst case.
    CHECK_FALSE(sm.capacity_admits(Operation::deprecated_create_accounts_unbatched,
                                   raw<Account>(std::vector<Account>(5, account_of(1))).bytes(),
                                   none));
    CHECK_FALSE(sm.capacity_admits(Operation::create_accounts, accounts_body(100, 3).bytes(),
                                   {.accounts = 2, .transfers = 0}));
    CHECK(sm.capacity_admits(Operation::create_accounts, accounts_body(100, 3).bytes(),
                             {.accounts = 1, .transfers = 60}));
    node.execute(Operation::create_accounts, accounts_body(100, 3));
    CHECK(sm.capacity_admits(Operation::create_accounts, accounts_body(200, 1).bytes(), none));
    CHECK_FALSE(sm.capacity_admits(Operation::create_accounts, accounts_body(200, 2).bytes(),
                                   none));
    node.execute(Operation::create_accounts, accounts_body(200, 1));
    CHECK(sm.ledger().account_count() == 4);
    CHECK_FALSE(sm.capacity_admits(Operation::create_accounts, accounts_body(300, 1).bytes(),
                                   none));
    CHECK(sm.capacity_admits(Operation::create_accounts, no_accounts.bytes(), none));
    CHECK(sm.capacity_admits(Operation::lookup_accounts, lookup.bytes(), none));
  }
  SUBCASE("transfers") {
    Node node(config_with(8, 6, 6, 64));
    const StateMachine& sm = node.state_machine;
    node.execute(Operation::create_accounts, two_accounts);
    CHECK(sm.capacity_admits(Operation::create_transfers, transfers_body(10, 3, 3).bytes(),
                             none));
    CHECK_FALSE(sm.capacity_admits(Operation::create_transfers,
                                   transfers_body(10, 3, 4).bytes(), none));
    CHECK_FALSE(sm.capacity_admits(Operation::deprecated_create_transfers_sparse,
                                   transfers_body(10, 7, 0).bytes(), none));
    CHECK_FALSE(sm.capacity_admits(Operation::create_transfers, transfers_body(10, 2, 0).bytes(),
                                   {.accounts = 0, .transfers = 5}));
    CHECK(sm.capacity_admits(Operation::create_transfers, transfers_body(10, 2, 0).bytes(),
                             {.accounts = 100, .transfers = 4}));
    node.execute(Operation::create_transfers, transfers_body(10, 2, 2));
    CHECK(sm.capacity_admits(Operation::create_transfers, transfers_body(20, 1, 1).bytes(),
                             none));
    CHECK_FALSE(sm.capacity_admits(Operation::create_transfers,
                                   transfers_body(20, 2, 1).bytes(), none));
    node.execute(Operation::create_transfers, transfers_body(20, 1, 1));
    CHECK(sm.ledger().transfer_count() == 6);
    CHECK_FALSE(sm.capacity_admits(Operation::create_transfers, transfers_body(30, 1, 0).bytes(),
                                   none));
    CHECK(sm.capacity_admits(Operation::create_transfers, no_transfers.bytes(), none));
    CHECK(sm.capacity_admits(Operation::create_accounts, accounts_body(100, 6).bytes(), none));
  }
  SUBCASE("pending transfers") {
    Node node(config_with(8, 64, 3, 64));
    const StateMachine& sm = node.state_machine;
    node.execute(Operation::create_accounts, two_accounts);
    CHECK(sm.capacity_admits(Operation::create_transfers, transfers_body(10, 3, 0).bytes(),
                             none));
    CHECK_FALSE(sm.capacity_admits(Operation::create_transfers,
                                   transfers_body(10, 2, 2).bytes(), none));
    node.execute(Operation::create_transfers, transfers_body(10, 1, 2));
    CHECK(sm.ledger().pending_count() == 3);
    // Any transfer could be pending: nothing more is admitted, not even a single-phase one.
    CHECK_FALSE(sm.capacity_admits(Operation::create_transfers,
                                   multi_batch<Transfer>({{transfer_of(40, 1, 2, 1)}}).bytes(),
                                   none));
  }
  SUBCASE("change events") {
    Node node(config_with(8, 6, 6, 64));
    const StateMachine& sm = node.state_machine;
    node.execute(Operation::create_accounts, two_accounts);
    std::vector<Transfer> expiring;
    for (u32 index = 0; index < 6; index += 1) {
      Transfer pending = transfer_of(10 + index, 1, 2, 1, tf::pending);
      pending.timeout = 1;
      expiring.push_back(pending);
    }
    CHECK(sm.capacity_admits(Operation::create_transfers,
                             multi_batch<Transfer>({expiring}).bytes(), none));
    node.execute(Operation::create_transfers, multi_batch<Transfer>({expiring}));
    node.timestamp += 2 * second;
    node.execute(Operation::state_machine_pulse, Body());
    CHECK(sm.ledger().transfer_count() == 6);
    CHECK(sm.ledger().change_events().expiry_count() == 6);
    CHECK(sm.ledger().change_events().row_count() == 12);
    CHECK(sm.ledger().change_events_free() == 0);
    CHECK_FALSE(sm.capacity_admits(Operation::create_transfers,
                                   transfers_body(30, 1, 0).bytes(), none));
    // Full, and every event is still readable.
    tally::ChangeEventsFilter filter{};
    filter.limit = 100;
    const Body reply =
        node.execute(Operation::get_change_events, raw<tally::ChangeEventsFilter>({filter}));
    CHECK(reply.size == 12 * sizeof(tally::ChangeEvent));
  }
  SUBCASE("burned ids") {
    Node node(config_with(8, 64, 64, 2));
    const StateMachine& sm = node.state_machine;
    node.execute(Operation::create_accounts, two_accounts);
    const Body failing =
        multi_batch<Transfer>({{transfer_of(10, 99, 2, 1)}, {transfer_of(11, 1, 98, 1)}});
    CHECK(sm.capacity_admits(Operation::create_transfers, failing.bytes(), none));
    CHECK_FALSE(sm.capacity_admits(Operation::create_transfers, transfers_body(20, 3, 0).bytes(),
                                   none));
    node.execute(Operation::create_transfers, failing);
    CHECK(sm.ledger().failed_count() == 2);
    CHECK_FALSE(sm.capacity_admits(Operation::create_transfers, transfers_body(20, 1, 0).bytes(),
                                   none));
    CHECK(sm.capacity_admits(Operation::lookup_transfers, lookup.bytes(), none));
  }
}

// ---------------------------------------------------------------------------------------------
// Determinism.

TEST_CASE("determinism: the same requests give the same reply bytes, with or without rollbacks") {
  // Goal: replicas must agree byte for byte. Nodes A and B execute the same workload; node C
  // also executes, between the workload's requests, linked chains that are rolled back (their
  // last event has ledger 0, which burns no id). Every reply of the workload and the final
  // ledgers must be identical on all three: a rolled-back chain leaves no trace.
  const std::vector<Request> requests = workload(0x5eed'0017, 600);
  Node a;
  Node b;
  Node c;
  u32 mismatches = 0;
  u32 first_mismatch = 0;
  u64 replies_bytes = 0;
  u32 rollbacks = 0;
  Random random(42);
  for (u32 index = 0; index < requests.size(); index += 1) {
    const Request& request = requests[index];
    const u64 events = StateMachine::timestamp_event_count(request.operation,
                                                           request.body.bytes());
    // Node C's extra chain fits between the previous request and this one (gap >= 100).
    if (request.gap >= 100 && random.chance(30)) {
      const u128 base = 900'000 + u128{index} * 10;
      Transfer pending = transfer_of(base, 30, 31, 1, tf::pending | tf::linked);
      pending.timeout = 1;
      Transfer broken = transfer_of(base + 3, 30, 31, 1);
      broken.ledger = 0;
      const Body chain = multi_batch<Transfer>({{
          pending,
          post_of(base + 1, base, tf::post_pending_transfer | tf::linked),
          transfer_of(base + 2, 30, 31, 5, tf::linked),
          broken,
      }});
      const Body accounts = multi_batch<Account>(
          {{account_of(500'000 + u128{index} * 2, account_flags::linked),
            account_of(500'001 + u128{index} * 2, account_flags::linked),
            account_of(1, account_flags::history | account_flags::closed)}});
      c.timestamp = a.timestamp;
      const Body reply = c.execute(random.chance(50) ? Operation::create_transfers
                                                     : Operation::create_accounts,
                                   random.chance(50) ? chain : accounts);
      (void)reply;
      rollbacks += 1;
      REQUIRE(c.timestamp < a.timestamp + request.gap + 1 + events);
    }
    a.timestamp += request.gap;
    b.timestamp += request.gap;
    c.timestamp = a.timestamp;
    const Body reply_a = a.execute(request.operation, request.body);
    const Body reply_b = b.execute(request.operation, request.body);
    const Body reply_c = c.execute(request.operation, request.body);
    REQUIRE(c.timestamp == a.timestamp);
    replies_bytes += reply_a.size;
    const bool same = reply_a.hex() == reply_b.hex() && reply_a.hex() == reply_c.hex();
    if (!same && mismatches == 0) first_mismatch = index;
    mismatches += same ? 0 : 1;
  }
  CHECK(mismatches == 0);
  CAPTURE(first_mismatch);
  CHECK(rollbacks > 50);
  CHECK(replies_bytes > 100'000);  // The workload produced real answers.

  for (const Node* node : {&b, &c}) {
    const tally::state_machine::Ledger& left = a.state_machine.ledger();
    const tally::state_machine::Ledger& right = node->state_machine.ledger();
    REQUIRE(left.account_count() == right.account_count());
    REQUIRE(left.transfer_count() == right.transfer_count());
    CHECK(std::memcmp(left.accounts_table().data(), right.accounts_table().data(),
                      left.account_count() * sizeof(Account)) == 0);
    CHECK(std::memcmp(left.transfers_table().data(), right.transfers_table().data(),
                      left.transfer_count() * sizeof(Transfer)) == 0);
    CHECK(left.pending_count() == right.pending_count());
    CHECK(left.change_events().row_count() == right.change_events().row_count());
    CHECK(left.failed_count() == right.failed_count());
    CHECK(left.expiry_count() == right.expiry_count());
  }
  // The workload exercised the interesting paths.
  const tally::state_machine::Ledger& ledger = a.state_machine.ledger();
  CAPTURE(ledger.transfer_count());
  CAPTURE(ledger.pending_count());
  CAPTURE(ledger.failed_count());
  CAPTURE(ledger.change_events().row_count());
  CHECK(ledger.transfer_count() > 300);
  CHECK(ledger.pending_count() > 50);
  CHECK(ledger.failed_count() > 50);
  CHECK(ledger.change_events().expiry_count() > 10);
}

}  // TEST_SUITE
