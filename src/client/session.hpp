// Session: the client side of one session with a cluster (protocol §1.2-§1.4, §4, §5), as pure
// logic over a message bus, so that the real client and the simulator run the same code.
//
// Life of a session:
//
//   start() ──register (request 0)──> registering ──reply: session = commit──> registered
//                                         │                                        │
//                                         └──────────── eviction ──────────────────┴──> evicted
//   close() from any state ──> closed
//
// Requests: submit() queues up to request_queue_max user requests; exactly one is in flight at a
// time (the register request while registering, else the queue's front). A request is numbered
// and sealed when it is first sent: request = previous + 1, parent = the previous reply's
// context, session, the client's release and view. From then on its bytes never change, so every
// retransmission is the identical message and the cluster recognises it as a duplicate (§5.4).
//
// A reply is accepted only if it passes validate_reply(), is for this client and cluster, carries
// our release, and matches the request in flight (request number, request_checksum, operation).
// Everything else is ignored and counted in SessionStats, by reason, so tests can prove which
// branch a message took. The caller learns the outcome of each request through its callback,
// called exactly once: ok with the reply, or an error (evicted with the reason, closed, or
// batch_too_large when the cluster announces a smaller batch_size_limit than a queued request).
//
// Time is ticks (tick_ns each), given by tick(); randomness (retransmission jitter, hedging) comes
// from a Prng seeded by the caller. Nothing here reads a clock or allocates: the messages come
// from the bus's pool, the queue is inline.
//
// Retransmission (§1.4): the first send goes to the primary (view % replica_count) and, with
// several replicas, to one other replica picked at random (a hedge, as TigerBeetle's clients do).
// If no reply arrives within the request timeout, the identical message goes again to the
// primary and to the replica (view + attempt) % replica_count, so that successive attempts reach
// every replica and a new primary is found even if the client's view is stale; the timeout then
// backs off: rtt * 2 + min + jitter[0, min(max - min, min * 2^attempt)] ticks.
//
// Callbacks run from on_message() and close() only, never from submit(), start() or tick(). A
// callback may submit() and close(), but must not destroy the session.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstring>
#include <span>

#include "src/base/assert.hpp"
#include "src/base/bounded_array.hpp"
#include "src/base/message_pool.hpp"
#include "src/base/prng.hpp"
#include "src/base/ring_buffer.hpp"
#include "src/client/request_body.hpp"
#include "tally/client.hpp"
#include "tally/constants.hpp"
#include "tally/header.hpp"
#include "tally/multi_batch.hpp"
#include "tally/operation.hpp"
#include "tally/records.hpp"
#include "tally/types.hpp"

