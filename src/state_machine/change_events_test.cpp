// Scenario tests of get_change_events (op 137, protocol §6.8) and of the change events behind
// it: one event per created transfer of each type and per expiry, with every field as
// TigerBeetle 0.17 fills it (src/state_machine.zig, get_change_event and account_event); the
// pulse's timestamps; the filter rules; the raw reply framing and its cap of 2730; rollback of a
// linked chain; balances beyond 64 bits; and timestamp order when imported transfers are older
// than an expiry recorded before them.
//
// Every request goes through execute() with the replica's timestamp rule (§7.1: P = P + 1 + N,
// N from timestamp_event_count()), except where a test sets a pulse's timestamp itself.
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "src/state_machine/doctest_u128.hpp"
#include "src/state_machine/state_machine.hpp"
#include "tally/multi_batch.hpp"
#include "tally/records.hpp"

namespace {

using tally::Account;
using tally::AccountBalance;
using tally::AccountFilter;
using tally::ChangeEvent;
using tally::ChangeEventsFilter;
using tally::ChangeEventType;
using tally::CreateAccountResult;
using tally::CreateAccountStatus;
using tally::CreateTransferResult;
using tally::CreateTransferStatus;
using tally::message_body_size_max;
using tally::MultiBatchDecoder;
using tally::MultiBatchEncodeError;
using tally::MultiBatchEncoder;
using tally::MultiBatchError;
using tally::Operation;
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

constexpr u64 second = 1'000'000'000;
constexpr u64 timestamp_max = (u64{1} << 63) - 1;
constexpr u32 reply_events_max = 2730;  // message_body_size_max / 384 (§8.5).
constexpr u32 pulse_reserved = 8190;    // TigerBeetle's batch_max.create_transfers.
static_assert(StateMachine::pulse_expiries_max == pulse_reserved);

Account account_of(u128 id, u16 flags = 0) {
  Account account{};
  account.id = id;
  account.user_data_128 = id * 1000 + 128;
  account.user_data_64 = static_cast<u64>(id * 1000 + 64);
  account.user_data_32 = static_cast<u32>(id * 1000 + 32);
  account.ledger = 1;
  account.code = static_cast<u16>(id + 10);
  account.flags = flags;
  return account;
}

Transfer transfer_of(u128 id, u128 debit, u128 credit, u128 amount, u16 flags = 0) {
  Transfer transfer{};
  transfer.id = id;
  transfer.debit_account_id = debit;
  transfer.credit_account_id = credit;
  transfer.amount = amount;
  transfer.ledger = 1;
  transfer.code = 7;
  transfer.flags = flags;
  return transfer;
}

Transfer pending_of(u128 id, u128 debit, u128 credit, u128 amount, u32 timeout, u16 flags = 0) {
  Transfer transfer = transfer_of(id, debit, credit, amount, static_cast<u16>(tf::pending | flags));
  transfer.timeout = timeout;
  return transfer;
}

// A post or void that leaves the optional fields to the pending transfer.
Transfer resolve_of(u128 id, u128 pending_id, u16 flags, u128 amount) {
  Transfer transfer = transfer_of(id, 0, 0, amount, flags);
  transfer.pending_id = pending_id;
  transfer.ledger = 0;
  transfer.code = 0;
  return transfer;
}

ChangeEventsFilter filter_of(u64 timestamp_min, u64 timestamp_max_filter, u32 limit) {
  ChangeEventsFilter filter{};
  filter.timestamp_min = timestamp_min;
  filter.timestamp_max = timestamp_max_filter;
  filter.limit = limit;
  return filter;
}

const ChangeEventsFilter everything = filter_of(0, 0, reply_events_max);

bool reserved_zero(const ChangeEvent& event) {
  for (const u8 byte : event.reserved) {
    if (byte != 0) return false;
  }
  return true;
}

// One state machine fed whole requests, as the replica feeds it.
class Harness {
 public:
  explicit Harness(const Config& config = Config::testing())
      : body_(message_body_size_max / sizeof(u128)), reply_(message_body_size_max / sizeof(u128)) {
    state_machine.init(config);
  }

