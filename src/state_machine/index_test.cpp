// The state machine's index structures against simple references: IdTable against std::map,
// PostingLists against vectors, ValueIndex against a map of vectors, each under random appends,
// scans in both directions over random ranges, and last-in first-out undo, which must restore
// the structure byte for byte.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <vector>

#include "src/base/prng.hpp"
#include "src/state_machine/id_table.hpp"
#include "src/state_machine/posting_lists.hpp"
#include "src/state_machine/value_index.hpp"

namespace tally::state_machine {
namespace {

template <typename T>
std::vector<T> copy(std::span<const T> span) {
  return std::vector<T>(span.begin(), span.end());
}

TEST_CASE("id_table: finds exactly the inserted keys and undoes the latest inserts") {
  base::Prng prng(11);
  IdTable table;
  table.init(4096);
  std::vector<u128> keys;  // Row r holds keys[r].
  const auto key_of = [&](u32 row) { return keys[row]; };
  for (u32 round = 0; round < 200; round += 1) {
    const auto before = copy(table.slots());
    const std::size_t count_before = keys.size();
    const u32 inserts = prng.range_inclusive<u32>(1, 20);
    for (u32 index = 0; index < inserts && keys.size() < 4096; index += 1) {
      // Sequential-looking ids and random ones, as clients produce both.
      const u128 key = prng.boolean() ? u128{keys.size()} * 7 + 1
                                      : make_u128(prng.next_u64(), prng.next_u64());
      if (table.find(key, key_of).has_value()) continue;
      keys.push_back(key);
      table.insert(key, static_cast<u32>(keys.size() - 1));
    }
    for (u32 row = 0; row < keys.size(); row += 1) {
      REQUIRE(table.find(keys[row], key_of) == std::optional<u32>(row));
    }
    CHECK_FALSE(table.find(u128_max, key_of).has_value());
    if (prng.chance_ppm(300'000)) {
      while (keys.size() > count_before) {
        table.remove_latest(keys.back(), static_cast<u32>(keys.size() - 1));
        keys.pop_back();
      }
      REQUIRE(copy(table.slots()) == before);
    }
    CHECK(table.count() == keys.size());
  }
}

TEST_CASE("posting_lists: scans match a reference and undo restores every word") {
  base::Prng prng(12);
  PostingLists lists;
  lists.init(64, 20'000);
  std::vector<std::vector<u32>> reference;
  u32 row_next = 0;
  for (u32 round = 0; round < 400; round += 1) {
    const auto heads_before = copy(lists.heads());
    const auto words_before = copy(lists.words());
    const auto reference_before = reference;
    std::vector<std::pair<u32, u32>> appended;  // (list, row), for undo.
    u32 created = 0;
    const u32 appends = prng.range_inclusive<u32>(1, 40);
    for (u32 index = 0; index < appends && row_next < 20'000; index += 1) {
      if (reference.size() < 64 && (reference.empty() || prng.chance_ppm(50'000))) {
        lists.create();
        reference.emplace_back();
        created += 1;
      }
      const u32 list = prng.index<u32>(static_cast<u32>(reference.size()));
      // Long lists make the chunks grow to their maximum.
      row_next += prng.range_inclusive<u32>(1, 3);
      lists.append(list, row_next);
      reference[list].push_back(row_next);
      appended.emplace_back(list, row_next);
    }
    for (u32 list = 0; list < reference.size(); list += 1) {
      REQUIRE(lists.count(list) == reference[list].size());
      const u32 min = prng.range_inclusive<u32>(0, row_next + 1);
      const u32 max = prng.range_inclusive<u32>(0, row_next + 1);
      const u32 limit = prng.range_inclusive<u32>(1, 50);
      for (const bool reversed : {false, true}) {
        std::vector<u32> expected;
        for (const u32 row : reference[list]) {
          if (row >= min && row <= max) expected.push_back(row);
        }
        if (reversed) std::reverse(expected.begin(), expected.end());
        if (expected.size() > limit) expected.resize(limit);
        std::vector<u32> got;
        lists.scan(list, min, max, reversed, [&](u32 row) {
          got.push_back(row);
          return got.size() < limit;
        });
        REQUIRE(got == expected);
      }
    }
    if (prng.chance_ppm(250'000)) {
      for (auto entry = appended.rbegin(); entry != appended.rend(); ++entry) {
        lists.pop_latest(entry->first, entry->second);
      }
      for (u32 index = 0; index < created; index += 1) {
        lists.destroy_latest(static_cast<u32>(reference.size() - 1 - index));
      }
      reference = reference_before;
      REQUIRE(copy(lists.heads()) == heads_before);
      REQUIRE(copy(lists.words()) == words_before);
      row_next = appended.empty() ? row_next : appended.front().second - 1;
    }
  }
}

TEST_CASE("value_index: rows per value and undo back to nothing") {
  base::Prng prng(13);
  ValueIndex index;
  index.init(2048);
  std::vector<u128> values;  // Row r has value values[r].
  const auto value_of = [&](u32 row) { return values[row]; };
  for (u32 row = 0; row < 1500; row += 1) {
    const u128 value = prng.index<u64>(20);  // Zero is not indexed.
    values.push_back(value);
    index.insert(value, row, value_of);
  }
  for (u128 value = 1; value < 20; value += 1) {
    std::vector<u32> expected;
    for (u32 row = 0; row < values.size(); row += 1) {
      if (values[row] == value) expected.push_back(row);
    }
    const std::optional<u32> list = index.list_find(value, value_of);
    REQUIRE(list.has_value() == !expected.empty());
    if (!list) continue;
    std::vector<u32> got;
    index.lists().scan(*list, 0, u32{1} << 30, false, [&](u32 row) {
      got.push_back(row);
      return true;
    });
    CHECK(got == expected);
  }
  for (u32 row = static_cast<u32>(values.size()); row > 0; row -= 1) {
    index.remove_latest(values[row - 1], row - 1, value_of);
  }
  CHECK(index.lists().list_count() == 0);
  CHECK(index.values().count() == 0);
}

}  // namespace
}  // namespace tally::state_machine