namespace tally::client {

// A tick of the client, as in TigerBeetle: 10 ms.
inline constexpr u64 tick_ns = 10'000'000;
// User requests a session holds at once, the one in flight included.
inline constexpr u32 request_queue_max = 32;
// Round-trip time estimate before any pong, and its bounds (§1.4). The estimate never goes below
// the initial value: a request's execution and replication, not the network, dominate its
// latency, and retransmitting a 1 MiB batch early only adds load to a busy cluster.
inline constexpr u64 rtt_ticks_initial = 30;
inline constexpr u64 rtt_ticks_max = 6000;
inline constexpr u64 rtt_multiple = 2;
inline constexpr u64 backoff_ticks_min = 1;
inline constexpr u64 backoff_ticks_max = 1000;
// ping_client to every replica at start and then every 30 s.
inline constexpr u64 ping_interval_ticks = 3000;

static_assert(rtt_ticks_initial * rtt_multiple == 60, "the first retransmission after 600 ms");
static_assert(backoff_ticks_min > 0 && backoff_ticks_min < backoff_ticks_max);

// min + jitter, jitter uniform in [0, min(max - min, min * 2^attempt)]: the ceiling doubles with
// every attempt until it reaches max. The exponent saturates, so no attempt count overflows.
inline u64 backoff_with_jitter(base::Prng& prng, u64 min, u64 max, u32 attempt) {
  TALLY_ASSERT(min > 0 && min < max);
  const u64 range = max - min;
  const u32 exponent = attempt < 62 ? attempt : 62;
  const u64 ceiling_uncapped = min << exponent >> exponent == min ? min << exponent : range;
  const u64 ceiling = ceiling_uncapped < range ? ceiling_uncapped : range;
  const u64 result = min + prng.int_inclusive(ceiling);
  TALLY_ASSERT(result >= min && result <= max);
  return result;
}

// Named branches where a message is dropped. Tests assert on the counts (coverage marks).
enum class Ignored : u8 {
  frame_invalid,             // validate_frame() failed: padding, epoch, protocol, command.
  cluster_mismatch,
  command_misdirected,       // A valid message of a command clients do not act on.
  session_over,              // Anything after an eviction or close().
  reply_header_invalid,      // validate_reply() failed.
  reply_client_mismatch,
  reply_release_mismatch,    // The reply must echo the request's release (§12 #1).
  reply_without_request,     // Nothing in flight (e.g. a late duplicate).
  reply_request_mismatch,    // Another request number.
  reply_checksum_mismatch,   // request_checksum is not the in-flight request's checksum.
  reply_operation_mismatch,
  register_result_invalid,   // batch_size_limit 0 or above message_body_size_max.
  pong_invalid,
  eviction_invalid,
  eviction_client_mismatch,
  eviction_view_old,         // An eviction from a view older than the client's (§4.5).
};

inline constexpr u32 ignored_reason_count = static_cast<u32>(Ignored::eviction_view_old) + 1;

constexpr const char* name(Ignored reason) {
  switch (reason) {
    case Ignored::frame_invalid: return "frame_invalid";
    case Ignored::cluster_mismatch: return "cluster_mismatch";
    case Ignored::command_misdirected: return "command_misdirected";
    case Ignored::session_over: return "session_over";
    case Ignored::reply_header_invalid: return "reply_header_invalid";
    case Ignored::reply_client_mismatch: return "reply_client_mismatch";
    case Ignored::reply_release_mismatch: return "reply_release_mismatch";
    case Ignored::reply_without_request: return "reply_without_request";
    case Ignored::reply_request_mismatch: return "reply_request_mismatch";
    case Ignored::reply_checksum_mismatch: return "reply_checksum_mismatch";
    case Ignored::reply_operation_mismatch: return "reply_operation_mismatch";
    case Ignored::register_result_invalid: return "register_result_invalid";
    case Ignored::pong_invalid: return "pong_invalid";
    case Ignored::eviction_invalid: return "eviction_invalid";
    case Ignored::eviction_client_mismatch: return "eviction_client_mismatch";
    case Ignored::eviction_view_old: return "eviction_view_old";
  }
  return "unknown";
}

struct SessionStats {
  u64 requests_sent = 0;      // First sends, register included.
  u64 retransmissions = 0;    // Timeouts that resent the request in flight.
  u64 replies_accepted = 0;   // Register included.
  u64 pings_sent = 0;         // ping_client messages handed to the bus (one per replica).
  u64 pings_skipped = 0;      // Ping rounds skipped because the pool had no free message.
  u64 pongs_received = 0;
  u64 ignored[ignored_reason_count] = {};

  u64 ignored_count(Ignored reason) const { return ignored[static_cast<u32>(reason)]; }
  u64 ignored_total() const {
    u64 total = 0;
    for (const u64 count : ignored) total += count;
    return total;
  }
};

enum class SessionState : u8 { idle, registering, registered, evicted, closed };

constexpr const char* name(SessionState state) {
  switch (state) {
    case SessionState::idle: return "idle";
    case SessionState::registering: return "registering";
    case SessionState::registered: return "registered";
    case SessionState::evicted: return "evicted";
    case SessionState::closed: return "closed";
  }
  return "unknown";
}

struct SessionOptions {
  u128 cluster = 0;
  u128 client = 0;  // Non-zero; random per session and never reused.
  u8 replica_count = 1;
  u64 seed = 0;     // Jitter and hedging.
  u32 release = release_client_node;
};

// What a request's callback learns. The messages are valid during the callback only; a callback
// that keeps one takes a reference from the pool.
struct SessionCompletion {
  ClientError error = ClientError::ok;
  EvictionReason eviction_reason = EvictionReason::reserved;  // With ClientError::evicted.
  const base::Message* request = nullptr;  // Always set: the request as submitted.
  const base::Message* reply = nullptr;    // ClientError::ok only.
};

using SessionCallback = void (*)(void* context, const SessionCompletion& completion);

template <typename Bus>
concept SessionBus = requires(Bus& bus, u8 replica, base::Message* message) {
  { bus.send_to_replica(replica, message) } -> std::same_as<void>;
  { bus.pool() } -> std::same_as<base::MessagePool&>;
};

template <SessionBus Bus>
class Session {
 public:
  Session(Bus& bus, const SessionOptions& options)
      : bus_(bus), options_(options), prng_(options.seed) {
    TALLY_ASSERT(options.client != 0, "a client id must not be zero");
    TALLY_ASSERT(options.replica_count >= 1 && options.replica_count <= replicas_max);
    TALLY_ASSERT(options.release != 0);
    TALLY_ASSERT(bus.pool().message_size() >= header_size + sizeof(RegisterRequest));
  }

