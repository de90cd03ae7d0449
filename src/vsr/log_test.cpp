// Tests of vsr::Log (src/vsr/log.hpp) over a real Wal on io::sim::Storage with the testing
// layout (64 slots) and full-size messages: the hash chain (append, header, checksum_of, the
// head and its timestamp, follows_head's three conditions), the anchor, the WAL write queue and
// its `written` callback, truncation (and its refusal while a removed op is being written),
// recovery of the chain after a restart, repair of a damaged entry, and the prepare cache.
#include <cstring>
#include <optional>
#include <vector>

#include "doctest/doctest.h"
#include "io/sim/storage.hpp"
#include "journal/layout.hpp"
#include "journal/wal.hpp"
#include "src/base/message_pool.hpp"
#include "src/vsr/log.hpp"
#include "tally/constants.hpp"
#include "tally/header.hpp"

namespace {

using namespace tally;
using base::Message;
using base::MessagePool;
using io::sim::Storage;
using io::sim::StorageOptions;
using TestLog = vsr::Log<Storage>;
using TestWal = journal::Wal<Storage>;

constexpr u128 cluster = 0x10'c1a5;
constexpr u32 pool_capacity = 48;

journal::LayoutConfig layout_config() {
  journal::LayoutConfig config = journal::LayoutConfig::testing();
  config.message_size_max = message_size_max;
  return config;
}

const journal::Layout layout{layout_config()};
constexpr u32 slot_count = journal::LayoutConfig::testing().slot_count;
static_assert(slot_count == 64);

void ticks_until(Storage& storage, const bool& done) {
  for (u32 ticks = 0; !done; ticks += 1) {
    REQUIRE(ticks < 100'000);
    storage.tick();
  }
}

void ticks_until_idle(Storage& storage) {
  for (u32 ticks = 0; !storage.idle(); ticks += 1) {
    REQUIRE(ticks < 100'000);
    storage.tick();
  }
}

void completion_done(TestWal::Completion* completion) {
  *static_cast<bool*>(completion->context) = true;
}

// Formats (optionally) and recovers the log's WAL, driving the storage until each is done.
void wal_open(TestLog& log, Storage& storage, bool format) {
  TestWal::Completion completion;
  bool done = false;
  completion.context = &done;
  if (format) {
    log.wal().format(&completion, completion_done);
    ticks_until(storage, done);
    done = false;
  }
  log.wal().recover(&completion, completion_done, journal::RecoverOptions{});
  ticks_until(storage, done);
  REQUIRE(log.wal().recovered());
}

// Every `written` callback, in the order it ran.
struct WrittenLog {
  std::vector<Header> headers;

  static void callback(void* context, const Header& header) {
    static_cast<WrittenLog*>(context)->headers.push_back(header);
  }

  std::vector<u64> ops() const {
    std::vector<u64> result;
    for (const Header& header : headers) result.push_back(header.prepare.op);
    return result;
  }
};

struct PrepareSpec {
  u64 op = 0;
  u128 parent = 0;
  u64 timestamp = 0;
  u32 view = 0;
  u32 body_size = 100;
};

// A checksummed prepare with a body of `body_size` bytes derived from op and view, padded with
// zeros; one reference, the caller's.
Message* prepare_make(MessagePool& pool, const PrepareSpec& spec) {
  Message* message = pool.get();
  REQUIRE(message != nullptr);
  Header& header = message->header();
  header.cluster = cluster;
  header.size = header_size + spec.body_size;
  header.view = spec.view;
  header.release = release_server;
  header.command = Command::prepare;
  header.prepare.op = spec.op;
  header.prepare.parent = spec.parent;
  header.prepare.commit = spec.op - 1;
  header.prepare.client = 500 + spec.op;
  header.prepare.request = 1;
  header.prepare.timestamp = spec.timestamp;
  header.prepare.operation = Operation::create_transfers;
  std::span<std::byte> body = message->body();
  for (u32 index = 0; index < spec.body_size; index += 1) {
    body[index] = static_cast<std::byte>(spec.op * 7 + spec.view + index);
  }
  set_checksum_body(header, std::span<const std::byte>(body));
  set_checksum(header);
  message->pad_zero();
  return message;
}

// The head's successor, as a primary makes it: timestamps step by 10.
Message* prepare_next(MessagePool& pool, const TestLog& log, u32 view = 0) {
  return prepare_make(pool, {.op = log.op() + 1,
                             .parent = log.head_checksum(),
                             .timestamp = log.head_timestamp() + 10,
                             .view = view});
}

// Releases a log when it goes out of scope, also when a failed REQUIRE leaves early (a Log
// asserts that it was released before it is destroyed). release() may run twice.
struct ReleaseGuard {
  TestLog& log;
  ~ReleaseGuard() { log.release(); }
};

// A formatted, recovered log on its own storage, with a pool and a record of `written`.
struct Fixture {
  explicit Fixture(bool solo = false, u64 seed = 1)
      : storage(StorageOptions{.size = layout.size(), .seed = seed}),
        log(storage, layout, cluster, solo) {
    pool.init(pool_capacity, message_size_max);
    log.init(&pool, WrittenLog::callback, &written);
    wal_open(log, storage, true);
  }

  ~Fixture() { log.release(); }

  // Appends the head's successor; returns its header (the log and the cache keep the message).
  Header append_next(u32 view = 0) {
    Message* message = prepare_next(pool, log, view);
    const Header header = message->header();
    log.append(message);
    pool.unref(message);
    return header;
  }

  MessagePool pool;
  Storage storage;
  WrittenLog written;
  TestLog log;
};

}  // namespace

TEST_SUITE("log") {
  TEST_CASE("log: a fresh log is anchored at the cluster's root prepare") {
    // Goal: before any append the head is op 0, the root prepare, the same for every log of
    // one cluster and different for another cluster.
    Fixture fixture;
    TestLog& log = fixture.log;
    const Header root = vsr::root_prepare(cluster);
    CHECK(checksum_valid(root));
    CHECK(log.op() == 0);
    CHECK(log.op_checkpoint() == 0);
    CHECK(log.op_max() == slot_count);
    CHECK(log.head_checksum() == root.checksum);
    CHECK(log.checkpoint_checksum() == root.checksum);
    CHECK(log.head_timestamp() == 0);
    REQUIRE(log.header(0) != nullptr);
    CHECK(log.header(0)->checksum == root.checksum);
    CHECK(log.checksum_of(0) == root.checksum);
    CHECK(log.header(1) == nullptr);
    CHECK(!log.checksum_of(1).has_value());
    CHECK(vsr::root_prepare(cluster + 1).checksum != root.checksum);
  }

  TEST_CASE("log: append extends the hash chain") {
    // Goal: each appended prepare becomes the head: op(), head_checksum(), head_timestamp(),
    // header(op) and checksum_of(op) all name it, before and after it is durable.
    Fixture fixture;
    TestLog& log = fixture.log;
    std::vector<Header> appended;
    for (u32 count = 1; count <= 5; count += 1) {
      const u128 parent = log.head_checksum();
      appended.push_back(fixture.append_next());
      const Header& header = appended.back();
      CHECK(header.prepare.parent == parent);
      CHECK(log.op() == count);
      CHECK(log.head_checksum() == header.checksum);
      CHECK(log.head_timestamp() == 10 * count);
      REQUIRE(log.header(count) != nullptr);
      CHECK(log.header(count)->checksum == header.checksum);
    }
    ticks_until_idle(fixture.storage);
    CHECK(log.op() == 5);
    for (u64 op = 1; op <= 5; op += 1) {
      REQUIRE(log.header(op) != nullptr);
      CHECK(log.header(op)->checksum == appended[op - 1].checksum);
      CHECK(log.header(op)->prepare.op == op);
      CHECK(log.checksum_of(op) == appended[op - 1].checksum);
      CHECK(!log.dirty(op));
    }
    CHECK(log.checksum_of(0) == vsr::root_prepare(cluster).checksum);
    CHECK(log.header(6) == nullptr);
    CHECK(!log.checksum_of(6).has_value());
    CHECK(log.head_timestamp() == 50);
  }

  TEST_CASE("log: follows_head checks the parent, the op and a rising timestamp") {
    // Goal: a prepare follows the head only if its parent is the head's checksum, its op is
    // the head's plus one and its timestamp is above the head's; each wrong field alone
    // makes it fail.
    Fixture fixture;
    TestLog& log = fixture.log;
    fixture.append_next();
    fixture.append_next();
    REQUIRE(log.op() == 2);
    const u64 timestamp = log.head_timestamp();
    REQUIRE(timestamp == 20);
    MessagePool& pool = fixture.pool;

    const auto follows = [&](const PrepareSpec& spec) {
      Message* message = prepare_make(pool, spec);
      const bool result = log.follows_head(message->header());
      pool.unref(message);
      return result;
    };
    const u128 head = log.head_checksum();
    const u128 parent_of_head = log.header(2)->prepare.parent;
    CHECK(follows({.op = 3, .parent = head, .timestamp = 21}));
    CHECK(follows({.op = 3, .parent = head, .timestamp = 1'000'000}));
    // Wrong parent: the head's parent, or a checksum of nothing.
    CHECK(!follows({.op = 3, .parent = parent_of_head, .timestamp = 21}));
    CHECK(!follows({.op = 3, .parent = head + 1, .timestamp = 21}));
    // Wrong op: the head's own, one too far, zero.
    CHECK(!follows({.op = 2, .parent = head, .timestamp = 21}));
    CHECK(!follows({.op = 4, .parent = head, .timestamp = 21}));
    CHECK(!follows({.op = 1, .parent = head, .timestamp = 21}));
    // A timestamp that does not rise: equal to the head's, or below it.
    CHECK(!follows({.op = 3, .parent = head, .timestamp = timestamp}));
    CHECK(!follows({.op = 3, .parent = head, .timestamp = timestamp - 1}));
    CHECK(!follows({.op = 3, .parent = head, .timestamp = 1}));
  }

  TEST_CASE("log: anchor_set moves an empty log's head to the checkpoint") {
    // Goal: anchoring at a checkpoint above the head makes the checkpoint the head: its op,
    // checksum and timestamp are what the next prepare must follow, and op_max moves with it.
    Fixture fixture;
    TestLog& log = fixture.log;
    const u128 checkpoint = 0xc4ec'6001;
    log.anchor_set(100, checkpoint, 5000);
    CHECK(log.op_checkpoint() == 100);
    CHECK(log.checkpoint_checksum() == checkpoint);
    CHECK(log.op() == 100);
    CHECK(log.head_checksum() == checkpoint);
    CHECK(log.head_timestamp() == 5000);
    CHECK(log.op_max() == 100 + slot_count);
    CHECK(log.checksum_of(100) == checkpoint);
    CHECK(log.header(100) == nullptr);

    MessagePool& pool = fixture.pool;
    Message* late = prepare_make(pool, {.op = 101, .parent = checkpoint, .timestamp = 5000});
    CHECK(!log.follows_head(late->header()));
    pool.unref(late);
    const Header next = fixture.append_next();
    CHECK(next.prepare.op == 101);
    CHECK(next.prepare.parent == checkpoint);
    CHECK(log.op() == 101);
    CHECK(log.head_timestamp() == 5010);
    ticks_until_idle(fixture.storage);
    REQUIRE(log.header(101) != nullptr);
    CHECK(log.header(101)->checksum == next.checksum);
  }

  TEST_CASE("log: written runs once per prepare once durable") {
    // Goal: `written` does not run before the storage completes the writes, then runs exactly
    // once for each appended prepare, with its header; afterwards the entries are clean. With
    // several writes in flight the order is the storage's completion order, not op order (a
    // solo log, one write at a time, is checked for op order below).
    Fixture fixture;
    TestLog& log = fixture.log;
    std::vector<Header> appended;
    for (u32 count = 0; count < 5; count += 1) appended.push_back(fixture.append_next());
    CHECK(fixture.written.headers.empty());
    for (u64 op = 1; op <= 5; op += 1) CHECK(log.dirty(op));
    CHECK(fixture.log.wal().writes_in_flight() == 5);
    ticks_until_idle(fixture.storage);
    REQUIRE(fixture.written.headers.size() == 5);
    for (u64 op = 1; op <= 5; op += 1) {
      u32 seen = 0;
      for (const Header& header : fixture.written.headers) {
        if (header.prepare.op != op) continue;
        seen += 1;
        CHECK(header.checksum == appended[op - 1].checksum);
      }
      CHECK_MESSAGE(seen == 1, "op ", op, " written ", seen, " times");
      CHECK(!log.dirty(op));
    }
    // Nothing more later.
    for (u32 tick = 0; tick < 10; tick += 1) fixture.storage.tick();
    CHECK(fixture.written.headers.size() == 5);
  }

  TEST_CASE("log: a solo log writes one prepare at a time, in op order") {
    // Goal: alone, the log keeps one WAL write in flight and queues the rest; `written` then
    // runs in op order, once each, and the queued entries are visible through header().
    Fixture fixture(true);
    TestLog& log = fixture.log;
    std::vector<Header> appended;
    for (u32 count = 0; count < 6; count += 1) appended.push_back(fixture.append_next());
    CHECK(log.wal().writes_in_flight() == 1);
    CHECK(log.write_queued(2));
    CHECK(log.write_queued(6));
    CHECK(!log.write_queued(1));  // Being written, no longer queued.
    for (u64 op = 1; op <= 6; op += 1) {
      REQUIRE(log.header(op) != nullptr);
      CHECK(log.header(op)->checksum == appended[op - 1].checksum);
    }
    ticks_until_idle(fixture.storage);
    CHECK(fixture.written.ops() == std::vector<u64>{1, 2, 3, 4, 5, 6});
    for (u64 op = 1; op <= 6; op += 1) {
      CHECK(fixture.written.headers[op - 1].checksum == appended[op - 1].checksum);
      CHECK(!log.write_queued(op));
      CHECK(!log.dirty(op));
    }
  }

  TEST_CASE("log: written does not run for queued entries truncated meanwhile") {
    // Goal: a solo log truncates entries still queued for their write: they never reach the
    // WAL and `written` never runs for them; new entries at the same ops are written instead.
    Fixture fixture(true);
    TestLog& log = fixture.log;
    const Header first = fixture.append_next();
    const Header second = fixture.append_next();
    const Header third = fixture.append_next();
    REQUIRE(log.wal().writing(log.wal().slot_for_op(1)));
    CHECK(log.truncate_after(1));
    CHECK(log.op() == 1);
    CHECK(log.head_checksum() == first.checksum);
    CHECK(log.header(2) == nullptr);
    CHECK(log.header(3) == nullptr);
    CHECK(!log.write_queued(2));

    const Header second_new = fixture.append_next(1);
    CHECK(second_new.checksum != second.checksum);
    ticks_until_idle(fixture.storage);
    CHECK(fixture.written.ops() == std::vector<u64>{1, 2});
    CHECK(fixture.written.headers[0].checksum == first.checksum);
    CHECK(fixture.written.headers[1].checksum == second_new.checksum);
    for (const Header& header : fixture.written.headers) {
      CHECK(header.checksum != second.checksum);
      CHECK(header.checksum != third.checksum);
    }
    REQUIRE(log.header(2) != nullptr);
    CHECK(log.header(2)->checksum == second_new.checksum);
    CHECK(log.header(3) == nullptr);
  }

  TEST_CASE("log: truncate_after removes the entries above an op") {
    // Goal: after truncate_after(op) the log ends at op: header() has nothing above it, op()
    // and head_checksum() are op's, checksum_of() forgets the removed ops, and the chain
    // continues from op with other prepares.
    Fixture fixture;
    TestLog& log = fixture.log;
    std::vector<Header> appended;
    for (u32 count = 0; count < 6; count += 1) appended.push_back(fixture.append_next());
    ticks_until_idle(fixture.storage);

    CHECK(log.truncate_after(3));
    CHECK(log.op() == 3);
    CHECK(log.head_checksum() == appended[2].checksum);
    CHECK(log.head_timestamp() == 30);
    for (u64 op = 1; op <= 3; op += 1) {
      REQUIRE(log.header(op) != nullptr);
      CHECK(log.header(op)->checksum == appended[op - 1].checksum);
    }
    for (u64 op = 4; op <= 6; op += 1) {
      CHECK(log.header(op) == nullptr);
      CHECK(!log.checksum_of(op).has_value());
    }
    CHECK(log.wal().op_max() == u64{3});

    // The chain goes on from op 3 with a prepare of another view.
    const Header replacement = fixture.append_next(1);
    CHECK(replacement.prepare.parent == appended[2].checksum);
    CHECK(replacement.checksum != appended[3].checksum);
    CHECK(log.op() == 4);
    ticks_until_idle(fixture.storage);
    CHECK(log.checksum_of(4) == replacement.checksum);

    // Down to the anchor: the root.
    CHECK(log.truncate_after(0));
    CHECK(log.op() == 0);
    CHECK(log.head_checksum() == vsr::root_prepare(cluster).checksum);
    CHECK(log.head_timestamp() == 0);
    CHECK(log.header(1) == nullptr);
    CHECK(!log.wal().op_max().has_value());
  }

  TEST_CASE("log: truncate_after refuses while a write to a removed op is in flight") {
    // Goal: with the writes of ops 2..4 in flight, truncating after op 1 is refused and
    // changes nothing; once they are durable it succeeds. Truncating above the ops in flight
    // is allowed.
    Fixture fixture;
    TestLog& log = fixture.log;
    const Header first = fixture.append_next();
    ticks_until_idle(fixture.storage);
    std::vector<Header> appended;
    for (u32 count = 0; count < 3; count += 1) appended.push_back(fixture.append_next());
    REQUIRE(log.wal().writing(log.wal().slot_for_op(3)));

    CHECK(!log.truncate_after(1));
    CHECK(log.op() == 4);
    CHECK(log.head_checksum() == appended[2].checksum);
    for (u64 op = 2; op <= 4; op += 1) {
      REQUIRE(log.header(op) != nullptr);
      CHECK(log.header(op)->checksum == appended[op - 2].checksum);
    }
    CHECK(log.truncate_after(4));  // Nothing above op 4: nothing to refuse.
    CHECK(log.op() == 4);

    ticks_until_idle(fixture.storage);
    CHECK(fixture.written.ops().size() == 4);
    CHECK(log.truncate_after(1));
    CHECK(log.op() == 1);
    CHECK(log.head_checksum() == first.checksum);
    CHECK(log.header(2) == nullptr);
  }

  TEST_CASE("log: a restart finds the chain again up to the last durable entry") {
    // Goal: a new Log on the same storage, its WAL recovered and anchored at the root, finds
    // by head_recover() every entry that was durable before the crash, with the same
    // checksums. An entry whose write was in flight at the crash is found only if its
    // prepare reached the disk. Several seeds, since the crash decides that at random.
    u32 landed_count = 0;
    for (u64 seed = 1; seed <= 6; seed += 1) {
      CAPTURE(seed);
      Storage storage(StorageOptions{.size = layout.size(), .seed = seed});
      MessagePool pool;
      pool.init(pool_capacity, message_size_max);
      WrittenLog written;
      std::vector<Header> appended;
      {
        TestLog log(storage, layout, cluster, false);
        const ReleaseGuard guard{log};
        log.init(&pool, WrittenLog::callback, &written);
        wal_open(log, storage, true);
        for (u32 count = 0; count < 5; count += 1) {
          Message* message = prepare_next(pool, log);
          appended.push_back(message->header());
          log.append(message);
          pool.unref(message);
        }
        ticks_until_idle(storage);
        REQUIRE(written.headers.size() == 5);
        Message* message = prepare_next(pool, log);  // Op 6: in flight at the crash.
        appended.push_back(message->header());
        log.append(message);
        pool.unref(message);
        storage.crash();
        log.release();
      }
      CHECK(pool.free_count() == pool_capacity);
      const std::span<const std::byte> slot_6 =
          storage.peek(layout.wal_prepare_offset(6), journal::sector_size);
      const bool landed = std::memcmp(slot_6.data(), &appended[5], header_size) == 0;
      if (landed) landed_count += 1;

      TestLog log(storage, layout, cluster, false);
      const ReleaseGuard guard{log};
      log.init(&pool, WrittenLog::callback, &written);
      wal_open(log, storage, false);
      log.anchor_set(0, vsr::root_prepare(cluster).checksum, 0);
      log.head_recover();
      CHECK(log.op() == (landed ? 6 : 5));
      for (u64 op = 1; op <= log.op(); op += 1) {
        REQUIRE(log.header(op) != nullptr);
        CHECK(log.header(op)->checksum == appended[op - 1].checksum);
        CHECK(log.checksum_of(op) == appended[op - 1].checksum);
      }
      CHECK(log.head_checksum() == appended[log.op() - 1].checksum);
      CHECK(log.head_timestamp() == appended[log.op() - 1].prepare.timestamp);
      CHECK(log.header(7) == nullptr);

      // The recovered log goes on.
      Message* message = prepare_next(pool, log);
      CHECK(message->header().prepare.parent == appended[log.op() - 1].checksum);
      log.append(message);
      pool.unref(message);
      ticks_until_idle(storage);
      log.release();
      CHECK(pool.free_count() == pool_capacity);
    }
    // These seeds cover both outcomes of the crash for op 6.
    CHECK(landed_count > 0);
    CHECK(landed_count < 6);
  }

  TEST_CASE("log: head_recover stops at a break in the chain") {
    // Goal: entries past a break stay in the WAL but are not part of the chain. Ops 1..3 are
    // written, the log truncated after op 1 and a different op 2 written: on disk op 3 now
    // names the old op 2 as parent, so after a restart the head is op 2 and op 3 remains
    // only until truncate_after() removes it.
    Storage storage(StorageOptions{.size = layout.size(), .seed = 9});
    MessagePool pool;
    pool.init(pool_capacity, message_size_max);
    WrittenLog written;
    const auto append = [&](TestLog& log, u32 view) {
      Message* message = prepare_next(pool, log, view);
      const Header header = message->header();
      log.append(message);
      pool.unref(message);
      ticks_until_idle(storage);
      return header;
    };
    Header second_new{};
    {
      TestLog log(storage, layout, cluster, false);
      const ReleaseGuard guard{log};
      log.init(&pool, WrittenLog::callback, &written);
      wal_open(log, storage, true);
      append(log, 0);
      append(log, 0);
      append(log, 0);
      REQUIRE(log.truncate_after(1));
      second_new = append(log, 1);
      log.release();
    }
    TestLog log(storage, layout, cluster, false);
    const ReleaseGuard guard{log};
    log.init(&pool, WrittenLog::callback, &written);
    wal_open(log, storage, false);
    log.head_recover();
    CHECK(log.op() == 2);
    CHECK(log.head_checksum() == second_new.checksum);
    REQUIRE(log.header(3) != nullptr);  // Still in the WAL, past the break.
    CHECK(log.header(3)->prepare.parent != second_new.checksum);
    CHECK(!log.follows_head(*log.header(3)));
    CHECK(log.truncate_after(2));
    CHECK(log.header(3) == nullptr);
    log.release();
  }

  TEST_CASE("log: view headers beyond the WAL leave no entry above the checkpoint") {
    // Goal: the regression of simulator seed 210846881637209. A backup took a start_view none
    // of whose headers its WAL could hold, and truncated its log to its executed op in memory;
    // after a crash its WAL's stale entries of an older view came back as the head and were
    // executed. Durable view headers that are all above op_max keep no entry at all; headers
    // the WAL can hold keep the entries below them (the hash chain decides there).
    Storage storage(StorageOptions{.size = layout.size(), .seed = 11});
    MessagePool pool;
    pool.init(pool_capacity, message_size_max);
    WrittenLog written;
    {
      TestLog log(storage, layout, cluster, false);
      const ReleaseGuard guard{log};
      log.init(&pool, WrittenLog::callback, &written);
      wal_open(log, storage, true);
      for (u32 count = 0; count < 5; count += 1) {
        Message* message = prepare_next(pool, log, 1);
        log.append(message);
        pool.unref(message);
      }
      ticks_until_idle(storage);
      REQUIRE(log.op() == 5);
      log.release();
    }
    // Three headers of view 2's log, at `newest` and the two ops below it.
    const auto view_headers = [](u64 newest) {
      std::vector<Header> headers;
      for (u64 op = newest; op > newest - 3; op -= 1) {
        Header header{};
        header.cluster = cluster;
        header.size = header_size;
        header.view = 2;
        header.command = Command::prepare;
        header.prepare.op = op;
        header.prepare.timestamp = 1000 + op;
        header.prepare.operation = Operation::create_transfers;
        set_checksum_body(header, std::span<const std::byte>{});
        set_checksum(header);
        headers.push_back(header);
      }
      return headers;
    };
    for (const bool beyond : {true, false}) {
      CAPTURE(beyond);
      TestLog log(storage, layout, cluster, false);
      const ReleaseGuard guard{log};
      log.init(&pool, WrittenLog::callback, &written);
      wal_open(log, storage, false);
      const u64 newest = beyond ? log.op_max() + 3 : 40;
      const std::vector<Header> headers = view_headers(newest);
      log.head_recover_cluster(headers, 2, 2);
      for (u64 op = 1; op <= 5; op += 1) CHECK((log.header(op) == nullptr) == beyond);
      CHECK(log.op() == (beyond ? 0 : newest));
      log.release();
    }
  }

  TEST_CASE("log: head_recover ends the chain at an entry whose timestamp does not rise") {
    // Goal: the data file is input. An op 2 that names op 1 as parent but carries op 1's
    // timestamp (written straight to the WAL, as no primary would make it) is not part of the
    // chain after a restart; the same op 2 with a timestamp one above is (the control).
    const auto recovered_op = [](u64 timestamp_delta) {
      Storage storage(StorageOptions{.size = layout.size(), .seed = 11});
      MessagePool pool;
      pool.init(pool_capacity, message_size_max);
      WrittenLog written;
      {
        TestLog log(storage, layout, cluster, false);
        const ReleaseGuard guard{log};
        log.init(&pool, WrittenLog::callback, &written);
        wal_open(log, storage, true);
        Message* first = prepare_next(pool, log);
        log.append(first);
        pool.unref(first);
        ticks_until_idle(storage);
        REQUIRE(log.head_timestamp() == 10);
        Message* second = prepare_make(pool, {.op = 2,
                                              .parent = log.head_checksum(),
                                              .timestamp = 10 + timestamp_delta});
        TestWal::Write write;
        bool done = false;
        write.context = &done;
        log.wal().write_prepare(
            &write, [](TestWal::Write* w) { *static_cast<bool*>(w->context) = true; },
            second->padded());
        ticks_until(storage, done);
        pool.unref(second);
      }
      TestLog log(storage, layout, cluster, false);
      const ReleaseGuard guard{log};
      log.init(&pool, WrittenLog::callback, &written);
      wal_open(log, storage, false);
      log.head_recover();
      REQUIRE(log.header(2) != nullptr);  // In the WAL either way.
      CHECK(log.header(2)->prepare.timestamp == 10 + timestamp_delta);
      return log.op();
    };
    CHECK(recovered_op(0) == 1);
    CHECK(recovered_op(1) == 2);
  }

  TEST_CASE("log: a damaged entry is dirty and restorable, and restore repairs it") {
    // Goal: a read that finds an entry's prepare damaged on disk makes it dirty; it is then
    // restorable from a copy with the checksum the log vouches for, which makes it clean and
    // runs `written` again.
    Fixture fixture;
    TestLog& log = fixture.log;
    std::vector<Header> appended;
    for (u32 count = 0; count < 3; count += 1) appended.push_back(fixture.append_next());
    const u128 checksum = appended[1].checksum;
    CHECK(!log.restorable(2, checksum));  // Dirty, but already being written.
    ticks_until_idle(fixture.storage);
    CHECK(!log.dirty(2));
    CHECK(!log.restorable(2, checksum));  // Clean.

    fixture.storage.inject_bit_flip(layout.wal_prepare_offset(2));
    Message* buffer = fixture.pool.get();
    REQUIRE(buffer != nullptr);
    TestWal::Read read;
    bool done = false;
    read.context = &done;
    log.wal().read_prepare(
        &read, [](TestWal::Read* r) { *static_cast<bool*>(r->context) = true; }, 2,
        appended[1].checksum, std::span<std::byte>(buffer->buffer, message_size_max));
    ticks_until(fixture.storage, done);
    CHECK(read.status == journal::PrepareStatus::faulty);
    CHECK(log.dirty(2));
    CHECK(log.restorable(2, checksum));
    CHECK(!log.restorable(2, appended[0].checksum));  // Not the checksum the log vouches for.
    CHECK(!log.dirty(1));
    fixture.pool.unref(buffer);

    // The cache still holds the intact prepare: the repair's source here.
    Message* intact = log.cache_get_entry(2);
    REQUIRE(intact != nullptr);
    fixture.written.headers.clear();
    log.restore(intact);
    CHECK(!log.restorable(2, checksum));
    ticks_until_idle(fixture.storage);
    CHECK(!log.dirty(2));
    CHECK(fixture.written.ops() == std::vector<u64>{2});
    CHECK(fixture.written.headers[0].checksum == appended[1].checksum);
  }

  TEST_CASE("log: the prepare cache holds one prepare per op slot") {
    // Goal: cache_get() returns the cached prepare of exactly that op (not another op of the
    // same cache slot); cache_get_entry() only when it is the log's entry; cache_drop_above()
    // forgets the ops above; each cached prepare holds one reference.
    Fixture fixture;
    TestLog& log = fixture.log;
    MessagePool& pool = fixture.pool;
    CHECK(log.cache_get(1) == nullptr);
    for (u32 count = 0; count < 4; count += 1) fixture.append_next();
    ticks_until_idle(fixture.storage);
    for (u64 op = 1; op <= 4; op += 1) {
      Message* cached = log.cache_get(op);
      REQUIRE(cached != nullptr);
      CHECK(cached->header().prepare.op == op);
      CHECK(cached->references == 1);  // The cache's: the writes are done.
      CHECK(log.cache_get_entry(op) == cached);
    }
    CHECK(pool.free_count() == pool_capacity - 4);
    CHECK(log.cache_get(5) == nullptr);
    CHECK(log.cache_get(1 + vsr::prepare_cache_max) == nullptr);  // Same slot as op 1.

    // A prepare of op 3 that is not the log's entry (another view): cached, but not the entry.
    Message* other = prepare_make(pool, {.op = 3, .parent = 1, .timestamp = 99, .view = 4});
    log.cache_put(other);
    CHECK(other->references == 2);
    CHECK(log.cache_get(3) == other);
    CHECK(log.cache_get_entry(3) == nullptr);
    log.cache_put(other);  // Again: no second reference.
    CHECK(other->references == 2);
    pool.unref(other);
    CHECK(pool.free_count() == pool_capacity - 4);  // The old op 3 went back to the pool.

    log.cache_drop_above(2);
    CHECK(log.cache_get(3) == nullptr);
    CHECK(log.cache_get(4) == nullptr);
    CHECK(log.cache_get(2) != nullptr);
    CHECK(log.cache_get(1) != nullptr);
    CHECK(pool.free_count() == pool_capacity - 2);
    // The log's entries are still there (only cached copies went).
    REQUIRE(log.header(4) != nullptr);
    CHECK(log.cache_get_entry(4) == nullptr);

    log.release();
    CHECK(pool.free_count() == pool_capacity);
  }

  TEST_CASE("log: release gives back every message, writes in flight included") {
    // Goal: release() drops the cache's, the queue's and the writes' references, so the pool
    // is whole again even with writes in flight and queued (solo).
    Fixture fixture(true);
    for (u32 count = 0; count < 5; count += 1) fixture.append_next();
    CHECK(fixture.pool.free_count() == pool_capacity - 5);
    Message* first = fixture.log.cache_get(1);
    REQUIRE(first != nullptr);
    CHECK(first->references == 2);  // The cache's and the write's.
    fixture.storage.crash();
    fixture.log.release();
    CHECK(fixture.pool.free_count() == pool_capacity);
  }
}
