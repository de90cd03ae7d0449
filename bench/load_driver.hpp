// The load behind `tally benchmark`: creates accounts, then transfers between random pairs of
// them, through Tally's C++ client against a running cluster, timing every request; then reads
// every account back and checks that the balances add up to what was acknowledged.
//
// One client, one request in flight (the protocol's rule for a session), so the throughput is
// batch size / request latency: what one TigerBeetle client sees. Ids are time-ordered (the
// run's start time in milliseconds in the high 64 bits, a counter in the low), as TigerBeetle's
// id() makes them, so runs against the same cluster never collide.
#pragma once

#include <string_view>

#include "tally/types.hpp"

namespace tally::bench {

struct LoadOptions {
  u128 cluster = 0;
  std::string_view addresses;
  u32 account_count = 10'000;
  u64 transfer_count = 10'000'000;
  u32 batch_size = 8189;  // Transfers per request.
  u64 seed = 0;           // Chooses the account pairs.
  // Per request; a cluster that does not answer within it fails the run.
  u64 request_timeout_ms = 120'000;
};

// Request latencies, in nanoseconds, at these fractions of the requests.
struct LatencySummary {
  u64 p1 = 0;
  u64 p50 = 0;
  u64 p99 = 0;
  u64 max = 0;
};

struct LoadReport {
  u64 accounts_ns = 0;   // Creating every account.
  u64 transfers_ns = 0;  // Creating every transfer.
  u64 transfer_requests = 0;
  LatencySummary transfer_latency;
};

// Runs the load; on failure returns false with a sentence in `error` (what failed and why).
bool load_run(const LoadOptions& options, LoadReport* report, char* error, u32 error_size);

}  // namespace tally::bench
