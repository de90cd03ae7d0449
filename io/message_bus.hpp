// MessageBus: TCP between replicas and clients on the io_uring Loop, framed by the header's
// `size` (protocol §1.1), with every message in a base::MessagePool buffer.
//
// Two kinds:
// - replica: listens on its own address; accepts clients and peer replicas; keeps one outgoing
//   connection to every other replica (reconnecting with backoff). A pair of replicas therefore
//   has two connections: each side sends on the one it opened and receives on the one it
//   accepted, so no handshake is needed to know which peer a connection belongs to.
// - client: no listener; one outgoing connection per replica, reconnecting with backoff.
// Reconnecting waits 50 ms after a failure, doubling up to 1 s (counted in ticks of 10 ms);
// the wait falls back to 50 ms once a connection has carried a whole message.
//
// Receiving (both kinds), per connection, in this order: once 256 bytes are in, the header
// checksum, then validate_frame() (size within 256..message size, protocol, reserved fields),
// then `cluster`, then that `size` fits a pool buffer; once `size` bytes are in, the body
// checksum. Any failure closes that connection and counts it in stats; nothing a peer sends can
// crash the process. A message that passes goes to `on_message` (with one reference, which the
// bus drops after the call: a receiver that keeps the message takes its own reference with
// pool.ref()). Receivers treat received messages as read-only, and the bus never writes into a
// message that a receiver still holds. A replica bus learns `client id -> connection` from every
// request and ping_client it delivers, so that send_to_client() finds the connection the
// client last used (protocol §1.1: replies go back on the connection the request came on). An
// accepted connection whose first message is a replica command (anything but request and
// ping_client) belongs to a replica and never teaches a client route, so a request a replica
// passes on cannot steal its client's replies.
//
// Which commands a connection may deliver (checked on the header, before the body is read): a
// message outside its peer's set is not delivered, and the connection is closed as for a bad
// frame and counted in `commands_rejected`.
// - Replica bus, accepted connection whose first message was request or ping_client (a client):
//   only request and ping_client, ever. Otherwise a client could follow its first request with
//   a replica command, a `commit` claiming a higher view say, and the replica would act on it.
// - Replica bus, any other connection: every command. An accepted connection that began with a
//   replica command is a replica, which may pass requests on; an outgoing one leads to the
//   replica at a configured address, which sends nothing on it in practice (a replica sends to
//   another replica only on the connection it opened itself).
// - Client bus: only what a replica sends a client: reply, pong_client and eviction (all that
//   client::Session handles).
// This separates the kinds of peer, it does not authenticate them: a new connection whose first
// message is a replica command is taken for a replica, as in TigerBeetle, whose network is
// trusted. A replica whose first message on a new connection is a request would be taken for
// a client and cut off at its next replica command, then reconnect; replicas do not forward
// requests today.
//
// One recv reads as much as the buffer holds, so it may end with several messages and the start
// of the next. The first message is delivered in the receive buffer itself; every later one is
// copied into a fresh message of its own, and a partial message left at the end moves to the
// front of a buffer for the next recv (in place when no receiver holds the buffer). Each byte is
// thus copied at most once, however many small messages one recv brings.
//
// Sending: send_to_replica() and send_to_client() take their own reference and queue the
// message on the connection, at most `send_queue_max` per connection; a message for a replica
// or client without a live connection, or beyond the queue's bound, is dropped and counted
// (VSR and the clients retransmit). A connection still connecting queues too. Messages of
// `zero_copy_threshold` bytes or more go with send_zero_copy() (prepares to backups), smaller
// ones with send().
//
// Closing is abortive (the socket is disconnected, which sends RST and discards unsent data),
// because a zero-copy send only calls back once the kernel lets go of its buffer, and a peer
// that stopped reading would otherwise hold the buffer, and the close, forever.
//
// Bounded: at most `connections_max` connections, the outgoing ones included (beyond it,
// accepted sockets are closed at once and counted), each holding at most one receive message and
// `send_queue_max` queued sends. If the pool has no free message for a receive, that connection
// stops reading until tick() finds one. Nothing is allocated after init(); the connections and
// send queues live in pages reserved by init().
//
// Lifecycle: init() once, then tick() every 10 ms while the loop runs, then deinit(), which must
// not be called from a loop callback. One thread: the loop's.
#pragma once

#include <cstddef>
#include <span>

#include "io/address.hpp"
#include "io/loop.hpp"
#include "src/base/message_pool.hpp"
#include "tally/constants.hpp"
#include "tally/header.hpp"
#include "tally/types.hpp"

