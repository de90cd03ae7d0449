// Tests of tally::Client over real TCP on 127.0.0.1: against a port where nothing listens, and
// against a scripted replica, a thread that speaks the protocol over a blocking socket (it
// registers the client, answers each new request through the test's handler, resends its last
// reply for a retransmission, and ignores pings).
//
// Goals: bad options and calls on a closed client fail at once with their own error; a call
// against a dead address returns ClientError::timeout at its deadline instead of hanging, and the
// client refuses calls afterwards; the typed calls and submit() encode what the replica decodes
// and copy out what it answers; caller errors (too many events, a query limit above 8189, a
// results span too small) are reported before anything is sent; a malformed reply is
// reply_invalid and the session goes on; an eviction fails the call with its reason and every
// later call. Deadlines here are generous and only stop a hang; nothing asserts on timing.
#include "tally/client.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "src/client/client_test_support.hpp"
#include "tally/multi_batch.hpp"

namespace tally {
namespace {

using client::testing::ScriptedReplica;

// A TCP socket bound to an ephemeral port on 127.0.0.1; listening only if asked.
class LoopbackSocket {
 public:
  explicit LoopbackSocket(bool listening) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in address = {};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
    socklen_t size = sizeof(address);
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &size) == 0);
    port_ = ntohs(address.sin_port);
    if (listening) REQUIRE(::listen(fd_, 4) == 0);
  }
  ~LoopbackSocket() { ::close(fd_); }
  LoopbackSocket(const LoopbackSocket&) = delete;
  LoopbackSocket& operator=(const LoopbackSocket&) = delete;

  int fd() const { return fd_; }
  u16 port() const { return port_; }

 private:
  int fd_ = -1;
  u16 port_ = 0;
};

struct Response {
  std::vector<std::byte> body;
  EvictionReason eviction = EvictionReason::reserved;  // Not reserved: evict instead.
};

using Handler = std::function<Response(Operation operation, std::span<const std::byte> body)>;

// The scripted replica: one thread, one connection, blocking IO with a poll timeout so that it
// notices when the test is over.
class TestReplica {
 public:
  explicit TestReplica(Handler handler)
      : socket_(true), handler_(std::move(handler)), thread_([this] { run(); }) {}

  ~TestReplica() {
    stop_ = true;
    thread_.join();
  }

  u16 port() const { return socket_.port(); }
  u32 requests_handled() const { return requests_handled_.load(); }
  u32 duplicates_answered() const { return duplicates_answered_.load(); }
  // Why the replica stopped believing the client, or "" (read once the test is over).
  std::string failure() const { return failure_.load(); }

 private:
  bool wait_readable(int fd) {
    while (!stop_) {
      pollfd entry = {.fd = fd, .events = POLLIN, .revents = 0};
      const int ready = ::poll(&entry, 1, 50);
      if (ready > 0) return true;
    }
    return false;
  }

  bool receive_exact(int fd, std::byte* data, std::size_t size) {
    std::size_t received = 0;
    while (received < size) {
      if (!wait_readable(fd)) return false;
      const ssize_t result = ::recv(fd, data + received, size - received, 0);
      if (result <= 0) return false;
      received += static_cast<std::size_t>(result);
    }
    return true;
  }

