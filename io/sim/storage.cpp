// The simulated data file: see storage.hpp for the model. Every random choice comes from prng_,
// drawn in an order fixed by the calls made, so a seed replays exactly.
#include "io/sim/storage.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace tally::io::sim {

namespace {

bool aligned(u64 value) { return value % sector_size == 0; }

}  // namespace

const char* fault_name(Fault fault) {
  switch (fault) {
    case Fault::read_error: return "read_error";
    case Fault::bit_flip: return "bit_flip";
    case Fault::misdirected_write: return "misdirected_write";
    case Fault::torn_write: return "torn_write";
  }
  TALLY_UNREACHABLE();
}

Storage::Storage(const StorageOptions& options)
    : size_(options.size),
      sector_count_(options.size / sector_size),
      in_flight_max_(options.in_flight_max),
      read_latency_min_ticks_(options.read_latency_min_ticks),
      read_latency_max_ticks_(options.read_latency_max_ticks),
      write_latency_min_ticks_(options.write_latency_min_ticks),
      write_latency_max_ticks_(options.write_latency_max_ticks),
      rates_(options.fault_rates),
      prng_(options.seed) {
  TALLY_ASSERT(size_ > 0 && aligned(size_), "size %lu", static_cast<unsigned long>(size_));
  TALLY_ASSERT(in_flight_max_ > 0);
  // A latency of zero would complete an operation inside the tick that submitted it, and a
  // callback could then run before the submitter returns: every latency is at least one tick.
  TALLY_ASSERT(read_latency_min_ticks_ >= 1 && read_latency_min_ticks_ <= read_latency_max_ticks_);
  TALLY_ASSERT(write_latency_min_ticks_ >= 1 &&
               write_latency_min_ticks_ <= write_latency_max_ticks_);
  bytes_.init(size_);
  damage_.init(sector_count_);
  ready_.init(in_flight_max_);
}

void Storage::range_assert(u64 offset, u64 size) const {
  TALLY_ASSERT(aligned(offset) && aligned(size) && size > 0, "offset %lu size %lu",
               static_cast<unsigned long>(offset), static_cast<unsigned long>(size));
  TALLY_ASSERT(offset <= size_ && size <= size_ - offset, "offset %lu size %lu beyond %lu",
               static_cast<unsigned long>(offset), static_cast<unsigned long>(size),
               static_cast<unsigned long>(size_));
}

void Storage::read(Read* read, void (*callback)(Read*), std::span<std::byte> buffer, u64 offset) {
  TALLY_ASSERT(read != nullptr && callback != nullptr);
  TALLY_ASSERT(reinterpret_cast<std::uintptr_t>(buffer.data()) % sector_size == 0,
               "read buffer not sector-aligned");
  range_assert(offset, buffer.size());
  read->buffer = buffer;
  read->offset = offset;
  read->result = ReadResult::ok;
  read->callback_ = callback;
  const u32 latency = prng_.range_inclusive(read_latency_min_ticks_, read_latency_max_ticks_);
  submit(&read->pending_, Pending::Kind::read, read, latency);
}

void Storage::write(Write* write, void (*callback)(Write*), std::span<const std::byte> data,
                    u64 offset) {
  TALLY_ASSERT(write != nullptr && callback != nullptr);
  TALLY_ASSERT(reinterpret_cast<std::uintptr_t>(data.data()) % sector_size == 0,
               "write data not sector-aligned");
  range_assert(offset, data.size());
  write->data = data;
  write->offset = offset;
  write->callback_ = callback;
  const u32 latency = prng_.range_inclusive(write_latency_min_ticks_, write_latency_max_ticks_);
  submit(&write->pending_, Pending::Kind::write, write, latency);
}

