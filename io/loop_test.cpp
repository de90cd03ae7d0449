// Tests of the io_uring loop against the real kernel: real files with O_DIRECT in a directory on
// the project's disk (TestDirectory), real TCP sockets on 127.0.0.1 with ephemeral ports.
//
// Goals: timeouts fire by deadline; O_DIRECT writes and reads of many sectors with many
// operations in flight round-trip, and fsync works; accept/connect/send/recv carry a message;
// a zero-copy send calls back only after its notification and the peer gets the exact bytes;
// a socket that refuses zero-copy falls back to plain send, once; cancel stops a pending recv
// and a pending timeout with -ECANCELED (also while still in the overflow queue); more
// operations than SQ entries all complete, in order, through the overflow queue; a running loop
// allocates nothing; a refused io_uring_setup is a fatal stop that names cause and fix.
#include "io/loop.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <vector>

#include "io/file_storage.hpp"
#include "io/test_directory.hpp"
#include "src/base/allocation_guard.hpp"
#include "src/base/death_test.hpp"
#include "src/base/large_array.hpp"

namespace tally::io {
namespace {

constexpr u64 ms = 1'000'000;

// Page-aligned memory for O_DIRECT buffers, reserved before anything is measured.
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
  std::span<std::byte> span(std::size_t offset, std::size_t size) {
    REQUIRE(offset + size <= size_);
    return {data_ + offset, size};
  }

 private:
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

// The byte expected at `position` of a stream or file written with `seed`: every byte
// differs from its neighbours, so a shifted, torn or stale range shows up.
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

// Runs the loop until `done()` or a 20 s limit (a generous bound for a loaded sanitizer build);
// false on timeout. Allocates nothing, so it is usable while the heap is sealed.
template <typename Done>
bool run_until(Loop& loop, Done done) {
  const u64 deadline_ns = loop.time().monotonic_ns() + 20'000 * ms;
  while (!done()) {
    if (loop.time().monotonic_ns() > deadline_ns) return false;
    loop.run_once(10 * ms);
  }
  return true;
}

// A completion that records its result and the order in which callbacks ran.
struct Recorded {
  Completion completion;
  u32 id = 0;
  bool done = false;
  i32 result = 0;
  u64 done_ns = 0;
  std::vector<u32>* order = nullptr;
  Loop* loop = nullptr;
};

void recorded_callback(Completion* completion) {
  auto* recorded = static_cast<Recorded*>(completion->context);
  recorded->done = true;
  recorded->result = completion->result;
  if (recorded->loop != nullptr) recorded->done_ns = recorded->loop->time().monotonic_ns();
  if (recorded->order != nullptr) recorded->order->push_back(recorded->id);
}

void recorded_init(Recorded* recorded, u32 id) {
  recorded->completion.context = recorded;
  recorded->id = id;
  recorded->done = false;
}

int listener_open(sockaddr_in* address) {
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(listener >= 0);
  *address = {};
  address->sin_family = AF_INET;
  address->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address->sin_port = 0;  // Ephemeral: tests run in parallel.
  REQUIRE(bind(listener, reinterpret_cast<const sockaddr*>(address), sizeof(*address)) == 0);
  REQUIRE(listen(listener, 16) == 0);
  socklen_t address_size = sizeof(*address);
  REQUIRE(getsockname(listener, reinterpret_cast<sockaddr*>(address), &address_size) == 0);
  REQUIRE(address->sin_port != 0);
  return listener;
}

// A TCP connection on 127.0.0.1 set up through the loop's accept and connect.
struct TcpPair {
  int listener = -1;
  int client = -1;
  int server = -1;

