// `tally start --addresses=A0,A1,... [--cluster=N] FILE`: runs the replica that FILE belongs to.
//
// The composition root of a server: one thread, one io_uring loop, one message pool, the TCP
// message bus, the replica over the O_DIRECT data file. Everything is allocated here, then the
// heap is sealed (allocations afterwards are counted, and reported at exit). The replica's
// index, the cluster and the replica count come from the data file; the address list must have
// one entry per replica, and this replica listens on its own entry. `--cluster`, if given, must
// be the data file's cluster: a guard against starting a file of another cluster by mistake.
//
// Stops: SIGINT or SIGTERM end the loop at the next tick, with a clean exit 0 (what was
// acknowledged is durable at every moment, so a kill -9 loses nothing either); environmental
// problems stop through base::fatal with their exit codes (a port in use, a data file of
// another cluster or replica count, a damaged WAL). A port or data file lock that is busy is
// retried for up to 3 s first: a replica killed a moment ago still holds both until its
// io_uring is torn down (io/released_soon.hpp), and a supervisor restarts at once.
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <memory>

#include "io/address.hpp"
#include "io/file_storage.hpp"
#include "io/loop.hpp"
#include "io/message_bus.hpp"
#include "io/time.hpp"
#include "journal/layout.hpp"
#include "journal/superblock.hpp"
#include "src/base/allocation_guard.hpp"
#include "src/base/assert.hpp"
#include "src/base/message_pool.hpp"
#include "src/cli/arguments.hpp"
#include "src/cli/commands.hpp"
#include "src/state_machine/config.hpp"
#include "src/vsr/replica.hpp"