  // Releases held messages without running callbacks: no user code runs from a destructor.
  ~Session() {
    while (!queue_.empty()) bus_.pool().unref(queue_.pop_front().message);
    if (register_message_ != nullptr) bus_.pool().unref(register_message_);
  }

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Sends the register request and the first pings. Returns false (and stays idle) if the pool
  // has no free message; call again later.
  bool start() {
    TALLY_ASSERT(state_ == SessionState::idle);
    base::Message* message = bus_.pool().get();
    if (message == nullptr) return false;
    Header& header = message->header();
    header.size = header_size + sizeof(RegisterRequest);
    header.request.operation = Operation::register_session;
    std::memset(message->buffer + header_size, 0, sizeof(RegisterRequest));
    register_message_ = message;
    state_ = SessionState::registering;
    send_first(message);
    ping_send();
    return true;
  }

  void tick() {
    ticks_ += 1;
    if (!active()) return;
    if (ticks_ >= ping_tick_next_) ping_send();
    if (inflight_ != nullptr && ticks_ >= request_tick_timeout_) retransmit();
  }

  // A message the bus received, its checksums verified by the bus. The frame and the cluster are
  // checked again (cheaply) so that the session holds its own rules whatever bus delivers.
  void on_message(const base::Message* message) {
    TALLY_ASSERT(message != nullptr);
    const Header& header = message->header();
    if (validate_frame(header) != HeaderError::none) return ignore(Ignored::frame_invalid);
    if (header.cluster != options_.cluster) return ignore(Ignored::cluster_mismatch);
    if (!active()) return ignore(Ignored::session_over);
    switch (header.command) {
      case Command::reply: return on_reply(message);
      case Command::pong_client: return on_pong(header);
      case Command::eviction: return on_eviction(header);
      default: return ignore(Ignored::command_misdirected);
    }
  }

  // A message to fill with a request body of at most body_size_max() bytes, then submit(); nullptr
  // if the pool has none free.
  base::Message* message_get() { return bus_.pool().get(); }

  u32 body_size_max() const {
    const u32 pool_body_size_max = bus_.pool().message_size() - header_size;
    return pool_body_size_max < batch_size_limit_ ? pool_body_size_max : batch_size_limit_;
  }

  // Queues a request whose body (body_size bytes) the caller wrote into `message`, taking over
  // the caller's reference whatever the result. The callback runs once the request completes,
  // never from inside submit(); any error returned here means it will not run.
  ClientError submit(base::Message* message, Operation operation, u32 body_size,
                     SessionCallback callback, void* context) {
    TALLY_ASSERT(bus_.pool().owned(message) && message->references > 0);
    TALLY_ASSERT(callback != nullptr);
    TALLY_ASSERT(body_size <= bus_.pool().message_size() - header_size,
                 "a body larger than the message buffer (%u bytes)", body_size);
    const ClientError error = submit_check(message, operation, body_size);
    if (error != ClientError::ok) {
      bus_.pool().unref(message);
      return error;
    }
    Header& header = message->header();
    header = Header{};
    header.size = header_size + body_size;
    header.request.operation = operation;
    queue_.push_back(Entry{.message = message, .callback = callback, .context = context});
    if (state_ == SessionState::registered && inflight_ == nullptr) {
      TALLY_ASSERT(queue_.count() == 1);
      send_first(message);
    }
    return ClientError::ok;
  }

