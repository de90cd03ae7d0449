// A workload for the integration tests, through Tally's C++ client against real `tally start`
// processes (tests/integration/restart_test.sh, failover_test.sh and sync_test.sh kill and
// restart them while it runs).
//
//   ledger_workload --addresses=A [--batches=N] [--batch-size=N] [--verify-only]
//                   [--stop-file=PATH] [--hold-file=PATH] [--timestamps] [--pause-ms=N]
//
// Creates accounts 1 and 2 (exists is fine: the run may be repeated), then N batches (of 1000
// transfers by default) from 1 to 2 with ids 1.., amounts 1..7, each reply checked (created,
// or exists when the batch was already committed before a restart made the client retransmit
// it), then reads
// every transfer and both accounts back and checks that nothing acknowledged is missing or
// changed: every transfer with its amount, and both balances equal to the sum of the amounts.
// --verify-only skips the writes (a check after yet another restart). Exit 0 and "ok" on
// success; otherwise a message naming what is wrong, exit 1.
//
// For a load that lasts as long as its driver needs: --stop-file ends the writes early, before
// the first batch submitted after PATH exists, and the check then covers the batches written.
// --hold-file holds the writes while PATH exists (a driver lets a restarted replica catch up
// without the load running away from its repair), and they go on once it is gone.
// --timestamps ends each "acknowledged" line with " at_us=T", T the wall clock in microseconds
// (CLOCK_REALTIME, the clock a shell script reads as EPOCHREALTIME), so that a script can
// measure the time from an event it caused, such as a kill, to the next acknowledgement.
// --pause-ms waits N ms after each acknowledged batch: a steady load of a known rate, which
// keeps a replica that was down for seconds within a WAL's worth of ops of the others (it
// catches up by repair; further behind, it needs state sync, docs/vsr-protocol.md), and below
// the rate at which a restarted replica repairs what it missed.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <thread>
#include <vector>

#include "tally/client.hpp"
#include "tally/records.hpp"

namespace {

using namespace tally;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "ledger_workload: %s\n", what);
  std::exit(1);
}

u128 amount_of(u128 id) { return static_cast<u128>(id % 7 + 1); }

Transfer transfer_of(u128 id) {
  Transfer transfer{};
  transfer.id = id;
  transfer.debit_account_id = 1;
  transfer.credit_account_id = 2;
  transfer.amount = amount_of(id);
  transfer.ledger = 1;
  transfer.code = 1;
  return transfer;
}

