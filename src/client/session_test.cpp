// Tests of the client session against a scripted replica (client_test_support.hpp): the test
// plays the cluster, decoding what the session sent and answering with valid or deliberately
// wrong messages.
//
// Goals: the register and first request are byte for byte the protocol's vectors (§14 V2, V4);
// requests are numbered 1, 2, 3 with each parent the previous reply's context, one in flight at a
// time; every kind of wrong reply is ignored for its own named reason and the right reply is then
// still accepted; a timeout resends the identical bytes, with a growing, jittered backoff, to the
// primary and in rotation to the others; the view (hence the primary) follows replies, pongs and
// evictions; an eviction fails every request with its reason and ends the session; the queue is
// bounded; bodies the cluster would evict for are refused; the same seed gives the same run.
#include "src/client/session.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "io/message_bus.hpp"
#include "io/sim/network.hpp"
#include "src/client/client_test_support.hpp"
#include "tally/multi_batch.hpp"

namespace tally::client {
namespace {

// The same session runs on the real bus, the simulator's network and the tests' recording bus.
static_assert(SessionBus<io::MessageBus>);
static_assert(SessionBus<io::sim::Network::Endpoint>);
static_assert(SessionBus<testing::TestBus>);

using testing::bytes_of;
using testing::hex_bytes;
using testing::reseal;
using testing::ScriptedReplica;
using testing::Sent;
using testing::TestBus;

constexpr u128 client_id = make_u128(0x0123456789abcdef, 0x0123456789abcdef);

struct Outcome {
  ClientError error = ClientError::ok;
  EvictionReason eviction_reason = EvictionReason::reserved;
  u32 request = 0;
  Operation operation = Operation::reserved;
  std::vector<std::byte> reply_body;
  u64 reply_timestamp = 0;
};

struct Outcomes {
  std::vector<Outcome> list;

  static void callback(void* context, const SessionCompletion& completion) {
    auto* outcomes = static_cast<Outcomes*>(context);
    Outcome outcome;
    outcome.error = completion.error;
    outcome.eviction_reason = completion.eviction_reason;
    REQUIRE(completion.request != nullptr);
    outcome.request = completion.request->header().request.request;
    outcome.operation = completion.request->header().request.operation;
    if (completion.error == ClientError::ok) {
      REQUIRE(completion.reply != nullptr);
      outcome.reply_body = bytes_of(completion.reply->body());
      outcome.reply_timestamp = completion.reply->header().reply.timestamp;
    } else {
      CHECK(completion.reply == nullptr);
    }
    outcomes->list.push_back(std::move(outcome));
  }
};

// A lookup_accounts body of one batch with one id: 16 bytes of id, 16 of trailer.
std::vector<std::byte> lookup_body(u128 id) {
  std::vector<std::byte> body(32);
  MultiBatchEncoder encoder(body, id_size);
  REQUIRE(encoder.batch_add(std::as_bytes(std::span<const u128, 1>(&id, 1))) ==
          MultiBatchEncodeError::none);
  REQUIRE(encoder.finish() == MultiBatchEncodeError::none);
  body.resize(encoder.size());
  return body;
}

// The reply to one lookup batch that found nothing: a 128-byte trailer.
std::vector<std::byte> lookup_reply_empty() {
  std::vector<std::byte> body(account_size);
  MultiBatchEncoder encoder(body, account_size);
  REQUIRE(encoder.batch_begin() == MultiBatchEncodeError::none);
  REQUIRE(encoder.finish() == MultiBatchEncodeError::none);
  return body;
}

// One session, its bus and the replica that answers it.
struct Harness {
  explicit Harness(u8 replica_count = 1, u64 seed = 42, u32 pool_capacity = 96)
      : bus(pool_capacity),
        replica(bus.pool()),
        session(bus, SessionOptions{.cluster = 0,
                                    .client = client_id,
                                    .replica_count = replica_count,
                                    .seed = seed}) {}

  ~Harness() {
    session.close();
    bus.clear();
  }

  // Hands a message to the session as the bus does: its reference is dropped afterwards.
  void deliver(base::Message* message) {
    session.on_message(message);
    bus.pool().unref(message);
  }

  // The request most recently sent (first send or retransmission).
  const base::Message& last_request() {
    const std::vector<Sent> requests = bus.sent_of(Command::request);
    REQUIRE(!requests.empty());
    return *requests.back().message;
  }

  void register_session(u32 batch_size_limit = message_body_size_max) {
    REQUIRE(session.start());
    base::Message* reply = replica.register_reply(last_request(), batch_size_limit);
    register_context = reply->header().reply.context;
    deliver(reply);
    REQUIRE(session.state() == SessionState::registered);
  }

