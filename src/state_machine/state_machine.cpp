// StateMachine: operation dispatch, the multi-batch plumbing around the per-batch operations,
// timestamps, capacity admission and pending-transfer expiry.
#include "src/state_machine/state_machine.hpp"

#include <algorithm>
#include <cstring>

#include "tally/multi_batch.hpp"

namespace tally::state_machine {

namespace {

// The most events or results one batch can hold, over every operation: the scratch arrays are
// this long. The deprecated unbatched operations have no trailer and hold one more than the
// multi-batch ones (§8.5): 8190 events of create and lookup, 8190 results of a query.
constexpr u32 batch_element_max = [] {
  u32 max = 0;
  for (u32 value = 0; value <= operation_state_machine_last; value += 1) {
    const OperationInfo info = operation_info(static_cast<Operation>(value));
    max = std::max({max, info.event_max, info.result_max});
  }
  return max;
}();
static_assert(batch_element_max == 8190);
static_assert(StateMachine::pulse_expiries_max <= batch_element_max, "a pulse's scratch");

// A query's results are capped at the operation's result_max, as TigerBeetle caps its scans:
// 8189 for the multi-batch queries, 8190 for the deprecated unbatched ones.
u32 result_limit(Operation operation, std::size_t room) {
  const u32 result_max = operation_result_max(operation);
  TALLY_ASSERT(result_max > 0 && result_max <= batch_element_max);
  return room < result_max ? static_cast<u32>(room) : result_max;
}

template <typename T>
std::span<const T> events_of(std::span<const std::byte> bytes) {
  TALLY_ASSERT(bytes.size() % sizeof(T) == 0);
  TALLY_ASSERT(reinterpret_cast<std::uintptr_t>(bytes.data()) % alignof(T) == 0,
               "bodies are aligned for their records");
  return {reinterpret_cast<const T*>(bytes.data()), bytes.size() / sizeof(T)};
}

template <typename T>
std::span<T> results_in(std::span<std::byte> bytes) {
  TALLY_ASSERT(reinterpret_cast<std::uintptr_t>(bytes.data()) % alignof(T) == 0);
  return {reinterpret_cast<T*>(bytes.data()), bytes.size() / sizeof(T)};
}

template <typename T>
T filter_of(std::span<const std::byte> bytes) {
  TALLY_ASSERT(bytes.size() == sizeof(T));
  T filter;
  std::memcpy(&filter, bytes.data(), sizeof(T));
  return filter;
}

bool operation_creates(Operation operation) {
  switch (operation) {
    case Operation::create_accounts:
    case Operation::create_transfers:
    case Operation::deprecated_create_accounts_sparse:
    case Operation::deprecated_create_transfers_sparse:
    case Operation::deprecated_create_accounts_unbatched:
    case Operation::deprecated_create_transfers_unbatched: return true;
    default: return false;
  }
}

bool operation_creates_transfers(Operation operation) {
  return operation == Operation::create_transfers ||
         operation == Operation::deprecated_create_transfers_sparse ||
         operation == Operation::deprecated_create_transfers_unbatched;
}

}  // namespace

void StateMachine::init(const Config& config) {
  ledger_.init(config);
  scratch_debits_.init(batch_element_max);
  scratch_credits_.init(batch_element_max);
  scratch_rows_.init(batch_element_max);
  scratch_account_results_.init(batch_element_max);
  scratch_transfer_results_.init(batch_element_max);
  commit_timestamp_ = 0;
}

void StateMachine::reset() {
  ledger_.reset();
  commit_timestamp_ = 0;
}

u32 StateMachine::timestamp_event_count(Operation operation, std::span<const std::byte> body) {
  if (operation == Operation::state_machine_pulse) return pulse_expiries_max;
  if (!operation_creates(operation)) return 0;
  const u32 event_size = operation_event_size(operation);
  if (!operation_is_multi_batch(operation)) {
    TALLY_ASSERT(body.size() % event_size == 0);
    return static_cast<u32>(body.size() / event_size);
  }
  MultiBatchDecoder decoder;
  const MultiBatchError error = decoder.decode(body, event_size);
  TALLY_ASSERT(error == MultiBatchError::none, "body was validated: %s", name(error));
  return decoder.element_count_total();
}

bool StateMachine::capacity_admits(Operation operation, std::span<const std::byte> body,
                                   Reservation reserved) const {
  // A pulse creates no object; its change events fit because each pending transfer (admitted
  // as a transfer) expires at most once.
  if (!operation_creates(operation)) return true;
  const u64 events = timestamp_event_count(operation, body);
  if (events == 0) return true;
  const auto fits = [](u32 free, u64 wanted) { return wanted <= free; };
  if (operation_creates_transfers(operation)) {
    const u64 wanted = events + reserved.transfers;
    // Change events need no check of their own: change_events_free() >= transfers_free().
    return fits(ledger_.transfers_free(), wanted) && fits(ledger_.pending_free(), wanted) &&
           fits(ledger_.failed_free(), wanted);
  }
  return fits(ledger_.accounts_free(), events + reserved.accounts);
}

u32 StateMachine::execute(Operation operation, u64 timestamp, std::span<const std::byte> body,
                          std::span<std::byte> reply) {
  TALLY_ASSERT(timestamp > commit_timestamp_, "timestamps strictly increase");
  TALLY_ASSERT(operation_is_state_machine(operation));
  const u32 event_count = timestamp_event_count(operation, body);
  TALLY_ASSERT(timestamp > event_count);
  TALLY_ASSERT(timestamp - event_count >= commit_timestamp_,
               "the reserved timestamps follow the previous operation's");
  const bool multi_batch = operation_is_multi_batch(operation);
  u64 timestamp_next = timestamp - event_count + 1;  // The next create event's timestamp.

  // Runs `run(events, results) -> result count` on every batch of the body (or on the raw body
  // of an unbatched operation) and encodes the results.
  const auto each_batch = [&]<typename Event, typename Result>(const auto& run) -> u32 {
    if (!multi_batch) {
      return run(events_of<Event>(body), results_in<Result>(reply)) * u32{sizeof(Result)};
    }
    MultiBatchDecoder decoder;
    const MultiBatchError decode_error = decoder.decode(body, sizeof(Event));
    TALLY_ASSERT(decode_error == MultiBatchError::none, "%s", name(decode_error));
    MultiBatchEncoder encoder(reply, sizeof(Result));
    for (const std::span<const std::byte> batch : decoder) {
      MultiBatchEncodeError error = encoder.batch_begin();
      TALLY_ASSERT(error == MultiBatchEncodeError::none, "%s", name(error));
      const u32 count = run(events_of<Event>(batch), results_in<Result>(encoder.writable()));
      error = encoder.commit(count);
      TALLY_ASSERT(error == MultiBatchEncodeError::none, "%s", name(error));
    }
    const MultiBatchEncodeError error = encoder.finish();
    TALLY_ASSERT(error == MultiBatchEncodeError::none, "%s", name(error));
    return encoder.size();
  };

  // Dense results: one per event.
  const auto accounts_dense = [&](std::span<const Account> events,
                                  std::span<CreateAccountResult> results) {
    TALLY_ASSERT(results.size() >= events.size());
    create_accounts(events, timestamp_next, results.first(events.size()));
    timestamp_next += events.size();
    return static_cast<u32>(events.size());
  };
  const auto transfers_dense = [&](std::span<const Transfer> events,
                                   std::span<CreateTransferResult> results) {
    TALLY_ASSERT(results.size() >= events.size());
    create_transfers(events, timestamp_next, results.first(events.size()));
    timestamp_next += events.size();
    return static_cast<u32>(events.size());
  };
  // Sparse results (deprecated operations): only the failures, with their index in the batch.
  const auto accounts_sparse = [&](std::span<const Account> events,
                                   std::span<CreateAccountErrorResult> results) {
    const std::span<CreateAccountResult> dense = scratch_account_results_.first(events.size());
    accounts_dense(events, dense);
    u32 count = 0;
    for (u32 index = 0; index < dense.size(); index += 1) {
      if (dense[index].status == CreateAccountStatus::created) continue;
      results[count] = CreateAccountErrorResult{.index = index, .status = dense[index].status};
      count += 1;
    }
    return count;
  };
  const auto transfers_sparse = [&](std::span<const Transfer> events,
                                    std::span<CreateTransferErrorResult> results) {
    const std::span<CreateTransferResult> dense = scratch_transfer_results_.first(events.size());
    transfers_dense(events, dense);
    u32 count = 0;
    for (u32 index = 0; index < dense.size(); index += 1) {
      if (dense[index].status == CreateTransferStatus::created) continue;
      results[count] = CreateTransferErrorResult{.index = index, .status = dense[index].status};
      count += 1;
    }
    return count;
  };
  const auto accounts_lookup = [&](std::span<const u128> ids, std::span<Account> results) {
    return lookup_accounts(ids, results);
  };
  const auto transfers_lookup = [&](std::span<const u128> ids, std::span<Transfer> results) {
    return lookup_transfers(ids, results);
  };
  // Query operations carry exactly one filter per batch (validated before prepare).
  const auto account_transfers = [&](std::span<const AccountFilter> filters,
                                     std::span<Transfer> results) {
    TALLY_ASSERT(filters.size() == 1);
    return get_account_transfers(filters[0],
                                 results.first(result_limit(operation, results.size())));
  };
  const auto account_balances = [&](std::span<const AccountFilter> filters,
                                    std::span<AccountBalance> results) {
    TALLY_ASSERT(filters.size() == 1);
    return get_account_balances(filters[0], results.first(result_limit(operation, results.size())));
  };
  const auto accounts_query = [&](std::span<const QueryFilter> filters,
                                  std::span<Account> results) {
    TALLY_ASSERT(filters.size() == 1);
    return query_accounts(filters[0], results.first(result_limit(operation, results.size())));
  };
  const auto transfers_query = [&](std::span<const QueryFilter> filters,
                                   std::span<Transfer> results) {
    TALLY_ASSERT(filters.size() == 1);
    return query_transfers(filters[0], results.first(result_limit(operation, results.size())));
  };

  u32 reply_size = 0;
  using O = Operation;
  switch (operation) {
    case O::state_machine_pulse:
      TALLY_ASSERT(body.empty());
      pulse(timestamp);
      timestamp_next = timestamp + 1;  // Its expiries took the last of the reserved timestamps.
      break;
    case O::get_change_events: {
      // Not multi-batch encoded: one filter in, a raw array of events out.
      const std::span<ChangeEvent> results = results_in<ChangeEvent>(reply);
      const u32 count = get_change_events(filter_of<ChangeEventsFilter>(body),
                                          results.first(result_limit(operation, results.size())));
      reply_size = count * u32{sizeof(ChangeEvent)};
      break;
    }
    case O::create_accounts:
      reply_size = each_batch.operator()<Account, CreateAccountResult>(accounts_dense);
      break;
    case O::create_transfers:
      reply_size = each_batch.operator()<Transfer, CreateTransferResult>(transfers_dense);
      break;
    case O::deprecated_create_accounts_sparse:
    case O::deprecated_create_accounts_unbatched:
      reply_size = each_batch.operator()<Account, CreateAccountErrorResult>(accounts_sparse);
      break;
    case O::deprecated_create_transfers_sparse:
    case O::deprecated_create_transfers_unbatched:
      reply_size = each_batch.operator()<Transfer, CreateTransferErrorResult>(transfers_sparse);
      break;
    case O::lookup_accounts:
    case O::deprecated_lookup_accounts_unbatched:
      reply_size = each_batch.operator()<u128, Account>(accounts_lookup);
      break;
    case O::lookup_transfers:
    case O::deprecated_lookup_transfers_unbatched:
      reply_size = each_batch.operator()<u128, Transfer>(transfers_lookup);
      break;
    case O::get_account_transfers:
    case O::deprecated_get_account_transfers_unbatched:
      reply_size = each_batch.operator()<AccountFilter, Transfer>(account_transfers);
      break;
    case O::get_account_balances:
    case O::deprecated_get_account_balances_unbatched:
      reply_size = each_batch.operator()<AccountFilter, AccountBalance>(account_balances);
      break;
    case O::query_accounts:
    case O::deprecated_query_accounts_unbatched:
      reply_size = each_batch.operator()<QueryFilter, Account>(accounts_query);
      break;
    case O::query_transfers:
    case O::deprecated_query_transfers_unbatched:
      reply_size = each_batch.operator()<QueryFilter, Transfer>(transfers_query);
      break;
    default: TALLY_UNREACHABLE();
  }
  TALLY_ASSERT(timestamp_next == timestamp + 1, "every event got its timestamp");
  commit_timestamp_ = timestamp;
  return reply_size;
}

bool StateMachine::pulse_needed(u64 timestamp) const {
  return ledger_.expiry_count() > 0 && ledger_.expiry_top().expires_at <= timestamp;
}

u32 StateMachine::pulse(u64 timestamp) {
  TALLY_ASSERT(!ledger_.chain_is_open());
  // First the set, then the timestamps: with n expiring, the i-th gets timestamp - n + 1 + i.
  u32* expiring = scratch_debits_.data();
  u32 count = 0;
  while (count < pulse_expiries_max && ledger_.expiry_count() > 0 &&
         ledger_.expiry_top().expires_at <= timestamp) {
    const u32 pending = ledger_.expiry_top().pending;
    ledger_.expiry_pop();
    // Posted and voided transfers leave their expiry in the heap; it is skipped here.
    if (ledger_.pending_status(pending) != PendingStatus::pending) continue;
    expiring[count] = pending;
    count += 1;
  }
  TALLY_ASSERT(timestamp > count, "the pulse reserved a timestamp per expiry");
  for (u32 index = 0; index < count; index += 1) {
    expire(expiring[index], timestamp - count + 1 + index);
  }
  ledger_.change_events().publish();
  return count;
}

void StateMachine::expire(u32 pending, u64 timestamp) {
  const u32 transfer_row = ledger_.pending_row(pending);
  const Transfer& p = ledger_.transfer(transfer_row);
  TALLY_ASSERT(p.timeout > 0, "only transfers with a timeout expire");
  const std::optional<u32> debit_row = ledger_.account_find(p.debit_account_id);
  const std::optional<u32> credit_row = ledger_.account_find(p.credit_account_id);
  TALLY_ASSERT(debit_row.has_value() && credit_row.has_value());
  Account& debit = ledger_.account_modify(*debit_row);
  Account& credit = ledger_.account_modify(*credit_row);
  TALLY_ASSERT(debit.debits_pending >= p.amount && credit.credits_pending >= p.amount);
  debit.debits_pending -= p.amount;
  credit.credits_pending -= p.amount;
  if (p.flags & transfer_flags::closing_debit) account_flag_clear(debit, account_flags::closed);
  if (p.flags & transfer_flags::closing_credit) {
    account_flag_clear(credit, account_flags::closed);
  }
  ledger_.pending_status_set(pending, PendingStatus::expired);
  ledger_.expiry_event_insert(transfer_row, timestamp, *debit_row, *credit_row);
}

}  // namespace tally::state_machine
