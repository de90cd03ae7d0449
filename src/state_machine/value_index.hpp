// ValueIndex: for one field of one record type (say Transfer::code), the rows holding each
// non-zero value, in ascending row (= timestamp) order. Zero is "no filter" in every query, so
// zero values are not indexed.
//
// A value maps to a posting list through an IdTable whose key check reads the value back from
// the list's first row: the table stores 8 bytes per value and no value copies.
//
// Undo is last-in first-out, as for IdTable and PostingLists: remove_latest() pops the row and,
// when that empties the list, forgets the value and destroys the list.
#pragma once

#include <optional>

#include "src/base/assert.hpp"
#include "src/state_machine/id_table.hpp"
#include "src/state_machine/posting_lists.hpp"
#include "tally/types.hpp"

namespace tally::state_machine {

class ValueIndex {
 public:
  void init(u32 rows_max) {
    values_.init(rows_max);
    lists_.init(rows_max, rows_max);
  }

  void reset() {
    values_.reset();
    lists_.reset();
  }

  // `value_of(row)` reads the indexed field of a stored row.
  template <typename ValueOf>
  std::optional<u32> list_find(u128 value, const ValueOf& value_of) const {
    TALLY_ASSERT(value != 0);
    return values_.find(value, [&](u32 list) { return value_of(lists_.first_entry(list)); });
  }

  template <typename ValueOf>
  void insert(u128 value, u32 row, const ValueOf& value_of) {
    if (value == 0) return;
    const std::optional<u32> list = list_find(value, value_of);
    if (list.has_value()) {
      lists_.append(*list, row);
    } else {
      const u32 created = lists_.create();
      values_.insert(value, created);
      lists_.append(created, row);
    }
  }

  // Undoes the latest insert of `row` under `value`.
  template <typename ValueOf>
  void remove_latest(u128 value, u32 row, const ValueOf& value_of) {
    if (value == 0) return;
    const std::optional<u32> list = list_find(value, value_of);
    TALLY_ASSERT(list.has_value());
    lists_.pop_latest(*list, row);
    if (lists_.count(*list) == 0) {
      values_.remove_latest(value, *list);
      lists_.destroy_latest(*list);
    }
  }

  const PostingLists& lists() const { return lists_; }
  const IdTable& values() const { return values_; }

 private:
  IdTable values_;
  PostingLists lists_;
};

}  // namespace tally::state_machine
