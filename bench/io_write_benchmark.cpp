// Durable 1 MiB writes through io::FileStorage and io::Loop: what a WAL slot write costs.
//
// One iteration is one 1 MiB write, O_DIRECT, durable when its callback runs, at offsets that
// walk a 1 GiB file front to back and wrap (as the WAL's circular slots do). Queue depth 1 is
// one write at a time (a single prepare); queue depth 8 keeps eight in flight (a pipeline).
// Each runs in both durability modes:
//   per_write      O_DIRECT | O_DSYNC: each write is made durable on its own.
//   flush_batched  O_DIRECT, then one fdatasync covering every write completed before it.
//
// `io_write_durable` overwrites a file written once beforehand (the steady state: every WAL
// slot has been written before). `io_write_first_lap` writes a freshly fallocated file once
// through, where every write also converts unwritten extents (a file system journal commit).
//
// Counters: MiB_per_second (completed writes only, over wall time), latency_p50_us and
// latency_p99_us (submit to callback), flushes_per_write, allocations_per_iteration (must
// be 0). Wall time, not CPU time: the work is the disk's. The file lives in the build
// directory (TALLY_BENCH_DIRECTORY), never in /tmp, which may be tmpfs. Results and the
// machine: perf/io_write.md.
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "io/file_storage.hpp"
#include "io/loop.hpp"
#include "src/base/allocation_guard.hpp"
#include "src/base/assert.hpp"
#include "src/base/large_array.hpp"

namespace {

using tally::u32;
using tally::u64;
using tally::io::Durability;
using tally::io::FileStorage;
using tally::io::Loop;

constexpr u64 write_size = 1 << 20;
constexpr u64 file_size = u64{1} << 30;
constexpr u32 queue_depth_max = 8;
constexpr u64 latency_count_max = 1 << 20;
constexpr u64 wait_ns_max = 1'000'000'000;

std::string data_file_path(const char* name) {
  return std::string(TALLY_BENCH_DIRECTORY) + "/" + name;
}

// A fresh, preallocated data file; any left over from an earlier run is ours to replace.
void data_file_create(const std::string& path) {
  ::unlink(path.c_str());
  const tally::io::CreateResult result = tally::io::file_create(path.c_str(), file_size);
  if (result.status != tally::io::CreateStatus::ok) {
    std::fprintf(stderr, "io_write_benchmark: cannot create %s: %s (%s)\n", path.c_str(),
                 tally::io::create_status_message(result.status),
                 strerrorname_np(result.error_number));
    std::exit(1);
  }
}

struct Writer;

struct Slot {
  FileStorage::Write write;
  Writer* writer = nullptr;
  u64 start_ns = 0;
};

// Keeps up to `queue_depth` writes in flight; records each one's latency.
struct Writer {
  Loop loop;
  FileStorage storage;
  std::byte* buffers = nullptr;
  u32 queue_depth = 0;
  Slot slots[queue_depth_max];
  Slot* free_slots[queue_depth_max] = {};
  u32 free_count = 0;
  u64 offset_next = 0;
  u64 completed = 0;
  tally::base::LargeArray<u64> latencies_ns;
  u64 latency_count = 0;

  Writer(const std::string& path, Durability durability, u32 depth) : queue_depth(depth) {
    TALLY_ASSERT(queue_depth >= 1 && queue_depth <= queue_depth_max);
    loop.init(Loop::entries_default);
    const tally::io::OpenResult opened =
        storage.open(&loop, {.path = path.c_str(), .durability = durability});
    TALLY_ASSERT(opened.status == tally::io::OpenStatus::ok, "open: %s",
                 tally::io::open_status_message(opened.status));
    buffers = static_cast<std::byte*>(tally::base::pages_reserve(queue_depth * write_size));
    TALLY_ASSERT(buffers != nullptr);
    // Content that is not all zeros, touched now so that no page fault lands in a write.
    for (u64 index = 0; index < queue_depth * write_size; index += 1) {
      buffers[index] = static_cast<std::byte>((index * 2654435761u) >> 13);
    }
    for (u32 index = 0; index < queue_depth; index += 1) {
      slots[index].writer = this;
      slots[index].write.context = &slots[index];
      free_slots[free_count] = &slots[index];
      free_count += 1;
    }
    latencies_ns.init(latency_count_max);
  }

  ~Writer() {
    drain();
    storage.close();
    tally::base::pages_release(buffers, queue_depth * write_size);
  }

  // Starts one write, first waiting for a free slot.
  void write_one() {
    while (free_count == 0) loop.run_once(wait_ns_max);
    free_count -= 1;
    Slot* slot = free_slots[free_count];
    const auto index = static_cast<u64>(slot - slots);
    slot->start_ns = loop.time().monotonic_ns();
    storage.write(&slot->write, write_callback, {buffers + index * write_size, write_size},
                  offset_next);
    offset_next = (offset_next + write_size) % file_size;
  }

