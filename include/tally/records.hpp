// The records of the TigerBeetle 0.17 protocol (§5.1, §6.2-§6.8): what request and reply bodies
// carry, laid out byte for byte as on the wire and in the journal.
//
// Invariants, all checked at compile time below: every record has the exact size, alignment and
// field offsets of the protocol; no record has implicit padding (so hashing, comparing or copying
// raw bytes is well defined and nothing uninitialised is ever sent); every record size matches
// the operation table of operation.hpp. Fields named `reserved` must be zero when sent.
// Integers are little-endian; Tally runs on little-endian hosts only.
#pragma once

#include <bit>
#include <cstddef>
#include <type_traits>

#include "tally/constants.hpp"
#include "tally/operation.hpp"
#include "tally/types.hpp"

namespace tally {

static_assert(std::endian::native == std::endian::little, "the wire format is little-endian");

// ---------------------------------------------------------------------------------------------
// Flags.

namespace account_flags {
inline constexpr u16 linked = 1 << 0;
inline constexpr u16 debits_must_not_exceed_credits = 1 << 1;
inline constexpr u16 credits_must_not_exceed_debits = 1 << 2;
inline constexpr u16 history = 1 << 3;
inline constexpr u16 imported = 1 << 4;
inline constexpr u16 closed = 1 << 5;
inline constexpr u16 reserved_mask = 0xFFC0;  // Bits 6-15.
}  // namespace account_flags

namespace transfer_flags {
inline constexpr u16 linked = 1 << 0;
inline constexpr u16 pending = 1 << 1;
inline constexpr u16 post_pending_transfer = 1 << 2;
inline constexpr u16 void_pending_transfer = 1 << 3;
inline constexpr u16 balancing_debit = 1 << 4;
inline constexpr u16 balancing_credit = 1 << 5;
inline constexpr u16 closing_debit = 1 << 6;
inline constexpr u16 closing_credit = 1 << 7;
inline constexpr u16 imported = 1 << 8;
inline constexpr u16 reserved_mask = 0xFE00;  // Bits 9-15.
}  // namespace transfer_flags

namespace account_filter_flags {
inline constexpr u32 debits = 1u << 0;
inline constexpr u32 credits = 1u << 1;
inline constexpr u32 reversed = 1u << 2;
inline constexpr u32 reserved_mask = 0xFFFFFFF8;  // Bits 3-31.
}  // namespace account_filter_flags

namespace query_filter_flags {
inline constexpr u32 reversed = 1u << 0;
inline constexpr u32 reserved_mask = 0xFFFFFFFE;  // Bits 1-31.
}  // namespace query_filter_flags

// Every bit is either a named flag or reserved, never both.
static_assert((account_flags::linked | account_flags::debits_must_not_exceed_credits |
               account_flags::credits_must_not_exceed_debits | account_flags::history |
               account_flags::imported | account_flags::closed) ==
              static_cast<u16>(~account_flags::reserved_mask));
static_assert((transfer_flags::linked | transfer_flags::pending |
               transfer_flags::post_pending_transfer | transfer_flags::void_pending_transfer |
               transfer_flags::balancing_debit | transfer_flags::balancing_credit |
               transfer_flags::closing_debit | transfer_flags::closing_credit |
               transfer_flags::imported) == static_cast<u16>(~transfer_flags::reserved_mask));
static_assert((account_filter_flags::debits | account_filter_flags::credits |
               account_filter_flags::reversed) == ~account_filter_flags::reserved_mask);
static_assert(query_filter_flags::reversed == ~query_filter_flags::reserved_mask);

// ---------------------------------------------------------------------------------------------
// Records.

struct alignas(16) Account {
  u128 id;
  u128 debits_pending;
  u128 debits_posted;
  u128 credits_pending;
  u128 credits_posted;
  u128 user_data_128;
  u64 user_data_64;
  u32 user_data_32;
  u32 reserved;  // Non-zero in a create is `reserved_field`; always zero in output.
  u32 ledger;
  u16 code;
  u16 flags;  // account_flags.
  u64 timestamp;
};

struct alignas(16) Transfer {
  u128 id;
  u128 debit_account_id;
  u128 credit_account_id;
  u128 amount;
  u128 pending_id;
  u128 user_data_128;
  u64 user_data_64;
  u32 user_data_32;
  u32 timeout;  // Seconds.
  u32 ledger;
  u16 code;
  u16 flags;  // transfer_flags.
  u64 timestamp;
};

// Dense results of create_accounts / create_transfers: one per event, in event order.
struct alignas(8) CreateAccountResult {
  u64 timestamp;
  CreateAccountStatus status;
  u32 reserved;
};

struct alignas(8) CreateTransferResult {
  u64 timestamp;
  CreateTransferStatus status;
  u32 reserved;
};

// Sparse results of the deprecated create operations: failures only, `index` within the batch.
struct CreateAccountErrorResult {
  u32 index;
  CreateAccountStatus status;
};

struct CreateTransferErrorResult {
  u32 index;
  CreateTransferStatus status;
};

// The event of get_account_transfers / get_account_balances. Zero in an optional field means
// "no filter on this field".
struct alignas(16) AccountFilter {
  u128 account_id;
  u128 user_data_128;
  u64 user_data_64;
  u32 user_data_32;
  u16 code;
  u8 reserved[58];
  u64 timestamp_min;  // Inclusive; 0: none.
  u64 timestamp_max;  // Inclusive; 0: none.
  u32 limit;
  u32 flags;  // account_filter_flags.
};

// The event of query_accounts / query_transfers.
struct alignas(16) QueryFilter {
  u128 user_data_128;
  u64 user_data_64;
  u32 user_data_32;
  u32 ledger;
  u16 code;
  u8 reserved[6];
  u64 timestamp_min;
  u64 timestamp_max;
  u32 limit;
  u32 flags;  // query_filter_flags.
};

// A result of get_account_balances: one account's balances right after one transfer.
struct alignas(16) AccountBalance {
  u128 debits_pending;
  u128 debits_posted;
  u128 credits_pending;
  u128 credits_posted;
  u64 timestamp;
  u8 reserved[56];
};

// The body of a register request and of its reply (§5.1).
struct RegisterRequest {
  u32 batch_size_limit;  // Clients send 0.
  u8 reserved[252];
};

struct RegisterResult {
  u32 batch_size_limit;  // 0 < limit <= message_body_size_max, or the client crashes.
  u8 reserved[60];
};

// get_change_events (op 137), not reachable from the Node client.
struct alignas(8) ChangeEventsFilter {
  u64 timestamp_min;
  u64 timestamp_max;
  u32 limit;
  u8 reserved[44];
};

enum class ChangeEventType : u8 {
  single_phase = 0,
  two_phase_pending = 1,
  two_phase_posted = 2,
  two_phase_voided = 3,
  two_phase_expired = 4,
};

struct alignas(16) ChangeEvent {
  u128 transfer_id;
  u128 transfer_amount;
  u128 transfer_pending_id;
  u128 transfer_user_data_128;
  u64 transfer_user_data_64;
  u32 transfer_user_data_32;
  u32 transfer_timeout;
  u16 transfer_code;
  u16 transfer_flags;
  u32 ledger;
  ChangeEventType type;
  u8 reserved[39];

