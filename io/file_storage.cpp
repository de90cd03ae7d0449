// The data file through io_uring and O_DIRECT (see file_storage.hpp for the contract).
//
// A read or write may take several submissions: the first covers up to transfer_size_max
// bytes; each completion adds its bytes to done_size and, if bytes remain (a short transfer or
// a split one), submits the rest from buffer + done_size at offset + done_size. Because every
// piece starts at a sector boundary of the original request and the kernel moves whole logical
// blocks under O_DIRECT, the rest stays aligned (asserted).
//
//   request:  [offset ................................. offset + size)
//   pieces:   [ done_size = 0 ... ) [ done_size = k ... ) [ ... )      each one submission
#include "io/file_storage.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "io/released_soon.hpp"

namespace tally::io {

namespace {

// O_DIRECT transfers move whole logical blocks; 512 bytes is the smallest there is.
constexpr u64 logical_block_size_min = 512;

const char* errno_name(int error_number) {
  const char* name = strerrorname_np(error_number);
  return name != nullptr ? name : "unknown errno";
}

bool aligned(u64 value) { return value % sector_size == 0; }

const char* file_system_name_from_magic(u64 magic) {
  // Magic numbers from <linux/magic.h> and statfs(2), for those a data file might land on.
  switch (magic) {
    case EXT4_SUPER_MAGIC: return "ext4/ext3/ext2";
    case XFS_SUPER_MAGIC: return "xfs";
    case BTRFS_SUPER_MAGIC: return "btrfs";
    case TMPFS_MAGIC: return "tmpfs";
    case OVERLAYFS_SUPER_MAGIC: return "overlayfs";
    case NFS_SUPER_MAGIC: return "nfs";
    case FUSE_SUPER_MAGIC: return "fuse";
    case V9FS_MAGIC: return "9p";
    case PROC_SUPER_MAGIC: return "proc";
    case SYSFS_MAGIC: return "sysfs";
    case RAMFS_MAGIC: return "ramfs";
    case SQUASHFS_MAGIC: return "squashfs";
    case 0x2fc12fc1: return "zfs";
    case 0xf2f52010: return "f2fs";
    case 0x786f4256: return "vboxsf";
    case 0xff534d42: return "cifs/smb";
    case 0xfe534d42: return "smb2";
    default: return "unknown";
  }
}

bool file_system_magic(const char* path, u64* magic) {
  struct statfs status = {};
  if (statfs(path, &status) != 0) return false;
  *magic = static_cast<u64>(status.f_type);
  return true;
}

// Where `path` lives: everything before the last '/', or "." for a bare name.
void directory_of(const char* path, char* directory, std::size_t directory_size) {
  const char* slash = std::strrchr(path, '/');
  if (slash == nullptr) {
    std::snprintf(directory, directory_size, ".");
  } else if (slash == path) {
    std::snprintf(directory, directory_size, "/");
  } else {
    std::snprintf(directory, directory_size, "%.*s", static_cast<int>(slash - path), path);
  }
}

int fsync_retrying(int fd) {
  for (;;) {
    if (::fsync(fd) == 0) return 0;
    if (errno != EINTR) return errno;
  }
}

// Makes a new directory entry durable: fsync of the file covers its data and inode, the
// directory's fsync covers the name that points to it.
int directory_fsync(const char* path) {
  char directory[4096];
  directory_of(path, directory, sizeof(directory));
  const int fd = ::open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  const int error_number = fsync_retrying(fd);
  ::close(fd);
  return error_number;
}

// Takes the data file's advisory lock: exclusive for a replica, shared for a reader. The lock
// belongs to the open file description, which a replica killed a moment ago can still hold
// (released_soon.hpp).
int lock_retrying(int fd, bool shared) {
  return retry_while_busy(EWOULDBLOCK, [fd, shared] {
    while (flock(fd, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
      if (errno != EINTR) return errno;
    }
    return 0;
  });
}

[[noreturn]] void direct_io_fatal(const char* path) {
  base::fatal(base::FatalReason::direct_io_unsupported,
              "%s: the file system (%s) refuses O_DIRECT. Tally writes its data file with "
              "direct IO so that a completed write is on the disk and not only in the page "
              "cache. Fix: put the data file on a local disk file system that supports "
              "O_DIRECT, such as ext4 or xfs (not tmpfs before Linux 6.6, overlayfs, NFS, FUSE "
              "or 9p shares)",
              path, file_system_name(path));
}

}  // namespace

const char* file_system_name(const char* path) {
  u64 magic = 0;
  if (!file_system_magic(path, &magic)) {
    // The file may not exist yet: ask about its directory.
    char directory[4096];
    directory_of(path, directory, sizeof(directory));
    if (!file_system_magic(directory, &magic)) return "unknown";
  }
  return file_system_name_from_magic(magic);
}

const char* open_status_message(OpenStatus status) {
  switch (status) {
    case OpenStatus::ok: return "opened";
    case OpenStatus::not_found: return "the data file does not exist (create it with format)";
    case OpenStatus::permission_denied:
      return "permission denied: the data file must be readable and writable by this user";
    case OpenStatus::not_a_regular_file: return "the path is not a regular file";
    case OpenStatus::size_invalid:
      return "the file is empty or its size is not a multiple of 4096 bytes: not a data file";
    case OpenStatus::locked:
      return "another process (a running replica?) holds the data file's lock";
    case OpenStatus::error: return "the data file could not be opened";
  }
  return "unknown status";
}

FileStorage::~FileStorage() {
  if (fd_ >= 0) close();
}

OpenResult FileStorage::open(Loop* loop, const FileStorageOptions& options) {
  TALLY_ASSERT(fd_ < 0, "already open");
  TALLY_ASSERT(loop != nullptr && options.path != nullptr);
  TALLY_ASSERT(options.transfer_size_max > 0 && aligned(options.transfer_size_max));

  int flags = O_DIRECT | O_CLOEXEC | (options.read_only ? O_RDONLY : O_RDWR);
  if (!options.read_only && options.durability == Durability::per_write) flags |= O_DSYNC;

  int fd = -1;
  do {
    fd = ::open(options.path, flags);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const int error_number = errno;
    switch (error_number) {
      // open(2): "EINVAL: The filesystem does not support the O_DIRECT flag."
      case EINVAL: direct_io_fatal(options.path);
      case ENOENT: return {OpenStatus::not_found, error_number};
      case EACCES:
      case EPERM:
      case EROFS: return {OpenStatus::permission_denied, error_number};
      case EISDIR: return {OpenStatus::not_a_regular_file, error_number};
      default: return {OpenStatus::error, error_number};
    }
  }

  OpenResult result = {};
  struct stat status = {};
  if (fstat(fd, &status) != 0) {
    result = {OpenStatus::error, errno};
  } else if (!S_ISREG(status.st_mode)) {
    result = {OpenStatus::not_a_regular_file, 0};
  } else if (status.st_size <= 0 || !aligned(static_cast<u64>(status.st_size))) {
    result = {OpenStatus::size_invalid, 0};
  } else if (const int lock_error = lock_retrying(fd, options.read_only); lock_error != 0) {
    result = {lock_error == EWOULDBLOCK ? OpenStatus::locked : OpenStatus::error, lock_error};
  } else if (const int fsync_error = fsync_retrying(fd); fsync_error != 0) {
    // Anything a crashed predecessor left in flight becomes durable before it is read.
    result = {OpenStatus::error, fsync_error};
  }
  if (result.status != OpenStatus::ok) {
    ::close(fd);
    return result;
  }

  loop_ = loop;
  fd_ = fd;
  size_ = static_cast<u64>(status.st_size);
  options_ = options;
  options_.path = nullptr;
  std::snprintf(path_, sizeof(path_), "%s", options.path);
  for (Flush& flush : flushes_) {
    flush.storage = this;
    flush.completion.context = &flush;
  }
  TALLY_ASSERT(size_ > 0 && aligned(size_));
  return result;
}

void FileStorage::close() {
  TALLY_ASSERT(fd_ >= 0);
  TALLY_ASSERT(reads_in_flight_ == 0 && writes_in_flight_ == 0 && flushes_in_flight_ == 0,
               "close with %u reads and %u writes in flight", reads_in_flight_,
               writes_in_flight_);
  TALLY_ASSERT(flush_waiting_.empty());
  // The descriptor holds the flock; closing releases it.
  ::close(fd_);
  fd_ = -1;
  loop_ = nullptr;
  size_ = 0;
}

void FileStorage::range_assert(const void* address, u64 size, u64 offset) const {
  TALLY_ASSERT(fd_ >= 0, "storage is not open");
  TALLY_ASSERT(size > 0);
  TALLY_ASSERT(reinterpret_cast<std::uintptr_t>(address) % sector_size == 0,
               "buffer %p is not aligned to %u bytes", address, sector_size);
  TALLY_ASSERT(aligned(size) && aligned(offset), "size %llu or offset %llu not aligned to %u",
               static_cast<unsigned long long>(size), static_cast<unsigned long long>(offset),
               sector_size);
  TALLY_ASSERT(offset <= size_ && size <= size_ - offset,
               "range [%llu, +%llu) beyond the data file's %llu bytes",
               static_cast<unsigned long long>(offset), static_cast<unsigned long long>(size),
               static_cast<unsigned long long>(size_));
}

void FileStorage::read(Read* read, void (*callback)(Read* read), std::span<std::byte> buffer,
                       u64 offset) {
  TALLY_ASSERT(read != nullptr && callback != nullptr);
  TALLY_ASSERT(!read->in_flight, "read already in flight");
  TALLY_ASSERT(read->completion.state == CompletionState::idle);
  range_assert(buffer.data(), buffer.size(), offset);
  read->buffer = buffer;
  read->offset = offset;
  read->result = ReadResult::ok;
  read->storage = this;
  read->callback = callback;
  read->done_size = 0;
  read->in_flight = true;
  read->completion.context = read;
  reads_in_flight_ += 1;
  stats_.reads += 1;
  read_submit(read);
}

void FileStorage::read_submit(Read* read) {
  TALLY_ASSERT(read->done_size < read->buffer.size());
  TALLY_ASSERT(read->done_size % logical_block_size_min == 0);
  const u64 size = std::min<u64>(read->buffer.size() - read->done_size,
                                 options_.transfer_size_max);
  loop_->read(&read->completion, read_complete, fd_,
              read->buffer.subspan(read->done_size, size), read->offset + read->done_size);
}

void FileStorage::read_complete(Completion* completion) {
  Read* read = static_cast<Read*>(completion->context);
  FileStorage* storage = read->storage;
  TALLY_ASSERT(storage != nullptr && completion == &read->completion);
  const i32 result = completion->result;
  const u64 asked_size = completion->arguments.transfer.size;

  if (result == -EINTR || result == -EAGAIN) {
    // Some file systems answer -EAGAIN even for blocking reads; the request is repeated as is.
    storage->stats_.retries += 1;
    storage->read_submit(read);
    return;
  }
  if (result == -EIO || result == -ENODATA || result == -EBADMSG) {
    // The device cannot serve these sectors. The journal treats it like corruption and repairs
    // from another replica, so the rest of the range is not attempted.
    storage->stats_.read_errors += 1;
    read->result = ReadResult::error;
    storage->read_finish(read);
    return;
  }
  if (result < 0) {
    base::fatal(base::FatalReason::storage_error, "%s: read of %llu bytes at offset %llu "
                "failed: %s (%s)", storage->path_, static_cast<unsigned long long>(asked_size),
                static_cast<unsigned long long>(read->offset + read->done_size),
                errno_name(-result), std::strerror(-result));
  }
  if (result == 0) {
    base::fatal(base::FatalReason::storage_error, "%s: read at offset %llu found the end of the "
                "file: the data file was truncated below its size of %llu bytes", storage->path_,
                static_cast<unsigned long long>(read->offset + read->done_size),
                static_cast<unsigned long long>(storage->size_));
  }
  const auto done_size = static_cast<u64>(result);
  TALLY_ASSERT(done_size <= asked_size);
  read->done_size += done_size;
  if (read->done_size < read->buffer.size()) {
    storage->stats_.continuations += 1;
    storage->read_submit(read);
    return;
  }
  TALLY_ASSERT(read->done_size == read->buffer.size());
  storage->read_finish(read);
}

void FileStorage::read_finish(Read* read) {
  TALLY_ASSERT(reads_in_flight_ > 0);
  TALLY_ASSERT(read->in_flight);
  reads_in_flight_ -= 1;
  read->in_flight = false;
  read->callback(read);
}

void FileStorage::write(Write* write, void (*callback)(Write* write),
                        std::span<const std::byte> data, u64 offset) {
  TALLY_ASSERT(write != nullptr && callback != nullptr);
  TALLY_ASSERT(!options_.read_only, "write to a data file opened read-only");
  // In flush_batched mode a write whose data is written waits for its flush with an idle
  // completion, so the flag, not the completion, tells whether it is in flight.
  TALLY_ASSERT(!write->in_flight, "write already in flight");
  TALLY_ASSERT(write->completion.state == CompletionState::idle && write->next == nullptr);
  range_assert(data.data(), data.size(), offset);
  write->data = data;
  write->offset = offset;
  write->storage = this;
  write->callback = callback;
  write->done_size = 0;
  write->in_flight = true;
  write->completion.context = write;
  writes_in_flight_ += 1;
  stats_.writes += 1;
  write_submit(write);
}

void FileStorage::write_submit(Write* write) {
  TALLY_ASSERT(write->done_size < write->data.size());
  TALLY_ASSERT(write->done_size % logical_block_size_min == 0);
  const u64 size = std::min<u64>(write->data.size() - write->done_size,
                                 options_.transfer_size_max);
  loop_->write(&write->completion, write_complete, fd_,
               write->data.subspan(write->done_size, size), write->offset + write->done_size);
}

void FileStorage::write_complete(Completion* completion) {
  Write* write = static_cast<Write*>(completion->context);
  FileStorage* storage = write->storage;
  TALLY_ASSERT(storage != nullptr && completion == &write->completion);
  const i32 result = completion->result;
  const u64 asked_size = completion->arguments.transfer.size;

  if (result == -EINTR || result == -EAGAIN) {
    storage->stats_.retries += 1;
    storage->write_submit(write);
    return;
  }
  if (result == -ENOSPC || result == -EDQUOT) {
    base::fatal(base::FatalReason::no_space, "%s: write of %llu bytes at offset %llu: %s. The "
                "data file is preallocated, so the file system ran out of room for its own "
                "metadata. Fix: free space on the file system", storage->path_,
                static_cast<unsigned long long>(asked_size),
                static_cast<unsigned long long>(write->offset + write->done_size),
                errno_name(-result));
  }
  if (result <= 0) {
    // The sectors may hold the old data, the new, or neither: nothing safe to retry.
    base::fatal(base::FatalReason::storage_error, "%s: write of %llu bytes at offset %llu "
                "failed: %s (%s)", storage->path_, static_cast<unsigned long long>(asked_size),
                static_cast<unsigned long long>(write->offset + write->done_size),
                result == 0 ? "no progress" : errno_name(-result),
                result == 0 ? "wrote 0 bytes" : std::strerror(-result));
  }
  const auto done_size = static_cast<u64>(result);
  TALLY_ASSERT(done_size <= asked_size);
  write->done_size += done_size;
  if (write->done_size < write->data.size()) {
    storage->stats_.continuations += 1;
    storage->write_submit(write);
    return;
  }
  TALLY_ASSERT(write->done_size == write->data.size());
  if (storage->options_.durability == Durability::per_write) {
    // O_DSYNC: the write is already durable.
    storage->write_finish(write);
    return;
  }
  storage->flush_waiting_.push(write);
  storage->flush_start();
}

void FileStorage::write_finish(Write* write) {
  TALLY_ASSERT(writes_in_flight_ > 0);
  TALLY_ASSERT(write->in_flight && write->next == nullptr);
  writes_in_flight_ -= 1;
  write->in_flight = false;
  write->callback(write);
}

void FileStorage::flush_start() {
  TALLY_ASSERT(!flush_waiting_.empty());
  if (flushes_in_flight_ == flush_count_max) return;  // The next flush_complete starts one.
  Flush* flush = nullptr;
  for (Flush& candidate : flushes_) {
    if (!candidate.in_flight) flush = &candidate;
  }
  TALLY_ASSERT(flush != nullptr && flush->batch.empty());
  // Every write waiting now completed before this fdatasync starts, so it covers them all;
  // writes completing from here on wait for a later one.
  while (!flush_waiting_.empty()) flush->batch.push(flush_waiting_.pop());
  flush->in_flight = true;
  flushes_in_flight_ += 1;
  stats_.flushes += 1;
  loop_->fsync(&flush->completion, flush_complete, fd_, FsyncKind::data);
}

void FileStorage::flush_complete(Completion* completion) {
  auto* flush = static_cast<Flush*>(completion->context);
  FileStorage* storage = flush->storage;
  TALLY_ASSERT(storage != nullptr && flush->in_flight && storage->flushes_in_flight_ > 0);
  const i32 result = completion->result;
  if (result != 0) {
    // After a failed flush the kernel may have dropped the error state together with the data
    // (fsyncgate): a later fdatasync could succeed without the data being there.
    base::fatal(base::FatalReason::storage_error, "%s: fdatasync failed: %s (%s): writes may "
                "not be durable", storage->path_, errno_name(-result), std::strerror(-result));
  }
  flush->in_flight = false;
  storage->flushes_in_flight_ -= 1;
  // Callbacks may start writes; those complete later and join flush_waiting_, not this batch.
  while (!flush->batch.empty()) storage->write_finish(flush->batch.pop());
  if (!storage->flush_waiting_.empty()) storage->flush_start();
}

// --- Creating a data file and probing for O_DIRECT: blocking, before the loop runs. ---

const char* create_status_message(CreateStatus status) {
  switch (status) {
    case CreateStatus::ok: return "created";
    case CreateStatus::exists:
      return "the file already exists; tally never overwrites a data file (remove it first if "
             "it is really unwanted)";
    case CreateStatus::not_found: return "the directory does not exist";
    case CreateStatus::permission_denied:
      return "permission denied (or a read-only file system) in the data file's directory";
    case CreateStatus::no_space:
      return "not enough free space for the data file on this file system";
    case CreateStatus::direct_io_unsupported:
      return "the file system refuses O_DIRECT; put the data file on ext4 or xfs";
    case CreateStatus::error: return "the data file could not be created";
  }
  return "unknown status";
}

base::FatalReason create_status_fatal_reason(CreateStatus status) {
  TALLY_ASSERT(status != CreateStatus::ok);
  switch (status) {
    case CreateStatus::exists: return base::FatalReason::data_file_exists;
    case CreateStatus::no_space: return base::FatalReason::no_space;
    case CreateStatus::direct_io_unsupported: return base::FatalReason::direct_io_unsupported;
    case CreateStatus::ok:
    case CreateStatus::not_found:
    case CreateStatus::permission_denied:
    case CreateStatus::error: return base::FatalReason::storage_error;
  }
  TALLY_UNREACHABLE();
}

CreateResult file_create(const char* path, u64 size) {
  TALLY_ASSERT(path != nullptr);
  TALLY_ASSERT(size > 0 && aligned(size), "size %llu", static_cast<unsigned long long>(size));

  int fd = -1;
  do {
    fd = ::open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    switch (errno) {
      case EEXIST: return {CreateStatus::exists, errno};
      case ENOENT:
      case ENOTDIR: return {CreateStatus::not_found, errno};
      case EACCES:
      case EPERM:
      case EROFS: return {CreateStatus::permission_denied, errno};
      case ENOSPC:
      case EDQUOT: return {CreateStatus::no_space, errno};
      default: return {CreateStatus::error, errno};
    }
  }
  // From here on the file is ours (O_EXCL), and is removed again on any failure.
  const auto fail = [&](CreateStatus status, int error_number) -> CreateResult {
    if (fd >= 0) ::close(fd);
    ::unlink(path);
    return {status, error_number};
  };

  // Opened without O_DIRECT first: on a file system that refuses it, open(O_CREAT | O_DIRECT)
  // can create the file and still fail. Reopening tells the two apart.
  const int fd_direct = ::open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
  if (fd_direct < 0) {
    const int error_number = errno;
    return fail(error_number == EINVAL ? CreateStatus::direct_io_unsupported
                                       : CreateStatus::error, error_number);
  }
  ::close(fd);
  fd = fd_direct;

  int result = 0;
  do {
    result = fallocate(fd, 0, 0, static_cast<off_t>(size));
  } while (result != 0 && errno == EINTR);
  if (result != 0 && errno == EOPNOTSUPP) {
    // Without fallocate the size is still set by writing the last sector; the file is sparse,
    // and a full disk shows up later as ENOSPC on a write.
    alignas(sector_size) static constexpr std::byte zero_sector[sector_size] = {};
    ssize_t written = 0;
    do {
      written = ::pwrite(fd, zero_sector, sector_size, static_cast<off_t>(size - sector_size));
    } while (written < 0 && errno == EINTR);
    result = written == static_cast<ssize_t>(sector_size) ? 0 : -1;
    if (written >= 0 && result != 0) errno = EIO;
  }
  if (result != 0) {
    const int error_number = errno;
    const bool full = error_number == ENOSPC || error_number == EDQUOT;
    return fail(full ? CreateStatus::no_space : CreateStatus::error, error_number);
  }
  if (const int error_number = fsync_retrying(fd); error_number != 0) {
    return fail(CreateStatus::error, error_number);
  }
  if (const int error_number = directory_fsync(path); error_number != 0) {
    return fail(CreateStatus::error, error_number);
  }
  ::close(fd);
  return {CreateStatus::ok, 0};
}

DirectIoProbe direct_io_probe(const char* directory) {
  TALLY_ASSERT(directory != nullptr);
  DirectIoProbe probe = {};
  u64 magic = 0;
  if (file_system_magic(directory, &magic)) {
    probe.file_system = file_system_name_from_magic(magic);
    probe.tmpfs = magic == TMPFS_MAGIC;
  }

  // A name no other probe (in this or another process) uses at the same time.
  static std::atomic<u32> probe_counter{0};
  char path[4096];
  const int path_size = std::snprintf(path, sizeof(path), "%s/.tally-direct-io-probe-%d-%u",
                                      directory, static_cast<int>(getpid()),
                                      probe_counter.fetch_add(1, std::memory_order_relaxed));
  if (path_size < 0 || static_cast<std::size_t>(path_size) >= sizeof(path)) {
    probe.status = DirectIoStatus::error;
    probe.error_number = ENAMETOOLONG;
    return probe;
  }
  const int fd_create = ::open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd_create < 0) {
    probe.status = DirectIoStatus::error;
    probe.error_number = errno;
    return probe;
  }
  ::close(fd_create);

