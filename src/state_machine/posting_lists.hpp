// PostingLists: many ascending lists of u32 row numbers, in chunks carved from one arena.
//
// An index entry says "row r belongs to list l" (transfers of an account, accounts with a code).
// Rows only ever grow, so each list is appended in ascending order and stays sorted. A list is a
// doubly linked sequence of chunks whose capacities double from 4 to 1024 entries: a list of one
// entry costs 32 bytes, a list of a million costs ~1% overhead, and finding a position takes at
// most ~log2(1024/4) + n/1024 chunk hops plus a binary search.
//
//   arena words: | next | prev | capacity | 0 | entry 0 | entry 1 | ... |   (one chunk)
//   list head:   { first chunk, last chunk, count, fill of the last chunk }
//
// Chunk offset 0 is the null chunk (the arena's first words are never handed out).
//
// Undo is last-in first-out only (linked-chain rollback): pop_latest() removes a list's last entry
// and, when that empties a chunk, the chunk must be the arena's newest one, which is given back;
// destroy_latest() forgets the newest list once it is empty. Under that discipline rollback
// restores every word and counter, so the structure is a pure function of the committed appends.
#pragma once

#include <algorithm>
#include <bit>
#include <span>

#include "src/base/assert.hpp"
#include "src/base/large_array.hpp"
#include "src/base/prefetch.hpp"
#include "tally/types.hpp"

namespace tally::state_machine {

class PostingLists {
 public:
  static constexpr u32 chunk_header_words = 4;
  static constexpr u32 chunk_capacity_min = 4;
  static constexpr u32 chunk_capacity_max = 1024;
  // A list of one entry takes a whole smallest chunk: the worst case, in words per entry.
  static constexpr u64 words_per_entry_max = chunk_header_words + chunk_capacity_min;

  struct List {
    u32 first;
    u32 last;
    u32 count;
    u32 last_fill;
    bool operator==(const List&) const = default;
  };

  void init(u32 lists_max, u64 entries_max) {
    TALLY_ASSERT(lists_max > 0);
    TALLY_ASSERT(entries_max > 0);
    const u64 words_max = chunk_header_words + entries_max * words_per_entry_max;
    TALLY_ASSERT(words_max < (u64{1} << 32), "posting arena too large: %llu words",
                 static_cast<unsigned long long>(words_max));
    lists_.init(lists_max);
    words_.init(words_max);
    lists_max_ = lists_max;
    words_max_ = words_max;
    reset();
  }

  void reset() {
    lists_.reset();
    words_.reset();
    list_count_ = 0;
    words_used_ = chunk_header_words;  // The null chunk.
  }

  u32 list_count() const { return list_count_; }
  // The raw list heads and arena in use, for digests.
  std::span<const List> heads() const { return lists_.first(list_count_); }
  std::span<const u32> words() const { return words_.first(words_used_); }
  u64 words_used() const { return words_used_; }

  // Lists with ids below `count` exist; for lists indexed by something external (an account row),
  // the owner creates them in that order.
  u32 create() {
    TALLY_ASSERT(list_count_ < lists_max_, "posting lists full: %u", lists_max_);
    const u32 list = list_count_;
    TALLY_ASSERT(lists_[list].count == 0 && lists_[list].first == 0);
    list_count_ += 1;
    return list;
  }

  void destroy_latest(u32 list) {
    TALLY_ASSERT(list + 1 == list_count_, "only the newest list can be destroyed");
    TALLY_ASSERT(lists_[list].count == 0);
    TALLY_ASSERT(lists_[list].first == 0 && lists_[list].last == 0);
    list_count_ -= 1;
  }

  u32 count(u32 list) const { return head(list).count; }

  u32 first_entry(u32 list) const {
    const List& l = head(list);
    TALLY_ASSERT(l.count > 0);
    return words_.data()[l.first + chunk_header_words];
  }

  u32 last_entry(u32 list) const {
    const List& l = head(list);
    TALLY_ASSERT(l.count > 0);
    return words_.data()[l.last + chunk_header_words + l.last_fill - 1];
  }

  void prefetch_head(u32 list) const { base::prefetch(&lists_.data()[list]); }

  // The head must be in cache already (prefetch_head() earlier), or this stalls on it.
  void prefetch_tail(u32 list) const {
    const List& l = lists_.data()[list];
    base::prefetch(&words_.data()[l.last + chunk_header_words + l.last_fill]);
  }

  void append(u32 list, u32 entry) {
    List& l = head_mutable(list);
    u32* words = words_.data();
    if (l.count > 0) {
      TALLY_ASSERT(entry > words[l.last + chunk_header_words + l.last_fill - 1],
                   "entries must be appended in ascending order");
    }
    // The last chunk's capacity follows from the count (see last_capacity()), so appending
    // touches only the list head and the tail entry, not the chunk's header, which for a long
    // chunk is another cache line.
    const u32 capacity_last = l.count == 0 ? 0 : last_capacity(l);
    TALLY_ASSERT_SLOW(l.count == 0 || capacity_last == words[l.last + 2]);
    if (l.count == 0 || l.last_fill == capacity_last) {
      const u32 capacity =
          l.count == 0 ? chunk_capacity_min : std::min(capacity_last * 2, chunk_capacity_max);
      const u32 chunk = chunk_allocate(capacity);
      words[chunk + 1] = l.last;
      if (l.count == 0) {
        l.first = chunk;
      } else {
        words[l.last] = chunk;
      }
      l.last = chunk;
      l.last_fill = 0;
    }
    words[l.last + chunk_header_words + l.last_fill] = entry;
    l.last_fill += 1;
    l.count += 1;
  }

