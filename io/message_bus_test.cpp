// Tests of the TCP message bus over real sockets on 127.0.0.1, with several buses in one Loop in
// one thread, driven by running the loop and ticking the buses.
//
// Goals: replicas exchange messages both ways and a client's replies find it by client id (also
// after it moves to a new connection, and not when a replica passes its request on); a 1 MiB
// message goes zero-copy and arrives intact; many messages in one TCP write and one message in
// 1-byte writes are both decoded, and the bus never writes into a message a receiver holds;
// every kind of bad frame closes its connection and is counted while the bus serves others; a
// client's connection that sends a replica command, and a replica's that sends a client bus
// anything but reply, pong_client and eviction, is closed undelivered and counted, while a
// replica's connection delivers every command; a
// replica that is down at start is connected once it comes up, and reconnects back off in
// ticks; connections beyond the bound are refused; a full send queue drops and counts; an
// empty pool pauses receiving until tick(); deinit() finishes even with sends stuck on a peer
// that does not read; traffic allocates nothing; a taken listen address is a fatal stop naming
// it; no message leaks (every pool is full again after deinit()).
#include "io/message_bus.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "src/base/allocation_guard.hpp"
#include "src/base/death_test.hpp"

namespace tally::io {
namespace {

constexpr u64 ms = 1'000'000;
// Each iteration waits at most 1 ms in the kernel, so this bounds a wait at about 20 s: far
// beyond what any step needs, and only reached when a test is about to fail.
constexpr u32 iterations_max = 20'000;
constexpr u32 pool_message_size_small = 64 * 1024;

using Bytes = std::vector<std::byte>;

struct MessageSpec {
  Command command = Command::ping;
  u32 body_size = 0;
  u8 seed = 0;
  u128 cluster = 0;
  u8 replica = 0;
  u128 client = 0;
};

std::byte pattern_byte(u32 index, u8 seed) {
  return static_cast<std::byte>((index * 131 + u32{seed} * 7 + (index >> 8)) & 0xff);
}

// Fills a header (and the body after it) as a sender would, checksums last.
void frame_fill(std::byte* buffer, const MessageSpec& spec) {
  Header header = {};
  header.command = spec.command;
  header.cluster = spec.cluster;
  header.size = header_size + spec.body_size;
  header.release = release_server;
  header.replica = spec.replica;
  if (spec.command == Command::request) header.request.client = spec.client;
  if (spec.command == Command::ping_client) header.ping_client.client = spec.client;
  if (spec.command == Command::reply) header.reply.client = spec.client;
  for (u32 index = 0; index < spec.body_size; index += 1) {
    buffer[header_size + index] = pattern_byte(index, spec.seed);
  }
  set_checksum_body(header, std::span<const std::byte>(buffer + header_size, spec.body_size));
  set_checksum(header);
  std::memcpy(buffer, &header, header_size);
}

Bytes frame_make(const MessageSpec& spec) {
  Bytes bytes(header_size + spec.body_size);
  frame_fill(bytes.data(), spec);
  return bytes;
}

base::Message* message_make(base::MessagePool& pool, const MessageSpec& spec) {
  base::Message* message = pool.get();
  // Not REQUIRE: with successes reported (-s), every assertion allocates its text, and this
  // also runs where the test counts allocations.
  if (message == nullptr) FAIL("the test's pool is empty");
  frame_fill(message->buffer, spec);
  return message;
}

Bytes message_copy(const base::Message* message) {
  const std::span<const std::byte> bytes = message->bytes();
  return Bytes(bytes.begin(), bytes.end());
}

Header header_of(const Bytes& bytes) {
  REQUIRE(bytes.size() >= header_size);
  Header header;
  std::memcpy(&header, bytes.data(), header_size);
  return header;
}

// Ports that were free a moment ago: bound all at once (so they differ), read, released.
std::vector<u16> ports_reserve(u32 count) {
  std::vector<int> sockets;
  std::vector<u16> ports;
  for (u32 index = 0; index < count; index += 1) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    const Address any = address_loopback(0);
    REQUIRE(::bind(fd, any.sockaddr_pointer(), any.size) == 0);
    ports.push_back(address_of_socket(fd).port());
    sockets.push_back(fd);
  }
  for (const int fd : sockets) ::close(fd);
  return ports;
}

// A socket listening on a free loopback port, standing for another process on that port.
struct PortHolder {
  int fd;
  u16 port;
};

PortHolder port_hold() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  const Address any = address_loopback(0);
  REQUIRE(::bind(fd, any.sockaddr_pointer(), any.size) == 0);
  REQUIRE(::listen(fd, 1) == 0);
  return {.fd = fd, .port = address_of_socket(fd).port()};
}

// A bus with its own pool and a receiver that records (and may hold or answer) what it gets.
struct Node {
  base::MessagePool pool;
  MessageBus bus;
  std::vector<Bytes> received;
  std::vector<base::Message*> held;  // References kept while `hold` is set.
  u64 delivered = 0;
  bool record = true;  // Off: only count, so that receiving allocates nothing.
  bool hold = false;
  // Replica: answers a request with a reply and a ping_client with a pong_client, through
  // send_to_client(), so that the answer goes wherever the bus routes that client.
  bool respond = false;
  u8 replica = 0;

  static void on_message(void* context, base::Message* message) {
    auto* node = static_cast<Node*>(context);
    node->delivered += 1;
    if (node->record) {
      REQUIRE(message->references >= 1);
      node->received.push_back(message_copy(message));
    }
    if (node->hold) node->held.push_back(node->pool.ref(message));
    if (!node->respond) return;
    const Header& header = message->header();
    if (header.command == Command::request) {
      base::Message* reply = message_make(
          node->pool, {.command = Command::reply, .body_size = 32, .seed = 9,
                       .replica = node->replica, .client = header.request.client});
      node->bus.send_to_client(header.request.client, reply);
      node->pool.unref(reply);
    } else if (header.command == Command::ping_client) {
      base::Message* pong = message_make(
          node->pool, {.command = Command::pong_client, .replica = node->replica});
      node->bus.send_to_client(header.ping_client.client, pong);
      node->pool.unref(pong);
    }
  }

