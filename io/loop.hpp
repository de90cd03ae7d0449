// Loop: an io_uring event loop owned by one thread, with caller-owned completions.
//
// Every operation is started with a Completion that the caller owns and keeps alive (and does
// not touch) until its callback has run. The loop allocates nothing per operation: the
// arguments of an operation live in its Completion, queues link completions through their own
// `next` pointer, and the kernel hands the Completion's address back in the CQE's user_data.
//
//   caller ── read(completion, callback, ...) ──> SQ ring ──(io_uring_submit)──> kernel
//                                    │ SQ full                                     │
//                                    └──> overflow queue ──(next tick, in order)───┤
//   caller <── callback(completion) <── completed queue <──(reap CQEs)── CQ ring <──┘
//
// Lifecycle of a completion (Completion::state):
//   idle ──start──> queued (overflow) ──> submitted (SQ or kernel) ──> completed ──> idle
// The state goes back to idle just before the callback runs, so a callback may reuse its own
// completion for the next operation.
//
// Invariants:
// - Callbacks run only from tick(), run_once() or run_for_ns(), never from inside the call that
//   started the operation, so a callback may start new operations freely. Those go out with the
//   same tick's final submit rather than waiting for the next tick.
// - Operations that find the SQ full wait in the overflow queue and reach the SQ in the order
//   they were started; no operation is dropped, none is submitted twice.
// - A completion is in at most one queue (overflow or completed) at a time, and only while it is
//   in flight; starting an operation on a completion that is in flight asserts.
// - Only the thread that called init() uses the loop (asserted on every call).
// - deinit() requires that nothing is in flight: cancel what is pending and run the loop until
//   every callback has run. A ring torn down under in-flight operations would leave the kernel
//   writing into buffers whose owners believe they are free.
//
// Results (Completion::result, set before the callback runs): >= 0 is success (bytes moved, a
// new socket for accept, 0 otherwise); < 0 is a negated errno. Per operation:
// - timeout: 0 when it fired, -ECANCELED when cancelled. A fired timeout's -ETIME becomes 0.
// - read, write, recv, send, send_zero_copy: bytes transferred, possibly fewer than asked
//   (a short transfer; the caller continues with the rest). recv returns 0 at end of stream.
// - fsync: 0. accept: the new socket (SOCK_CLOEXEC). connect, close: 0.
// - cancel: 0 when the target was found and stopped (the target then completes with
//   -ECANCELED), -ENOENT when the target had already finished in the kernel (its callback will
//   report its own result), -EALREADY when the target is running and cannot be interrupted.
// Interrupted operations (-EINTR) other than connect are resubmitted by the loop and never
// reported (an interrupted timeout starts its duration again); close's -EINTR means the
// descriptor is closed, and is reported as 0.
//
// Sockets may be left blocking: io_uring never blocks the thread, it waits for readiness
// inside the kernel. (On a non-blocking socket, recv and send may end with -EAGAIN instead.)
//
// Zero-copy send (IORING_OP_SEND_ZC) produces two CQEs: the send result, then a notification
// (IORING_CQE_F_NOTIF) once the kernel no longer reads the buffer. The callback runs only after
// the notification, and reports the send's result, so a buffer is always free again when its
// callback runs. If the kernel lacks the operation, or a socket refuses it (-EOPNOTSUPP,
// -EINVAL: e.g. a Unix socket), the loop resubmits the same completion as a plain send and
// remembers the socket (by descriptor number, until close() through this loop), so later
// zero-copy sends on it go straight to plain send. The caller never sees the refusal.
#pragma once

#include <liburing.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include <cstddef>
#include <span>

#include "io/time.hpp"
#include "src/base/intrusive_queue.hpp"
#include "tally/types.hpp"

namespace tally::io {

struct Completion;
using Callback = void (*)(Completion* completion);

enum class Operation : u8 {
  none,
  timeout,
  read,
  write,
  fsync,
  accept,
  connect,
  recv,
  send,
  send_zero_copy,
  close,
  cancel,
};

enum class CompletionState : u8 { idle, queued, submitted, completed };

// fdatasync writes the data and only the metadata needed to read it back; fsync also writes
// the rest of the inode (times). Data files want `data`; `full` is for new files and directories.
enum class FsyncKind : u8 { data, full };

struct Completion {
  // Set by the caller and never touched by the loop: leads the callback back to its owner.
  void* context = nullptr;
  // Set by the loop before the callback runs: see "Results" above.
  i32 result = 0;

  // Everything below belongs to the loop while the operation is in flight. Public because the
  // intrusive queues link through `next`; callers only read them in assertions.
  Completion* next = nullptr;
  Callback callback = nullptr;
  Operation operation = Operation::none;
  CompletionState state = CompletionState::idle;
  // Zero-copy send only: which of its two CQEs have arrived.
  bool zero_copy_result_received = false;
  bool zero_copy_notification_received = false;