  void send_all(int fd, std::span<const std::byte> bytes) {
    std::size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t result = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (result <= 0) return;
      sent += static_cast<std::size_t>(result);
    }
  }

  void run() {
    base::MessagePool pool;
    pool.init(8, message_size_max);
    ScriptedReplica replica(pool);
    if (!wait_readable(socket_.fd())) return;
    const int connection = ::accept(socket_.fd(), nullptr, nullptr);
    if (connection < 0) return;
    std::vector<std::byte> last_reply;
    u128 last_request_checksum = 0;
    for (;;) {
      base::Message* message = pool.get();
      if (!receive_exact(connection, message->buffer, header_size)) {
        pool.unref(message);
        break;
      }
      const Header& header = message->header();
      if (!checksum_valid(header) || header.size < header_size ||
          header.size > message_size_max ||
          !receive_exact(connection, message->buffer + header_size, header.size - header_size)) {
        failure_ = "a malformed message from the client";
        pool.unref(message);
        break;
      }
      if (header.command == Command::request) {
        if (validate_request(header) != HeaderError::none ||
            !checksum_body_valid(header, message->body())) {
          failure_ = "an invalid request from the client";
        } else if (header.checksum == last_request_checksum) {
          duplicates_answered_ += 1;
          send_all(connection, last_reply);
        } else {
          last_request_checksum = header.checksum;
          last_reply = answer(pool, replica, *message);
          send_all(connection, last_reply);
        }
      }
      pool.unref(message);
    }
    ::close(connection);
  }

  std::vector<std::byte> answer(base::MessagePool& pool, ScriptedReplica& replica,
                                const base::Message& request) {
    const Header& header = request.header();
    base::Message* reply = nullptr;
    if (header.request.operation == Operation::register_session) {
      reply = replica.register_reply(request);
    } else {
      requests_handled_ += 1;
      const Response response = handler_(header.request.operation, request.body());
      if (response.eviction != EvictionReason::reserved) {
        reply = replica.eviction(header.request.client, response.eviction, 0);
      } else {
        reply = replica.reply(request, response.body);
      }
    }
    std::vector<std::byte> bytes(reply->bytes().begin(), reply->bytes().end());
    pool.unref(reply);
    return bytes;
  }

  LoopbackSocket socket_;
  Handler handler_;
  std::atomic<bool> stop_{false};
  std::atomic<u32> requests_handled_{0};
  std::atomic<u32> duplicates_answered_{0};
  std::atomic<const char*> failure_{""};
  std::thread thread_;
};

std::string address_of(u16 port) { return std::to_string(port); }

TEST_CASE("client open rejects bad options and closed clients refuse calls") {
  Client client;
  CHECK(!client.is_open());
  CHECK(client.open({.cluster = 0, .addresses = "3000,,3001"}) == ClientError::address_invalid);
  CHECK(std::string(client.error_message()).find("address 2") != std::string::npos);
  CHECK(client.open({.cluster = 0, .addresses = "localhost:3000"}) ==
        ClientError::address_invalid);
  CHECK(client.open({.cluster = 0, .addresses = "1,2,3,4,5,6,7"}) ==
        ClientError::address_invalid);
  CHECK(client.open({.cluster = 0, .addresses = ""}) == ClientError::address_invalid);
  CHECK(client.open({.cluster = 0,
                     .addresses = "3000",
                     .timeout_ms = client_timeout_ms_max + 1}) == ClientError::options_invalid);
  CHECK(!client.is_open());
  CHECK(client.client_id() == 0);

  const u128 ids[1] = {1};
  Account accounts[1];
  const ClientResult result = client.lookup_accounts(ids, accounts);
  CHECK(result.error == ClientError::closed);
  CHECK(result.count == 0);
  std::byte reply[128];
  CHECK(client.submit(Operation::lookup_accounts, {}, reply).error == ClientError::closed);
  CHECK(std::string(name(ClientError::result_buffer_too_small)) == "result_buffer_too_small");
}

TEST_CASE("client call against a port where nothing listens returns timeout at its deadline") {
  // Bound but not listening: every connection attempt is refused.
  const LoopbackSocket nothing(false);
  Client client;
  REQUIRE(client.open({.cluster = 0, .addresses = address_of(nothing.port()), .timeout_ms = 300}) ==
          ClientError::ok);
  CHECK(client.is_open());
  CHECK(client.client_id() != 0);
  CHECK(client.session() == 0);
  CHECK(client.open({.cluster = 0, .addresses = "3000"}) == ClientError::options_invalid);
  CHECK(std::string(client.error_message()).find("already open") != std::string::npos);

  const u128 ids[2] = {1, 2};
  Account accounts[2];
  ClientResult result = client.lookup_accounts(ids, accounts);
  CHECK(result.error == ClientError::timeout);
  CHECK(result.count == 0);
  // The request may still commit: the session is over.
  result = client.lookup_accounts(ids, accounts);
  CHECK(result.error == ClientError::closed);
  client.close();
  CHECK(!client.is_open());
  client.close();

  // A second client, closed with a request never answered, closes cleanly too.
  Client other;
  REQUIRE(other.open({.cluster = 0,
                      .addresses = address_of(nothing.port()) + "," + address_of(nothing.port()),
                      .timeout_ms = 50}) == ClientError::ok);
  CHECK(other.lookup_accounts(ids, accounts).error == ClientError::timeout);
  Client moved = std::move(other);
  CHECK(!other.is_open());
  CHECK(moved.is_open());
}

