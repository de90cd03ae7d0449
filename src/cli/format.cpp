// `tally format --cluster=N --replica=I --replica-count=K FILE`: creates a data file with the
// production layout (journal/layout.hpp) and writes its first superblock (sequence 1) to all
// copies. Never overwrites an existing file (FatalReason::data_file_exists). If the process dies
// before the superblock is written, the file has no valid superblock: delete it and run format
// again.
#include <cstdio>

#include "io/file_storage.hpp"
#include "io/loop.hpp"
#include "journal/layout.hpp"
#include "journal/superblock.hpp"
#include "src/base/assert.hpp"
#include "src/cli/arguments.hpp"
#include "src/cli/commands.hpp"

namespace tally::cli {

namespace {

constexpr const char* format_usage =
    "usage: tally format --cluster=<integer> --replica=<index> --replica-count=<1..6> <file>\n";

using Store = journal::SuperblockStore<io::FileStorage>;

void format_done(Store* store) { *static_cast<bool*>(store->context) = true; }

}  // namespace

int command_format(std::span<char*> arguments) {
  Flag flags[] = {
      {.name = "cluster", .value_hint = "<integer>"},
      {.name = "replica", .value_hint = "<index>"},
      {.name = "replica-count", .value_hint = "<1..6>"},
  };
  Positionals positionals;
  if (!arguments_parse("format", arguments, flags, positionals)) {
    std::fputs(format_usage, stderr);
    return exit_usage;
  }
  for (const Flag& flag : flags) {
    if (flag.value == nullptr) {
      std::fprintf(stderr, "tally format: --%s is required\n%s", flag.name, format_usage);
      return exit_usage;
    }
  }
  if (positionals.count != 1) {
    std::fprintf(stderr, "tally format: expected one data file path, got %u\n%s",
                 positionals.count, format_usage);
    return exit_usage;
  }
  const char* path = positionals.values[0];

  u128 cluster = 0;
  if (!parse_u128(flags[0].value, cluster)) {
    std::fprintf(stderr,
                 "tally format: --cluster=%s must be a decimal integer in 0..2^128-1 "
                 "(no sign, no leading zeros)\n",
                 flags[0].value);
    return exit_usage;
  }
  u64 replica_count = 0;
  if (!parse_u64(flags[2].value, journal::replica_count_max, replica_count) ||
      replica_count == 0) {
    std::fprintf(stderr, "tally format: --replica-count=%s must be an integer in 1..%u\n",
                 flags[2].value, journal::replica_count_max);
    return exit_usage;
  }
  u64 replica = 0;
  if (!parse_u64(flags[1].value, ~u64{0}, replica)) {
    std::fprintf(stderr, "tally format: --replica=%s must be a decimal integer\n",
                 flags[1].value);
    return exit_usage;
  }
  if (replica >= replica_count) {
    std::fprintf(stderr,
                 "tally format: --replica=%s must be less than --replica-count=%s "
                 "(replicas are numbered from 0)\n",
                 flags[1].value, flags[2].value);
    return exit_usage;
  }

  const journal::Layout layout(journal::LayoutConfig::production());
  const io::CreateResult created = io::file_create(path, layout.size());
  if (created.status != io::CreateStatus::ok) {
    base::fatal(io::create_status_fatal_reason(created.status), "%s: %s", path,
                io::create_status_message(created.status));
  }

  io::Loop loop;
  loop.init(io::Loop::entries_default);
  io::FileStorage storage;
  const io::OpenResult opened = storage.open(&loop, {.path = path});
  if (opened.status != io::OpenStatus::ok) {
    base::fatal(base::FatalReason::storage_error, "%s: %s", path,
                io::open_status_message(opened.status));
  }
  TALLY_ASSERT(storage.size() == layout.size());

  Store store(storage);
  bool done = false;
  store.context = &done;
  store.format(
      journal::SuperblockFormatOptions{
          .cluster = cluster,
          .replica = static_cast<u8>(replica),
          .replica_count = static_cast<u8>(replica_count),
          .layout = layout.config(),
      },
      format_done);
  while (!done) loop.run_once(1'000'000'000);
  if (!store.copies_verified()) {
    base::fatal(base::FatalReason::storage_error,
                "%s: the superblock copies did not read back as written", path);
  }
  storage.close();
  loop.deinit();

  char cluster_text[40];
  std::printf("formatted %s: cluster %s, replica %u of %u, %lu bytes\n", path,
              u128_decimal(cluster, cluster_text), static_cast<unsigned>(replica),
              static_cast<unsigned>(replica_count), static_cast<unsigned long>(layout.size()));
  return 0;
}

}  // namespace tally::cli
