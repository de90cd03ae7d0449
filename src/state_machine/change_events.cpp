// ChangeEventTable: rows appended per change event. See change_events.hpp.
#include "src/state_machine/change_events.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

namespace tally::state_machine {

namespace {

// Writes a whole row past the caches. Each transfer starts a fresh line that the hot path never
// reads again: a plain store would first fetch the line from memory (read for ownership) and
// evict a line the next transfers need. __m128i may alias anything, so the row stays readable as
// EventBalancesLow; the same thread reads its own streamed stores, and publish() orders them for
// others.
void row_stream(EventBalancesLow* target, const u64 (&values)[event_balance_count]) {
#if defined(__x86_64__)
  auto* lines = reinterpret_cast<__m128i*>(target);
  for (u32 index = 0; index < event_balance_count / 2; index += 1) {
    _mm_stream_si128(lines + index,
                     _mm_set_epi64x(static_cast<long long>(values[2 * index + 1]),
                                    static_cast<long long>(values[2 * index])));
  }
#else
  std::memcpy(target->values, values, sizeof(values));
#endif
}

// The eight balances of a row, in row order.
void balances_gather(const Account& debit, const Account& credit,
                     u128 (&values)[event_balance_count]) {
  values[0] = debit.debits_pending;
  values[1] = debit.debits_posted;
  values[2] = debit.credits_pending;
  values[3] = debit.credits_posted;
  values[4] = credit.debits_pending;
  values[5] = credit.debits_posted;
  values[6] = credit.credits_pending;
  values[7] = credit.credits_posted;
}

}  // namespace

void ChangeEventTable::init(u32 rows_max, u32 expiries_max) {
  TALLY_ASSERT(rows_max > 0 && expiries_max > 0 && expiries_max <= rows_max);
  rows_max_ = rows_max;
  expiries_max_ = expiries_max;
  flags_.init(rows_max);
  balances_low_.init(rows_max);
  balances_high_.init(rows_max);
  expiries_.init(expiries_max);
  TALLY_ASSERT(reinterpret_cast<std::uintptr_t>(balances_low_.data()) % 64 == 0,
               "rows are whole cache lines");
}

void ChangeEventTable::reset() {
  flags_.reset();
  balances_low_.reset();
  balances_high_.reset();
  expiries_.reset();
  row_count_ = 0;
  high_count_ = 0;
  expiry_count_ = 0;
}

void ChangeEventTable::prefault() {
  flags_.prefault();
  balances_low_.prefault();
}

u32 ChangeEventTable::row_append(const Account& debit, const Account& credit) {
  TALLY_ASSERT(row_count_ < rows_max_, "the Config sizes the table for every event");
  TALLY_ASSERT(debit.id != credit.id);
  u128 values[event_balance_count];
  balances_gather(debit, credit, values);
  const u32 row = row_count_;
  u64 low[event_balance_count];
  u64 high_any = 0;
  for (u32 index = 0; index < event_balance_count; index += 1) {
    low[index] = u128_low(values[index]);
    high_any |= u128_high(values[index]);
  }
  row_stream(&balances_low_.data()[row], low);
  u8 flags = 0;
  if (debit.flags & account_flags::closed) flags |= event_flags::debit_closed;
  if (credit.flags & account_flags::closed) flags |= event_flags::credit_closed;
  if (high_any != 0) {
    TALLY_ASSERT(high_count_ < rows_max_);
    TALLY_ASSERT(high_count_ == 0 || balances_high_.data()[high_count_ - 1].row < row);
    EventBalancesHigh& high = balances_high_.data()[high_count_];
    high.row = row;
    for (u32 index = 0; index < event_balance_count; index += 1) {
      high.values[index] = u128_high(values[index]);
    }
    high_count_ += 1;
    flags |= event_flags::balances_high;
  }
  flags_.data()[row] = flags;
  row_count_ += 1;
  return row;
}

u32 ChangeEventTable::transfer_append(const Account& debit, const Account& credit) {
  return row_append(debit, credit);
}

void ChangeEventTable::expiry_append(u64 timestamp, u32 transfer_row, const Account& debit,
                                     const Account& credit) {
  TALLY_ASSERT(expiry_count_ < expiries_max_, "a pending transfer expires at most once");
  TALLY_ASSERT(timestamp > expiry_timestamp_max(), "expiries are in timestamp order");
  const u32 row = row_append(debit, credit);
  expiries_[expiry_count_] = ExpiryEvent{.timestamp = timestamp, .row = row,
                                         .transfer_row = transfer_row};
  expiry_count_ += 1;
}

void ChangeEventTable::transfer_remove_latest() {
  TALLY_ASSERT(row_count_ > 0);
  const u32 row = row_count_ - 1;
  TALLY_ASSERT(expiry_count_ == 0 || expiries_.data()[expiry_count_ - 1].row < row,
               "the latest row is a transfer's");
  if (flags_.data()[row] & event_flags::balances_high) {
    TALLY_ASSERT(high_count_ > 0 && balances_high_.data()[high_count_ - 1].row == row);
    high_count_ -= 1;
    balances_high_[high_count_] = EventBalancesHigh{};
  }
  flags_[row] = 0;
  balances_low_[row] = EventBalancesLow{};
  row_count_ -= 1;
}

void ChangeEventTable::publish() const {
#if defined(__x86_64__)
  _mm_sfence();
#endif
}

u32 ChangeEventTable::row_of_transfer(u32 transfer_row) const {
  // Expiry j was recorded after row_j - j transfers; count those recorded after at most
  // `transfer_row` transfers, which is before this one.
  const ExpiryEvent* expiries = expiries_.data();
  u32 low = 0;
  u32 high = expiry_count_;
  while (low < high) {
    const u32 middle = low + (high - low) / 2;
    TALLY_ASSERT(expiries[middle].row >= middle);
    if (expiries[middle].row - middle <= transfer_row) {
      low = middle + 1;
    } else {
      high = middle;
    }
  }
  const u32 row = transfer_row + low;
  TALLY_ASSERT(row < row_count_, "transfer row %u has no event row", transfer_row);
  return row;
}

void ChangeEventTable::expiries_in(u64 timestamp_from, u64 timestamp_to, u32* begin,
                                   u32* end) const {
  const ExpiryEvent* expiries = expiries_.data();
  const ExpiryEvent* first = std::lower_bound(
      expiries, expiries + expiry_count_, timestamp_from,
      [](const ExpiryEvent& expiry, u64 value) { return expiry.timestamp < value; });
  const ExpiryEvent* last = std::upper_bound(
      expiries, expiries + expiry_count_, timestamp_to,
      [](u64 value, const ExpiryEvent& expiry) { return value < expiry.timestamp; });
  *begin = static_cast<u32>(first - expiries);
  *end = std::max(*begin, static_cast<u32>(last - expiries));
}

std::optional<u32> ChangeEventTable::high_of(u32 row) const {
  const EventBalancesHigh* highs = balances_high_.data();
  const EventBalancesHigh* found =
      std::lower_bound(highs, highs + high_count_, row,
                       [](const EventBalancesHigh& high, u32 value) { return high.row < value; });
  if (found == highs + high_count_ || found->row != row) return std::nullopt;
  return static_cast<u32>(found - highs);
}

void ChangeEventTable::digest_add(ChecksumStream& stream) const {
  const auto add = [&stream](const auto& span) { stream.add(span.data(), span.size_bytes()); };
  stream.add(&row_count_, sizeof(row_count_));
  add(flags_.first(row_count_));
  add(balances_low_.first(row_count_));
  stream.add(&high_count_, sizeof(high_count_));
  add(balances_high_.first(high_count_));
  stream.add(&expiry_count_, sizeof(expiry_count_));
  add(expiries_.first(expiry_count_));
}

EventBalances ChangeEventTable::balances(u32 row) const {
  TALLY_ASSERT(row < row_count_);
  const EventBalancesLow& low = balances_low_.data()[row];
  u64 high[event_balance_count] = {};
  if (flags_.data()[row] & event_flags::balances_high) {
    const std::optional<u32> index = high_of(row);
    TALLY_ASSERT(index.has_value(), "row %u is marked with high balances", row);
    std::memcpy(high, balances_high_.data()[*index].values, sizeof(high));
  }
  const auto value = [&](u32 index) { return make_u128(high[index], low.values[index]); };
  return EventBalances{
      .debit_account = {.debits_pending = value(0),
                        .debits_posted = value(1),
                        .credits_pending = value(2),
                        .credits_posted = value(3)},
      .credit_account = {.debits_pending = value(4),
                         .debits_posted = value(5),
                         .credits_pending = value(6),
                         .credits_posted = value(7)},
  };
}

}  // namespace tally::state_machine