  union Arguments {
    struct {
      __kernel_timespec duration;
    } timeout;
    // read, write, recv, send, send_zero_copy.
    struct {
      int fd;
      u32 size;
      void* buffer;
      u64 offset;
    } transfer;
    struct {
      int fd;
      FsyncKind kind;
    } fsync;
    // accept, close.
    struct {
      int fd;
    } descriptor;
    struct {
      int fd;
      socklen_t address_size;
      union {
        sockaddr address;
        sockaddr_in address_ipv4;
        sockaddr_in6 address_ipv6;
      };
    } connect;
    struct {
      Completion* target;
    } cancel;
  } arguments = {};
};

// Counters for tests (coverage of the rare paths) and for metrics.
struct LoopStats {
  u64 submitted = 0;              // SQEs handed to the kernel.
  u64 submit_calls = 0;           // io_uring_submit calls that handed over at least one SQE.
  u64 completed = 0;              // Callbacks run.
  u64 overflowed = 0;             // Operations that found the SQ full and waited for room.
  u64 interrupted = 0;            // -EINTR results resubmitted.
  u64 zero_copy_notifications = 0;
  u64 zero_copy_refused = 0;      // Zero-copy sends refused by a socket, resent as plain sends.
};

class Loop {
 public:
  // SQ entries: operations that can go to the kernel in one io_uring_submit. More may be in
  // flight (waiting in the overflow queue, or submitted and pending in the kernel).
  static constexpr u32 entries_default = 256;
  static constexpr u32 entries_max = 4096;
  // Sockets whose refusal of zero-copy send is remembered; descriptors at or above this number
  // try zero-copy on every send (correct, one wasted round trip each).
  static constexpr int zero_copy_refused_fd_count = 4096;

  Loop() = default;
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;
  ~Loop();

  // Sets up the ring; stops with FatalReason::io_uring_unavailable (naming the cause and the
  // fix) if the kernel, a sysctl, seccomp or a memory limit refuses io_uring.
  void init(u32 entries);
  void deinit();

  // Submits queued operations and runs the callbacks of every completion that is ready,
  // without waiting.
  void tick();
  // Like tick(), but when nothing is ready waits up to `wait_ns_max` for a first completion
  // (if any operation is in the kernel to complete).
  void run_once(u64 wait_ns_max);
  // Ticks, waiting in the kernel between completions, until `duration_ns` has passed.
  void run_for_ns(u64 duration_ns);

  // Fires `duration_ns` after submission (relative, CLOCK_MONOTONIC inside the kernel).
  void timeout(Completion* completion, Callback callback, u64 duration_ns);
  void read(Completion* completion, Callback callback, int fd, std::span<std::byte> buffer,
            u64 offset);
  void write(Completion* completion, Callback callback, int fd, std::span<const std::byte> data,
             u64 offset);
  void fsync(Completion* completion, Callback callback, int fd, FsyncKind kind);
  void accept(Completion* completion, Callback callback, int socket);
  void connect(Completion* completion, Callback callback, int socket, const sockaddr* address,
               socklen_t address_size);
  void recv(Completion* completion, Callback callback, int socket, std::span<std::byte> buffer);
  void send(Completion* completion, Callback callback, int socket,
            std::span<const std::byte> data);
  // As send(), but the kernel sends from `data` in place; the callback runs once the kernel has
  // let go of the buffer. See the header comment for the fallback to plain send.
  void send_zero_copy(Completion* completion, Callback callback, int socket,
                      std::span<const std::byte> data);
  void close(Completion* completion, Callback callback, int fd);
  // Asks the kernel to stop `target`, which must be in flight. A target still waiting in the
  // overflow queue never reaches the kernel: both complete at the next tick, the target with
  // -ECANCELED, the cancel with 0.
  void cancel(Completion* completion, Callback callback, Completion* target);

  // Operations started and whose callbacks have not yet run.
  u32 in_flight_count() const { return in_flight_count_; }
  const LoopStats& stats() const { return stats_; }
  Time& time() { return time_; }
  u32 sq_entries() const;
  bool zero_copy_supported() const { return zero_copy_supported_; }
  bool zero_copy_refused(int socket) const;

 private:
  void start(Completion* completion, Callback callback, Operation operation);
  void enqueue(Completion* completion);
  void prepare(Completion* completion, io_uring_sqe* sqe);
  void flush();
  void submit();
  void reap();
  void wait(u64 wait_ns);
  void dispatch();
  void cqe_handle(u64 user_data, i32 result, u32 flags);
  void zero_copy_cqe_handle(Completion* completion, i32 result, u32 flags);
  void finish(Completion* completion, i32 result);
  void zero_copy_refused_set(int socket, bool refused);
  void assert_owner() const;

  io_uring ring_ = {};
  bool initialized_ = false;
  // Guards against a callback calling tick()/run_*() re-entrantly.
  bool running_ = false;
  bool zero_copy_supported_ = false;
  pthread_t owner_ = {};
  u32 in_flight_count_ = 0;
  // In the SQ or the kernel, with at least one CQE still to come.
  u32 submitted_count_ = 0;
  base::IntrusiveQueue<Completion> overflow_;
  base::IntrusiveQueue<Completion> completed_;
  u64 zero_copy_refused_bits_[zero_copy_refused_fd_count / 64] = {};
  LoopStats stats_;
  Time time_;
};

}  // namespace tally::io
