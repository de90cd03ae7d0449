// tally::Client: the session logic (session.hpp) joined to a real io_uring loop and a client
// message bus, with blocking calls that run the loop until their reply arrives.
//
// Composition, built once in open() (the only allocation):
//
//   Client ──> Implementation { Loop, MessagePool, MessageBus (client kind), Session, tick timer }
//   call: encode into a pool message ──> Session::submit ──> run the loop ──> completion callback
//         checks the reply body (reply_body.hpp) and copies the results into the caller's span
//
// The loop runs only inside a call (and in close()), so nothing happens between calls; a 10 ms
// timeout completion drives Session::tick() and MessageBus::tick(), as TigerBeetle's clients tick.
//
// Invariants: at most one call is active; the completion callback writes into the caller's span
// only while that call is active (a late reply, after a timeout, finds no active call and is
// dropped); after a timeout the client refuses every call (ClientError::closed), because the
// request in flight may still commit and its session must not carry on as if it had not.
#include "tally/client.hpp"

#include <sys/random.h>
#include <sys/types.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>

#include "io/address.hpp"
#include "io/loop.hpp"
#include "io/message_bus.hpp"
#include "src/base/assert.hpp"
#include "src/base/message_pool.hpp"
#include "src/client/reply_body.hpp"
#include "src/client/request_body.hpp"
#include "src/client/session.hpp"

namespace tally {

namespace {

using Session = client::Session<io::MessageBus>;

// At most this many messages wait to be sent on one connection, as TigerBeetle's clients do
// (protocol §1.2): more are dropped and the request's timeout retransmits it. The bound is what
// keeps a replica that accepts but does not read (still starting) from holding every message
// of the pool in its queue, which would leave none for the user's next call.
constexpr u32 send_queue_max = 2;
// The message pool of one client: per connection a receive buffer, a copied message and the
// send queue; besides, the request in flight and the next, a ping, and room for references the
// bus lets go of only when a send completes.
constexpr u32 messages_per_replica = 2 + send_queue_max;
constexpr u32 messages_fixed = 6;

u128 client_id_random() {
  u128 id = 0;
  while (id == 0) {
    std::byte* bytes = reinterpret_cast<std::byte*>(&id);
    std::size_t filled = 0;
    while (filled < sizeof(id)) {
      const ssize_t result = getrandom(bytes + filled, sizeof(id) - filled, 0);
      if (result < 0 && errno == EINTR) continue;
      // getrandom() exists on every kernel with io_uring, and 16 bytes never block after boot.
      TALLY_ASSERT(result > 0, "getrandom failed: %s", std::strerror(errno));
      filled += static_cast<std::size_t>(result);
    }
  }
  return id;
}

}  // namespace

struct Client::Implementation {
  // What the active call waits for, and where its results go.
  struct Call {
    bool active = false;
    bool done = false;
    bool raw = false;  // submit(): the whole reply body, else batch 0's results.
    std::span<std::byte> output;
    u32 result_size = 0;
    ClientResult result;
  };

  io::Loop loop;
  base::MessagePool pool;
  io::MessageBus bus;
  std::optional<Session> session;
  io::Completion tick_completion;
  io::Completion tick_cancel_completion;
  u64 timeout_ns = 0;
  bool closing = false;
  bool timed_out = false;
  Call call;

  void open(const ClientOptions& options, std::span<const io::Address> addresses, u128 id) {
    timeout_ns = options.timeout_ms * 1'000'000;
    const u32 replica_count = static_cast<u32>(addresses.size());
    loop.init(io::Loop::entries_default);
    pool.init(messages_fixed + messages_per_replica * replica_count, message_size_max);
    bus.init(&loop, &pool,
             io::MessageBusOptions{
                 .kind = io::BusKind::client,
                 .cluster = options.cluster,
                 .addresses = addresses,
                 .connections_max = replica_count,
                 .send_queue_max = send_queue_max,
             },
             on_message, this);
    session.emplace(bus, client::SessionOptions{
                             .cluster = options.cluster,
                             .client = id,
                             .replica_count = static_cast<u8>(replica_count),
                             .seed = static_cast<u64>(id),
                         });
    const bool started = session->start();
    TALLY_ASSERT(started, "a new pool has free messages");
    tick_completion.context = this;
    loop.timeout(&tick_completion, on_tick, client::tick_ns);
  }

  void close() {
    TALLY_ASSERT(!closing);
    closing = true;
    call.active = false;
    session->close();
    if (tick_completion.state != io::CompletionState::idle) {
      loop.cancel(&tick_cancel_completion, on_tick_cancel, &tick_completion);
    }
    while (loop.in_flight_count() > 0 &&
           (tick_completion.state != io::CompletionState::idle ||
            tick_cancel_completion.state != io::CompletionState::idle)) {
      loop.run_once(client::tick_ns);
    }
    bus.deinit();
    session.reset();
    TALLY_ASSERT(loop.in_flight_count() == 0);
    loop.deinit();
  }

  static void on_message(void* context, base::Message* message) {
    auto* self = static_cast<Implementation*>(context);
    if (self->session.has_value()) self->session->on_message(message);
  }