  void submit_lookup(u128 id) {
    const std::vector<std::byte> body = lookup_body(id);
    REQUIRE(session.submit(Operation::lookup_accounts, body, Outcomes::callback, &outcomes) ==
            ClientError::ok);
  }

  void answer_last_request() {
    const std::vector<std::byte> body = lookup_reply_empty();
    deliver(replica.reply(last_request(), body));
  }

  void tick(u64 count) {
    for (u64 index = 0; index < count; index++) session.tick();
  }

  TestBus bus;
  ScriptedReplica replica;
  Session<TestBus> session;
  Outcomes outcomes;
  u128 register_context = 0;
};

// §14 V2..V5: client 0x0123..ef, cluster 0, release 0.17.9, view 0.
constexpr std::string_view vector_register_request = R"(
0000: f2af59ee4977ffd34506c8b7cfd0885000000000000000000000000000000000
0020: 651b82f3ddd4fcbf2deb8496e8ff613c00000000000000000000000000000000
0040: 0000000000000000000000000000000000000000000000000000000000000000
0060: 0002000000000000000000000911000000000500000000000000000000000000
0080: 0000000000000000000000000000000000000000000000000000000000000000
00a0: efcdab8967452301efcdab896745230100000000000000000000000000000000
00c0: 0000000002000000000000000000000000000000000000000000000000000000
00e0: 0000000000000000000000000000000000000000000000000000000000000000
)";

constexpr std::string_view vector_register_reply = R"(
0000: 36286725586eb31414d11e5253896a2600000000000000000000000000000000
0020: b5d20e04fd672c08f88ed62b32da1c1900000000000000000000000000000000
0040: 0000000000000000000000000000000000000000000000000000000000000000
0060: 4001000000000000000000000911000000000800000000000000000000000000
0080: f2af59ee4977ffd34506c8b7cfd0885000000000000000000000000000000000
00a0: 946f8d83c30b90175f2059c80ca5248c00000000000000000000000000000000
00c0: efcdab8967452301efcdab896745230101000000000000000100000000000000
00e0: 00002a36fe9c9717000000000200000000000000000000000000000000000000
0100: 00ff0f0000000000000000000000000000000000000000000000000000000000
0120: 0000000000000000000000000000000000000000000000000000000000000000
)";

constexpr std::string_view vector_create_accounts_request = R"(
0000: b898576259b1a07f5b0a0e73bf684b2e00000000000000000000000000000000
0020: 44096d0f68fff0b8f3baf92ad9f5314400000000000000000000000000000000
0040: 0000000000000000000000000000000000000000000000000000000000000000
0060: 0002000000000000000000000911000000000500000000000000000000000000
0080: 946f8d83c30b90175f2059c80ca5248c00000000000000000000000000000000
00a0: efcdab8967452301efcdab896745230101000000000000000000000000000000
00c0: 0100000092000000000000000000000000000000000000000000000000000000
00e0: 0000000000000000000000000000000000000000000000000000000000000000
)";

constexpr std::string_view vector_create_accounts_body = R"(
0000: 1100000000000000000000000000000000000000000000000000000000000000
0020: 0000000000000000000000000000000000000000000000000000000000000000
0040: 0000000000000000000000000000000000000000000000000000000000000000
0060: 0000000000000000000000000000000001000000ce0200000000000000000000
0080: ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff
00a0: ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff
00c0: ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff
00e0: ffffffffffffffffffffffffffffffffffffffffffffffffffffffff01000100
)";

constexpr std::string_view vector_create_accounts_reply = R"(
0000: ec3795ad0c0831bd193119d63aca591500000000000000000000000000000000
0020: e8b0a25d518424be11af7583f934d91100000000000000000000000000000000
0040: 0000000000000000000000000000000000000000000000000000000000000000
0060: 2001000000000000000000000911000000000800000000000000000000000000
0080: b898576259b1a07f5b0a0e73bf684b2e00000000000000000000000000000000
00a0: cb3d19cbd2001523b080fc9e2cd844ec00000000000000000000000000000000
00c0: efcdab8967452301efcdab896745230102000000000000000200000000000000
00e0: 01002a36fe9c9717010000009200000000000000000000000000000000000000
0100: 01002a36fe9c9717ffffffff00000000ffffffffffffffffffffffff01000100
)";

base::Message* message_from_bytes(base::MessagePool& pool, std::span<const std::byte> bytes) {
  base::Message* message = pool.get();
  REQUIRE(message != nullptr);
  REQUIRE(bytes.size() <= pool.message_size());
  std::memcpy(message->buffer, bytes.data(), bytes.size());
  REQUIRE(message->header().size == bytes.size());
  return message;
}

