// `tally benchmark [--addresses=A0,...] [--cluster=N] [--account-count=N] [--transfer-count=N]
//                  [--batch-size=N] [--seed=N] [--file=PATH]`
//
// Measures a cluster with the load of bench/load_driver.hpp: accounts, then transfers between
// random pairs of them in requests of --batch-size, one request in flight; prints the transfer
// rate and the request latency percentiles, and fails if the balances read back do not add up.
//
// Without --addresses it runs its own single-replica cluster, as real processes of this binary:
// `tally format` of a fresh data file (--file, by default tally-benchmark-<pid>.tally in the
// current directory, which must allow O_DIRECT), `tally start` on a free loopback port, and at
// the end a clean stop and the file's removal (also on Ctrl-C). The replica's own messages go to
// stderr; its start-up (prefaulting its memory) counts in the first request's latency.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <span>
#include <string>

#include "bench/load_driver.hpp"
#include "src/base/assert.hpp"
#include "src/cli/arguments.hpp"
#include "src/cli/commands.hpp"
#include "src/state_machine/config.hpp"
#include "tally/constants.hpp"

extern char** environ;

namespace tally::cli {

namespace {

constexpr const char* benchmark_usage =
    "usage: tally benchmark [--addresses=<address,...>] [--cluster=<integer>]\n"
    "                       [--account-count=<2..1000000>] [--transfer-count=<integer>]\n"
    "                       [--batch-size=<1..8189>] [--seed=<integer>] [--file=<path>]\n";

// Far above the default state machine's 10,000 and well inside its account capacity.
constexpr u64 account_count_max = 1'000'000;

// At most this many requests (their latencies take 128 MiB).
constexpr u64 requests_max = u64{1} << 24;

// The benchmark's own replica and data file, for the signal handler.
char temporary_file[4096] = {};
volatile pid_t replica_pid = -1;

void on_interrupt(int signal_number) {
  if (replica_pid > 0) kill(replica_pid, SIGTERM);
  if (temporary_file[0] != '\0') unlink(temporary_file);
  _exit(128 + signal_number);
}

// Runs this binary with `arguments`; its stdout goes to /dev/null when `quiet`. Returns the pid,
// or -1 with a message.
pid_t spawn_self(std::span<const std::string> arguments, bool quiet) {
  char* argv[8] = {};  // The name, the arguments, the terminating null.
  TALLY_ASSERT(arguments.size() + 2 <= std::size(argv));
  char self[] = "tally";
  argv[0] = self;
  for (std::size_t index = 0; index < arguments.size(); index += 1) {
    argv[index + 1] = const_cast<char*>(arguments[index].c_str());
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (quiet) posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  const int error = posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) {
    std::fprintf(stderr, "tally benchmark: cannot run a replica: %s\n", std::strerror(error));
    return -1;
  }
  return pid;
}

// Waits for `pid`; true if it exited with status 0.
bool wait_success(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return false;
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

sockaddr_in loopback(u16 port) {
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  return address;
}

// A loopback port nobody listens on right now (the kernel's choice for port 0).
u16 port_free() {
  const int socket = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (socket < 0) return 0;
  sockaddr_in address = loopback(0);
  socklen_t size = sizeof(address);
  u16 port = 0;
  if (::bind(socket, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      ::getsockname(socket, reinterpret_cast<sockaddr*>(&address), &size) == 0) {
    port = ntohs(address.sin_port);
  }
  ::close(socket);
  return port;
}

// Waits until the replica accepts connections on `port` (it listens before its slow start-up),
// so that a replica that cannot start is reported at once rather than as a client timeout.
bool replica_wait_listening(pid_t pid, u16 port) {
  constexpr u32 attempts = 3000;  // 60 s.
  for (u32 attempt = 0; attempt < attempts; attempt += 1) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      std::fprintf(stderr, "tally benchmark: the replica exited while starting (see above)\n");
      return false;
    }
    const int socket = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (socket < 0) return false;
    const sockaddr_in address = loopback(port);
    const bool connected =
        ::connect(socket, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0;
    ::close(socket);
    if (connected) return true;
    usleep(20'000);
  }
  std::fprintf(stderr, "tally benchmark: the replica did not listen within 60 s\n");
  return false;
}

double milliseconds(u64 ns) { return static_cast<double>(ns) / 1e6; }

void report_print(const bench::LoadOptions& options, const bench::LoadReport& report) {
  const double transfers_s = static_cast<double>(report.transfers_ns) / 1e9;
  std::printf("accounts:  %u created in %.3f s\n", options.account_count,
              static_cast<double>(report.accounts_ns) / 1e9);
  std::printf("transfers: %llu created in %.3f s = %.0f transfers/s\n",
              static_cast<unsigned long long>(options.transfer_count), transfers_s,
              transfers_s > 0 ? static_cast<double>(options.transfer_count) / transfers_s : 0.0);
  const bench::LatencySummary& latency = report.transfer_latency;
  std::printf("request latency (%llu requests): p1 %.2f ms, p50 %.2f ms, p99 %.2f ms, "
              "max %.2f ms\n",
              static_cast<unsigned long long>(report.transfer_requests),
              milliseconds(latency.p1), milliseconds(latency.p50), milliseconds(latency.p99),
              milliseconds(latency.max));
  std::printf("balances:  every account read back; debits and credits add up\n");
}

}  // namespace

int command_benchmark(std::span<char*> arguments) {
  Flag flags[] = {
      {.name = "addresses", .value_hint = "<address,...>"},
      {.name = "cluster", .value_hint = "<integer>"},
      {.name = "account-count", .value_hint = "<2..1000000>"},
      {.name = "transfer-count", .value_hint = "<integer>"},
      {.name = "batch-size", .value_hint = "<1..8189>"},
      {.name = "seed", .value_hint = "<integer>"},
      {.name = "file", .value_hint = "<path>"},
  };
  const Flag& addresses = flags[0];
  const Flag& cluster = flags[1];
  const Flag& file = flags[6];
  Positionals positionals;
  if (!arguments_parse("benchmark", arguments, flags, positionals)) {
    std::fputs(benchmark_usage, stderr);
    return exit_usage;
  }
  if (positionals.count != 0) {
    std::fprintf(stderr, "tally benchmark: unexpected argument '%s'\n%s", positionals.values[0],
                 benchmark_usage);
    return exit_usage;
  }
  bench::LoadOptions options;
  u64 value = 0;
  if (flags[2].value != nullptr) {
    if (!parse_u64(flags[2].value, account_count_max, value) || value < 2) {
      std::fprintf(stderr, "tally benchmark: --account-count must be 2..%llu\n",
                   static_cast<unsigned long long>(account_count_max));
      return exit_usage;
    }
    options.account_count = static_cast<u32>(value);
  }
  if (flags[3].value != nullptr) {
    if (!parse_u64(flags[3].value, u64{1} << 40, value)) {
      std::fprintf(stderr, "tally benchmark: --transfer-count must be a number up to 2^40\n");
      return exit_usage;
    }
    options.transfer_count = value;
  }
  if (flags[4].value != nullptr) {
    if (!parse_u64(flags[4].value, create_event_max, value) || value == 0) {
      std::fprintf(stderr, "tally benchmark: --batch-size must be 1..%u\n", create_event_max);
      return exit_usage;
    }
    options.batch_size = static_cast<u32>(value);
  }
  if (flags[5].value != nullptr) {
    if (!parse_u64(flags[5].value, ~u64{0}, value)) {
      std::fprintf(stderr, "tally benchmark: --seed must be a number\n");
      return exit_usage;
    }
    options.seed = value;
  }
  // Every request's latency is kept (8 bytes each) for the percentiles.
  const u64 request_count =
      (options.transfer_count + options.batch_size - 1) / options.batch_size;
  if (request_count > requests_max) {
    std::fprintf(stderr,
                 "tally benchmark: --transfer-count in requests of --batch-size makes %llu "
                 "requests, more than the %llu whose latencies it keeps; use larger batches\n",
                 static_cast<unsigned long long>(request_count),
                 static_cast<unsigned long long>(requests_max));
    return exit_usage;
  }
  if (addresses.value != nullptr && file.value != nullptr) {
    std::fprintf(stderr,
                 "tally benchmark: --file is for the benchmark's own replica; with --addresses "
                 "the cluster is yours\n");
    return exit_usage;
  }
  // Its own replica has the default capacities: a request beyond them would wait for ever.
  const u64 own_transfers_max = state_machine::Config{}.transfers_max;
  if (addresses.value == nullptr && options.transfer_count > own_transfers_max) {
    std::fprintf(stderr,
                 "tally benchmark: --transfer-count: a fresh replica holds at most %llu "
                 "transfers\n",
                 static_cast<unsigned long long>(own_transfers_max));
    return exit_usage;
  }
  if (cluster.value != nullptr) {
    if (addresses.value == nullptr) {
      std::fprintf(stderr, "tally benchmark: --cluster needs --addresses (its own replica is "
                           "cluster 0)\n");
      return exit_usage;
    }
    if (!parse_u128(cluster.value, options.cluster)) {
      std::fprintf(stderr, "tally benchmark: --cluster must be a number\n");
      return exit_usage;
    }
  }

  // The benchmark's own replica, unless a cluster is given.
  pid_t replica = -1;
  std::string address_list;
  if (addresses.value != nullptr) {
    address_list = addresses.value;
  } else {
    const std::string path = file.value != nullptr
                                 ? std::string(file.value)
                                 : "tally-benchmark-" + std::to_string(getpid()) + ".tally";
    if (path.size() >= sizeof(temporary_file)) {
      std::fprintf(stderr, "tally benchmark: --file: the path is too long\n");
      return exit_usage;
    }
    const std::string format_arguments[] = {"format", "--cluster=0", "--replica=0",
                                            "--replica-count=1", path};
    const pid_t formatter = spawn_self(format_arguments, true);
    if (formatter < 0 || !wait_success(formatter)) {
      std::fprintf(stderr, "tally benchmark: could not create the data file %s\n", path.c_str());
      return 1;
    }
    std::memcpy(temporary_file, path.c_str(), path.size() + 1);
    struct sigaction action = {};
    action.sa_handler = on_interrupt;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGTERM, &action, nullptr);

    const u16 port = port_free();
    address_list = "127.0.0.1:" + std::to_string(port);
    const std::string start_arguments[] = {"start", "--addresses=" + address_list, path};
    replica = port == 0 ? -1 : spawn_self(start_arguments, true);
    replica_pid = replica;
    if (replica < 0 || !replica_wait_listening(replica, port)) {
      if (replica >= 0) {
        kill(replica, SIGTERM);
        wait_success(replica);
      }
      unlink(temporary_file);
      return 1;
    }
  }
  options.addresses = address_list;

  std::printf("tally benchmark: %u accounts, %llu transfers in requests of %u, one in flight, "
              "against %s%s\n",
              options.account_count, static_cast<unsigned long long>(options.transfer_count),
              options.batch_size, address_list.c_str(),
              replica >= 0 ? " (a fresh single replica)" : "");
  std::fflush(stdout);
  bench::LoadReport report;
  char error[256] = {};
  const bool ok = bench::load_run(options, &report, error, sizeof(error));

  bool replica_stopped = true;
  if (replica >= 0) {
    kill(replica, SIGTERM);
    replica_stopped = wait_success(replica);
    replica_pid = -1;
    unlink(temporary_file);
  }
  if (!ok) {
    std::fprintf(stderr, "tally benchmark: failed: %s\n", error);
    return 1;
  }
  report_print(options, report);
  if (!replica_stopped) {
    std::fprintf(stderr, "tally benchmark: the replica did not stop cleanly\n");
    return 1;
  }
  return 0;
}

}  // namespace tally::cli
