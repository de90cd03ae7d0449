// The C++ client of a Tally cluster (or of any server speaking the TigerBeetle 0.17 protocol).
//
//   tally::Client client;
//   if (client.open({.cluster = 0, .addresses = "3000"}) != tally::ClientError::ok) ...
//   tally::CreateAccountResult results[2];
//   tally::ClientResult result = client.create_accounts(accounts, results);
//   if (!result.ok()) std::printf("%s\n", tally::name(result.error));
//
// One Client is one session with the cluster (protocol §5): it registers on first use, then
// sends one request at a time and retransmits it until the cluster replies, so every call below
// blocks until its reply arrives (running the client's own io_uring loop; nothing runs between
// calls). Results go into spans the caller provides; the client allocates only in open().
//
// Invariants: a call returns an error rather than crashing on anything the network or the
// caller gives it; ClientError::ok means the cluster committed the request and every result was
// checked against the request (protocol §8.3) before it was copied out. After ClientError::
// timeout or ClientError::evicted the session is over: later calls return the same kind of
// error (timeout: ClientError::closed), and the request that timed out may still commit, so the
// caller has to look up whether it did, through a new Client. A Client belongs to the thread
// that opened it. docs/client.md describes retries, sessions and errors in full.
#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <span>
#include <string_view>

#include "tally/header.hpp"
#include "tally/operation.hpp"
#include "tally/records.hpp"
#include "tally/types.hpp"

namespace tally {

enum class ClientError : u8 {
  ok = 0,
  evicted,                  // The cluster ended the session (ClientResult::eviction_reason).
  closed,                   // Not open, closed, or unusable after a timeout.
  timeout,                  // The deadline passed without a reply; the request may still commit.
  address_invalid,          // open(): the address list does not parse (see error_message()).
  options_invalid,          // open(): an option outside its limits, or the client already open.
  operation_invalid,        // Not an operation a client may submit (register, pulse, unknown).
  body_invalid,             // A submit() body that does not decode for its operation.
  batch_too_large,          // More events than one request holds, or a query limit above 8189.
  result_buffer_too_small,  // The results span cannot hold every result the reply may carry.
  reply_invalid,            // The cluster's reply body breaks §8.3 (a server bug).
  queue_full,               // Session level only: its request queue or message pool is full.
};

constexpr const char* name(ClientError error) {
  switch (error) {
    case ClientError::ok: return "ok";
    case ClientError::evicted: return "evicted";
    case ClientError::closed: return "closed";
    case ClientError::timeout: return "timeout";
    case ClientError::address_invalid: return "address_invalid";
    case ClientError::options_invalid: return "options_invalid";
    case ClientError::operation_invalid: return "operation_invalid";
    case ClientError::body_invalid: return "body_invalid";
    case ClientError::batch_too_large: return "batch_too_large";
    case ClientError::result_buffer_too_small: return "result_buffer_too_small";
    case ClientError::reply_invalid: return "reply_invalid";
    case ClientError::queue_full: return "queue_full";
  }
  return "unknown";
}

// The longest deadline open() accepts: a day, far above any sensible call and far below
// overflow of the nanosecond clock arithmetic.
inline constexpr u64 client_timeout_ms_max = 24ull * 60 * 60 * 1000;

struct ClientOptions {
  u128 cluster = 0;
  // 1 to 6 replica addresses, by replica index: "3000,127.0.0.1:3001,[::1]:3002".
  std::string_view addresses;
  // How long a blocking call waits for its reply, in milliseconds; 0 waits for ever. A call
  // that reaches it returns ClientError::timeout and closes the session (see the top comment).
  u64 timeout_ms = 0;
};

struct ClientResult {
  ClientError error = ClientError::ok;
  EvictionReason eviction_reason = EvictionReason::reserved;  // Set with ClientError::evicted.
  // Results written to the caller's span (submit(): bytes of reply body written).
  u32 count = 0;
  // The reply's timestamp: the request's commit time in the cluster (0 unless ok).
  u64 timestamp = 0;

  bool ok() const { return error == ClientError::ok; }
};

class Client {
 public:
  Client();
  ~Client();
  Client(Client&& other) noexcept;
  Client& operator=(Client&& other) noexcept;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Allocates everything the client will use and starts connecting; does not wait for the
  // cluster (the first call does). Returns address_invalid or options_invalid (also when already
  // open) without side effects; error_message() then says why.
  ClientError open(const ClientOptions& options);
  // Ends the session. Idempotent. The destructor closes too.
  void close();
  bool is_open() const;

  // One result per account, in order. `results` must hold accounts.size() entries.
  ClientResult create_accounts(std::span<const Account> accounts,
                               std::span<CreateAccountResult> results);
  ClientResult create_transfers(std::span<const Transfer> transfers,
                                std::span<CreateTransferResult> results);
  // The records found, in the order of `ids` (missing ids are skipped). `accounts` must hold
  // ids.size() entries.
  ClientResult lookup_accounts(std::span<const u128> ids, std::span<Account> accounts);
  ClientResult lookup_transfers(std::span<const u128> ids, std::span<Transfer> transfers);
  // Queries: `results` must hold filter.limit entries; a limit above 8189 is batch_too_large.
  ClientResult get_account_transfers(const AccountFilter& filter, std::span<Transfer> transfers);
  ClientResult get_account_balances(const AccountFilter& filter,
                                    std::span<AccountBalance> balances);
  ClientResult query_accounts(const QueryFilter& filter, std::span<Account> accounts);
  ClientResult query_transfers(const QueryFilter& filter, std::span<Transfer> transfers);

  // Any state-machine operation with a body already encoded (multi-batch, §8.2, for operations
  // 138..147). The reply body is checked against the request's batches and copied into
  // `reply_body`, which must hold the largest reply the request may produce.
  ClientResult submit(Operation operation, std::span<const std::byte> body,
                      std::span<std::byte> reply_body);

  // Zero until open(); the session number is zero until the cluster registered the client.
  u128 client_id() const;
  u64 session() const;
  // The highest view a reply or pong has named (0 until one arrives): at least the view of the
  // cluster's last prepare this client saw committed.
  u32 view() const;
  // The largest request body the cluster accepts (message_body_size_max until registered).
  u32 batch_size_limit() const;
  // A sentence about the last open() error, e.g. which address did not parse; "" if none.
  const char* error_message() const;

 private:
  struct Implementation;
  std::unique_ptr<Implementation> implementation_;
  std::array<char, 256> error_message_ = {};
};

}  // namespace tally
