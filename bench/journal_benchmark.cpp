// The WAL's append path on a real disk: journal::Wal over io::FileStorage and io::Loop.
//
// One iteration is one write_prepare() of a 1 MiB prepare (header and 1 MiB - 256 bytes of
// body), durable when its callback runs: the prepare written to its slot, then the slot's
// 4 KiB header sector. Ops go up by one, so the writes walk the production WAL (1024 slots of
// 1 MiB) front to back and wrap, as a replica's do. Queue depth 1 is one prepare at a time;
// queue depth 8 is a full pipeline. Each runs in both durability modes of FileStorage:
//   per_write      O_DIRECT | O_DSYNC: every write is made durable on its own.
//   flush_batched  O_DIRECT, then one fdatasync covering every write completed before it.
// The prepares ring is written once through before anything is measured (steady state), and
// the prepares are built beforehand: the body checksum belongs to the replica's request path,
// so each op only re-seals its 256-byte header.
//
// Counters: MiB_per_second (prepares completed, over wall time), latency_p50_us and
// latency_p99_us (write_prepare() to callback), storage_writes_per_prepare (2 when each header
// sector goes alone; fewer when eight in flight share sectors), allocations_per_iteration (must
// be 0). `journal_bare_pattern` does the same two writes per prepare straight on FileStorage,
// without the Wal: the device's price for the write order. `journal_recover` reads a full WAL
// back (1024 slots of 1 MiB, both rings) and reports its MiB/s. Compare with
// bench/io_write_benchmark.cpp (the bare 1 MiB write) and fio; the results, the machine and the
// commands are in perf/journal.md. The data files (the superblock and the two WAL zones of the
// production layout, 1 GiB + 288 KiB; another for the bare pattern) live in the build directory
// (TALLY_BENCH_DIRECTORY), never in /tmp, which may be tmpfs.
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "io/file_storage.hpp"
#include "io/loop.hpp"
#include "journal/layout.hpp"
#include "journal/wal.hpp"
#include "src/base/allocation_guard.hpp"
#include "src/base/assert.hpp"
#include "src/base/large_array.hpp"
#include "tally/header.hpp"

namespace {

using tally::Header;
using tally::u128;
using tally::u32;
using tally::u64;
using tally::io::Durability;
using tally::io::FileStorage;
using tally::io::Loop;
using tally::journal::Layout;
using tally::journal::LayoutConfig;
using tally::journal::ZoneKind;

using Wal = tally::journal::Wal<FileStorage>;

constexpr u128 cluster = 0x7a11;
constexpr u32 queue_depth_max = tally::journal::wal_write_count_max;
constexpr u64 latency_count_max = 1 << 20;
constexpr u64 wait_ns_max = 1'000'000'000;
const Layout layout{LayoutConfig::production()};
constexpr u32 message_size = tally::message_size_max;
static_assert(LayoutConfig::production().message_size_max == message_size);

// The file holds the zones up to the end of the prepares ring: all the WAL touches.
u64 file_size() { return layout.zone(ZoneKind::wal_prepares).end(); }

std::string data_file_path() {
  return std::string(TALLY_BENCH_DIRECTORY) + "/journal_benchmark.data";
}

// journal_bare_pattern's own file, so that its raw writes never land in the WAL that the
// other benchmarks recover.
std::string bare_file_path() {
  return std::string(TALLY_BENCH_DIRECTORY) + "/journal_benchmark.bare.data";
}

void data_file_create(const std::string& path) {
  ::unlink(path.c_str());
  const tally::io::CreateResult result = tally::io::file_create(path.c_str(), file_size());
  if (result.status != tally::io::CreateStatus::ok) {
    std::fprintf(stderr, "journal_benchmark: cannot create %s: %s (%s)\n", path.c_str(),
                 tally::io::create_status_message(result.status),
                 strerrorname_np(result.error_number));
    std::exit(1);
  }
}

// Builds the prepare of `op` in `buffer` (whose body is already filled and checksummed).
void prepare_seal(std::byte* buffer, u64 op, u128 checksum_body) {
  Header header{};
  header.cluster = cluster;
  header.size = message_size;
  header.release = tally::release_server;
  header.command = tally::Command::prepare;
  header.checksum_body = checksum_body;
  header.prepare.op = op;
  header.prepare.commit = op == 0 ? 0 : op - 1;
  header.prepare.timestamp = op + 1;
  header.prepare.operation = tally::Operation::create_transfers;
  tally::set_checksum(header);
  std::memcpy(buffer, &header, sizeof(Header));
}

void completion_set(Wal::Completion* completion) {
  *static_cast<bool*>(completion->context) = true;
}

struct Appender;

struct Slot {
  Wal::Write write;
  Appender* appender = nullptr;
  u64 start_ns = 0;
  u32 index = 0;
};

// A Wal on the data file, recovered, keeping up to `queue_depth` prepares in flight.
struct Appender {
  Loop loop;
  FileStorage storage;
  tally::base::LargeArray<std::byte> buffers;
  u128 checksums_body[queue_depth_max] = {};
  u32 queue_depth = 0;
  Slot slots[queue_depth_max];
  Slot* free_slots[queue_depth_max] = {};
  u32 free_count = 0;
  u64 op_next = 0;
  u64 completed = 0;
  tally::base::LargeArray<u64> latencies_ns;
  u64 latency_count = 0;
  std::optional<Wal> wal;

