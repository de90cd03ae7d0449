// FileStorage: the data file on a real disk, through io_uring with O_DIRECT. Satisfies the
// journal::Storage concept (journal/storage.hpp), whose contract it keeps:
//
// - Reads and writes are asynchronous, with caller-owned completions (FileStorage::Read,
//   FileStorage::Write); callbacks run from the Loop, never from inside read() or write().
// - Offsets, sizes and buffer addresses are multiples of sector_size (4 KiB), asserted: O_DIRECT
//   moves data by DMA straight between the buffer and the disk, bypassing the page cache.
// - A write whose callback has run is durable. Two ways to get there (FileStorageOptions):
//     Durability::per_write      the file is opened O_DSYNC: every write completes only once it
//                                is on stable storage (a FUA write, or write + cache flush).
//     Durability::flush_batched  O_DIRECT alone; a completed write waits for an fdatasync that
//                                started after it completed, and one fdatasync covers every
//                                write that completed before it (group commit; at most two in
//                                flight). Fewer cache flushes when many writes are in flight;
//                                one more round trip when only one is.
//   per_write is the default: perf/io_write.md has the measurements (equal on a quiet machine).
// - Short transfers (the kernel moves at most 0x7ffff000 bytes per call, and may return early)
//   are continued from where they stopped; -EINTR and -EAGAIN are retried. The callback sees
//   one whole read or write.
// - A read the device cannot serve (-EIO: a latent sector error) completes with
//   ReadResult::error; the caller treats it like corruption. A write that fails cannot be
//   retried safely (the disk's state is unknown), so it stops the process: FatalReason::no_space
//   for ENOSPC/EDQUOT, FatalReason::storage_error otherwise. So does a failed fdatasync.
// - A file system that refuses O_DIRECT stops the process at open() with
//   FatalReason::direct_io_unsupported, naming the file system and the fix.
//
// open() also takes an exclusive flock (a second replica on the same file is refused) and
// fsyncs the file, so that nothing written by a crashed predecessor is read before it is
// durable. file_create() makes a new, preallocated data file and never overwrites one.
//
// This header uses journal/storage.hpp for the contract's vocabulary (sector_size, ReadResult)
// and checks the concept below; it is header-only and pure, so io/ still links only base.
#pragma once

#include <cstddef>
#include <span>

#include "io/loop.hpp"
#include "journal/storage.hpp"
#include "src/base/assert.hpp"
#include "src/base/intrusive_queue.hpp"
#include "tally/types.hpp"

namespace tally::io {

inline constexpr u32 sector_size = journal::sector_size;

enum class Durability : u8 { per_write, flush_batched };

struct FileStorageOptions {
  // Largest transfer in one system call: the kernel's own cap (MAX_RW_COUNT, 2 GiB - 4 KiB).
  static constexpr u32 transfer_size_max_default = 0x7ffff000;

  const char* path = nullptr;
  bool read_only = false;
  Durability durability = Durability::per_write;
  // Tests lower it to drive the continuation path that a short transfer takes.
  u32 transfer_size_max = transfer_size_max_default;
};

enum class OpenStatus : u8 {
  ok,
  not_found,
  permission_denied,
  not_a_regular_file,
  size_invalid,  // Empty, or not a multiple of sector_size: not a data file.
  locked,        // Another process holds the file's lock: a replica is already running on it.
  error,         // Any other errno: see OpenResult::error_number.
};

struct OpenResult {
  OpenStatus status = OpenStatus::ok;
  int error_number = 0;
};

// A sentence for the CLI, e.g. "another process (a running replica?) holds the data file".
const char* open_status_message(OpenStatus status);

struct FileStorageStats {
  u64 reads = 0;
  u64 writes = 0;
  u64 flushes = 0;        // fdatasync calls (Durability::flush_batched).
  u64 continuations = 0;  // Submissions continuing a short or split transfer.
  u64 retries = 0;        // Submissions repeated after -EINTR or -EAGAIN.
  u64 read_errors = 0;    // Reads completed with ReadResult::error.
};

class FileStorage {
 public:
  using ReadResult = journal::ReadResult;

  struct Read {
    // Set by the caller, untouched by the storage.
    void* context = nullptr;
    // What was asked, and for the callback, how it went.
    std::span<std::byte> buffer;
    u64 offset = 0;
    ReadResult result = ReadResult::ok;

    // Owned by the storage while in flight.
    Completion completion;
    FileStorage* storage = nullptr;
    void (*callback)(Read* read) = nullptr;
    u64 done_size = 0;
    bool in_flight = false;
  };

  struct Write {
    void* context = nullptr;
    std::span<const std::byte> data;
    u64 offset = 0;