  // Copies `body` into a message and submits it.
  ClientError submit(Operation operation, std::span<const std::byte> body,
                     SessionCallback callback, void* context) {
    if (const ClientError error = state_error(); error != ClientError::ok) return error;
    if (body.size() > body_size_max()) return ClientError::batch_too_large;
    base::Message* message = message_get();
    if (message == nullptr) return ClientError::queue_full;
    if (!body.empty()) std::memcpy(message->buffer + header_size, body.data(), body.size());
    return submit(message, operation, static_cast<u32>(body.size()), callback, context);
  }

  // Ends the session: every request held completes with ClientError::closed. Idempotent.
  void close() {
    if (state_ == SessionState::closed) return;
    state_ = SessionState::closed;
    inflight_ = nullptr;
    if (register_message_ != nullptr) {
      bus_.pool().unref(register_message_);
      register_message_ = nullptr;
    }
    complete_all(SessionCompletion{.error = ClientError::closed});
  }

  SessionState state() const { return state_; }
  u128 client() const { return options_.client; }
  u64 session() const { return session_; }
  u32 view() const { return view_; }
  u8 primary() const { return static_cast<u8>(view_ % options_.replica_count); }
  u32 batch_size_limit() const { return batch_size_limit_; }
  EvictionReason eviction_reason() const { return eviction_reason_; }
  // User requests held, the one in flight included.
  u32 request_count() const { return queue_.count(); }
  // The request number the last accepted reply answered (0: register).
  u32 request_number() const { return request_number_; }
  u64 ticks() const { return ticks_; }
  u64 rtt_ticks() const { return rtt_ticks_; }
  // The tick at which the request in flight is next retransmitted (0 if none is in flight).
  u64 request_tick_timeout() const { return inflight_ == nullptr ? 0 : request_tick_timeout_; }
  u32 request_attempts() const { return request_attempts_; }
  const SessionStats& stats() const { return stats_; }

 private:
  struct Entry {
    base::Message* message = nullptr;
    SessionCallback callback = nullptr;
    void* context = nullptr;
  };

  bool active() const {
    return state_ == SessionState::registering || state_ == SessionState::registered;
  }

  ClientError state_error() const {
    switch (state_) {
      case SessionState::evicted: return ClientError::evicted;
      case SessionState::closed: return ClientError::closed;
      case SessionState::idle:
      case SessionState::registering:
      case SessionState::registered: return ClientError::ok;
    }
    return ClientError::closed;
  }

  ClientError submit_check(const base::Message* message, Operation operation,
                           u32 body_size) const {
    if (const ClientError error = state_error(); error != ClientError::ok) return error;
    if (!operation_is_state_machine(operation) || operation == Operation::state_machine_pulse) {
      return ClientError::operation_invalid;
    }
    if (body_size > batch_size_limit_) return ClientError::batch_too_large;
    // The cluster would evict the session for a body it cannot decode (reason 5): refuse it
    // here, where only this request fails.
    const std::span<const std::byte> body(message->buffer + header_size, body_size);
    const ClientError body_error = request_body_error(validate_request_body(operation, body));
    if (body_error != ClientError::ok) return body_error;
    if (queue_.full()) return ClientError::queue_full;
    return ClientError::ok;
  }

  // Numbers, chains and seals the request, then sends it; it is in flight from now on.
  void send_first(base::Message* message) {
    TALLY_ASSERT(inflight_ == nullptr);
    TALLY_ASSERT(active());
    Header& header = message->header();
    const bool registering = header.request.operation == Operation::register_session;
    TALLY_ASSERT(registering == (state_ == SessionState::registering));
    header.command = Command::request;
    header.cluster = options_.cluster;
    header.view = view_;
    header.release = options_.release;
    header.replica = 0;
    header.request.client = options_.client;
    header.request.parent = registering ? 0 : parent_;
    header.request.session = session_;
    header.request.request = registering ? 0 : request_number_ + 1;
    header.request.previous_request_latency = previous_request_latency_us_;
    set_checksum_body(header, message->body());
    set_checksum(header);
    TALLY_ASSERT(validate_frame(header) == HeaderError::none);
    TALLY_ASSERT(validate_request(header) == HeaderError::none, "request header: %s",
                 name(validate_request(header)));

    inflight_ = message;
    request_tick_sent_ = ticks_;
    request_attempts_ = 0;
    request_tick_timeout_ = ticks_ + rtt_ticks_ * rtt_multiple;
    stats_.requests_sent += 1;

    bus_.send_to_replica(primary(), message);
    if (options_.replica_count > 1) {
      // Any replica but the primary, uniformly.
      const u8 offset = static_cast<u8>(1 + prng_.index(u32{options_.replica_count} - 1));
      bus_.send_to_replica(replica_after_primary(offset), message);
    }
  }