  void release_held() {
    for (base::Message* message : held) pool.unref(message);
    held.clear();
  }

  u32 count_received(Command command) const {
    u32 count = 0;
    for (const Bytes& bytes : received) count += header_of(bytes).command == command ? 1u : 0u;
    return count;
  }
};

struct NodeOptions {
  BusKind kind = BusKind::replica;
  u8 replica = 0;
  u128 cluster = 0;
  u32 pool_capacity = 32;
  u32 pool_message_size = pool_message_size_small;
  u32 connections_max = 128;
  u32 send_queue_max = 16;
};

std::unique_ptr<Node> node_start(Loop& loop, const std::vector<Address>& addresses,
                                 const NodeOptions& options) {
  auto node = std::make_unique<Node>();
  node->replica = options.replica;
  node->pool.init(options.pool_capacity, options.pool_message_size);
  node->bus.init(&loop, &node->pool,
                 {.kind = options.kind,
                  .cluster = options.cluster,
                  .replica = options.replica,
                  .addresses = std::span<const Address>(addresses),
                  .connections_max = options.connections_max,
                  .send_queue_max = options.send_queue_max},
                 Node::on_message, node.get());
  return node;
}

// Stops the bus and checks that every message of its pool came back.
void node_stop(Node& node) {
  node.release_held();
  node.bus.deinit();
  CHECK(node.pool.free_count() == node.pool.capacity());
}

std::vector<Address> loopback_addresses(const std::vector<u16>& ports) {
  std::vector<Address> addresses;
  for (const u16 port : ports) addresses.push_back(address_loopback(port));
  return addresses;
}

// Runs the loop and ticks every bus until `done` holds; false if it never does.
template <typename Done>
bool run_until(Loop& loop, const std::vector<Node*>& nodes, const Done& done) {
  for (u32 iteration = 0; iteration < iterations_max; iteration += 1) {
    if (done()) return true;
    loop.run_once(1 * ms);
    for (Node* node : nodes) node->bus.tick();
  }
  return done();
}

void run_iterations(Loop& loop, const std::vector<Node*>& nodes, u32 count) {
  for (u32 iteration = 0; iteration < count; iteration += 1) {
    loop.run_once(1 * ms);
    for (Node* node : nodes) node->bus.tick();
  }
}

// A plain blocking TCP client, to write exact bytes.
int raw_connect(u16 port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  const Address address = address_loopback(port);
  REQUIRE(::connect(fd, address.sockaddr_pointer(), address.size) == 0);
  return fd;
}

void raw_write(int fd, std::span<const std::byte> bytes) {
  std::size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t result = ::send(fd, bytes.data() + written, bytes.size() - written,
                                  MSG_NOSIGNAL);
    REQUIRE(result > 0);
    written += static_cast<std::size_t>(result);
  }
}

// The other end closed (EOF or reset), seen without blocking.
bool raw_closed(int fd) {
  char byte = 0;
  const ssize_t result = ::recv(fd, &byte, 1, MSG_DONTWAIT | MSG_PEEK);
  if (result == 0) return true;
  return result < 0 && (errno == ECONNRESET || errno == EPIPE);
}

u32 raw_available(int fd) {
  int available = 0;
  REQUIRE(::ioctl(fd, FIONREAD, &available) == 0);
  return static_cast<u32>(available);
}

// Reads one whole message that is already waiting on the socket.
Bytes raw_read_message(int fd) {
  Bytes header_bytes(header_size);
  REQUIRE(::recv(fd, header_bytes.data(), header_size, MSG_WAITALL) == header_size);
  const Header header = header_of(header_bytes);
  REQUIRE(checksum_valid(header));
  Bytes bytes(header.size);
  std::memcpy(bytes.data(), header_bytes.data(), header_size);
  const std::size_t body_size = header.size - header_size;
  if (body_size > 0) {
    REQUIRE(::recv(fd, bytes.data() + header_size, body_size, MSG_WAITALL) ==
            static_cast<ssize_t>(body_size));
  }
  return bytes;
}

// The test's loop. A test that fails midway leaves operations in flight, and tearing the ring
// down then would assert and end the whole run: such a loop is reported and left alone.
struct LoopScope {
  Loop& loop = *new Loop();
  LoopScope() { loop.init(256); }
  LoopScope(const LoopScope&) = delete;
  LoopScope& operator=(const LoopScope&) = delete;
  ~LoopScope() {
    CHECK(loop.in_flight_count() == 0);
    if (loop.in_flight_count() > 0) return;
    loop.deinit();
    delete &loop;
  }
};

}  // namespace