  explicit TcpPair(Loop& loop) {
    sockaddr_in address = {};
    listener = listener_open(&address);
    client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(client >= 0);
    Recorded accepted;
    Recorded connected;
    recorded_init(&accepted, 0);
    recorded_init(&connected, 1);
    loop.accept(&accepted.completion, recorded_callback, listener);
    loop.connect(&connected.completion, recorded_callback, client,
                 reinterpret_cast<const sockaddr*>(&address), sizeof(address));
    REQUIRE(run_until(loop, [&] { return accepted.done && connected.done; }));
    REQUIRE(connected.result == 0);
    REQUIRE(accepted.result >= 0);
    server = accepted.result;
    const int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  TcpPair(const TcpPair&) = delete;
  TcpPair& operator=(const TcpPair&) = delete;
  ~TcpPair() {
    for (const int fd : {listener, client, server}) {
      if (fd >= 0) ::close(fd);
    }
  }
};

// Sends `data` to the end through the loop (plain or zero-copy), reusing one completion.
struct Sender {
  Completion completion;
  Loop* loop = nullptr;
  int socket = -1;
  std::span<std::byte> data;
  std::size_t sent_size = 0;
  bool zero_copy = false;
  bool failed = false;
  u32 callbacks = 0;
  // Zero-copy: each callback must come after its notification.
  bool callback_before_notification = false;
  // Overwrites what was sent once the callback says the buffer is free again.
  bool scribble_after_send = false;

  void start() {
    completion.context = this;
    const auto rest = std::span<const std::byte>(data.subspan(sent_size));
    if (zero_copy) {
      loop->send_zero_copy(&completion, callback, socket, rest);
    } else {
      loop->send(&completion, callback, socket, rest);
    }
  }

  static void callback(Completion* completion) {
    auto* sender = static_cast<Sender*>(completion->context);
    sender->callbacks += 1;
    if (sender->zero_copy && sender->loop->zero_copy_supported() &&
        !sender->loop->zero_copy_refused(sender->socket) &&
        sender->loop->stats().zero_copy_notifications < sender->callbacks) {
      sender->callback_before_notification = true;
    }
    if (completion->result <= 0) {
      sender->failed = true;
      return;
    }
    const auto size = static_cast<std::size_t>(completion->result);
    if (sender->scribble_after_send) {
      std::memset(sender->data.data() + sender->sent_size, 0xff, size);
    }
    sender->sent_size += size;
    if (sender->sent_size < sender->data.size()) sender->start();
  }

  bool done() const { return failed || sent_size == data.size(); }
};

struct Receiver {
  Completion completion;
  Loop* loop = nullptr;
  int socket = -1;
  std::span<std::byte> buffer;
  std::size_t received_size = 0;
  bool failed = false;

  void start() {
    completion.context = this;
    loop->recv(&completion, callback, socket, buffer.subspan(received_size));
  }

  static void callback(Completion* completion) {
    auto* receiver = static_cast<Receiver*>(completion->context);
    if (completion->result <= 0) {
      receiver->failed = true;
      return;
    }
    receiver->received_size += static_cast<std::size_t>(completion->result);
    if (receiver->received_size < receiver->buffer.size()) receiver->start();
  }

