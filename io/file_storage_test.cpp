// Tests of FileStorage and file_create against real files with O_DIRECT, in a directory on the
// project's disk (TestDirectory: never tmpfs).
//
// Goals: a created file has the asked size, reads as zeros, and is never overwritten; many
// sectors written with many writes in flight read back exactly, in both durability modes, and
// flush_batched covers many writes with one fdatasync; a transfer split in pieces is continued
// to the end; open() reports missing, locked and malformed files, and a file system that
// refuses O_DIRECT is a fatal stop naming it; misaligned requests assert; reads and writes
// allocate nothing after start-up.
#include "io/file_storage.hpp"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "io/test_directory.hpp"
#include "src/base/allocation_guard.hpp"
#include "src/base/death_test.hpp"
#include "src/base/large_array.hpp"

namespace tally::io {
namespace {

constexpr u64 ms = 1'000'000;

class PageBuffer {
 public:
  explicit PageBuffer(std::size_t size) : size_(size) {
    data_ = static_cast<std::byte*>(base::pages_reserve(size));
    REQUIRE(data_ != nullptr);
  }
  PageBuffer(const PageBuffer&) = delete;
  PageBuffer& operator=(const PageBuffer&) = delete;
  ~PageBuffer() { base::pages_release(data_, size_); }

  std::span<std::byte> span() { return {data_, size_}; }
  std::span<std::byte> span(std::size_t offset, std::size_t size) { return {data_ + offset, size}; }

