// The simulator's reference model of the ledger: ordered maps and the few rules the simulator's
// workload can reach, written to be obviously right rather than fast.
//
// The workload (simulator.cpp) only sends what this model predicts exactly: accounts on one
// ledger without balance limits, created fresh or repeated exactly (exists); single-phase
// transfers and pending transfers with a timeout between accounts that may not exist yet (not
// found, which burns the id), created fresh or repeated exactly (exists); lookups of accounts
// and transfers. Pending transfers are never posted or voided: the primary's pulses expire them
// (pulse(), protocol §7.9), which the simulator learns from the replicas' committed log. The
// state machine's own randomized model test covers the full semantics; this model is what
// lets the simulator check every reply byte for byte after replication, crashes and retries.
//
// apply() runs one committed operation given its reply timestamp (protocol §7.1: the request's
// N events got P - N + 1 ... P) and returns the reply body the state machine must have sent.
#pragma once

#include <cstring>
#include <map>
#include <set>
#include <span>
#include <vector>

#include "tally/multi_batch.hpp"
#include "tally/operation.hpp"
#include "tally/records.hpp"
#include "tally/types.hpp"

namespace tally::simulator {

class LedgerModel {
 public:
  std::vector<std::byte> apply(Operation operation, std::span<const std::byte> body,
                               u64 timestamp) {
    switch (operation) {
      case Operation::create_accounts: return create_accounts(body, timestamp);
      case Operation::create_transfers: return create_transfers(body, timestamp);
      case Operation::lookup_accounts: return lookup_accounts(body);
      case Operation::lookup_transfers: return lookup_transfers(body);
      default: break;
    }
    std::abort();  // The workload sends nothing else.
  }

  // A pulse at `timestamp`: every pending transfer due by then expires (the workload never
  // has more due than one pulse takes). Returns how many.
  u32 pulse(u64 timestamp) {
    u32 expired = 0;
    for (auto position = expiries_.begin(); position != expiries_.end();) {
      if (position->second > timestamp) {
        ++position;
        continue;
      }
      const Transfer& transfer = transfers_.at(position->first);
      accounts_[transfer.debit_account_id].debits_pending -= transfer.amount;
      accounts_[transfer.credit_account_id].credits_pending -= transfer.amount;
      position = expiries_.erase(position);
      expired += 1;
    }
    return expired;
  }

  const std::map<u128, Account>& accounts() const { return accounts_; }
  const std::map<u128, Transfer>& transfers() const { return transfers_; }

 private:
  template <typename Event>
  static std::vector<std::vector<Event>> batches_of(std::span<const std::byte> body) {
    MultiBatchDecoder decoder;
    if (decoder.decode(body, sizeof(Event)) != MultiBatchError::none) std::abort();
    std::vector<std::vector<Event>> batches;
    for (const std::span<const std::byte> batch : decoder) {
      std::vector<Event> events(batch.size() / sizeof(Event));
      if (!events.empty()) std::memcpy(events.data(), batch.data(), batch.size());
      batches.push_back(std::move(events));
    }
    return batches;
  }

  template <typename Result>
  static std::vector<std::byte> encode(const std::vector<std::vector<Result>>& batches) {
    std::vector<std::byte> body(message_body_size_max);
    MultiBatchEncoder encoder(body, sizeof(Result));
    for (const std::vector<Result>& results : batches) {
      if (encoder.batch_begin() != MultiBatchEncodeError::none) std::abort();
      if (!results.empty()) {
        std::memcpy(encoder.writable().data(), results.data(), results.size() * sizeof(Result));
      }
      if (encoder.commit(static_cast<u32>(results.size())) != MultiBatchEncodeError::none) {
        std::abort();
      }
    }
    if (encoder.finish() != MultiBatchEncodeError::none) std::abort();
    body.resize(encoder.size());
    return body;
  }

  static u32 event_count(std::span<const std::byte> body, u32 event_size) {
    MultiBatchDecoder decoder;
    if (decoder.decode(body, event_size) != MultiBatchError::none) std::abort();
    return decoder.element_count_total();
  }