  bool done() const { return failed || received_size == buffer.size(); }
};

sock_filter bpf_statement(u16 code, u32 value) { return {code, 0, 0, value}; }
sock_filter bpf_jump(u16 code, u32 value, u8 jump_true, u8 jump_false) {
  return {code, jump_true, jump_false, value};
}

// For death tests: from here on, io_uring_setup fails with `error_number`, as it does in a
// container whose seccomp profile blocks io_uring.
void seccomp_refuse_io_uring_setup(int error_number) {
  sock_filter filter[] = {
      bpf_statement(BPF_LD | BPF_W | BPF_ABS, static_cast<u32>(offsetof(seccomp_data, nr))),
      bpf_jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      bpf_statement(BPF_RET | BPF_K,
                    SECCOMP_RET_ERRNO | (static_cast<u32>(error_number) & SECCOMP_RET_DATA)),
      bpf_statement(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program = {static_cast<unsigned short>(std::size(filter)), filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(3);
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) _exit(4);
}

}  // namespace

TEST_SUITE("io_loop") {
  TEST_CASE("io_loop: timeouts fire in the order of their deadlines not of their submission") {
    Loop loop;
    loop.init(Loop::entries_default);
    // Submitted out of order; deadlines 20 ms apart leave room for a loaded machine.
    const u64 durations_ms[] = {100, 20, 80, 0, 60, 40};
    Recorded timeouts[std::size(durations_ms)];
    std::vector<u32> order;
    order.reserve(std::size(durations_ms));
    const u64 start_ns = loop.time().monotonic_ns();
    for (u32 index = 0; index < std::size(durations_ms); index += 1) {
      recorded_init(&timeouts[index], index);
      timeouts[index].order = &order;
      timeouts[index].loop = &loop;
      loop.timeout(&timeouts[index].completion, recorded_callback, durations_ms[index] * ms);
    }
    CHECK(loop.in_flight_count() == std::size(durations_ms));
    REQUIRE(run_until(loop, [&] { return order.size() == std::size(durations_ms); }));
    CHECK(order == std::vector<u32>{3, 1, 5, 4, 2, 0});
    for (u32 index = 0; index < std::size(durations_ms); index += 1) {
      CHECK(timeouts[index].result == 0);
      CHECK(timeouts[index].done_ns - start_ns >= durations_ms[index] * ms);
    }
    CHECK(loop.in_flight_count() == 0);
    // All six went to the kernel in one io_uring_submit.
    CHECK(loop.stats().submitted == std::size(durations_ms));
    CHECK(loop.stats().submit_calls == 1);
  }

  TEST_CASE("io_loop: run_for_ns runs for its whole duration and tick never waits") {
    Loop loop;
    loop.init(8);
    // Nothing in flight: run_for_ns still takes its whole duration; run_once returns at once.
    u64 start_ns = loop.time().monotonic_ns();
    loop.run_for_ns(30 * ms);
    CHECK(loop.time().monotonic_ns() - start_ns >= 30 * ms);
    start_ns = loop.time().monotonic_ns();
    loop.run_once(10'000 * ms);
    CHECK(loop.time().monotonic_ns() - start_ns < 5'000 * ms);

    // A timeout pending in the kernel: run_once waits for it up to its limit, tick does not.
    Recorded pending;
    recorded_init(&pending, 0);
    loop.timeout(&pending.completion, recorded_callback, 60'000 * ms);
    start_ns = loop.time().monotonic_ns();
    loop.run_once(50 * ms);
    CHECK(loop.time().monotonic_ns() - start_ns >= 50 * ms);
    start_ns = loop.time().monotonic_ns();
    loop.tick();
    // Bounds far from each other, so that a loaded machine cannot make the test fail.
    CHECK(loop.time().monotonic_ns() - start_ns < 5'000 * ms);
    CHECK_FALSE(pending.done);
    Recorded cancel;
    recorded_init(&cancel, 1);
    loop.cancel(&cancel.completion, recorded_callback, &pending.completion);
    REQUIRE(run_until(loop, [&] { return pending.done && cancel.done; }));
    CHECK(pending.result == -ECANCELED);
  }

  TEST_CASE("io_loop: a callback may reuse its own completion at once") {
    Loop loop;
    loop.init(8);
    struct Chain {
      Completion completion;
      Loop* loop = nullptr;
      u32 count = 0;
      static void callback(Completion* completion) {
        auto* chain = static_cast<Chain*>(completion->context);
        chain->count += 1;
        if (chain->count < 100) chain->loop->timeout(completion, callback, 0);
      }
    } chain;
    chain.completion.context = &chain;
    chain.loop = &loop;
    loop.timeout(&chain.completion, Chain::callback, 0);
    REQUIRE(run_until(loop, [&] { return chain.count == 100; }));
    CHECK(loop.in_flight_count() == 0);
  }

  TEST_CASE("io_loop: O_DIRECT writes and reads of many sectors in flight round-trip and fsync") {
    TestDirectory directory;
    const std::string path = directory.file("loop_round_trip");
    constexpr u32 operation_count = 64;
    constexpr u32 operation_size = 4 * sector_size;
    constexpr u64 file_size = u64{operation_count} * operation_size;
    REQUIRE(file_create(path.c_str(), file_size).status == CreateStatus::ok);
    const int fd = ::open(path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
    REQUIRE(fd >= 0);

    Loop loop;
    loop.init(Loop::entries_default);
    PageBuffer written(file_size);
    PageBuffer read_back(file_size);
    pattern_fill(written.span(), 0, 7);

    Recorded writes[operation_count];
    for (u32 index = 0; index < operation_count; index += 1) {
      recorded_init(&writes[index], index);
      // Interleaved order, so that the file is not written front to back.
      const u32 slot = (index * 37) % operation_count;
      loop.write(&writes[index].completion, recorded_callback, fd,
                 written.span(u64{slot} * operation_size, operation_size),
                 u64{slot} * operation_size);
    }
    CHECK(loop.in_flight_count() == operation_count);
    REQUIRE(run_until(loop, [&] {
      return std::all_of(std::begin(writes), std::end(writes), [](auto& w) { return w.done; });
    }));
    for (const Recorded& write : writes) CHECK(write.result == static_cast<i32>(operation_size));

    Recorded fsync;
    recorded_init(&fsync, 0);
    loop.fsync(&fsync.completion, recorded_callback, fd, FsyncKind::data);
    REQUIRE(run_until(loop, [&] { return fsync.done; }));
    CHECK(fsync.result == 0);

    Recorded reads[operation_count];
    for (u32 index = 0; index < operation_count; index += 1) {
      recorded_init(&reads[index], index);
      loop.read(&reads[index].completion, recorded_callback, fd,
                read_back.span(u64{index} * operation_size, operation_size),
                u64{index} * operation_size);
    }
    REQUIRE(run_until(loop, [&] {
      return std::all_of(std::begin(reads), std::end(reads), [](auto& r) { return r.done; });
    }));
    for (const Recorded& read : reads) CHECK(read.result == static_cast<i32>(operation_size));
    CHECK(pattern_matches(read_back.span(), 0, 7));
    // Many operations per io_uring_submit: both batches went out in one call each.
    CHECK(loop.stats().submit_calls <= 4);
    ::close(fd);
  }

  TEST_CASE("io_loop: accept connect send and recv carry a message over TCP on 127.0.0.1") {
    Loop loop;
    loop.init(Loop::entries_default);
    TcpPair pair(loop);

    const char message[] = "prepare op=1 view=0: 256-byte header follows";
    std::vector<std::byte> outgoing(sizeof(message));
    std::memcpy(outgoing.data(), message, sizeof(message));
    std::vector<std::byte> incoming(sizeof(message));
    Sender sender;
    sender.loop = &loop;
    sender.socket = pair.client;
    sender.data = outgoing;
    Receiver receiver;
    receiver.loop = &loop;
    receiver.socket = pair.server;
    receiver.buffer = incoming;
    receiver.start();
    sender.start();
    REQUIRE(run_until(loop, [&] { return sender.done() && receiver.done(); }));
    CHECK_FALSE(sender.failed);
    CHECK_FALSE(receiver.failed);
    CHECK(std::memcmp(incoming.data(), message, sizeof(message)) == 0);

    // The peer closing shows as end of stream: recv returns 0.
    Recorded closed;
    recorded_init(&closed, 0);
    loop.close(&closed.completion, recorded_callback, pair.client);
    pair.client = -1;
    Recorded end_of_stream;
    recorded_init(&end_of_stream, 1);
    loop.recv(&end_of_stream.completion, recorded_callback, pair.server, incoming);
    REQUIRE(run_until(loop, [&] { return closed.done && end_of_stream.done; }));
    CHECK(closed.result == 0);
    CHECK(end_of_stream.result == 0);
  }

  TEST_CASE("io_loop: connect to a closed port reports ECONNREFUSED") {
    Loop loop;
    loop.init(8);
    sockaddr_in address = {};
    const int listener = listener_open(&address);
    ::close(listener);  // The port is now closed (and, being ephemeral, not reused at once).
    const int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    Recorded connected;
    recorded_init(&connected, 0);
    loop.connect(&connected.completion, recorded_callback, client,
                 reinterpret_cast<const sockaddr*>(&address), sizeof(address));
    REQUIRE(run_until(loop, [&] { return connected.done; }));
    CHECK(connected.result == -ECONNREFUSED);
    ::close(client);
  }

  TEST_CASE("io_loop: zero-copy send calls back after its notification and delivers exact bytes") {
    Loop loop;
    loop.init(Loop::entries_default);
    REQUIRE(loop.zero_copy_supported());  // Linux 6.0+; this machine runs 6.x.
    TcpPair pair(loop);

    // Larger than the socket buffers, so that the send goes out in several pieces.
    constexpr std::size_t size = 8 << 20;
    PageBuffer outgoing(size);
    PageBuffer incoming(size);
    pattern_fill(outgoing.span(), 0, 11);
    Sender sender;
    sender.loop = &loop;
    sender.socket = pair.client;
    sender.data = outgoing.span();
    sender.zero_copy = true;
    // Once a callback says the buffer is free, the sent part is overwritten: if the kernel still
    // read from it, the peer would receive 0xff bytes.
    sender.scribble_after_send = true;
    Receiver receiver;
    receiver.loop = &loop;
    receiver.socket = pair.server;
    receiver.buffer = incoming.span();
    receiver.start();
    sender.start();
    REQUIRE(run_until(loop, [&] { return sender.done() && receiver.done(); }));
    CHECK_FALSE(sender.failed);
    CHECK_FALSE(receiver.failed);
    CHECK_FALSE(sender.callback_before_notification);
    CHECK(sender.callbacks >= 1);
    CHECK(loop.stats().zero_copy_notifications == sender.callbacks);
    CHECK(loop.stats().zero_copy_refused == 0);
    CHECK(pattern_matches(incoming.span(), 0, 11));
  }

  TEST_CASE("io_loop: zero-copy send on a socket that refuses it falls back to send once") {
    Loop loop;
    loop.init(Loop::entries_default);
    int sockets[2] = {-1, -1};
    // Unix sockets do not do zero-copy: IORING_OP_SEND_ZC answers -EOPNOTSUPP.
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets) == 0);
    std::vector<std::byte> outgoing(1000);
    std::vector<std::byte> incoming(2000);
    pattern_fill(outgoing, 0, 5);

    for (u32 round = 0; round < 2; round += 1) {
      Sender sender;
      sender.loop = &loop;
      sender.socket = sockets[0];
      sender.data = outgoing;
      sender.zero_copy = true;
      sender.start();
      REQUIRE(run_until(loop, [&] { return sender.done(); }));
      CHECK_FALSE(sender.failed);
      CHECK(sender.callbacks == 1);
      // Refused the first time, remembered the second.
      CHECK(loop.stats().zero_copy_refused == 1);
      CHECK(loop.zero_copy_refused(sockets[0]));
    }
    const ssize_t received = ::recv(sockets[1], incoming.data(), incoming.size(), MSG_WAITALL);
    CHECK(received == 2000);
    CHECK(pattern_matches(std::span(incoming).first(1000), 0, 5));
    CHECK(pattern_matches(std::span(incoming).subspan(1000), 0, 5));

    // Closing through the loop forgets the socket: the number may come back as another socket.
    Recorded closed;
    recorded_init(&closed, 0);
    loop.close(&closed.completion, recorded_callback, sockets[0]);
    CHECK_FALSE(loop.zero_copy_refused(sockets[0]));
    REQUIRE(run_until(loop, [&] { return closed.done; }));
    CHECK(closed.result == 0);
    ::close(sockets[1]);
  }

  TEST_CASE("io_loop: cancel of a pending recv and of a pending timeout completes with ECANCELED") {
    Loop loop;
    loop.init(Loop::entries_default);
    TcpPair pair(loop);
    std::byte buffer[64];
    Recorded recv;
    Recorded timeout;
    recorded_init(&recv, 0);
    recorded_init(&timeout, 1);
    loop.recv(&recv.completion, recorded_callback, pair.server, buffer);
    loop.timeout(&timeout.completion, recorded_callback, 60'000 * ms);
    // Both are now pending in the kernel: nothing will ever arrive, and a minute is long.
    loop.run_for_ns(5 * ms);
    REQUIRE_FALSE(recv.done);
    REQUIRE_FALSE(timeout.done);

    Recorded cancel_recv;
    Recorded cancel_timeout;
    recorded_init(&cancel_recv, 2);
    recorded_init(&cancel_timeout, 3);
    loop.cancel(&cancel_recv.completion, recorded_callback, &recv.completion);
    loop.cancel(&cancel_timeout.completion, recorded_callback, &timeout.completion);
    REQUIRE(run_until(loop, [&] {
      return recv.done && timeout.done && cancel_recv.done && cancel_timeout.done;
    }));
    CHECK(recv.result == -ECANCELED);
    CHECK(timeout.result == -ECANCELED);
    CHECK(cancel_recv.result == 0);
    CHECK(cancel_timeout.result == 0);
    CHECK(loop.in_flight_count() == 0);

    // A cancel that races with its target's completion: either it stops the target, or it
    // finds nothing (-ENOENT) and the target reports its own result. Started from the callback
    // of a timeout that fires with the target, so the target is often already completed.
    struct Race {
      Recorded first;
      Recorded target;
      Recorded cancel;
      Loop* loop = nullptr;
    } race;
    race.loop = &loop;
    recorded_init(&race.first, 0);
    recorded_init(&race.target, 1);
    recorded_init(&race.cancel, 2);
    race.first.completion.context = &race;
    loop.timeout(&race.first.completion, [](Completion* completion) {
      auto* state = static_cast<Race*>(completion->context);
      state->first.done = true;
      if (!state->target.done) {
        state->loop->cancel(&state->cancel.completion, recorded_callback,
                            &state->target.completion);
      }
    }, 0);
    loop.timeout(&race.target.completion, recorded_callback, 0);
    REQUIRE(run_until(loop, [&] { return race.first.done && race.target.done; }));
    if (race.cancel.completion.state != CompletionState::idle || race.cancel.done) {
      REQUIRE(run_until(loop, [&] { return race.cancel.done; }));
      if (race.cancel.result == 0) {
        CHECK(race.target.result == -ECANCELED);
      } else {
        CHECK((race.cancel.result == -ENOENT || race.cancel.result == -EALREADY));
        CHECK(race.target.result == 0);
      }
    } else {
      CHECK(race.target.result == 0);
    }
    CHECK(loop.in_flight_count() == 0);
  }

  TEST_CASE("io_loop: cancel of an operation still in the overflow queue completes both at once") {
    Loop loop;
    loop.init(2);
    Recorded timeouts[3];
    std::vector<u32> order;
    order.reserve(8);
    for (u32 index = 0; index < 3; index += 1) {
      recorded_init(&timeouts[index], index);
      timeouts[index].order = &order;
      loop.timeout(&timeouts[index].completion, recorded_callback, 0);
    }
    // Two SQ entries: the third waits in the overflow queue.
    CHECK(timeouts[2].completion.state == CompletionState::queued);
    Recorded cancel;
    recorded_init(&cancel, 3);
    cancel.order = &order;
    loop.cancel(&cancel.completion, recorded_callback, &timeouts[2].completion);
    REQUIRE(run_until(loop, [&] { return order.size() == 4; }));
    CHECK(timeouts[0].result == 0);
    CHECK(timeouts[1].result == 0);
    CHECK(timeouts[2].result == -ECANCELED);
    CHECK(cancel.result == 0);
    // The cancel never went to the kernel: only the two timeouts did.
    CHECK(loop.stats().submitted == 2);
  }

  TEST_CASE("io_loop: more operations than SQ entries wait in the overflow queue then complete") {
    Loop loop;
    loop.init(4);
    CHECK(loop.sq_entries() == 4);
    constexpr u32 count = 100;
    std::vector<u32> order;
    order.reserve(count);
    std::vector<Recorded> fsyncs(count);
    TestDirectory directory;
    const std::string path = directory.file("overflow");
    REQUIRE(file_create(path.c_str(), sector_size).status == CreateStatus::ok);
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    // Each fsync is a separate operation that completes quickly; all are started before the
    // loop runs, so 96 of them find the SQ full.
    for (u32 index = 0; index < count; index += 1) {
      recorded_init(&fsyncs[index], index);
      fsyncs[index].order = &order;
      loop.fsync(&fsyncs[index].completion, recorded_callback, fd, FsyncKind::full);
    }
    CHECK(loop.stats().overflowed == count - 4);
    CHECK(loop.in_flight_count() == count);
    REQUIRE(run_until(loop, [&] { return order.size() == count; }));
    for (const Recorded& fsync : fsyncs) CHECK(fsync.result == 0);
    CHECK(loop.stats().submitted == count);
    // Each operation reached the kernel exactly once, at most 4 (the SQ's size) per submit.
    CHECK(loop.stats().submit_calls >= count / 4);
    ::close(fd);
  }

  TEST_CASE("io_loop: running operations after start-up allocates nothing") {
    namespace guard = base::allocation_guard;
    TestDirectory directory;
    const std::string path = directory.file("allocations");
    REQUIRE(file_create(path.c_str(), 64 * sector_size).status == CreateStatus::ok);
    const int fd = ::open(path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
    REQUIRE(fd >= 0);
    Loop loop;
    loop.init(8);
    TcpPair pair(loop);
    PageBuffer file_buffer(16 * sector_size);
    PageBuffer network_out(256 << 10);
    PageBuffer network_in(256 << 10);
    pattern_fill(network_out.span(), 0, 3);

    // Everything is set up; from here on, only operations on caller-owned completions.
    struct Round {
      Recorded timeout;
      Recorded writes[16];
      Recorded reads[16];
      Recorded fsync;
      Recorded recv;
      Recorded cancel;
      Sender sender;
      Receiver receiver;
    } round;
    const auto run_round = [&](u64 seed) -> bool {
      pattern_fill(file_buffer.span(), 0, seed);
      recorded_init(&round.timeout, 0);
      loop.timeout(&round.timeout.completion, recorded_callback, 1 * ms);
      for (u32 index = 0; index < 16; index += 1) {
        recorded_init(&round.writes[index], index);
        loop.write(&round.writes[index].completion, recorded_callback, fd,
                   file_buffer.span(u64{index} * sector_size, sector_size),
                   u64{index} * sector_size);
      }
      if (!run_until(loop, [&] { return round.writes[15].done && round.timeout.done; })) {
        return false;
      }
      recorded_init(&round.fsync, 0);
      loop.fsync(&round.fsync.completion, recorded_callback, fd, FsyncKind::data);
      for (u32 index = 0; index < 16; index += 1) {
        recorded_init(&round.reads[index], index);
        loop.read(&round.reads[index].completion, recorded_callback, fd,
                  file_buffer.span(u64{index} * sector_size, sector_size),
                  u64{index} * sector_size);
      }
      round.sender = {};
      round.sender.loop = &loop;
      round.sender.socket = pair.client;
      round.sender.data = network_out.span();
      round.sender.zero_copy = (seed % 2) == 0;
      round.receiver = {};
      round.receiver.loop = &loop;
      round.receiver.socket = pair.server;
      round.receiver.buffer = network_in.span();
      round.receiver.start();
      round.sender.start();
      if (!run_until(loop, [&] {
            return round.fsync.done && round.reads[15].done && round.sender.done() &&
                   round.receiver.done();
          })) {
        return false;
      }
      recorded_init(&round.recv, 0);
      recorded_init(&round.cancel, 1);
      loop.recv(&round.recv.completion, recorded_callback, pair.server, network_in.span());
      loop.tick();
      loop.cancel(&round.cancel.completion, recorded_callback, &round.recv.completion);
      return run_until(loop, [&] { return round.recv.done && round.cancel.done; }) &&
             round.recv.result == -ECANCELED && pattern_matches(file_buffer.span(), 0, seed);
    };
    REQUIRE(run_round(1));  // Warm-up: anything lazily allocated (by libc, say) happens here.

    const u64 allocations_before = guard::allocations_total();
    guard::seal(guard::default_mode());
    bool all_rounds_ok = true;
    for (u64 seed = 2; seed < 12; seed += 1) all_rounds_ok = run_round(seed) && all_rounds_ok;
    guard::unseal();
    const u64 allocations_after = guard::allocations_total();
    CHECK(all_rounds_ok);
    CHECK(allocations_after - allocations_before == 0);
    CHECK(guard::allocations_after_seal() == 0);
    ::close(fd);
  }

  TEST_CASE("io_loop: io_uring_setup refused by seccomp stops with the cause and the fix") {
    const auto refused = base::death_test::run_in_child([] {
      seccomp_refuse_io_uring_setup(EPERM);
      Loop loop;
      loop.init(8);
    });
    INFO(refused.stderr_text);
    CHECK(refused.exited);
    CHECK(refused.exit_code == static_cast<int>(base::FatalReason::io_uring_unavailable));
    CHECK(refused.stderr_contains("io_uring unavailable"));
    CHECK(refused.stderr_contains("EPERM"));
    CHECK(refused.stderr_contains("seccomp profile blocks io_uring_setup"));

    const auto missing = base::death_test::run_in_child([] {
      seccomp_refuse_io_uring_setup(ENOSYS);
      Loop loop;
      loop.init(8);
    });
    INFO(missing.stderr_text);
    CHECK(missing.exit_code == static_cast<int>(base::FatalReason::io_uring_unavailable));
    CHECK(missing.stderr_contains("ENOSYS"));
    CHECK(missing.stderr_contains("CONFIG_IO_URING"));

    const auto no_memory = base::death_test::run_in_child([] {
      seccomp_refuse_io_uring_setup(ENOMEM);
      Loop loop;
      loop.init(8);
    });
    INFO(no_memory.stderr_text);
    CHECK(no_memory.exit_code == static_cast<int>(base::FatalReason::io_uring_unavailable));
    CHECK(no_memory.stderr_contains("RLIMIT_MEMLOCK"));
  }

  TEST_CASE("io_loop: misuse asserts") {
    const auto twice = base::death_test::run_in_child([] {
      Loop loop;
      loop.init(8);
      Completion completion;
      loop.timeout(&completion, [](Completion*) {}, 1000 * ms);
      loop.timeout(&completion, [](Completion*) {}, 1000 * ms);
    });
    CHECK(twice.trapped());
    CHECK(twice.stderr_contains("completion is already in flight"));

    const auto reentrant = base::death_test::run_in_child([] {
      static Loop loop;
      loop.init(8);
      Completion completion;
      loop.timeout(&completion, [](Completion*) { loop.tick(); }, 0);
      loop.run_for_ns(100 * ms);
    });
    CHECK(reentrant.trapped());
    CHECK(reentrant.stderr_contains("from inside a callback"));

    const auto in_flight = base::death_test::run_in_child([] {
      Loop loop;
      loop.init(8);
      Completion completion;
      loop.timeout(&completion, [](Completion*) {}, 1000 * ms);
      loop.deinit();
    });
    CHECK(in_flight.trapped());
    CHECK(in_flight.stderr_contains("in flight at deinit"));
  }
}

TEST_SUITE("io_time") {
  TEST_CASE("io_time: the monotonic clock never goes backwards and realtime is the wall clock") {
    Time time;
    u64 previous_ns = time.monotonic_ns();
    for (u32 index = 0; index < 1000; index += 1) {
      const u64 now_ns = time.monotonic_ns();
      CHECK(now_ns >= previous_ns);
      previous_ns = now_ns;
    }
    // 2020-01-01 and 2100-01-01, as nanoseconds since the epoch.
    const i64 realtime_ns = time.realtime_ns();
    CHECK(realtime_ns > i64{1'577'836'800} * 1'000'000'000);
    CHECK(realtime_ns < i64{4'102'444'800} * 1'000'000'000);
    const u64 before_ns = time.monotonic_ns();
    usleep(10'000);
    CHECK(time.monotonic_ns() - before_ns >= 10 * ms);
  }
}

}  // namespace tally::io
