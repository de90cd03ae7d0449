// Tests of operations, statuses, records and constants (tally/operation.hpp, records.hpp,
// constants.hpp) against tables copied here from the protocol document: §6.1 (operations and
// their bodies), §8.5 (limits), §6.4 (statuses), §6.2-§6.8 (records and flags), §0 (releases).
//
// The headers check their own layouts at compile time; these tests check the values a reader of
// the protocol document would look up, from an independent transcription of its tables.
#include <doctest/doctest.h>

#include <array>
#include <cstddef>
#include <cstring>
#include <set>
#include <span>
#include <string>
#include <string_view>

#include "tally/constants.hpp"
#include "tally/operation.hpp"
#include "tally/records.hpp"

namespace {

using tally::CreateAccountStatus;
using tally::CreateTransferStatus;
using tally::Operation;
using tally::u16;
using tally::u32;
using tally::u64;
using tally::u8;

// §6.1 and §8.5, one row per state-machine operation.
struct OperationRow {
  int value;
  std::string_view name;
  u32 event_size;
  u32 result_size;
  bool multi_batch;
  u32 event_max;
  u32 result_max;
};

constexpr std::array<OperationRow, 20> operation_rows = {{
    {128, "state_machine_pulse", 0, 0, false, 0, 0},
    {129, "deprecated_create_accounts_unbatched", 128, 8, false, 8190, 8190},
    {130, "deprecated_create_transfers_unbatched", 128, 8, false, 8190, 8190},
    {131, "deprecated_lookup_accounts_unbatched", 16, 128, false, 8190, 8190},
    {132, "deprecated_lookup_transfers_unbatched", 16, 128, false, 8190, 8190},
    {133, "deprecated_get_account_transfers_unbatched", 128, 128, false, 1, 8190},
    {134, "deprecated_get_account_balances_unbatched", 128, 128, false, 1, 8190},
    {135, "deprecated_query_accounts_unbatched", 64, 128, false, 1, 8190},
    {136, "deprecated_query_transfers_unbatched", 64, 128, false, 1, 8190},
    {137, "get_change_events", 64, 384, false, 1, 2730},
    {138, "deprecated_create_accounts_sparse", 128, 8, true, 8189, 8189},
    {139, "deprecated_create_transfers_sparse", 128, 8, true, 8189, 8189},
    {140, "lookup_accounts", 16, 128, true, 8189, 8189},
    {141, "lookup_transfers", 16, 128, true, 8189, 8189},
    {142, "get_account_transfers", 128, 128, true, 1, 8189},
    {143, "get_account_balances", 128, 128, true, 1, 8189},
    {144, "query_accounts", 64, 128, true, 1, 8189},
    {145, "query_transfers", 64, 128, true, 1, 8189},
    {146, "create_accounts", 128, 16, true, 8189, 8189},
    {147, "create_transfers", 128, 16, true, 8189, 8189},
}};

template <typename Record>
std::string record_hex(const Record& record) {
  constexpr char digits[] = "0123456789abcdef";
  std::string hex;
  for (const std::byte byte : std::as_bytes(std::span<const Record, 1>(&record, 1))) {
    hex.push_back(digits[std::to_integer<u8>(byte) >> 4]);
    hex.push_back(digits[std::to_integer<u8>(byte) & 0xF]);
  }
  return hex;
}

}  // namespace

