// Operations and create-result statuses of the TigerBeetle 0.17 protocol (§6.1, §6.4, §8.5).
//
// `Operation` is the u8 at offset 196 of a request header (236 of a reply). Values 0..127 belong
// to VSR (only 0..6 are defined), 128.. to the state machine (only 128..147 are defined); any u8
// may arrive from the network, so an `Operation` is never assumed to hold a named value.
//
// Per-operation metadata (event and result sizes, encoding, limits) is a constexpr table that
// records.hpp checks against the record types and that §8.5 pins down with static_asserts.
// Limits assume the batch_size_limit Tally announces (the protocol maximum).
#pragma once

#include "tally/constants.hpp"
#include "tally/types.hpp"

namespace tally {

enum class Operation : u8 {
  // VSR operations, common to every state machine.
  reserved = 0,  // Never valid: guards against a zeroed header.
  root = 1,      // The cluster's first prepare; never requested by a client.
  register_session = 2,  // "register" on the wire (a C++ keyword): opens a client session.
  reconfigure = 3,
  pulse = 4,  // The primary's own request to expire pending transfers (§5.6).
  upgrade = 5,
  noop = 6,

  // State-machine operations (128 + n).
  state_machine_pulse = 128,  // How the state machine sees a VSR pulse.
  deprecated_create_accounts_unbatched = 129,
  deprecated_create_transfers_unbatched = 130,
  deprecated_lookup_accounts_unbatched = 131,
  deprecated_lookup_transfers_unbatched = 132,
  deprecated_get_account_transfers_unbatched = 133,
  deprecated_get_account_balances_unbatched = 134,
  deprecated_query_accounts_unbatched = 135,
  deprecated_query_transfers_unbatched = 136,
  get_change_events = 137,
  deprecated_create_accounts_sparse = 138,
  deprecated_create_transfers_sparse = 139,
  lookup_accounts = 140,
  lookup_transfers = 141,
  get_account_transfers = 142,
  get_account_balances = 143,
  query_accounts = 144,
  query_transfers = 145,
  create_accounts = 146,
  create_transfers = 147,
};

inline constexpr u8 operation_vsr_last = 6;
inline constexpr u8 operation_state_machine_last = 147;

static_assert(static_cast<u8>(Operation::state_machine_pulse) == vsr_operations_reserved);

constexpr bool operation_is_vsr(Operation operation) {
  return static_cast<u8>(operation) < vsr_operations_reserved;
}

constexpr bool operation_is_state_machine(Operation operation) {
  const u8 value = static_cast<u8>(operation);
  return value >= vsr_operations_reserved && value <= operation_state_machine_last;
}

// Whether the value names an operation of §6.1 (VSR 0..6 or state machine 128..147).
constexpr bool operation_known(Operation operation) {
  return static_cast<u8>(operation) <= operation_vsr_last || operation_is_state_machine(operation);
}

// What a request of one state-machine operation carries and what its reply may hold.
struct OperationInfo {
  u32 event_size;   // Bytes per request element (a record, an id or a filter); 0: no body.
  u32 result_size;  // Bytes per reply element; 0: no reply body.
  bool multi_batch;  // Request and reply bodies use the §8.2 trailer.
  bool batchable;    // Many events per batch (creates, lookups); else exactly one filter.
  u32 event_max;     // Events per batch (1 for filters).
  u32 result_max;    // Results per batch.
};

namespace operation_detail {

constexpr u32 min(u32 a, u32 b) { return a < b ? a : b; }

// The limits of §8.5, as TigerBeetle derives them: a batch must fit the request body next to the
// smallest trailer, and its worst-case results must fit the reply body next to theirs. Raw
// (not multi-batch) bodies have no trailer. A filter operation takes one event per batch.
constexpr OperationInfo info_make(u32 event_size, u32 result_size, bool multi_batch,
                                  bool batchable) {
  OperationInfo info{
      .event_size = event_size,
      .result_size = result_size,
      .multi_batch = multi_batch,
      .batchable = batchable,
      .event_max = 0,
      .result_max = 0,
  };
  if (result_size == 0) return info;
  const u32 result_fit = multi_batch ? multi_batch_element_max(result_size)
                                     : message_body_size_max / result_size;
  if (batchable) {
    const u32 event_fit = multi_batch ? multi_batch_element_max(event_size)
                                      : batch_size_limit / event_size;
    info.event_max = min(event_fit, result_fit);
    info.result_max = info.event_max;
  } else {
    info.event_max = 1;
    info.result_max = result_fit;
  }
  return info;
}

}  // namespace operation_detail

// Metadata of a state-machine operation; all zero for VSR operations and unknown values.
constexpr OperationInfo operation_info(Operation operation) {
  using operation_detail::info_make;
  switch (operation) {
    case Operation::state_machine_pulse: return info_make(0, 0, false, false);
    case Operation::deprecated_create_accounts_unbatched:
      return info_make(account_size, create_error_result_size, false, true);
    case Operation::deprecated_create_transfers_unbatched:
      return info_make(transfer_size, create_error_result_size, false, true);
    case Operation::deprecated_lookup_accounts_unbatched:
      return info_make(id_size, account_size, false, true);
    case Operation::deprecated_lookup_transfers_unbatched:
      return info_make(id_size, transfer_size, false, true);
    case Operation::deprecated_get_account_transfers_unbatched:
      return info_make(account_filter_size, transfer_size, false, false);
    case Operation::deprecated_get_account_balances_unbatched:
      return info_make(account_filter_size, account_balance_size, false, false);
    case Operation::deprecated_query_accounts_unbatched:
      return info_make(query_filter_size, account_size, false, false);
    case Operation::deprecated_query_transfers_unbatched:
      return info_make(query_filter_size, transfer_size, false, false);
    case Operation::get_change_events:
      return info_make(change_events_filter_size, change_event_size, false, false);
    case Operation::deprecated_create_accounts_sparse:
      return info_make(account_size, create_error_result_size, true, true);
    case Operation::deprecated_create_transfers_sparse:
      return info_make(transfer_size, create_error_result_size, true, true);
    case Operation::lookup_accounts: return info_make(id_size, account_size, true, true);
    case Operation::lookup_transfers: return info_make(id_size, transfer_size, true, true);
    case Operation::get_account_transfers:
      return info_make(account_filter_size, transfer_size, true, false);
    case Operation::get_account_balances:
      return info_make(account_filter_size, account_balance_size, true, false);
    case Operation::query_accounts: return info_make(query_filter_size, account_size, true, false);
    case Operation::query_transfers:
      return info_make(query_filter_size, transfer_size, true, false);
    case Operation::create_accounts:
      return info_make(account_size, create_result_size, true, true);
    case Operation::create_transfers:
      return info_make(transfer_size, create_result_size, true, true);
    case Operation::reserved:
    case Operation::root:
    case Operation::register_session:
    case Operation::reconfigure:
    case Operation::pulse:
    case Operation::upgrade:
    case Operation::noop: return OperationInfo{};
  }
  return OperationInfo{};
}

constexpr u32 operation_event_size(Operation operation) {
  return operation_info(operation).event_size;
}
constexpr u32 operation_result_size(Operation operation) {
  return operation_info(operation).result_size;
}
constexpr bool operation_is_multi_batch(Operation operation) {
  return operation_info(operation).multi_batch;
}
constexpr bool operation_is_batchable(Operation operation) {
  return operation_info(operation).batchable;
}
constexpr u32 operation_event_max(Operation operation) {
  return operation_info(operation).event_max;
}
constexpr u32 operation_result_max(Operation operation) {
  return operation_info(operation).result_max;
}

// §8.5, row by row.
static_assert(operation_event_max(Operation::create_accounts) == 8189);
static_assert(operation_result_max(Operation::create_accounts) == 8189);
static_assert(operation_event_max(Operation::create_transfers) == 8189);
static_assert(operation_event_max(Operation::lookup_accounts) == 8189);
static_assert(operation_result_max(Operation::lookup_transfers) == 8189);
static_assert(operation_event_max(Operation::get_account_transfers) == 1);
static_assert(operation_result_max(Operation::get_account_balances) == 8189);
static_assert(operation_result_max(Operation::query_accounts) == 8189);
static_assert(operation_result_max(Operation::query_transfers) == 8189);
static_assert(operation_event_max(Operation::get_change_events) == 1);
static_assert(operation_result_max(Operation::get_change_events) == 2730);
static_assert(operation_event_max(Operation::create_accounts) == create_event_max);
static_assert(operation_event_max(Operation::lookup_accounts) == lookup_event_max);
static_assert(operation_result_max(Operation::query_accounts) == query_result_max);
static_assert(operation_result_max(Operation::get_change_events) == change_events_result_max);
// Raw arrays have no trailer, so one more element fits.
static_assert(operation_event_max(Operation::deprecated_create_accounts_unbatched) == 8190);
static_assert(!operation_is_multi_batch(Operation::get_change_events));
static_assert(operation_is_multi_batch(Operation::create_transfers));
static_assert(operation_info(Operation::register_session).event_size == 0);

// ---------------------------------------------------------------------------------------------
// Create-result statuses (§6.4). `created` is u32 max; `deprecated_ok` (0) only ever appeared in
// the deprecated sparse results, which list failures only.

enum class CreateAccountStatus : u32 {
  deprecated_ok = 0,
  linked_event_failed = 1,
  linked_event_chain_open = 2,
  timestamp_must_be_zero = 3,
  reserved_field = 4,
  reserved_flag = 5,
  id_must_not_be_zero = 6,
  id_must_not_be_int_max = 7,
  flags_are_mutually_exclusive = 8,
  debits_pending_must_be_zero = 9,
  debits_posted_must_be_zero = 10,
  credits_pending_must_be_zero = 11,
  credits_posted_must_be_zero = 12,
  ledger_must_not_be_zero = 13,
  code_must_not_be_zero = 14,
  exists_with_different_flags = 15,
  exists_with_different_user_data_128 = 16,
  exists_with_different_user_data_64 = 17,
  exists_with_different_user_data_32 = 18,
  exists_with_different_ledger = 19,
  exists_with_different_code = 20,
  exists = 21,
  imported_event_expected = 22,
  imported_event_not_expected = 23,
  imported_event_timestamp_out_of_range = 24,
  imported_event_timestamp_must_not_advance = 25,
  imported_event_timestamp_must_not_regress = 26,
  created = 0xFFFFFFFF,
};

enum class CreateTransferStatus : u32 {
  deprecated_ok = 0,
  linked_event_failed = 1,
  linked_event_chain_open = 2,
  timestamp_must_be_zero = 3,
  reserved_flag = 4,
  id_must_not_be_zero = 5,
  id_must_not_be_int_max = 6,
  flags_are_mutually_exclusive = 7,
  debit_account_id_must_not_be_zero = 8,
  debit_account_id_must_not_be_int_max = 9,
  credit_account_id_must_not_be_zero = 10,
  credit_account_id_must_not_be_int_max = 11,
  accounts_must_be_different = 12,
  pending_id_must_be_zero = 13,
  pending_id_must_not_be_zero = 14,
  pending_id_must_not_be_int_max = 15,
  pending_id_must_be_different = 16,
  timeout_reserved_for_pending_transfer = 17,
  deprecated_amount_must_not_be_zero = 18,  // Retired: never produced.
  ledger_must_not_be_zero = 19,
  code_must_not_be_zero = 20,
  debit_account_not_found = 21,
  credit_account_not_found = 22,
  accounts_must_have_the_same_ledger = 23,
  transfer_must_have_the_same_ledger_as_accounts = 24,
  pending_transfer_not_found = 25,
  pending_transfer_not_pending = 26,
  pending_transfer_has_different_debit_account_id = 27,
  pending_transfer_has_different_credit_account_id = 28,
  pending_transfer_has_different_ledger = 29,
  pending_transfer_has_different_code = 30,
  exceeds_pending_transfer_amount = 31,
  pending_transfer_has_different_amount = 32,
  pending_transfer_already_posted = 33,
  pending_transfer_already_voided = 34,
  pending_transfer_expired = 35,
  exists_with_different_flags = 36,
  exists_with_different_debit_account_id = 37,
  exists_with_different_credit_account_id = 38,
  exists_with_different_amount = 39,
  exists_with_different_pending_id = 40,
  exists_with_different_user_data_128 = 41,
  exists_with_different_user_data_64 = 42,
  exists_with_different_user_data_32 = 43,
  exists_with_different_timeout = 44,
  exists_with_different_code = 45,
  exists = 46,
  overflows_debits_pending = 47,
  overflows_credits_pending = 48,
  overflows_debits_posted = 49,
  overflows_credits_posted = 50,
  overflows_debits = 51,
  overflows_credits = 52,
  overflows_timeout = 53,
  exceeds_credits = 54,
  exceeds_debits = 55,
  imported_event_expected = 56,
  imported_event_not_expected = 57,
  imported_event_timestamp_out_of_range = 58,
  imported_event_timestamp_must_not_advance = 59,
  imported_event_timestamp_must_not_regress = 60,
  imported_event_timestamp_must_postdate_debit_account = 61,
  imported_event_timestamp_must_postdate_credit_account = 62,
  imported_event_timeout_must_be_zero = 63,
  closing_transfer_must_be_pending = 64,
  debit_account_already_closed = 65,
  credit_account_already_closed = 66,
  exists_with_different_ledger = 67,
  id_already_failed = 68,
  created = 0xFFFFFFFF,
};

// ---------------------------------------------------------------------------------------------
// Names, as the protocol spells them (the CLI prints and parses these). Unnamed values give
// "unknown". The switches have no default, so -Wswitch catches a value added without a name.

constexpr const char* name(Operation operation) {
  switch (operation) {
    case Operation::reserved: return "reserved";
    case Operation::root: return "root";
    case Operation::register_session: return "register";
    case Operation::reconfigure: return "reconfigure";
    case Operation::pulse: return "pulse";
    case Operation::upgrade: return "upgrade";
    case Operation::noop: return "noop";
    case Operation::state_machine_pulse: return "state_machine_pulse";
    case Operation::deprecated_create_accounts_unbatched:
      return "deprecated_create_accounts_unbatched";
    case Operation::deprecated_create_transfers_unbatched:
      return "deprecated_create_transfers_unbatched";
    case Operation::deprecated_lookup_accounts_unbatched:
      return "deprecated_lookup_accounts_unbatched";
    case Operation::deprecated_lookup_transfers_unbatched:
      return "deprecated_lookup_transfers_unbatched";
    case Operation::deprecated_get_account_transfers_unbatched:
      return "deprecated_get_account_transfers_unbatched";
    case Operation::deprecated_get_account_balances_unbatched:
      return "deprecated_get_account_balances_unbatched";
    case Operation::deprecated_query_accounts_unbatched:
      return "deprecated_query_accounts_unbatched";
    case Operation::deprecated_query_transfers_unbatched:
      return "deprecated_query_transfers_unbatched";
    case Operation::get_change_events: return "get_change_events";
    case Operation::deprecated_create_accounts_sparse: return "deprecated_create_accounts_sparse";
    case Operation::deprecated_create_transfers_sparse:
      return "deprecated_create_transfers_sparse";
    case Operation::lookup_accounts: return "lookup_accounts";
    case Operation::lookup_transfers: return "lookup_transfers";
    case Operation::get_account_transfers: return "get_account_transfers";
    case Operation::get_account_balances: return "get_account_balances";
    case Operation::query_accounts: return "query_accounts";
    case Operation::query_transfers: return "query_transfers";
    case Operation::create_accounts: return "create_accounts";
    case Operation::create_transfers: return "create_transfers";
  }
  return "unknown";
}

constexpr const char* name(CreateAccountStatus status) {
  using S = CreateAccountStatus;
  switch (status) {
    case S::deprecated_ok: return "deprecated_ok";
    case S::linked_event_failed: return "linked_event_failed";
    case S::linked_event_chain_open: return "linked_event_chain_open";
    case S::timestamp_must_be_zero: return "timestamp_must_be_zero";
    case S::reserved_field: return "reserved_field";
    case S::reserved_flag: return "reserved_flag";
    case S::id_must_not_be_zero: return "id_must_not_be_zero";
    case S::id_must_not_be_int_max: return "id_must_not_be_int_max";
    case S::flags_are_mutually_exclusive: return "flags_are_mutually_exclusive";
    case S::debits_pending_must_be_zero: return "debits_pending_must_be_zero";
    case S::debits_posted_must_be_zero: return "debits_posted_must_be_zero";
    case S::credits_pending_must_be_zero: return "credits_pending_must_be_zero";
    case S::credits_posted_must_be_zero: return "credits_posted_must_be_zero";
    case S::ledger_must_not_be_zero: return "ledger_must_not_be_zero";
    case S::code_must_not_be_zero: return "code_must_not_be_zero";
    case S::exists_with_different_flags: return "exists_with_different_flags";
    case S::exists_with_different_user_data_128: return "exists_with_different_user_data_128";
    case S::exists_with_different_user_data_64: return "exists_with_different_user_data_64";
    case S::exists_with_different_user_data_32: return "exists_with_different_user_data_32";
    case S::exists_with_different_ledger: return "exists_with_different_ledger";
    case S::exists_with_different_code: return "exists_with_different_code";
    case S::exists: return "exists";
    case S::imported_event_expected: return "imported_event_expected";
    case S::imported_event_not_expected: return "imported_event_not_expected";
    case S::imported_event_timestamp_out_of_range: return "imported_event_timestamp_out_of_range";
    case S::imported_event_timestamp_must_not_advance:
      return "imported_event_timestamp_must_not_advance";
    case S::imported_event_timestamp_must_not_regress:
      return "imported_event_timestamp_must_not_regress";
    case S::created: return "created";
  }
  return "unknown";
}

constexpr const char* name(CreateTransferStatus status) {
  using S = CreateTransferStatus;
  switch (status) {
    case S::deprecated_ok: return "deprecated_ok";
    case S::linked_event_failed: return "linked_event_failed";
    case S::linked_event_chain_open: return "linked_event_chain_open";
    case S::timestamp_must_be_zero: return "timestamp_must_be_zero";
    case S::reserved_flag: return "reserved_flag";
    case S::id_must_not_be_zero: return "id_must_not_be_zero";
    case S::id_must_not_be_int_max: return "id_must_not_be_int_max";
    case S::flags_are_mutually_exclusive: return "flags_are_mutually_exclusive";
    case S::debit_account_id_must_not_be_zero: return "debit_account_id_must_not_be_zero";
    case S::debit_account_id_must_not_be_int_max: return "debit_account_id_must_not_be_int_max";
    case S::credit_account_id_must_not_be_zero: return "credit_account_id_must_not_be_zero";
    case S::credit_account_id_must_not_be_int_max:
      return "credit_account_id_must_not_be_int_max";
    case S::accounts_must_be_different: return "accounts_must_be_different";
    case S::pending_id_must_be_zero: return "pending_id_must_be_zero";
    case S::pending_id_must_not_be_zero: return "pending_id_must_not_be_zero";
    case S::pending_id_must_not_be_int_max: return "pending_id_must_not_be_int_max";
    case S::pending_id_must_be_different: return "pending_id_must_be_different";
    case S::timeout_reserved_for_pending_transfer:
      return "timeout_reserved_for_pending_transfer";
    case S::deprecated_amount_must_not_be_zero: return "deprecated_amount_must_not_be_zero";
    case S::ledger_must_not_be_zero: return "ledger_must_not_be_zero";
    case S::code_must_not_be_zero: return "code_must_not_be_zero";
    case S::debit_account_not_found: return "debit_account_not_found";
    case S::credit_account_not_found: return "credit_account_not_found";
    case S::accounts_must_have_the_same_ledger: return "accounts_must_have_the_same_ledger";
    case S::transfer_must_have_the_same_ledger_as_accounts:
      return "transfer_must_have_the_same_ledger_as_accounts";
    case S::pending_transfer_not_found: return "pending_transfer_not_found";
    case S::pending_transfer_not_pending: return "pending_transfer_not_pending";
    case S::pending_transfer_has_different_debit_account_id:
      return "pending_transfer_has_different_debit_account_id";
    case S::pending_transfer_has_different_credit_account_id:
      return "pending_transfer_has_different_credit_account_id";
    case S::pending_transfer_has_different_ledger: return "pending_transfer_has_different_ledger";
    case S::pending_transfer_has_different_code: return "pending_transfer_has_different_code";
    case S::exceeds_pending_transfer_amount: return "exceeds_pending_transfer_amount";
    case S::pending_transfer_has_different_amount: return "pending_transfer_has_different_amount";
    case S::pending_transfer_already_posted: return "pending_transfer_already_posted";
    case S::pending_transfer_already_voided: return "pending_transfer_already_voided";
    case S::pending_transfer_expired: return "pending_transfer_expired";
    case S::exists_with_different_flags: return "exists_with_different_flags";
    case S::exists_with_different_debit_account_id:
      return "exists_with_different_debit_account_id";
    case S::exists_with_different_credit_account_id:
      return "exists_with_different_credit_account_id";
    case S::exists_with_different_amount: return "exists_with_different_amount";
    case S::exists_with_different_pending_id: return "exists_with_different_pending_id";
    case S::exists_with_different_user_data_128: return "exists_with_different_user_data_128";
    case S::exists_with_different_user_data_64: return "exists_with_different_user_data_64";
    case S::exists_with_different_user_data_32: return "exists_with_different_user_data_32";
    case S::exists_with_different_timeout: return "exists_with_different_timeout";
    case S::exists_with_different_code: return "exists_with_different_code";
    case S::exists: return "exists";
    case S::overflows_debits_pending: return "overflows_debits_pending";
    case S::overflows_credits_pending: return "overflows_credits_pending";
    case S::overflows_debits_posted: return "overflows_debits_posted";
    case S::overflows_credits_posted: return "overflows_credits_posted";
    case S::overflows_debits: return "overflows_debits";
    case S::overflows_credits: return "overflows_credits";
    case S::overflows_timeout: return "overflows_timeout";
    case S::exceeds_credits: return "exceeds_credits";
    case S::exceeds_debits: return "exceeds_debits";
    case S::imported_event_expected: return "imported_event_expected";
    case S::imported_event_not_expected: return "imported_event_not_expected";
    case S::imported_event_timestamp_out_of_range: return "imported_event_timestamp_out_of_range";
    case S::imported_event_timestamp_must_not_advance:
      return "imported_event_timestamp_must_not_advance";
    case S::imported_event_timestamp_must_not_regress:
      return "imported_event_timestamp_must_not_regress";
    case S::imported_event_timestamp_must_postdate_debit_account:
      return "imported_event_timestamp_must_postdate_debit_account";
    case S::imported_event_timestamp_must_postdate_credit_account:
      return "imported_event_timestamp_must_postdate_credit_account";
    case S::imported_event_timeout_must_be_zero: return "imported_event_timeout_must_be_zero";
    case S::closing_transfer_must_be_pending: return "closing_transfer_must_be_pending";
    case S::debit_account_already_closed: return "debit_account_already_closed";
    case S::credit_account_already_closed: return "credit_account_already_closed";
    case S::exists_with_different_ledger: return "exists_with_different_ledger";
    case S::id_already_failed: return "id_already_failed";
    case S::created: return "created";
  }
  return "unknown";
}

}  // namespace tally