void Storage::submit(Pending* pending, Pending::Kind kind, void* completion, u64 latency_ticks) {
  TALLY_ASSERT(!pending->in_flight_, "a completion is reused while still in flight");
  TALLY_ASSERT(in_flight_count_ < in_flight_max_, "more than %u operations in flight",
               in_flight_max_);
  pending->kind_ = kind;
  pending->ready_tick_ = ticks_ + latency_ticks;
  pending->submit_index_ = submit_count_;
  pending->next_ = nullptr;
  pending->completion_ = completion;
  pending->in_flight_ = true;
  submit_count_ += 1;
  if (pending_tail_ == nullptr) {
    pending_head_ = pending;
  } else {
    pending_tail_->next_ = pending;
  }
  pending_tail_ = pending;
  in_flight_count_ += 1;
}

void Storage::tick() {
  ticks_ += 1;

  // Unlink the operations that are due, keeping the others in submission order.
  u32 ready_count = 0;
  Pending* previous = nullptr;
  Pending* pending = pending_head_;
  while (pending != nullptr) {
    Pending* next = pending->next_;
    if (pending->ready_tick_ <= ticks_) {
      if (previous == nullptr) {
        pending_head_ = next;
      } else {
        previous->next_ = next;
      }
      if (pending_tail_ == pending) pending_tail_ = previous;
      pending->next_ = nullptr;
      ready_[ready_count] = pending;
      ready_count += 1;
    } else {
      previous = pending;
    }
    pending = next;
  }
  TALLY_ASSERT(ready_count <= in_flight_count_);

  // Operations due in the same tick complete in any order, as they would on a real device.
  prng_.shuffle(ready_.first(ready_count));
  for (u32 index = 0; index < ready_count; index += 1) {
    Pending* due = ready_[index];
    TALLY_ASSERT(due->in_flight_);
    due->in_flight_ = false;
    in_flight_count_ -= 1;
    if (due->kind_ == Pending::Kind::read) {
      complete_read(static_cast<Read*>(due->completion_));
    } else {
      complete_write(static_cast<Write*>(due->completion_));
    }
  }
}

void Storage::complete_read(Read* read) {
  const u64 sector_first = read->offset / sector_size;
  const u64 sector_end = sector_first + read->buffer.size() / sector_size;
  bool error = false;
  for (u64 sector = sector_first; sector < sector_end; sector += 1) {
    const u64 sector_offset = sector * sector_size;
    const FaultZone* read_error_zone = rates_.read_error_ppm > 0
                                           ? fault_zone(Fault::read_error, sector_offset,
                                                        sector_size)
                                           : nullptr;
    if ((damage_[sector] & damage::read_error) == 0 && read_error_zone != nullptr &&
        prng_.chance_ppm(rates_.read_error_ppm / read_error_zone->read_fault_divisor)) {
      damage_[sector] |= damage::read_error;
      fault_record(Fault::read_error, sector_offset);
    }
    if ((damage_[sector] & damage::read_error) != 0) {
      error = true;
      continue;
    }
    const FaultZone* bit_flip_zone =
        rates_.bit_flip_ppm > 0 ? fault_zone(Fault::bit_flip, sector_offset, sector_size)
                                : nullptr;
    if (bit_flip_zone != nullptr &&
        prng_.chance_ppm(rates_.bit_flip_ppm / bit_flip_zone->read_fault_divisor)) {
      sector_flip_bit(sector);
      fault_record(Fault::bit_flip, sector_offset);
    }
  }

  std::memcpy(read->buffer.data(), bytes_.data() + read->offset, read->buffer.size());
  if (error) {
    // The contract leaves the buffer undefined: junk, so that a reader trusting it fails loudly.
    for (u64 sector = sector_first; sector < sector_end; sector += 1) {
      if ((damage_[sector] & damage::read_error) == 0) continue;
      auto* junk = reinterpret_cast<u8*>(read->buffer.data() + (sector - sector_first) *
                                                                   sector_size);
      prng_.fill(std::span<u8>(junk, sector_size));
    }
  }
  read->result = error ? ReadResult::error : ReadResult::ok;
  trace(1);
  trace(read->offset);
  trace(read->buffer.size());
  trace(static_cast<u64>(read->result));
  read->callback_(read);
}