TEST_SUITE("io_message_bus") {
  TEST_CASE("io_message_bus: replicas exchange messages both ways and replies find their client") {
    LoopScope scope;
    Loop& loop = scope.loop;
    const std::vector<Address> addresses = loopback_addresses(ports_reserve(3));
    std::vector<std::unique_ptr<Node>> replicas;
    for (u8 replica = 0; replica < 3; replica += 1) {
      replicas.push_back(node_start(loop, addresses, {.replica = replica}));
      replicas.back()->respond = true;
    }
    auto client_a = node_start(loop, addresses, {.kind = BusKind::client});
    auto client_b = node_start(loop, addresses, {.kind = BusKind::client});
    std::vector<Node*> nodes = {replicas[0].get(), replicas[1].get(), replicas[2].get(),
                                client_a.get(), client_b.get()};
    REQUIRE(run_until(loop, nodes, [&] {
      for (u32 index = 0; index < 3; index += 1) {
        // Two outgoing connections each, and four accepted: two replicas, two clients.
        if (replicas[index]->bus.stats().connects_succeeded < 2) return false;
        if (replicas[index]->bus.stats().connections_accepted < 4) return false;
      }
      return client_a->bus.stats().connects_succeeded == 3 &&
             client_b->bus.stats().connects_succeeded == 3;
    }));
    for (u32 index = 0; index < 3; index += 1) {
      CHECK(replicas[index]->bus.stats().connections_accepted == 4);
      CHECK(replicas[index]->bus.stats().connects_failed == 0);
    }

    // Replica to replica, both ways.
    base::Message* prepare = message_make(
        replicas[0]->pool, {.command = Command::prepare, .body_size = 1000, .seed = 1});
    const Bytes prepare_bytes = message_copy(prepare);
    replicas[0]->bus.send_to_replica(1, prepare);
    replicas[0]->bus.send_to_replica(2, prepare);
    replicas[0]->pool.unref(prepare);
    base::Message* commit = message_make(replicas[2]->pool,
                                         {.command = Command::commit, .seed = 2, .replica = 2});
    const Bytes commit_bytes = message_copy(commit);
    replicas[2]->bus.send_to_replica(0, commit);
    replicas[2]->pool.unref(commit);
    REQUIRE(run_until(loop, nodes, [&] {
      return replicas[1]->received.size() == 1 && replicas[2]->received.size() == 1 &&
             replicas[0]->received.size() == 1;
    }));
    CHECK(replicas[1]->received[0] == prepare_bytes);
    CHECK(replicas[2]->received[0] == prepare_bytes);
    CHECK(replicas[0]->received[0] == commit_bytes);

    // Client A asks replica 1; client B pings replica 1 and asks replica 2. Each answer goes
    // back to the client that asked, through send_to_client().
    constexpr u128 client_a_id = 0xA;
    constexpr u128 client_b_id = make_u128(0xB, 0xB);
    base::Message* request_a = message_make(
        client_a->pool, {.command = Command::request, .body_size = 64, .client = client_a_id});
    client_a->bus.send_to_replica(1, request_a);
    client_a->pool.unref(request_a);
    base::Message* ping_b =
        message_make(client_b->pool, {.command = Command::ping_client, .client = client_b_id});
    client_b->bus.send_to_replica(1, ping_b);
    client_b->pool.unref(ping_b);
    base::Message* request_b = message_make(
        client_b->pool, {.command = Command::request, .body_size = 8, .client = client_b_id});
    client_b->bus.send_to_replica(2, request_b);
    client_b->pool.unref(request_b);
    REQUIRE(run_until(loop, nodes, [&] {
      return client_a->received.size() == 1 && client_b->received.size() == 2;
    }));
    const Header reply_a = header_of(client_a->received[0]);
    CHECK(reply_a.command == Command::reply);
    CHECK(reply_a.reply.client == client_a_id);
    CHECK(reply_a.replica == 1);
    CHECK(client_b->count_received(Command::pong_client) == 1);
    CHECK(client_b->count_received(Command::reply) == 1);

    // A request that replica 0 passes on to replica 1 arrives on a connection that already
    // carried a replica command (the prepare), so it must not take client A's route: the
    // answer still reaches client A, not replica 0.
    base::Message* passed_on = message_make(
        replicas[0]->pool, {.command = Command::request, .body_size = 16, .client = client_a_id});
    replicas[0]->bus.send_to_replica(1, passed_on);
    replicas[0]->pool.unref(passed_on);
    REQUIRE(run_until(loop, nodes, [&] { return client_a->received.size() == 2; }));
    CHECK(header_of(client_a->received[1]).reply.client == client_a_id);
    run_iterations(loop, nodes, 20);
    CHECK(replicas[0]->count_received(Command::reply) == 0);

    // A client nobody has heard from: dropped and counted.
    const u64 dropped = replicas[1]->bus.stats().sends_dropped;
    base::Message* stray = message_make(replicas[1]->pool,
                                        {.command = Command::reply, .replica = 1, .client = 77});
    replicas[1]->bus.send_to_client(77, stray);
    replicas[1]->pool.unref(stray);
    CHECK(replicas[1]->bus.stats().sends_dropped == dropped + 1);

    for (u32 index = 0; index < 3; index += 1) {
      CHECK(replicas[index]->bus.stats().frames_rejected == 0);
    }
    node_stop(*client_a);
    node_stop(*client_b);
    for (auto& replica : replicas) node_stop(*replica);
  }

  TEST_CASE("io_message_bus: a 1 MiB message goes zero-copy and arrives intact") {
    LoopScope scope;
    Loop& loop = scope.loop;
    REQUIRE(loop.zero_copy_supported());  // Linux 6.0+.
    const std::vector<Address> addresses = loopback_addresses(ports_reserve(2));
    const NodeOptions big = {.pool_capacity = 8, .pool_message_size = message_size_max};
    auto replica_0 = node_start(loop, addresses, big);
    NodeOptions big_1 = big;
    big_1.replica = 1;
    auto replica_1 = node_start(loop, addresses, big_1);
    std::vector<Node*> nodes = {replica_0.get(), replica_1.get()};
    REQUIRE(run_until(loop, nodes, [&] {
      return replica_0->bus.stats().connects_succeeded == 1 &&
             replica_1->bus.stats().connects_succeeded == 1;
    }));

    // Below the threshold: a plain send, no notification.
    const u64 notifications_before = loop.stats().zero_copy_notifications;
    base::Message* small =
        message_make(replica_0->pool, {.command = Command::prepare, .body_size = 4096});
    replica_0->bus.send_to_replica(1, small);
    replica_0->pool.unref(small);
    REQUIRE(run_until(loop, nodes, [&] { return replica_1->received.size() == 1; }));
    CHECK(loop.stats().zero_copy_notifications == notifications_before);

    base::Message* large = message_make(
        replica_0->pool,
        {.command = Command::prepare, .body_size = message_body_size_max, .seed = 5});
    const Bytes large_bytes = message_copy(large);
    REQUIRE(large_bytes.size() == message_size_max);
    replica_0->bus.send_to_replica(1, large);
    replica_0->pool.unref(large);
    REQUIRE(run_until(loop, nodes, [&] { return replica_1->received.size() == 2; }));
    CHECK(replica_1->received[1] == large_bytes);
    CHECK(loop.stats().zero_copy_notifications > notifications_before);
    CHECK(replica_0->bus.stats().messages_sent == 2);
    CHECK(replica_1->bus.stats().bytes_received == 256 + 4096 + message_size_max);

    node_stop(*replica_0);
    node_stop(*replica_1);
  }

  TEST_CASE("io_message_bus: packed messages and a message in 1-byte writes are decoded") {
    LoopScope scope;
    Loop& loop = scope.loop;
    const std::vector<Address> addresses = loopback_addresses(ports_reserve(1));
    auto replica = node_start(loop, addresses, {.pool_capacity = 64});
    std::vector<Node*> nodes = {replica.get()};
    const int client = raw_connect(replica->bus.listen_port());

    // Twenty messages of assorted sizes in one write, twice: first with a receiver that keeps
    // nothing, then with one that holds every message, so that the bus must copy the rest of a
    // buffer it delivered in place instead of writing over it.
    const u32 body_sizes[] = {0, 1, 17, 300, 0, 4000, 31, 32, 33, 255,
                              256, 257, 1, 0, 999, 2, 3, 4096, 5, 6};
    std::vector<Bytes> expected;
    for (const bool hold : {false, true}) {
      replica->hold = hold;
      Bytes packed;
      std::vector<Bytes> round;
      for (u32 index = 0; index < 20; index += 1) {
        round.push_back(frame_make({.command = Command::request,
                                    .body_size = body_sizes[index],
                                    .seed = static_cast<u8>(index + (hold ? 100 : 0)),
                                    .client = 5}));
        packed.insert(packed.end(), round.back().begin(), round.back().end());
      }
      raw_write(client, packed);
      expected.insert(expected.end(), round.begin(), round.end());
      REQUIRE(run_until(loop, nodes, [&] { return replica->received.size() == expected.size(); }));
    }
    CHECK(replica->received == expected);
    // Coverage: later messages of one recv went into messages of their own.
    CHECK(replica->bus.stats().messages_copied > 0);
    // What the receiver held was never overwritten by later receives.
    REQUIRE(replica->held.size() == 20);
    for (u32 index = 0; index < 20; index += 1) {
      CHECK(message_copy(replica->held[index]) == expected[20 + index]);
    }
    replica->release_held();
    replica->hold = false;

    // One message, one byte per recv: each byte is written only after the bus took the last.
    const Bytes split = frame_make({.command = Command::request, .body_size = 700, .seed = 77});
    const u64 bytes_before = replica->bus.stats().bytes_received;
    for (u32 index = 0; index < split.size(); index += 1) {
      raw_write(client, std::span<const std::byte>(&split[index], 1));
      REQUIRE(run_until(loop, nodes, [&] {
        return replica->bus.stats().bytes_received == bytes_before + index + 1;
      }));
      if (index + 1 < split.size()) REQUIRE(replica->received.size() == 40);
    }
    REQUIRE(run_until(loop, nodes, [&] { return replica->received.size() == 41; }));
    CHECK(replica->received[40] == split);
    CHECK(replica->bus.stats().frames_rejected == 0);
    CHECK_FALSE(raw_closed(client));

    ::close(client);
    node_stop(*replica);
  }

  TEST_CASE("io_message_bus: every kind of bad frame closes its connection and is counted") {
    LoopScope scope;
    Loop& loop = scope.loop;
    constexpr u128 cluster = 7;
    const std::vector<Address> addresses = loopback_addresses(ports_reserve(1));
    auto replica = node_start(loop, addresses, {.cluster = cluster});
    std::vector<Node*> nodes = {replica.get()};
    const u16 port = replica->bus.listen_port();
    // A well-behaved client that stays connected throughout.
    const int good = raw_connect(port);

    struct BadFrame {
      const char* name;
      Bytes bytes;
      FrameError error;
      HeaderError header_error;
    };
    const MessageSpec valid = {.command = Command::ping, .body_size = 100, .cluster = cluster};
    auto resealed = [](Bytes bytes, const std::function<void(Header&)>& change) {
      Header header = header_of(bytes);
      change(header);
      set_checksum(header);
      std::memcpy(bytes.data(), &header, header_size);
      return bytes;
    };
    std::vector<BadFrame> bad_frames;
    {
      Bytes bytes = frame_make(valid);
      bytes[200] ^= std::byte{1};
      bad_frames.push_back({"header checksum", bytes, FrameError::header_checksum, {}});
    }
    {
      Bytes bytes = frame_make(valid);
      bytes[header_size + 50] ^= std::byte{0x80};
      bad_frames.push_back({"body checksum", bytes, FrameError::body_checksum, {}});
    }
    bad_frames.push_back(
        {"size below the header",
         resealed(frame_make(valid), [](Header& header) { header.size = header_size - 1; }),
         FrameError::header_invalid, HeaderError::size_below_header});
    {
      // Only the header is sent: the bus must decide before the body.
      Bytes bytes = resealed(frame_make({.cluster = cluster}),
                             [](Header& header) { header.size = message_size_max + 1; });
      bad_frames.push_back({"size above the maximum", bytes, FrameError::header_invalid,
                            HeaderError::size_above_message_max});
    }
    bad_frames.push_back(
        {"size above the pool's buffers",
         resealed(frame_make({.cluster = cluster}),
                  [](Header& header) { header.size = pool_message_size_small + 1; }),
         FrameError::size_above_buffer, {}});
    bad_frames.push_back({"wrong cluster", frame_make({.command = Command::ping, .cluster = 8}),
                          FrameError::cluster, {}});
    bad_frames.push_back(
        {"unknown command",
         resealed(frame_make(valid),
                  [](Header& header) { header.command = static_cast<Command>(99); }),
         FrameError::header_invalid, HeaderError::command_unknown});
    bad_frames.push_back(
        {"reserved command",
         resealed(frame_make(valid), [](Header& header) { header.command = Command::reserved; }),
         FrameError::header_invalid, HeaderError::command_reserved});
    bad_frames.push_back(
        {"nonzero protocol",
         resealed(frame_make(valid), [](Header& header) { header.protocol = 1; }),
         FrameError::header_invalid, HeaderError::protocol_invalid});

    u64 rejected = 0;
    for (const BadFrame& bad : bad_frames) {
      INFO("bad frame: ", bad.name);
      const int fd = raw_connect(port);
      raw_write(fd, bad.bytes);
      rejected += 1;
      REQUIRE(run_until(loop, nodes, [&] {
        return replica->bus.stats().frames_rejected == rejected && raw_closed(fd);
      }));
      CHECK(replica->bus.stats().frame_error_last == bad.error);
      if (bad.error == FrameError::header_invalid) {
        CHECK(replica->bus.stats().header_error_last == bad.header_error);
      }
      ::close(fd);
    }
    CHECK(replica->received.empty());
    REQUIRE(run_until(loop, nodes, [&] {
      return replica->bus.stats().connections_closed == bad_frames.size();
    }));

    // The bus kept serving the good client.
    const Bytes fine = frame_make(valid);
    raw_write(good, fine);
    REQUIRE(run_until(loop, nodes, [&] { return replica->received.size() == 1; }));
    CHECK(replica->received[0] == fine);
    CHECK_FALSE(raw_closed(good));
    ::close(good);
    node_stop(*replica);
  }

  TEST_CASE("io_message_bus: a client's connection that sends a replica command is closed") {
    LoopScope scope;
    Loop& loop = scope.loop;
    const std::vector<Address> addresses = loopback_addresses(ports_reserve(1));
    auto replica = node_start(loop, addresses, {});
    std::vector<Node*> nodes = {replica.get()};
    const u16 port = replica->bus.listen_port();
    constexpr u128 client = 0xC1;

    // A request makes the connection a client's; the commit after it (a view far ahead, as a
    // forger would claim) is not delivered, and the connection closes.
    const int forger = raw_connect(port);
    const Bytes request = frame_make({.command = Command::request, .body_size = 40,
                                      .client = client});
    raw_write(forger, request);
    REQUIRE(run_until(loop, nodes, [&] { return replica->received.size() == 1; }));
    Bytes commit = frame_make({.command = Command::commit, .replica = 1});
    {
      Header header = header_of(commit);
      header.view = 1'000'000;
      set_checksum(header);
      std::memcpy(commit.data(), &header, header_size);
    }
    raw_write(forger, commit);
    REQUIRE(run_until(loop, nodes, [&] {
      return replica->bus.stats().commands_rejected == 1 && raw_closed(forger);
    }));
    CHECK(replica->bus.stats().command_rejected_last == Command::commit);
    CHECK(replica->received.size() == 1);
    CHECK(replica->received[0] == request);
    CHECK(replica->count_received(Command::commit) == 0);
    CHECK(replica->bus.stats().frames_rejected == 0);
    REQUIRE(run_until(loop, nodes, [&] {
      return replica->bus.stats().connections_closed == 1;
    }));
    // The closed connection took the client's route with it.
    const u64 dropped = replica->bus.stats().sends_dropped;
    base::Message* reply = message_make(replica->pool, {.command = Command::reply,
                                                        .client = client});
    replica->bus.send_to_client(client, reply);
    replica->pool.unref(reply);
    CHECK(replica->bus.stats().sends_dropped == dropped + 1);
    ::close(forger);

    // A ping_client makes a client too. The prepare is packed in the same write between two
    // client messages, and only its header is sent: the bus decides on the header, and nothing
    // after the prepare is delivered.
    const int packer = raw_connect(port);
    const Bytes ping = frame_make({.command = Command::ping_client, .client = client});
    const Bytes prepare = frame_make({.command = Command::prepare, .body_size = 1000});
    Bytes packed = ping;
    packed.insert(packed.end(), prepare.begin(), prepare.begin() + header_size);
    raw_write(packer, packed);
    REQUIRE(run_until(loop, nodes, [&] {
      return replica->bus.stats().commands_rejected == 2 && raw_closed(packer);
    }));
    CHECK(replica->bus.stats().command_rejected_last == Command::prepare);
    CHECK(replica->received.size() == 2);
    CHECK(replica->received[1] == ping);
    CHECK(replica->count_received(Command::prepare) == 0);
    ::close(packer);

    // A connection whose first message is a replica command is a replica's: it delivers a
    // commit, a request passed on, and a commit again, and stays open.
    const int peer = raw_connect(port);
    const Bytes peer_commit = frame_make({.command = Command::commit, .seed = 1, .replica = 1});
    const Bytes passed_on = frame_make({.command = Command::request, .body_size = 8,
                                        .client = client});
    const Bytes peer_commit_again =
        frame_make({.command = Command::commit, .seed = 2, .replica = 1});
    for (const Bytes* bytes : {&peer_commit, &passed_on, &peer_commit_again}) {
      raw_write(peer, *bytes);
    }
    REQUIRE(run_until(loop, nodes, [&] { return replica->received.size() == 5; }));
    CHECK(replica->received[2] == peer_commit);
    CHECK(replica->received[3] == passed_on);
    CHECK(replica->received[4] == peer_commit_again);
    run_iterations(loop, nodes, 20);
    CHECK_FALSE(raw_closed(peer));
    CHECK(replica->bus.stats().commands_rejected == 2);
    CHECK(replica->bus.stats().frames_rejected == 0);
    ::close(peer);
    node_stop(*replica);
  }

  TEST_CASE("io_message_bus: a client bus delivers only reply, pong_client and eviction") {
    LoopScope scope;
    Loop& loop = scope.loop;
    // The replica is a plain listening socket, so that the test writes what it sends.
    const auto [listener, port] = port_hold();
    const std::vector<Address> addresses = {address_loopback(port)};
    auto client = node_start(loop, addresses, {.kind = BusKind::client});
    std::vector<Node*> nodes = {client.get()};

    const Command forbidden[] = {Command::commit, Command::request, Command::ping};
    u64 rejected = 0;
    for (const Command command : forbidden) {
      INFO("forbidden command: ", static_cast<u32>(command));
      REQUIRE(run_until(loop, nodes, [&] {
        return client->bus.stats().connects_succeeded == rejected + 1;
      }));
      const int replica = ::accept(listener, nullptr, nullptr);
      REQUIRE(replica >= 0);
      const Bytes reply = frame_make({.command = Command::reply, .body_size = 16, .client = 1});
      const Bytes pong = frame_make({.command = Command::pong_client});
      const Bytes eviction = frame_make({.command = Command::eviction});
      for (const Bytes* bytes : {&reply, &pong, &eviction}) raw_write(replica, *bytes);
      const std::size_t received = client->received.size();
      REQUIRE(run_until(loop, nodes, [&] { return client->received.size() == received + 3; }));
      CHECK(client->received[received] == reply);
      CHECK(client->received[received + 1] == pong);
      CHECK(client->received[received + 2] == eviction);

      raw_write(replica, frame_make({.command = command, .client = 1}));
      rejected += 1;
      REQUIRE(run_until(loop, nodes, [&] {
        return client->bus.stats().commands_rejected == rejected && raw_closed(replica);
      }));
      CHECK(client->bus.stats().command_rejected_last == command);
      CHECK(client->received.size() == received + 3);
      CHECK(client->bus.stats().frames_rejected == 0);
      ::close(replica);
    }
    // The client reconnects after each rejection, as after any close.
    REQUIRE(run_until(loop, nodes, [&] {
      return client->bus.stats().connects_succeeded == rejected + 1;
    }));
    node_stop(*client);
    ::close(listener);
  }

  TEST_CASE("io_message_bus: a replica that is down at start is connected once it comes up") {
    LoopScope scope;
    Loop& loop = scope.loop;
    const std::vector<Address> addresses = loopback_addresses(ports_reserve(2));
    auto replica_0 = node_start(loop, addresses, {.replica = 0});
    std::vector<Node*> nodes = {replica_0.get()};
    REQUIRE(run_until(loop, nodes, [&] { return replica_0->bus.stats().connects_failed >= 3; }));
    CHECK(replica_0->bus.stats().connects_succeeded == 0);

    // While replica 1 is down, a message for it is dropped (at once, or when the attempt that
    // queued it fails).
    base::Message* lost = message_make(replica_0->pool, {.command = Command::ping});
    replica_0->bus.send_to_replica(1, lost);
    replica_0->pool.unref(lost);
    REQUIRE(run_until(loop, nodes, [&] { return replica_0->bus.stats().sends_dropped == 1; }));

    auto replica_1 = node_start(loop, addresses, {.replica = 1});
    nodes.push_back(replica_1.get());
    REQUIRE(run_until(loop, nodes, [&] {
      return replica_0->bus.stats().connects_succeeded == 1 &&
             replica_1->bus.stats().connects_succeeded == 1;
    }));
    base::Message* ping = message_make(replica_0->pool, {.command = Command::ping, .seed = 3});
    const Bytes ping_bytes = message_copy(ping);
    replica_0->bus.send_to_replica(1, ping);
    replica_0->pool.unref(ping);
    base::Message* pong = message_make(replica_1->pool, {.command = Command::pong, .replica = 1});
    replica_1->bus.send_to_replica(0, pong);
    replica_1->pool.unref(pong);
    REQUIRE(run_until(loop, nodes, [&] {
      return replica_1->received.size() == 1 && replica_0->received.size() == 1;
    }));
    CHECK(replica_1->received[0] == ping_bytes);
    CHECK(header_of(replica_0->received[0]).command == Command::pong);

    // Replica 1 goes away and comes back: replica 0 reconnects.
    node_stop(*replica_1);
    REQUIRE(run_until(loop, nodes, [&] {
      return replica_0->bus.stats().connections_closed >= 1;
    }));
    replica_1 = node_start(loop, addresses, {.replica = 1});
    nodes[1] = replica_1.get();
    REQUIRE(run_until(loop, nodes, [&] {
      return replica_0->bus.stats().connects_succeeded == 2;
    }));
    base::Message* again = message_make(replica_0->pool, {.command = Command::ping, .seed = 4});
    replica_0->bus.send_to_replica(1, again);
    replica_0->pool.unref(again);
    REQUIRE(run_until(loop, nodes, [&] { return replica_1->received.size() == 1; }));

    node_stop(*replica_0);
    node_stop(*replica_1);
  }

  TEST_CASE("io_message_bus: reconnects back off from 50 ms doubling to 1 s counted in ticks") {
    LoopScope scope;
    Loop& loop = scope.loop;
    // A client bus has nothing in flight between attempts, so each iteration below either
    // finishes a step of an attempt (connect refused, then close) or is one idle tick: the
    // count depends on ticks, not on how fast the machine is.
    const std::vector<Address> addresses = loopback_addresses(ports_reserve(1));
    auto client = node_start(loop, addresses, {.kind = BusKind::client});
    auto run_ticks = [&](u32 ticks) {
      for (u32 tick = 0; tick < ticks; tick += 1) {
        loop.run_once(1000 * ms);
        client->bus.tick();
      }
    };
    // Attempts start at tick 0 and then about 5, 15, 35, 75 and 155 ticks later.
    run_ticks(200);
    const u64 early = client->bus.stats().connects_failed;
    CHECK(early >= 5);
    CHECK(early <= 7);
    // From then on one attempt per 100 ticks (1 s).
    run_ticks(1000);
    const u64 late = client->bus.stats().connects_failed - early;
    CHECK(late >= 9);
    CHECK(late <= 11);
    CHECK(client->bus.stats().connects_succeeded == 0);
    node_stop(*client);
  }

  TEST_CASE("io_message_bus: accepted connections beyond connections_max are closed at once") {
    LoopScope scope;
    Loop& loop = scope.loop;
    const std::vector<Address> addresses = loopback_addresses(ports_reserve(1));
    auto replica = node_start(loop, addresses, {.connections_max = 2});
    std::vector<Node*> nodes = {replica.get()};
    const u16 port = replica->bus.listen_port();
    const int first = raw_connect(port);
    const int second = raw_connect(port);
    const int third = raw_connect(port);
    REQUIRE(run_until(loop, nodes, [&] {
      return replica->bus.stats().connections_accepted == 2 &&
             replica->bus.stats().connections_refused == 1 && raw_closed(third);
    }));
    CHECK_FALSE(raw_closed(first));
    CHECK_FALSE(raw_closed(second));
    for (const int fd : {first, second}) {
      raw_write(fd, frame_make({.command = Command::ping, .body_size = 10}));
    }
    REQUIRE(run_until(loop, nodes, [&] { return replica->received.size() == 2; }));

    // A closed connection frees its slot for the next one.
    ::close(first);
    REQUIRE(run_until(loop, nodes, [&] {
      return replica->bus.stats().connections_closed == 1;
    }));
    const int fourth = raw_connect(port);
    REQUIRE(run_until(loop, nodes, [&] {
      return replica->bus.stats().connections_accepted == 3;
    }));
    CHECK(replica->bus.stats().connections_refused == 1);
    CHECK_FALSE(raw_closed(fourth));

    for (const int fd : {second, third, fourth}) ::close(fd);
    node_stop(*replica);
  }

  TEST_CASE("io_message_bus: a full send queue drops and counts") {
    LoopScope scope;
    Loop& loop = scope.loop;
    const std::vector<Address> addresses = loopback_addresses(ports_reserve(2));
    auto replica_0 = node_start(loop, addresses, {.replica = 0, .send_queue_max = 4});
    auto replica_1 = node_start(loop, addresses, {.replica = 1, .send_queue_max = 4});
    std::vector<Node*> nodes = {replica_0.get(), replica_1.get()};
    REQUIRE(run_until(loop, nodes, [&] {
      return replica_0->bus.stats().connects_succeeded == 1;
    }));
    // No callback runs between these calls, so the first four fill the queue (the first is
    // being sent, and stays queued until its last byte is out) and the last three are dropped.
    for (u8 index = 0; index < 7; index += 1) {
      base::Message* message = message_make(
          replica_0->pool, {.command = Command::commit, .body_size = 100, .seed = index});
      replica_0->bus.send_to_replica(1, message);
      replica_0->pool.unref(message);
    }
    CHECK(replica_0->bus.stats().sends_dropped == 3);
    REQUIRE(run_until(loop, nodes, [&] { return replica_0->bus.stats().messages_sent == 4; }));
    REQUIRE(run_until(loop, nodes, [&] { return replica_1->received.size() == 4; }));
    for (u8 index = 0; index < 4; index += 1) {
      CHECK(replica_1->received[index] ==
            frame_make({.command = Command::commit, .body_size = 100, .seed = index}));
    }
    node_stop(*replica_0);
    node_stop(*replica_1);
  }

  TEST_CASE("io_message_bus: an empty pool pauses receiving until tick finds a message") {
    LoopScope scope;
    Loop& loop = scope.loop;
    const std::vector<Address> addresses = loopback_addresses(ports_reserve(1));
    auto replica = node_start(loop, addresses, {.pool_capacity = 2});
    std::vector<Node*> nodes = {replica.get()};
    const int client = raw_connect(replica->bus.listen_port());

    replica->hold = true;
    std::vector<Bytes> expected;
    Bytes packed;
    for (u8 index = 0; index < 5; index += 1) {
      expected.push_back(
          frame_make({.command = Command::request, .body_size = 40, .seed = index, .client = 3}));
      packed.insert(packed.end(), expected.back().begin(), expected.back().end());
    }
    raw_write(client, packed);
    REQUIRE(run_until(loop, nodes, [&] { return replica->bus.stats().receives_paused >= 1; }));
    // The receiver holds what it got, so nothing more can arrive however long the bus runs.
    run_iterations(loop, nodes, 50);
    const std::size_t delivered = replica->received.size();
    CHECK(delivered >= 1);
    CHECK(delivered < 5);
    CHECK(replica->pool.free_count() == 0);
    CHECK(replica->held.size() == delivered);

    replica->hold = false;
    replica->release_held();
    REQUIRE(run_until(loop, nodes, [&] { return replica->received.size() == 5; }));
    CHECK(replica->received == expected);
    CHECK(replica->bus.stats().frames_rejected == 0);
    CHECK_FALSE(raw_closed(client));
    ::close(client);
    node_stop(*replica);
  }

  TEST_CASE("io_message_bus: replies follow a client to the connection it used last") {
    LoopScope scope;
    Loop& loop = scope.loop;
    const std::vector<Address> addresses = loopback_addresses(ports_reserve(1));
    auto replica = node_start(loop, addresses, {});
    replica->respond = true;
    std::vector<Node*> nodes = {replica.get()};
    const u16 port = replica->bus.listen_port();
    constexpr u128 client = 0xC0FFEE;

    const int old_connection = raw_connect(port);
    raw_write(old_connection, frame_make({.command = Command::request, .client = client}));
    REQUIRE(run_until(loop, nodes, [&] { return raw_available(old_connection) >= 256 + 32; }));
    const Header reply = header_of(raw_read_message(old_connection));
    CHECK(reply.command == Command::reply);
    CHECK(reply.reply.client == client);

    // The client reconnects (the old connection stays open) and pings on the new one.
    const int new_connection = raw_connect(port);
    raw_write(new_connection, frame_make({.command = Command::ping_client, .client = client}));
    REQUIRE(run_until(loop, nodes, [&] { return raw_available(new_connection) >= 256; }));
    CHECK(header_of(raw_read_message(new_connection)).command == Command::pong_client);

    base::Message* eviction =
        message_make(replica->pool, {.command = Command::eviction, .seed = 1});
    const Bytes eviction_bytes = message_copy(eviction);
    replica->bus.send_to_client(client, eviction);
    replica->pool.unref(eviction);
    REQUIRE(run_until(loop, nodes, [&] { return raw_available(new_connection) >= 256; }));
    CHECK(raw_read_message(new_connection) == eviction_bytes);
    run_iterations(loop, nodes, 20);
    CHECK(raw_available(old_connection) == 0);

    // Once the new connection is gone, the client has no route until it speaks again.
    ::close(new_connection);
    REQUIRE(run_until(loop, nodes, [&] {
      return replica->bus.stats().connections_closed == 1;
    }));
    const u64 dropped = replica->bus.stats().sends_dropped;
    base::Message* late = message_make(replica->pool, {.command = Command::eviction});
    replica->bus.send_to_client(client, late);
    replica->pool.unref(late);
    CHECK(replica->bus.stats().sends_dropped == dropped + 1);

    ::close(old_connection);
    node_stop(*replica);
  }

  TEST_CASE("io_message_bus: deinit finishes with sends stuck on a peer that does not read") {
    LoopScope scope;
    Loop& loop = scope.loop;
    const std::vector<u16> ports = ports_reserve(2);
    // Replica 1 is a plain socket that listens and never accepts or reads: the kernel completes
    // the handshake, fills a small receive buffer, and then the sender's queue stops moving.
    const int stuck_peer = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(stuck_peer >= 0);
    const int receive_buffer_size = 64 * 1024;
    REQUIRE(::setsockopt(stuck_peer, SOL_SOCKET, SO_RCVBUF, &receive_buffer_size,
                         sizeof(receive_buffer_size)) == 0);
    const int reuse = 1;
    REQUIRE(::setsockopt(stuck_peer, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof(reuse)) == 0);
    const Address stuck_address = address_loopback(ports[1]);
    REQUIRE(::bind(stuck_peer, stuck_address.sockaddr_pointer(), stuck_address.size) == 0);
    REQUIRE(::listen(stuck_peer, 4) == 0);

    const std::vector<Address> addresses = loopback_addresses(ports);
    auto replica = node_start(loop, addresses,
                              {.pool_capacity = 20, .pool_message_size = message_size_max});
    std::vector<Node*> nodes = {replica.get()};
    REQUIRE(run_until(loop, nodes, [&] { return replica->bus.stats().connects_succeeded == 1; }));
    for (u8 index = 0; index < 16; index += 1) {
      base::Message* message = message_make(
          replica->pool,
          {.command = Command::prepare, .body_size = message_body_size_max, .seed = index});
      replica->bus.send_to_replica(1, message);
      replica->pool.unref(message);
    }
    run_iterations(loop, nodes, 100);
    CHECK(replica->bus.stats().messages_sent < 16);
    CHECK(replica->pool.free_count() < replica->pool.capacity());

    node_stop(*replica);
    CHECK(replica->bus.stats().sends_dropped > 0);
    ::close(stuck_peer);
  }

  TEST_CASE("io_message_bus: traffic after init allocates nothing") {
    LoopScope scope;
    Loop& loop = scope.loop;
    const std::vector<Address> addresses = loopback_addresses(ports_reserve(2));
    const u32 message_size = 256 * 1024;
    auto replica_0 = node_start(loop, addresses, {.replica = 0, .pool_message_size = message_size});
    auto replica_1 = node_start(loop, addresses, {.replica = 1, .pool_message_size = message_size});
    auto client = node_start(loop, addresses,
                             {.kind = BusKind::client, .pool_message_size = message_size});
    replica_0->respond = true;
    std::vector<Node*> nodes = {replica_0.get(), replica_1.get(), client.get()};
    for (Node* node : nodes) node->record = false;
    REQUIRE(run_until(loop, nodes, [&] {
      return replica_0->bus.stats().connects_succeeded == 1 &&
             replica_1->bus.stats().connects_succeeded == 1 &&
             client->bus.stats().connects_succeeded == 2;
    }));

    // One round: a request answered by a reply routed to the client, a prepare large enough to
    // go zero-copy, and a small prepare_ok back.
    u32 round_count = 0;
    const auto run_round = [&]() -> bool {
      round_count += 1;
      base::Message* request = message_make(
          client->pool, {.command = Command::request, .body_size = 128, .client = 1});
      client->bus.send_to_replica(0, request);
      client->pool.unref(request);
      base::Message* prepare = message_make(
          replica_0->pool, {.command = Command::prepare, .body_size = 200 * 1024});
      replica_0->bus.send_to_replica(1, prepare);
      replica_0->pool.unref(prepare);
      base::Message* prepare_ok =
          message_make(replica_1->pool, {.command = Command::prepare_ok, .replica = 1});
      replica_1->bus.send_to_replica(0, prepare_ok);
      replica_1->pool.unref(prepare_ok);
      return run_until(loop, nodes, [&] {
        return client->delivered == round_count && replica_1->delivered == round_count &&
               replica_0->delivered == 2 * round_count;
      });
    };
    REQUIRE(run_round());  // Warm-up: anything lazily allocated (by libc, say) happens here.

    const u64 allocations_before = base::allocation_guard::allocations_total();
    base::allocation_guard::seal(base::allocation_guard::Mode::count);
    bool all_rounds_ok = true;
    for (u32 round = 0; round < 10; round += 1) all_rounds_ok = run_round() && all_rounds_ok;
    base::allocation_guard::unseal();
    const u64 allocations_after = base::allocation_guard::allocations_total();
    CHECK(all_rounds_ok);
    CHECK(allocations_after - allocations_before == 0);
    CHECK(loop.stats().zero_copy_notifications >= 11);

    node_stop(*client);
    node_stop(*replica_0);
    node_stop(*replica_1);
  }

  TEST_CASE("io_message_bus: a listen address in use stops with address_in_use naming it") {
    const auto [holder, port] = port_hold();

    const auto result = base::death_test::run_in_child([port] {
      Loop loop;
      loop.init(32);
      base::MessagePool pool;
      pool.init(2, 4096);
      const Address addresses[] = {address_loopback(port)};
      MessageBus bus;
      bus.init(&loop, &pool, {.addresses = addresses}, [](void*, base::Message*) {}, nullptr);
    });
    ::close(holder);
    CHECK(result.exited);
    CHECK(result.exit_code == static_cast<int>(base::FatalReason::address_in_use));
    CHECK(result.stderr_contains("127.0.0.1:" + std::to_string(port)));
    CHECK(result.stderr_contains("in use"));
  }

  // What a replica restarted at once after a kill -9 meets: its previous run's listening socket
  // is still open for a moment (its io_uring is torn down asynchronously).
  TEST_CASE("io_message_bus: a listen address released within the grace period is taken") {
    const auto [holder, port] = port_hold();
    std::thread releaser([holder] {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      ::close(holder);
    });

    Loop loop;
    loop.init(32);
    base::MessagePool pool;
    pool.init(2, 4096);
    const Address addresses[] = {address_loopback(port)};
    MessageBus bus;
    bus.init(&loop, &pool, {.addresses = addresses}, [](void*, base::Message*) {}, nullptr);
    releaser.join();
    CHECK(bus.listen_port() == port);
    bus.deinit();
  }
}

}  // namespace tally::io