TEST_CASE("client reports caller errors before sending anything") {
  const LoopbackSocket nothing(false);
  Client client;
  REQUIRE(client.open({.cluster = 0, .addresses = address_of(nothing.port()), .timeout_ms = 50}) ==
          ClientError::ok);
  std::vector<Account> accounts(create_event_max + 1);
  std::vector<CreateAccountResult> results(create_event_max + 1);
  CHECK(client.create_accounts(accounts, results).error == ClientError::batch_too_large);
  CHECK(client.create_accounts(std::span<const Account>(accounts).first(2),
                               std::span<CreateAccountResult>(results).first(1))
            .error == ClientError::result_buffer_too_small);
  QueryFilter filter = {};
  filter.limit = query_result_max + 1;
  std::vector<Account> found(query_result_max + 1);
  CHECK(client.query_accounts(filter, found).error == ClientError::batch_too_large);
  filter.limit = 10;
  CHECK(client.query_accounts(filter, std::span<Account>(found).first(9)).error ==
        ClientError::result_buffer_too_small);
  AccountFilter account_filter = {};
  account_filter.limit = 3;
  std::vector<Transfer> transfers(2);
  CHECK(client.get_account_transfers(account_filter, transfers).error ==
        ClientError::result_buffer_too_small);

  std::vector<std::byte> reply(message_body_size_max);
  const std::byte garbage[40] = {};
  CHECK(client.submit(Operation::register_session, {}, reply).error ==
        ClientError::operation_invalid);
  CHECK(client.submit(Operation::state_machine_pulse, {}, reply).error ==
        ClientError::operation_invalid);
  CHECK(client.submit(Operation::lookup_accounts, garbage, reply).error ==
        ClientError::body_invalid);
  // A lookup of two ids needs room for two Accounts and the trailer.
  std::vector<std::byte> body(64);
  MultiBatchEncoder encoder(body, id_size);
  const u128 ids[2] = {1, 2};
  REQUIRE(encoder.batch_add(std::as_bytes(std::span<const u128>(ids))) ==
          MultiBatchEncodeError::none);
  REQUIRE(encoder.finish() == MultiBatchEncodeError::none);
  CHECK(client.submit(Operation::lookup_accounts, encoder.body(),
                      std::span<std::byte>(reply).first(2 * account_size + 127))
            .error == ClientError::result_buffer_too_small);
  // None of these reached the session: the first real call is still the one that times out.
  CHECK(client.submit(Operation::lookup_accounts, encoder.body(), reply).error ==
        ClientError::timeout);
}

// Reads the single batch of a request body as records.
template <typename Event>
std::vector<Event> events_of(std::span<const std::byte> body) {
  MultiBatchDecoder decoder;
  REQUIRE(decoder.decode(body, sizeof(Event)) == MultiBatchError::none);
  REQUIRE(decoder.batch_count() == 1);
  const std::span<const std::byte> batch = *decoder.begin();
  std::vector<Event> events(batch.size() / sizeof(Event));
  if (!events.empty()) std::memcpy(events.data(), batch.data(), batch.size());
  return events;
}

template <typename Result>
std::vector<std::byte> reply_of(std::vector<std::vector<Result>> batches) {
  std::vector<std::byte> body(message_body_size_max);
  MultiBatchEncoder encoder(body, sizeof(Result));
  for (const std::vector<Result>& batch : batches) {
    REQUIRE(encoder.batch_add(std::as_bytes(std::span<const Result>(batch))) ==
            MultiBatchEncodeError::none);
  }
  REQUIRE(encoder.finish() == MultiBatchEncodeError::none);
  body.resize(encoder.size());
  return body;
}