  void retransmit() {
    TALLY_ASSERT(inflight_ != nullptr);
    request_attempts_ += 1;
    stats_.retransmissions += 1;
    request_tick_timeout_ = ticks_ + rtt_ticks_ * rtt_multiple +
                            backoff_with_jitter(prng_, backoff_ticks_min, backoff_ticks_max,
                                                request_attempts_);
    bus_.send_to_replica(primary(), inflight_);
    const u8 rotation = static_cast<u8>((view_ + request_attempts_) % options_.replica_count);
    if (rotation != primary()) bus_.send_to_replica(rotation, inflight_);
  }

  u8 replica_after_primary(u8 offset) const {
    TALLY_ASSERT(offset > 0 && offset < options_.replica_count);
    return static_cast<u8>((u32{primary()} + offset) % options_.replica_count);
  }

  void ping_send() {
    ping_tick_next_ = ticks_ + ping_interval_ticks;
    base::Message* message = bus_.pool().get();
    if (message == nullptr) {
      stats_.pings_skipped += 1;
      return;
    }
    Header& header = message->header();
    header.command = Command::ping_client;
    header.cluster = options_.cluster;
    header.size = header_size;
    header.release = options_.release;
    header.ping_client.client = options_.client;
    // Ticks stand in for the monotonic clock: the replica only echoes the value.
    header.ping_client.ping_timestamp_monotonic = ticks_ * tick_ns;
    header.ping_client.session = session_;
    header.checksum_body = checksum_empty;
    set_checksum(header);
    TALLY_ASSERT(validate_ping_client(header) == HeaderError::none);
    for (u8 replica = 0; replica < options_.replica_count; replica++) {
      bus_.send_to_replica(replica, message);
      stats_.pings_sent += 1;
    }
    bus_.pool().unref(message);
  }

  void on_reply(const base::Message* message) {
    const Header& header = message->header();
    if (validate_reply(header) != HeaderError::none) return ignore(Ignored::reply_header_invalid);
    const Header::Reply& reply = header.reply;
    if (reply.client != options_.client) return ignore(Ignored::reply_client_mismatch);
    if (header.release != options_.release) return ignore(Ignored::reply_release_mismatch);
    if (inflight_ == nullptr) return ignore(Ignored::reply_without_request);
    const Header& request = inflight_->header();
    if (reply.request != request.request.request) return ignore(Ignored::reply_request_mismatch);
    if (reply.request_checksum != request.checksum) {
      return ignore(Ignored::reply_checksum_mismatch);
    }
    if (reply.operation != request.request.operation) {
      return ignore(Ignored::reply_operation_mismatch);
    }

    if (reply.operation == Operation::register_session) {
      TALLY_ASSERT(state_ == SessionState::registering && inflight_ == register_message_);
      // validate_reply() has checked that the body is exactly one RegisterResult.
      RegisterResult result;
      std::memcpy(&result, message->buffer + header_size, sizeof(result));
      if (result.batch_size_limit == 0 || result.batch_size_limit > message_body_size_max) {
        return ignore(Ignored::register_result_invalid);
      }
      accept(header);
      session_ = reply.commit;
      batch_size_limit_ = result.batch_size_limit;
      state_ = SessionState::registered;
      bus_.pool().unref(register_message_);
      register_message_ = nullptr;
      on_registered();
      return;
    }

    TALLY_ASSERT(state_ == SessionState::registered);
    TALLY_ASSERT(!queue_.empty() && queue_.front().message == inflight_);
    accept(header);
    request_number_ = reply.request;
    const Entry entry = queue_.pop_front();
    if (!queue_.empty()) send_first(queue_.front().message);
    entry.callback(entry.context, SessionCompletion{.request = entry.message, .reply = message});
    bus_.pool().unref(entry.message);
  }

