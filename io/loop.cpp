// The io_uring event loop (see loop.hpp for the contract).
//
// One pass of the loop (tick, run_once, each round of run_for_ns):
//   1. flush() = submit() + reap(), repeated while reaping resubmitted something:
//      submit() moves the overflow queue into the SQ while it has room and calls
//      io_uring_submit, until both are empty (many operations go out per syscall); reap()
//      copies every ready CQE into the completed queue. It never runs callbacks: that would
//      recurse into submit() and make stacks unbounded and traces confusing.
//   2. wait(): only if nothing is ready and the caller allows it, sleep in io_uring_enter with
//      a timeout (IORING_ENTER_EXT_ARG, no timeout SQE needed), then flush() again.
//   3. dispatch(): run the callbacks that were ready when dispatch began.
//   4. submit() again, so that operations started by callbacks reach the kernel at once.
#include "io/loop.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "src/base/assert.hpp"

namespace tally::io {

namespace {

constexpr u64 ns_per_s = 1'000'000'000;

// CQEs copied per io_uring_peek_batch_cqe call.
constexpr unsigned reap_batch_count = 64;

const char* errno_name(int error_number) {
  const char* name = strerrorname_np(error_number);
  return name != nullptr ? name : "unknown errno";
}

// Reads /proc/sys/kernel/io_uring_disabled (Linux 6.6+): 0 allows io_uring, 1 allows it to
// root and to kernel.io_uring_group, 2 disables it. -1 when the file is absent or unreadable.
int io_uring_disabled_sysctl() {
  const int fd = ::open("/proc/sys/kernel/io_uring_disabled", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char text[8] = {};
  const ssize_t size = ::read(fd, text, sizeof(text) - 1);
  ::close(fd);
  if (size <= 0 || text[0] < '0' || text[0] > '9') return -1;
  return text[0] - '0';
}

// The second tier of errors: io_uring cannot be set up, so nothing of Tally can run. The
// message names the likely cause for each errno and how to fix it.
[[noreturn]] void setup_fatal(int error_number, u32 entries) {
  using base::FatalReason;
  switch (error_number) {
    case EPERM: {
      const int disabled = io_uring_disabled_sysctl();
      if (disabled > 0) {
        base::fatal(FatalReason::io_uring_unavailable,
                    "io_uring_setup failed with EPERM: io_uring is disabled by the sysctl "
                    "kernel.io_uring_disabled=%d. Fix: sysctl -w kernel.io_uring_disabled=0 "
                    "(with the value 1, adding this user to the group kernel.io_uring_group "
                    "also works)",
                    disabled);
      }
      base::fatal(FatalReason::io_uring_unavailable,
                  "io_uring_setup failed with EPERM although the sysctl "
                  "kernel.io_uring_disabled allows it, so a seccomp filter blocks it: the "
                  "container's seccomp profile blocks io_uring_setup (Docker's default profile "
                  "does). Fix: run with a seccomp profile that allows io_uring_setup, "
                  "io_uring_enter and io_uring_register (e.g. docker run --security-opt "
                  "seccomp=<profile.json>)");
    }
    case ENOSYS:
      base::fatal(FatalReason::io_uring_unavailable,
                  "io_uring_setup failed with ENOSYS: the kernel has no io_uring (older than "
                  "Linux 5.1, built without CONFIG_IO_URING, or a sandbox such as gVisor), or a "
                  "seccomp filter answers ENOSYS for it. Fix: run on Linux 5.11 or newer with "
                  "io_uring enabled, and allow io_uring_setup, io_uring_enter and "
                  "io_uring_register in the container's seccomp profile");
    case ENOMEM: {
      struct rlimit limit = {};
      getrlimit(RLIMIT_MEMLOCK, &limit);
      base::fatal(FatalReason::io_uring_unavailable,
                  "io_uring_setup failed with ENOMEM for a ring of %u entries: the kernel could "
                  "not allocate the rings. Before Linux 5.12 the rings count against "
                  "RLIMIT_MEMLOCK, now %llu bytes. Fix: raise the locked-memory limit (ulimit -l "
                  "unlimited; LimitMEMLOCK=infinity for systemd; docker run --ulimit "
                  "memlock=-1), or free memory",
                  entries, static_cast<unsigned long long>(limit.rlim_cur));
    }
    case EMFILE:
    case ENFILE:
      base::fatal(FatalReason::io_uring_unavailable,
                  "io_uring_setup failed with %s: out of file descriptors. Fix: raise the "
                  "limit (ulimit -n)",
                  errno_name(error_number));
    default:
      base::fatal(FatalReason::io_uring_unavailable,
                  "io_uring_setup failed with %s (%s) for a ring of %u entries. Tally needs "
                  "Linux 5.11 or newer with io_uring enabled",
                  errno_name(error_number), std::strerror(error_number), entries);
  }
}

bool retry_on_interrupt(Operation operation) {
  switch (operation) {
    case Operation::read:
    case Operation::write:
    case Operation::fsync:
    case Operation::accept:
    case Operation::recv:
    case Operation::send:
    case Operation::send_zero_copy:
    case Operation::timeout: return true;
    // A connect interrupted midway cannot simply be repeated (EALREADY): the caller decides.
    case Operation::connect:
    // close: the descriptor is gone whatever the result (handled in cqe_handle).
    case Operation::close:
    case Operation::cancel: return false;
    case Operation::none: break;
  }
  TALLY_UNREACHABLE();
}

}  // namespace

Loop::~Loop() {
  if (initialized_) deinit();
}

void Loop::init(u32 entries) {
  TALLY_ASSERT(!initialized_);
  TALLY_ASSERT(entries >= 2 && entries <= entries_max && (entries & (entries - 1)) == 0,
               "entries %u must be a power of two in [2, %u]", entries, entries_max);

  // SUBMIT_ALL (5.18) keeps submitting the rest of a batch when one SQE fails at submission;
  // older kernels reject the flag, and then a failed SQE stops the batch, which the next
  // submit() call picks up again.
  io_uring_params params = {};
  params.flags = IORING_SETUP_SUBMIT_ALL;
  int result = io_uring_queue_init_params(entries, &ring_, &params);
  if (result == -EINVAL) {
    params = {};
    result = io_uring_queue_init_params(entries, &ring_, &params);
  }
  if (result < 0) setup_fatal(-result, entries);

  // NODROP (5.5): a full CQ keeps extra CQEs in the kernel instead of losing them, so the
  // number of operations in flight is not bounded by the CQ size. EXT_ARG (5.11): waits with a
  // timeout without spending an SQE on it.
  const u32 features_needed = IORING_FEAT_NODROP | IORING_FEAT_EXT_ARG;
  if ((ring_.features & features_needed) != features_needed) {
    base::fatal(base::FatalReason::io_uring_unavailable,
                "io_uring lacks IORING_FEAT_NODROP or IORING_FEAT_EXT_ARG (features 0x%x): "
                "Tally needs Linux 5.11 or newer. Fix: upgrade the kernel",
                ring_.features);
  }

  // IORING_OP_SEND_ZC arrived in Linux 6.0. The probe is allocated with malloc by liburing:
  // once, at start-up.
  io_uring_probe* probe = io_uring_get_probe_ring(&ring_);
  zero_copy_supported_ =
      probe != nullptr && io_uring_opcode_supported(probe, IORING_OP_SEND_ZC) != 0;
  if (probe != nullptr) io_uring_free_probe(probe);

  owner_ = pthread_self();
  initialized_ = true;
  TALLY_ASSERT(ring_.sq.ring_entries >= entries);
}

void Loop::deinit() {
  TALLY_ASSERT(initialized_);
  TALLY_ASSERT(!running_);
  TALLY_ASSERT(in_flight_count_ == 0,
               "%u operations in flight at deinit: cancel them and run the loop first",
               in_flight_count_);
  TALLY_ASSERT(submitted_count_ == 0 && overflow_.empty() && completed_.empty());
  io_uring_queue_exit(&ring_);
  initialized_ = false;
}

u32 Loop::sq_entries() const {
  TALLY_ASSERT(initialized_);
  return ring_.sq.ring_entries;
}

void Loop::assert_owner() const {
  TALLY_ASSERT(initialized_);
  TALLY_ASSERT(pthread_equal(owner_, pthread_self()) != 0,
               "a Loop is used only by the thread that initialised it");
}

void Loop::tick() { run_once(0); }

void Loop::run_once(u64 wait_ns_max) {
  assert_owner();
  TALLY_ASSERT(!running_, "tick/run called from inside a callback");
  running_ = true;
  flush();
  // With nothing in the kernel, nothing can complete: no point in sleeping.
  if (completed_.empty() && submitted_count_ > 0 && wait_ns_max > 0) {
    wait(wait_ns_max);
    flush();
  }
  dispatch();
  submit();
  running_ = false;
}

void Loop::run_for_ns(u64 duration_ns) {
  assert_owner();
  TALLY_ASSERT(!running_, "tick/run called from inside a callback");
  running_ = true;
  const u64 deadline_ns = time_.monotonic_ns() + duration_ns;
  for (;;) {
    flush();
    const u64 now_ns = time_.monotonic_ns();
    if (now_ns >= deadline_ns && completed_.empty()) break;
    if (completed_.empty()) {
      wait(deadline_ns - now_ns);
      flush();
    }
    dispatch();
  }
  submit();
  running_ = false;
}

void Loop::flush() {
  // Reaping can start operations again (an -EINTR retry, a refused zero-copy send resent as a
  // plain send), so submit and reap until nothing is left to submit.
  do {
    submit();
    reap();
  } while (io_uring_sq_ready(&ring_) > 0 || !overflow_.empty());
}

void Loop::wait(u64 wait_ns) {
  TALLY_ASSERT(wait_ns > 0);
  TALLY_ASSERT(io_uring_sq_ready(&ring_) == 0, "wait() with unsubmitted SQEs");
  __kernel_timespec timeout = {};
  timeout.tv_sec = static_cast<i64>(wait_ns / ns_per_s);
  timeout.tv_nsec = static_cast<long long>(wait_ns % ns_per_s);
  io_uring_cqe* cqe = nullptr;
  const int result = io_uring_wait_cqe_timeout(&ring_, &cqe, &timeout);
  // -ETIME: nothing completed in time; -EINTR: a signal. Both just end the wait.
  TALLY_ASSERT(result == 0 || result == -ETIME || result == -EINTR,
               "io_uring_wait_cqe_timeout: %s", errno_name(-result));
}

void Loop::submit() {
  for (;;) {
    while (!overflow_.empty()) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      if (sqe == nullptr) break;
      prepare(overflow_.pop(), sqe);
    }
    if (io_uring_sq_ready(&ring_) == 0) {
      TALLY_ASSERT(overflow_.empty());
      return;
    }
    const int result = io_uring_submit(&ring_);
    if (result > 0) {
      stats_.submitted += static_cast<u64>(result);
      stats_.submit_calls += 1;
      continue;
    }
    // The kernel consumes at least the first SQE of a batch (a failing one becomes an error
    // CQE), so zero would mean this loop spins.
    TALLY_ASSERT(result != 0, "io_uring_submit took none of %u SQEs", io_uring_sq_ready(&ring_));
    if (result == -EINTR) continue;
    // -EBUSY: the kernel holds CQEs that did not fit the CQ and wants them reaped first.
    // -EAGAIN: it could not allocate for the requests right now. Either way, make room by
    // taking completions out (their callbacks run at dispatch), then try again.
    TALLY_ASSERT(result == -EBUSY || result == -EAGAIN, "io_uring_submit: %s",
                 errno_name(-result));
    const u32 completed_before = completed_.count();
    reap();
    if (completed_.count() == completed_before) {
      io_uring_cqe* cqe = nullptr;
      const int wait_result = io_uring_wait_cqe(&ring_, &cqe);
      TALLY_ASSERT(wait_result == 0 || wait_result == -EINTR, "io_uring_wait_cqe: %s",
                   errno_name(-wait_result));
      reap();
    }
  }
}

void Loop::reap() {
  io_uring_cqe* cqes[reap_batch_count];
  for (;;) {
    const unsigned count = io_uring_peek_batch_cqe(&ring_, cqes, reap_batch_count);
    for (unsigned index = 0; index < count; index += 1) {
      cqe_handle(cqes[index]->user_data, cqes[index]->res, cqes[index]->flags);
    }
    io_uring_cq_advance(&ring_, count);
    if (count < reap_batch_count) return;
  }
}

void Loop::dispatch() {
  // Only what was ready when dispatch began: a cancel of an overflowed operation, started by a
  // callback, completes at the next pass, which keeps every pass bounded.
  u32 count = completed_.count();
  while (count > 0) {
    count -= 1;
    Completion* completion = completed_.pop();
    TALLY_ASSERT(completion->state == CompletionState::completed);
    TALLY_ASSERT(in_flight_count_ > 0);
    in_flight_count_ -= 1;
    completion->state = CompletionState::idle;
    stats_.completed += 1;
    completion->callback(completion);
  }
}

void Loop::cqe_handle(u64 user_data, i32 result, u32 flags) {
  auto* completion = reinterpret_cast<Completion*>(static_cast<std::uintptr_t>(user_data));
  TALLY_ASSERT(completion != nullptr);
  TALLY_ASSERT(completion->state == CompletionState::submitted, "CQE for a completion in "
               "state %u, operation %u", static_cast<unsigned>(completion->state),
               static_cast<unsigned>(completion->operation));

  if (completion->operation == Operation::send_zero_copy) {
    zero_copy_cqe_handle(completion, result, flags);
    return;
  }
  TALLY_ASSERT((flags & IORING_CQE_F_MORE) == 0, "only zero-copy sends post more CQEs");
  TALLY_ASSERT(submitted_count_ > 0);
  submitted_count_ -= 1;

  if (result == -EINTR && retry_on_interrupt(completion->operation)) {
    stats_.interrupted += 1;
    completion->state = CompletionState::idle;
    enqueue(completion);
    return;
  }
  if (completion->operation == Operation::timeout && result == -ETIME) result = 0;
  if (completion->operation == Operation::close && result == -EINTR) result = 0;
  finish(completion, result);
}

void Loop::zero_copy_cqe_handle(Completion* completion, i32 result, u32 flags) {
  if ((flags & IORING_CQE_F_NOTIF) != 0) {
    TALLY_ASSERT(!completion->zero_copy_notification_received);
    completion->zero_copy_notification_received = true;
    stats_.zero_copy_notifications += 1;
    // The kernel posts the notification after the result; should it ever come first, the
    // result CQE (with F_MORE) finishes the operation instead.
    if (!completion->zero_copy_result_received) return;
  } else {
    TALLY_ASSERT(!completion->zero_copy_result_received);
    completion->zero_copy_result_received = true;
    completion->result = result;
    const bool notification_pending = (flags & IORING_CQE_F_MORE) != 0 &&
                                      !completion->zero_copy_notification_received;
    if (notification_pending) return;
  }

  // Both CQEs are in (or the kernel failed the request before it took the buffer): the buffer
  // is the caller's again.
  TALLY_ASSERT(submitted_count_ > 0);
  submitted_count_ -= 1;
  const i32 send_result = completion->result;
  const int socket = completion->arguments.transfer.fd;
  if (send_result == -EOPNOTSUPP || send_result == -EINVAL) {
    stats_.zero_copy_refused += 1;
    zero_copy_refused_set(socket, true);
    completion->operation = Operation::send;
    completion->state = CompletionState::idle;
    enqueue(completion);
    return;
  }
  if (send_result == -EINTR) {
    stats_.interrupted += 1;
    completion->state = CompletionState::idle;
    enqueue(completion);
    return;
  }
  finish(completion, send_result);
}

void Loop::finish(Completion* completion, i32 result) {
  TALLY_ASSERT(completion->state == CompletionState::submitted ||
               completion->state == CompletionState::queued);
  completion->result = result;
  completion->state = CompletionState::completed;
  completed_.push(completion);
}

void Loop::start(Completion* completion, Callback callback, Operation operation) {
  assert_owner();
  TALLY_ASSERT(completion != nullptr && callback != nullptr);
  TALLY_ASSERT(completion->state == CompletionState::idle,
               "completion is already in flight (state %u, operation %u)",
               static_cast<unsigned>(completion->state),
               static_cast<unsigned>(completion->operation));
  TALLY_ASSERT(completion->next == nullptr);
  completion->callback = callback;
  completion->operation = operation;
  completion->result = 0;
  in_flight_count_ += 1;
}

void Loop::enqueue(Completion* completion) {
  TALLY_ASSERT(completion->state == CompletionState::idle);
  // Behind others that are waiting, to keep the order in which operations were started.
  io_uring_sqe* sqe = overflow_.empty() ? io_uring_get_sqe(&ring_) : nullptr;
  if (sqe == nullptr) {
    stats_.overflowed += 1;
    completion->state = CompletionState::queued;
    overflow_.push(completion);
    return;
  }
  prepare(completion, sqe);
}

void Loop::prepare(Completion* completion, io_uring_sqe* sqe) {
  TALLY_ASSERT(sqe != nullptr);
  Completion::Arguments& arguments = completion->arguments;
  switch (completion->operation) {
    case Operation::timeout:
      io_uring_prep_timeout(sqe, &arguments.timeout.duration, 0, 0);
      break;
    case Operation::read:
      io_uring_prep_read(sqe, arguments.transfer.fd, arguments.transfer.buffer,
                         arguments.transfer.size, arguments.transfer.offset);
      break;
    case Operation::write:
      io_uring_prep_write(sqe, arguments.transfer.fd, arguments.transfer.buffer,
                          arguments.transfer.size, arguments.transfer.offset);
      break;
    case Operation::fsync:
      io_uring_prep_fsync(sqe, arguments.fsync.fd,
                          arguments.fsync.kind == FsyncKind::data ? IORING_FSYNC_DATASYNC : 0);
      break;
    case Operation::accept:
      io_uring_prep_accept(sqe, arguments.descriptor.fd, nullptr, nullptr, SOCK_CLOEXEC);
      break;
    case Operation::connect:
      io_uring_prep_connect(sqe, arguments.connect.fd, &arguments.connect.address,
                            arguments.connect.address_size);
      break;
    case Operation::recv:
      io_uring_prep_recv(sqe, arguments.transfer.fd, arguments.transfer.buffer,
                         arguments.transfer.size, 0);
      break;
    // MSG_NOSIGNAL: a peer that went away is an -EPIPE result, not a SIGPIPE for the process.
    case Operation::send:
      io_uring_prep_send(sqe, arguments.transfer.fd, arguments.transfer.buffer,
                         arguments.transfer.size, MSG_NOSIGNAL);
      break;
    case Operation::send_zero_copy:
      completion->zero_copy_result_received = false;
      completion->zero_copy_notification_received = false;
      io_uring_prep_send_zc(sqe, arguments.transfer.fd, arguments.transfer.buffer,
                            arguments.transfer.size, MSG_NOSIGNAL, 0);
      break;
    case Operation::close:
      io_uring_prep_close(sqe, arguments.descriptor.fd);
      break;
    case Operation::cancel:
      io_uring_prep_cancel(sqe, arguments.cancel.target, 0);
      break;
    case Operation::none: TALLY_UNREACHABLE();
  }
  io_uring_sqe_set_data(sqe, completion);
  completion->state = CompletionState::submitted;
  submitted_count_ += 1;
}

void Loop::timeout(Completion* completion, Callback callback, u64 duration_ns) {
  start(completion, callback, Operation::timeout);
  completion->arguments.timeout.duration.tv_sec = static_cast<i64>(duration_ns / ns_per_s);
  completion->arguments.timeout.duration.tv_nsec = static_cast<long long>(duration_ns % ns_per_s);
  enqueue(completion);
}

void Loop::read(Completion* completion, Callback callback, int fd, std::span<std::byte> buffer,
                u64 offset) {
  TALLY_ASSERT(fd >= 0);
  TALLY_ASSERT(buffer.size() <= UINT32_MAX);
  start(completion, callback, Operation::read);
  completion->arguments.transfer = {fd, static_cast<u32>(buffer.size()), buffer.data(), offset};
  enqueue(completion);
}

void Loop::write(Completion* completion, Callback callback, int fd,
                 std::span<const std::byte> data, u64 offset) {
  TALLY_ASSERT(fd >= 0);
  TALLY_ASSERT(data.size() <= UINT32_MAX);
  start(completion, callback, Operation::write);
  // The kernel only reads through this pointer; the union keeps one pointer type for all.
  completion->arguments.transfer = {fd, static_cast<u32>(data.size()),
                                    const_cast<std::byte*>(data.data()), offset};
  enqueue(completion);
}

void Loop::fsync(Completion* completion, Callback callback, int fd, FsyncKind kind) {
  TALLY_ASSERT(fd >= 0);
  start(completion, callback, Operation::fsync);
  completion->arguments.fsync = {fd, kind};
  enqueue(completion);
}

void Loop::accept(Completion* completion, Callback callback, int socket) {
  TALLY_ASSERT(socket >= 0);
  start(completion, callback, Operation::accept);
  completion->arguments.descriptor.fd = socket;
  enqueue(completion);
}

void Loop::connect(Completion* completion, Callback callback, int socket,
                   const sockaddr* address, socklen_t address_size) {
  TALLY_ASSERT(socket >= 0);
  TALLY_ASSERT(address != nullptr);
  TALLY_ASSERT(address_size > 0 && address_size <= sizeof(sockaddr_in6),
               "address of %u bytes: only IPv4 and IPv6 are supported", address_size);
  start(completion, callback, Operation::connect);
  completion->arguments.connect.fd = socket;
  completion->arguments.connect.address_size = address_size;
  std::memcpy(&completion->arguments.connect.address_ipv6, address, address_size);
  enqueue(completion);
}

void Loop::recv(Completion* completion, Callback callback, int socket,
                std::span<std::byte> buffer) {
  TALLY_ASSERT(socket >= 0);
  TALLY_ASSERT(buffer.size() > 0 && buffer.size() <= UINT32_MAX);
  start(completion, callback, Operation::recv);
  completion->arguments.transfer = {socket, static_cast<u32>(buffer.size()), buffer.data(), 0};
  enqueue(completion);
}

void Loop::send(Completion* completion, Callback callback, int socket,
                std::span<const std::byte> data) {
  TALLY_ASSERT(socket >= 0);
  TALLY_ASSERT(data.size() > 0 && data.size() <= UINT32_MAX);
  start(completion, callback, Operation::send);
  completion->arguments.transfer = {socket, static_cast<u32>(data.size()),
                                    const_cast<std::byte*>(data.data()), 0};
  enqueue(completion);
}

void Loop::send_zero_copy(Completion* completion, Callback callback, int socket,
                          std::span<const std::byte> data) {
  TALLY_ASSERT(socket >= 0);
  TALLY_ASSERT(data.size() > 0 && data.size() <= UINT32_MAX);
  const bool zero_copy = zero_copy_supported_ && !zero_copy_refused(socket);
  start(completion, callback, zero_copy ? Operation::send_zero_copy : Operation::send);
  completion->arguments.transfer = {socket, static_cast<u32>(data.size()),
                                    const_cast<std::byte*>(data.data()), 0};
  enqueue(completion);
}

void Loop::close(Completion* completion, Callback callback, int fd) {
  TALLY_ASSERT(fd >= 0);
  start(completion, callback, Operation::close);
  completion->arguments.descriptor.fd = fd;
  // The number is free for the next socket, which deserves its own zero-copy attempt.
  zero_copy_refused_set(fd, false);
  enqueue(completion);
}

void Loop::cancel(Completion* completion, Callback callback, Completion* target) {
  TALLY_ASSERT(target != nullptr && target != completion);
  TALLY_ASSERT(target->state != CompletionState::idle, "cancel of an operation not in flight");
  TALLY_ASSERT(target->operation != Operation::cancel);
  start(completion, callback, Operation::cancel);
  completion->arguments.cancel.target = target;
  if (target->state == CompletionState::queued) {
    // Never reached the kernel, so the kernel could not find it: complete both here.
    overflow_.remove(target);
    finish(target, -ECANCELED);
    completion->state = CompletionState::queued;
    finish(completion, 0);
    return;
  }
  enqueue(completion);
}

bool Loop::zero_copy_refused(int socket) const {
  TALLY_ASSERT(socket >= 0);
  if (socket >= zero_copy_refused_fd_count) return false;
  const auto index = static_cast<u32>(socket);
  return (zero_copy_refused_bits_[index / 64] & (u64{1} << (index % 64))) != 0;
}

void Loop::zero_copy_refused_set(int socket, bool refused) {
  TALLY_ASSERT(socket >= 0);
  if (socket >= zero_copy_refused_fd_count) return;
  const auto index = static_cast<u32>(socket);
  const u64 bit = u64{1} << (index % 64);
  if (refused) {
    zero_copy_refused_bits_[index / 64] |= bit;
  } else {
    zero_copy_refused_bits_[index / 64] &= ~bit;
  }
}

}  // namespace tally::io