namespace tally::cli {

namespace {

constexpr const char* start_usage =
    "usage: tally start --addresses=<address,...> [--cluster=<integer>] <file>\n";

// Messages: every connection's receive buffer and send queue, the replica's pipeline, prepare
// cache, request queue and WAL writes. Buffers are committed by the kernel on first use.
constexpr u32 connections_max = 128;
constexpr u32 message_pool_capacity = 1024;
constexpr u64 tick_ns = 10'000'000;

volatile sig_atomic_t stop_requested = 0;

void on_stop_signal(int) { stop_requested = 1; }

using Replica = vsr::Replica<io::FileStorage, io::MessageBus, io::Time>;

struct Server {
  io::Loop loop;
  io::FileStorage storage;
  io::Time time;
  base::MessagePool pool;
  io::MessageBus bus;
  std::unique_ptr<Replica> replica;
  bool opened = false;
};

void on_message(void* context, base::Message* message) {
  static_cast<Server*>(context)->replica->on_message(message);
}

// The data file's superblock, read before the replica exists: it says which replica to run.
journal::Superblock superblock_read(io::Loop& loop, io::FileStorage& storage, const char* path) {
  using Store = journal::SuperblockStore<io::FileStorage>;
  auto store = std::make_unique<Store>(storage);
  bool done = false;
  store->context = &done;
  store->open(false, [](Store* s) { *static_cast<bool*>(s->context) = true; });
  while (!done) loop.run_once(1'000'000'000);
  if (store->result() != journal::SuperblockResult::ok) {
    base::fatal(base::FatalReason::data_file_invalid, "%s: %s", path,
                journal::superblock_result_message(store->result()));
  }
  return store->working();
}

// A full ledger refuses requests that might not fit, and their clients retry without an answer
// (no protocol status says "full"): the operator hears of it here, at most every 10 s.
class CapacityWarning {
 public:
  void tick(const Replica& replica) {
    ticks_ += 1;
    const u64 refused = replica.stats().requests_capacity_dropped;
    if (refused == refused_reported_ || ticks_ < ticks_next_) return;
    const state_machine::Ledger& ledger = replica.state_machine().ledger();
    const state_machine::Config& config = ledger.config();
    std::fprintf(stderr,
                 "tally: warning: the ledger is full: %llu requests refused so far (accounts "
                 "%u of %u, transfers %u of %u, pending transfers %u of %u, failed ids %u of "
                 "%u); their clients get no answer. More room needs a data file with larger "
                 "capacities.\n",
                 static_cast<unsigned long long>(refused), ledger.account_count(),
                 config.accounts_max, ledger.transfer_count(), config.transfers_max,
                 ledger.pending_count(), config.pending_transfers_max, ledger.failed_count(),
                 config.failed_transfer_ids_max);
    refused_reported_ = refused;
    ticks_next_ = ticks_ + interval_ticks;
  }

 private:
  static constexpr u64 interval_ticks = 10'000'000'000 / tick_ns;
  u64 ticks_ = 0;
  u64 ticks_next_ = 0;
  u64 refused_reported_ = 0;
};

void signals_install() {
  struct sigaction action = {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);  // A client closing mid-send must not kill the replica.
}

}  // namespace

int command_start(std::span<char*> arguments) {
  Flag flags[] = {
      {.name = "addresses", .value_hint = "<address,...>"},
      {.name = "cluster", .value_hint = "<integer>"},
  };
  Positionals positionals;
  if (!arguments_parse("start", arguments, flags, positionals)) {
    std::fputs(start_usage, stderr);
    return exit_usage;
  }
  if (flags[0].value == nullptr) {
    std::fprintf(stderr, "tally start: --addresses is required\n%s", start_usage);
    return exit_usage;
  }
  if (positionals.count != 1) {
    std::fprintf(stderr, "tally start: expected one data file path, got %u\n%s",
                 positionals.count, start_usage);
    return exit_usage;
  }
  const char* path = positionals.values[0];
  const io::AddressList addresses = io::addresses_parse(flags[0].value);
  if (!addresses.ok()) {
    std::fprintf(stderr, "tally start: --addresses: %s\n", addresses.error_message);
    return exit_usage;
  }
  u128 cluster_expected = 0;
  if (flags[1].value != nullptr && !parse_u128(flags[1].value, cluster_expected)) {
    std::fprintf(stderr, "tally start: --cluster=%s must be a decimal integer in 0..2^128-1\n",
                 flags[1].value);
    return exit_usage;
  }

  auto server = std::make_unique<Server>();
  server->loop.init(io::Loop::entries_default);
  const io::OpenResult opened = server->storage.open(&server->loop, {.path = path});
  if (opened.status != io::OpenStatus::ok) {
    base::fatal(base::FatalReason::storage_error, "%s: %s", path,
                io::open_status_message(opened.status));
  }
  const journal::Superblock superblock = superblock_read(server->loop, server->storage, path);
  if (flags[1].value != nullptr && superblock.cluster != cluster_expected) {
    char file_cluster[40];
    base::fatal(base::FatalReason::data_file_mismatch,
                "%s belongs to cluster %s, not to --cluster=%s", path,
                u128_decimal(superblock.cluster, file_cluster), flags[1].value);
  }
  if (superblock.replica_count != addresses.count) {
    base::fatal(base::FatalReason::data_file_mismatch,
                "%s belongs to a cluster of %u replicas, but --addresses lists %u",
                path, superblock.replica_count, addresses.count);
  }
  const journal::Layout layout(superblock.layout);
  if (server->storage.size() < layout.size()) {
    base::fatal(base::FatalReason::data_file_invalid, "%s: %lu bytes, its layout needs %lu",
                path, static_cast<unsigned long>(server->storage.size()),
                static_cast<unsigned long>(layout.size()));
  }

  server->pool.init(message_pool_capacity, message_size_max);
  // The bus first: the replica takes its message pool from it. Nothing is delivered before
  // the loop runs, so the replica need not exist yet.
  server->bus.init(&server->loop, &server->pool,
                   io::MessageBusOptions{
                       .kind = io::BusKind::replica,
                       .cluster = superblock.cluster,
                       .replica = superblock.replica,
                       .addresses = addresses.span(),
                       .connections_max = connections_max,
                   },
                   on_message, server.get());
  server->replica = std::make_unique<Replica>(
      server->storage, server->bus, server->time, layout,
      vsr::ReplicaOptions{
          .cluster = superblock.cluster,
          .replica = superblock.replica,
          .replica_count = superblock.replica_count,
          .state_machine = state_machine::Config{},
      });
  signals_install();
  base::allocation_guard::seal(base::allocation_guard::default_mode());

  server->replica->open([](Replica*) {});
  while (!server->replica->opened() && stop_requested == 0) {
    server->loop.run_once(tick_ns);
  }

  char address_text[io::address_text_size_max];
  char cluster_text[40];
  std::printf("tally: replica %u of %u, cluster %s, listening on %.*s, op %lu committed\n",
              superblock.replica, superblock.replica_count,
              u128_decimal(superblock.cluster, cluster_text),
              static_cast<int>(io::address_format(addresses.addresses[superblock.replica],
                                                  address_text)
                                   .size()),
              address_text, static_cast<unsigned long>(server->replica->commit_min()));
  std::fflush(stdout);

  CapacityWarning capacity_warning;
  // State sync (docs/vsr-protocol.md), logged when a checkpoint from peers is in: how long since
  // the sync began (or since the replica opened, for a repair of its own checkpoint), and what
  // came over the network.
  u64 syncs_logged = 0;
  u64 syncs_started_seen = 0;
  u64 sync_began_ns = server->time.monotonic_ns();
  u64 sync_bytes_logged = 0;
  u64 sync_pieces_logged = 0;
  u64 sync_found_logged = 0;
  if (server->replica->stats().checkpoint_repairs > 0) {
    std::printf("tally: replica %u: blocks of the checkpoint at op %lu are damaged; fetching "
                "them from its peers\n",
                superblock.replica,
                static_cast<unsigned long>(server->replica->checkpoint_op_durable()));
    std::fflush(stdout);
  }
  while (stop_requested == 0) {
    server->loop.run_for_ns(tick_ns);
    server->time.tick();
    server->replica->tick();
    server->bus.tick();
    capacity_warning.tick(*server->replica);
    const vsr::ReplicaStats& stats = server->replica->stats();
    if (stats.syncs_started != syncs_started_seen) {
      syncs_started_seen = stats.syncs_started;
      sync_began_ns = server->time.monotonic_ns();
    }
    if (stats.syncs_done != syncs_logged) {
      syncs_logged = stats.syncs_done;
      const u64 elapsed_ms = (server->time.monotonic_ns() - sync_began_ns) / 1'000'000;
      const u64 bytes = stats.sync_bytes_fetched - sync_bytes_logged;
      std::printf("tally: replica %u synced to the checkpoint at op %lu from its peers in "
                  "%lu.%03lu s: %lu pieces fetched (%.1f MiB), %lu found here\n",
                  superblock.replica,
                  static_cast<unsigned long>(server->replica->checkpoint_op_durable()),
                  static_cast<unsigned long>(elapsed_ms / 1000),
                  static_cast<unsigned long>(elapsed_ms % 1000),
                  static_cast<unsigned long>(stats.sync_pieces_fetched - sync_pieces_logged),
                  static_cast<double>(bytes) / (1024.0 * 1024.0),
                  static_cast<unsigned long>(stats.sync_pieces_found - sync_found_logged));
      std::fflush(stdout);
      sync_bytes_logged = stats.sync_bytes_fetched;
      sync_pieces_logged = stats.sync_pieces_fetched;
      sync_found_logged = stats.sync_pieces_found;
    }
  }

  std::printf("tally: stopping replica %u at op %lu\n", superblock.replica,
              static_cast<unsigned long>(server->replica->commit_min()));
  const u64 late = base::allocation_guard::allocations_after_seal();
  if (late != 0) {
    std::fprintf(stderr, "tally: warning: %lu heap allocations after start-up\n",
                 static_cast<unsigned long>(late));
  }
  base::allocation_guard::unseal();
  server->bus.deinit();
  // In-flight WAL writes finish before the storage closes: what was acknowledged is durable
  // already, the rest is as if the process had been killed.
  while (server->loop.in_flight_count() > 0) server->loop.run_once(tick_ns);
  server->replica.reset();
  server->storage.close();
  server->loop.deinit();
  return 0;
}

}  // namespace tally::cli
