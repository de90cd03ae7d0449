// The `tally` commands, one file each in src/cli. Each takes the words after its own name and
// returns the process's exit status (0 ok, 1 failure, 2 usage); environmental stops exit
// through base::fatal with their own codes.
#pragma once

#include <span>

namespace tally::cli {

int command_format(std::span<char*> arguments);
int command_inspect(std::span<char*> arguments);
int command_start(std::span<char*> arguments);
int command_benchmark(std::span<char*> arguments);
int command_recover(std::span<char*> arguments);

}  // namespace tally::cli
