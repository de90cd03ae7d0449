// The TCP message bus (see message_bus.hpp for the contract).
//
// A connection's life. Accepted sockets enter at `connected`; outgoing connections start at
// `free` and go back there to wait for their next attempt:
//
//   free ──connect_start──> connecting ──success──> connected
//    ^                          │ failure              │ EOF, error, bad frame, deinit()
//    │                          v                      v
//    └── connection_release <── closing: cancel the connect or disconnect the socket, wait
//                               until recv, send, connect and cancel have all called back,
//                               then close the descriptor through the loop
//
// A connection's receive buffer (recv_message), after a recv that brought two whole messages
// and the start of a third:
//
//   0               recv_offset                          recv_size     pool message size
//   [ message A     | message B          | C, partial    ]  free for the next recv  ]
//     copied into     copied into a        moved to the front (in place if no receiver
//     a message       message of its own   holds A), then the next recv appends to it
//
// A message is delivered in place (no copy) only when it is alone in the buffer: every
// delivered message gets zero padding to its sector boundary (pad_zero()), which in place
// would overwrite the start of the next message.
//
// Invariants:
// - A recv is in flight only while recv_offset == 0 and no receiver holds recv_message, so the
//   kernel never writes into a buffer a receiver can see.
// - A send is in flight only while the send queue is not empty; the head message stays queued
//   (and referenced) until its last byte is sent, so its buffer outlives a zero-copy send.
// - A connection goes back to `free` only when none of its four completions is in flight.
// - A connection with a client route (`client != 0`) is an accepted one of a replica bus.
// - A connection whose peer is a client has delivered request and ping_client only
//   (command_admitted()).
#include "io/message_bus.hpp"

#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

#include "io/released_soon.hpp"
#include "src/base/assert.hpp"
#include "src/base/large_array.hpp"

namespace tally::io {

namespace {

constexpr int listen_backlog = 64;
// As TigerBeetle's clients set them (protocol §1.2): a peer that vanished without a FIN or an
// RST is noticed within about 17 s instead of the kernel's default of hours.
constexpr int keepalive_idle_s = 5;
constexpr int keepalive_interval_s = 4;
constexpr int keepalive_count = 3;
constexpr int user_timeout_ms = 17'000;
// deinit() waits for completions in slices of this length.
constexpr u64 deinit_wait_ns = 10'000'000;
// Enough connections for any cluster and its clients; keeps the send slot count far from
// overflow.
constexpr u32 connections_limit = 1 << 16;
constexpr u32 send_queue_limit = 1 << 12;

const char* errno_name(int error_number) {
  const char* name = strerrorname_np(error_number);
  return name != nullptr ? name : "unknown errno";
}

bool in_flight(const Completion& completion) {
  return completion.state != CompletionState::idle;
}

void socket_option_set(int socket, int level, int name, int value) {
  const int result = setsockopt(socket, level, name, &value, sizeof(value));
  // These options cannot fail on a TCP socket whatever its state: a failure is a bug here.
  TALLY_ASSERT(result == 0, "setsockopt(level %d, option %d): %s", level, name,
               errno_name(errno));
}

void socket_options_set(int socket) {
  socket_option_set(socket, IPPROTO_TCP, TCP_NODELAY, 1);
  socket_option_set(socket, SOL_SOCKET, SO_KEEPALIVE, 1);
  socket_option_set(socket, IPPROTO_TCP, TCP_KEEPIDLE, keepalive_idle_s);
  socket_option_set(socket, IPPROTO_TCP, TCP_KEEPINTVL, keepalive_interval_s);
  socket_option_set(socket, IPPROTO_TCP, TCP_KEEPCNT, keepalive_count);
  socket_option_set(socket, IPPROTO_TCP, TCP_USER_TIMEOUT, user_timeout_ms);
}

void* pages_reserve_or_fatal(std::size_t size, const char* what) {
  void* pages = base::pages_reserve(size);
  if (pages == nullptr) {
    base::fatal(base::FatalReason::out_of_memory, "cannot reserve %zu bytes for %s", size, what);
  }
  return pages;
}

}  // namespace

struct MessageBus::Connection {
  enum class State : u8 { free, connecting, connected, closing };
  // Who is at the other end of an accepted connection, learned from its first message.
  enum class Peer : u8 { unknown, replica, client };