  u32 execute(Operation operation, std::span<const std::byte> body) {
    timestamp += 1 + StateMachine::timestamp_event_count(operation, body);
    return state_machine.execute(operation, timestamp, body, reply_bytes());
  }

  void accounts(const std::vector<Account>& events) {
    const u32 size = execute(Operation::create_accounts, multi_batch(events));
    for (const CreateAccountResult& result : decode<CreateAccountResult>(size)) {
      REQUIRE(result.status == CreateAccountStatus::created);
    }
  }

  std::vector<CreateTransferResult> transfers(const std::vector<Transfer>& events) {
    return decode<CreateTransferResult>(execute(Operation::create_transfers, multi_batch(events)));
  }

  // Transfers that must all be created; returns the first one's timestamp.
  u64 transfers_ok(const std::vector<Transfer>& events) {
    const std::vector<CreateTransferResult> results = transfers(events);
    for (const CreateTransferResult& result : results) {
      CHECK_MESSAGE(result.status == CreateTransferStatus::created, tally::name(result.status));
    }
    return results.empty() ? 0 : results[0].timestamp;
  }

  // A pulse prepared at `prepare` (the replica's P), which must leave room for its reservation.
  u32 pulse_at(u64 prepare) {
    REQUIRE(prepare - pulse_reserved > timestamp);
    const u32 expiries_before = state_machine.ledger().change_events().expiry_count();
    timestamp = prepare;
    REQUIRE(state_machine.execute(Operation::state_machine_pulse, prepare, {}, reply_bytes()) == 0);
    return state_machine.ledger().change_events().expiry_count() - expiries_before;
  }

  std::vector<ChangeEvent> events(const ChangeEventsFilter& filter) {
    const u32 size = execute(Operation::get_change_events,
                             std::as_bytes(std::span<const ChangeEventsFilter>(&filter, 1)));
    REQUIRE(size % sizeof(ChangeEvent) == 0);
    std::vector<ChangeEvent> results(size / sizeof(ChangeEvent));
    if (size > 0) std::memcpy(results.data(), reply_.data(), size);
    return results;
  }

  std::vector<AccountBalance> balances(u128 account_id) {
    AccountFilter filter{};
    filter.account_id = account_id;
    filter.limit = 8189;
    filter.flags = tally::account_filter_flags::debits | tally::account_filter_flags::credits;
    const std::vector<AccountFilter> filters = {filter};
    return decode<AccountBalance>(execute(Operation::get_account_balances, multi_batch(filters)));
  }

  Account account(u128 id) const {
    const u128 ids[1] = {id};
    Account found[1] = {};
    REQUIRE(state_machine.lookup_accounts(ids, found) == 1);
    return found[0];
  }

  StateMachine state_machine;
  u64 timestamp = 1'700'000'000'000'000'000;  // The latest prepare timestamp.

 private:
  std::span<std::byte> reply_bytes() { return std::as_writable_bytes(std::span(reply_)); }

  template <typename T>
  std::span<const std::byte> multi_batch(const std::vector<T>& events) {
    MultiBatchEncoder encoder(std::as_writable_bytes(std::span(body_)), sizeof(T));
    REQUIRE(encoder.batch_add(std::as_bytes(std::span(events))) == MultiBatchEncodeError::none);
    REQUIRE(encoder.finish() == MultiBatchEncodeError::none);
    return encoder.body();
  }

  template <typename Result>
  std::vector<Result> decode(u32 size) {
    MultiBatchDecoder decoder;
    REQUIRE(decoder.decode(reply_bytes().first(size), sizeof(Result)) == MultiBatchError::none);
    std::vector<Result> results;
    for (const std::span<const std::byte> batch : decoder) {
      const u64 offset = results.size();
      results.resize(offset + batch.size() / sizeof(Result));
      if (!batch.empty()) std::memcpy(&results[offset], batch.data(), batch.size());
    }
    return results;
  }

