// Tests of the superblock over the simulated storage: format, open and update round-trip their
// fields; a crash at every point of an update, with every kind of damage to the copy in flight
// and with one more damaged copy, opens to the old or the new version and never to anything
// else, and never fails within the claim of superblock.hpp; too much damage reports no quorum;
// open()'s decision table rejects forks and broken chains.
#include "journal/superblock.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <string>

#include "io/sim/storage.hpp"
#include "src/base/death_test.hpp"
#include "src/base/prng.hpp"

namespace {

using tally::u128;
using tally::u32;
using tally::u64;
using tally::u8;
using tally::base::Prng;
using tally::io::sim::Fault;
using tally::io::sim::Storage;
using tally::io::sim::StorageOptions;
using tally::journal::CheckpointReference;
using tally::journal::copy_status_name;
using tally::journal::CopyStatus;
using tally::journal::LayoutConfig;
using tally::journal::QuorumDecision;
using tally::journal::sector_size;
using tally::journal::Superblock;
using tally::journal::superblock_checksum;
using tally::journal::superblock_copies;
using tally::journal::superblock_copy_size;
using tally::journal::superblock_copy_status;
using tally::journal::superblock_equal;
using tally::journal::superblock_format;
using tally::journal::superblock_next;
using tally::journal::superblock_quorum;
using tally::journal::superblock_zone_size;
using tally::journal::SuperblockFormatOptions;
using tally::journal::SuperblockResult;
using tally::journal::SuperblockUpdate;
using tally::journal::VsrState;

using Store = tally::journal::SuperblockStore<Storage>;

constexpr u128 cluster_id = tally::make_u128(0x0123456789abcdef, 0xfedcba9876543210);
constexpr u64 storage_size = superblock_zone_size + 4 * sector_size;

const SuperblockFormatOptions format_options = {
    .cluster = cluster_id,
    .replica = 2,
    .replica_count = 3,
    .layout = LayoutConfig::testing(),
};

StorageOptions storage_options(u64 seed) {
  return StorageOptions{.size = storage_size,
                        .seed = seed,
                        .read_latency_min_ticks = 1,
                        .read_latency_max_ticks = 3,
                        .write_latency_min_ticks = 1,
                        .write_latency_max_ticks = 3};
}

void done_callback(Store* store) { *static_cast<bool*>(store->context) = true; }

// Ticks the storage until the store's operation has called back.
void run(Storage& storage, Store& store, bool& done) {
  for (u32 tick = 0; tick < 1000 && !done; tick += 1) storage.tick();
  REQUIRE(done);
  CHECK(!store.busy());
  CHECK(storage.idle());
}

void format(Storage& storage) {
  Store store(storage);
  bool done = false;
  store.context = &done;
  store.format(format_options, done_callback);
  CHECK(!done);  // Never from inside the call.
  run(storage, store, done);
  CHECK(store.copies_verified());
}

// Opens with a fresh store, as a restarted process would.
struct Opened {
  SuperblockResult result;
  bool has_working;
  Superblock working;
  QuorumDecision decision;
};

Opened open(Storage& storage, bool repair) {
  Store store(storage);
  bool done = false;
  store.context = &done;
  store.open(repair, done_callback);
  run(storage, store, done);
  Opened opened{};
  opened.result = store.result();
  opened.has_working = store.opened();
  if (store.opened()) opened.working = store.working();
  opened.decision = store.decision();
  CHECK(opened.has_working == (opened.result == SuperblockResult::ok));
  return opened;
}

SuperblockUpdate update_for(u64 seed, const Superblock& previous) {
  Prng prng(seed);
  SuperblockUpdate update{};
  update.vsr_state = VsrState{
      .view = previous.vsr_state.view + prng.range_inclusive<u32>(0, 3),
      .log_view = previous.vsr_state.view,
      .commit_max = previous.vsr_state.commit_max + prng.range_inclusive<u64>(1, 100),
  };
  update.checkpoint.op = previous.vsr_state.commit_max + 1;
  update.checkpoint.commit_timestamp = previous.checkpoint.commit_timestamp + 1000;
  prng.fill(std::span<u8>(update.checkpoint.state));
  // The view headers: a checksummed prepare header per op, newest first, a random count.
  update.view_headers.count = prng.range_inclusive<u32>(0, tally::journal::view_headers_max);
  for (u32 index = 0; index < update.view_headers.count; index += 1) {
    tally::Header& header = update.view_headers.headers[index];
    header.cluster = cluster_id;
    header.size = tally::header_size;
    header.release = 1;
    header.command = tally::Command::prepare;
    header.prepare.op = update.vsr_state.commit_max + tally::journal::view_headers_max - index;
    header.prepare.timestamp = prng.range_inclusive<u64>(1, 1u << 30);
    header.prepare.operation = tally::Operation::pulse;
    header.checksum_body = tally::checksum_empty;
    tally::set_checksum(header);
  }
  return update;
}

Superblock formatted() { return superblock_format(format_options); }

u64 slot_offset(u32 slot) { return u64{slot} * superblock_copy_size; }

// What the stored slots hold, judged from the bytes (not through the store): how many distinct
// copies of `version` are intact and readable.
u32 distinct_copies(const Storage& storage, const Superblock& version) {
  u32 copies = 0;
  for (u32 slot = 0; slot < superblock_copies; slot += 1) {
    if (storage.sector_damage(slot_offset(slot)) & tally::io::sim::damage::read_error) continue;
    if (storage.sector_damage(slot_offset(slot) + sector_size) &
        tally::io::sim::damage::read_error) {
      continue;
    }
    Superblock stored;
    std::memcpy(&stored, storage.peek(slot_offset(slot), superblock_copy_size).data(),
                sizeof(stored));
    if (superblock_copy_status(stored) != CopyStatus::valid) continue;
    if (!superblock_equal(stored, version)) continue;
    copies |= 1u << (stored.copy < superblock_copies ? stored.copy : slot);
  }
  return static_cast<u32>(__builtin_popcount(copies));
}

}  // namespace

