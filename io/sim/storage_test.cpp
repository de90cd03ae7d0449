// Tests of the simulated storage and clock: data written comes back when no fault is allowed;
// operations complete only on ticks, within their latency, in a seeded order; each fault kind
// happens where it is allowed, only there, and is recorded; a crash loses or tears only writes
// in flight; one seed gives one run.
#include "io/sim/storage.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "io/sim/time.hpp"
#include "src/base/large_array.hpp"
#include "src/base/prng.hpp"
#include "tally/checksum.hpp"

namespace {

using tally::i64;
using tally::u32;
using tally::u64;
using tally::u8;
using tally::base::LargeArray;
using tally::base::Prng;
using tally::io::sim::damage::bit_flip;
using tally::io::sim::damage::misdirected_away;
using tally::io::sim::damage::misdirected_onto;
using tally::io::sim::damage::read_error;
using tally::io::sim::damage::torn;
using tally::io::sim::Fault;
using tally::io::sim::FaultRates;
using tally::io::sim::sector_size;
using tally::io::sim::Storage;
using tally::io::sim::StorageOptions;
using tally::journal::ReadResult;

constexpr u64 ppm_always = 1'000'000;

// A sector-aligned buffer (LargeArray memory is page-aligned).
struct Buffer {
  explicit Buffer(u64 size) { bytes.init(size); }
  std::span<std::byte> span(u64 offset, u64 size) { return {bytes.data() + offset, size}; }
  std::span<std::byte> all() { return span(0, bytes.capacity()); }
  LargeArray<std::byte> bytes;
};

void fill_pattern(std::span<std::byte> bytes, u64 seed) {
  Prng prng(seed);
  prng.fill(std::span<u8>(reinterpret_cast<u8*>(bytes.data()), bytes.size()));
}

bool equal(std::span<const std::byte> a, std::span<const std::byte> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
}

// Counts completions; records the tick each one ran at.
struct Counter {
  Storage* storage = nullptr;
  u32 count = 0;
  u64 tick_last = 0;
  ReadResult result_last = ReadResult::ok;
};

void read_counted(Storage::Read* read) {
  auto* counter = static_cast<Counter*>(read->context);
  counter->count += 1;
  counter->tick_last = counter->storage->ticks();
  counter->result_last = read->result;
}

void write_counted(Storage::Write* write) {
  auto* counter = static_cast<Counter*>(write->context);
  counter->count += 1;
  counter->tick_last = counter->storage->ticks();
}

void run_until_idle(Storage& storage) {
  for (u32 tick = 0; tick < 10'000 && !storage.idle(); tick += 1) storage.tick();
  REQUIRE(storage.idle());
}

// Reads [offset, offset + size) with no latency games: submit, tick until done.
ReadResult read_now(Storage& storage, std::span<std::byte> buffer, u64 offset) {
  Counter counter{.storage = &storage};
  Storage::Read read;
  read.context = &counter;
  storage.read(&read, read_counted, buffer, offset);
  run_until_idle(storage);
  REQUIRE(counter.count == 1);
  return counter.result_last;
}

void write_now(Storage& storage, std::span<const std::byte> data, u64 offset) {
  Counter counter{.storage = &storage};
  Storage::Write write;
  write.context = &counter;
  storage.write(&write, write_counted, data, offset);
  run_until_idle(storage);
  REQUIRE(counter.count == 1);
}

}  // namespace

TEST_SUITE("io_sim_storage") {
  TEST_CASE("sim storage: completed writes read back exactly when no fault is allowed") {
    // Random writes and reads of 1-8 sectors, many in flight at once, checked against a model.
    // Two writes in flight to overlapping sectors could land in either order, so the workload
    // keeps writes in flight at the same time apart.
    constexpr u64 size = 64 * sector_size;
    Storage storage(StorageOptions{.size = size,
                                   .seed = 7,
                                   .read_latency_min_ticks = 1,
                                   .read_latency_max_ticks = 5,
                                   .write_latency_min_ticks = 2,
                                   .write_latency_max_ticks = 9});
    std::vector<std::byte> model(size, std::byte{0});
    Buffer writes_data(size);
    Buffer reads_data(size);
    Prng prng(99);
    for (u32 round = 0; round < 50; round += 1) {
      // Eight writes to eight disjoint 8-sector areas, in a random order.
      Storage::Write writes[8];
      Counter counters[8];
      u32 areas[8] = {0, 1, 2, 3, 4, 5, 6, 7};
      prng.shuffle(std::span<u32>(areas));
      for (u32 index = 0; index < 8; index += 1) {
        const u64 sectors = prng.range_inclusive<u64>(1, 8);
        const u64 offset = (areas[index] * 8 + prng.index<u64>(9 - sectors)) * sector_size;
        auto data = writes_data.span(offset, sectors * sector_size);
        fill_pattern(data, prng.next_u64());
        std::memcpy(model.data() + offset, data.data(), data.size());
        counters[index].storage = &storage;
        writes[index].context = &counters[index];
        const u64 tick_submit = storage.ticks();
        storage.write(&writes[index], write_counted, data, offset);
        CHECK(counters[index].count == 0);  // Never from inside write().
        counters[index].tick_last = tick_submit;
      }
      const u64 tick_submit = storage.ticks();
      CHECK(storage.in_flight_count() == 8);
      run_until_idle(storage);
      for (const Counter& counter : counters) {
        CHECK(counter.count == 1);
        CHECK(counter.tick_last >= tick_submit + 2);
        CHECK(counter.tick_last <= tick_submit + 9);
      }
      // Read back the whole file in random pieces.
      u64 offset = 0;
      while (offset < size) {
        const u64 sectors = std::min<u64>(prng.range_inclusive<u64>(1, 16), (size - offset) /
                                                                                sector_size);
        auto buffer = reads_data.span(offset, sectors * sector_size);
        CHECK(read_now(storage, buffer, offset) == ReadResult::ok);
        CHECK(std::memcmp(buffer.data(), model.data() + offset, buffer.size()) == 0);
        offset += buffer.size();
      }
    }
    CHECK(storage.damaged_sector_count() == 0);
    for (u32 fault = 0; fault < tally::io::sim::fault_kind_count; fault += 1) {
      CHECK(storage.fault_count(static_cast<Fault>(fault)) == 0);
    }
  }

  TEST_CASE("sim storage: operations due in one tick complete in an order drawn from the seed") {
    // Sixteen reads due in the same tick: the order is a permutation chosen by the seed.
    auto order_for_seed = [](u64 seed) {
      Storage storage(StorageOptions{.size = 16 * sector_size, .seed = seed});
      Buffer buffer(16 * sector_size);
      std::vector<u64> order;
      struct Recorder {
        std::vector<u64>* order;
      } recorder{&order};
      Storage::Read reads[16];
      for (u32 index = 0; index < 16; index += 1) {
        reads[index].context = &recorder;
        storage.read(
            &reads[index],
            [](Storage::Read* read) {
              static_cast<Recorder*>(read->context)->order->push_back(read->offset / sector_size);
            },
            buffer.span(index * sector_size, sector_size), index * sector_size);
      }
      storage.tick();
      CHECK(storage.idle());
      return order;
    };
    const std::vector<u64> first = order_for_seed(1);
    CHECK(first.size() == 16);
    CHECK(order_for_seed(1) == first);
    std::vector<u64> sorted = first;
    std::sort(sorted.begin(), sorted.end());
    for (u64 index = 0; index < 16; index += 1) CHECK(sorted[index] == index);
    bool some_seed_differs = false;
    for (u64 seed = 2; seed < 10; seed += 1) some_seed_differs |= order_for_seed(seed) != first;
    CHECK(some_seed_differs);
  }

  TEST_CASE("sim storage: latent sector errors fail reads in their zone until rewritten") {
    Storage storage(StorageOptions{.size = 8 * sector_size,
                                   .seed = 3,
                                   .fault_rates = {.read_error_ppm = ppm_always}});
    storage.faults_allow(Fault::read_error, {.offset = 2 * sector_size, .size = 2 * sector_size});
    Buffer buffer(8 * sector_size);
    fill_pattern(buffer.all(), 5);
    write_now(storage, buffer.all(), 0);

    // Outside the zone: never.
    CHECK(read_now(storage, buffer.span(0, 2 * sector_size), 0) == ReadResult::ok);
    CHECK(read_now(storage, buffer.span(4 * sector_size, 4 * sector_size), 4 * sector_size) ==
          ReadResult::ok);
    CHECK(storage.fault_count(Fault::read_error) == 0);

    // A read that touches the zone fails, and the sector stays unreadable with the rate at 0.
    CHECK(read_now(storage, buffer.span(0, 3 * sector_size), 0) == ReadResult::error);
    CHECK(storage.fault_count(Fault::read_error) == 1);
    CHECK((storage.sector_damage(2 * sector_size) & read_error) != 0);
    CHECK(storage.sector_damage(3 * sector_size) == 0);
    storage.fault_rates_set({});
    CHECK(read_now(storage, buffer.span(2 * sector_size, sector_size), 2 * sector_size) ==
          ReadResult::error);
    CHECK(read_now(storage, buffer.span(3 * sector_size, sector_size), 3 * sector_size) ==
          ReadResult::ok);
    CHECK(storage.damaged(0, 8 * sector_size));
    CHECK(storage.damaged_sector_count() == 1);

    // Writing the sector remaps it: readable again, the damage record cleared.
    Buffer fresh(sector_size);
    fill_pattern(fresh.all(), 6);
    write_now(storage, fresh.all(), 2 * sector_size);
    Buffer check(sector_size);
    CHECK(read_now(storage, check.all(), 2 * sector_size) == ReadResult::ok);
    CHECK(equal(check.all(), fresh.all()));
    CHECK(!storage.damaged(0, 8 * sector_size));
  }

  TEST_CASE("sim storage: bit flips corrupt the stored sector and are recorded") {
    Storage storage(StorageOptions{.size = 8 * sector_size,
                                   .seed = 4,
                                   .fault_rates = {.bit_flip_ppm = ppm_always}});
    storage.faults_allow(Fault::bit_flip, {.offset = 5 * sector_size, .size = sector_size});
    Buffer written(8 * sector_size);
    fill_pattern(written.all(), 8);
    write_now(storage, written.all(), 0);

    Buffer read_back(8 * sector_size);
    CHECK(read_now(storage, read_back.all(), 0) == ReadResult::ok);
    CHECK(storage.fault_count(Fault::bit_flip) == 1);
    // Exactly one bit differs, in sector 5.
    u64 bits_different = 0;
    for (u64 index = 0; index < 8 * sector_size; index += 1) {
      const auto difference = static_cast<u8>(read_back.bytes[index] ^ written.bytes[index]);
      if (difference != 0) CHECK(index / sector_size == 5);
      bits_different += static_cast<u64>(__builtin_popcount(difference));
    }
    CHECK(bits_different == 1);
    CHECK(storage.sector_damage(5 * sector_size) == bit_flip);
    CHECK(storage.damaged_sector_count() == 1);

    // Persistent: with the rate at zero, the same corrupt bytes come back, as stored.
    storage.fault_rates_set({});
    Buffer again(8 * sector_size);
    CHECK(read_now(storage, again.all(), 0) == ReadResult::ok);
    CHECK(equal(again.all(), read_back.all()));
    CHECK(equal(storage.peek(0, 8 * sector_size), read_back.all()));
  }

  TEST_CASE("sim storage: misdirected writes land elsewhere in their zone and are recorded") {
    // A zone of 8 sectors; a one-sector write at sector 2 of the zone, always misdirected.
    // Over many seeds both modes happen (instead of, and as well as, its own offset), the
    // target is never the write's own offset nor outside the zone, and the record says so.
    constexpr u64 zone_offset = 4 * sector_size;
    constexpr u64 own = zone_offset + 2 * sector_size;
    u32 instead_count = 0;
    u32 both_count = 0;
    for (u64 seed = 0; seed < 64; seed += 1) {
      Storage storage(StorageOptions{.size = 16 * sector_size,
                                     .seed = seed,
                                     .fault_rates = {.misdirected_write_ppm = ppm_always}});
      storage.faults_allow(Fault::misdirected_write,
                           {.offset = zone_offset, .size = 8 * sector_size});
      Buffer data(sector_size);
      fill_pattern(data.all(), 1000 + seed);
      write_now(storage, data.all(), own);
      CHECK(storage.fault_count(Fault::misdirected_write) == 1);

      u32 found = 0;
      u64 target = 0;
      for (u64 offset = 0; offset < 16 * sector_size; offset += sector_size) {
        if (offset == own) continue;
        if (equal(storage.peek(offset, sector_size), data.all())) {
          found += 1;
          target = offset;
        }
      }
      REQUIRE(found == 1);
      CHECK(target >= zone_offset);
      CHECK(target < zone_offset + 8 * sector_size);
      CHECK(storage.sector_damage(target) == misdirected_onto);
      if (equal(storage.peek(own, sector_size), data.all())) {
        both_count += 1;
        CHECK(storage.sector_damage(own) == 0);
      } else {
        instead_count += 1;
        CHECK(storage.sector_damage(own) == misdirected_away);
      }
      // A write outside the zone is never misdirected.
      write_now(storage, data.all(), 0);
      CHECK(equal(storage.peek(0, sector_size), data.all()));
      CHECK(storage.fault_count(Fault::misdirected_write) == 1);
    }
    CHECK(instead_count > 0);
    CHECK(both_count > 0);
  }

  TEST_CASE("sim storage: a crash tears writes in flight in a torn zone and drops callbacks") {
    u32 torn_seen = 0;
    for (u64 seed = 0; seed < 32; seed += 1) {
      Storage storage(StorageOptions{.size = 8 * sector_size,
                                     .seed = seed,
                                     .fault_rates = {.torn_write_ppm = ppm_always}});
      storage.faults_allow(Fault::torn_write, {.offset = 0, .size = 8 * sector_size});
      Buffer old_data(4 * sector_size);
      fill_pattern(old_data.all(), 1);
      write_now(storage, old_data.all(), 0);
      Buffer new_data(4 * sector_size);
      fill_pattern(new_data.all(), 2 + seed);

      Counter counter{.storage = &storage};
      Storage::Write write;
      write.context = &counter;
      storage.write(&write, write_counted, new_data.all(), 0);
      storage.crash();
      CHECK(storage.idle());
      for (u32 tick = 0; tick < 10; tick += 1) storage.tick();
      CHECK(counter.count == 0);
      CHECK(storage.fault_count(Fault::torn_write) == 1);

      // Each sector is old or new; at least one of each; the old ones are recorded as torn.
      u32 landed = 0;
      for (u64 sector = 0; sector < 4; sector += 1) {
        const u64 offset = sector * sector_size;
        const auto stored = storage.peek(offset, sector_size);
        if (equal(stored, new_data.span(offset, sector_size))) {
          landed += 1;
          CHECK(storage.sector_damage(offset) == 0);
        } else {
          CHECK(equal(stored, old_data.span(offset, sector_size)));
          CHECK(storage.sector_damage(offset) == torn);
        }
      }
      CHECK(landed >= 1);
      CHECK(landed <= 3);
      torn_seen += 1;
    }
    CHECK(torn_seen == 32);
  }

  TEST_CASE("sim storage: a crash loses only writes in flight, whole, and reads in flight") {
    // Without torn or misdirected writes allowed, a write in flight at a crash lands whole or
    // not at all; completed writes are untouched; nothing in flight calls back, then or later.
    u32 landed_count = 0;
    u32 lost_count = 0;
    for (u64 seed = 0; seed < 32; seed += 1) {
      Storage storage(StorageOptions{.size = 16 * sector_size,
                                     .seed = seed,
                                     .write_latency_min_ticks = 1,
                                     .write_latency_max_ticks = 4});
      Buffer durable(4 * sector_size);
      fill_pattern(durable.all(), 10 + seed);
      write_now(storage, durable.all(), 0);

      Buffer in_flight(4 * sector_size);
      fill_pattern(in_flight.all(), 20 + seed);
      Buffer reading(4 * sector_size);
      Counter counter{.storage = &storage};
      Storage::Write write;
      write.context = &counter;
      Storage::Read read;
      read.context = &counter;
      storage.write(&write, write_counted, in_flight.all(), 8 * sector_size);
      storage.read(&read, read_counted, reading.all(), 0);
      storage.crash();
      for (u32 tick = 0; tick < 10; tick += 1) storage.tick();
      CHECK(counter.count == 0);

      CHECK(equal(storage.peek(0, 4 * sector_size), durable.all()));
      const auto stored = storage.peek(8 * sector_size, 4 * sector_size);
      if (equal(stored, in_flight.all())) {
        landed_count += 1;
      } else {
        const bool zero = std::all_of(stored.begin(), stored.end(),
                                      [](std::byte byte) { return byte == std::byte{0}; });
        CHECK(zero);
        lost_count += 1;
      }
      CHECK(storage.damaged_sector_count() == 0);

      // The storage serves the next process.
      write_now(storage, in_flight.all(), 8 * sector_size);
      CHECK(equal(storage.peek(8 * sector_size, 4 * sector_size), in_flight.all()));
    }
    CHECK(landed_count > 0);
    CHECK(lost_count > 0);
  }

  TEST_CASE("sim storage: injected damage is recorded like drawn damage") {
    Storage storage(StorageOptions{.size = 4 * sector_size, .seed = 1});
    Buffer data(4 * sector_size);
    fill_pattern(data.all(), 3);
    write_now(storage, data.all(), 0);
    storage.inject_bit_flip(sector_size);
    storage.inject_read_error(3 * sector_size);
    CHECK(storage.sector_damage(sector_size) == bit_flip);
    CHECK(storage.sector_damage(3 * sector_size) == read_error);
    CHECK(!equal(storage.peek(sector_size, sector_size), data.span(sector_size, sector_size)));
    Buffer read_back(4 * sector_size);
    CHECK(read_now(storage, read_back.all(), 0) == ReadResult::error);
    CHECK(storage.fault_count(Fault::bit_flip) == 1);
    CHECK(storage.fault_count(Fault::read_error) == 1);
  }

  TEST_CASE("sim storage: one seed gives one run, faults and crashes included") {
    // A busy workload with every fault allowed everywhere at high rates and crashes midway.
    // Two runs with one seed must agree on every callback, every result, the stored bytes and
    // the damage record; another seed must not.
    struct Trace {
      std::vector<u64> events;
      u64 trace_hash = 0;
      tally::u128 bytes_checksum = 0;
      u64 damaged = 0;
    };
    auto run = [](u64 seed) {
      constexpr u64 size = 32 * sector_size;
      Storage storage(StorageOptions{.size = size,
                                     .seed = seed,
                                     .read_latency_min_ticks = 1,
                                     .read_latency_max_ticks = 3,
                                     .write_latency_min_ticks = 1,
                                     .write_latency_max_ticks = 6,
                                     .fault_rates = {.read_error_ppm = 20'000,
                                                     .bit_flip_ppm = 20'000,
                                                     .misdirected_write_ppm = 50'000,
                                                     .torn_write_ppm = 500'000}});
      for (u32 fault = 0; fault < tally::io::sim::fault_kind_count; fault += 1) {
        storage.faults_allow(static_cast<Fault>(fault), {.offset = 0, .size = size});
      }
      Trace trace;
      struct Context {
        Trace* trace;
        Storage* storage;
      } context{&trace, &storage};
      Buffer buffers(16 * 4 * sector_size);
      Storage::Read reads[16];
      Storage::Write writes[16];
      Prng workload(1234);  // The workload is the same for every seed: only the storage varies.
      for (u32 round = 0; round < 40; round += 1) {
        for (u32 index = 0; index < 16; index += 1) {
          const u64 sectors = workload.range_inclusive<u64>(1, 4);
          const u64 offset = workload.index<u64>(32 - sectors + 1) * sector_size;
          auto buffer = buffers.span(index * 4 * sector_size, sectors * sector_size);
          if (workload.boolean()) {
            fill_pattern(buffer, workload.next_u64());
            writes[index].context = &context;
            storage.write(
                &writes[index],
                [](Storage::Write* write) {
                  auto* c = static_cast<Context*>(write->context);
                  c->trace->events.push_back(c->storage->ticks() << 32 | write->offset);
                },
                buffer, offset);
          } else {
            reads[index].context = &context;
            storage.read(
                &reads[index],
                [](Storage::Read* read) {
                  auto* c = static_cast<Context*>(read->context);
                  c->trace->events.push_back(
                      c->storage->ticks() << 32 | read->offset |
                      static_cast<u64>(read->result) << 31);
                  c->trace->events.push_back(static_cast<u64>(tally::checksum(read->buffer)));
                },
                buffer, offset);
          }
        }
        const u64 ticks = workload.range_inclusive<u64>(1, 8);
        for (u64 tick = 0; tick < ticks; tick += 1) storage.tick();
        storage.crash();
        trace.events.push_back(~u64{0});
      }
      trace.trace_hash = storage.trace_hash();
      trace.bytes_checksum = tally::checksum(storage.peek(0, size));
      trace.damaged = storage.damaged_sector_count();
      for (u32 fault = 0; fault < tally::io::sim::fault_kind_count; fault += 1) {
        CHECK(storage.fault_count(static_cast<Fault>(fault)) > 0);
      }
      return trace;
    };
    const Trace first = run(42);
    const Trace second = run(42);
    CHECK(first.events == second.events);
    CHECK(first.trace_hash == second.trace_hash);
    CHECK(first.bytes_checksum == second.bytes_checksum);
    CHECK(first.damaged == second.damaged);
    CHECK(first.damaged > 0);
    const Trace other = run(43);
    CHECK(other.trace_hash != first.trace_hash);
    CHECK(other.bytes_checksum != first.bytes_checksum);
  }
}

TEST_SUITE("io_sim_time") {
  TEST_CASE("sim time: monotonic counts ticks of 10 ms; realtime follows with offset and drift") {
    using tally::io::sim::Time;
    using tally::io::sim::tick_ns;
    Time time({.epoch_ns = 1'000'000'000, .offset_ns = 0, .drift_ppm = 0});
    CHECK(time.monotonic_ns() == 0);
    CHECK(time.realtime_ns() == 1'000'000'000);
    for (u32 tick = 0; tick < 1000; tick += 1) time.tick();
    CHECK(time.ticks() == 1000);
    CHECK(time.monotonic_ns() == 10'000'000'000);
    CHECK(tick_ns == 10'000'000);
    CHECK(time.realtime_ns() == 11'000'000'000);

    // 500 ppm fast: after 10 s, 5 ms ahead. An offset shifts realtime at once.
    time.drift_set(500);
    CHECK(time.realtime_ns() == 11'005'000'000);
    time.offset_set(-2'000'000'000);
    CHECK(time.realtime_ns() == 9'005'000'000);
    time.drift_set(-500);
    CHECK(time.realtime_ns() == 8'995'000'000);
    CHECK(time.monotonic_ns() == 10'000'000'000);  // Unaffected by either.

    // Realtime may step back (an NTP step); monotonic never does.
    u64 monotonic_last = time.monotonic_ns();
    time.offset_set(-5'000'000'000);
    time.tick();
    CHECK(time.monotonic_ns() > monotonic_last);
    CHECK(time.realtime_ns() < 8'995'000'000);
    const i64 sub_ppm = Time({.epoch_ns = 0, .offset_ns = 0, .drift_ppm = 1}).realtime_ns();
    CHECK(sub_ppm == 0);
  }
}