  std::vector<u128> body_;
  std::vector<u128> reply_;
};

// The account half of an event, for comparing with the account record.
struct Side {
  u128 id;
  u128 debits_pending;
  u128 debits_posted;
  u128 credits_pending;
  u128 credits_posted;
  u16 flags;
};

void check_debit(const ChangeEvent& event, const Account& account, const Side& side) {
  CHECK(event.debit_account_id == side.id);
  CHECK(event.debit_account_debits_pending == side.debits_pending);
  CHECK(event.debit_account_debits_posted == side.debits_posted);
  CHECK(event.debit_account_credits_pending == side.credits_pending);
  CHECK(event.debit_account_credits_posted == side.credits_posted);
  CHECK(event.debit_account_flags == side.flags);
  CHECK(event.debit_account_user_data_128 == account.user_data_128);
  CHECK(event.debit_account_user_data_64 == account.user_data_64);
  CHECK(event.debit_account_user_data_32 == account.user_data_32);
  CHECK(event.debit_account_code == account.code);
  CHECK(event.debit_account_timestamp == account.timestamp);
}

void check_credit(const ChangeEvent& event, const Account& account, const Side& side) {
  CHECK(event.credit_account_id == side.id);
  CHECK(event.credit_account_debits_pending == side.debits_pending);
  CHECK(event.credit_account_debits_posted == side.debits_posted);
  CHECK(event.credit_account_credits_pending == side.credits_pending);
  CHECK(event.credit_account_credits_posted == side.credits_posted);
  CHECK(event.credit_account_flags == side.flags);
  CHECK(event.credit_account_user_data_128 == account.user_data_128);
  CHECK(event.credit_account_user_data_64 == account.user_data_64);
  CHECK(event.credit_account_user_data_32 == account.user_data_32);
  CHECK(event.credit_account_code == account.code);
  CHECK(event.credit_account_timestamp == account.timestamp);
}

}  // namespace

