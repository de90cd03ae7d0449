// What `tally format` and `tally recover` share: the data file's identity flags, and the
// creation of a data file with its first superblock (format.cpp).
#pragma once

#include <span>

#include "src/cli/arguments.hpp"
#include "tally/types.hpp"

namespace tally::cli {

struct DataFileIdentity {
  u128 cluster = 0;
  u8 replica = 0;
  u8 replica_count = 0;
  const char* path = nullptr;
};

// Parses --cluster, --replica, --replica-count (the first three of `flags`, which the caller
// declares with any flags of its own after them; all required) and one data file path. On a
// problem prints "tally <command>: ..." and `usage` to stderr and returns false.
bool identity_parse(const char* command, const char* usage, std::span<char*> arguments,
                    std::span<Flag> flags, DataFileIdentity& identity);

// Creates the data file with the production layout and writes its first superblock (sequence
// 1, in `view`, log_view 0) to all copies. Never overwrites an existing file; stops through
// base::fatal if the file cannot be made. Returns the file's size.
u64 data_file_create(const DataFileIdentity& identity, u32 view);

}  // namespace tally::cli