TEST_CASE("client session register and first request are the protocol vectors byte for byte") {
  Harness harness;
  REQUIRE(harness.session.start());
  CHECK(harness.session.state() == SessionState::registering);

  // The register request goes to the only replica, with the first ping.
  const std::vector<Sent> registers = harness.bus.sent_of(Command::request);
  REQUIRE(registers.size() == 1);
  CHECK(registers[0].replica == 0);
  const base::Message& register_request = *registers[0].message;
  CHECK(register_request.header().size == 512);
  CHECK(bytes_of(register_request.bytes().first(header_size)) ==
        hex_bytes(vector_register_request));
  CHECK(std::all_of(register_request.body().begin(), register_request.body().end(),
                    [](std::byte value) { return value == std::byte{0}; }));
  const std::vector<Sent> pings = harness.bus.sent_of(Command::ping_client);
  REQUIRE(pings.size() == 1);
  CHECK(validate_ping_client(pings[0].message->header()) == HeaderError::none);
  CHECK(pings[0].message->header().ping_client.client == client_id);
  CHECK(pings[0].message->header().ping_client.session == 0);

  // A user request submitted while registering waits: nothing more is sent.
  Account account = {};
  account.id = 17;
  account.ledger = 1;
  account.code = 718;
  const std::vector<std::byte> body = hex_bytes(vector_create_accounts_body);
  REQUIRE(std::memcmp(body.data(), &account, sizeof(account)) == 0);
  REQUIRE(harness.session.submit(Operation::create_accounts, body, Outcomes::callback,
                                 &harness.outcomes) == ClientError::ok);
  CHECK(harness.bus.sent_of(Command::request).size() == 1);
  CHECK(harness.session.request_count() == 1);

  // V3 registers session 1; the queued request goes out at once as V4.
  harness.deliver(message_from_bytes(harness.bus.pool(), hex_bytes(vector_register_reply)));
  CHECK(harness.session.state() == SessionState::registered);
  CHECK(harness.session.session() == 1);
  CHECK(harness.session.batch_size_limit() == message_body_size_max);
  const std::vector<Sent> requests = harness.bus.sent_of(Command::request);
  REQUIRE(requests.size() == 2);
  CHECK(bytes_of(requests[1].message->bytes().first(header_size)) ==
        hex_bytes(vector_create_accounts_request));
  CHECK(bytes_of(requests[1].message->body()) == body);
  CHECK(harness.outcomes.list.empty());

  // V5 answers it: the callback gets the dense result.
  harness.deliver(
      message_from_bytes(harness.bus.pool(), hex_bytes(vector_create_accounts_reply)));
  REQUIRE(harness.outcomes.list.size() == 1);
  const Outcome& outcome = harness.outcomes.list[0];
  CHECK(outcome.error == ClientError::ok);
  CHECK(outcome.request == 1);
  CHECK(outcome.operation == Operation::create_accounts);
  CHECK(outcome.reply_timestamp == 1'700'000'000'000'000'001);
  REQUIRE(outcome.reply_body.size() == 32);
  CreateAccountResult result;
  std::memcpy(&result, outcome.reply_body.data(), sizeof(result));
  CHECK(result.status == CreateAccountStatus::created);
  CHECK(result.timestamp == 1'700'000'000'000'000'001);
  CHECK(harness.session.request_number() == 1);
  CHECK(harness.session.request_count() == 0);
  CHECK(harness.session.stats().replies_accepted == 2);
  CHECK(harness.session.stats().ignored_total() == 0);
}

TEST_CASE("client session numbers requests 1 2 3 and chains each parent to the last context") {
  Harness harness;
  harness.register_session();
  CHECK(harness.last_request().header().request.request == 0);
  // Three requests queued at once: only the first is sent.
  harness.submit_lookup(1);
  harness.submit_lookup(2);
  harness.submit_lookup(3);
  CHECK(harness.session.request_count() == 3);
  CHECK(harness.bus.sent_of(Command::request).size() == 2);

  u128 previous_context = 0;
  for (u32 number = 1; number <= 3; number++) {
    const std::vector<Sent> requests = harness.bus.sent_of(Command::request);
    REQUIRE(requests.size() == 1 + number);
    const Header& request = requests.back().message->header();
    CHECK(request.request.request == number);
    CHECK(request.request.session == harness.session.session());
    CHECK(request.request.client == client_id);
    CHECK(request.release == release_client_node);
    CHECK(request.cluster == 0);
    CHECK(validate_request(request) == HeaderError::none);
    // The first parent is the register reply's context.
    CHECK(request.request.parent ==
          (number == 1 ? harness.register_context : previous_context));

    base::Message* reply = harness.replica.reply(*requests.back().message, lookup_reply_empty());
    previous_context = reply->header().reply.context;
    harness.deliver(reply);
    CHECK(harness.outcomes.list.size() == number);
    CHECK(harness.outcomes.list.back().request == number);
    CHECK(harness.outcomes.list.back().error == ClientError::ok);
  }
  CHECK(previous_context != 0);
  CHECK(harness.session.request_count() == 0);
  // Nothing was retransmitted: one send per request.
  CHECK(harness.session.stats().requests_sent == 4);
  CHECK(harness.session.stats().retransmissions == 0);
}