  // Undoes the latest append to `list`, which must have appended `entry`.
  void pop_latest(u32 list, u32 entry) {
    List& l = head_mutable(list);
    TALLY_ASSERT(l.count > 0);
    u32* words = words_.data();
    TALLY_ASSERT(words[l.last + chunk_header_words + l.last_fill - 1] == entry);
    words[l.last + chunk_header_words + l.last_fill - 1] = 0;
    l.last_fill -= 1;
    l.count -= 1;
    if (l.last_fill > 0) return;

    // The chunk is empty, so it was allocated by the append being undone: the arena's newest.
    const u32 chunk = l.last;
    const u32 capacity = words[chunk + 2];
    TALLY_ASSERT(chunk + chunk_header_words + capacity == words_used_,
                 "an emptied chunk must be the newest");
    const u32 previous = words[chunk + 1];
    words[chunk + 1] = 0;
    words[chunk + 2] = 0;
    words_used_ = chunk;
    if (previous == 0) {
      TALLY_ASSERT(l.count == 0);
      l = List{};
    } else {
      words[previous] = 0;
      l.last = previous;
      l.last_fill = words[previous + 2];  // Every chunk but the last is full.
    }
  }

  // Calls `visit(entry)` for the entries of `list` within [min, max], ascending, or descending if
  // `reversed`, until `visit` returns false.
  template <typename Visit>
  void scan(u32 list, u32 min, u32 max, bool reversed, const Visit& visit) const {
    const List& l = head(list);
    if (l.count == 0 || min > max) return;
    const u32* words = words_.data();
    if (!reversed) {
      u32 chunk = l.first;
      // Skip whole chunks that end below `min`.
      while (chunk != 0 && words[chunk + chunk_header_words + fill(l, chunk) - 1] < min) {
        chunk = words[chunk];
      }
      for (bool first = true; chunk != 0; chunk = words[chunk], first = false) {
        const u32* entries = &words[chunk + chunk_header_words];
        const u32 chunk_fill = fill(l, chunk);
        const u32 start =
            first ? static_cast<u32>(std::lower_bound(entries, entries + chunk_fill, min) - entries)
                  : 0;
        for (u32 position = start; position < chunk_fill; position += 1) {
          if (entries[position] > max) return;
          if (!visit(entries[position])) return;
        }
      }
    } else {
      u32 chunk = l.last;
      // Skip whole chunks that start above `max`.
      while (chunk != 0 && words[chunk + chunk_header_words] > max) chunk = words[chunk + 1];
      for (bool first = true; chunk != 0; chunk = words[chunk + 1], first = false) {
        const u32* entries = &words[chunk + chunk_header_words];
        const u32 chunk_fill = fill(l, chunk);
        u32 end = chunk_fill;
        if (first) {
          end = static_cast<u32>(std::upper_bound(entries, entries + chunk_fill, max) - entries);
        }
        for (u32 position = end; position > 0; position -= 1) {
          if (entries[position - 1] < min) return;
          if (!visit(entries[position - 1])) return;
        }
      }
    }
  }

 private:
  const List& head(u32 list) const {
    TALLY_ASSERT(list < list_count_, "list %u of %u", list, list_count_);
    return lists_.data()[list];
  }
  List& head_mutable(u32 list) {
    TALLY_ASSERT(list < list_count_, "list %u of %u", list, list_count_);
    return lists_.data()[list];
  }

  // Chunk k of a list holds min(4 << k, 1024) entries and every chunk but the last is full, so
  // the entries before the last chunk are 4 + 8 + ... + (4 << (k-1)) = 4 * (2^k - 1) while
  // below 2044 (chunks 0..8: 4 .. 1024), then grow by 1024 per chunk. Example: count 30 with
  // last_fill 2: 28 = 4 * (2^3 - 1) entries before, so the last chunk is chunk 3, of 32.
  static u32 last_capacity(const List& l) {
    TALLY_ASSERT(l.count >= l.last_fill && l.last_fill > 0);
    const u32 before = l.count - l.last_fill;
    constexpr u32 growing_total = 4 * ((chunk_capacity_max / chunk_capacity_min) * 2 - 1);
    if (before >= growing_total) return chunk_capacity_max;
    const u32 chunks_before =
        static_cast<u32>(std::bit_width(before / chunk_capacity_min + 1)) - 1;
    return chunk_capacity_min << chunks_before;
  }

  u32 fill(const List& l, u32 chunk) const {
    return chunk == l.last ? l.last_fill : words_.data()[chunk + 2];
  }

  u32 chunk_allocate(u32 capacity) {
    TALLY_ASSERT(capacity >= chunk_capacity_min && capacity <= chunk_capacity_max);
    const u64 chunk = words_used_;
    TALLY_ASSERT(chunk + chunk_header_words + capacity <= words_max_, "posting arena full");
    u32* words = words_.data();
    words[chunk] = 0;
    words[chunk + 1] = 0;
    words[chunk + 2] = capacity;
    words[chunk + 3] = 0;
    words_used_ = chunk + chunk_header_words + capacity;
    return static_cast<u32>(chunk);
  }

  base::LargeArray<List> lists_;
  base::LargeArray<u32> words_;
  u32 lists_max_ = 0;
  u32 list_count_ = 0;
  u64 words_max_ = 0;
  u64 words_used_ = 0;
};

}  // namespace tally::state_machine
