// Lookups and queries (protocol §7.7-§7.10, §6.8). An invalid filter yields an empty result,
// never an error. Results are in ascending timestamp order, or descending with `reversed`, and at
// most min(limit, result_max) long.
//
// Stored rows are in timestamp order, so a timestamp range is a row range, found by binary search,
// and every index below (per-account lists, per-value lists) is a list of rows in that same order.
// A query walks the shortest list that constrains it and checks the remaining fields on the
// record: the result is exact whatever combination of fields is given.
#include <algorithm>
#include <cstring>
#include <optional>

#include "src/state_machine/state_machine.hpp"

namespace tally::state_machine {

namespace {

template <std::size_t size>
bool bytes_zero(const u8 (&bytes)[size]) {
  for (u8 byte : bytes) {
    if (byte != 0) return false;
  }
  return true;
}

// The checks common to both filter kinds.
bool timestamps_and_limit_valid(u64 timestamp_min, u64 timestamp_max_filter, u32 limit) {
  if (timestamp_min > timestamp_max) return false;
  if (timestamp_max_filter > timestamp_max) return false;
  if (timestamp_max_filter != 0 && timestamp_min > timestamp_max_filter) return false;
  return limit != 0;
}

bool account_filter_valid(const AccountFilter& filter) {
  if (filter.account_id == 0 || filter.account_id == u128_max) return false;
  if (!timestamps_and_limit_valid(filter.timestamp_min, filter.timestamp_max, filter.limit)) {
    return false;
  }
  if ((filter.flags & (account_filter_flags::debits | account_filter_flags::credits)) == 0) {
    return false;
  }
  if (filter.flags & account_filter_flags::reserved_mask) return false;
  return bytes_zero(filter.reserved);
}

// As TigerBeetle's get_scan_from_change_events_filter: the timestamp rules and the limit of the
// other filters, reserved bytes zero; there are no flags.
bool change_events_filter_valid(const ChangeEventsFilter& filter) {
  if (!timestamps_and_limit_valid(filter.timestamp_min, filter.timestamp_max, filter.limit)) {
    return false;
  }
  return bytes_zero(filter.reserved);
}

ChangeEventType change_event_type_of(u16 transfer_flags) {
  if (transfer_flags & transfer_flags::pending) return ChangeEventType::two_phase_pending;
  if (transfer_flags & transfer_flags::post_pending_transfer) {
    return ChangeEventType::two_phase_posted;
  }
  if (transfer_flags & transfer_flags::void_pending_transfer) {
    return ChangeEventType::two_phase_voided;
  }
  return ChangeEventType::single_phase;
}

// An account's flags after an event: `closed` as it was then, the others never change.
u16 account_flags_after(const Account& account, bool closed) {
  const u16 flags = static_cast<u16>(account.flags & ~account_flags::closed);
  return closed ? static_cast<u16>(flags | account_flags::closed) : flags;
}

bool query_filter_valid(const QueryFilter& filter) {
  if (!timestamps_and_limit_valid(filter.timestamp_min, filter.timestamp_max, filter.limit)) {
    return false;
  }
  if (filter.flags & query_filter_flags::reserved_mask) return false;
  return bytes_zero(filter.reserved);
}

u64 range_min(u64 timestamp_min) { return timestamp_min == 0 ? 1 : timestamp_min; }
u64 range_max(u64 timestamp_max_filter) {
  return timestamp_max_filter == 0 ? timestamp_max : timestamp_max_filter;
}

template <typename Record>
bool query_matches(const Record& record, const QueryFilter& filter) {
  if (filter.user_data_128 != 0 && record.user_data_128 != filter.user_data_128) return false;
  if (filter.user_data_64 != 0 && record.user_data_64 != filter.user_data_64) return false;
  if (filter.user_data_32 != 0 && record.user_data_32 != filter.user_data_32) return false;
  if (filter.ledger != 0 && record.ledger != filter.ledger) return false;
  if (filter.code != 0 && record.code != filter.code) return false;
  return true;
}

u128 filter_field(const QueryFilter& filter, Field field) {
  switch (field) {
    case Field::user_data_128: return filter.user_data_128;
    case Field::user_data_64: return filter.user_data_64;
    case Field::user_data_32: return filter.user_data_32;
    case Field::ledger: return filter.ledger;
    case Field::code: return filter.code;
  }
  return 0;
}

// Runs a query over rows [row_begin, row_end) of `records`: picks the shortest value list among
// the filter's non-zero fields (or the whole range when none is set), then checks every field.
template <typename Record, typename IndexOf>
u32 query_rows(const Record* records, u32 row_begin, u32 row_end, const QueryFilter& filter,
               const IndexOf& index_of, std::span<Record> results) {
  const u32 limit = std::min<u32>(filter.limit, static_cast<u32>(results.size()));
  const bool reversed = (filter.flags & query_filter_flags::reversed) != 0;
  if (row_begin >= row_end || limit == 0) return 0;
  u32 count = 0;

  const ValueIndex* shortest_index = nullptr;
  u32 shortest_list = 0;
  for (u32 field = 0; field < field_count; field += 1) {
    const u128 value = filter_field(filter, static_cast<Field>(field));
    if (value == 0) continue;
    const ValueIndex& index = index_of(static_cast<Field>(field));
    const std::optional<u32> list = index.list_find(value, [&](u32 row) {
      return field_value(records[row], static_cast<Field>(field));
    });
    if (!list.has_value()) return 0;  // No record has this value.
    if (shortest_index == nullptr ||
        index.lists().count(*list) < shortest_index->lists().count(shortest_list)) {
      shortest_index = &index;
      shortest_list = *list;
    }
  }

  if (shortest_index == nullptr) {
    // No field filter: every row in the range matches.
    const u32 available = row_end - row_begin;
    count = std::min(limit, available);
    for (u32 position = 0; position < count; position += 1) {
      const u32 row = reversed ? row_end - 1 - position : row_begin + position;
      results[position] = records[row];
    }
    return count;
  }
  shortest_index->lists().scan(shortest_list, row_begin, row_end - 1, reversed, [&](u32 row) {
    if (query_matches(records[row], filter)) {
      results[count] = records[row];
      count += 1;
    }
    return count < limit;
  });
  return count;
}

}  // namespace

u32 StateMachine::lookup_accounts(std::span<const u128> ids, std::span<Account> results) const {
  TALLY_ASSERT(results.size() >= ids.size());
  for (const u128 id : ids) ledger_.account_prefetch(id);
  u32 count = 0;
  for (const u128 id : ids) {
    if (const std::optional<u32> row = ledger_.account_find(id)) {
      results[count] = ledger_.account(*row);
      count += 1;
    }
  }
  return count;
}

u32 StateMachine::lookup_transfers(std::span<const u128> ids, std::span<Transfer> results) const {
  TALLY_ASSERT(results.size() >= ids.size());
  for (const u128 id : ids) ledger_.transfer_prefetch(id);
  u32 count = 0;
  for (const u128 id : ids) {
    if (const std::optional<u32> row = ledger_.transfer_find(id)) {
      results[count] = ledger_.transfer(*row);
      count += 1;
    }
  }
  return count;
}

u32 StateMachine::account_transfer_rows(const AccountFilter& filter, u32 limit, u32* rows) {
  TALLY_ASSERT(ledger_.indexes_caught_up());
  if (!account_filter_valid(filter)) return 0;
  const std::optional<u32> account_row = ledger_.account_find(filter.account_id);
  if (!account_row.has_value()) return 0;
  u32 row_begin = 0;
  u32 row_end = 0;
  ledger_.transfer_rows_in(range_min(filter.timestamp_min), range_max(filter.timestamp_max),
                           &row_begin, &row_end);
  if (row_begin >= row_end) return 0;
  const bool reversed = (filter.flags & account_filter_flags::reversed) != 0;
  const auto matches = [&](u32 row) {
    const Transfer& transfer = ledger_.transfer(row);
    if (filter.user_data_128 != 0 && transfer.user_data_128 != filter.user_data_128) return false;
    if (filter.user_data_64 != 0 && transfer.user_data_64 != filter.user_data_64) return false;
    if (filter.user_data_32 != 0 && transfer.user_data_32 != filter.user_data_32) return false;
    if (filter.code != 0 && transfer.code != filter.code) return false;
    return true;
  };
  const auto collect = [&](const PostingLists& lists, u32* out) {
    u32 count = 0;
    lists.scan(*account_row, row_begin, row_end - 1, reversed, [&](u32 row) {
      if (matches(row)) {
        out[count] = row;
        count += 1;
      }
      return count < limit;
    });
    return count;
  };

  const bool debits = (filter.flags & account_filter_flags::debits) != 0;
  const bool credits = (filter.flags & account_filter_flags::credits) != 0;
  if (debits && !credits) return collect(ledger_.transfers_by_debit_account(), rows);
  if (credits && !debits) return collect(ledger_.transfers_by_credit_account(), rows);

  // Both: the first `limit` of the merge are among the first `limit` of each side. A transfer
  // never has the same account on both sides, so the sides are disjoint.
  u32* debit_rows = scratch_debits_.data();
  u32* credit_rows = scratch_credits_.data();
  const u32 debit_count = collect(ledger_.transfers_by_debit_account(), debit_rows);
  const u32 credit_count = collect(ledger_.transfers_by_credit_account(), credit_rows);
  u32 debit_index = 0;
  u32 credit_index = 0;
  u32 count = 0;
  while (count < limit && (debit_index < debit_count || credit_index < credit_count)) {
    bool take_debit;
    if (debit_index == debit_count) {
      take_debit = false;
    } else if (credit_index == credit_count) {
      take_debit = true;
    } else {
      TALLY_ASSERT(debit_rows[debit_index] != credit_rows[credit_index]);
      take_debit = reversed ? debit_rows[debit_index] > credit_rows[credit_index]
                            : debit_rows[debit_index] < credit_rows[credit_index];
    }
    rows[count] = take_debit ? debit_rows[debit_index++] : credit_rows[credit_index++];
    count += 1;
  }
  return count;
}

u32 StateMachine::get_account_transfers(const AccountFilter& filter,
                                        std::span<Transfer> results) {
  const u32 limit = std::min<u32>(filter.limit, static_cast<u32>(results.size()));
  // The scratch rows hold the most results of any batch (8190, state_machine.cpp).
  TALLY_ASSERT(limit <= scratch_rows_.capacity(), "results span longer than any batch");
  u32* rows = scratch_rows_.data();
  const u32 count = account_transfer_rows(filter, limit, rows);
  for (u32 index = 0; index < count; index += 1) results[index] = ledger_.transfer(rows[index]);
  return count;
}

u32 StateMachine::get_account_balances(const AccountFilter& filter,
                                       std::span<AccountBalance> results) {
  const std::optional<u32> account_row = ledger_.account_find(filter.account_id);
  if (!account_row.has_value()) return 0;
  if (!(ledger_.account(*account_row).flags & account_flags::history)) return 0;
  const u32 limit = std::min<u32>(filter.limit, static_cast<u32>(results.size()));
  // The scratch rows hold the most results of any batch (8190, state_machine.cpp).
  TALLY_ASSERT(limit <= scratch_rows_.capacity(), "results span longer than any batch");
  u32* rows = scratch_rows_.data();
  const u32 count = account_transfer_rows(filter, limit, rows);
  // The balances after each transfer are those its change event recorded.
  const ChangeEventTable& events = ledger_.change_events();
  for (u32 index = 0; index < count; index += 1) {
    const Transfer& transfer = ledger_.transfer(rows[index]);
    const EventBalances after = events.balances(events.row_of_transfer(rows[index]));
    const Balances& balances = transfer.debit_account_id == filter.account_id
                                   ? after.debit_account
                                   : after.credit_account;
    AccountBalance balance{};
    balance.debits_pending = balances.debits_pending;
    balance.debits_posted = balances.debits_posted;
    balance.credits_pending = balances.credits_pending;
    balance.credits_posted = balances.credits_posted;
    balance.timestamp = transfer.timestamp;
    results[index] = balance;
  }
  return count;
}

u32 StateMachine::get_change_events(const ChangeEventsFilter& filter,
                                     std::span<ChangeEvent> results) const {
  if (!change_events_filter_valid(filter)) return 0;
  const u32 limit = std::min<u32>(filter.limit, static_cast<u32>(results.size()));
  const u64 from = range_min(filter.timestamp_min);
  const u64 to = range_max(filter.timestamp_max);
  // The events are the transfers and the expiries, each already in timestamp order: merge them.
  const ChangeEventTable& events = ledger_.change_events();
  u32 transfer_row = 0;
  u32 transfer_end = 0;
  ledger_.transfer_rows_in(from, to, &transfer_row, &transfer_end);
  u32 expiry = 0;
  u32 expiry_end = 0;
  events.expiries_in(from, to, &expiry, &expiry_end);
  u32 count = 0;
  while (count < limit && (transfer_row < transfer_end || expiry < expiry_end)) {
    // An imported transfer may take an expiry's timestamp (TigerBeetle checks imported
    // timestamps against transfers and accounts only); the expiry, recorded first, comes first.
    const bool expiry_next =
        expiry < expiry_end &&
        (transfer_row == transfer_end ||
         events.expiry(expiry).timestamp <= ledger_.transfer(transfer_row).timestamp);
    if (expiry_next) {
      const ExpiryEvent& expired = events.expiry(expiry);
      results[count] = change_event(expired.transfer_row, ChangeEventType::two_phase_expired,
                                    expired.row, expired.timestamp);
      expiry += 1;
    } else {
      const Transfer& transfer = ledger_.transfer(transfer_row);
      results[count] = change_event(transfer_row, change_event_type_of(transfer.flags),
                                    events.row_of_transfer(transfer_row), transfer.timestamp);
      transfer_row += 1;
    }
    count += 1;
  }
  return count;
}

// As TigerBeetle builds it (get_change_event): for an expiry, the transfer is the pending one
// (so transfer_pending_id is 0) and the amount its amount; for a post or void, the posting
// transfer with the amount it moved. Account fields come from the accounts, which only change
// in balances and `closed`; those come from the event's row.
ChangeEvent StateMachine::change_event(u32 transfer_row, ChangeEventType type, u32 event_row,
                                       u64 timestamp) const {
  const Transfer& transfer = ledger_.transfer(transfer_row);
  const std::optional<u32> debit_row = ledger_.account_find(transfer.debit_account_id);
  const std::optional<u32> credit_row = ledger_.account_find(transfer.credit_account_id);
  TALLY_ASSERT(debit_row.has_value() && credit_row.has_value());
  const Account& debit = ledger_.account(*debit_row);
  const Account& credit = ledger_.account(*credit_row);
  TALLY_ASSERT(debit.ledger == transfer.ledger && credit.ledger == transfer.ledger);
  const ChangeEventTable& events = ledger_.change_events();
  const EventBalances balances = events.balances(event_row);
  const u8 flags = events.flags(event_row);

  ChangeEvent event{};
  event.transfer_id = transfer.id;
  event.transfer_amount = transfer.amount;
  event.transfer_pending_id = transfer.pending_id;
  event.transfer_user_data_128 = transfer.user_data_128;
  event.transfer_user_data_64 = transfer.user_data_64;
  event.transfer_user_data_32 = transfer.user_data_32;
  event.transfer_timeout = transfer.timeout;
  event.transfer_code = transfer.code;
  event.transfer_flags = transfer.flags;
  event.ledger = transfer.ledger;
  event.type = type;

  event.debit_account_id = debit.id;
  event.debit_account_debits_pending = balances.debit_account.debits_pending;
  event.debit_account_debits_posted = balances.debit_account.debits_posted;
  event.debit_account_credits_pending = balances.debit_account.credits_pending;
  event.debit_account_credits_posted = balances.debit_account.credits_posted;
  event.debit_account_user_data_128 = debit.user_data_128;
  event.debit_account_user_data_64 = debit.user_data_64;
  event.debit_account_user_data_32 = debit.user_data_32;
  event.debit_account_code = debit.code;
  event.debit_account_flags = account_flags_after(debit, flags & event_flags::debit_closed);

  event.credit_account_id = credit.id;
  event.credit_account_debits_pending = balances.credit_account.debits_pending;
  event.credit_account_debits_posted = balances.credit_account.debits_posted;
  event.credit_account_credits_pending = balances.credit_account.credits_pending;
  event.credit_account_credits_posted = balances.credit_account.credits_posted;
  event.credit_account_user_data_128 = credit.user_data_128;
  event.credit_account_user_data_64 = credit.user_data_64;
  event.credit_account_user_data_32 = credit.user_data_32;
  event.credit_account_code = credit.code;
  event.credit_account_flags = account_flags_after(credit, flags & event_flags::credit_closed);

  event.timestamp = timestamp;
  event.transfer_timestamp = transfer.timestamp;
  event.debit_account_timestamp = debit.timestamp;
  event.credit_account_timestamp = credit.timestamp;
  return event;
}

u32 StateMachine::query_accounts(const QueryFilter& filter, std::span<Account> results) {
  if (!query_filter_valid(filter)) return 0;
  u32 row_begin = 0;
  u32 row_end = 0;
  ledger_.account_rows_in(range_min(filter.timestamp_min), range_max(filter.timestamp_max),
                          &row_begin, &row_end);
  return query_rows(ledger_.accounts_table().data(), row_begin, row_end, filter,
                    [&](Field field) -> const ValueIndex& { return ledger_.account_index(field); },
                    results);
}

u32 StateMachine::query_transfers(const QueryFilter& filter, std::span<Transfer> results) {
  TALLY_ASSERT(ledger_.indexes_caught_up());
  if (!query_filter_valid(filter)) return 0;
  u32 row_begin = 0;
  u32 row_end = 0;
  ledger_.transfer_rows_in(range_min(filter.timestamp_min), range_max(filter.timestamp_max),
                           &row_begin, &row_end);
  return query_rows(ledger_.transfers_table().data(), row_begin, row_end, filter,
                    [&](Field field) -> const ValueIndex& { return ledger_.transfer_index(field); },
                    results);
}

}  // namespace tally::state_machine