void check(const ClientResult& result, const char* what) {
  if (result.ok()) return;
  std::fprintf(stderr, "ledger_workload: %s: %s\n", what, name(result.error));
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  std::string_view addresses;
  u64 batches = 20;
  u32 batch_size = 1000;
  bool verify_only = false;
  const char* stop_file = nullptr;
  const char* hold_file = nullptr;
  bool timestamps = false;
  u32 pause_ms = 0;
  for (int index = 1; index < argc; index += 1) {
    const std::string_view argument = argv[index];
    if (argument.starts_with("--addresses=")) {
      addresses = argument.substr(std::strlen("--addresses="));
    } else if (argument.starts_with("--batches=")) {
      batches = std::strtoull(argv[index] + std::strlen("--batches="), nullptr, 10);
    } else if (argument.starts_with("--batch-size=")) {
      batch_size = static_cast<u32>(
          std::strtoul(argv[index] + std::strlen("--batch-size="), nullptr, 10));
      if (batch_size == 0 || batch_size > 8189) {
        std::fprintf(stderr, "ledger_workload: --batch-size must be 1..8189\n");
        return 2;
      }
    } else if (argument == "--verify-only") {
      verify_only = true;
    } else if (argument.starts_with("--hold-file=")) {
      hold_file = argv[index] + std::strlen("--hold-file=");
    } else if (argument.starts_with("--stop-file=")) {
      stop_file = argv[index] + std::strlen("--stop-file=");
    } else if (argument == "--timestamps") {
      timestamps = true;
    } else if (argument.starts_with("--pause-ms=")) {
      pause_ms = static_cast<u32>(
          std::strtoul(argv[index] + std::strlen("--pause-ms="), nullptr, 10));
    } else {
      std::fprintf(stderr,
                   "usage: ledger_workload --addresses=A [--batches=N] [--batch-size=N] "
                   "[--verify-only] [--stop-file=PATH] [--hold-file=PATH] [--timestamps] "
                   "[--pause-ms=N]\n");
      return 2;
    }
  }
  Client client;
  if (client.open(ClientOptions{.cluster = 0, .addresses = addresses}) != ClientError::ok) {
    std::fprintf(stderr, "ledger_workload: %s\n", client.error_message());
    return 1;
  }

  if (!verify_only) {
    Account accounts[2] = {};
    for (u32 index = 0; index < 2; index += 1) {
      accounts[index].id = index + 1;
      accounts[index].ledger = 1;
      accounts[index].code = 1;
    }
    CreateAccountResult account_results[2];
    check(client.create_accounts(accounts, account_results), "create_accounts");
    for (const CreateAccountResult& result : account_results) {
      if (result.status != CreateAccountStatus::created &&
          result.status != CreateAccountStatus::exists) {
        fail("an account could not be created");
      }
    }
    std::vector<Transfer> transfers(batch_size);
    std::vector<CreateTransferResult> results(batch_size);
    const auto start = std::chrono::steady_clock::now();
    for (u64 batch = 0; batch < batches; batch += 1) {
      while (hold_file != nullptr && access(hold_file, F_OK) == 0 &&
             (stop_file == nullptr || access(stop_file, F_OK) != 0)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      if (stop_file != nullptr && access(stop_file, F_OK) == 0) {
        batches = batch;
        break;
      }
      for (u32 index = 0; index < batch_size; index += 1) {
        transfers[index] = transfer_of(u128{batch} * batch_size + index + 1);
      }
      check(client.create_transfers(transfers, results), "create_transfers");
      for (const CreateTransferResult& result : results) {
        if (result.status != CreateTransferStatus::created &&
            result.status != CreateTransferStatus::exists) {
          fail("a transfer was refused");
        }
      }
      if (timestamps) {
        const auto now = std::chrono::system_clock::now().time_since_epoch();
        std::printf("batch %lu acknowledged at_us=%lld\n", static_cast<unsigned long>(batch + 1),
                    static_cast<long long>(
                        std::chrono::duration_cast<std::chrono::microseconds>(now).count()));
      } else {
        std::printf("batch %lu acknowledged\n", static_cast<unsigned long>(batch + 1));
      }
      std::fflush(stdout);
      if (pause_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
    }
    // Informational (no test asserts on it): one request in flight, so this is latency-bound.
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    const u128 transfer_count = u128{batches} * batch_size;
    std::printf("written: %lu transfers in %.3f s, %.0f transfers/s, %.3f ms per request\n",
                static_cast<unsigned long>(transfer_count), elapsed.count(),
                static_cast<double>(transfer_count) / elapsed.count(),
                elapsed.count() * 1000.0 / static_cast<double>(batches));
  }

  // Everything acknowledged must be there, exactly.
  const u128 transfer_count = u128{batches} * batch_size;
  u128 total = 0;
  std::vector<u128> ids(batch_size);
  std::vector<Transfer> found(batch_size);
  for (u128 first = 1; first <= transfer_count; first += batch_size) {
    for (u32 index = 0; index < batch_size; index += 1) ids[index] = first + index;
    const ClientResult result = client.lookup_transfers(ids, found);
    check(result, "lookup_transfers");
    if (result.count != batch_size) fail("acknowledged transfers are missing");
    for (u32 index = 0; index < batch_size; index += 1) {
      if (found[index].id != ids[index] || found[index].amount != amount_of(ids[index]) ||
          found[index].timestamp == 0) {
        fail("a transfer came back different");
      }
      total += found[index].amount;
    }
  }
  const u128 account_ids[2] = {1, 2};
  Account accounts[2];
  const ClientResult result = client.lookup_accounts(account_ids, accounts);
  check(result, "lookup_accounts");
  if (result.count != 2) fail("an account is missing");
  if (accounts[0].debits_posted != total || accounts[1].credits_posted != total) {
    fail("the balances do not add up to the acknowledged transfers");
  }
  std::printf("ok: %lu transfers, balances match\n", static_cast<unsigned long>(transfer_count));
  return 0;
}
