// Test-only: teaches doctest to print u128 values (in decimal) in failed CHECKs. Included by the
// state machine's unit tests after <doctest/doctest.h>; never by library code.
#pragma once

#include <doctest/doctest.h>

#include <string>

#include "tally/types.hpp"

namespace doctest {

template <>
struct StringMaker<tally::u128> {
  static String convert(tally::u128 value) {
    std::string digits;
    do {
      digits.insert(digits.begin(), static_cast<char>('0' + static_cast<int>(value % 10)));
      value /= 10;
    } while (value != 0);
    return String(digits.c_str());
  }
};

}  // namespace doctest