  Appender(Durability durability, u32 depth) : queue_depth(depth) {
    TALLY_ASSERT(queue_depth >= 1 && queue_depth <= queue_depth_max);
    loop.init(Loop::entries_default);
    const std::string path = data_file_path();
    const tally::io::OpenResult opened =
        storage.open(&loop, {.path = path.c_str(), .durability = durability});
    TALLY_ASSERT(opened.status == tally::io::OpenStatus::ok, "open: %s",
                 tally::io::open_status_message(opened.status));
    wal.emplace(storage, layout, tally::journal::WalOptions{.cluster = cluster});
    bool recovered = false;
    Wal::Completion completion;
    completion.context = &recovered;
    wal->recover(&completion, completion_set, {});
    while (!recovered) loop.run_once(wait_ns_max);
    op_next = wal->op_max() ? *wal->op_max() + 1 : 0;

    // Bodies that are not all zeros, touched now so that no page fault lands in a write.
    buffers.init(u64{queue_depth} * message_size);
    for (u32 index = 0; index < queue_depth; index += 1) {
      std::byte* buffer = buffers.data() + u64{index} * message_size;
      for (u64 at = sizeof(Header); at < message_size; at += 1) {
        buffer[at] = static_cast<std::byte>(((at + index) * 2654435761u) >> 13);
      }
      checksums_body[index] =
          tally::checksum(buffer + sizeof(Header), message_size - sizeof(Header));
      slots[index].appender = this;
      slots[index].index = index;
      slots[index].write.context = &slots[index];
      free_slots[free_count] = &slots[index];
      free_count += 1;
    }
    latencies_ns.init(latency_count_max);
  }

  ~Appender() {
    drain();
    wal.reset();
    storage.close();
  }

  // Starts one prepare, first waiting for a free slot.
  void append_one() {
    while (free_count == 0) loop.run_once(wait_ns_max);
    free_count -= 1;
    Slot* slot = free_slots[free_count];
    std::byte* buffer = buffers.data() + u64{slot->index} * message_size;
    prepare_seal(buffer, op_next, checksums_body[slot->index]);
    op_next += 1;
    slot->start_ns = loop.time().monotonic_ns();
    wal->write_prepare(&slot->write, append_callback, {buffer, message_size});
  }

  static void append_callback(Wal::Write* write) {
    auto* slot = static_cast<Slot*>(write->context);
    Appender* appender = slot->appender;
    const u64 latency_ns = appender->loop.time().monotonic_ns() - slot->start_ns;
    if (appender->latency_count < latency_count_max) {
      appender->latencies_ns[appender->latency_count] = latency_ns;
      appender->latency_count += 1;
    }
    appender->completed += 1;
    appender->free_slots[appender->free_count] = slot;
    appender->free_count += 1;
  }