  std::vector<std::byte> create_accounts(std::span<const std::byte> body, u64 timestamp) {
    u64 event_timestamp = timestamp - event_count(body, sizeof(Account)) + 1;
    std::vector<std::vector<CreateAccountResult>> results;
    for (const std::vector<Account>& batch : batches_of<Account>(body)) {
      std::vector<CreateAccountResult>& out = results.emplace_back();
      for (const Account& event : batch) {
        CreateAccountResult result{};
        result.timestamp = event_timestamp;
        const auto found = accounts_.find(event.id);
        if (found != accounts_.end()) {
          result.status = CreateAccountStatus::exists;
          result.timestamp = found->second.timestamp;
        } else {
          Account account = event;
          account.timestamp = event_timestamp;
          accounts_[event.id] = account;
          result.status = CreateAccountStatus::created;
        }
        out.push_back(result);
        event_timestamp += 1;
      }
    }
    return encode(results);
  }

  std::vector<std::byte> create_transfers(std::span<const std::byte> body, u64 timestamp) {
    u64 event_timestamp = timestamp - event_count(body, sizeof(Transfer)) + 1;
    std::vector<std::vector<CreateTransferResult>> results;
    for (const std::vector<Transfer>& batch : batches_of<Transfer>(body)) {
      std::vector<CreateTransferResult>& out = results.emplace_back();
      for (const Transfer& event : batch) {
        CreateTransferResult result{};
        result.timestamp = event_timestamp;
        const auto found = transfers_.find(event.id);
        if (found != transfers_.end()) {
          result.status = CreateTransferStatus::exists;
          result.timestamp = found->second.timestamp;
        } else if (burned_.contains(event.id)) {
          result.status = CreateTransferStatus::id_already_failed;
        } else if (!accounts_.contains(event.debit_account_id)) {
          result.status = CreateTransferStatus::debit_account_not_found;
          burned_.insert(event.id);
        } else if (!accounts_.contains(event.credit_account_id)) {
          result.status = CreateTransferStatus::credit_account_not_found;
          burned_.insert(event.id);
        } else {
          Transfer transfer = event;
          transfer.timestamp = event_timestamp;
          transfers_[event.id] = transfer;
          if ((event.flags & transfer_flags::pending) != 0) {
            accounts_[event.debit_account_id].debits_pending += event.amount;
            accounts_[event.credit_account_id].credits_pending += event.amount;
            expiries_[event.id] = event_timestamp + u64{event.timeout} * 1'000'000'000;
          } else {
            accounts_[event.debit_account_id].debits_posted += event.amount;
            accounts_[event.credit_account_id].credits_posted += event.amount;
          }
          result.status = CreateTransferStatus::created;
        }
        out.push_back(result);
        event_timestamp += 1;
      }
    }
    return encode(results);
  }

  std::vector<std::byte> lookup_accounts(std::span<const std::byte> body) {
    std::vector<std::vector<Account>> results;
    for (const std::vector<u128>& batch : batches_of<u128>(body)) {
      std::vector<Account>& out = results.emplace_back();
      for (const u128 id : batch) {
        const auto found = accounts_.find(id);
        if (found != accounts_.end()) out.push_back(found->second);
      }
    }
    return encode(results);
  }

  std::vector<std::byte> lookup_transfers(std::span<const std::byte> body) {
    std::vector<std::vector<Transfer>> results;
    for (const std::vector<u128>& batch : batches_of<u128>(body)) {
      std::vector<Transfer>& out = results.emplace_back();
      for (const u128 id : batch) {
        const auto found = transfers_.find(id);
        if (found != transfers_.end()) out.push_back(found->second);
      }
    }
    return encode(results);
  }

  std::map<u128, Account> accounts_;
  std::map<u128, Transfer> transfers_;
  std::set<u128> burned_;
  std::map<u128, u64> expiries_;  // Pending transfer id -> when it expires.
};

}  // namespace tally::simulator
