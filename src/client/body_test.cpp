// Tests of request encoding and reply checking (request_body.hpp, reply_body.hpp).
//
// Goals: encoded bodies are the protocol's vectors (§14 V4, V6, V7); the client-side limits of
// §8.5 hold at their exact edges (8189 events, query limit 8189, a full buffer); every rule of
// §8.3 rejects its own malformed reply (wrong batch count, dense count off by one, too many
// results for the ids or the limit, bad trailer, raw size not a whole result) and accepts the
// edge that is still valid; typed reads give the records that were encoded.
#include <doctest/doctest.h>

#include <array>
#include <cstring>
#include <vector>

#include "src/client/client_test_support.hpp"
#include "src/client/reply_body.hpp"
#include "src/client/request_body.hpp"
#include "tally/multi_batch.hpp"

namespace tally::client {
namespace {

using testing::bytes_of;
using testing::hex_bytes;

// 16-byte aligned storage, as message bodies are.
template <std::size_t size>
struct alignas(16) Buffer {
  std::array<std::byte, size> bytes{};
  std::span<std::byte> span() { return bytes; }
};

template <typename Element>
std::vector<std::byte> encode(u32 element_size, std::vector<std::vector<Element>> batches) {
  std::vector<std::byte> body(message_body_size_max);
  MultiBatchEncoder encoder(body, element_size);
  for (const std::vector<Element>& batch : batches) {
    REQUIRE(encoder.batch_add(std::as_bytes(std::span<const Element>(batch))) ==
            MultiBatchEncodeError::none);
  }
  REQUIRE(encoder.finish() == MultiBatchEncodeError::none);
  body.resize(encoder.size());
  return body;
}

Account account_make(u128 id) {
  Account account = {};
  account.id = id;
  account.ledger = 1;
  account.code = 718;
  return account;
}

TEST_CASE("client request bodies are the protocol vectors") {
  Buffer<1024> buffer;
  // V4: one Account, id 17, ledger 1, code 718.
  const Account account = account_make(17);
  BodyEncoding encoding = encode_batch<Account>(Operation::create_accounts,
                                                std::span<const Account>(&account, 1),
                                                buffer.span());
  REQUIRE(encoding.error == ClientError::ok);
  CHECK(bytes_of(buffer.span().first(encoding.size)) == hex_bytes(R"(
0000: 1100000000000000000000000000000000000000000000000000000000000000
0020: 0000000000000000000000000000000000000000000000000000000000000000
0040: 0000000000000000000000000000000000000000000000000000000000000000
0060: 0000000000000000000000000000000001000000ce0200000000000000000000
0080: ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff
00a0: ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff
00c0: ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff
00e0: ffffffffffffffffffffffffffffffffffffffffffffffffffffffff01000100
)"));

  // V6: lookups [17, 19] and [21] as two batches.
  const u128 first[] = {17, 19};
  const u128 second[] = {21};
  const std::span<const u128> batches[] = {first, second};
  encoding = encode_batches<u128>(Operation::lookup_accounts, batches, buffer.span());
  REQUIRE(encoding.error == ClientError::ok);
  CHECK(bytes_of(buffer.span().first(encoding.size)) == hex_bytes(R"(
0000: 1100000000000000000000000000000013000000000000000000000000000000
0020: 15000000000000000000000000000000ffffffffffffffffffff010002000200
)"));

  // V7: an empty create_accounts is one batch of zero events.
  encoding = encode_batch<Account>(Operation::create_accounts, {}, buffer.span());
  REQUIRE(encoding.error == ClientError::ok);
  CHECK(encoding.size == 128);
  CHECK(bytes_of(buffer.span().first(encoding.size)) == hex_bytes(R"(
0000: ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff
0020: ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff
0040: ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff
0060: ffffffffffffffffffffffffffffffffffffffffffffffffffffffff00000100
)"));
  // Every body encoded here is one the cluster accepts.
  CHECK(validate_request_body(Operation::create_accounts, buffer.span().first(128)) ==
        RequestBodyError::none);
}

TEST_CASE("client request bodies enforce the batch limits at their edges") {
  std::vector<std::byte> buffer(message_body_size_max);
  std::vector<Transfer> transfers(create_event_max + 1);
  BodyEncoding encoding = encode_batch<Transfer>(
      Operation::create_transfers, std::span<const Transfer>(transfers).first(create_event_max),
      buffer);
  CHECK(encoding.error == ClientError::ok);
  CHECK(encoding.size == create_event_max * transfer_size + 128);
  CHECK(validate_request_body(Operation::create_transfers,
                              std::span<const std::byte>(buffer).first(encoding.size)) ==
        RequestBodyError::none);
  encoding = encode_batch<Transfer>(Operation::create_transfers, transfers, buffer);
  CHECK(encoding.error == ClientError::batch_too_large);

  std::vector<u128> ids(lookup_event_max + 1, 5);
  CHECK(encode_batch<u128>(Operation::lookup_transfers,
                           std::span<const u128>(ids).first(lookup_event_max), buffer)
            .error == ClientError::ok);
  CHECK(encode_batch<u128>(Operation::lookup_transfers, ids, buffer).error ==
        ClientError::batch_too_large);

  // A buffer too small for the batch is too large a batch, never an overrun.
  Buffer<256> small;
  const Account accounts[2] = {account_make(1), account_make(2)};
  CHECK(encode_batch<Account>(Operation::create_accounts,
                              std::span<const Account>(accounts).first(1), small.span())
            .error == ClientError::ok);
  CHECK(encode_batch<Account>(Operation::create_accounts, accounts, small.span()).error ==
        ClientError::batch_too_large);

  // Queries: one filter per batch, limit at most 8189.
  QueryFilter filter = {};
  filter.limit = query_result_max;
  CHECK(encode_batch<QueryFilter>(Operation::query_accounts,
                                  std::span<const QueryFilter>(&filter, 1), buffer)
            .error == ClientError::ok);
  filter.limit = query_result_max + 1;
  CHECK(encode_batch<QueryFilter>(Operation::query_accounts,
                                  std::span<const QueryFilter>(&filter, 1), buffer)
            .error == ClientError::batch_too_large);
  AccountFilter account_filter = {};
  account_filter.limit = 10'000;
  CHECK(encode_batch<AccountFilter>(Operation::get_account_balances,
                                    std::span<const AccountFilter>(&account_filter, 1), buffer)
            .error == ClientError::batch_too_large);
  const QueryFilter two[2] = {};
  CHECK(encode_batch<QueryFilter>(Operation::query_transfers, two, buffer).error ==
        ClientError::body_invalid);
  CHECK(encode_batches<QueryFilter>(Operation::query_transfers, {}, buffer).error ==
        ClientError::body_invalid);
}

TEST_CASE("client reply bodies are checked against the request batches") {
  // Two lookup batches: two ids, then one.
  const std::vector<std::byte> request = encode<u128>(id_size, {{17, 19}, {21}});
  const Account a17 = account_make(17);
  const Account a19 = account_make(19);
  const Account a21 = account_make(21);

  // All found, none found, some found: valid.
  CHECK(validate_reply_body(Operation::lookup_accounts, request,
                            encode<Account>(account_size, {{a17, a19}, {a21}})) ==
        ReplyBodyError::none);
  CHECK(validate_reply_body(Operation::lookup_accounts, request,
                            encode<Account>(account_size, {{}, {}})) == ReplyBodyError::none);
  CHECK(validate_reply_body(Operation::lookup_accounts, request,
                            encode<Account>(account_size, {{a19}, {}})) == ReplyBodyError::none);
  // More accounts than ids in a batch, even with the same total.
  CHECK(validate_reply_body(Operation::lookup_accounts, request,
                            encode<Account>(account_size, {{a17}, {a19, a21}})) ==
        ReplyBodyError::result_count_exceeded);
  // Batch counts differ.
  CHECK(validate_reply_body(Operation::lookup_accounts, request,
                            encode<Account>(account_size, {{a17, a19, a21}})) ==
        ReplyBodyError::batch_count_mismatch);
  CHECK(validate_reply_body(Operation::lookup_accounts, request,
                            encode<Account>(account_size, {{a17}, {a19}, {}})) ==
        ReplyBodyError::batch_count_mismatch);
  // Not a multi-batch body of Accounts: a trailer with a broken filler, a cut body, nothing.
  std::vector<std::byte> broken = encode<Account>(account_size, {{a17}, {a21}});
  broken[account_size * 2 + 5] = std::byte{0};
  CHECK(validate_reply_body(Operation::lookup_accounts, request, broken) ==
        ReplyBodyError::multi_batch_invalid);
  std::vector<std::byte> cut = encode<Account>(account_size, {{a17}, {a21}});
  cut.erase(cut.begin(), cut.begin() + 16);
  CHECK(validate_reply_body(Operation::lookup_accounts, request, cut) ==
        ReplyBodyError::multi_batch_invalid);
  CHECK(validate_reply_body(Operation::lookup_accounts, request, {}) ==
        ReplyBodyError::multi_batch_invalid);
  // A request that is not a body at all is the caller's error, reported, not trusted.
  const std::span<const std::byte> request_cut = std::span<const std::byte>(request).first(8);
  CHECK(validate_reply_body(Operation::lookup_accounts, request_cut,
                            encode<Account>(account_size, {{}, {}})) ==
        ReplyBodyError::request_invalid);
  CHECK(validate_reply_body(Operation::register_session, request, {}) ==
        ReplyBodyError::operation_invalid);
}

TEST_CASE("client reply bodies of creates are dense and of queries bounded by the limit") {
  const std::vector<std::byte> request =
      encode<Account>(account_size, {{account_make(1), account_make(2)}});
  CreateAccountResult created = {};
  created.status = CreateAccountStatus::created;
  created.timestamp = 5;
  CHECK(validate_reply_body(
            Operation::create_accounts, request,
            encode<CreateAccountResult>(create_result_size, {{created, created}})) ==
        ReplyBodyError::none);
  CHECK(validate_reply_body(Operation::create_accounts, request,
                            encode<CreateAccountResult>(create_result_size, {{created}})) ==
        ReplyBodyError::result_count_mismatch);
  CHECK(validate_reply_body(
            Operation::create_accounts, request,
            encode<CreateAccountResult>(create_result_size, {{created, created, created}})) ==
        ReplyBodyError::result_count_mismatch);
  // The deprecated sparse creates list failures only: fewer is fine, more is not.
  const CreateAccountErrorResult failure = {.index = 1, .status = CreateAccountStatus::exists};
  CHECK(validate_reply_body(Operation::deprecated_create_accounts_sparse, request,
                            encode<CreateAccountErrorResult>(create_error_result_size,
                                                             {{failure}})) ==
        ReplyBodyError::none);
  CHECK(validate_reply_body(Operation::deprecated_create_accounts_sparse, request,
                            encode<CreateAccountErrorResult>(create_error_result_size,
                                                             {{failure, failure, failure}})) ==
        ReplyBodyError::result_count_exceeded);

  // A query batch may hold up to its filter's limit.
  AccountFilter filter = {};
  filter.account_id = 9;
  filter.limit = 2;
  filter.flags = account_filter_flags::debits;
  const std::vector<std::byte> query = encode<AccountFilter>(account_filter_size, {{filter}});
  const Transfer transfer = {};
  CHECK(validate_reply_body(Operation::get_account_transfers, query,
                            encode<Transfer>(transfer_size, {{transfer, transfer}})) ==
        ReplyBodyError::none);
  CHECK(validate_reply_body(Operation::get_account_transfers, query,
                            encode<Transfer>(transfer_size, {{transfer, transfer, transfer}})) ==
        ReplyBodyError::result_count_exceeded);

  // Raw (unbatched) operations: a whole number of results, at most one per event.
  std::vector<std::byte> ids(3 * id_size);
  CHECK(validate_reply_body(Operation::deprecated_lookup_accounts_unbatched, ids,
                            std::vector<std::byte>(2 * account_size)) == ReplyBodyError::none);
  CHECK(validate_reply_body(Operation::deprecated_lookup_accounts_unbatched, ids,
                            std::vector<std::byte>(4 * account_size)) ==
        ReplyBodyError::result_count_exceeded);
  CHECK(validate_reply_body(Operation::deprecated_lookup_accounts_unbatched, ids,
                            std::vector<std::byte>(account_size + 1)) ==
        ReplyBodyError::body_size_invalid);
}

TEST_CASE("client reply reader gives each batch as typed records") {
  const std::vector<std::byte> request = encode<u128>(id_size, {{17, 19}, {21}, {23}});
  Account a17 = account_make(17);
  a17.credits_posted = 100;
  const Account a21 = account_make(21);
  Buffer<1024> reply_buffer;
  const std::vector<std::byte> reply = encode<Account>(account_size, {{a17}, {a21}, {}});
  std::memcpy(reply_buffer.bytes.data(), reply.data(), reply.size());
  const std::span<const std::byte> reply_body = reply_buffer.span().first(reply.size());

  ReplyReader reader;
  REQUIRE(reader.read(Operation::lookup_accounts, request, reply_body) == ReplyBodyError::none);
  CHECK(reader.batch_count() == 3);
  const std::span<const Account> first = reader.batch<Account>(0);
  REQUIRE(first.size() == 1);
  CHECK(first[0].id == 17);
  CHECK(first[0].credits_posted == 100);
  const std::span<const Account> second = reader.batch<Account>(1);
  REQUIRE(second.size() == 1);
  CHECK(second[0].id == 21);
  CHECK(reader.batch<Account>(2).empty());

  // A failed read leaves nothing to read.
  CHECK(reader.read(Operation::lookup_accounts, request, reply_body.first(64)) ==
        ReplyBodyError::multi_batch_invalid);
  CHECK(reader.batch_count() == 0);
}

}  // namespace
}  // namespace tally::client