TEST_SUITE("wire_operation") {
  TEST_CASE("operation values: known, VSR or state machine, named") {
    std::set<std::string> names;
    for (int value = 0; value < 256; value++) {
      const auto operation = static_cast<Operation>(value);
      const bool state_machine = value >= 128 && value <= 147;
      INFO("operation: " << value);
      CHECK(tally::operation_known(operation) == (value <= 6 || state_machine));
      CHECK(tally::operation_is_vsr(operation) == (value < 128));
      CHECK(tally::operation_is_state_machine(operation) == state_machine);
      const std::string operation_name = tally::name(operation);
      if (tally::operation_known(operation)) {
        names.insert(operation_name);
      } else {
        CHECK(operation_name == "unknown");
        CHECK(tally::operation_info(operation).event_size == 0);
        CHECK(tally::operation_info(operation).result_max == 0);
      }
    }
    CHECK(names.size() == 7 + 20);
    CHECK(names.count("unknown") == 0);
    CHECK(std::string_view(tally::name(Operation::register_session)) == "register");
    CHECK(static_cast<u8>(Operation::register_session) == 2);
    CHECK(static_cast<u8>(Operation::pulse) == 4);
    CHECK(tally::operation_info(Operation::register_session).result_size == 0);
  }

  TEST_CASE("state-machine operations: bodies (§6.1) and limits (§8.5)") {
    for (const OperationRow& row : operation_rows) {
      const auto operation = static_cast<Operation>(row.value);
      const tally::OperationInfo info = tally::operation_info(operation);
      INFO("operation: " << row.name);
      CHECK(std::string_view(tally::name(operation)) == row.name);
      CHECK(info.event_size == row.event_size);
      CHECK(info.result_size == row.result_size);
      CHECK(info.multi_batch == row.multi_batch);
      CHECK(info.event_max == row.event_max);
      CHECK(info.result_max == row.result_max);
      // Filters are one per batch; everything else with events is batchable.
      CHECK(info.batchable == (row.event_max > 1));
      CHECK(tally::operation_event_size(operation) == row.event_size);
      CHECK(tally::operation_result_size(operation) == row.result_size);
      CHECK(tally::operation_is_multi_batch(operation) == row.multi_batch);
      CHECK(tally::operation_event_max(operation) == row.event_max);
      CHECK(tally::operation_result_max(operation) == row.result_max);
      if (row.multi_batch && info.batchable) {
        // A full batch of events fits a request; a full batch of results fits a reply.
        CHECK(u64{row.event_max} * row.event_size +
                  tally::multi_batch_trailer_size(row.event_size, 1) <=
              tally::batch_size_limit);
        CHECK(u64{row.result_max} * row.result_size +
                  tally::multi_batch_trailer_size(row.result_size, 1) <=
              tally::message_body_size_max);
      }
    }
  }

  TEST_CASE("create statuses (§6.4): values and names") {
    CHECK(static_cast<u32>(CreateAccountStatus::created) == 0xFFFFFFFF);
    CHECK(static_cast<u32>(CreateAccountStatus::exists) == 21);
    CHECK(static_cast<u32>(CreateAccountStatus::reserved_field) == 4);
    CHECK(static_cast<u32>(CreateAccountStatus::imported_event_timestamp_must_not_regress) == 26);
    CHECK(static_cast<u32>(CreateTransferStatus::created) == 0xFFFFFFFF);
    CHECK(static_cast<u32>(CreateTransferStatus::exists_with_different_flags) == 36);
    CHECK(static_cast<u32>(CreateTransferStatus::pending_transfer_expired) == 35);
    CHECK(static_cast<u32>(CreateTransferStatus::exists) == 46);
    CHECK(static_cast<u32>(CreateTransferStatus::exceeds_debits) == 55);
    CHECK(static_cast<u32>(CreateTransferStatus::closing_transfer_must_be_pending) == 64);
    CHECK(static_cast<u32>(CreateTransferStatus::id_already_failed) == 68);

    // Every value from 0 to the last is named, each differently; the next one is not.
    std::set<std::string> account_names = {tally::name(CreateAccountStatus::created)};
    for (u32 value = 0; value <= 26; value++) {
      account_names.insert(tally::name(static_cast<CreateAccountStatus>(value)));
    }
    CHECK(account_names.size() == 28);
    CHECK(account_names.count("unknown") == 0);
    CHECK(std::string_view(tally::name(static_cast<CreateAccountStatus>(27))) == "unknown");

    std::set<std::string> transfer_names = {tally::name(CreateTransferStatus::created)};
    for (u32 value = 0; value <= 68; value++) {
      transfer_names.insert(tally::name(static_cast<CreateTransferStatus>(value)));
    }
    CHECK(transfer_names.size() == 70);
    CHECK(transfer_names.count("unknown") == 0);
    CHECK(std::string_view(tally::name(static_cast<CreateTransferStatus>(69))) == "unknown");
    CHECK(std::string_view(tally::name(CreateTransferStatus::exceeds_credits)) ==
          "exceeds_credits");
  }

  TEST_CASE("records: flag bits (§6.2, §6.3, §6.5, §6.6)") {
    CHECK(tally::account_flags::linked == 0x0001);
    CHECK(tally::account_flags::history == 0x0008);
    CHECK(tally::account_flags::closed == 0x0020);
    CHECK(tally::account_flags::reserved_mask == 0xFFC0);
    CHECK(tally::transfer_flags::pending == 0x0002);
    CHECK(tally::transfer_flags::void_pending_transfer == 0x0008);
    CHECK(tally::transfer_flags::closing_credit == 0x0080);
    CHECK(tally::transfer_flags::imported == 0x0100);
    CHECK(tally::transfer_flags::reserved_mask == 0xFE00);
    CHECK(tally::account_filter_flags::debits == 1);
    CHECK(tally::account_filter_flags::credits == 2);
    CHECK(tally::account_filter_flags::reversed == 4);
    CHECK(tally::query_filter_flags::reversed == 1);
    CHECK(tally::query_filter_flags::reserved_mask == 0xFFFFFFFE);
  }

  TEST_CASE("records: fields land where the protocol puts them") {
    // §14 V4's event: Account id=17, ledger=1, code=718.
    tally::Account account{};
    account.id = 17;
    account.ledger = 1;
    account.code = 718;
    CHECK(record_hex(account) ==
          "1100000000000000000000000000000000000000000000000000000000000000"
          "0000000000000000000000000000000000000000000000000000000000000000"
          "0000000000000000000000000000000000000000000000000000000000000000"
          "0000000000000000000000000000000001000000ce0200000000000000000000");

    tally::Transfer transfer{};
    transfer.amount = tally::make_u128(1, 2);
    transfer.timeout = 0x01020304;
    transfer.flags = tally::transfer_flags::pending;
    transfer.timestamp = 0x1122334455667788;
    const std::string transfer_hex = record_hex(transfer);
    CHECK(transfer_hex.substr(48 * 2, 32) == "02000000000000000100000000000000");
    CHECK(transfer_hex.substr(108 * 2, 8) == "04030201");
    CHECK(transfer_hex.substr(118 * 2, 4) == "0200");
    CHECK(transfer_hex.substr(120 * 2, 16) == "8877665544332211");

    tally::AccountFilter filter{};
    filter.limit = 10;
    filter.flags = tally::account_filter_flags::debits | tally::account_filter_flags::reversed;
    const std::string filter_hex = record_hex(filter);
    CHECK(filter_hex.substr(120 * 2, 16) == "0a00000005000000");

    tally::QueryFilter query{};
    query.code = 999;
    query.limit = 5;
    const std::string query_hex = record_hex(query);
    CHECK(query_hex.substr(32 * 2, 4) == "e703");
    CHECK(query_hex.substr(56 * 2, 8) == "05000000");

    const tally::CreateTransferResult result{
        .timestamp = 5, .status = CreateTransferStatus::created, .reserved = 0};
    CHECK(record_hex(result) == "0500000000000000ffffffff00000000");
    const tally::CreateTransferErrorResult error{.index = 3,
                                                 .status = CreateTransferStatus::exists};
    CHECK(record_hex(error) == "030000002e000000");

    tally::ChangeEvent event{};
    event.type = tally::ChangeEventType::two_phase_expired;
    event.credit_account_flags = 0xABCD;
    const std::string event_hex = record_hex(event);
    CHECK(event_hex.substr(88 * 2, 2) == "04");
    CHECK(event_hex.substr(350 * 2, 4) == "cdab");
    CHECK(std::string_view(tally::name(event.type)) == "two_phase_expired");
    CHECK(std::string_view(tally::name(static_cast<tally::ChangeEventType>(5))) == "unknown");
  }

  TEST_CASE("releases (§0) and limits") {
    const tally::ReleaseTriple triple{.major = 0, .minor = 17, .patch = 9};
    CHECK(tally::release_encode(triple) == 0x00001109);
    const u32 release = tally::release_encode(triple);
    std::array<u8, 4> bytes{};
    std::memcpy(bytes.data(), &release, sizeof(release));
    CHECK(bytes == std::array<u8, 4>{0x09, 0x11, 0x00, 0x00});

    for (const tally::ReleaseTriple value :
         {tally::ReleaseTriple{0, 16, 4}, tally::ReleaseTriple{1, 0, 0},
          tally::ReleaseTriple{0xFFFF, 0xFF, 0xFF}}) {
      const tally::ReleaseTriple round = tally::release_decode(tally::release_encode(value));
      CHECK(round.major == value.major);
      CHECK(round.minor == value.minor);
      CHECK(round.patch == value.patch);
    }
    CHECK(tally::release_client_min == 0x1004);
    CHECK(tally::release_server >= tally::release_client_node);
    CHECK(tally::release_client_min <= tally::release_client_node);
    CHECK(tally::message_body_size_max == 1'048'320);
    CHECK(tally::clients_max == 64);
    CHECK(tally::replicas_max == 6);
    CHECK(tally::batch_count_max == 65534);
  }
}