  MessageBus* bus = nullptr;
  State state = State::free;
  Peer peer = Peer::unknown;
  bool outgoing = false;
  bool established = false;  // Reached `connected` (counted in connections_closed when it ends).
  u8 replica = 0;            // Outgoing: the replica at the other end.
  int fd = -1;
  u128 client = 0;           // The client whose replies go here (replica bus, accepted), or 0.

  base::Message* recv_message = nullptr;
  u32 recv_size = 0;    // Bytes received into recv_message.
  u32 recv_offset = 0;  // Where the first message not yet delivered starts.
  bool recv_paused = false;
  Completion recv_completion;

  base::Message** send_queue = nullptr;  // A ring of send_queue_max slots.
  u32 send_head = 0;
  u32 send_count = 0;
  u32 send_progress = 0;  // Bytes of the head message already sent.
  Completion send_completion;

  Completion control_completion;  // connect, then close.
  Completion cancel_completion;   // Stops a connect when the connection closes.

  u32 connect_attempts = 0;  // Failed attempts since the last connection that carried a message.
  u32 connect_ticks = 0;     // Free outgoing connection: ticks until the next attempt.

  bool idle() const {
    return !in_flight(recv_completion) && !in_flight(send_completion) &&
           !in_flight(control_completion) && !in_flight(cancel_completion);
  }
};

void MessageBus::init(Loop* loop, base::MessagePool* pool, const MessageBusOptions& options,
                      OnMessage on_message, void* context) {
  TALLY_ASSERT(!initialized_);
  TALLY_ASSERT(loop != nullptr && pool != nullptr && on_message != nullptr);
  TALLY_ASSERT(pool->capacity() > 0 && pool->message_size() >= header_size);
  const std::size_t replica_count = options.addresses.size();
  TALLY_ASSERT(replica_count >= 1 && replica_count <= replicas_max, "%zu replica addresses",
               replica_count);
  for (const Address& address : options.addresses) TALLY_ASSERT(address.valid());
  TALLY_ASSERT(options.kind == BusKind::client || options.replica < replica_count);
  TALLY_ASSERT(options.send_queue_max >= 1 && options.send_queue_max <= send_queue_limit);
  TALLY_ASSERT(options.zero_copy_threshold >= 1);
  const u32 outgoing_count = static_cast<u32>(
      options.kind == BusKind::replica ? replica_count - 1 : replica_count);
  // A replica needs room to accept at least one connection besides its outgoing ones.
  const u32 accepted_min = options.kind == BusKind::replica ? 1 : 0;
  TALLY_ASSERT(options.connections_max >= outgoing_count + accepted_min &&
                   options.connections_max <= connections_limit,
               "connections_max %u for %u outgoing connections", options.connections_max,
               outgoing_count);

  loop_ = loop;
  pool_ = pool;
  options_ = options;
  on_message_ = on_message;
  context_ = context;
  stats_ = {};
  replica_count_ = static_cast<u32>(replica_count);
  for (u32 index = 0; index < replica_count_; index += 1) {
    addresses_[index] = options.addresses[index];
  }
  options_.addresses = std::span<const Address>(addresses_, replica_count_);

  const u32 connection_count = options_.connections_max;
  connections_bytes_ = std::size_t{connection_count} * sizeof(Connection);
  send_slots_bytes_ =
      std::size_t{connection_count} * options_.send_queue_max * sizeof(base::Message*);
  connections_ = static_cast<Connection*>(
      pages_reserve_or_fatal(connections_bytes_, "message bus connections"));
  send_slots_ = static_cast<base::Message**>(
      pages_reserve_or_fatal(send_slots_bytes_, "message bus send queues"));
  for (u32 index = 0; index < connection_count; index += 1) {
    Connection* connection = new (&connections_[index]) Connection{};
    connection->bus = this;
    connection->send_queue = send_slots_ + std::size_t{index} * options_.send_queue_max;
    connection->recv_completion.context = connection;
    connection->send_completion.context = connection;
    connection->control_completion.context = connection;
    connection->cancel_completion.context = connection;
  }

  outgoing_count_ = 0;
  for (u32 replica = 0; replica < replica_count_; replica += 1) {
    replica_connections_[replica] = nullptr;
    if (options_.kind == BusKind::replica && replica == options_.replica) continue;
    Connection* connection = &connections_[outgoing_count_];
    outgoing_count_ += 1;
    connection->outgoing = true;
    connection->peer = Connection::Peer::replica;
    connection->replica = static_cast<u8>(replica);
    replica_connections_[replica] = connection;
  }
  TALLY_ASSERT(outgoing_count_ == outgoing_count);

  accept_completion_.context = this;
  accept_cancel_completion_.context = this;
  accept_retry_ = false;
  receives_paused_count_ = 0;
  receives_resume_index_ = 0;
  initialized_ = true;
  closing_ = false;

  if (options_.kind == BusKind::replica) {
    listen();
    accept_start();
  }
  for (u32 index = 0; index < outgoing_count_; index += 1) connect_start(&connections_[index]);
}

void MessageBus::deinit() {
  TALLY_ASSERT(initialized_);
  TALLY_ASSERT(!closing_);
  closing_ = true;
  if (in_flight(accept_completion_)) {
    loop_->cancel(&accept_cancel_completion_, accept_cancel_callback, &accept_completion_);
  }
  for (u32 index = 0; index < options_.connections_max; index += 1) {
    Connection* connection = &connections_[index];
    if (connection->state == Connection::State::connecting ||
        connection->state == Connection::State::connected) {
      close_start(connection);
    }
  }
  // Every recv, send, connect and accept that is still in flight ends at once: connects and the
  // accept are cancelled, and a disconnected socket fails its recv and send and frees the
  // buffers of its zero-copy sends.
  while (!quiet()) loop_->run_once(deinit_wait_ns);

  if (listener_ >= 0) {
    ::close(listener_);
    listener_ = -1;
  }
  TALLY_ASSERT(receives_paused_count_ == 0);
  base::pages_release(connections_, connections_bytes_);
  base::pages_release(send_slots_, send_slots_bytes_);
  connections_ = nullptr;
  send_slots_ = nullptr;
  initialized_ = false;
  closing_ = false;
}

bool MessageBus::quiet() const {
  if (in_flight(accept_completion_) || in_flight(accept_cancel_completion_)) return false;
  for (u32 index = 0; index < options_.connections_max; index += 1) {
    if (connections_[index].state != Connection::State::free) return false;
  }
  return true;
}

u16 MessageBus::listen_port() const {
  TALLY_ASSERT(initialized_ && options_.kind == BusKind::replica);
  return listen_port_;
}

void MessageBus::tick() {
  TALLY_ASSERT(initialized_ && !closing_);
  if (accept_retry_ && !in_flight(accept_completion_)) {
    accept_retry_ = false;
    accept_start();
  }
  for (u32 index = 0; index < outgoing_count_; index += 1) {
    Connection* connection = &connections_[index];
    if (connection->state != Connection::State::free) continue;
    if (connection->connect_ticks > 0) connection->connect_ticks -= 1;
    if (connection->connect_ticks == 0) connect_start(connection);
  }
  // Round-robin from where the last pass stopped, so that a busy connection near the front
  // cannot take every freed message from the others.
  const u32 connection_count = options_.connections_max;
  for (u32 step = 0; step < connection_count && receives_paused_count_ > 0; step += 1) {
    if (pool_->free_count() == 0) break;
    const u32 index = (receives_resume_index_ + step) % connection_count;
    Connection* connection = &connections_[index];
    if (!connection->recv_paused) continue;
    TALLY_ASSERT(connection->state == Connection::State::connected);
    connection->recv_paused = false;
    receives_paused_count_ -= 1;
    receives_resume_index_ = (index + 1) % connection_count;
    receive_process(connection);
  }
}

// ---------------------------------------------------------------------------------------------
// Listening and accepting.

void MessageBus::listen() {
  TALLY_ASSERT(listener_ < 0);
  const Address& address = addresses_[options_.replica];
  char text[address_text_size_max];
  const std::string_view name = address_format(address, text);
  const int name_length = static_cast<int>(name.size());

  // A restarted replica must be able to bind while connections of its previous run linger in
  // TIME_WAIT, and while a previous run killed a moment ago still holds its listening socket
  // (released_soon.hpp). Each attempt starts from a new socket: one whose listen() failed is
  // left bound.
  const int error = retry_while_busy(EADDRINUSE, [this, &address] {
    listener_ = ::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
    if (listener_ < 0) return errno;
    socket_option_set(listener_, SOL_SOCKET, SO_REUSEADDR, 1);
    if (::bind(listener_, address.sockaddr_pointer(), address.size) == 0 &&
        ::listen(listener_, listen_backlog) == 0) {
      return 0;
    }
    const int attempt_error = errno;
    ::close(listener_);
    listener_ = -1;
    return attempt_error;
  });
  if (error != 0) {
    if (error == EADDRINUSE) {
      base::fatal(base::FatalReason::address_in_use,
                  "cannot listen on %.*s: the address is in use. Is another replica or "
                  "process using the port? Fix: stop it, or give this replica another address",
                  name_length, name.data());
    }
    base::fatal(base::FatalReason::address_invalid,
                "cannot listen on %.*s: %s (%s). Is the address one of this machine's?",
                name_length, name.data(), errno_name(error), std::strerror(error));
  }
  const Address bound = address_of_socket(listener_);
  TALLY_ASSERT(bound.valid());
  listen_port_ = bound.port();
  TALLY_ASSERT(listen_port_ != 0);
}

void MessageBus::accept_start() {
  TALLY_ASSERT(listener_ >= 0 && !closing_);
  loop_->accept(&accept_completion_, accept_callback, listener_);
}

void MessageBus::accept_cancel_callback(Completion* completion) {
  auto* bus = static_cast<MessageBus*>(completion->context);
  TALLY_ASSERT(bus->closing_);
}

void MessageBus::accept_callback(Completion* completion) {
  auto* bus = static_cast<MessageBus*>(completion->context);
  const int result = completion->result;
  if (bus->closing_) {
    if (result >= 0) ::close(result);
    return;
  }
  if (result < 0) {
    // ECONNABORTED (the peer gave up in the backlog), EMFILE, ENFILE, ENOBUFS, ENOMEM: none is
    // the listener's fault, and retrying at once would spin while the resource is short.
    bus->accept_retry_ = true;
    return;
  }
  Connection* connection = bus->connection_free_find();
  if (connection == nullptr) {
    // Not through the loop: nothing was ever started on this socket.
    ::close(result);
    bus->stats_.connections_refused += 1;
  } else {
    TALLY_ASSERT(connection->fd < 0 && connection->idle() && connection->send_count == 0);
    socket_options_set(result);
    connection->fd = result;
    connection->state = Connection::State::connected;
    connection->established = true;
    connection->peer = Connection::Peer::unknown;
    bus->stats_.connections_accepted += 1;
    bus->receive_process(connection);
  }
  bus->accept_start();
}

MessageBus::Connection* MessageBus::connection_free_find() {
  for (u32 index = outgoing_count_; index < options_.connections_max; index += 1) {
    if (connections_[index].state == Connection::State::free) return &connections_[index];
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Connecting.

void MessageBus::connect_start(Connection* connection) {
  TALLY_ASSERT(connection->outgoing && !closing_);
  TALLY_ASSERT(connection->state == Connection::State::free && connection->fd < 0);
  TALLY_ASSERT(connection->idle() && connection->send_count == 0);
  const Address& address = addresses_[connection->replica];
  const int fd = ::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0) {
    // Out of descriptors or buffers: a shortage of the moment, retried like a refused connect.
    stats_.connects_failed += 1;
    connect_schedule(connection);
    return;
  }
  socket_options_set(fd);
  connection->fd = fd;
  connection->state = Connection::State::connecting;
  loop_->connect(&connection->control_completion, connect_callback, fd,
                 address.sockaddr_pointer(), address.size);
}

void MessageBus::connect_schedule(Connection* connection) {
  TALLY_ASSERT(connection->outgoing && connection->state == Connection::State::free);
  // 5, 10, 20, 40, 80, 100, 100, ... ticks.
  u32 delay_ticks = connect_delay_ticks_min;
  for (u32 attempt = 0; attempt < connection->connect_attempts; attempt += 1) {
    delay_ticks *= 2;
    if (delay_ticks >= connect_delay_ticks_max) break;
  }
  if (delay_ticks > connect_delay_ticks_max) delay_ticks = connect_delay_ticks_max;
  connection->connect_ticks = delay_ticks;
  if (connection->connect_attempts < connect_delay_ticks_max) connection->connect_attempts += 1;
}

void MessageBus::connect_callback(Completion* completion) {
  auto* connection = static_cast<Connection*>(completion->context);
  MessageBus* bus = connection->bus;
  if (connection->state == Connection::State::closing) {
    bus->close_continue(connection);
    return;
  }
  TALLY_ASSERT(connection->state == Connection::State::connecting);
  if (completion->result < 0) {
    bus->stats_.connects_failed += 1;
    bus->close_start(connection);
    return;
  }
  // A connect from an ephemeral port to a closed port of the same machine can pick the
  // destination port as its own and connect to itself (TCP simultaneous open). That is not the
  // replica: drop it and retry.
  const Address local = address_of_socket(connection->fd);
  if (address_equal(local, bus->addresses_[connection->replica])) {
    bus->stats_.connects_failed += 1;
    bus->close_start(connection);
    return;
  }
  connection->state = Connection::State::connected;
  connection->established = true;
  bus->stats_.connects_succeeded += 1;
  bus->receive_process(connection);
  if (connection->state == Connection::State::connected && connection->send_count > 0) {
    bus->send_start(connection);
  }
}

void MessageBus::connect_cancel_callback(Completion* completion) {
  auto* connection = static_cast<Connection*>(completion->context);
  connection->bus->close_continue(connection);
}

// ---------------------------------------------------------------------------------------------
// Receiving.

void MessageBus::receive_process(Connection* connection) {
  TALLY_ASSERT(connection->state == Connection::State::connected);
  TALLY_ASSERT(!in_flight(connection->recv_completion));
  TALLY_ASSERT(!connection->recv_paused);
  for (;;) {
    if (connection->recv_message == nullptr) {
      TALLY_ASSERT(connection->recv_size == 0 && connection->recv_offset == 0);
      connection->recv_message = pool_->get();
      if (connection->recv_message == nullptr) {
        receive_pause(connection);
        return;
      }
    }
    TALLY_ASSERT(connection->recv_offset <= connection->recv_size);
    TALLY_ASSERT(connection->recv_size <= pool_->message_size());
    const u32 available = connection->recv_size - connection->recv_offset;
    const std::byte* start = connection->recv_message->buffer + connection->recv_offset;
    if (available < header_size) {
      if (receive_tail_move(connection)) receive_start(connection);
      return;
    }
    // A copy, because a message after the first may start at any offset, and a Header is
    // 16-byte aligned.
    Header header;
    std::memcpy(&header, start, header_size);
    const FrameError header_error = header_check(header);
    if (header_error != FrameError::none) {
      reject(connection, header_error);
      return;
    }
    // On the header alone, so that a forbidden message's body is never even read.
    if (!command_admitted(*connection, header.command)) {
      stats_.commands_rejected += 1;
      stats_.command_rejected_last = header.command;
      close_start(connection);
      return;
    }
    if (available < header.size) {
      if (receive_tail_move(connection)) receive_start(connection);
      return;
    }
    const std::span<const std::byte> body(start + header_size, header.size - header_size);
    if (!checksum_body_valid(header, body)) {
      reject(connection, FrameError::body_checksum);
      return;
    }

    // Every delivered message carries zero padding up to its sector boundary (message_pool.hpp:
    // the WAL writes a received prepare as it is). In place only when the buffer holds nothing
    // after the message, so that the padding can be zeroed without touching the next one.
    base::Message* message = nullptr;
    if (connection->recv_offset == 0 && connection->recv_size == header.size) {
      // In place: the receive buffer's own reference stays with the bus.
      message = pool_->ref(connection->recv_message);
    } else {
      message = pool_->get();
      if (message == nullptr) {
        receive_pause(connection);
        return;
      }
      std::memcpy(message->buffer, start, header.size);
      stats_.messages_copied += 1;
    }
    message->pad_zero();
    TALLY_ASSERT(std::memcmp(&message->header(), &header, header_size) == 0);
    connection->recv_offset += header.size;
    deliver(connection, message);
    // The receiver cannot close a connection: closes start only from callbacks and deinit().
    TALLY_ASSERT(connection->state == Connection::State::connected);
  }
}

// Makes the unparsed tail the start of a buffer that no receiver holds, ready for a recv to
// append to it. False when that needs a message and the pool has none (the receive pauses).
bool MessageBus::receive_tail_move(Connection* connection) {
  base::Message* message = connection->recv_message;
  TALLY_ASSERT(message != nullptr && message->references >= 1);
  const u32 tail_size = connection->recv_size - connection->recv_offset;
  if (connection->recv_offset == 0) {
    // Nothing was delivered from this buffer, so no receiver can hold it.
    TALLY_ASSERT(message->references == 1);
    return true;
  }
  if (message->references == 1) {
    std::memmove(message->buffer, message->buffer + connection->recv_offset, tail_size);
  } else {
    base::Message* fresh = pool_->get();
    if (fresh == nullptr) {
      receive_pause(connection);
      return false;
    }
    std::memcpy(fresh->buffer, message->buffer + connection->recv_offset, tail_size);
    pool_->unref(message);
    connection->recv_message = fresh;
  }
  connection->recv_size = tail_size;
  connection->recv_offset = 0;
  return true;
}

void MessageBus::receive_start(Connection* connection) {
  TALLY_ASSERT(connection->state == Connection::State::connected);
  base::Message* message = connection->recv_message;
  TALLY_ASSERT(message != nullptr && message->references == 1);
  TALLY_ASSERT(connection->recv_offset == 0);
  TALLY_ASSERT(connection->recv_size < pool_->message_size());
  const std::span<std::byte> free_space(message->buffer + connection->recv_size,
                                        pool_->message_size() - connection->recv_size);
  loop_->recv(&connection->recv_completion, receive_callback, connection->fd, free_space);
}

void MessageBus::receive_callback(Completion* completion) {
  auto* connection = static_cast<Connection*>(completion->context);
  MessageBus* bus = connection->bus;
  if (connection->state == Connection::State::closing) {
    bus->close_continue(connection);
    return;
  }
  TALLY_ASSERT(connection->state == Connection::State::connected);
  const i32 result = completion->result;
  // 0: the peer closed its end; < 0: reset, timeout or another error. Either way, done.
  if (result <= 0) {
    bus->close_start(connection);
    return;
  }
  const auto size = static_cast<u32>(result);
  TALLY_ASSERT(size <= bus->pool_->message_size() - connection->recv_size);
  connection->recv_size += size;
  bus->stats_.bytes_received += size;
  bus->receive_process(connection);
}

// The receive checks of the header, in the order of the header comment.
FrameError MessageBus::header_check(const Header& header) {
  if (!checksum_valid(header)) return FrameError::header_checksum;
  const HeaderError frame_error = validate_frame(header);
  if (frame_error != HeaderError::none) {
    stats_.header_error_last = frame_error;
    return FrameError::header_invalid;
  }
  if (header.cluster != options_.cluster) return FrameError::cluster;
  if (header.size > pool_->message_size()) return FrameError::size_above_buffer;
  return FrameError::none;
}

void MessageBus::reject(Connection* connection, FrameError error) {
  TALLY_ASSERT(error != FrameError::none);
  stats_.frames_rejected += 1;
  stats_.frame_error_last = error;
  close_start(connection);
}

// Whether `connection` may deliver `command`, by the rule of the header comment. An accepted
// connection of a replica bus whose peer is still unknown may deliver anything: its first
// message decides what it is (deliver()).
bool MessageBus::command_admitted(const Connection& connection, Command command) const {
  TALLY_ASSERT(command_valid(command));
  if (options_.kind == BusKind::client) {
    TALLY_ASSERT(connection.outgoing && connection.peer == Connection::Peer::replica);
    return command == Command::reply || command == Command::pong_client ||
           command == Command::eviction;
  }
  if (connection.peer == Connection::Peer::client) {
    TALLY_ASSERT(!connection.outgoing);
    return command == Command::request || command == Command::ping_client;
  }
  return true;
}

void MessageBus::receive_pause(Connection* connection) {
  TALLY_ASSERT(connection->state == Connection::State::connected);
  TALLY_ASSERT(!connection->recv_paused && !in_flight(connection->recv_completion));
  connection->recv_paused = true;
  receives_paused_count_ += 1;
  stats_.receives_paused += 1;
}

void MessageBus::deliver(Connection* connection, base::Message* message) {
  TALLY_ASSERT(message->references >= 1);
  const Header& header = message->header();
  TALLY_ASSERT(command_admitted(*connection, header.command));
  stats_.messages_received += 1;
  // The connection carried a whole message: the peer is up, so the next reconnect is quick.
  connection->connect_attempts = 0;

  if (options_.kind == BusKind::replica && !connection->outgoing) {
    const bool from_client =
        header.command == Command::request || header.command == Command::ping_client;
    if (from_client) {
      if (connection->peer != Connection::Peer::replica) {
        connection->peer = Connection::Peer::client;
        const u128 client = header.command == Command::request ? header.request.client
                                                               : header.ping_client.client;
        if (client != 0) client_route(connection, client);
      }
    } else if (connection->peer == Connection::Peer::unknown) {
      connection->peer = Connection::Peer::replica;
    }
  }

  on_message_(context_, message);
  TALLY_ASSERT(message->references >= 1, "a receiver dropped the bus's reference");
  pool_->unref(message);
}

// Routes `client` to `connection`, and away from any connection it used before: a client that
// reconnected gets its replies on the new connection.
void MessageBus::client_route(Connection* connection, u128 client) {
  TALLY_ASSERT(client != 0 && !connection->outgoing);
  if (connection->client == client) return;
  for (u32 index = outgoing_count_; index < options_.connections_max; index += 1) {
    if (connections_[index].client == client) connections_[index].client = 0;
  }
  connection->client = client;
}

// ---------------------------------------------------------------------------------------------
// Sending.

void MessageBus::send_to_replica(u8 replica, base::Message* message) {
  TALLY_ASSERT(initialized_);
  TALLY_ASSERT(replica < replica_count_, "replica %u of %u", replica, replica_count_);
  TALLY_ASSERT(options_.kind == BusKind::client || replica != options_.replica,
               "a replica does not send to itself through the bus");
  Connection* connection = replica_connections_[replica];
  TALLY_ASSERT(connection != nullptr && connection->outgoing && connection->replica == replica);
  enqueue(connection, message);
}

void MessageBus::send_to_client(u128 client, base::Message* message) {
  TALLY_ASSERT(initialized_);
  TALLY_ASSERT(options_.kind == BusKind::replica, "only a replica sends to clients");
  TALLY_ASSERT(client != 0);
  // A linear scan: connections_max is small (128 by default), and this runs once per reply.
  for (u32 index = outgoing_count_; index < options_.connections_max; index += 1) {
    Connection* connection = &connections_[index];
    if (connection->client == client && connection->state == Connection::State::connected) {
      enqueue(connection, message);
      return;
    }
  }
  // The client has not (re)connected yet, or its connection closed: it retransmits.
  TALLY_ASSERT(pool_->owned(message) && message->references > 0);
  stats_.sends_dropped += 1;
}

void MessageBus::enqueue(Connection* connection, base::Message* message) {
  TALLY_ASSERT(pool_->owned(message) && message->references > 0);
  // The receiver's checks, asserted on the sender's side.
  const Header& header = message->header();
  TALLY_ASSERT(checksum_valid(header), "sending a message whose header checksum is wrong");
  TALLY_ASSERT(validate_frame(header) == HeaderError::none, "sending an invalid frame: %s",
               name(validate_frame(header)));
  TALLY_ASSERT(header.cluster == options_.cluster, "sending a message of another cluster");
  TALLY_ASSERT(header.size <= pool_->message_size());
  TALLY_ASSERT_SLOW(checksum_body_valid(header, message->body()));

  const bool live = connection->state == Connection::State::connecting ||
                    connection->state == Connection::State::connected;
  if (closing_ || !live || connection->send_count == options_.send_queue_max) {
    stats_.sends_dropped += 1;
    return;
  }
  const u32 slot = (connection->send_head + connection->send_count) % options_.send_queue_max;
  connection->send_queue[slot] = pool_->ref(message);
  connection->send_count += 1;
  if (connection->state == Connection::State::connected &&
      !in_flight(connection->send_completion)) {
    send_start(connection);
  }
}

void MessageBus::send_start(Connection* connection) {
  TALLY_ASSERT(connection->state == Connection::State::connected);
  TALLY_ASSERT(connection->send_count > 0 && !in_flight(connection->send_completion));
  const base::Message* message = connection->send_queue[connection->send_head];
  const u32 size = message->header().size;
  TALLY_ASSERT(connection->send_progress < size);
  const std::span<const std::byte> rest = message->bytes().subspan(connection->send_progress);
  if (size >= options_.zero_copy_threshold) {
    loop_->send_zero_copy(&connection->send_completion, send_callback, connection->fd, rest);
  } else {
    loop_->send(&connection->send_completion, send_callback, connection->fd, rest);
  }
}

void MessageBus::send_callback(Completion* completion) {
  auto* connection = static_cast<Connection*>(completion->context);
  MessageBus* bus = connection->bus;
  if (connection->state == Connection::State::closing) {
    bus->close_continue(connection);
    return;
  }
  TALLY_ASSERT(connection->state == Connection::State::connected);
  TALLY_ASSERT(connection->send_count > 0);
  const i32 result = completion->result;
  // -EPIPE, -ECONNRESET, -ETIMEDOUT: the peer is gone. 0 bytes for a non-empty send: likewise.
  if (result <= 0) {
    bus->close_start(connection);
    return;
  }
  base::Message* message = connection->send_queue[connection->send_head];
  const u32 size = message->header().size;
  TALLY_ASSERT(static_cast<u32>(result) <= size - connection->send_progress);
  connection->send_progress += static_cast<u32>(result);
  if (connection->send_progress == size) {
    connection->send_queue[connection->send_head] = nullptr;
    connection->send_head = (connection->send_head + 1) % bus->options_.send_queue_max;
    connection->send_count -= 1;
    connection->send_progress = 0;
    connection->connect_attempts = 0;
    bus->stats_.messages_sent += 1;
    bus->pool_->unref(message);
  }
  if (connection->send_count > 0) bus->send_start(connection);
}

// ---------------------------------------------------------------------------------------------
// Closing.

void MessageBus::close_start(Connection* connection) {
  TALLY_ASSERT(connection->state == Connection::State::connecting ||
               connection->state == Connection::State::connected);
  TALLY_ASSERT(connection->fd >= 0);
  const bool connecting = connection->state == Connection::State::connecting;
  connection->state = Connection::State::closing;
  if (connection->recv_paused) {
    connection->recv_paused = false;
    TALLY_ASSERT(receives_paused_count_ > 0);
    receives_paused_count_ -= 1;
  }
  if (connecting) {
    if (in_flight(connection->control_completion)) {
      loop_->cancel(&connection->cancel_completion, connect_cancel_callback,
                    &connection->control_completion);
    }
  } else {
    // Disconnect (connect to AF_UNSPEC): the kernel sends an RST and discards unsent data,
    // which releases the buffers of zero-copy sends; a FIN alone could leave a zero-copy send
    // waiting on a peer that stopped reading. Then shutdown(), which marks both directions shut
    // and wakes every recv and send waiting on the socket even if the disconnect was refused
    // (EBUSY while a thread blocks on the socket). Errors only mean the socket is already
    // unconnected, which is the aim.
    sockaddr unspecified = {};
    unspecified.sa_family = AF_UNSPEC;
    (void)::connect(connection->fd, &unspecified, sizeof(unspecified));
    (void)::shutdown(connection->fd, SHUT_RDWR);
  }
  close_continue(connection);
}

void MessageBus::close_continue(Connection* connection) {
  TALLY_ASSERT(connection->state == Connection::State::closing);
  if (!connection->idle()) return;
  if (connection->fd >= 0) {
    const int fd = connection->fd;
    connection->fd = -1;
    // Through the loop, which forgets what it knew about this descriptor number.
    loop_->close(&connection->control_completion, close_callback, fd);
    return;
  }
  connection_release(connection);
}

void MessageBus::close_callback(Completion* completion) {
  auto* connection = static_cast<Connection*>(completion->context);
  TALLY_ASSERT(connection->state == Connection::State::closing && connection->fd < 0);
  connection->bus->close_continue(connection);
}

void MessageBus::connection_release(Connection* connection) {
  TALLY_ASSERT(connection->state == Connection::State::closing);
  TALLY_ASSERT(connection->fd < 0 && connection->idle() && !connection->recv_paused);
  if (connection->recv_message != nullptr) {
    pool_->unref(connection->recv_message);
    connection->recv_message = nullptr;
  }
  connection->recv_size = 0;
  connection->recv_offset = 0;
  while (connection->send_count > 0) {
    base::Message* message = connection->send_queue[connection->send_head];
    connection->send_queue[connection->send_head] = nullptr;
    connection->send_head = (connection->send_head + 1) % options_.send_queue_max;
    connection->send_count -= 1;
    pool_->unref(message);
    stats_.sends_dropped += 1;
  }
  connection->send_head = 0;
  connection->send_progress = 0;
  connection->client = 0;
  connection->peer =
      connection->outgoing ? Connection::Peer::replica : Connection::Peer::unknown;
  if (connection->established) stats_.connections_closed += 1;
  connection->established = false;
  connection->state = Connection::State::free;
  if (connection->outgoing && !closing_) connect_schedule(connection);
}

}  // namespace tally::io