TEST_CASE("client calls round trip through a scripted replica over TCP") {
  TestReplica replica([](Operation operation, std::span<const std::byte> body) -> Response {
    switch (operation) {
      case Operation::create_accounts: {
        std::vector<CreateAccountResult> results;
        for (const Account& account : events_of<Account>(body)) {
          CreateAccountResult result = {};
          result.timestamp = 1000 + static_cast<u64>(account.id);
          result.status =
              account.id == 17 ? CreateAccountStatus::exists : CreateAccountStatus::created;
          results.push_back(result);
        }
        return {.body = reply_of<CreateAccountResult>({results})};
      }
      case Operation::lookup_accounts: {
        std::vector<Account> found;
        for (const u128 id : events_of<u128>(body)) {
          if (id == 99) continue;  // Missing ids are skipped.
          Account account = {};
          account.id = id;
          account.ledger = 1;
          account.code = 718;
          account.credits_posted = id * 10;
          found.push_back(account);
        }
        return {.body = reply_of<Account>({found})};
      }
      case Operation::query_accounts: {
        // Deliberately one more result than the filter's limit allows.
        const QueryFilter filter = events_of<QueryFilter>(body).at(0);
        return {.body = reply_of<Account>({std::vector<Account>(filter.limit + 1)})};
      }
      case Operation::get_account_balances: {
        AccountBalance balance = {};
        balance.credits_posted = 55;
        balance.timestamp = 77;
        return {.body = reply_of<AccountBalance>({{balance}})};
      }
      case Operation::create_transfers:
        return {.body = {}, .eviction = EvictionReason::session_too_low};
      default: return {.body = reply_of<Transfer>({{}})};
    }
  });

  Client client;
  REQUIRE(client.open({.cluster = 0, .addresses = address_of(replica.port()),
                       .timeout_ms = 20'000}) == ClientError::ok);

  Account accounts[2] = {};
  accounts[0].id = 17;
  accounts[1].id = 19;
  CreateAccountResult created[3];
  ClientResult result = client.create_accounts(accounts, created);
  REQUIRE(result.error == ClientError::ok);
  CHECK(result.count == 2);
  CHECK(result.timestamp != 0);
  CHECK(created[0].status == CreateAccountStatus::exists);
  CHECK(created[0].timestamp == 1017);
  CHECK(created[1].status == CreateAccountStatus::created);
  CHECK(created[1].timestamp == 1019);
  CHECK(client.session() >= 1);
  CHECK(client.batch_size_limit() == message_body_size_max);

  const u128 ids[3] = {17, 99, 19};
  Account found[3] = {};
  result = client.lookup_accounts(ids, found);
  REQUIRE(result.error == ClientError::ok);
  REQUIRE(result.count == 2);
  CHECK(found[0].id == 17);
  CHECK(found[0].credits_posted == 170);
  CHECK(found[1].id == 19);
  CHECK(found[1].code == 718);

  // The same lookup through submit(): the raw reply body, trailer included.
  std::vector<std::byte> body(128);
  MultiBatchEncoder encoder(body, id_size);
  REQUIRE(encoder.batch_add(std::as_bytes(std::span<const u128>(ids))) ==
          MultiBatchEncodeError::none);
  REQUIRE(encoder.finish() == MultiBatchEncodeError::none);
  std::vector<std::byte> reply(3 * account_size + account_size);
  result = client.submit(Operation::lookup_accounts, encoder.body(), reply);
  REQUIRE(result.error == ClientError::ok);
  CHECK(result.count == 2 * account_size + account_size);
  MultiBatchDecoder decoder;
  REQUIRE(decoder.decode(std::span<const std::byte>(reply).first(result.count), account_size) ==
          MultiBatchError::none);
  CHECK(decoder.element_count(0) == 2);

  AccountFilter balance_filter = {};
  balance_filter.account_id = 17;
  balance_filter.limit = 4;
  balance_filter.flags = account_filter_flags::debits | account_filter_flags::credits;
  AccountBalance balances[4] = {};
  result = client.get_account_balances(balance_filter, balances);
  REQUIRE(result.error == ClientError::ok);
  CHECK(result.count == 1);
  CHECK(balances[0].credits_posted == 55);
  CHECK(balances[0].timestamp == 77);

  // A reply that breaks §8.3 is reported, and the session goes on.
  QueryFilter query = {};
  query.limit = 2;
  Account queried[2] = {};
  result = client.query_accounts(query, queried);
  CHECK(result.error == ClientError::reply_invalid);
  result = client.lookup_accounts(ids, found);
  CHECK(result.error == ClientError::ok);
  CHECK(result.count == 2);

  // An eviction fails the call with its reason, and every call after it.
  Transfer transfer = {};
  transfer.id = 1;
  CreateTransferResult transfer_results[1];
  result = client.create_transfers(std::span<const Transfer>(&transfer, 1), transfer_results);
  CHECK(result.error == ClientError::evicted);
  CHECK(result.eviction_reason == EvictionReason::session_too_low);
  result = client.lookup_accounts(ids, found);
  CHECK(result.error == ClientError::evicted);
  CHECK(result.eviction_reason == EvictionReason::session_too_low);
  client.close();

  CHECK(replica.requests_handled() == 7);
  CHECK(replica.failure().empty());
}

}  // namespace
}  // namespace tally