TEST_CASE("client session ignores every reply that does not match the request in flight") {
  Harness harness;
  harness.register_session();
  // A reply while nothing is in flight.
  {
    harness.deliver(harness.replica.register_reply(harness.last_request()));
    CHECK(harness.session.stats().ignored_count(Ignored::reply_without_request) == 1);
  }
  harness.submit_lookup(5);
  const base::Message& request = harness.last_request();
  const std::vector<std::byte> body = lookup_reply_empty();

  struct Case {
    const char* what;
    Ignored reason;
    void (*change)(Header& header);
  };
  const Case cases[] = {
      {"request number", Ignored::reply_request_mismatch,
       [](Header& header) { header.reply.request += 1; }},
      {"request checksum", Ignored::reply_checksum_mismatch,
       [](Header& header) { header.reply.request_checksum += 1; }},
      {"operation", Ignored::reply_operation_mismatch,
       [](Header& header) { header.reply.operation = Operation::lookup_transfers; }},
      {"client", Ignored::reply_client_mismatch,
       [](Header& header) { header.reply.client += 1; }},
      {"release", Ignored::reply_release_mismatch, [](Header& header) { header.release += 1; }},
      {"cluster", Ignored::cluster_mismatch, [](Header& header) { header.cluster = 7; }},
      {"epoch", Ignored::frame_invalid, [](Header& header) { header.epoch = 1; }},
      {"unknown command", Ignored::frame_invalid,
       [](Header& header) { header.command = static_cast<Command>(99); }},
      {"timestamp zero", Ignored::reply_header_invalid,
       [](Header& header) { header.reply.timestamp = 0; }},
      {"op not commit", Ignored::reply_header_invalid,
       [](Header& header) { header.reply.op += 1; }},
      {"reserved byte", Ignored::reply_header_invalid,
       [](Header& header) { header.reply.reserved[3] = 1; }},
      {"misdirected command", Ignored::command_misdirected,
       [](Header& header) { header.command = Command::prepare_ok; }},
  };
  for (const Case& wrong : cases) {
    CAPTURE(wrong.what);
    const u64 before = harness.session.stats().ignored_count(wrong.reason);
    base::Message* reply = harness.replica.reply(request, body);
    wrong.change(reply->header());
    reseal(reply);
    harness.deliver(reply);
    CHECK(harness.session.stats().ignored_count(wrong.reason) == before + 1);
    CHECK(harness.outcomes.list.empty());
    CHECK(harness.session.request_count() == 1);
  }

  // The right reply is still accepted, once: its duplicate is ignored.
  base::Message* reply = harness.replica.reply(request, body);
  harness.bus.pool().ref(reply);  // Delivered three times.
  harness.bus.pool().ref(reply);
  harness.deliver(reply);
  REQUIRE(harness.outcomes.list.size() == 1);
  CHECK(harness.outcomes.list[0].error == ClientError::ok);
  harness.deliver(reply);
  CHECK(harness.outcomes.list.size() == 1);
  CHECK(harness.session.stats().ignored_count(Ignored::reply_without_request) == 2);

  // A duplicate of an old reply while a newer request is in flight.
  harness.submit_lookup(6);
  harness.deliver(reply);
  CHECK(harness.session.stats().ignored_count(Ignored::reply_request_mismatch) == 2);
  harness.answer_last_request();
  CHECK(harness.outcomes.list.size() == 2);
}

TEST_CASE("client session retransmits the identical bytes when the request times out") {
  Harness harness;
  REQUIRE(harness.session.start());
  const std::vector<std::byte> first = bytes_of(harness.last_request().bytes());

  // 60 ticks (600 ms) without a reply: not before.
  harness.tick(59);
  CHECK(harness.bus.sent_of(Command::request).size() == 1);
  harness.tick(1);
  std::vector<Sent> requests = harness.bus.sent_of(Command::request);
  REQUIRE(requests.size() == 2);
  CHECK(bytes_of(requests[1].message->bytes()) == first);
  CHECK(requests[1].replica == 0);
  CHECK(harness.session.stats().retransmissions == 1);

  // The reply to the retransmission is the reply to the request: one outcome, session open.
  harness.deliver(harness.replica.register_reply(*requests[1].message));
  CHECK(harness.session.state() == SessionState::registered);

  // The same for a user request, across several attempts.
  harness.submit_lookup(9);
  const std::vector<std::byte> user_request = bytes_of(harness.last_request().bytes());
  harness.tick(5000);
  requests = harness.bus.sent_of(Command::request);
  const u64 retransmissions = harness.session.stats().retransmissions - 1;
  CHECK(retransmissions >= 5);
  for (std::size_t index = requests.size() - retransmissions; index < requests.size(); index++) {
    CHECK(bytes_of(requests[index].message->bytes()) == user_request);
  }
  harness.answer_last_request();
  REQUIRE(harness.outcomes.list.size() == 1);
  CHECK(harness.outcomes.list[0].error == ClientError::ok);
}

