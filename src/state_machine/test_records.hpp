// Test-only: Account and Transfer records built from designated initializers with the defaults
// the state machine's tests want (ledger 1, code 1, everything else zero), e.g.
//   account_of({.id = 7, .flags = account_flags::history})
//   transfer_of({.id = 1, .debit_account_id = 7, .credit_account_id = 8, .amount = 10})
// Fields must be named in declaration order (C++20). Never included by library code.
#pragma once

#include "tally/records.hpp"
#include "tally/types.hpp"

namespace tally::state_machine::testing {

struct AccountSpec {
  u128 id = 0;
  u128 debits_pending = 0;
  u128 debits_posted = 0;
  u128 credits_pending = 0;
  u128 credits_posted = 0;
  u128 user_data_128 = 0;
  u64 user_data_64 = 0;
  u32 user_data_32 = 0;
  u32 reserved = 0;
  u32 ledger = 1;
  u16 code = 1;
  u16 flags = 0;
  u64 timestamp = 0;
};

inline Account account_of(const AccountSpec& spec) {
  Account account{};
  account.id = spec.id;
  account.debits_pending = spec.debits_pending;
  account.debits_posted = spec.debits_posted;
  account.credits_pending = spec.credits_pending;
  account.credits_posted = spec.credits_posted;
  account.user_data_128 = spec.user_data_128;
  account.user_data_64 = spec.user_data_64;
  account.user_data_32 = spec.user_data_32;
  account.reserved = spec.reserved;
  account.ledger = spec.ledger;
  account.code = spec.code;
  account.flags = spec.flags;
  account.timestamp = spec.timestamp;
  return account;
}

struct TransferSpec {
  u128 id = 0;
  u128 debit_account_id = 0;
  u128 credit_account_id = 0;
  u128 amount = 0;
  u128 pending_id = 0;
  u128 user_data_128 = 0;
  u64 user_data_64 = 0;
  u32 user_data_32 = 0;
  u32 timeout = 0;
  u32 ledger = 1;
  u16 code = 1;
  u16 flags = 0;
  u64 timestamp = 0;
};

inline Transfer transfer_of(const TransferSpec& spec) {
  Transfer transfer{};
  transfer.id = spec.id;
  transfer.debit_account_id = spec.debit_account_id;
  transfer.credit_account_id = spec.credit_account_id;
  transfer.amount = spec.amount;
  transfer.pending_id = spec.pending_id;
  transfer.user_data_128 = spec.user_data_128;
  transfer.user_data_64 = spec.user_data_64;
  transfer.user_data_32 = spec.user_data_32;
  transfer.timeout = spec.timeout;
  transfer.ledger = spec.ledger;
  transfer.code = spec.code;
  transfer.flags = spec.flags;
  transfer.timestamp = spec.timestamp;
  return transfer;
}

}  // namespace tally::state_machine::testing