  static void on_tick(io::Completion* completion) {
    auto* self = static_cast<Implementation*>(completion->context);
    if (self->closing) return;
    self->session->tick();
    self->bus.tick();
    self->loop.timeout(&self->tick_completion, on_tick, client::tick_ns);
  }

  static void on_tick_cancel(io::Completion*) {}

  static void on_completion(void* context, const client::SessionCompletion& completion) {
    auto* self = static_cast<Implementation*>(context);
    Call& call = self->call;
    if (!call.active) return;
    call.active = false;
    call.done = true;
    ClientResult& result = call.result;
    if (completion.error != ClientError::ok) {
      result.error = completion.error;
      result.eviction_reason = completion.eviction_reason;
      return;
    }
    const Header& reply = completion.reply->header();
    client::ReplyReader reader;
    const client::ReplyBodyError error = reader.read(
        reply.reply.operation, completion.request->body(), completion.reply->body());
    if (error != client::ReplyBodyError::none) {
      result.error = ClientError::reply_invalid;
      return;
    }
    const std::span<const std::byte> results =
        call.raw ? completion.reply->body() : reader.batch_bytes(0);
    // The caller's span was checked against the most results the request allows, and the
    // reply against the request, so this only fails if those two checks disagree.
    if (results.size() > call.output.size()) {
      result.error = ClientError::result_buffer_too_small;
      return;
    }
    if (!results.empty()) std::memcpy(call.output.data(), results.data(), results.size());
    result.count = static_cast<u32>(call.raw ? results.size() : results.size() / call.result_size);
    result.timestamp = reply.reply.timestamp;
  }

  // Why no call can start now, or ok.
  ClientResult state_check() const {
    if (timed_out) return {.error = ClientError::closed};
    switch (session->state()) {
      case client::SessionState::evicted:
        return {.error = ClientError::evicted, .eviction_reason = session->eviction_reason()};
      case client::SessionState::closed:
      case client::SessionState::idle: return {.error = ClientError::closed};
      case client::SessionState::registering:
      case client::SessionState::registered: break;
    }
    return {};
  }

  // Submits `message` (its body written, body_size bytes) and runs the loop until the reply, an
  // eviction or the deadline.
  ClientResult run(base::Message* message, Operation operation, u32 body_size) {
    TALLY_ASSERT(!call.active);
    call.active = true;
    call.done = false;
    call.result = {};
    const ClientError error =
        session->submit(message, operation, body_size, on_completion, this);
    if (error != ClientError::ok) {
      call.active = false;
      return {.error = error, .eviction_reason = session->eviction_reason()};
    }
    const u64 deadline_ns = timeout_ns == 0 ? 0 : loop.time().monotonic_ns() + timeout_ns;
    while (!call.done) {
      u64 wait_ns = client::tick_ns;
      if (deadline_ns != 0) {
        const u64 now_ns = loop.time().monotonic_ns();
        if (now_ns >= deadline_ns) {
          call.active = false;
          timed_out = true;
          return {.error = ClientError::timeout};
        }
        if (deadline_ns - now_ns < wait_ns) wait_ns = deadline_ns - now_ns;
      }
      loop.run_once(wait_ns);
    }
    return call.result;
  }

  // One batch of typed events; `results_needed` results of Result must fit `results`.
  template <typename Event, typename Result>
  ClientResult call_batch(Operation operation, std::span<const Event> events,
                          std::span<Result> results, u64 results_needed) {
    if (const ClientResult state = state_check(); !state.ok()) return state;
    base::Message* message = session->message_get();
    if (message == nullptr) return {.error = ClientError::queue_full};
    const std::span<std::byte> body(message->buffer + header_size, session->body_size_max());
    const client::BodyEncoding encoding = client::encode_batch<Event>(operation, events, body);
    ClientError error = encoding.error;
    if (error == ClientError::ok && results.size() < results_needed) {
      error = ClientError::result_buffer_too_small;
    }
    if (error != ClientError::ok) {
      pool.unref(message);
      return {.error = error};
    }
    call.raw = false;
    call.output = std::as_writable_bytes(results);
    call.result_size = sizeof(Result);
    return run(message, operation, encoding.size);
  }