    Completion completion;
    FileStorage* storage = nullptr;
    void (*callback)(Write* write) = nullptr;
    u64 done_size = 0;
    bool in_flight = false;
    // Links the write into the queues of writes waiting for a flush (flush_batched).
    Write* next = nullptr;
  };

  FileStorage() = default;
  FileStorage(const FileStorage&) = delete;
  FileStorage& operator=(const FileStorage&) = delete;
  ~FileStorage();

  // Opens an existing data file. Stops with FatalReason::direct_io_unsupported if the file
  // system refuses O_DIRECT; every other problem is a status for the caller to report.
  OpenResult open(Loop* loop, const FileStorageOptions& options);
  // Requires that no read or write is in flight.
  void close();

  void read(Read* read, void (*callback)(Read* read), std::span<std::byte> buffer, u64 offset);
  void write(Write* write, void (*callback)(Write* write), std::span<const std::byte> data,
             u64 offset);

  u64 size() const { return size_; }
  int fd() const { return fd_; }
  bool opened() const { return fd_ >= 0; }
  Durability durability() const { return options_.durability; }
  u32 reads_in_flight() const { return reads_in_flight_; }
  u32 writes_in_flight() const { return writes_in_flight_; }
  const FileStorageStats& stats() const { return stats_; }

 private:
  static constexpr u32 path_copy_size = 256;
  // fdatasyncs in flight at once (flush_batched): while one flushes, writes completing meanwhile
  // start the next instead of waiting for it, so the device always has a flush to work on.
  static constexpr u32 flush_count_max = 2;

  void range_assert(const void* address, u64 size, u64 offset) const;
  void read_submit(Read* read);
  static void read_complete(Completion* completion);
  void read_finish(Read* read);
  void write_submit(Write* write);
  static void write_complete(Completion* completion);
  void write_finish(Write* write);
  void flush_start();
  static void flush_complete(Completion* completion);

  Loop* loop_ = nullptr;
  int fd_ = -1;
  u64 size_ = 0;
  FileStorageOptions options_;
  // For messages only (the caller's string need not outlive open()); truncated if long.
  char path_[path_copy_size] = {};
  u32 reads_in_flight_ = 0;
  u32 writes_in_flight_ = 0;
  // flush_batched: an fdatasync in flight and the writes it covers.
  struct Flush {
    Completion completion;
    base::IntrusiveQueue<Write> batch;
    FileStorage* storage = nullptr;
    bool in_flight = false;
  };
  // Writes done but not yet covered by a flush.
  base::IntrusiveQueue<Write> flush_waiting_;
  Flush flushes_[flush_count_max];
  u32 flushes_in_flight_ = 0;
  FileStorageStats stats_;
};

static_assert(journal::Storage<FileStorage>);

enum class CreateStatus : u8 {
  ok,
  exists,                 // Never overwritten: FatalReason::data_file_exists.
  not_found,              // The directory does not exist.
  permission_denied,      // Including a read-only file system.
  no_space,               // ENOSPC or EDQUOT while allocating: FatalReason::no_space.
  direct_io_unsupported,  // The file system refuses O_DIRECT: FatalReason::direct_io_unsupported.
  error,                  // Any other errno: see CreateResult::error_number.
};

struct CreateResult {
  CreateStatus status = CreateStatus::ok;
  int error_number = 0;
};

// Creates `path` (O_EXCL: fails with `exists` rather than touch an existing file) with `size`
// bytes allocated (fallocate; on file systems without it, the last sector is written), zeroed,
// and made durable with its directory entry. On failure no file is left behind.
CreateResult file_create(const char* path, u64 size);
// A sentence with the fix, for the CLI: "the file already exists; tally never overwrites ...".
const char* create_status_message(CreateStatus status);
// The fatal reason the CLI stops with, for statuses other than ok.
base::FatalReason create_status_fatal_reason(CreateStatus status);

enum class DirectIoStatus : u8 { supported, unsupported, error };

struct DirectIoProbe {
  DirectIoStatus status = DirectIoStatus::error;
  int error_number = 0;
  // The directory's file system, e.g. "ext4/ext3/ext2", "xfs", "tmpfs" ("unknown" otherwise).
  const char* file_system = "unknown";
  // tmpfs accepts O_DIRECT since Linux 6.6, but keeps the data in memory only: worth a warning.
  bool tmpfs = false;
};

// Creates, writes and reads back one O_DIRECT sector in a temporary file in `directory`, then
// removes it. Blocking; for the CLI and tests, before the loop starts.
DirectIoProbe direct_io_probe(const char* directory);
// The name of the file system holding `path` (statfs), "unknown" if not recognised.
const char* file_system_name(const char* path);

}  // namespace tally::io