  static void write_callback(FileStorage::Write* write) {
    auto* slot = static_cast<Slot*>(write->context);
    Writer* writer = slot->writer;
    const u64 latency_ns = writer->loop.time().monotonic_ns() - slot->start_ns;
    if (writer->latency_count < latency_count_max) {
      writer->latencies_ns[writer->latency_count] = latency_ns;
      writer->latency_count += 1;
    }
    writer->completed += 1;
    writer->free_slots[writer->free_count] = slot;
    writer->free_count += 1;
  }

  void drain() {
    while (storage.writes_in_flight() > 0) loop.run_once(wait_ns_max);
  }

  double latency_percentile_us(double percentile) {
    TALLY_ASSERT(latency_count > 0);
    const auto rank = static_cast<u64>(percentile * static_cast<double>(latency_count - 1));
    u64* data = latencies_ns.data();
    std::nth_element(data, data + rank, data + latency_count);
    return static_cast<double>(data[rank]) / 1000.0;
  }
};

void report(benchmark::State& state, Writer& writer, u64 completed, u64 allocations) {
  const auto iterations = static_cast<double>(state.iterations());
  state.counters["MiB_per_second"] = benchmark::Counter(
      static_cast<double>(completed * write_size) / double{1 << 20}, benchmark::Counter::kIsRate);
  state.counters["latency_p50_us"] = writer.latency_percentile_us(0.50);
  state.counters["latency_p99_us"] = writer.latency_percentile_us(0.99);
  state.counters["flushes_per_write"] =
      static_cast<double>(writer.storage.stats().flushes) / iterations;
  state.counters["allocations_per_iteration"] = static_cast<double>(allocations) / iterations;
}

Durability durability_argument(const benchmark::State& state) {
  return state.range(1) == 0 ? Durability::per_write : Durability::flush_batched;
}

const std::string& steady_file() {
  // Written once through before any measurement, so every extent is allocated and written.
  static const std::string path = [] {
    std::string file = data_file_path("io_write_benchmark.steady.data");
    data_file_create(file);
    Writer writer(file, Durability::flush_batched, queue_depth_max);
    for (u64 index = 0; index < file_size / write_size; index += 1) writer.write_one();
    writer.drain();
    return file;
  }();
  return path;
}

void io_write_durable(benchmark::State& state) {
  const auto queue_depth = static_cast<u32>(state.range(0));
  Writer writer(steady_file(), durability_argument(state), queue_depth);
  state.SetLabel(durability_argument(state) == Durability::per_write ? "O_DSYNC" : "fdatasync");

  const u64 allocations_before = tally::base::allocation_guard::allocations_total();
  for (auto _ : state) writer.write_one();
  const u64 completed = writer.completed;
  const u64 allocations = tally::base::allocation_guard::allocations_total() - allocations_before;
  writer.drain();
  report(state, writer, completed, allocations);
}
BENCHMARK(io_write_durable)
    ->ArgNames({"queue_depth", "batched"})
    ->Args({1, 0})
    ->Args({8, 0})
    ->Args({1, 1})
    ->Args({8, 1})
    ->UseRealTime()
    ->MinTime(3.0)
    ->Unit(benchmark::kMicrosecond);

void io_write_first_lap(benchmark::State& state) {
  const auto queue_depth = static_cast<u32>(state.range(0));
  const std::string path = data_file_path("io_write_benchmark.first_lap.data");
  data_file_create(path);
  u64 completed = 0;
  {
    Writer writer(path, durability_argument(state), queue_depth);
    state.SetLabel(durability_argument(state) == Durability::per_write ? "O_DSYNC" : "fdatasync");
    const u64 allocations_before = tally::base::allocation_guard::allocations_total();
    for (auto _ : state) writer.write_one();
    completed = writer.completed;
    const u64 allocations =
        tally::base::allocation_guard::allocations_total() - allocations_before;
    writer.drain();
    report(state, writer, completed, allocations);
  }
  ::unlink(path.c_str());
}
// Exactly one pass over the file: 1024 writes of 1 MiB.
BENCHMARK(io_write_first_lap)
    ->ArgNames({"queue_depth", "batched"})
    ->Args({1, 0})
    ->Args({8, 0})
    ->Args({1, 1})
    ->Args({8, 1})
    ->Iterations(file_size / write_size)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  // The 1 GiB steady-state file is scratch: leave no gigabyte behind in the build directory.
  ::unlink(data_file_path("io_write_benchmark.steady.data").c_str());
  return 0;
}
