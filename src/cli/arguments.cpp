// Strict flag and number parsing for the CLI: see arguments.hpp.
#include "src/cli/arguments.hpp"

#include <cstdio>
#include <cstring>

namespace tally::cli {

namespace {

void flags_list(std::span<const Flag> flags) {
  std::fputs(" (expected", stderr);
  for (std::size_t index = 0; index < flags.size(); index += 1) {
    std::fprintf(stderr, "%s --%s=%s", index == 0 ? "" : ",", flags[index].name,
                 flags[index].value_hint);
  }
  std::fputs(flags.empty() ? " no flags)\n" : ")\n", stderr);
}

}  // namespace

bool arguments_parse(const char* command, std::span<char*> arguments, std::span<Flag> flags,
                     Positionals& positionals) {
  positionals.count = 0;
  for (const char* argument : arguments) {
    if (argument[0] != '-') {
      if (positionals.count == Positionals::capacity) {
        std::fprintf(stderr, "tally %s: too many arguments\n", command);
        return false;
      }
      positionals.values[positionals.count] = argument;
      positionals.count += 1;
      continue;
    }
    if (argument[1] != '-' || argument[2] == '\0') {
      std::fprintf(stderr, "tally %s: unknown flag '%s'", command, argument);
      flags_list(flags);
      return false;
    }
    const char* name = argument + 2;
    const char* equals = std::strchr(name, '=');
    const std::size_t name_size = equals == nullptr ? std::strlen(name)
                                                    : static_cast<std::size_t>(equals - name);
    Flag* flag = nullptr;
    for (Flag& candidate : flags) {
      if (std::strlen(candidate.name) == name_size &&
          std::strncmp(candidate.name, name, name_size) == 0) {
        flag = &candidate;
      }
    }
    if (flag == nullptr) {
      std::fprintf(stderr, "tally %s: unknown flag '--%.*s'", command,
                   static_cast<int>(name_size), name);
      flags_list(flags);
      return false;
    }
    if (equals == nullptr || equals[1] == '\0') {
      std::fprintf(stderr, "tally %s: --%s needs a value: --%s=%s\n", command, flag->name,
                   flag->name, flag->value_hint);
      return false;
    }
    if (flag->value != nullptr) {
      std::fprintf(stderr, "tally %s: --%s is given more than once\n", command, flag->name);
      return false;
    }
    flag->value = equals + 1;
  }
  return true;
}

bool parse_u128(const char* text, u128& value) {
  const std::size_t size = std::strlen(text);
  if (size == 0 || size > 39) return false;
  if (text[0] == '0' && size > 1) return false;
  u128 result = 0;
  for (std::size_t index = 0; index < size; index += 1) {
    if (text[index] < '0' || text[index] > '9') return false;
    const auto digit = static_cast<u128>(text[index] - '0');
    if (result > (u128_max - digit) / 10) return false;
    result = result * 10 + digit;
  }
  value = result;
  return true;
}

bool parse_u64(const char* text, u64 max, u64& value) {
  u128 wide = 0;
  if (!parse_u128(text, wide) || wide > max) return false;
  value = static_cast<u64>(wide);
  return true;
}

const char* u128_decimal(u128 value, char* buffer) {
  char digits[40];
  u32 count = 0;
  do {
    digits[count] = static_cast<char>('0' + static_cast<int>(value % 10));
    count += 1;
    value /= 10;
  } while (value != 0);
  for (u32 index = 0; index < count; index += 1) buffer[index] = digits[count - 1 - index];
  buffer[count] = '\0';
  return buffer;
}

}  // namespace tally::cli