void Storage::complete_write(Write* write) {
  write_land(write);
  trace(2);
  trace(write->offset);
  trace(write->data.size());
  write->callback_(write);
}

void Storage::write_land(const Write* write) {
  const u64 size = write->data.size();
  const FaultZone* zone = rates_.misdirected_write_ppm > 0
                              ? fault_zone(Fault::misdirected_write, write->offset, size)
                              : nullptr;
  if (zone != nullptr && zone->size >= size + zone->alignment &&
      prng_.chance_ppm(rates_.misdirected_write_ppm)) {
    // Positions the write could land at inside its zone, its own excluded. Zone of 4 sectors,
    // alignment 1 sector, write of 2 sectors at sector 1: positions 0, 1, 2; the target is 0
    // or 2. Its own offset is a position only if it is aligned like the targets.
    const u64 positions = (zone->size - size) / zone->alignment + 1;
    const u64 relative = write->offset - zone->offset;
    const bool own_is_position = relative % zone->alignment == 0;
    u64 position = prng_.index(own_is_position ? positions - 1 : positions);
    if (own_is_position && position >= relative / zone->alignment) position += 1;
    TALLY_ASSERT(position < positions);
    const u64 target = zone->offset + position * zone->alignment;
    TALLY_ASSERT(target != write->offset && target + size <= zone->offset + zone->size);

    if (prng_.boolean()) {
      bytes_store(write->offset, write->data, 0);  // Lands at both offsets.
    } else {
      for (u64 sector = write->offset / sector_size; sector < (write->offset + size) / sector_size;
           sector += 1) {
        damage_[sector] |= damage::misdirected_away;
      }
    }
    bytes_store(target, write->data, damage::misdirected_onto);
    fault_record(Fault::misdirected_write, write->offset);
    trace(target);
    return;
  }
  bytes_store(write->offset, write->data, 0);
}

void Storage::write_tear(const Write* write) {
  // Only some sectors land. Each sector lands on a coin flip; if the coins agree, one sector
  // chosen at random goes the other way, so that a write of two or more sectors is torn for
  // real. The coins are drawn twice from copies of the generator (count, then apply) so that
  // no mask need be stored. A write of one sector cannot be split: it is lost.
  const u64 sector_first = write->offset / sector_size;
  const u64 sector_count = write->data.size() / sector_size;
  base::Prng counting = prng_;
  u64 landed_count = 0;
  for (u64 index = 0; index < sector_count; index += 1) landed_count += counting.boolean();
  u64 flipped = sector_count;  // None.
  if (sector_count == 1) {
    flipped = landed_count == 1 ? 0 : sector_count;
  } else if (landed_count == 0 || landed_count == sector_count) {
    flipped = counting.index(sector_count);
  }

  base::Prng applying = prng_;
  for (u64 index = 0; index < sector_count; index += 1) {
    const bool lands = applying.boolean() != (index == flipped);
    const u64 sector = sector_first + index;
    if (lands) {
      bytes_store(sector * sector_size, write->data.subspan(index * sector_size, sector_size), 0);
    } else {
      damage_[sector] |= damage::torn;
    }
  }
  prng_ = counting;
  fault_record(Fault::torn_write, write->offset);
}

void Storage::bytes_store(u64 offset, std::span<const std::byte> data, u8 damage_bits) {
  range_assert(offset, data.size());
  std::memcpy(bytes_.data() + offset, data.data(), data.size());
  // New bytes replace whatever damage the sectors had.
  for (u64 sector = offset / sector_size; sector < (offset + data.size()) / sector_size;
       sector += 1) {
    damage_[sector] = damage_bits;
  }
}

