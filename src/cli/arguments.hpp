// Strict command-line parsing for the `tally` commands: `--name=value` flags and positional
// arguments. Everything a user can get wrong gets a sentence naming the flag and the fix, and
// the command exits with status 2 (usage); nothing is guessed (no abbreviations, no "--name
// value" form, no repeated flags, no empty values, numbers in plain decimal only).
#pragma once

#include <span>

#include "tally/types.hpp"

namespace tally::cli {

inline constexpr int exit_usage = 2;

struct Flag {
  const char* name;        // Without the dashes: "replica-count".
  const char* value_hint;  // For messages: "<integer>".
  const char* value = nullptr;  // Set by arguments_parse() when the flag is given.
};

struct Positionals {
  static constexpr u32 capacity = 8;
  const char* values[capacity] = {};
  u32 count = 0;
};

// Parses `arguments` (the words after the command's name). On a problem, prints
// "tally <command>: <problem>" to stderr and returns false.
bool arguments_parse(const char* command, std::span<char*> arguments, std::span<Flag> flags,
                     Positionals& positionals);

// Unsigned decimal with no sign, spaces or leading zeros (except "0"), at most `max`.
bool parse_u64(const char* text, u64 max, u64& value);
bool parse_u128(const char* text, u128& value);

// Decimal text of a u128 (cluster ids do not fit printf's integers). `buffer` holds >= 40 chars.
const char* u128_decimal(u128 value, char* buffer);

}  // namespace tally::cli