  void accept(const Header& header) {
    stats_.replies_accepted += 1;
    parent_ = header.reply.context;
    if (header.view > view_) view_ = header.view;
    const u64 latency_ticks = ticks_ - request_tick_sent_;
    const u64 latency_us = latency_ticks * (tick_ns / 1000);
    previous_request_latency_us_ =
        latency_us > 0xFFFFFFFF ? 0xFFFFFFFF : static_cast<u32>(latency_us);
    inflight_ = nullptr;
  }

  // Queued requests that no longer fit the cluster's batch_size_limit fail; the rest go on.
  void on_registered() {
    TALLY_ASSERT(inflight_ == nullptr);
    base::BoundedArray<Entry, request_queue_max> too_large;
    const u32 count = queue_.count();
    for (u32 index = 0; index < count; index++) {
      const Entry entry = queue_.pop_front();
      if (entry.message->header().size - header_size > batch_size_limit_) {
        too_large.push(entry);
      } else {
        queue_.push_back(entry);
      }
    }
    if (!queue_.empty()) send_first(queue_.front().message);
    for (const Entry& entry : too_large.span()) {
      entry.callback(entry.context, SessionCompletion{.error = ClientError::batch_too_large,
                                                      .request = entry.message});
      bus_.pool().unref(entry.message);
    }
  }

  void on_pong(const Header& header) {
    if (validate_pong_client(header) != HeaderError::none) return ignore(Ignored::pong_invalid);
    stats_.pongs_received += 1;
    if (header.view > view_) view_ = header.view;
    const u64 ping_tick = header.pong_client.ping_timestamp_monotonic / tick_ns;
    // An echo from the future is a replica's bug; it must not shrink or overflow the estimate.
    if (ping_tick > ticks_) return;
    const u64 sample = ticks_ - ping_tick;
    rtt_ticks_ = sample < rtt_ticks_initial ? rtt_ticks_initial
                 : sample > rtt_ticks_max   ? rtt_ticks_max
                                            : sample;
  }

  void on_eviction(const Header& header) {
    if (validate_eviction(header) != HeaderError::none) return ignore(Ignored::eviction_invalid);
    if (header.eviction.client != options_.client) {
      return ignore(Ignored::eviction_client_mismatch);
    }
    if (header.view < view_) return ignore(Ignored::eviction_view_old);
    state_ = SessionState::evicted;
    eviction_reason_ = header.eviction.reason;
    inflight_ = nullptr;
    if (register_message_ != nullptr) {
      bus_.pool().unref(register_message_);
      register_message_ = nullptr;
    }
    complete_all(SessionCompletion{.error = ClientError::evicted,
                                   .eviction_reason = eviction_reason_});
  }

  // Completes every queued request with `completion`'s error. Each entry leaves the queue before
  // its callback runs, and the state already refuses submit(), so callbacks cannot disturb it.
  void complete_all(SessionCompletion completion) {
    TALLY_ASSERT(!active() && inflight_ == nullptr);
    TALLY_ASSERT(completion.error != ClientError::ok);
    while (!queue_.empty()) {
      const Entry entry = queue_.pop_front();
      completion.request = entry.message;
      entry.callback(entry.context, completion);
      bus_.pool().unref(entry.message);
    }
  }

  void ignore(Ignored reason) { stats_.ignored[static_cast<u32>(reason)] += 1; }

  Bus& bus_;
  const SessionOptions options_;
  base::Prng prng_;
  SessionState state_ = SessionState::idle;

  u64 session_ = 0;
  u128 parent_ = 0;
  u32 request_number_ = 0;
  u32 view_ = 0;
  u32 batch_size_limit_ = message_body_size_max;
  EvictionReason eviction_reason_ = EvictionReason::reserved;

  base::RingBuffer<Entry, request_queue_max> queue_;
  base::Message* register_message_ = nullptr;  // While registering: the request in flight.
  base::Message* inflight_ = nullptr;

  u64 ticks_ = 0;
  u64 ping_tick_next_ = 0;
  u64 rtt_ticks_ = rtt_ticks_initial;
  u64 request_tick_sent_ = 0;
  u64 request_tick_timeout_ = 0;
  u32 request_attempts_ = 0;
  u32 previous_request_latency_us_ = 0;

  SessionStats stats_;
};

}  // namespace tally::client