 private:
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

std::byte pattern_byte(u64 position, u64 seed) {
  u64 z = position / 8 + seed * 0x9e3779b97f4a7c15u;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  z ^= z >> 31;
  return static_cast<std::byte>(z >> (8 * (position % 8)));
}

void pattern_fill(std::span<std::byte> bytes, u64 position, u64 seed) {
  for (std::size_t index = 0; index < bytes.size(); index += 1) {
    bytes[index] = pattern_byte(position + index, seed);
  }
}

bool pattern_matches(std::span<const std::byte> bytes, u64 position, u64 seed) {
  for (std::size_t index = 0; index < bytes.size(); index += 1) {
    if (bytes[index] != pattern_byte(position + index, seed)) return false;
  }
  return true;
}

template <typename Done>
bool run_until(Loop& loop, Done done) {
  const u64 deadline_ns = loop.time().monotonic_ns() + 20'000 * ms;
  while (!done()) {
    if (loop.time().monotonic_ns() > deadline_ns) return false;
    loop.run_once(10 * ms);
  }
  return true;
}

// Counts callbacks through the completions' context; checks that each write's callback runs
// only after at least one flush was started for it (flush_batched).
struct Tally {
  u32 reads_done = 0;
  u32 writes_done = 0;
  u32 reads_failed = 0;
  FileStorage* storage = nullptr;
  bool write_done_before_flush = false;
};

void read_callback(FileStorage::Read* read) {
  auto* tally = static_cast<Tally*>(read->context);
  tally->reads_done += 1;
  if (read->result != FileStorage::ReadResult::ok) tally->reads_failed += 1;
}

void write_callback(FileStorage::Write* write) {
  auto* tally = static_cast<Tally*>(write->context);
  tally->writes_done += 1;
  const bool batched = tally->storage->durability() == Durability::flush_batched;
  if (batched && tally->storage->stats().flushes == 0) tally->write_done_before_flush = true;
}

// Writes `count` pieces of `piece_size` bytes in flight at once (in a scrambled order), then
// reads them back with `count` reads in flight; returns whether the bytes match.
bool round_trip(Loop& loop, FileStorage& storage, u32 count, u32 piece_size, u64 seed) {
  PageBuffer written(u64{count} * piece_size);
  PageBuffer read_back(u64{count} * piece_size);
  pattern_fill(written.span(), 0, seed);
  std::vector<FileStorage::Write> writes(count);
  std::vector<FileStorage::Read> reads(count);
  Tally tally;
  tally.storage = &storage;
  for (u32 index = 0; index < count; index += 1) {
    const u32 slot = (index * 7919) % count;
    writes[index].context = &tally;
    storage.write(&writes[index], write_callback,
                  written.span(u64{slot} * piece_size, piece_size), u64{slot} * piece_size);
  }
  CHECK(storage.writes_in_flight() == count);
  REQUIRE(run_until(loop, [&] { return tally.writes_done == count; }));
  CHECK(storage.writes_in_flight() == 0);
  CHECK_FALSE(tally.write_done_before_flush);
  for (u32 index = 0; index < count; index += 1) {
    reads[index].context = &tally;
    storage.read(&reads[index], read_callback, read_back.span(u64{index} * piece_size, piece_size),
                 u64{index} * piece_size);
  }
  REQUIRE(run_until(loop, [&] { return tally.reads_done == count; }));
  CHECK(tally.reads_failed == 0);
  for (u32 index = 0; index < count; index += 1) {
    CHECK(reads[index].offset == u64{index} * piece_size);
    CHECK(reads[index].buffer.size() == piece_size);
    CHECK(reads[index].result == FileStorage::ReadResult::ok);
  }
  return pattern_matches(read_back.span(), 0, seed);
}

}  // namespace

TEST_SUITE("io_file_storage") {
  TEST_CASE("io_file_storage: file_create makes a zeroed file of the size and never overwrites") {
    TestDirectory directory;
    const std::string path = directory.file("created.tally");
    constexpr u64 size = 1 << 20;
    REQUIRE(file_create(path.c_str(), size).status == CreateStatus::ok);
    struct stat status = {};
    REQUIRE(stat(path.c_str(), &status) == 0);
    CHECK(static_cast<u64>(status.st_size) == size);
    CHECK((status.st_mode & 0777) == 0600);
    // fallocate reserved the blocks: the file is not sparse.
    CHECK(static_cast<u64>(status.st_blocks) * 512 >= size);

    Loop loop;
    loop.init(Loop::entries_default);
    FileStorage storage;
    REQUIRE(storage.open(&loop, {.path = path.c_str()}).status == OpenStatus::ok);
    CHECK(storage.size() == size);
    PageBuffer buffer(size);
    pattern_fill(buffer.span(), 0, 1);
    FileStorage::Read read;
    Tally tally;
    read.context = &tally;
    storage.read(&read, read_callback, buffer.span(), 0);
    REQUIRE(run_until(loop, [&] { return tally.reads_done == 1; }));
    bool zeros = true;
    for (const std::byte byte : buffer.span()) zeros = zeros && byte == std::byte{0};
    CHECK(zeros);

    // Existing data files are never touched, whatever their size.
    const CreateResult again = file_create(path.c_str(), 2 * size);
    CHECK(again.status == CreateStatus::exists);
    CHECK(again.error_number == EEXIST);
    REQUIRE(stat(path.c_str(), &status) == 0);
    CHECK(static_cast<u64>(status.st_size) == size);
    CHECK(create_status_fatal_reason(again.status) == base::FatalReason::data_file_exists);
    CHECK(std::string(create_status_message(again.status)).find("never overwrites") !=
          std::string::npos);

    const std::string missing = directory.file("no/such/directory.tally");
    CHECK(file_create(missing.c_str(), size).status == CreateStatus::not_found);
    storage.close();
  }

  TEST_CASE("io_file_storage: file_create reports a full disk and leaves no file behind") {
    TestDirectory directory;
    const std::string path = directory.file("huge.tally");
    // An exabyte: more than any test machine has (EFBIG or ENOSPC, depending on the file system).
    const CreateResult result = file_create(path.c_str(), u64{1} << 60);
    CHECK(result.status != CreateStatus::ok);
    CHECK((result.status == CreateStatus::no_space || result.status == CreateStatus::error));
    CHECK(access(path.c_str(), F_OK) != 0);
  }

  TEST_CASE("io_file_storage: many sectors with many writes in flight round-trip with O_DSYNC") {
    TestDirectory directory;
    const std::string path = directory.file("per_write.tally");
    constexpr u32 count = 64;
    constexpr u32 piece_size = 16 * sector_size;
    REQUIRE(file_create(path.c_str(), u64{count} * piece_size).status == CreateStatus::ok);
    Loop loop;
    loop.init(Loop::entries_default);
    FileStorage storage;
    REQUIRE(storage.open(&loop, {.path = path.c_str(), .durability = Durability::per_write})
                .status == OpenStatus::ok);
    // O_DSYNC is on the descriptor: every write is durable when it completes.
    CHECK((fcntl(storage.fd(), F_GETFL) & O_DSYNC) == O_DSYNC);
    CHECK((fcntl(storage.fd(), F_GETFL) & O_DIRECT) == O_DIRECT);
    CHECK(round_trip(loop, storage, count, piece_size, 21));
    CHECK(round_trip(loop, storage, count, piece_size, 22));  // Overwrites.
    CHECK(storage.stats().writes == 2 * count);
    CHECK(storage.stats().reads == 2 * count);
    CHECK(storage.stats().flushes == 0);
    storage.close();

    // What was written is in the file, seen through a fresh descriptor.
    FileStorage reopened;
    REQUIRE(reopened.open(&loop, {.path = path.c_str(), .read_only = true}).status ==
            OpenStatus::ok);
    PageBuffer buffer(u64{count} * piece_size);
    FileStorage::Read read;
    Tally tally;
    read.context = &tally;
    reopened.read(&read, read_callback, buffer.span(), 0);
    REQUIRE(run_until(loop, [&] { return tally.reads_done == 1; }));
    CHECK(pattern_matches(buffer.span(), 0, 22));
  }

  TEST_CASE("io_file_storage: flush_batched covers many completed writes with one fdatasync") {
    TestDirectory directory;
    const std::string path = directory.file("batched.tally");
    constexpr u32 count = 64;
    constexpr u32 piece_size = 4 * sector_size;
    REQUIRE(file_create(path.c_str(), u64{count} * piece_size).status == CreateStatus::ok);
    Loop loop;
    loop.init(Loop::entries_default);
    FileStorage storage;
    REQUIRE(storage.open(&loop, {.path = path.c_str(), .durability = Durability::flush_batched})
                .status == OpenStatus::ok);
    CHECK((fcntl(storage.fd(), F_GETFL) & O_DSYNC) == 0);
    CHECK(round_trip(loop, storage, count, piece_size, 31));
    // Every write waited for a flush; 64 writes in flight needed far fewer than 64 flushes.
    CHECK(storage.stats().flushes >= 1);
    CHECK(storage.stats().flushes < count / 2);
  }

  TEST_CASE("io_file_storage: a transfer split in pieces continues to the end") {
    TestDirectory directory;
    const std::string path = directory.file("split.tally");
    REQUIRE(file_create(path.c_str(), 256 * sector_size).status == CreateStatus::ok);
    Loop loop;
    loop.init(Loop::entries_default);
    FileStorage storage;
    // Two sectors per system call: a 64 KiB request takes 8 submissions, the path a short
    // transfer from the kernel takes.
    REQUIRE(storage.open(&loop, {.path = path.c_str(), .transfer_size_max = 2 * sector_size})
                .status == OpenStatus::ok);
    CHECK(round_trip(loop, storage, 4, 16 * sector_size, 41));
    CHECK(storage.stats().continuations == 2 * 4 * 7);
  }

  TEST_CASE("io_file_storage: open reports missing locked and malformed files") {
    TestDirectory directory;
    Loop loop;
    loop.init(8);
    FileStorage storage;
    const std::string missing = directory.file("missing.tally");
    CHECK(storage.open(&loop, {.path = missing.c_str()}).status == OpenStatus::not_found);
    CHECK(storage.open(&loop, {.path = directory.path().c_str()}).status ==
          OpenStatus::not_a_regular_file);

    const std::string odd = directory.file("odd_size.tally");
    const int fd = ::open(odd.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(ftruncate(fd, 5000) == 0);
    ::close(fd);
    CHECK(storage.open(&loop, {.path = odd.c_str()}).status == OpenStatus::size_invalid);

    const std::string path = directory.file("locked.tally");
    REQUIRE(file_create(path.c_str(), 16 * sector_size).status == CreateStatus::ok);
    REQUIRE(storage.open(&loop, {.path = path.c_str()}).status == OpenStatus::ok);
    FileStorage second;
    const OpenResult locked = second.open(&loop, {.path = path.c_str()});
    CHECK(locked.status == OpenStatus::locked);
    CHECK(std::string(open_status_message(locked.status)).find("lock") != std::string::npos);
    CHECK_FALSE(second.opened());
    storage.close();
    // The lock goes with the descriptor.
    CHECK(second.open(&loop, {.path = path.c_str()}).status == OpenStatus::ok);
  }

  TEST_CASE("io_file_storage: a file system that refuses O_DIRECT is a fatal stop naming it") {
    // procfs refuses O_DIRECT with EINVAL at open, as tmpfs did before Linux 6.6.
    const auto result = base::death_test::run_in_child([] {
      Loop loop;
      loop.init(8);
      FileStorage storage;
      storage.open(&loop, {.path = "/proc/version", .read_only = true});
    });
    INFO(result.stderr_text);
    CHECK(result.exited);
    CHECK(result.exit_code == static_cast<int>(base::FatalReason::direct_io_unsupported));
    CHECK(result.stderr_contains("/proc/version"));
    CHECK(result.stderr_contains("(proc) refuses O_DIRECT"));
    CHECK(result.stderr_contains("ext4 or xfs"));
  }

  TEST_CASE("io_file_storage: direct_io_probe finds O_DIRECT on the test directory") {
    TestDirectory directory;
    const DirectIoProbe probe = direct_io_probe(directory.path().c_str());
    CHECK(probe.status == DirectIoStatus::supported);
    CHECK_FALSE(probe.tmpfs);
    CHECK(std::string(probe.file_system) != "unknown");
    CHECK(std::string(file_system_name(directory.path().c_str())) == probe.file_system);
    // The probe cleans up after itself.
    CHECK(access((directory.path() + "/.").c_str(), F_OK) == 0);
    const DirectIoProbe missing = direct_io_probe("/no/such/directory");
    CHECK(missing.status == DirectIoStatus::error);
    CHECK(missing.error_number == ENOENT);
    // /dev/shm is tmpfs wherever it exists: named, and flagged as not durable.
    struct stat status = {};
    if (stat("/dev/shm", &status) == 0 && access("/dev/shm", W_OK) == 0) {
      const DirectIoProbe shm = direct_io_probe("/dev/shm");
      CHECK(shm.tmpfs);
      CHECK(std::string(shm.file_system) == "tmpfs");
    }
  }

  TEST_CASE("io_file_storage: misaligned buffers sizes and offsets assert") {
    TestDirectory directory;
    const std::string path = directory.file("misaligned.tally");
    REQUIRE(file_create(path.c_str(), 16 * sector_size).status == CreateStatus::ok);
    const auto attempt = [&](std::size_t buffer_offset, std::size_t size, u64 offset) {
      return base::death_test::run_in_child([&] {
        Loop loop;
        loop.init(8);
        FileStorage storage;
        if (storage.open(&loop, {.path = path.c_str()}).status != OpenStatus::ok) _exit(9);
        PageBuffer buffer(8 * sector_size);
        FileStorage::Read read;
        storage.read(&read, [](FileStorage::Read*) {}, buffer.span(buffer_offset, size), offset);
      });
    };
    const auto buffer_misaligned = attempt(512, sector_size, 0);
    CHECK(buffer_misaligned.trapped());
    CHECK(buffer_misaligned.stderr_contains("is not aligned"));
    const auto size_misaligned = attempt(0, 1000, 0);
    CHECK(size_misaligned.trapped());
    CHECK(size_misaligned.stderr_contains("not aligned"));
    const auto offset_misaligned = attempt(0, sector_size, 512);
    CHECK(offset_misaligned.trapped());
    const auto beyond_end = attempt(0, 2 * sector_size, 15 * sector_size);
    CHECK(beyond_end.trapped());
    CHECK(beyond_end.stderr_contains("beyond the data file"));
  }

  TEST_CASE("io_file_storage: reads and writes after start-up allocate nothing") {
    namespace guard = base::allocation_guard;
    TestDirectory directory;
    const std::string path = directory.file("allocations.tally");
    constexpr u32 count = 16;
    REQUIRE(file_create(path.c_str(), u64{count} * sector_size).status == CreateStatus::ok);
    Loop loop;
    loop.init(8);  // Fewer SQ entries than operations: the overflow path too.
    FileStorage per_write;
    REQUIRE(per_write.open(&loop, {.path = path.c_str()}).status == OpenStatus::ok);
    PageBuffer buffer(u64{count} * sector_size);
    FileStorage::Write writes[count];
    FileStorage::Read reads[count];
    Tally tally;
    tally.storage = &per_write;
    const auto run_round = [&](FileStorage& storage, u64 seed) {
      tally = {};
      tally.storage = &storage;
      pattern_fill(buffer.span(), 0, seed);
      for (u32 index = 0; index < count; index += 1) {
        writes[index].context = &tally;
        storage.write(&writes[index], write_callback, buffer.span(u64{index} * sector_size,
                      sector_size), u64{index} * sector_size);
      }
      if (!run_until(loop, [&] { return tally.writes_done == count; })) return false;
      for (u32 index = 0; index < count; index += 1) {
        reads[index].context = &tally;
        storage.read(&reads[index], read_callback,
                     buffer.span(u64{index} * sector_size, sector_size), u64{index} * sector_size);
      }
      return run_until(loop, [&] { return tally.reads_done == count; }) &&
             pattern_matches(buffer.span(), 0, seed);
    };
    REQUIRE(run_round(per_write, 1));

    u64 allocations_before = guard::allocations_total();
    guard::seal(guard::default_mode());
    bool all_ok = true;
    for (u64 seed = 2; seed < 10; seed += 1) all_ok = run_round(per_write, seed) && all_ok;
    guard::unseal();
    CHECK(all_ok);
    CHECK(guard::allocations_total() - allocations_before == 0);
    per_write.close();

    FileStorage batched;
    REQUIRE(batched.open(&loop, {.path = path.c_str(), .durability = Durability::flush_batched})
                .status == OpenStatus::ok);
    REQUIRE(run_round(batched, 10));
    allocations_before = guard::allocations_total();
    guard::seal(guard::default_mode());
    all_ok = true;
    for (u64 seed = 11; seed < 19; seed += 1) all_ok = run_round(batched, seed) && all_ok;
    guard::unseal();
    CHECK(all_ok);
    CHECK(guard::allocations_total() - allocations_before == 0);
    CHECK(guard::allocations_after_seal() == 0);
  }
}

}  // namespace tally::io