  ClientResult call_raw(Operation operation, std::span<const std::byte> body,
                        std::span<std::byte> reply_body) {
    if (const ClientResult state = state_check(); !state.ok()) return state;
    if (!operation_is_state_machine(operation) || operation == Operation::state_machine_pulse) {
      return {.error = ClientError::operation_invalid};
    }
    if (body.size() > session->body_size_max()) return {.error = ClientError::batch_too_large};
    const client::ReplySizeMax reply_size = client::reply_size_max(operation, body);
    if (reply_size.error != ClientError::ok) return {.error = reply_size.error};
    if (reply_body.size() < reply_size.size) {
      return {.error = ClientError::result_buffer_too_small};
    }
    base::Message* message = session->message_get();
    if (message == nullptr) return {.error = ClientError::queue_full};
    if (!body.empty()) std::memcpy(message->buffer + header_size, body.data(), body.size());
    call.raw = true;
    call.output = reply_body;
    call.result_size = operation_result_size(operation);
    return run(message, operation, static_cast<u32>(body.size()));
  }
};

Client::Client() = default;

Client::~Client() { close(); }

Client::Client(Client&& other) noexcept
    : implementation_(std::move(other.implementation_)), error_message_(other.error_message_) {}

Client& Client::operator=(Client&& other) noexcept {
  if (this != &other) {
    close();
    implementation_ = std::move(other.implementation_);
    error_message_ = other.error_message_;
  }
  return *this;
}

ClientError Client::open(const ClientOptions& options) {
  error_message_[0] = '\0';
  if (implementation_ != nullptr) {
    std::snprintf(error_message_.data(), error_message_.size(),
                  "the client is already open: close() it first");
    return ClientError::options_invalid;
  }
  if (options.timeout_ms > client_timeout_ms_max) {
    std::snprintf(error_message_.data(), error_message_.size(),
                  "timeout_ms %llu is above the maximum of %llu (a day)",
                  static_cast<unsigned long long>(options.timeout_ms),
                  static_cast<unsigned long long>(client_timeout_ms_max));
    return ClientError::options_invalid;
  }
  const io::AddressList addresses = io::addresses_parse(options.addresses);
  if (!addresses.ok()) {
    std::snprintf(error_message_.data(), error_message_.size(), "%s", addresses.error_message);
    return ClientError::address_invalid;
  }
  auto implementation = std::make_unique<Implementation>();
  implementation->open(options, addresses.span(), client_id_random());
  implementation_ = std::move(implementation);
  return ClientError::ok;
}

void Client::close() {
  if (implementation_ == nullptr) return;
  implementation_->close();
  implementation_.reset();
}

bool Client::is_open() const { return implementation_ != nullptr; }

ClientResult Client::create_accounts(std::span<const Account> accounts,
                                     std::span<CreateAccountResult> results) {
  if (implementation_ == nullptr) return {.error = ClientError::closed};
  return implementation_->call_batch(Operation::create_accounts, accounts, results,
                                     accounts.size());
}

ClientResult Client::create_transfers(std::span<const Transfer> transfers,
                                      std::span<CreateTransferResult> results) {
  if (implementation_ == nullptr) return {.error = ClientError::closed};
  return implementation_->call_batch(Operation::create_transfers, transfers, results,
                                     transfers.size());
}

ClientResult Client::lookup_accounts(std::span<const u128> ids, std::span<Account> accounts) {
  if (implementation_ == nullptr) return {.error = ClientError::closed};
  return implementation_->call_batch(Operation::lookup_accounts, ids, accounts, ids.size());
}

ClientResult Client::lookup_transfers(std::span<const u128> ids, std::span<Transfer> transfers) {
  if (implementation_ == nullptr) return {.error = ClientError::closed};
  return implementation_->call_batch(Operation::lookup_transfers, ids, transfers, ids.size());
}

ClientResult Client::get_account_transfers(const AccountFilter& filter,
                                           std::span<Transfer> transfers) {
  if (implementation_ == nullptr) return {.error = ClientError::closed};
  return implementation_->call_batch(Operation::get_account_transfers,
                                     std::span<const AccountFilter>(&filter, 1), transfers,
                                     filter.limit);
}

ClientResult Client::get_account_balances(const AccountFilter& filter,
                                          std::span<AccountBalance> balances) {
  if (implementation_ == nullptr) return {.error = ClientError::closed};
  return implementation_->call_batch(Operation::get_account_balances,
                                     std::span<const AccountFilter>(&filter, 1), balances,
                                     filter.limit);
}

ClientResult Client::query_accounts(const QueryFilter& filter, std::span<Account> accounts) {
  if (implementation_ == nullptr) return {.error = ClientError::closed};
  return implementation_->call_batch(Operation::query_accounts,
                                     std::span<const QueryFilter>(&filter, 1), accounts,
                                     filter.limit);
}

ClientResult Client::query_transfers(const QueryFilter& filter, std::span<Transfer> transfers) {
  if (implementation_ == nullptr) return {.error = ClientError::closed};
  return implementation_->call_batch(Operation::query_transfers,
                                     std::span<const QueryFilter>(&filter, 1), transfers,
                                     filter.limit);
}

ClientResult Client::submit(Operation operation, std::span<const std::byte> body,
                            std::span<std::byte> reply_body) {
  if (implementation_ == nullptr) return {.error = ClientError::closed};
  return implementation_->call_raw(operation, body, reply_body);
}

u128 Client::client_id() const {
  return implementation_ == nullptr ? 0 : implementation_->session->client();
}

u64 Client::session() const {
  return implementation_ == nullptr ? 0 : implementation_->session->session();
}

u32 Client::view() const {
  return implementation_ == nullptr ? 0 : implementation_->session->view();
}

u32 Client::batch_size_limit() const {
  return implementation_ == nullptr ? message_body_size_max
                                    : implementation_->session->batch_size_limit();
}

const char* Client::error_message() const { return error_message_.data(); }

}  // namespace tally