namespace tally::io {

enum class BusKind : u8 { replica, client };

struct MessageBusOptions {
  BusKind kind = BusKind::replica;
  u128 cluster = 0;
  u8 replica = 0;                      // BusKind::replica: this replica's index.
  std::span<const Address> addresses;  // Every replica's address, by index (1..6).
  u32 connections_max = 128;
  u32 send_queue_max = 16;
  u32 zero_copy_threshold = 64 * 1024;
};

// Why the last rejected frame was rejected, in the order the checks run.
enum class FrameError : u8 {
  none,
  header_checksum,
  header_invalid,     // validate_frame() failed: see MessageBusStats::header_error_last.
  cluster,
  size_above_buffer,  // Valid for the protocol, but larger than the pool's messages.
  body_checksum,
};

struct MessageBusStats {
  u64 messages_received = 0;
  u64 messages_sent = 0;
  u64 bytes_received = 0;
  u64 sends_dropped = 0;           // No connection, its queue was full, or it closed.
  u64 frames_rejected = 0;         // Checksum, frame or cluster failures (connection closed).
  // Commands the peer may not send, e.g. a `commit` from a client (connection closed): see the
  // header comment.
  u64 commands_rejected = 0;
  u64 connections_accepted = 0;
  u64 connections_refused = 0;     // Over connections_max.
  u64 connections_closed = 0;      // Established connections that ended, for any reason.
  u64 connects_succeeded = 0;
  u64 connects_failed = 0;         // Refused, unreachable, or connected to itself.
  u64 receives_paused = 0;         // A receive found the pool empty and waited for tick().
  u64 messages_copied = 0;         // Messages that followed another in one recv buffer.
  FrameError frame_error_last = FrameError::none;
  HeaderError header_error_last = HeaderError::none;
  Command command_rejected_last = Command::reserved;  // reserved: none rejected yet.
};

class MessageBus {
 public:
  // Called for every message that passed the receive checks; see the header comment.
  using OnMessage = void (*)(void* context, base::Message* message);

  // The reconnect delay: 50 ms doubling to 1 s, in ticks of 10 ms.
  static constexpr u32 connect_delay_ticks_min = 5;
  static constexpr u32 connect_delay_ticks_max = 100;

  MessageBus() = default;
  MessageBus(const MessageBus&) = delete;
  MessageBus& operator=(const MessageBus&) = delete;

  // Allocates connections; a replica bus binds and listens on addresses[replica], stopping with
  // FatalReason::address_in_use (naming the address) when the port is taken.
  void init(Loop* loop, base::MessagePool* pool, const MessageBusOptions& options,
            OnMessage on_message, void* context);
  // Closes every connection and the listener, and runs the loop until nothing is in flight.
  void deinit();

  // Once per tick (10 ms): (re)connects with backoff, resumes receives that waited for a message.
  void tick();

  void send_to_replica(u8 replica, base::Message* message);
  void send_to_client(u128 client, base::Message* message);

  base::MessagePool& pool() { return *pool_; }
  const MessageBusStats& stats() const { return stats_; }
  // The port actually bound (useful with port 0 in tests).
  u16 listen_port() const;

 private:
  // Implementation-defined (io/message_bus.cpp).
  struct Connection;

  void listen();
  void accept_start();
  static void accept_callback(Completion* completion);
  static void accept_cancel_callback(Completion* completion);
  Connection* connection_free_find();

  void connect_start(Connection* connection);
  static void connect_callback(Completion* completion);
  static void connect_cancel_callback(Completion* completion);
  void connect_schedule(Connection* connection);

  void receive_process(Connection* connection);
  void receive_start(Connection* connection);
  static void receive_callback(Completion* completion);
  bool receive_tail_move(Connection* connection);
  FrameError header_check(const Header& header);
  void reject(Connection* connection, FrameError error);
  bool command_admitted(const Connection& connection, Command command) const;
  void deliver(Connection* connection, base::Message* message);
  void client_route(Connection* connection, u128 client);
  void receive_pause(Connection* connection);

  void enqueue(Connection* connection, base::Message* message);
  void send_start(Connection* connection);
  static void send_callback(Completion* completion);

  void close_start(Connection* connection);
  void close_continue(Connection* connection);
  static void close_callback(Completion* completion);
  void connection_release(Connection* connection);
  bool quiet() const;

  Loop* loop_ = nullptr;
  base::MessagePool* pool_ = nullptr;
  MessageBusStats stats_;

  MessageBusOptions options_;
  OnMessage on_message_ = nullptr;
  void* context_ = nullptr;
  bool initialized_ = false;
  bool closing_ = false;  // deinit() has begun: no reconnects, no accepts.
  // A copy, so that the caller's array need not outlive init().
  Address addresses_[replicas_max] = {};
  u32 replica_count_ = 0;

  // connections_max of them, in pages reserved by init(); the first `outgoing_count_` are the
  // outgoing connections, the rest take accepted sockets.
  Connection* connections_ = nullptr;
  u32 outgoing_count_ = 0;
  Connection* replica_connections_[replicas_max] = {};  // Outgoing, by replica index.
  base::Message** send_slots_ = nullptr;  // connections_max * send_queue_max.
  std::size_t connections_bytes_ = 0;
  std::size_t send_slots_bytes_ = 0;
  u32 receives_paused_count_ = 0;  // Connections waiting in tick() for a free message.
  u32 receives_resume_index_ = 0;  // Where tick() starts looking, so no connection starves.

  int listener_ = -1;
  u16 listen_port_ = 0;
  Completion accept_completion_;
  Completion accept_cancel_completion_;
  bool accept_retry_ = false;  // accept failed (e.g. EMFILE): try again at the next tick.
};

}  // namespace tally::io
