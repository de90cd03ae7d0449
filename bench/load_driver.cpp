// The load behind `tally benchmark` (see load_driver.hpp).
#include "bench/load_driver.hpp"

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <vector>

#include "src/base/prng.hpp"
#include "tally/client.hpp"
#include "tally/constants.hpp"
#include "tally/records.hpp"

namespace tally::bench {

namespace {

using Clock = std::chrono::steady_clock;

u64 elapsed_ns(Clock::time_point start) {
  return static_cast<u64>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
}

bool failed(char* error, u32 error_size, const char* format, ...) {
  va_list arguments;
  va_start(arguments, format);
  std::vsnprintf(error, error_size, format, arguments);
  va_end(arguments);
  return false;
}

// The latency below which `percent` of the sorted samples fall.
u64 percentile(const std::vector<u64>& sorted, u64 percent) {
  const u64 index = std::min<u64>(sorted.size() - 1, sorted.size() * percent / 100);
  return sorted[index];
}

u128 amount_of(u64 sequence) { return u128{sequence % 100 + 1}; }

}  // namespace

bool load_run(const LoadOptions& options, LoadReport* report, char* error, u32 error_size) {
  if (options.account_count < 2 || options.batch_size == 0 ||
      options.batch_size > create_event_max) {
    return failed(error, error_size, "invalid load options");
  }
  *report = LoadReport{};
  Client client;
  if (client.open({.cluster = options.cluster,
                   .addresses = options.addresses,
                   .timeout_ms = options.request_timeout_ms}) != ClientError::ok) {
    return failed(error, error_size, "%s", client.error_message());
  }
  // Registers the session, and waits out a replica still starting, outside the timings.
  {
    const u128 id = 1;
    Account unused;
    const ClientResult result = client.lookup_accounts({&id, 1}, {&unused, 1});
    if (!result.ok()) return failed(error, error_size, "register: %s", name(result.error));
  }
  // Time-ordered ids, unique per run (load_driver.hpp).
  const u128 id_base =
      u128{static_cast<u64>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count())}
      << 64;
  const auto account_id = [&](u32 index) { return id_base | (u128{index} + 1); };

  // Accounts, in requests of as many as one holds.
  const u32 account_batch_max = create_event_max;
  std::vector<Account> accounts(std::min(options.account_count, account_batch_max));
  std::vector<CreateAccountResult> account_results(accounts.size());
  const Clock::time_point accounts_start = Clock::now();
  for (u32 first = 0; first < options.account_count; first += account_batch_max) {
    const u32 count = std::min(account_batch_max, options.account_count - first);
    for (u32 index = 0; index < count; index += 1) {
      accounts[index] = Account{};
      accounts[index].id = account_id(first + index);
      accounts[index].ledger = 1;
      accounts[index].code = 1;
    }
    const ClientResult result = client.create_accounts(
        std::span(accounts).first(count), std::span(account_results).first(count));
    if (!result.ok()) {
      return failed(error, error_size, "create_accounts: %s", name(result.error));
    }
    for (u32 index = 0; index < count; index += 1) {
      if (account_results[index].status != CreateAccountStatus::created) {
        return failed(error, error_size, "create_accounts: account %u: status %u",
                      first + index, static_cast<u32>(account_results[index].status));
      }
    }
  }
  report->accounts_ns = elapsed_ns(accounts_start);

  // Transfers between uniformly random distinct accounts.
  base::Prng prng(options.seed);
  const u64 request_count =
      (options.transfer_count + options.batch_size - 1) / options.batch_size;
  std::vector<u64> latencies;
  latencies.reserve(request_count);
  std::vector<Transfer> transfers(options.batch_size);
  std::vector<CreateTransferResult> transfer_results(options.batch_size);
  u128 amount_total = 0;
  const Clock::time_point transfers_start = Clock::now();
  for (u64 first = 0; first < options.transfer_count; first += options.batch_size) {
    const u32 count =
        static_cast<u32>(std::min<u64>(options.batch_size, options.transfer_count - first));
    for (u32 index = 0; index < count; index += 1) {
      const u64 sequence = first + index;
      const u32 debit = prng.index(options.account_count);
      u32 credit = prng.index(options.account_count - 1);
      if (credit >= debit) credit += 1;
      Transfer& transfer = transfers[index];
      transfer = Transfer{};
      transfer.id = id_base | (u128{sequence} + 1);
      transfer.debit_account_id = account_id(debit);
      transfer.credit_account_id = account_id(credit);
      transfer.amount = amount_of(sequence);
      transfer.ledger = 1;
      transfer.code = 1;
      amount_total += transfer.amount;
    }
    const Clock::time_point request_start = Clock::now();
    const ClientResult result = client.create_transfers(
        std::span(transfers).first(count), std::span(transfer_results).first(count));
    latencies.push_back(elapsed_ns(request_start));
    if (result.error == ClientError::timeout) {
      return failed(error, error_size,
                    "create_transfers: no reply in %llu s after %llu transfers. Is the "
                    "cluster's ledger full? (A replica says so on its standard error.)",
                    static_cast<unsigned long long>(options.request_timeout_ms / 1000),
                    static_cast<unsigned long long>(first));
    }
    if (!result.ok()) {
      return failed(error, error_size, "create_transfers: %s", name(result.error));
    }
    for (u32 index = 0; index < count; index += 1) {
      if (transfer_results[index].status != CreateTransferStatus::created) {
        return failed(error, error_size, "create_transfers: transfer %llu: status %u",
                      static_cast<unsigned long long>(first + index),
                      static_cast<u32>(transfer_results[index].status));
      }
    }
  }
  report->transfers_ns = elapsed_ns(transfers_start);
  report->transfer_requests = latencies.size();
  if (!latencies.empty()) {
    std::sort(latencies.begin(), latencies.end());
    report->transfer_latency = {.p1 = percentile(latencies, 1),
                                .p50 = percentile(latencies, 50),
                                .p99 = percentile(latencies, 99),
                                .max = latencies.back()};
  }

  // Every acknowledged transfer is in the balances: debits and credits both add up to it.
  std::vector<u128> ids(std::min(options.account_count, lookup_event_max));
  std::vector<Account> found(ids.size());
  u128 debits_total = 0;
  u128 credits_total = 0;
  for (u32 first = 0; first < options.account_count; first += lookup_event_max) {
    const u32 count = std::min(lookup_event_max, options.account_count - first);
    for (u32 index = 0; index < count; index += 1) ids[index] = account_id(first + index);
    const ClientResult result =
        client.lookup_accounts(std::span(ids).first(count), std::span(found).first(count));
    if (!result.ok()) {
      return failed(error, error_size, "lookup_accounts: %s", name(result.error));
    }
    if (result.count != count) {
      return failed(error, error_size, "lookup_accounts: %u of %u accounts missing",
                    count - result.count, count);
    }
    for (u32 index = 0; index < count; index += 1) {
      debits_total += found[index].debits_posted;
      credits_total += found[index].credits_posted;
    }
  }
  if (debits_total != amount_total || credits_total != amount_total) {
    return failed(error, error_size,
                  "the accounts' balances do not add up to the acknowledged transfers");
  }
  return true;
}

}  // namespace tally::bench
