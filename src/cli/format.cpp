// `tally format --cluster=N --replica=I --replica-count=K FILE`: creates a data file with the
// production layout (journal/layout.hpp) and writes its first superblock (sequence 1) to all
// copies. Never overwrites an existing file (FatalReason::data_file_exists). If the process dies
// before the superblock is written, the file has no valid superblock: delete it and run format
// again. A new file for a replica the cluster already has comes from `tally recover`
// (recover.cpp), which shares this file's argument parsing and file creation.
#include <cstdio>
#include <cstring>

#include "io/file_storage.hpp"
#include "io/loop.hpp"
#include "journal/layout.hpp"
#include "journal/superblock.hpp"
#include "src/base/assert.hpp"
#include "src/cli/arguments.hpp"
#include "src/cli/commands.hpp"
#include "src/cli/format.hpp"

namespace tally::cli {

namespace {

constexpr const char* format_usage =
    "usage: tally format --cluster=<integer> --replica=<index> --replica-count=<1..6> <file>\n"
    "a replica whose data file was lost is replaced with `tally recover`, never with format\n";

using Store = journal::SuperblockStore<io::FileStorage>;

void format_done(Store* store) { *static_cast<bool*>(store->context) = true; }

}  // namespace

bool identity_parse(const char* command, const char* usage, std::span<char*> arguments,
                    std::span<Flag> flags, DataFileIdentity& identity) {
  TALLY_ASSERT(flags.size() >= 3 && std::strcmp(flags[0].name, "cluster") == 0 &&
               std::strcmp(flags[1].name, "replica") == 0 &&
               std::strcmp(flags[2].name, "replica-count") == 0);
  Positionals positionals;
  if (!arguments_parse(command, arguments, flags, positionals)) {
    std::fputs(usage, stderr);
    return false;
  }
  for (const Flag& flag : flags) {
    if (flag.value == nullptr) {
      std::fprintf(stderr, "tally %s: --%s is required\n%s", command, flag.name, usage);
      return false;
    }
  }
  if (positionals.count != 1) {
    std::fprintf(stderr, "tally %s: expected one data file path, got %u\n%s", command,
                 positionals.count, usage);
    return false;
  }
  identity.path = positionals.values[0];
  if (!parse_u128(flags[0].value, identity.cluster)) {
    std::fprintf(stderr,
                 "tally %s: --cluster=%s must be a decimal integer in 0..2^128-1 "
                 "(no sign, no leading zeros)\n",
                 command, flags[0].value);
    return false;
  }
  u64 replica_count = 0;
  if (!parse_u64(flags[2].value, journal::replica_count_max, replica_count) ||
      replica_count == 0) {
    std::fprintf(stderr, "tally %s: --replica-count=%s must be an integer in 1..%u\n", command,
                 flags[2].value, journal::replica_count_max);
    return false;
  }
  u64 replica = 0;
  if (!parse_u64(flags[1].value, ~u64{0}, replica)) {
    std::fprintf(stderr, "tally %s: --replica=%s must be a decimal integer\n", command,
                 flags[1].value);
    return false;
  }
  if (replica >= replica_count) {
    std::fprintf(stderr,
                 "tally %s: --replica=%s must be less than --replica-count=%s "
                 "(replicas are numbered from 0)\n",
                 command, flags[1].value, flags[2].value);
    return false;
  }
  identity.replica = static_cast<u8>(replica);
  identity.replica_count = static_cast<u8>(replica_count);
  return true;
}

u64 data_file_create(const DataFileIdentity& identity, u32 view) {
  const char* path = identity.path;
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
          .cluster = identity.cluster,
          .replica = identity.replica,
          .replica_count = identity.replica_count,
          .layout = layout.config(),
          .view = view,
      },
      format_done);
  while (!done) loop.run_once(1'000'000'000);
  if (!store.copies_verified()) {
    base::fatal(base::FatalReason::storage_error,
                "%s: the superblock copies did not read back as written", path);
  }
  storage.close();
  loop.deinit();
  return layout.size();
}

int command_format(std::span<char*> arguments) {
  Flag flags[] = {
      {.name = "cluster", .value_hint = "<integer>"},
      {.name = "replica", .value_hint = "<index>"},
      {.name = "replica-count", .value_hint = "<1..6>"},
  };
  DataFileIdentity identity;
  if (!identity_parse("format", format_usage, arguments, flags, identity)) return exit_usage;
  const u64 size = data_file_create(identity, 0);
  char cluster_text[40];
  std::printf("formatted %s: cluster %s, replica %u of %u, %lu bytes\n", identity.path,
              u128_decimal(identity.cluster, cluster_text),
              static_cast<unsigned>(identity.replica),
              static_cast<unsigned>(identity.replica_count),
              static_cast<unsigned long>(size));
  return 0;
}

}  // namespace tally::cli