TEST_SUITE("journal_superblock") {
  TEST_CASE("superblock: format then open gives the formatted fields in four good copies") {
    Storage storage(storage_options(1));
    format(storage);
    const Opened opened = open(storage, true);
    REQUIRE(opened.result == SuperblockResult::ok);
    const Superblock& working = opened.working;
    CHECK(working.cluster == cluster_id);
    CHECK(working.replica == 2);
    CHECK(working.replica_count == 3);
    CHECK(working.layout == LayoutConfig::testing());
    CHECK(working.sequence == 1);
    CHECK(working.parent == 0);
    CHECK(working.vsr_state == VsrState{.view = 0, .log_view = 0, .commit_max = 0});
    CHECK(working.checkpoint.op == 0);
    CHECK(working.magic == tally::journal::superblock_magic);
    CHECK(working.version == tally::journal::superblock_version);
    CHECK(superblock_equal(working, formatted()));
    CHECK(opened.decision.quorum_count == 4);
    CHECK(opened.decision.repair_count == 0);
    for (u32 slot = 0; slot < superblock_copies; slot += 1) {
      const auto& report = opened.decision.reports[slot];
      CHECK(report.status == CopyStatus::valid);
      CHECK(report.copy == slot);
      CHECK(report.sequence == 1);
      CHECK(report.checksum == working.checksum);
      CHECK(report.working);
    }
    // Only the superblock zone was written.
    CHECK(!storage.damaged(0, storage_size));
    const auto after = storage.peek(superblock_zone_size, storage_size - superblock_zone_size);
    for (const std::byte byte : after) REQUIRE(byte == std::byte{0});
  }

  TEST_CASE("superblock: a recovered replica's format starts in the given view, log_view 0") {
    // `tally recover`: the new file's replica must not take part again in a view its lost file
    // may have joined; it stands for no view's log yet.
    tally::journal::SuperblockFormatOptions options = format_options;
    options.view = 7;
    const Superblock superblock = superblock_format(options);
    CHECK(superblock_copy_status(superblock) == CopyStatus::valid);
    CHECK(superblock.vsr_state == VsrState{.view = 7, .log_view = 0, .commit_max = 0});
    CHECK(superblock.checkpoint.op == 0);
    CHECK(superblock.view_headers_count == 0);
    CHECK(!superblock_equal(superblock, formatted()));
  }

  TEST_CASE("superblock: each update opens to its fields, chained to its parent") {
    Storage storage(storage_options(2));
    format(storage);
    Superblock previous = formatted();
    for (u64 round = 0; round < 8; round += 1) {
      Store store(storage);
      bool done = false;
      store.context = &done;
      store.open(true, done_callback);
      run(storage, store, done);
      REQUIRE(store.result() == SuperblockResult::ok);
      CHECK(superblock_equal(store.working(), previous));

      const SuperblockUpdate update = update_for(round, previous);
      done = false;
      store.update(update, done_callback);
      CHECK(store.busy());
      run(storage, store, done);
      CHECK(store.copies_verified());
      CHECK(store.working().sequence == previous.sequence + 1);
      CHECK(store.working().parent == previous.checksum);

      const Opened opened = open(storage, true);
      REQUIRE(opened.result == SuperblockResult::ok);
      CHECK(superblock_equal(opened.working, store.working()));
      CHECK(opened.working.vsr_state == update.vsr_state);
      CHECK(opened.working.checkpoint == update.checkpoint);
      CHECK(tally::journal::superblock_view_headers(opened.working) == update.view_headers);
      CHECK(opened.working.view_headers_count == update.view_headers.count);
      CHECK(opened.working.cluster == cluster_id);
      CHECK(opened.working.layout == LayoutConfig::testing());
      CHECK(opened.decision.quorum_count == 4);
      previous = opened.working;
    }
    CHECK(previous.sequence == 9);
  }

  TEST_CASE("superblock: a crash at every point of an update opens to the old or new version") {
    // For each seed, crash point k (copies whose write completed: 0-3, 4 = while verifying,
    // 5 = after the callback), fate of the write in flight (landed or lost by a coin, torn,
    // misdirected) and one more fault (none, a bit flip or a latent sector error in a random
    // slot, an earlier write of this update misdirected):
    // - open() agrees with the bytes: the new version if 2 copies of it are intact, else the old
    //   one if 2 of it are, else no quorum; never anything else;
    // - within the claim (no extra fault, or k not in 1..2) it finds one;
    // - after open()'s repair, the file holds four good copies and survives the next update.
    enum class InFlight { coin, torn, misdirected };
    enum class Extra { none, bit_flip, read_error, misdirected_earlier };
    u32 outcomes_old = 0;
    u32 outcomes_new = 0;
    u32 outcomes_no_quorum = 0;
    for (u64 seed = 0; seed < 24; seed += 1) {
      // Misdirected writes land on another slot whole (the claim), or at any sector, where one
      // write can damage two slots: then only "never anything else" is checked.
      const u64 alignment = seed % 4 == 3 ? sector_size : superblock_copy_size;
      for (u32 k = 0; k <= 5; k += 1) {
        for (const InFlight in_flight : {InFlight::coin, InFlight::torn, InFlight::misdirected}) {
          for (const Extra extra : {Extra::none, Extra::bit_flip, Extra::read_error,
                                    Extra::misdirected_earlier}) {
            if (extra == Extra::misdirected_earlier && (k == 0 || k > 4)) continue;
            CAPTURE(seed);
            CAPTURE(k);
            CAPTURE(static_cast<int>(in_flight));
            CAPTURE(static_cast<int>(extra));
            Prng prng(seed * 1000 + k * 100 + static_cast<u64>(in_flight) * 10 +
                      static_cast<u64>(extra));
            Storage storage(storage_options(prng.next_u64()));
            const tally::io::sim::FaultZone zone = {
                .offset = 0, .size = superblock_zone_size, .alignment = alignment};
            storage.faults_allow(Fault::torn_write, zone);
            storage.faults_allow(Fault::misdirected_write, zone);
            format(storage);
            const Superblock old_version = formatted();

            Store store(storage);
            bool done = false;
            store.context = &done;
            store.open(true, done_callback);
            run(storage, store, done);
            REQUIRE(store.result() == SuperblockResult::ok);

            const SuperblockUpdate update = update_for(seed, old_version);
            const Superblock new_version = superblock_next(old_version, update);
            const u32 misdirected_write = extra == Extra::misdirected_earlier
                                              ? prng.index<u32>(std::min<u32>(k, 4))
                                              : 5;
            done = false;
            store.update(update, done_callback);
            for (u32 tick = 0; tick < 1000 && !done; tick += 1) {
              const u32 written = store.writes_completed();
              if (k <= 4 && written == k) break;
              storage.fault_rates_set(
                  {.misdirected_write_ppm = written == misdirected_write ? 1'000'000u : 0u});
              storage.tick();
            }
            REQUIRE((k == 5) == done);
            CHECK(storage.fault_count(Fault::misdirected_write) ==
                  (extra == Extra::misdirected_earlier ? 1 : 0));
            storage.fault_rates_set({
                .misdirected_write_ppm = in_flight == InFlight::misdirected ? 1'000'000u : 0u,
                .torn_write_ppm = in_flight == InFlight::torn ? 1'000'000u : 0u,
            });
            storage.crash();
            storage.fault_rates_set({});

            const u32 slot = prng.index<u32>(superblock_copies);
            const u64 sector = slot_offset(slot) + prng.index<u64>(2) * sector_size;
            if (extra == Extra::bit_flip) storage.inject_bit_flip(sector);
            if (extra == Extra::read_error) storage.inject_read_error(sector);

            const u32 copies_new = distinct_copies(storage, new_version);
            const u32 copies_old = distinct_copies(storage, old_version);
            const Opened opened = open(storage, true);
            if (copies_new >= 2) {
              REQUIRE(opened.result == SuperblockResult::ok);
              CHECK(superblock_equal(opened.working, new_version));
              outcomes_new += 1;
            } else if (copies_old >= 2) {
              REQUIRE(opened.result == SuperblockResult::ok);
              CHECK(superblock_equal(opened.working, old_version));
              outcomes_old += 1;
            } else {
              CHECK(opened.result == SuperblockResult::no_quorum);
              outcomes_no_quorum += 1;
            }
            const bool misdirected =
                in_flight == InFlight::misdirected || extra == Extra::misdirected_earlier;
            const bool claimed =
                (alignment == superblock_copy_size || !misdirected) &&
                (extra == Extra::none || k >= 3 || (k == 0 && in_flight != InFlight::misdirected));
            if (claimed) CHECK(opened.result == SuperblockResult::ok);
            if (k == 5) CHECK(superblock_equal(opened.working, new_version));
            if (opened.result != SuperblockResult::ok) continue;

            // Repaired: four good copies, and the next update and open work.
            const Opened reopened = open(storage, false);
            REQUIRE(reopened.result == SuperblockResult::ok);
            CHECK(superblock_equal(reopened.working, opened.working));
            CHECK(reopened.decision.quorum_count == 4);
            CHECK(reopened.decision.repair_count == 0);
            Store next_store(storage);
            done = false;
            next_store.context = &done;
            next_store.open(true, done_callback);
            run(storage, next_store, done);
            done = false;
            next_store.update(update_for(seed + 1, opened.working), done_callback);
            run(storage, next_store, done);
            const Opened last = open(storage, false);
            REQUIRE(last.result == SuperblockResult::ok);
            CHECK(last.working.sequence == opened.working.sequence + 1);
            CHECK(last.working.parent == opened.working.checksum);
          }
        }
      }
    }
    // All three outcomes happen: the test sees both sides of the claim's boundary.
    CHECK(outcomes_old > 0);
    CHECK(outcomes_new > 0);
    CHECK(outcomes_no_quorum > 0);
  }

  TEST_CASE("superblock: the verify pass rewrites a copy that a misdirected write missed") {
    u32 second_rounds = 0;
    for (u64 seed = 0; seed < 16; seed += 1) {
      CAPTURE(seed);
      Storage storage(storage_options(seed));
      storage.faults_allow(Fault::misdirected_write, {.offset = 0,
                                                      .size = superblock_zone_size,
                                                      .alignment = superblock_copy_size});
      format(storage);
      Store store(storage);
      bool done = false;
      store.context = &done;
      store.open(true, done_callback);
      run(storage, store, done);
      // Only the write of copy `victim` is misdirected; the update does not know.
      const u32 victim = static_cast<u32>(seed % superblock_copies);
      done = false;
      store.update(update_for(seed, formatted()), done_callback);
      for (u32 tick = 0; tick < 1000 && !done; tick += 1) {
        storage.fault_rates_set(
            {.misdirected_write_ppm = store.writes_completed() == victim ? 1'000'000u : 0u});
        storage.tick();
      }
      REQUIRE(done);
      CHECK(storage.fault_count(Fault::misdirected_write) == 1);
      CHECK(store.copies_verified());
      // A second round rewrote slots, unless the stray copy landed where a later write of
      // this update overwrote it anyway (and the copy also landed at its own slot).
      if (store.writes_completed() > superblock_copies) second_rounds += 1;
      const Opened opened = open(storage, false);
      REQUIRE(opened.result == SuperblockResult::ok);
      CHECK(superblock_equal(opened.working, store.working()));
      CHECK(opened.decision.quorum_count == 4);
      CHECK(opened.decision.repair_count == 0);
    }
    CHECK(second_rounds >= 8);
  }

  TEST_CASE("superblock: a copy that never reads back is reported, not retried forever") {
    Storage storage(storage_options(9));
    format(storage);
    storage.faults_allow(Fault::read_error, {.offset = slot_offset(2), .size = sector_size});
    storage.fault_rates_set({.read_error_ppm = 1'000'000});
    Store store(storage);
    bool done = false;
    store.context = &done;
    store.open(true, done_callback);
    run(storage, store, done);
    REQUIRE(store.result() == SuperblockResult::ok);
    CHECK(!store.copies_verified());
    // Slot 2 rewritten once per verify round, then given up.
    CHECK(store.writes_completed() == 1 + tally::journal::verify_rounds_max);
    done = false;
    store.update(update_for(3, formatted()), done_callback);
    run(storage, store, done);
    CHECK(!store.copies_verified());
    CHECK(store.working().sequence == 2);
    // The sector stays unreadable (the last verify read found it so); the rest hold.
    storage.fault_rates_set({});
    const Opened opened = open(storage, false);
    CHECK(opened.decision.quorum_count == 3);
    CHECK(opened.decision.reports[2].status == CopyStatus::read_error);
    CHECK(opened.working.sequence == 2);
  }

  TEST_CASE("superblock: at rest any two damaged copies are survived and repaired") {
    for (u64 seed = 0; seed < 64; seed += 1) {
      CAPTURE(seed);
      Prng prng(seed);
      Storage storage(storage_options(seed));
      format(storage);
      u32 slots[superblock_copies] = {0, 1, 2, 3};
      prng.shuffle(std::span<u32>(slots));
      for (u32 index = 0; index < 2; index += 1) {
        const u64 sector = slot_offset(slots[index]) + prng.index<u64>(2) * sector_size;
        if (prng.boolean()) {
          storage.inject_bit_flip(sector);
        } else {
          storage.inject_read_error(sector);
        }
      }
      const Opened opened = open(storage, true);
      REQUIRE(opened.result == SuperblockResult::ok);
      CHECK(superblock_equal(opened.working, formatted()));
      CHECK(opened.decision.repair_count == 2);
      CHECK(!storage.damaged(0, superblock_zone_size));
      CHECK(open(storage, false).decision.quorum_count == 4);
    }
  }

  TEST_CASE("superblock: three damaged copies report no quorum") {
    for (u64 seed = 0; seed < 16; seed += 1) {
      CAPTURE(seed);
      Prng prng(seed);
      Storage storage(storage_options(seed));
      format(storage);
      const u32 spared = prng.index<u32>(superblock_copies);
      for (u32 slot = 0; slot < superblock_copies; slot += 1) {
        if (slot == spared) continue;
        const u64 sector = slot_offset(slot) + prng.index<u64>(2) * sector_size;
        if (prng.boolean()) {
          storage.inject_bit_flip(sector);
        } else {
          storage.inject_read_error(sector);
        }
      }
      const auto before = tally::checksum(storage.peek(0, superblock_zone_size));
      const Opened opened = open(storage, true);
      CHECK(opened.result == SuperblockResult::no_quorum);
      CHECK(!opened.has_working);
      CHECK(std::string(superblock_result_message(opened.result)) ==
            "no valid superblock quorum");
      CHECK(opened.decision.reports[spared].status == CopyStatus::valid);
      // Nothing is written when there is nothing to trust.
      CHECK(tally::checksum(storage.peek(0, superblock_zone_size)) == before);
    }
  }

  TEST_CASE("superblock: an empty file has no quorum") {
    Storage storage(storage_options(5));
    const Opened opened = open(storage, true);
    CHECK(opened.result == SuperblockResult::no_quorum);
    for (u32 slot = 0; slot < superblock_copies; slot += 1) {
      CHECK(opened.decision.reports[slot].status == CopyStatus::checksum_invalid);
      CHECK(std::string(copy_status_name(opened.decision.reports[slot].status)) ==
            "checksum invalid");
    }
  }

  TEST_CASE("superblock: open without repair writes nothing") {
    Storage storage(storage_options(6));
    format(storage);
    storage.inject_bit_flip(slot_offset(1));
    const auto before = tally::checksum(storage.peek(0, superblock_zone_size));
    const Opened opened = open(storage, false);
    CHECK(opened.result == SuperblockResult::ok);
    CHECK(opened.decision.repair_count == 1);
    CHECK(opened.decision.repair_order[0] == 1);
    CHECK(opened.decision.reports[1].status == CopyStatus::checksum_invalid);
    CHECK(!opened.decision.reports[1].working);
    CHECK(tally::checksum(storage.peek(0, superblock_zone_size)) == before);
  }

  TEST_CASE("superblock: the quorum decision counts copies, not slots, and checks the chain") {
    // Built by hand: four slots, each a copy of a version with a chosen copy index.
    const Superblock first = formatted();
    const Superblock second = superblock_next(first, update_for(1, first));
    const Superblock third = superblock_next(second, update_for(2, second));
    // Sequence 2 too, different content: a fork.
    const Superblock other_second = superblock_next(first, update_for(99, first));

    alignas(sector_size) std::array<Superblock, superblock_copies> copies;
    const std::array<bool, superblock_copies> read_ok = {true, true, true, true};
    auto place = [&](u32 slot, const Superblock& version, u32 copy) {
      copies[slot] = version;
      copies[slot].copy = copy;
    };
    auto garbage = [&](u32 slot) {
      std::memset(static_cast<void*>(&copies[slot]), 0xa5, sizeof(Superblock));
    };

    // Two slots holding copy 0 of `second` are one copy: no quorum for it; `first` has two.
    place(0, second, 0);
    place(1, second, 0);
    place(2, first, 2);
    place(3, first, 3);
    QuorumDecision decision = superblock_quorum(copies, read_ok);
    CHECK(decision.result == SuperblockResult::ok);
    CHECK(decision.working_slot == 2);
    CHECK(decision.quorum_count == 2);
    // Repair rewrites the slots not holding `first`, in slot order.
    CHECK(decision.repair_count == 2);
    CHECK(decision.repair_order[0] == 0);
    CHECK(decision.repair_order[1] == 1);

    // A misdirected copy counts where it is, and its slot is repaired after the others.
    place(1, second, 1);
    place(2, second, 3);
    place(3, first, 3);
    decision = superblock_quorum(copies, read_ok);
    CHECK(decision.result == SuperblockResult::ok);
    CHECK(decision.quorum_count == 3);
    CHECK(superblock_equal(copies[decision.working_slot], second));
    CHECK(decision.repair_count == 2);
    CHECK(decision.repair_order[0] == 3);
    CHECK(decision.repair_order[1] == 2);

    // An out-of-range copy index (a flip in the unchecksummed field) counts as its slot.
    place(0, second, 200);
    place(1, second, 1);
    garbage(2);
    garbage(3);
    decision = superblock_quorum(copies, read_ok);
    CHECK(decision.result == SuperblockResult::ok);
    CHECK(decision.quorum_count == 2);

    // Two versions of one sequence.
    place(0, second, 0);
    place(1, second, 1);
    place(2, other_second, 2);
    place(3, other_second, 3);
    CHECK(superblock_quorum(copies, read_ok).result == SuperblockResult::fork);

    // A copy two sequences ahead of the quorum.
    place(2, first, 2);
    place(3, first, 3);
    place(0, third, 0);
    place(1, first, 1);
    CHECK(superblock_quorum(copies, read_ok).result == SuperblockResult::sequence_skipped);

    // The quorum's parent is not the older copy present.
    place(0, second, 0);
    place(1, second, 1);
    place(2, other_second, 2);
    garbage(3);
    Superblock not_parent = other_second;  // Sequence 2: make a sequence-1 copy that differs.
    not_parent.sequence = 1;
    not_parent.parent = 0;
    not_parent.cluster = cluster_id;
    not_parent.checksum = superblock_checksum(not_parent);
    place(2, not_parent, 2);
    CHECK(superblock_copy_status(copies[2]) == CopyStatus::valid);
    CHECK(superblock_quorum(copies, read_ok).result == SuperblockResult::parent_not_connected);

    // A new version with one copy beside an old quorum: an update that did not complete.
    place(0, second, 0);
    place(1, first, 1);
    place(2, first, 2);
    garbage(3);
    decision = superblock_quorum(copies, read_ok);
    CHECK(decision.result == SuperblockResult::ok);
    CHECK(superblock_equal(copies[decision.working_slot], first));

    // Read errors count as no copy: `second` would win with slot 1, and loses without it.
    place(1, second, 1);
    place(3, first, 3);
    CHECK(superblock_equal(copies[superblock_quorum(copies, read_ok).working_slot], second));
    const std::array<bool, superblock_copies> read_failed = {true, false, true, true};
    decision = superblock_quorum(copies, read_failed);
    CHECK(decision.result == SuperblockResult::ok);
    CHECK(superblock_equal(copies[decision.working_slot], first));
    CHECK(decision.reports[1].status == CopyStatus::read_error);
  }

  TEST_CASE("superblock: copies with a valid checksum but bad fields are not trusted") {
    Superblock superblock = formatted();
    CHECK(superblock_copy_status(superblock) == CopyStatus::valid);
    superblock.magic += 1;
    superblock.checksum = superblock_checksum(superblock);
    CHECK(superblock_copy_status(superblock) == CopyStatus::magic_invalid);
    superblock = formatted();
    superblock.version += 1;
    superblock.checksum = superblock_checksum(superblock);
    CHECK(superblock_copy_status(superblock) == CopyStatus::version_unsupported);
    superblock = formatted();
    superblock.replica = 3;  // replica_count is 3.
    superblock.checksum = superblock_checksum(superblock);
    CHECK(superblock_copy_status(superblock) == CopyStatus::fields_invalid);
    superblock = formatted();
    superblock.reserved[100] = 1;
    superblock.checksum = superblock_checksum(superblock);
    CHECK(superblock_copy_status(superblock) == CopyStatus::fields_invalid);
    superblock = formatted();
    superblock.reserved_view[0] = 1;
    superblock.checksum = superblock_checksum(superblock);
    CHECK(superblock_copy_status(superblock) == CopyStatus::fields_invalid);
    // View headers: at most view_headers_max, each a checksummed prepare, none beyond count.
    superblock = formatted();
    superblock.view_headers_count = tally::journal::view_headers_max + 1;
    superblock.checksum = superblock_checksum(superblock);
    CHECK(superblock_copy_status(superblock) == CopyStatus::fields_invalid);
    superblock = formatted();
    superblock.view_headers_count = 1;  // All zero: not even a blank (command prepare).
    superblock.checksum = superblock_checksum(superblock);
    CHECK(superblock_copy_status(superblock) == CopyStatus::fields_invalid);
    superblock = formatted();
    superblock.view_headers[2].size = 1;  // Beyond count, not zero.
    superblock.checksum = superblock_checksum(superblock);
    CHECK(superblock_copy_status(superblock) == CopyStatus::fields_invalid);
    // Blanks of damaged slots: only blanks, only within count.
    superblock = formatted();  // One header: the root prepare, not a blank.
    superblock.view_headers_blanks_unknown = 1;
    superblock.checksum = superblock_checksum(superblock);
    CHECK(superblock_copy_status(superblock) == CopyStatus::fields_invalid);
    superblock = formatted();
    superblock.view_headers_blanks_unknown = 1u << 3;  // Beyond count.
    superblock.checksum = superblock_checksum(superblock);
    CHECK(superblock_copy_status(superblock) == CopyStatus::fields_invalid);
    // An uncertain head: 0 or 1, and only with view headers.
    superblock = formatted();
    superblock.view_headers_head_uncertain = 2;
    superblock.checksum = superblock_checksum(superblock);
    CHECK(superblock_copy_status(superblock) == CopyStatus::fields_invalid);
    superblock = formatted();
    REQUIRE(superblock.view_headers_count == 0);
    superblock.view_headers_head_uncertain = 1;
    superblock.checksum = superblock_checksum(superblock);
    CHECK(superblock_copy_status(superblock) == CopyStatus::fields_invalid);
    // State sync's mark: 0 or 1, and never without a checkpoint.
    superblock = formatted();
    superblock.checkpoint_syncing = 1;
    superblock.checksum = superblock_checksum(superblock);
    CHECK(superblock_copy_status(superblock) == CopyStatus::fields_invalid);
    superblock = formatted();
    superblock.layout.slot_count = 100;
    superblock.checksum = superblock_checksum(superblock);
    CHECK(superblock_copy_status(superblock) == CopyStatus::fields_invalid);
    // The copy field is outside the checksum: every copy of a version shares one checksum.
    superblock = formatted();
    superblock.copy = 3;
    CHECK(superblock_copy_status(superblock) == CopyStatus::valid);
  }

  TEST_CASE("superblock: an update after an open without repair is a programmer error") {
    const auto child = tally::base::death_test::run_in_child([] {
      Storage storage(storage_options(11));
      format(storage);
      Store store(storage);
      bool done = false;
      store.context = &done;
      store.open(false, done_callback);
      run(storage, store, done);
      store.update(update_for(1, store.working()), done_callback);
    });
    CHECK(child.trapped());
    CHECK(child.stderr_contains("update after an open without repair"));
  }

  TEST_CASE("superblock: an update that goes back in time is a programmer error") {
    const auto child = tally::base::death_test::run_in_child([] {
      const Superblock first = formatted();
      SuperblockUpdate update = update_for(1, first);
      update.vsr_state.view = 5;
      const Superblock second = superblock_next(first, update);
      update.vsr_state.view = 4;
      (void)superblock_next(second, update);
    });
    CHECK(child.trapped());
    CHECK(child.stderr_contains("superblock update goes back in time"));
  }
}