  const int fd = ::open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
  if (fd < 0) {
    probe.error_number = errno;
    probe.status = errno == EINVAL ? DirectIoStatus::unsupported : DirectIoStatus::error;
    ::unlink(path);
    return probe;
  }
  // Some file systems accept the flag at open and refuse the transfer instead.
  alignas(sector_size) std::byte sector[sector_size];
  for (u32 index = 0; index < sector_size; index += 1) {
    sector[index] = static_cast<std::byte>(index * 7 + 1);
  }
  alignas(sector_size) std::byte sector_read[sector_size] = {};
  const ssize_t written = ::pwrite(fd, sector, sector_size, 0);
  const int write_error = written < 0 ? errno : 0;
  const ssize_t read_size = written == sector_size ? ::pread(fd, sector_read, sector_size, 0)
                                                   : -1;
  const int read_error = read_size < 0 ? errno : 0;
  ::close(fd);
  ::unlink(path);

  if (written == sector_size && read_size == sector_size &&
      std::memcmp(sector, sector_read, sector_size) == 0) {
    probe.status = DirectIoStatus::supported;
    probe.error_number = 0;
  } else {
    const int error_number = write_error != 0 ? write_error : read_error;
    probe.status = error_number == EINVAL ? DirectIoStatus::unsupported : DirectIoStatus::error;
    probe.error_number = error_number != 0 ? error_number : EIO;
  }
  return probe;
}

}  // namespace tally::io