void Storage::crash() {
  // Outcomes are drawn in submission order, which the caller fixed, not in list order by
  // accident: the list is kept in submission order.
  u64 submit_index_last = 0;
  Pending* pending = pending_head_;
  while (pending != nullptr) {
    Pending* next = pending->next_;
    TALLY_ASSERT(pending->in_flight_);
    TALLY_ASSERT(pending == pending_head_ || pending->submit_index_ > submit_index_last);
    submit_index_last = pending->submit_index_;
    pending->in_flight_ = false;
    pending->next_ = nullptr;
    if (pending->kind_ == Pending::Kind::write) {
      const auto* write = static_cast<const Write*>(pending->completion_);
      if (rates_.torn_write_ppm > 0 &&
          fault_allowed(Fault::torn_write, write->offset, write->data.size()) &&
          prng_.chance_ppm(rates_.torn_write_ppm)) {
        write_tear(write);
        trace(3);
      } else if (prng_.boolean()) {
        write_land(write);
        trace(4);
      } else {
        trace(5);  // Lost.
      }
      trace(write->offset);
    }
    pending = next;
  }
  pending_head_ = nullptr;
  pending_tail_ = nullptr;
  in_flight_count_ = 0;
  trace(6);
}

void Storage::faults_allow(Fault fault, FaultZone zone) {
  range_assert(zone.offset, zone.size);
  TALLY_ASSERT(zone.alignment > 0 && aligned(zone.alignment));
  TALLY_ASSERT(zone.read_fault_divisor >= 1);
  zones_[static_cast<u32>(fault)].push(zone);
}

void Storage::faults_disallow_all() {
  for (auto& zones : zones_) zones.clear();
}

const FaultZone* Storage::fault_zone(Fault fault, u64 offset, u64 size) const {
  for (const FaultZone& zone : zones_[static_cast<u32>(fault)]) {
    if (offset >= zone.offset && offset + size <= zone.offset + zone.size) return &zone;
  }
  return nullptr;
}

bool Storage::fault_allowed(Fault fault, u64 offset, u64 size) const {
  return fault_zone(fault, offset, size) != nullptr;
}

void Storage::sector_flip_bit(u64 sector_index) {
  TALLY_ASSERT(sector_index < sector_count_);
  const u64 bit = prng_.index(u64{sector_size} * 8);
  bytes_[sector_index * sector_size + bit / 8] ^= std::byte{static_cast<u8>(1u << (bit % 8))};
  damage_[sector_index] |= damage::bit_flip;
}

void Storage::inject_bit_flip(u64 offset) {
  range_assert(offset, sector_size);
  sector_flip_bit(offset / sector_size);
  fault_record(Fault::bit_flip, offset);
}

void Storage::inject_read_error(u64 offset) {
  range_assert(offset, sector_size);
  damage_[offset / sector_size] |= damage::read_error;
  fault_record(Fault::read_error, offset);
}

void Storage::fault_record(Fault fault, u64 offset) {
  fault_counts_[static_cast<u32>(fault)] += 1;
  trace(10 + static_cast<u64>(fault));
  trace(offset);
}

u8 Storage::sector_damage(u64 offset) const {
  range_assert(offset, sector_size);
  return damage_[offset / sector_size];
}

bool Storage::damaged(u64 offset, u64 size) const {
  range_assert(offset, size);
  const u8* first = damage_.data() + offset / sector_size;
  return std::any_of(first, first + size / sector_size, [](u8 bits) { return bits != 0; });
}

u64 Storage::damaged_sector_count() const {
  const u8* first = damage_.data();
  return static_cast<u64>(
      std::count_if(first, first + sector_count_, [](u8 bits) { return bits != 0; }));
}

std::span<const std::byte> Storage::peek(u64 offset, u64 size) const {
  range_assert(offset, size);
  return {bytes_.data() + offset, size};
}

void Storage::trace(u64 value) {
  // splitmix64's finalizer over the running hash and the value: order-sensitive, so two runs
  // agree only if every event happened in the same order with the same values.
  u64 state = trace_hash_ ^ (value * 0x9e3779b97f4a7c15);
  trace_hash_ = base::splitmix64_next(state) ^ ticks_;
}

}  // namespace tally::io::sim