TEST_CASE("client session backs off exponentially with jitter between retransmissions") {
  Harness harness;
  REQUIRE(harness.session.start());
  std::vector<u64> retransmit_ticks;
  u64 seen = 0;
  while (retransmit_ticks.size() < 14) {
    harness.session.tick();
    if (harness.session.stats().retransmissions != seen) {
      seen = harness.session.stats().retransmissions;
      retransmit_ticks.push_back(harness.session.ticks());
    }
    REQUIRE(harness.session.ticks() < 100'000);
  }
  CHECK(retransmit_ticks[0] == 60);
  u64 early_interval_max = 0;
  u64 late_interval_max = 0;
  for (std::size_t attempt = 1; attempt < retransmit_ticks.size(); attempt++) {
    const u64 interval = retransmit_ticks[attempt] - retransmit_ticks[attempt - 1];
    const u64 ceiling = std::min<u64>(backoff_ticks_max - backoff_ticks_min,
                                      backoff_ticks_min << attempt);
    CAPTURE(attempt);
    CHECK(interval >= rtt_ticks_initial * rtt_multiple + backoff_ticks_min);
    CHECK(interval <= rtt_ticks_initial * rtt_multiple + backoff_ticks_min + ceiling);
    if (attempt <= 3) early_interval_max = std::max(early_interval_max, interval);
    if (attempt >= 9) late_interval_max = std::max(late_interval_max, interval);
  }
  // Attempts 1-3 wait at most 60 + 1 + 8 ticks; by attempt 9 the ceiling is 512: the backoff
  // has grown (deterministically for this seed).
  CHECK(early_interval_max <= 69);
  CHECK(late_interval_max > 200);

  // The function itself, at the edges: the exponent saturates and the result stays in bounds.
  base::Prng prng(7);
  for (u32 attempt : {0u, 1u, 10u, 63u, 64u, 1000u, 0xFFFFFFFFu}) {
    const u64 value = backoff_with_jitter(prng, 1, 1000, attempt);
    CHECK(value >= 1);
    CHECK(value <= 1000);
  }
  for (int draw = 0; draw < 100; draw++) CHECK(backoff_with_jitter(prng, 5, 1000, 0) <= 10);
}

TEST_CASE("client session sends to the primary of the highest view it has seen") {
  Harness harness(3);
  REQUIRE(harness.session.start());
  // Register: to replica 0 (view 0) and a hedge to one other replica; pings to all three.
  std::vector<Sent> requests = harness.bus.sent_of(Command::request);
  REQUIRE(requests.size() == 2);
  CHECK(requests[0].replica == 0);
  CHECK(requests[1].replica != 0);
  CHECK(requests[1].replica < 3);
  std::vector<Sent> pings = harness.bus.sent_of(Command::ping_client);
  REQUIRE(pings.size() == 3);
  CHECK(pings[0].replica == 0);
  CHECK(pings[1].replica == 1);
  CHECK(pings[2].replica == 2);

  // Retransmissions rotate: attempt k goes to the primary and to (view + k) % 3.
  harness.bus.clear();
  harness.tick(harness.session.request_tick_timeout() - harness.session.ticks());
  requests = harness.bus.sent_of(Command::request);
  REQUIRE(requests.size() == 2);
  CHECK(requests[0].replica == 0);
  CHECK(requests[1].replica == 1);
  harness.bus.clear();
  harness.tick(harness.session.request_tick_timeout() - harness.session.ticks());
  requests = harness.bus.sent_of(Command::request);
  REQUIRE(requests.size() == 2);
  CHECK(requests[0].replica == 0);
  CHECK(requests[1].replica == 2);

  // A pong from view 4 makes replica 1 the primary (4 % 3).
  harness.replica.index = 1;
  harness.deliver(harness.replica.pong(0, 4));
  CHECK(harness.session.view() == 4);
  CHECK(harness.session.primary() == 1);
  // A pong from an older view changes nothing.
  harness.deliver(harness.replica.pong(0, 2));
  CHECK(harness.session.view() == 4);

  // The register reply from view 5 moves the primary to replica 2 for the next request.
  harness.replica.view = 5;
  harness.deliver(harness.replica.register_reply(harness.last_request()));
  CHECK(harness.session.state() == SessionState::registered);
  CHECK(harness.session.view() == 5);
  harness.bus.clear();
  harness.submit_lookup(1);
  requests = harness.bus.sent_of(Command::request);
  REQUIRE(requests.size() == 2);
  CHECK(requests[0].replica == 2);
  CHECK(requests[1].replica != 2);
  CHECK(requests[0].message->header().view == 5);

  // An eviction from a view older than the client's is ignored.
  harness.deliver(harness.replica.eviction(client_id, EvictionReason::no_session, 4));
  CHECK(harness.session.stats().ignored_count(Ignored::eviction_view_old) == 1);
  CHECK(harness.session.state() == SessionState::registered);
  harness.answer_last_request();
  CHECK(harness.outcomes.list.size() == 1);
}

TEST_CASE("client session eviction fails every request with its reason and ends the session") {
  Harness harness;
  harness.register_session();
  harness.submit_lookup(1);
  harness.submit_lookup(2);
  harness.submit_lookup(3);

  // Evictions that are not for this session, or not valid, are ignored.
  harness.deliver(harness.replica.eviction(client_id + 1, EvictionReason::no_session, 0));
  CHECK(harness.session.stats().ignored_count(Ignored::eviction_client_mismatch) == 1);
  harness.deliver(harness.replica.eviction(client_id, EvictionReason::reserved, 0));
  CHECK(harness.session.stats().ignored_count(Ignored::eviction_invalid) == 1);
  base::Message* bogus = harness.replica.eviction(client_id, EvictionReason::no_session, 0);
  bogus->header().eviction.reason = static_cast<EvictionReason>(9);
  reseal(bogus);
  harness.deliver(bogus);
  CHECK(harness.session.stats().ignored_count(Ignored::eviction_invalid) == 2);
  CHECK(harness.session.state() == SessionState::registered);
  CHECK(harness.outcomes.list.empty());

  harness.deliver(
      harness.replica.eviction(client_id, EvictionReason::client_release_too_low, 0));
  CHECK(harness.session.state() == SessionState::evicted);
  CHECK(harness.session.eviction_reason() == EvictionReason::client_release_too_low);
  REQUIRE(harness.outcomes.list.size() == 3);
  for (const Outcome& outcome : harness.outcomes.list) {
    CHECK(outcome.error == ClientError::evicted);
    CHECK(outcome.eviction_reason == EvictionReason::client_release_too_low);
  }
  // The first was in flight (numbered), the others never left the queue.
  CHECK(harness.outcomes.list[0].request == 1);
  CHECK(harness.session.request_count() == 0);

  // Later submits fail at once, and nothing is sent any more, not even pings.
  const std::vector<std::byte> body = lookup_body(4);
  CHECK(harness.session.submit(Operation::lookup_accounts, body, Outcomes::callback,
                               &harness.outcomes) == ClientError::evicted);
  const std::size_t sent = harness.bus.sent.size();
  harness.tick(10'000);
  CHECK(harness.bus.sent.size() == sent);
  harness.deliver(harness.replica.pong(0, 0));
  CHECK(harness.session.stats().ignored_count(Ignored::session_over) == 1);
  CHECK(harness.outcomes.list.size() == 3);
}

TEST_CASE("client session eviction while registering fails the queued requests") {
  Harness harness;
  REQUIRE(harness.session.start());
  harness.submit_lookup(1);
  harness.deliver(
      harness.replica.eviction(client_id, EvictionReason::client_release_too_high, 0));
  CHECK(harness.session.state() == SessionState::evicted);
  REQUIRE(harness.outcomes.list.size() == 1);
  CHECK(harness.outcomes.list[0].error == ClientError::evicted);
  CHECK(harness.outcomes.list[0].eviction_reason == EvictionReason::client_release_too_high);
  CHECK(harness.outcomes.list[0].request == 0);  // Never numbered: it was never sent.
  // Every message went back to the pool except the bus's copies.
  harness.bus.clear();
  CHECK(harness.bus.pool().free_count() == harness.bus.pool().capacity());
}

TEST_CASE("client session refuses requests beyond its queue bound") {
  Harness harness;
  harness.register_session();
  for (u32 index = 0; index < request_queue_max; index++) harness.submit_lookup(index + 1);
  CHECK(harness.session.request_count() == request_queue_max);
  const std::vector<std::byte> body = lookup_body(1000);
  CHECK(harness.session.submit(Operation::lookup_accounts, body, Outcomes::callback,
                               &harness.outcomes) == ClientError::queue_full);
  const u32 free_before = harness.bus.pool().free_count();
  // The refused request's message went back to the pool.
  CHECK(harness.session.submit(Operation::lookup_accounts, body, Outcomes::callback,
                               &harness.outcomes) == ClientError::queue_full);
  CHECK(harness.bus.pool().free_count() == free_before);

  // One reply makes room for one more.
  harness.answer_last_request();
  CHECK(harness.outcomes.list.size() == 1);
  CHECK(harness.session.submit(Operation::lookup_accounts, body, Outcomes::callback,
                               &harness.outcomes) == ClientError::ok);
  CHECK(harness.session.request_count() == request_queue_max);
}

TEST_CASE("client session refuses bodies and operations the cluster would evict it for") {
  Harness harness;
  harness.register_session();
  const std::vector<std::byte> lookup = lookup_body(1);
  for (const int operation : {0, 1, 2, 4, 6, 7, 127, 128, 148, 255}) {
    CAPTURE(operation);
    CHECK(harness.session.submit(static_cast<Operation>(operation), lookup, Outcomes::callback,
                                 &harness.outcomes) == ClientError::operation_invalid);
  }
  // A lookup body read with the Account event size does not decode.
  CHECK(harness.session.submit(Operation::create_accounts, lookup, Outcomes::callback,
                               &harness.outcomes) == ClientError::body_invalid);
  std::vector<std::byte> filler_broken = lookup;
  filler_broken[16] = std::byte{0};
  CHECK(harness.session.submit(Operation::lookup_accounts, filler_broken, Outcomes::callback,
                               &harness.outcomes) == ClientError::body_invalid);
  CHECK(harness.session.submit(Operation::lookup_accounts, {}, Outcomes::callback,
                               &harness.outcomes) == ClientError::body_invalid);
  // A body larger than a message: too large, whatever it holds.
  const std::vector<std::byte> huge(testing::test_message_size);
  CHECK(harness.session.submit(Operation::lookup_accounts, huge, Outcomes::callback,
                               &harness.outcomes) == ClientError::batch_too_large);
  CHECK(harness.session.request_count() == 0);
  CHECK(harness.outcomes.list.empty());
  CHECK(harness.bus.sent_of(Command::request).size() == 1);
}

TEST_CASE("client session fails queued requests above the batch size limit it learns") {
  Harness harness;
  REQUIRE(harness.session.start());
  harness.submit_lookup(1);  // 32 bytes.
  std::vector<u128> ids(100, 7);
  std::vector<std::byte> big(ids.size() * id_size + id_size);
  MultiBatchEncoder encoder(big, id_size);
  REQUIRE(encoder.batch_add(std::as_bytes(std::span<const u128>(ids))) ==
          MultiBatchEncodeError::none);
  REQUIRE(encoder.finish() == MultiBatchEncodeError::none);
  big.resize(encoder.size());
  REQUIRE(harness.session.submit(Operation::lookup_accounts, big, Outcomes::callback,
                                 &harness.outcomes) == ClientError::ok);
  harness.submit_lookup(2);

  // An invalid batch_size_limit leaves the session registering (the reply is not trusted).
  harness.deliver(harness.replica.register_reply(harness.last_request(), 0));
  CHECK(harness.session.stats().ignored_count(Ignored::register_result_invalid) == 1);
  harness.deliver(
      harness.replica.register_reply(harness.last_request(), message_body_size_max + 1));
  CHECK(harness.session.stats().ignored_count(Ignored::register_result_invalid) == 2);
  CHECK(harness.session.state() == SessionState::registering);

  harness.deliver(harness.replica.register_reply(harness.last_request(), 1024));
  CHECK(harness.session.state() == SessionState::registered);
  CHECK(harness.session.batch_size_limit() == 1024);
  REQUIRE(harness.outcomes.list.size() == 1);
  CHECK(harness.outcomes.list[0].error == ClientError::batch_too_large);
  CHECK(harness.session.request_count() == 2);
  harness.answer_last_request();
  harness.answer_last_request();
  REQUIRE(harness.outcomes.list.size() == 3);
  CHECK(harness.outcomes.list[1].request == 1);
  CHECK(harness.outcomes.list[2].request == 2);
  CHECK(harness.session.submit(Operation::lookup_accounts, big, Outcomes::callback,
                               &harness.outcomes) == ClientError::batch_too_large);
}

TEST_CASE("client session pings every replica periodically and learns the round trip") {
  Harness harness(2);
  REQUIRE(harness.session.start());
  CHECK(harness.bus.sent_of(Command::ping_client).size() == 2);
  harness.deliver(harness.replica.register_reply(harness.last_request()));
  harness.tick(ping_interval_ticks - 1);
  CHECK(harness.bus.sent_of(Command::ping_client).size() == 2);
  harness.tick(1);
  const std::vector<Sent> pings = harness.bus.sent_of(Command::ping_client);
  REQUIRE(pings.size() == 4);
  const Header& ping = pings.back().message->header();
  CHECK(ping.ping_client.session == harness.session.session());
  CHECK(ping.ping_client.ping_timestamp_monotonic == ping_interval_ticks * tick_ns);

  // The pong comes back 500 ticks later: the next request waits 2 * 500 ticks before resending.
  harness.tick(500);
  harness.deliver(harness.replica.pong(ping.ping_client.ping_timestamp_monotonic, 0));
  CHECK(harness.session.stats().pongs_received == 1);
  CHECK(harness.session.rtt_ticks() == 500);
  harness.submit_lookup(1);
  CHECK(harness.session.request_tick_timeout() == harness.session.ticks() + 1000);
  // A fast pong never brings the estimate below the initial 30 ticks; an echo from the future
  // is ignored.
  harness.deliver(harness.replica.pong(harness.session.ticks() * tick_ns, 0));
  CHECK(harness.session.rtt_ticks() == rtt_ticks_initial);
  harness.deliver(harness.replica.pong((harness.session.ticks() + 5) * tick_ns, 0));
  CHECK(harness.session.rtt_ticks() == rtt_ticks_initial);
  // An invalid pong (replica index beyond the 6 a client tracks) is ignored.
  base::Message* pong = harness.replica.pong(0, 100);
  pong->header().replica = 6;
  reseal(pong);
  harness.deliver(pong);
  CHECK(harness.session.stats().ignored_count(Ignored::pong_invalid) == 1);
  CHECK(harness.session.view() == 0);
}

TEST_CASE("client session close completes every request with closed") {
  Harness harness;
  harness.register_session();
  harness.submit_lookup(1);
  harness.submit_lookup(2);
  harness.session.close();
  REQUIRE(harness.outcomes.list.size() == 2);
  CHECK(harness.outcomes.list[0].error == ClientError::closed);
  CHECK(harness.outcomes.list[1].error == ClientError::closed);
  CHECK(harness.session.state() == SessionState::closed);
  const std::vector<std::byte> body = lookup_body(3);
  CHECK(harness.session.submit(Operation::lookup_accounts, body, Outcomes::callback,
                               &harness.outcomes) == ClientError::closed);
  harness.session.close();
  CHECK(harness.outcomes.list.size() == 2);
  harness.bus.clear();
  CHECK(harness.bus.pool().free_count() == harness.bus.pool().capacity());
}

TEST_CASE("client session callbacks may submit the next request") {
  Harness harness;
  harness.register_session();
  struct Chain {
    Harness* harness;
    u32 remaining;
    std::vector<u32> numbers;
    static void callback(void* context, const SessionCompletion& completion) {
      auto* chain = static_cast<Chain*>(context);
      REQUIRE(completion.error == ClientError::ok);
      chain->numbers.push_back(completion.request->header().request.request);
      if (chain->remaining == 0) return;
      chain->remaining -= 1;
      const std::vector<std::byte> body = lookup_body(chain->remaining + 1);
      CHECK(chain->harness->session.submit(Operation::lookup_accounts, body, callback, chain) ==
            ClientError::ok);
    }
  };
  Chain chain{.harness = &harness, .remaining = 3, .numbers = {}};
  const std::vector<std::byte> body = lookup_body(100);
  REQUIRE(harness.session.submit(Operation::lookup_accounts, body, Chain::callback, &chain) ==
          ClientError::ok);
  for (int reply = 0; reply < 4; reply++) harness.answer_last_request();
  CHECK(chain.numbers == std::vector<u32>{1, 2, 3, 4});
  CHECK(harness.session.request_count() == 0);
}

TEST_CASE("client session runs identically from the same seed") {
  // Everything the session sends, to whom and when, over a run with retransmissions.
  auto run = [](u64 seed) {
    Harness harness(4, seed);
    REQUIRE(harness.session.start());
    std::vector<std::vector<std::byte>> trace;
    auto record = [&] {
      for (const Sent& sent : harness.bus.sent) {
        std::vector<std::byte> entry = bytes_of(sent.message->bytes().first(header_size));
        entry.push_back(static_cast<std::byte>(sent.replica));
        const u64 tick = harness.session.ticks();
        for (u32 shift = 0; shift < 64; shift += 8) {
          entry.push_back(static_cast<std::byte>(tick >> shift));
        }
        trace.push_back(std::move(entry));
      }
      harness.bus.clear();
    };
    for (int tick = 0; tick < 4000; tick++) {
      harness.session.tick();
      record();
    }
    return trace;
  };
  const auto first = run(1);
  CHECK(first.size() > 20);
  CHECK(run(1) == first);
  CHECK(run(2) != first);
}

}  // namespace
}  // namespace tally::client