  void drain() {
    while (wal->writes_in_flight() > 0) loop.run_once(wait_ns_max);
  }

  double latency_percentile_us(double percentile) {
    TALLY_ASSERT(latency_count > 0);
    const auto rank = static_cast<u64>(percentile * static_cast<double>(latency_count - 1));
    u64* data = latencies_ns.data();
    std::nth_element(data, data + rank, data + latency_count);
    return static_cast<double>(data[rank]) / 1000.0;
  }
};

// The data file, created and written once through (every slot of the prepares ring holds a
// prepare), so that measured writes overwrite allocated, written extents.
void data_file_prepare() {
  static const bool prepared = [] {
    data_file_create(data_file_path());
    Appender appender(Durability::flush_batched, queue_depth_max);
    for (u32 index = 0; index < layout.config().slot_count; index += 1) appender.append_one();
    appender.drain();
    return true;
  }();
  TALLY_ASSERT(prepared);
}

Durability durability_argument(const benchmark::State& state) {
  return state.range(1) == 0 ? Durability::per_write : Durability::flush_batched;
}

void journal_append(benchmark::State& state) {
  data_file_prepare();
  const auto queue_depth = static_cast<u32>(state.range(0));
  Appender appender(durability_argument(state), queue_depth);
  state.SetLabel(durability_argument(state) == Durability::per_write ? "O_DSYNC" : "fdatasync");

  const u64 writes_before = appender.storage.stats().writes;
  const u64 allocations_before = tally::base::allocation_guard::allocations_total();
  for (auto _ : state) appender.append_one();
  const u64 completed = appender.completed;
  const u64 allocations = tally::base::allocation_guard::allocations_total() - allocations_before;
  appender.drain();
  const auto prepares = static_cast<double>(appender.completed);
  const auto iterations = static_cast<double>(state.iterations());

  state.counters["MiB_per_second"] = benchmark::Counter(
      static_cast<double>(completed) * message_size / double{1 << 20},
      benchmark::Counter::kIsRate);
  state.counters["latency_p50_us"] = appender.latency_percentile_us(0.50);
  state.counters["latency_p99_us"] = appender.latency_percentile_us(0.99);
  state.counters["storage_writes_per_prepare"] =
      static_cast<double>(appender.storage.stats().writes - writes_before) / prepares;
  state.counters["allocations_per_iteration"] = static_cast<double>(allocations) / iterations;
}
BENCHMARK(journal_append)
    ->ArgNames({"queue_depth", "batched"})
    ->Args({1, 0})
    ->Args({8, 0})
    ->Args({1, 1})
    ->Args({8, 1})
    ->UseRealTime()
    ->MinTime(3.0)
    ->Unit(benchmark::kMicrosecond);

// The same two writes per prepare without the Wal: 1 MiB to the slot, then, once durable, the
// 4 KiB header sector; one prepare at a time. What the device charges for the WAL's write order,
// so that journal_append at queue depth 1 can be compared with it rather than with a lone
// 1 MiB write.
struct BarePattern {
  Loop loop;
  FileStorage storage;
  tally::base::LargeArray<std::byte> buffer;
  FileStorage::Write write;
  bool done = false;

  explicit BarePattern(Durability durability) {
    loop.init(Loop::entries_default);
    const std::string path = bare_file_path();
    const tally::io::OpenResult opened =
        storage.open(&loop, {.path = path.c_str(), .durability = durability});
    TALLY_ASSERT(opened.status == tally::io::OpenStatus::ok);
    buffer.init(message_size);
    for (u64 at = 0; at < message_size; at += 1) {
      buffer[at] = static_cast<std::byte>((at * 2654435761u) >> 13);
    }
    write.context = this;
  }

  ~BarePattern() { storage.close(); }

