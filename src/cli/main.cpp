// `tally`: the command-line entry point. Parses the subcommand and hands over to it. Each command
// lives in its own file here (format.cpp, inspect.cpp, start.cpp, benchmark.cpp, recover.cpp);
// later issues add repl and submit.
#include <cstdio>
#include <cstring>
#include <span>

#include "src/cli/commands.hpp"
#include "tally/constants.hpp"

namespace {

constexpr const char* usage_text =
    "usage: tally <command> [options]\n"
    "\n"
    "commands:\n"
    "  format     create a data file: format --cluster=N --replica=I --replica-count=K FILE\n"
    "  inspect    print a data file's superblock and zones: inspect FILE\n"
    "  start      run the replica of a data file: start --addresses=A0,A1,... FILE\n"
    "  benchmark  measure a cluster, or a fresh single replica: benchmark [--addresses=...]\n"
    "  recover    recreate a lost replica's data file from its running peers:\n"
    "             recover --cluster=N --replica=I --replica-count=K --addresses=A0,... FILE\n"
    "  version    print the version and the client protocol release\n"
    "  help       print this message\n";

int command_version() {
  const tally::u32 release = tally::release_server;
  std::printf("tally %s (TigerBeetle client protocol %u.%u.%u)\n", TALLY_VERSION,
              tally::release_major(release), tally::release_minor(release),
              tally::release_patch(release));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(usage_text, stderr);
    return 2;
  }
  const char* command = argv[1];
  if (std::strcmp(command, "version") == 0 || std::strcmp(command, "--version") == 0) {
    return command_version();
  }
  const std::span<char*> arguments(argv + 2, static_cast<std::size_t>(argc - 2));
  if (std::strcmp(command, "format") == 0) return tally::cli::command_format(arguments);
  if (std::strcmp(command, "inspect") == 0) return tally::cli::command_inspect(arguments);
  if (std::strcmp(command, "start") == 0) return tally::cli::command_start(arguments);
  if (std::strcmp(command, "benchmark") == 0) return tally::cli::command_benchmark(arguments);
  if (std::strcmp(command, "recover") == 0) return tally::cli::command_recover(arguments);
  if (std::strcmp(command, "help") == 0 || std::strcmp(command, "--help") == 0) {
    std::fputs(usage_text, stdout);
    return 0;
  }
  std::fprintf(stderr, "tally: unknown command '%s'\n\n%s", command, usage_text);
  return 2;
}