  u128 debit_account_id;
  u128 debit_account_debits_pending;
  u128 debit_account_debits_posted;
  u128 debit_account_credits_pending;
  u128 debit_account_credits_posted;
  u128 debit_account_user_data_128;
  u64 debit_account_user_data_64;
  u32 debit_account_user_data_32;
  u16 debit_account_code;
  u16 debit_account_flags;

  u128 credit_account_id;
  u128 credit_account_debits_pending;
  u128 credit_account_debits_posted;
  u128 credit_account_credits_pending;
  u128 credit_account_credits_posted;
  u128 credit_account_user_data_128;
  u64 credit_account_user_data_64;
  u32 credit_account_user_data_32;
  u16 credit_account_code;
  u16 credit_account_flags;

  u64 timestamp;
  u64 transfer_timestamp;
  u64 debit_account_timestamp;
  u64 credit_account_timestamp;
};

constexpr const char* name(ChangeEventType type) {
  switch (type) {
    case ChangeEventType::single_phase: return "single_phase";
    case ChangeEventType::two_phase_pending: return "two_phase_pending";
    case ChangeEventType::two_phase_posted: return "two_phase_posted";
    case ChangeEventType::two_phase_voided: return "two_phase_voided";
    case ChangeEventType::two_phase_expired: return "two_phase_expired";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------
// Layout checks: size, alignment, every offset, no padding, safe to copy as bytes.

#define TALLY_RECORD_FIELD_(type, field, offset) static_assert(offsetof(type, field) == (offset))

namespace records_detail {

template <typename Record>
constexpr bool layout_plain = std::is_trivially_copyable_v<Record> &&
                              std::is_standard_layout_v<Record> &&
                              std::has_unique_object_representations_v<Record>;

static_assert(sizeof(Account) == 128 && alignof(Account) == 16 && layout_plain<Account>);
TALLY_RECORD_FIELD_(Account, id, 0);
TALLY_RECORD_FIELD_(Account, debits_pending, 16);
TALLY_RECORD_FIELD_(Account, debits_posted, 32);
TALLY_RECORD_FIELD_(Account, credits_pending, 48);
TALLY_RECORD_FIELD_(Account, credits_posted, 64);
TALLY_RECORD_FIELD_(Account, user_data_128, 80);
TALLY_RECORD_FIELD_(Account, user_data_64, 96);
TALLY_RECORD_FIELD_(Account, user_data_32, 104);
TALLY_RECORD_FIELD_(Account, reserved, 108);
TALLY_RECORD_FIELD_(Account, ledger, 112);
TALLY_RECORD_FIELD_(Account, code, 116);
TALLY_RECORD_FIELD_(Account, flags, 118);
TALLY_RECORD_FIELD_(Account, timestamp, 120);

static_assert(sizeof(Transfer) == 128 && alignof(Transfer) == 16 &&
              layout_plain<Transfer>);
TALLY_RECORD_FIELD_(Transfer, id, 0);
TALLY_RECORD_FIELD_(Transfer, debit_account_id, 16);
TALLY_RECORD_FIELD_(Transfer, credit_account_id, 32);
TALLY_RECORD_FIELD_(Transfer, amount, 48);
TALLY_RECORD_FIELD_(Transfer, pending_id, 64);
TALLY_RECORD_FIELD_(Transfer, user_data_128, 80);
TALLY_RECORD_FIELD_(Transfer, user_data_64, 96);
TALLY_RECORD_FIELD_(Transfer, user_data_32, 104);
TALLY_RECORD_FIELD_(Transfer, timeout, 108);
TALLY_RECORD_FIELD_(Transfer, ledger, 112);
TALLY_RECORD_FIELD_(Transfer, code, 116);
TALLY_RECORD_FIELD_(Transfer, flags, 118);
TALLY_RECORD_FIELD_(Transfer, timestamp, 120);

static_assert(sizeof(CreateAccountResult) == 16 && alignof(CreateAccountResult) == 8 &&
              layout_plain<CreateAccountResult>);
TALLY_RECORD_FIELD_(CreateAccountResult, timestamp, 0);
TALLY_RECORD_FIELD_(CreateAccountResult, status, 8);
TALLY_RECORD_FIELD_(CreateAccountResult, reserved, 12);

static_assert(sizeof(CreateTransferResult) == 16 && alignof(CreateTransferResult) == 8 &&
              layout_plain<CreateTransferResult>);
TALLY_RECORD_FIELD_(CreateTransferResult, timestamp, 0);
TALLY_RECORD_FIELD_(CreateTransferResult, status, 8);
TALLY_RECORD_FIELD_(CreateTransferResult, reserved, 12);

static_assert(sizeof(CreateAccountErrorResult) == 8 && alignof(CreateAccountErrorResult) == 4 &&
              layout_plain<CreateAccountErrorResult>);
TALLY_RECORD_FIELD_(CreateAccountErrorResult, index, 0);
TALLY_RECORD_FIELD_(CreateAccountErrorResult, status, 4);

static_assert(sizeof(CreateTransferErrorResult) == 8 && alignof(CreateTransferErrorResult) == 4 &&
              layout_plain<CreateTransferErrorResult>);
TALLY_RECORD_FIELD_(CreateTransferErrorResult, index, 0);
TALLY_RECORD_FIELD_(CreateTransferErrorResult, status, 4);

static_assert(sizeof(AccountFilter) == 128 && alignof(AccountFilter) == 16 &&
              layout_plain<AccountFilter>);
TALLY_RECORD_FIELD_(AccountFilter, account_id, 0);
TALLY_RECORD_FIELD_(AccountFilter, user_data_128, 16);
TALLY_RECORD_FIELD_(AccountFilter, user_data_64, 32);
TALLY_RECORD_FIELD_(AccountFilter, user_data_32, 40);
TALLY_RECORD_FIELD_(AccountFilter, code, 44);
TALLY_RECORD_FIELD_(AccountFilter, reserved, 46);
TALLY_RECORD_FIELD_(AccountFilter, timestamp_min, 104);
TALLY_RECORD_FIELD_(AccountFilter, timestamp_max, 112);
TALLY_RECORD_FIELD_(AccountFilter, limit, 120);
TALLY_RECORD_FIELD_(AccountFilter, flags, 124);

static_assert(sizeof(QueryFilter) == 64 && alignof(QueryFilter) == 16 &&
              layout_plain<QueryFilter>);
TALLY_RECORD_FIELD_(QueryFilter, user_data_128, 0);
TALLY_RECORD_FIELD_(QueryFilter, user_data_64, 16);
TALLY_RECORD_FIELD_(QueryFilter, user_data_32, 24);
TALLY_RECORD_FIELD_(QueryFilter, ledger, 28);
TALLY_RECORD_FIELD_(QueryFilter, code, 32);
TALLY_RECORD_FIELD_(QueryFilter, reserved, 34);
TALLY_RECORD_FIELD_(QueryFilter, timestamp_min, 40);
TALLY_RECORD_FIELD_(QueryFilter, timestamp_max, 48);
TALLY_RECORD_FIELD_(QueryFilter, limit, 56);
TALLY_RECORD_FIELD_(QueryFilter, flags, 60);

static_assert(sizeof(AccountBalance) == 128 && alignof(AccountBalance) == 16 &&
              layout_plain<AccountBalance>);
TALLY_RECORD_FIELD_(AccountBalance, debits_pending, 0);
TALLY_RECORD_FIELD_(AccountBalance, debits_posted, 16);
TALLY_RECORD_FIELD_(AccountBalance, credits_pending, 32);
TALLY_RECORD_FIELD_(AccountBalance, credits_posted, 48);
TALLY_RECORD_FIELD_(AccountBalance, timestamp, 64);
TALLY_RECORD_FIELD_(AccountBalance, reserved, 72);

static_assert(sizeof(RegisterRequest) == 256 && alignof(RegisterRequest) == 4 &&
              layout_plain<RegisterRequest>);
TALLY_RECORD_FIELD_(RegisterRequest, batch_size_limit, 0);
TALLY_RECORD_FIELD_(RegisterRequest, reserved, 4);

static_assert(sizeof(RegisterResult) == 64 && alignof(RegisterResult) == 4 &&
              layout_plain<RegisterResult>);
TALLY_RECORD_FIELD_(RegisterResult, batch_size_limit, 0);
TALLY_RECORD_FIELD_(RegisterResult, reserved, 4);

static_assert(sizeof(ChangeEventsFilter) == 64 && alignof(ChangeEventsFilter) == 8 &&
              layout_plain<ChangeEventsFilter>);
TALLY_RECORD_FIELD_(ChangeEventsFilter, timestamp_min, 0);
TALLY_RECORD_FIELD_(ChangeEventsFilter, timestamp_max, 8);
TALLY_RECORD_FIELD_(ChangeEventsFilter, limit, 16);
TALLY_RECORD_FIELD_(ChangeEventsFilter, reserved, 20);

static_assert(sizeof(ChangeEvent) == 384 && alignof(ChangeEvent) == 16 &&
              layout_plain<ChangeEvent>);
TALLY_RECORD_FIELD_(ChangeEvent, transfer_id, 0);
TALLY_RECORD_FIELD_(ChangeEvent, transfer_amount, 16);
TALLY_RECORD_FIELD_(ChangeEvent, transfer_pending_id, 32);
TALLY_RECORD_FIELD_(ChangeEvent, transfer_user_data_128, 48);
TALLY_RECORD_FIELD_(ChangeEvent, transfer_user_data_64, 64);
TALLY_RECORD_FIELD_(ChangeEvent, transfer_user_data_32, 72);
TALLY_RECORD_FIELD_(ChangeEvent, transfer_timeout, 76);
TALLY_RECORD_FIELD_(ChangeEvent, transfer_code, 80);
TALLY_RECORD_FIELD_(ChangeEvent, transfer_flags, 82);
TALLY_RECORD_FIELD_(ChangeEvent, ledger, 84);
TALLY_RECORD_FIELD_(ChangeEvent, type, 88);
TALLY_RECORD_FIELD_(ChangeEvent, reserved, 89);
TALLY_RECORD_FIELD_(ChangeEvent, debit_account_id, 128);
TALLY_RECORD_FIELD_(ChangeEvent, debit_account_debits_pending, 144);
TALLY_RECORD_FIELD_(ChangeEvent, debit_account_debits_posted, 160);
TALLY_RECORD_FIELD_(ChangeEvent, debit_account_credits_pending, 176);
TALLY_RECORD_FIELD_(ChangeEvent, debit_account_credits_posted, 192);
TALLY_RECORD_FIELD_(ChangeEvent, debit_account_user_data_128, 208);
TALLY_RECORD_FIELD_(ChangeEvent, debit_account_user_data_64, 224);
TALLY_RECORD_FIELD_(ChangeEvent, debit_account_user_data_32, 232);
TALLY_RECORD_FIELD_(ChangeEvent, debit_account_code, 236);
TALLY_RECORD_FIELD_(ChangeEvent, debit_account_flags, 238);
TALLY_RECORD_FIELD_(ChangeEvent, credit_account_id, 240);
TALLY_RECORD_FIELD_(ChangeEvent, credit_account_debits_pending, 256);
TALLY_RECORD_FIELD_(ChangeEvent, credit_account_debits_posted, 272);
TALLY_RECORD_FIELD_(ChangeEvent, credit_account_credits_pending, 288);
TALLY_RECORD_FIELD_(ChangeEvent, credit_account_credits_posted, 304);
TALLY_RECORD_FIELD_(ChangeEvent, credit_account_user_data_128, 320);
TALLY_RECORD_FIELD_(ChangeEvent, credit_account_user_data_64, 336);
TALLY_RECORD_FIELD_(ChangeEvent, credit_account_user_data_32, 344);
TALLY_RECORD_FIELD_(ChangeEvent, credit_account_code, 348);
TALLY_RECORD_FIELD_(ChangeEvent, credit_account_flags, 350);
TALLY_RECORD_FIELD_(ChangeEvent, timestamp, 352);
TALLY_RECORD_FIELD_(ChangeEvent, transfer_timestamp, 360);
TALLY_RECORD_FIELD_(ChangeEvent, debit_account_timestamp, 368);
TALLY_RECORD_FIELD_(ChangeEvent, credit_account_timestamp, 376);

#undef TALLY_RECORD_FIELD_

}  // namespace records_detail

// The sizes the limits of constants.hpp were computed from.
static_assert(sizeof(Account) == account_size);
static_assert(sizeof(Transfer) == transfer_size);
static_assert(sizeof(u128) == id_size);
static_assert(sizeof(CreateAccountResult) == create_result_size);
static_assert(sizeof(CreateAccountErrorResult) == create_error_result_size);
static_assert(sizeof(AccountFilter) == account_filter_size);
static_assert(sizeof(QueryFilter) == query_filter_size);
static_assert(sizeof(AccountBalance) == account_balance_size);
static_assert(sizeof(ChangeEventsFilter) == change_events_filter_size);
static_assert(sizeof(ChangeEvent) == change_event_size);

// The operation table agrees with the record types, on both sides of each operation.
namespace records_detail {

template <typename Event, typename Result>
constexpr bool types_match(Operation operation) {
  return operation_event_size(operation) == sizeof(Event) &&
         operation_result_size(operation) == sizeof(Result);
}

using O = Operation;
static_assert(types_match<Account, CreateAccountErrorResult>(
    O::deprecated_create_accounts_unbatched));
static_assert(types_match<Transfer, CreateTransferErrorResult>(
    O::deprecated_create_transfers_unbatched));
static_assert(types_match<u128, Account>(O::deprecated_lookup_accounts_unbatched));
static_assert(types_match<u128, Transfer>(O::deprecated_lookup_transfers_unbatched));
static_assert(types_match<AccountFilter, Transfer>(O::deprecated_get_account_transfers_unbatched));
static_assert(
    types_match<AccountFilter, AccountBalance>(O::deprecated_get_account_balances_unbatched));
static_assert(types_match<QueryFilter, Account>(O::deprecated_query_accounts_unbatched));
static_assert(types_match<QueryFilter, Transfer>(O::deprecated_query_transfers_unbatched));
static_assert(types_match<ChangeEventsFilter, ChangeEvent>(O::get_change_events));
static_assert(types_match<Account, CreateAccountErrorResult>(O::deprecated_create_accounts_sparse));
static_assert(
    types_match<Transfer, CreateTransferErrorResult>(O::deprecated_create_transfers_sparse));
static_assert(types_match<u128, Account>(O::lookup_accounts));
static_assert(types_match<u128, Transfer>(O::lookup_transfers));
static_assert(types_match<AccountFilter, Transfer>(O::get_account_transfers));
static_assert(types_match<AccountFilter, AccountBalance>(O::get_account_balances));
static_assert(types_match<QueryFilter, Account>(O::query_accounts));
static_assert(types_match<QueryFilter, Transfer>(O::query_transfers));
static_assert(types_match<Account, CreateAccountResult>(O::create_accounts));
static_assert(types_match<Transfer, CreateTransferResult>(O::create_transfers));

}  // namespace records_detail

}  // namespace tally