  void write_wait(std::span<const std::byte> data, u64 offset) {
    done = false;
    storage.write(&write, [](FileStorage::Write* w) {
      static_cast<BarePattern*>(w->context)->done = true;
    }, data, offset);
    while (!done) loop.run_once(wait_ns_max);
  }
};

// The bare file, written once through like the data file.
void bare_file_prepare() {
  static const bool prepared = [] {
    data_file_create(bare_file_path());
    BarePattern bare(Durability::flush_batched);
    for (u64 offset = 0; offset < file_size(); offset += message_size) {
      const u64 size = std::min<u64>(message_size, file_size() - offset);
      bare.write_wait({bare.buffer.data(), size}, offset);
    }
    return true;
  }();
  TALLY_ASSERT(prepared);
}

void journal_bare_pattern(benchmark::State& state) {
  bare_file_prepare();
  BarePattern bare(durability_argument(state));
  state.SetLabel(durability_argument(state) == Durability::per_write ? "O_DSYNC" : "fdatasync");
  tally::base::LargeArray<u64> latencies_ns;
  latencies_ns.init(latency_count_max);
  u64 count = 0;
  u64 op = 0;
  for (auto _ : state) {
    const u32 slot = static_cast<u32>(op % layout.config().slot_count);
    const u64 start_ns = bare.loop.time().monotonic_ns();
    bare.write_wait({bare.buffer.data(), message_size}, layout.wal_prepare_offset(slot));
    bare.write_wait({bare.buffer.data(), tally::journal::sector_size},
                    layout.wal_header_sector_offset(slot));
    if (count < latency_count_max) {
      latencies_ns[count] = bare.loop.time().monotonic_ns() - start_ns;
      count += 1;
    }
    op += 1;
  }
  state.counters["MiB_per_second"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * message_size / double{1 << 20},
      benchmark::Counter::kIsRate);
  u64* data = latencies_ns.data();
  const auto percentile_us = [&](double percentile) {
    const auto rank = static_cast<u64>(percentile * static_cast<double>(count - 1));
    std::nth_element(data, data + rank, data + count);
    return static_cast<double>(data[rank]) / 1000.0;
  };
  state.counters["latency_p50_us"] = percentile_us(0.50);
  state.counters["latency_p99_us"] = percentile_us(0.99);
}
BENCHMARK(journal_bare_pattern)
    ->ArgNames({"queue_depth", "batched"})
    ->Args({1, 0})
    ->Args({1, 1})
    ->UseRealTime()
    ->MinTime(3.0)
    ->Unit(benchmark::kMicrosecond);

// A full recovery: both rings read and every slot's 1 MiB prepare verified.
void journal_recover(benchmark::State& state) {
  data_file_prepare();
  Loop loop;
  loop.init(Loop::entries_default);
  FileStorage storage;
  const std::string path = data_file_path();
  const tally::io::OpenResult opened = storage.open(&loop, {.path = path.c_str()});
  TALLY_ASSERT(opened.status == tally::io::OpenStatus::ok);
  u64 faulty = 0;
  for (auto _ : state) {
    Wal wal(storage, layout, tally::journal::WalOptions{.cluster = cluster});
    bool recovered = false;
    Wal::Completion completion;
    completion.context = &recovered;
    wal.recover(&completion, completion_set, {});
    while (!recovered) loop.run_once(wait_ns_max);
    faulty += wal.faulty_count();
  }
  TALLY_ASSERT(faulty == 0);
  const u64 bytes_per_recovery = layout.zone(ZoneKind::wal_headers).size +
                                 layout.zone(ZoneKind::wal_prepares).size;
  state.counters["MiB_per_second"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * static_cast<double>(bytes_per_recovery) /
          double{1 << 20},
      benchmark::Counter::kIsRate);
  storage.close();
}
BENCHMARK(journal_recover)->UseRealTime()->Iterations(3)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  // The 1 GiB data files are scratch: leave no gigabyte behind in the build directory.
  ::unlink(data_file_path().c_str());
  ::unlink(bare_file_path().c_str());
  return 0;
}
