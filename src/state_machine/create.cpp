// create_accounts and create_transfers (protocol §7.2-§7.6): the per-event checks in the exact
// order TigerBeetle 0.17 applies them (first failing check wins), linked chains, and the effects
// of a created event.
#include <optional>

#include "src/base/prefetch.hpp"
#include "src/state_machine/state_machine.hpp"

namespace tally::state_machine {

namespace {

bool flag(u16 flags, u16 bit) { return (flags & bit) != 0; }

// a + b, or nullopt on u128 overflow.
std::optional<u128> add_checked(u128 a, u128 b) {
  u128 sum = 0;
  if (__builtin_add_overflow(a, b, &sum)) return std::nullopt;
  return sum;
}

u128 subtract_saturating(u128 a, u128 b) { return a > b ? a - b : 0; }

// The linked-chain driver shared by both create operations (§7.3). `execute(index)` runs one
// event's checks and effects and returns its status; a non-created status inside a chain rolls
// the chain back and turns the earlier results of the chain into linked_event_failed.
template <typename Status, typename Event, typename Result, typename Execute, typename Committed>
void chain_run(Ledger& ledger, std::span<const Event> events, u64 timestamp_first,
               std::span<Result> results, const Execute& execute, const Committed& committed) {
  const u32 count = static_cast<u32>(events.size());
  TALLY_ASSERT(results.size() == events.size());
  TALLY_ASSERT(!ledger.chain_is_open());
  bool in_chain = false;
  u32 chain_start = 0;  // The chain's first event, while in_chain.
  bool chain_broken = false;
  for (u32 index = 0; index < count; index += 1) {
    const Event& event = events[index];
    const u64 timestamp = timestamp_first + index;
    const bool linked = flag(event.flags, 1);  // Bit 0 is `linked` for both records.
    if (linked && !in_chain) {
      in_chain = true;
      chain_start = index;
      chain_broken = false;
      ledger.chain_open();
    }

    Status status;
    u64 result_timestamp = timestamp;
    if (linked && index + 1 == count) {
      status = Status::linked_event_chain_open;
    } else if (in_chain && chain_broken) {
      status = Status::linked_event_failed;
    } else {
      status = execute(index, timestamp, &result_timestamp);
    }
    results[index] = Result{.timestamp = result_timestamp, .status = status, .reserved = 0};

    if (!in_chain) {
      if (status == Status::created) committed();
      continue;
    }
    if (status != Status::created && !chain_broken) {
      ledger.chain_rollback();
      for (u32 earlier = chain_start; earlier < index; earlier += 1) {
        results[earlier].status = Status::linked_event_failed;
      }
      chain_broken = true;
    }
    const bool chain_ends = !linked || status == Status::linked_event_chain_open;
    if (chain_ends) {
      if (!chain_broken) {
        ledger.chain_commit();
        committed();
      }
      in_chain = false;
    }
  }
  TALLY_ASSERT(!ledger.chain_is_open());
}

}  // namespace

// ----- create_accounts.

void StateMachine::create_accounts(std::span<const Account> events, u64 timestamp_first,
                                   std::span<CreateAccountResult> results) {
  if (events.empty()) return;
  for (const Account& event : events) ledger_.account_prefetch(event.id);

  const u64 batch_timestamp = timestamp_first + events.size() - 1;
  const bool batch_imported = flag(events[0].flags, account_flags::imported);
  chain_run<CreateAccountStatus>(
      ledger_, events, timestamp_first, results,
      [&](u32 index, u64 timestamp, u64* result_timestamp) {
        return create_account(events[index], timestamp, batch_timestamp, batch_imported,
                              result_timestamp);
      },
      [] {});
}

CreateAccountStatus StateMachine::create_account(const Account& event, u64 timestamp,
                                                 u64 batch_timestamp, bool batch_imported,
                                                 u64* result_timestamp) {
  using S = CreateAccountStatus;
  const bool imported = flag(event.flags, account_flags::imported);
  if (imported != batch_imported) {
    return imported ? S::imported_event_not_expected : S::imported_event_expected;
  }
  if (imported) {
    if (event.timestamp == 0 || event.timestamp > timestamp_max) {
      return S::imported_event_timestamp_out_of_range;
    }
    if (event.timestamp >= batch_timestamp) return S::imported_event_timestamp_must_not_advance;
  } else if (event.timestamp != 0) {
    return S::timestamp_must_be_zero;
  }
  if (event.reserved != 0) return S::reserved_field;
  if (event.flags & account_flags::reserved_mask) return S::reserved_flag;
  if (event.id == 0) return S::id_must_not_be_zero;
  if (event.id == u128_max) return S::id_must_not_be_int_max;

  if (const std::optional<u32> row = ledger_.account_find(event.id)) {
    const Account& existing = ledger_.account(*row);
    if (event.flags != existing.flags) return S::exists_with_different_flags;
    if (event.user_data_128 != existing.user_data_128) {
      return S::exists_with_different_user_data_128;
    }
    if (event.user_data_64 != existing.user_data_64) return S::exists_with_different_user_data_64;
    if (event.user_data_32 != existing.user_data_32) return S::exists_with_different_user_data_32;
    if (event.ledger != existing.ledger) return S::exists_with_different_ledger;
    if (event.code != existing.code) return S::exists_with_different_code;
    *result_timestamp = existing.timestamp;
    return S::exists;
  }

  if (flag(event.flags, account_flags::debits_must_not_exceed_credits) &&
      flag(event.flags, account_flags::credits_must_not_exceed_debits)) {
    return S::flags_are_mutually_exclusive;
  }
  if (event.debits_pending != 0) return S::debits_pending_must_be_zero;
  if (event.debits_posted != 0) return S::debits_posted_must_be_zero;
  if (event.credits_pending != 0) return S::credits_pending_must_be_zero;
  if (event.credits_posted != 0) return S::credits_posted_must_be_zero;
  if (event.ledger == 0) return S::ledger_must_not_be_zero;
  if (event.code == 0) return S::code_must_not_be_zero;
  if (imported && (event.timestamp <= ledger_.account_timestamp_max() ||
                   ledger_.transfer_timestamp_exists(event.timestamp))) {
    return S::imported_event_timestamp_must_not_regress;
  }

  Account account = event;
  account.reserved = 0;
  account.timestamp = imported ? event.timestamp : timestamp;
  ledger_.account_insert(account);
  *result_timestamp = account.timestamp;
  return S::created;
}

// ----- create_transfers.

void StateMachine::create_transfers(std::span<const Transfer> events, u64 timestamp_first,
                                    std::span<CreateTransferResult> results) {
  create_transfers_unindexed(events, timestamp_first, results);
  ledger_.indexes_catch_up();
}

void StateMachine::create_transfers_unindexed(std::span<const Transfer> events,
                                              u64 timestamp_first,
                                              std::span<CreateTransferResult> results) {
  if (events.empty()) return;
  // Prefetch, then execute: the id index slots each event looks up are fetched `distance`
  // events ahead. Far enough to hide a memory access behind the work of the events between;
  // not the whole batch at once, which would evict the first lines before they are used (8189
  // slots and as many account slots exceed the L2 cache).
  constexpr u32 distance = 24;
  const auto prefetch = [&](u32 index) {
    // The events themselves are read here first: fetch them further ahead still.
    if (index + distance < events.size()) {
      base::prefetch(&events[index + distance]);
      base::prefetch(reinterpret_cast<const std::byte*>(&events[index + distance]) + 64);
    }
    const Transfer& event = events[index];
    ledger_.transfer_prefetch(event.id);
    if (event.pending_id != 0) ledger_.transfer_prefetch(event.pending_id);
    if (ledger_.failed_count() > 0) ledger_.failed_prefetch(event.id);
    ledger_.account_prefetch(event.debit_account_id);
    ledger_.account_prefetch(event.credit_account_id);
  };
  // Half as far ahead, the slots are in cache: the records they point to are fetched too.
  const auto prefetch_records = [&](u32 index) {
    const Transfer& event = events[index];
    if (event.pending_id != 0) ledger_.transfer_prefetch_record(event.pending_id);
    ledger_.account_prefetch_record(event.debit_account_id);
    ledger_.account_prefetch_record(event.credit_account_id);
  };
  const u32 count = static_cast<u32>(events.size());
  for (u32 index = 0; index < count && index < distance; index += 1) prefetch(index);
  for (u32 index = 0; index < count && index < distance / 2; index += 1) prefetch_records(index);

  const u64 batch_timestamp = timestamp_first + events.size() - 1;
  const bool batch_imported = flag(events[0].flags, transfer_flags::imported);
  chain_run<CreateTransferStatus>(
      ledger_, events, timestamp_first, results,
      [&](u32 index, u64 timestamp, u64* result_timestamp) {
        if (index + distance < count) prefetch(index + distance);
        if (index + distance / 2 < count) prefetch_records(index + distance / 2);
        return create_transfer(events[index], timestamp, batch_timestamp, batch_imported,
                               result_timestamp);
      },
      [&] { ledger_.expiry_register_new(); });
  ledger_.change_events().publish();
}

namespace {

// Statuses that depend on state that may change (§7.4): they burn the id for good.
bool status_is_transient(CreateTransferStatus status) {
  using S = CreateTransferStatus;
  switch (status) {
    case S::debit_account_not_found:
    case S::credit_account_not_found:
    case S::pending_transfer_not_found:
    case S::exceeds_credits:
    case S::exceeds_debits:
    case S::debit_account_already_closed:
    case S::credit_account_already_closed: return true;
    default: return false;
  }
}

}  // namespace

CreateTransferStatus StateMachine::create_transfer(const Transfer& event, u64 timestamp,
                                                   u64 batch_timestamp, bool batch_imported,
                                                   u64* result_timestamp) {
  using S = CreateTransferStatus;
  namespace tf = transfer_flags;
  const bool imported = flag(event.flags, tf::imported);
  if (imported != batch_imported) {
    return imported ? S::imported_event_not_expected : S::imported_event_expected;
  }
  if (imported) {
    if (event.timestamp == 0 || event.timestamp > timestamp_max) {
      return S::imported_event_timestamp_out_of_range;
    }
    if (event.timestamp >= batch_timestamp) return S::imported_event_timestamp_must_not_advance;
  } else if (event.timestamp != 0) {
    return S::timestamp_must_be_zero;
  }
  if (event.flags & tf::reserved_mask) return S::reserved_flag;
  if (event.id == 0) return S::id_must_not_be_zero;
  if (event.id == u128_max) return S::id_must_not_be_int_max;

  if (const std::optional<u32> row = ledger_.transfer_find(event.id)) {
    const Transfer& existing = ledger_.transfer(*row);
    const CreateTransferStatus status = create_transfer_exists(event, existing);
    if (status == S::exists) *result_timestamp = existing.timestamp;
    return status;
  }
  if (ledger_.failed_count() > 0 && ledger_.failed_contains(event.id)) {
    return S::id_already_failed;
  }

  const u64 effective_timestamp = imported ? event.timestamp : timestamp;
  CreateTransferStatus status;
  if (event.flags & (tf::post_pending_transfer | tf::void_pending_transfer)) {
    // The event's own timestamp, not the effective one: TigerBeetle decides expiry (§7.6 step
    // 6) by the timestamp the event was assigned, even when an imported event stores its own.
    status = post_or_void(event, timestamp, imported, result_timestamp);
  } else {
    status = [&]() -> CreateTransferStatus {
      if (event.debit_account_id == 0) return S::debit_account_id_must_not_be_zero;
      if (event.debit_account_id == u128_max) return S::debit_account_id_must_not_be_int_max;
      if (event.credit_account_id == 0) return S::credit_account_id_must_not_be_zero;
      if (event.credit_account_id == u128_max) return S::credit_account_id_must_not_be_int_max;
      if (event.debit_account_id == event.credit_account_id) {
        return S::accounts_must_be_different;
      }
      if (event.pending_id != 0) return S::pending_id_must_be_zero;
      const bool pending = flag(event.flags, tf::pending);
      if (!pending) {
        if (event.timeout != 0) return S::timeout_reserved_for_pending_transfer;
        if (flag(event.flags, tf::closing_debit) || flag(event.flags, tf::closing_credit)) {
          return S::closing_transfer_must_be_pending;
        }
      }
      if (event.ledger == 0) return S::ledger_must_not_be_zero;
      if (event.code == 0) return S::code_must_not_be_zero;

      const std::optional<u32> debit_row = ledger_.account_find(event.debit_account_id);
      if (!debit_row.has_value()) return S::debit_account_not_found;
      const std::optional<u32> credit_row = ledger_.account_find(event.credit_account_id);
      if (!credit_row.has_value()) return S::credit_account_not_found;
      const Account& debit = ledger_.account(*debit_row);
      const Account& credit = ledger_.account(*credit_row);
      if (debit.ledger != credit.ledger) return S::accounts_must_have_the_same_ledger;
      if (event.ledger != debit.ledger) return S::transfer_must_have_the_same_ledger_as_accounts;

      if (imported) {
        if (event.timestamp <= ledger_.transfer_timestamp_max() ||
            ledger_.account_timestamp_exists(event.timestamp)) {
          return S::imported_event_timestamp_must_not_regress;
        }
        if (event.timestamp <= debit.timestamp) {
          return S::imported_event_timestamp_must_postdate_debit_account;
        }
        if (event.timestamp <= credit.timestamp) {
          return S::imported_event_timestamp_must_postdate_credit_account;
        }
        if (event.timeout != 0) return S::imported_event_timeout_must_be_zero;
      }
      if (flag(debit.flags, account_flags::closed)) return S::debit_account_already_closed;
      if (flag(credit.flags, account_flags::closed)) return S::credit_account_already_closed;

      u128 amount = event.amount;
      if (flag(event.flags, tf::balancing_debit)) {
        const u128 debits = debit.debits_posted + debit.debits_pending;  // Cannot overflow.
        amount = std::min(amount, subtract_saturating(debit.credits_posted, debits));
      }
      if (flag(event.flags, tf::balancing_credit)) {
        const u128 credits = credit.credits_posted + credit.credits_pending;
        amount = std::min(amount, subtract_saturating(credit.debits_posted, credits));
      }

      if (pending) {
        if (!add_checked(amount, debit.debits_pending)) return S::overflows_debits_pending;
        if (!add_checked(amount, credit.credits_pending)) return S::overflows_credits_pending;
      }
      if (!add_checked(amount, debit.debits_posted)) return S::overflows_debits_posted;
      if (!add_checked(amount, credit.credits_posted)) return S::overflows_credits_posted;
      const std::optional<u128> debits_after =
          add_checked(amount, debit.debits_pending + debit.debits_posted);
      if (!debits_after) return S::overflows_debits;
      const std::optional<u128> credits_after =
          add_checked(amount, credit.credits_pending + credit.credits_posted);
      if (!credits_after) return S::overflows_credits;
      if (u128{effective_timestamp} + u128{event.timeout} * nanoseconds_per_second >
          timestamp_max) {
        return S::overflows_timeout;
      }
      if (flag(debit.flags, account_flags::debits_must_not_exceed_credits) &&
          *debits_after > debit.credits_posted) {
        return S::exceeds_credits;
      }
      if (flag(credit.flags, account_flags::credits_must_not_exceed_debits) &&
          *credits_after > credit.debits_posted) {
        return S::exceeds_debits;
      }

      // In place: `debit` and `credit` refer to the same records, which is fine, nothing below
      // reads their old balances.
      Account& debit_modified = ledger_.account_modify(*debit_row);
      Account& credit_modified = ledger_.account_modify(*credit_row);
      if (pending) {
        debit_modified.debits_pending += amount;
        credit_modified.credits_pending += amount;
        if (flag(event.flags, tf::closing_debit)) debit_modified.flags |= account_flags::closed;
        if (flag(event.flags, tf::closing_credit)) credit_modified.flags |= account_flags::closed;
      } else {
        debit_modified.debits_posted += amount;
        credit_modified.credits_posted += amount;
      }
      // After the balances: the transfer's change event records the accounts as they are now.
      ledger_.transfer_insert(event, amount, effective_timestamp, *debit_row, *credit_row);
      *result_timestamp = effective_timestamp;
      return S::created;
    }();
  }
  if (status_is_transient(status)) ledger_.failed_insert(event.id);
  return status;
}

// §7.5: the id is taken by `existing`; which field differs decides the status.
CreateTransferStatus StateMachine::create_transfer_exists(const Transfer& event,
                                                          const Transfer& existing) {
  using S = CreateTransferStatus;
  namespace tf = transfer_flags;
  if (event.flags != existing.flags) return S::exists_with_different_flags;
  if (event.pending_id != existing.pending_id) return S::exists_with_different_pending_id;
  if (event.timeout != existing.timeout) return S::exists_with_different_timeout;

  const bool post = flag(event.flags, tf::post_pending_transfer);
  const bool void_ = flag(event.flags, tf::void_pending_transfer);
  if (!post && !void_) {
    if (event.debit_account_id != existing.debit_account_id) {
      return S::exists_with_different_debit_account_id;
    }
    if (event.credit_account_id != existing.credit_account_id) {
      return S::exists_with_different_credit_account_id;
    }
    const bool balancing =
        flag(event.flags, tf::balancing_debit) || flag(event.flags, tf::balancing_credit);
    if (balancing ? event.amount < existing.amount : event.amount != existing.amount) {
      return S::exists_with_different_amount;
    }
    if (event.user_data_128 != existing.user_data_128) {
      return S::exists_with_different_user_data_128;
    }
    if (event.user_data_64 != existing.user_data_64) return S::exists_with_different_user_data_64;
    if (event.user_data_32 != existing.user_data_32) return S::exists_with_different_user_data_32;
    if (event.ledger != existing.ledger) return S::exists_with_different_ledger;
    if (event.code != existing.code) return S::exists_with_different_code;
    return S::exists;
  }

  // A post or void: fields left zero were filled from the pending transfer `p`.
  const std::optional<u32> pending_row = ledger_.transfer_find(existing.pending_id);
  TALLY_ASSERT(pending_row.has_value(), "a stored post/void refers to a stored pending transfer");
  const Transfer& p = ledger_.transfer(*pending_row);
  if (event.debit_account_id != 0 && event.debit_account_id != existing.debit_account_id) {
    return S::exists_with_different_debit_account_id;
  }
  if (event.credit_account_id != 0 && event.credit_account_id != existing.credit_account_id) {
    return S::exists_with_different_credit_account_id;
  }
  const u128 amount_default = void_ ? 0 : u128_max;
  if (event.amount == amount_default ? existing.amount != p.amount
                                     : event.amount != existing.amount) {
    return S::exists_with_different_amount;
  }
  if (event.user_data_128 == 0 ? existing.user_data_128 != p.user_data_128
                               : event.user_data_128 != existing.user_data_128) {
    return S::exists_with_different_user_data_128;
  }
  if (event.user_data_64 == 0 ? existing.user_data_64 != p.user_data_64
                              : event.user_data_64 != existing.user_data_64) {
    return S::exists_with_different_user_data_64;
  }
  if (event.user_data_32 == 0 ? existing.user_data_32 != p.user_data_32
                              : event.user_data_32 != existing.user_data_32) {
    return S::exists_with_different_user_data_32;
  }
  if (event.ledger != 0 && event.ledger != existing.ledger) return S::exists_with_different_ledger;
  if (event.code != 0 && event.code != existing.code) return S::exists_with_different_code;
  return S::exists;
}

// §7.6: post or void the pending transfer `event.pending_id`. `timestamp` is the event's
// assigned timestamp; an imported event is stored with its own.
CreateTransferStatus StateMachine::post_or_void(const Transfer& event, u64 timestamp,
                                                bool imported, u64* result_timestamp) {
  using S = CreateTransferStatus;
  namespace tf = transfer_flags;
  const u64 effective_timestamp = imported ? event.timestamp : timestamp;
  const bool post = flag(event.flags, tf::post_pending_transfer);
  const bool void_ = flag(event.flags, tf::void_pending_transfer);
  TALLY_ASSERT(post || void_);
  constexpr u16 exclusive = tf::pending | tf::balancing_debit | tf::balancing_credit |
                            tf::closing_debit | tf::closing_credit;
  if ((post && void_) || (event.flags & exclusive)) return S::flags_are_mutually_exclusive;
  if (event.pending_id == 0) return S::pending_id_must_not_be_zero;
  if (event.pending_id == u128_max) return S::pending_id_must_not_be_int_max;
  if (event.pending_id == event.id) return S::pending_id_must_be_different;
  if (event.timeout != 0) return S::timeout_reserved_for_pending_transfer;

  const std::optional<u32> p_row = ledger_.transfer_find(event.pending_id);
  if (!p_row.has_value()) return S::pending_transfer_not_found;
  const Transfer p = ledger_.transfer(*p_row);
  if (!flag(p.flags, tf::pending)) return S::pending_transfer_not_pending;
  if (event.debit_account_id != 0 && event.debit_account_id != p.debit_account_id) {
    return S::pending_transfer_has_different_debit_account_id;
  }
  if (event.credit_account_id != 0 && event.credit_account_id != p.credit_account_id) {
    return S::pending_transfer_has_different_credit_account_id;
  }
  if (event.ledger != 0 && event.ledger != p.ledger) {
    return S::pending_transfer_has_different_ledger;
  }
  if (event.code != 0 && event.code != p.code) return S::pending_transfer_has_different_code;

  u128 amount;
  if (void_) {
    amount = event.amount == 0 ? p.amount : event.amount;
  } else {
    amount = event.amount == u128_max ? p.amount : event.amount;
  }
  if (amount > p.amount) return S::exceeds_pending_transfer_amount;
  if (void_ && amount < p.amount) return S::pending_transfer_has_different_amount;

  const u32 pending = ledger_.pending_of(*p_row);
  switch (ledger_.pending_status(pending)) {
    case PendingStatus::posted: return S::pending_transfer_already_posted;
    case PendingStatus::voided: return S::pending_transfer_already_voided;
    case PendingStatus::expired: return S::pending_transfer_expired;
    case PendingStatus::pending: break;
    case PendingStatus::none: TALLY_UNREACHABLE();
  }
  if (p.timeout > 0 && p.timestamp + u64{p.timeout} * nanoseconds_per_second <= timestamp) {
    return S::pending_transfer_expired;
  }
  if (imported && (event.timestamp <= ledger_.transfer_timestamp_max() ||
                   ledger_.account_timestamp_exists(event.timestamp))) {
    return S::imported_event_timestamp_must_not_regress;
  }

  const std::optional<u32> debit_row = ledger_.account_find(p.debit_account_id);
  const std::optional<u32> credit_row = ledger_.account_find(p.credit_account_id);
  TALLY_ASSERT(debit_row.has_value() && credit_row.has_value());
  const Account& debit = ledger_.account(*debit_row);
  const Account& credit = ledger_.account(*credit_row);
  if (flag(debit.flags, account_flags::closed) && !void_) return S::debit_account_already_closed;
  if (flag(credit.flags, account_flags::closed) && !void_) {
    return S::credit_account_already_closed;
  }

  Transfer transfer{};
  transfer.id = event.id;
  transfer.debit_account_id = p.debit_account_id;
  transfer.credit_account_id = p.credit_account_id;
  transfer.amount = amount;
  transfer.pending_id = event.pending_id;
  transfer.user_data_128 = event.user_data_128 != 0 ? event.user_data_128 : p.user_data_128;
  transfer.user_data_64 = event.user_data_64 != 0 ? event.user_data_64 : p.user_data_64;
  transfer.user_data_32 = event.user_data_32 != 0 ? event.user_data_32 : p.user_data_32;
  transfer.timeout = 0;
  transfer.ledger = p.ledger;
  transfer.code = p.code;
  transfer.flags = event.flags;
  transfer.timestamp = effective_timestamp;

  Account& debit_modified = ledger_.account_modify(*debit_row);
  Account& credit_modified = ledger_.account_modify(*credit_row);
  TALLY_ASSERT(debit_modified.debits_pending >= p.amount);
  TALLY_ASSERT(credit_modified.credits_pending >= p.amount);
  debit_modified.debits_pending -= p.amount;
  credit_modified.credits_pending -= p.amount;
  if (post) {
    // Pending plus posted never exceeds u128 (overflows_debits/credits), and this moves at most
    // p.amount from pending to posted.
    debit_modified.debits_posted += amount;
    credit_modified.credits_posted += amount;
  } else {
    if (flag(p.flags, tf::closing_debit)) account_flag_clear(debit_modified, account_flags::closed);
    if (flag(p.flags, tf::closing_credit)) {
      account_flag_clear(credit_modified, account_flags::closed);
    }
  }
  ledger_.pending_status_set(pending, post ? PendingStatus::posted : PendingStatus::voided);
  ledger_.transfer_insert(transfer, *debit_row, *credit_row);  // After the balances, as above.
  *result_timestamp = effective_timestamp;
  return S::created;
}

}  // namespace tally::state_machine