TEST_SUITE("state_machine change events") {

TEST_CASE("change events: a single-phase transfer, every field") {
  // Goal: every field of §6.8 for the simplest event: the transfer's own fields, both accounts'
  // immutable fields from their records, their balances and flags after the transfer, the event
  // timestamp equal to the transfer's, reserved bytes zero. Nothing else is recorded: a failed
  // transfer and an account creation make no event.
  Harness harness;
  harness.accounts({account_of(1, account_flags::history), account_of(2)});
  CHECK(harness.events(everything).empty());
  Transfer transfer = transfer_of(100, 1, 2, 7);
  transfer.user_data_128 = 11;
  transfer.user_data_64 = 12;
  transfer.user_data_32 = 13;
  const u64 t = harness.transfers_ok({transfer});
  CHECK(harness.transfers({transfer_of(101, 1, 99, 5)})[0].status ==
        CreateTransferStatus::credit_account_not_found);

  const std::vector<ChangeEvent> events = harness.events(everything);
  REQUIRE(events.size() == 1);
  const ChangeEvent& event = events[0];
  CHECK(event.type == ChangeEventType::single_phase);
  CHECK(event.transfer_id == 100);
  CHECK(event.transfer_amount == 7);
  CHECK(event.transfer_pending_id == 0);
  CHECK(event.transfer_user_data_128 == 11);
  CHECK(event.transfer_user_data_64 == 12);
  CHECK(event.transfer_user_data_32 == 13);
  CHECK(event.transfer_timeout == 0);
  CHECK(event.transfer_code == 7);
  CHECK(event.transfer_flags == 0);
  CHECK(event.ledger == 1);
  CHECK(event.timestamp == t);
  CHECK(event.transfer_timestamp == t);
  CHECK(reserved_zero(event));
  check_debit(event, harness.account(1), {1, 0, 7, 0, 0, account_flags::history});
  check_credit(event, harness.account(2), {2, 0, 0, 0, 7, 0});
}

TEST_CASE("change events: pending then a partial post") {
  // Goal: a pending transfer is two_phase_pending with its pending balances; its post is
  // two_phase_posted and shows the posting transfer as stored: its id, the amount actually
  // posted (not the pending amount, not the 2^128 - 1 of "post everything"), pending_id, the
  // user data inherited from the pending transfer, timeout 0 and the post's flags.
  Harness harness;
  harness.accounts({account_of(1), account_of(2)});
  Transfer pending = pending_of(100, 1, 2, 10, 0);
  pending.user_data_64 = 64;
  const u64 t_pending = harness.transfers_ok({pending});
  const u64 t_post = harness.transfers_ok({resolve_of(101, 100, tf::post_pending_transfer, 4)});

  const std::vector<ChangeEvent> events = harness.events(everything);
  REQUIRE(events.size() == 2);
  CHECK(events[0].type == ChangeEventType::two_phase_pending);
  CHECK(events[0].transfer_id == 100);
  CHECK(events[0].transfer_amount == 10);
  CHECK(events[0].transfer_flags == tf::pending);
  CHECK(events[0].timestamp == t_pending);
  check_debit(events[0], harness.account(1), {1, 10, 0, 0, 0, 0});
  check_credit(events[0], harness.account(2), {2, 0, 0, 10, 0, 0});

  const ChangeEvent& post = events[1];
  CHECK(post.type == ChangeEventType::two_phase_posted);
  CHECK(post.transfer_id == 101);
  CHECK(post.transfer_amount == 4);
  CHECK(post.transfer_pending_id == 100);
  CHECK(post.transfer_user_data_64 == 64);
  CHECK(post.transfer_timeout == 0);
  CHECK(post.transfer_code == 7);
  CHECK(post.transfer_flags == tf::post_pending_transfer);
  CHECK(post.ledger == 1);
  CHECK(post.timestamp == t_post);
  CHECK(post.transfer_timestamp == t_post);
  check_debit(post, harness.account(1), {1, 0, 4, 0, 0, 0});
  check_credit(post, harness.account(2), {2, 0, 0, 0, 4, 0});
}

TEST_CASE("change events: account flags are those right after each event") {
  // Goal: `closed` is the one account flag that changes, and each event keeps it as it was
  // then: a closing pending transfer shows both accounts closed, its void shows them open
  // again with the voided amount; the accounts' other flags come through unchanged.
  Harness harness;
  harness.accounts({account_of(1, account_flags::history), account_of(2)});
  harness.transfers_ok({pending_of(100, 1, 2, 6, 0, tf::closing_debit | tf::closing_credit)});
  CHECK(harness.account(1).flags == (account_flags::history | account_flags::closed));
  harness.transfers_ok({resolve_of(101, 100, tf::void_pending_transfer, 0)});
  CHECK(harness.account(1).flags == account_flags::history);

  const std::vector<ChangeEvent> events = harness.events(everything);
  REQUIRE(events.size() == 2);
  CHECK(events[0].debit_account_flags == (account_flags::history | account_flags::closed));
  CHECK(events[0].credit_account_flags == account_flags::closed);
  CHECK(events[1].type == ChangeEventType::two_phase_voided);
  CHECK(events[1].transfer_amount == 6);
  CHECK(events[1].transfer_pending_id == 100);
  CHECK(events[1].transfer_flags == tf::void_pending_transfer);
  check_debit(events[1], harness.account(1), {1, 0, 0, 0, 0, account_flags::history});
  check_credit(events[1], harness.account(2), {2, 0, 0, 0, 0, 0});
}

TEST_CASE("change events: an expiry shows the pending transfer at the expiry's timestamp") {
  // Goal: as TigerBeetle's get_change_event for `expired`: the transfer is the pending one
  // (its id, amount, timeout and flags; pending_id 0 since the pending transfer has none), its
  // timestamp is the pending transfer's, the event's timestamp is the expiry's own, and the
  // accounts are as the expiry left them (pending released, closed cleared).
  Harness harness;
  harness.accounts({account_of(1), account_of(2)});
  const u64 t = harness.transfers_ok({pending_of(200, 1, 2, 9, 1, tf::closing_credit)});
  const u64 prepare = t + 5 * second;
  CHECK(harness.pulse_at(prepare) == 1);

  const std::vector<ChangeEvent> events = harness.events(everything);
  REQUIRE(events.size() == 2);
  const ChangeEvent& expiry = events[1];
  CHECK(expiry.type == ChangeEventType::two_phase_expired);
  CHECK(expiry.transfer_id == 200);
  CHECK(expiry.transfer_amount == 9);
  CHECK(expiry.transfer_pending_id == 0);
  CHECK(expiry.transfer_timeout == 1);
  CHECK(expiry.transfer_flags == (tf::pending | tf::closing_credit));
  CHECK(expiry.transfer_timestamp == t);
  CHECK(expiry.timestamp == prepare);  // One expiry: the last reserved timestamp, P itself.
  CHECK(reserved_zero(expiry));
  check_debit(expiry, harness.account(1), {1, 0, 0, 0, 0, 0});
  check_credit(expiry, harness.account(2), {2, 0, 0, 0, 0, 0});
  CHECK(events[0].credit_account_flags == account_flags::closed);
  // Expired once: a later pulse finds nothing.
  CHECK(harness.pulse_at(prepare + 10 * second) == 0);
  CHECK(harness.events(everything).size() == 2);
}

TEST_CASE("change events: a pulse expires at most 8190 and numbers them up to its timestamp") {
  // Goal: the pulse reserves 8190 timestamps (timestamp_event_count) and expires at most 8190
  // due transfers, earliest expiry first; when it expires n, the i-th gets P - n + 1 + i. While
  // more are due, pulse_needed() stays true and the next pulse takes the rest.
  Harness harness;
  harness.accounts({account_of(1), account_of(2)});
  CHECK(StateMachine::timestamp_event_count(Operation::state_machine_pulse, {}) ==
        pulse_reserved);
  constexpr u32 count = pulse_reserved + 5;
  std::vector<Transfer> first_batch;
  std::vector<Transfer> second_batch;
  for (u32 index = 0; index < count; index += 1) {
    // The first batch expires a second later than the second: the heap's order, not the
    // creation order, decides which 8190 go first.
    Transfer pending = pending_of(1000 + index, 1, 2, 1, index < 8000 ? 2 : 1);
    (index < 8000 ? first_batch : second_batch).push_back(pending);
  }
  const u64 t_first = harness.transfers_ok(first_batch);
  const u64 t_second = harness.transfers_ok(second_batch);
  REQUIRE(t_second == t_first + 8000 + 1);  // One timestamp for the prepare in between.

  const u64 prepare = t_first + 10 * second;
  CHECK(harness.pulse_at(prepare) == pulse_reserved);
  CHECK(harness.state_machine.pulse_needed(prepare));
  const tally::state_machine::ChangeEventTable& table =
      harness.state_machine.ledger().change_events();
  REQUIRE(table.expiry_count() == pulse_reserved);
  // Expiry order: the second batch (due at +1 s) first, then the first batch (+2 s) by age.
  for (u32 index = 0; index < pulse_reserved; index += 1) {
    const u32 transfer_row = index < 195 ? 8000 + index : index - 195;
    CHECK(table.expiry(index).transfer_row == transfer_row);
    CHECK(table.expiry(index).timestamp == prepare - pulse_reserved + 1 + index);
  }
  CHECK(harness.account(1).debits_pending == 5);

  const u64 prepare_next = prepare + 1 + pulse_reserved;
  CHECK(harness.pulse_at(prepare_next) == 5);
  CHECK_FALSE(harness.state_machine.pulse_needed(prepare_next + 100 * second));
  CHECK(harness.account(1).debits_pending == 0);
  for (u32 index = 0; index < 5; index += 1) {
    CHECK(table.expiry(pulse_reserved + index).timestamp == prepare_next - 5 + 1 + index);
  }

  // The same through get_change_events: the last page holds the tail of the second pulse.
  const std::vector<ChangeEvent> tail = harness.events(filter_of(prepare + 1, 0, 100));
  REQUIRE(tail.size() == 5);
  for (u32 index = 0; index < 5; index += 1) {
    CHECK(tail[index].type == ChangeEventType::two_phase_expired);
    CHECK(tail[index].timestamp == prepare_next - 4 + index);
    CHECK(tail[index].transfer_id == 1000 + 7995 + index);
  }
  const std::vector<ChangeEvent> head =
      harness.events(filter_of(prepare - pulse_reserved + 1, prepare, 2));
  REQUIRE(head.size() == 2);
  CHECK(head[0].transfer_id == 1000 + 8000);
  CHECK(head[0].timestamp == prepare - pulse_reserved + 1);
  CHECK(head[1].transfer_id == 1000 + 8001);
}

TEST_CASE("change events: filter bounds are inclusive and the results ascend") {
  // Goal: [timestamp_min or 1, timestamp_max or 2^63 - 1], inclusive at both ends, ascending,
  // truncated to the limit from the low end.
  Harness harness;
  harness.accounts({account_of(1), account_of(2)});
  std::vector<Transfer> batch;
  for (u32 index = 0; index < 10; index += 1) batch.push_back(transfer_of(100 + index, 1, 2, 1));
  const u64 t = harness.transfers_ok(batch);
  const auto ids = [&](const ChangeEventsFilter& filter) {
    std::string text;
    for (const ChangeEvent& event : harness.events(filter)) {
      text += std::to_string(static_cast<u64>(event.transfer_id - 100));
    }
    return text;
  };
  CHECK(ids(filter_of(0, 0, 100)) == "0123456789");
  CHECK(ids(filter_of(t + 3, t + 6, 100)) == "3456");
  CHECK(ids(filter_of(t + 3, 0, 100)) == "3456789");
  CHECK(ids(filter_of(0, t + 6, 100)) == "0123456");
  CHECK(ids(filter_of(t + 5, t + 5, 100)) == "5");
  CHECK(ids(filter_of(t + 3, t + 6, 2)) == "34");
  CHECK(ids(filter_of(t + 10, 0, 100)).empty());
  CHECK(ids(filter_of(1, t - 1, 100)).empty());
  CHECK(ids(filter_of(1, timestamp_max, 3)) == "012");
}

TEST_CASE("change events: every invalid filter gives an empty result") {
  // Goal: TigerBeetle's rule (get_scan_from_change_events_filter): each filter below is valid
  // except for one rule and returns nothing, where the valid one returns every event.
  Harness harness;
  harness.accounts({account_of(1), account_of(2)});
  const u64 t = harness.transfers_ok({transfer_of(100, 1, 2, 1), transfer_of(101, 1, 2, 1)});
  const ChangeEventsFilter valid = filter_of(t, t + 1, 10);
  REQUIRE(harness.events(valid).size() == 2);

  ChangeEventsFilter filter = valid;
  filter.limit = 0;
  CHECK(harness.events(filter).empty());
  for (const u32 offset : {0u, 21u, 43u}) {
    filter = valid;
    filter.reserved[offset] = 1;
    CHECK(harness.events(filter).empty());
  }
  CHECK(harness.events(filter_of(t + 1, t, 10)).empty());  // min > max
  CHECK(harness.events(filter_of(timestamp_max + 1, 0, 10)).empty());
  CHECK(harness.events(filter_of(0, timestamp_max + 1, 10)).empty());
  CHECK(harness.events(filter_of(~u64{0}, ~u64{0}, 10)).empty());
  // timestamp_max 0 means unbounded, so any valid minimum goes with it.
  CHECK(harness.events(filter_of(t + 1, 0, 10)).size() == 1);
}

TEST_CASE("change events: execute answers a raw array of at most 2730 events") {
  // Goal: op 137 is not multi-batch: one 64-byte filter in, a plain array of 384-byte events
  // out (no trailer), at most min(limit, 2730); the bytes equal the per-call entry point's.
  Harness harness(Config{.accounts_max = 8, .transfers_max = 4096, .pending_transfers_max = 8,
                         .failed_transfer_ids_max = 8, .prefault = false});
  harness.accounts({account_of(1), account_of(2)});
  std::vector<Transfer> batch;
  for (u32 index = 0; index < 3000; index += 1) batch.push_back(transfer_of(1 + index, 1, 2, 1));
  harness.transfers_ok(batch);

  CHECK(harness.events(filter_of(0, 0, ~u32{0})).size() == reply_events_max);
  CHECK(harness.events(filter_of(0, 0, reply_events_max + 1)).size() == reply_events_max);
  const std::vector<ChangeEvent> five = harness.events(filter_of(0, 0, 5));
  REQUIRE(five.size() == 5);
  std::vector<ChangeEvent> direct(5);
  REQUIRE(harness.state_machine.get_change_events(filter_of(0, 0, 5), direct) == 5);
  CHECK(std::memcmp(five.data(), direct.data(), 5 * sizeof(ChangeEvent)) == 0);
  // A span shorter than the limit caps the answer too.
  std::vector<ChangeEvent> two(2);
  CHECK(harness.state_machine.get_change_events(filter_of(0, 0, 5), two) == 2);
}

TEST_CASE("change events: a rolled-back linked chain leaves no event") {
  // Goal: the events of a chain that fails are undone with it; the next transfer's event
  // follows the earlier ones as if the chain never ran, and every answer is byte for byte
  // what a state machine that never saw the chain gives.
  Harness harness;
  Harness twin;
  for (Harness* h : {&harness, &twin}) {
    h->accounts({account_of(1, account_flags::history), account_of(2)});
    h->transfers_ok({pending_of(100, 1, 2, 5, 1)});
    CHECK(h->pulse_at(h->timestamp + 2 * second + pulse_reserved) == 1);
  }
  Transfer broken = transfer_of(204, 1, 2, 1);
  broken.ledger = 0;
  const std::vector<CreateTransferResult> results = harness.transfers({
      pending_of(201, 1, 2, 3, 0, tf::linked | tf::closing_debit),
      resolve_of(202, 201, tf::void_pending_transfer | tf::linked, 0),
      transfer_of(203, 1, 2, u128{1} << 100, tf::linked),
      broken,
  });
  CHECK(results[0].status == CreateTransferStatus::linked_event_failed);
  CHECK(results[3].status == CreateTransferStatus::ledger_must_not_be_zero);
  const tally::state_machine::ChangeEventTable& table =
      harness.state_machine.ledger().change_events();
  CHECK(table.row_count() == 2);
  CHECK(table.high_count() == 0);
  twin.timestamp = harness.timestamp;

  for (Harness* h : {&harness, &twin}) h->transfers_ok({transfer_of(300, 1, 2, 8)});
  const std::vector<ChangeEvent> events = harness.events(everything);
  const std::vector<ChangeEvent> expected = twin.events(everything);
  REQUIRE(events.size() == 3);
  REQUIRE(expected.size() == 3);
  CHECK(std::memcmp(events.data(), expected.data(), 3 * sizeof(ChangeEvent)) == 0);
  CHECK(events[2].transfer_id == 300);
  CHECK(events[2].debit_account_debits_posted == 8);
  CHECK(harness.balances(1).size() == 2);
  CHECK(harness.state_machine.ledger().digest() == twin.state_machine.ledger().digest());
}

TEST_CASE("change events: balances of 2^64 and more come back exactly") {
  // Goal: rows keep the low 64 bits of each balance and put the high halves aside only when
  // needed; both kinds of row, interleaved, read back exactly, through get_change_events and
  // get_account_balances alike.
  Harness harness;
  harness.accounts({account_of(1, account_flags::history), account_of(2), account_of(3)});
  const u128 big = (u128{1} << 64) + 3;
  const u128 huge = (u128{1} << 127) + 5;
  harness.transfers_ok({transfer_of(100, 1, 3, 2)});     // Small.
  harness.transfers_ok({transfer_of(101, 1, 2, big)});   // Both sides past 2^64.
  harness.transfers_ok({transfer_of(102, 3, 1, 1)});     // Account 1 still has its big debit.
  harness.transfers_ok({transfer_of(103, 2, 3, huge)});  // Account 1 not involved.
  const tally::state_machine::ChangeEventTable& table =
      harness.state_machine.ledger().change_events();
  CHECK(table.high_count() == 3);

  const std::vector<ChangeEvent> events = harness.events(everything);
  REQUIRE(events.size() == 4);
  CHECK(events[0].debit_account_debits_posted == 2);
  CHECK(events[1].debit_account_debits_posted == big + 2);
  CHECK(events[1].credit_account_credits_posted == big);
  CHECK(events[2].credit_account_credits_posted == 1);
  CHECK(events[2].credit_account_debits_posted == big + 2);
  CHECK(events[2].debit_account_credits_posted == 2);
  CHECK(events[3].debit_account_debits_posted == huge);
  CHECK(events[3].debit_account_credits_posted == big);
  CHECK(events[3].credit_account_credits_posted == huge + 2);

  const std::vector<AccountBalance> balances = harness.balances(1);
  REQUIRE(balances.size() == 3);
  CHECK(balances[0].debits_posted == 2);
  CHECK(balances[1].debits_posted == big + 2);
  CHECK(balances[2].debits_posted == big + 2);
  CHECK(balances[2].credits_posted == 1);
  CHECK(balances[2].timestamp == events[2].timestamp);
}

TEST_CASE("change events: imported transfers older than an expiry come before it") {
  // Goal: TigerBeetle checks an imported timestamp against transfers and accounts only, so an
  // imported transfer may be older than an expiry recorded before it, or share its timestamp.
  // Events come in timestamp order all the same; on a tie the expiry, which happened first,
  // comes first. get_account_balances still finds each transfer's balances.
  Harness harness;
  harness.accounts({account_of(1, account_flags::history), account_of(2)});
  const u64 t = harness.transfers_ok({pending_of(100, 1, 2, 5, 1)});
  const u64 expiry = t + 3 * second;
  CHECK(harness.pulse_at(expiry) == 1);
  harness.timestamp += 10;  // Room below the import batch's timestamps.

  Transfer older = transfer_of(101, 1, 2, 7, tf::imported);
  older.timestamp = expiry - 1;
  Transfer tied = transfer_of(102, 1, 2, 11, tf::imported);
  tied.timestamp = expiry;
  harness.transfers_ok({older, tied});
  harness.transfers_ok({transfer_of(103, 1, 2, 13)});

  const std::vector<ChangeEvent> events = harness.events(everything);
  REQUIRE(events.size() == 5);
  CHECK(events[0].transfer_id == 100);
  CHECK(events[1].transfer_id == 101);
  CHECK(events[1].timestamp == expiry - 1);
  // Recorded after the expiry: its balances are those it left, the expiry's release included.
  CHECK(events[1].debit_account_debits_pending == 0);
  CHECK(events[1].debit_account_debits_posted == 7);
  CHECK(events[2].type == ChangeEventType::two_phase_expired);
  CHECK(events[2].timestamp == expiry);
  CHECK(events[2].debit_account_debits_pending == 0);
  CHECK(events[2].debit_account_debits_posted == 0);
  CHECK(events[3].transfer_id == 102);
  CHECK(events[3].timestamp == expiry);
  CHECK(events[4].transfer_id == 103);
  CHECK(events[4].debit_account_debits_posted == 31);
  const std::vector<ChangeEvent> at_expiry = harness.events(filter_of(expiry, expiry, 10));
  REQUIRE(at_expiry.size() == 2);
  CHECK(at_expiry[0].type == ChangeEventType::two_phase_expired);
  CHECK(at_expiry[1].transfer_id == 102);

  const std::vector<AccountBalance> balances = harness.balances(1);
  REQUIRE(balances.size() == 4);
  CHECK(balances[1].debits_posted == 7);
  CHECK(balances[2].debits_posted == 18);
  CHECK(balances[3].debits_posted == 31);
}

}  // TEST_SUITE
