// Tests of vsr::Pipeline and vsr::RequestQueue (src/vsr/pipeline.hpp) on a real MessagePool with
// real, checksummed prepare and request headers: entries by op, acknowledgements by (op,
// checksum), the commit rule (a quorum that includes the primary's own write, stopping at the
// first op without one), executed entries leaving oldest first, the per-client and pulse
// lookups, the capacity reservation of the ops in flight, and that every reference taken goes
// back to the pool.
#include <cstddef>
#include <vector>

#include "doctest/doctest.h"
#include "src/base/death_test.hpp"
#include "src/base/message_pool.hpp"
#include "src/state_machine/state_machine.hpp"
#include "src/vsr/pipeline.hpp"
#include "tally/constants.hpp"
#include "tally/header.hpp"
#include "tally/multi_batch.hpp"
#include "tally/operation.hpp"
#include "tally/records.hpp"

namespace {

using namespace tally;
using base::Message;
using base::MessagePool;
using state_machine::StateMachine;
using vsr::Pipeline;
using vsr::pipeline_max;
using vsr::request_queue_max;
using vsr::RequestQueue;
using vsr::Reservation;
using vsr::reservation_of;

constexpr u128 cluster = 0x7a11'c1a5;

struct PrepareSpec {
  u64 op = 0;
  u128 client = 0;  // 0: the primary's own operation (a pulse).
  Operation operation = Operation::create_transfers;
  u64 timestamp = 0;  // 0: 1000 + op.
};

// A checksummed prepare with an empty body, padded, with one reference (the caller's).
Message* prepare_make(MessagePool& pool, const PrepareSpec& spec) {
  Message* message = pool.get();
  REQUIRE(message != nullptr);
  Header& header = message->header();
  header.cluster = cluster;
  header.size = header_size;
  header.release = release_server;
  header.command = Command::prepare;
  header.prepare.op = spec.op;
  header.prepare.commit = spec.op - 1;
  header.prepare.client = spec.client;
  header.prepare.request = spec.client == 0 ? 0 : 1;
  header.prepare.operation = spec.operation;
  header.prepare.timestamp = spec.timestamp == 0 ? 1000 + spec.op : spec.timestamp;
  header.checksum_body = checksum_empty;
  set_checksum(header);
  message->pad_zero();
  REQUIRE(checksum_valid(header));
  return message;
}

// A checksummed request of `client` with an empty body, with one reference (the caller's).
Message* request_make(MessagePool& pool, u128 client, u32 number) {
  Message* message = pool.get();
  REQUIRE(message != nullptr);
  Header& header = message->header();
  header.cluster = cluster;
  header.size = header_size;
  header.release = release_client_node;
  header.command = Command::request;
  header.request.client = client;
  header.request.session = 1;
  header.request.request = number;
  header.request.operation = Operation::lookup_accounts;
  header.checksum_body = checksum_empty;
  set_checksum(header);
  message->pad_zero();
  return message;
}

// A multi-batch body of `count` zeroed events of `operation`, as a client would encode it.
std::vector<std::byte> body_make(Operation operation, u32 count) {
  const u32 event_size = operation_event_size(operation);
  std::vector<std::byte> buffer(message_body_size_max);
  MultiBatchEncoder encoder(buffer, event_size);
  const std::vector<std::byte> events(std::size_t{count} * event_size);
  REQUIRE(encoder.batch_add(events) == MultiBatchEncodeError::none);
  REQUIRE(encoder.finish() == MultiBatchEncodeError::none);
  buffer.resize(encoder.size());
  return buffer;
}

// What a request of `count` events of `operation` reserves, counted as the replica counts it.
Reservation reservation_for(Operation operation, u32 count) {
  const std::vector<std::byte> body = body_make(operation, count);
  return reservation_of(operation, StateMachine::timestamp_event_count(operation, body));
}

bool reservation_equal(Reservation reservation, u32 accounts, u32 transfers) {
  return reservation.accounts == accounts && reservation.transfers == transfers;
}

constexpr Reservation reservation_none{.accounts = 0, .transfers = 0};

// The pipeline's ops, oldest first.
std::vector<u64> pipeline_ops(const Pipeline& pipeline) {
  std::vector<u64> ops;
  for (u32 index = 0; index < pipeline.count(); index += 1) {
    ops.push_back(pipeline.entry(index).op);
  }
  return ops;
}

// Pops every request and returns their clients, oldest first; drops the popped references.
std::vector<u128> queue_drain(RequestQueue& queue, MessagePool& pool) {
  std::vector<u128> clients;
  while (!queue.empty()) {
    Message* request = queue.pop();
    clients.push_back(request->header().request.client);
    pool.unref(request);
  }
  return clients;
}

}  // namespace

TEST_SUITE("pipeline") {
  TEST_CASE("pipeline: push fills entries by op up to pipeline_max") {
    // Goal: each push appends the next op with the given ok_mask, reservation and its own
    // reference to the prepare; full() holds at pipeline_max and not before.
    MessagePool pool;
    pool.init(16, message_size_max);
    Pipeline pipeline;
    pipeline.init(&pool);
    CHECK(pipeline.empty());
    CHECK(pipeline.count() == 0);

    std::vector<Message*> prepares;
    for (u64 op = 11; op < 11 + pipeline_max; op += 1) {
      CHECK(!pipeline.full());
      Message* prepare = prepare_make(pool, {.op = op, .client = 100 + op});
      prepares.push_back(prepare);
      const u32 mask = 1u << (op % 3);
      pipeline.push(prepare, mask, Reservation{.accounts = 0, .transfers = static_cast<u32>(op)});
      CHECK(pipeline.count() == op - 10);
      CHECK(prepare->references == 2);
    }
    CHECK(pipeline.full());
    CHECK(!pipeline.empty());
    CHECK(pipeline.count() == pipeline_max);
    CHECK(pipeline_ops(pipeline) == std::vector<u64>{11, 12, 13, 14, 15, 16, 17, 18});
    for (u32 index = 0; index < pipeline.count(); index += 1) {
      const Pipeline::Entry& entry = pipeline.entry(index);
      CHECK(entry.prepare == prepares[index]);
      CHECK(entry.op == 11 + index);
      CHECK(entry.ok_mask == 1u << ((11 + index) % 3));
      CHECK(entry.reservation.transfers == 11 + index);
      CHECK(entry.reservation.accounts == 0);
    }

    for (Message* prepare : prepares) pool.unref(prepare);
    CHECK(pool.free_count() == 16 - pipeline_max);  // The pipeline's references remain.
    pipeline.release();
    CHECK(pool.free_count() == 16);
  }

  TEST_CASE("pipeline: acknowledge records a replica for a known (op, checksum) only") {
    // Goal: an acknowledgement sets the replica's bit of the matching entry and no other, is
    // idempotent, and is refused for an unknown op or a checksum of another prepare.
    MessagePool pool;
    pool.init(8, message_size_max);
    Pipeline pipeline;
    pipeline.init(&pool);
    std::vector<Message*> prepares;
    for (u64 op = 5; op <= 7; op += 1) {
      prepares.push_back(prepare_make(pool, {.op = op, .client = 20 + op}));
      pipeline.push(prepares.back(), 0b001, reservation_none);
    }
    const u128 checksum_5 = prepares[0]->header().checksum;
    const u128 checksum_6 = prepares[1]->header().checksum;
    REQUIRE(checksum_5 != checksum_6);

    CHECK(pipeline.acknowledge(6, checksum_6, 2));
    CHECK(pipeline.entry(1).ok_mask == 0b101);
    CHECK(pipeline.entry(0).ok_mask == 0b001);
    CHECK(pipeline.entry(2).ok_mask == 0b001);
    CHECK(pipeline.acknowledge(6, checksum_6, 2));  // Again: no change.
    CHECK(pipeline.entry(1).ok_mask == 0b101);

    // The op is known but the checksum is another prepare's: a stale chain's acknowledgement.
    CHECK(!pipeline.acknowledge(6, checksum_5, 1));
    // An op the pipeline does not hold (executed already, or never prepared).
    CHECK(!pipeline.acknowledge(4, checksum_5, 1));
    CHECK(!pipeline.acknowledge(8, checksum_6, 1));
    CHECK(pipeline.entry(0).ok_mask == 0b001);
    CHECK(pipeline.entry(1).ok_mask == 0b101);
    CHECK(pipeline.entry(2).ok_mask == 0b001);

    CHECK(pipeline.acknowledge(5, checksum_5, replicas_max - 1));
    CHECK(pipeline.entry(0).ok_mask == (0b001u | 1u << (replicas_max - 1)));

    for (Message* prepare : prepares) pool.unref(prepare);
    pipeline.release();
    CHECK(pool.free_count() == 8);
  }

  TEST_CASE("pipeline: commit_prefix needs a quorum with the primary and stops at a gap") {
    // Goal: with 3 replicas (quorum 2) and the primary at index 0, an op commits once two
    // replicas, the primary among them, hold it; two backups alone are not enough; the prefix
    // stops at the first op without a quorum even if later ops have one.
    MessagePool pool;
    pool.init(8, message_size_max);
    Pipeline pipeline;
    pipeline.init(&pool);
    std::vector<u128> checksums;
    for (u64 op = 1; op <= 4; op += 1) {
      Message* prepare = prepare_make(pool, {.op = op, .client = 30 + op});
      checksums.push_back(prepare->header().checksum);
      pipeline.push(prepare, 0, reservation_none);
      pool.unref(prepare);
    }
    const auto ack = [&](u64 op, u8 replica) {
      CHECK(pipeline.acknowledge(op, checksums[op - 1], replica));
    };
    constexpr u8 self = 0;
    constexpr u32 quorum = 2;

    CHECK(pipeline.commit_prefix(0, self, quorum) == 0);
    ack(1, 1);
    ack(1, 2);
    CHECK(pipeline.commit_prefix(0, self, quorum) == 0);  // Both backups, not the primary.
    ack(1, 0);
    CHECK(pipeline.commit_prefix(0, self, quorum) == 1);

    ack(2, 0);  // The primary alone: below quorum.
    ack(3, 0);
    ack(3, 1);  // Op 3 has its quorum, op 2 not yet.
    CHECK(pipeline.commit_prefix(0, self, quorum) == 1);
    CHECK(pipeline.commit_prefix(1, self, quorum) == 1);
    ack(2, 2);
    CHECK(pipeline.commit_prefix(0, self, quorum) == 3);
    CHECK(pipeline.commit_prefix(1, self, quorum) == 3);
    CHECK(pipeline.commit_prefix(3, self, quorum) == 3);  // Op 4: nobody yet.

    // Seen from replica 1 as the primary: op 2 lacks its bit.
    CHECK(pipeline.commit_prefix(0, 1, quorum) == 1);
    // A larger quorum: only op 1 has three acknowledgements.
    CHECK(pipeline.commit_prefix(0, self, 3) == 1);

    ack(4, 0);
    ack(4, 2);
    CHECK(pipeline.commit_prefix(3, self, quorum) == 4);
    CHECK(pipeline.commit_prefix(4, self, quorum) == 4);

    // A solo replica: quorum 1, its own write is enough.
    Pipeline solo;
    solo.init(&pool);
    Message* prepare = prepare_make(pool, {.op = 9, .client = 90});
    solo.push(prepare, 0, reservation_none);
    CHECK(solo.commit_prefix(8, 0, 1) == 8);
    CHECK(solo.acknowledge(9, prepare->header().checksum, 0));
    CHECK(solo.commit_prefix(8, 0, 1) == 9);
    pool.unref(prepare);

    solo.release();
    pipeline.release();
    CHECK(pool.free_count() == 8);
  }

  TEST_CASE("pipeline: pop_executed pops only the oldest entry, and only for its op") {
    // Goal: executing an op that is not the oldest entry's (or that is not there at all)
    // leaves the pipeline as it is; executing the oldest's removes it and drops its reference.
    MessagePool pool;
    pool.init(8, message_size_max);
    Pipeline pipeline;
    pipeline.init(&pool);
    std::vector<Message*> prepares;
    for (u64 op = 1; op <= 3; op += 1) {
      prepares.push_back(prepare_make(pool, {.op = op, .client = 40 + op}));
      pipeline.push(prepares.back(), 0, reservation_none);
    }
    pipeline.pop_executed(2);
    pipeline.pop_executed(3);
    pipeline.pop_executed(0);
    CHECK(pipeline_ops(pipeline) == std::vector<u64>{1, 2, 3});
    CHECK(prepares[1]->references == 2);

    pipeline.pop_executed(1);
    CHECK(pipeline_ops(pipeline) == std::vector<u64>{2, 3});
    CHECK(prepares[0]->references == 1);
    CHECK(pipeline.entry(0).prepare == prepares[1]);
    pipeline.pop_executed(1);  // Already gone.
    CHECK(pipeline.count() == 2);

    // A new op after the head still pushes behind the remaining entries.
    Message* next = prepare_make(pool, {.op = 4, .client = 44});
    pipeline.push(next, 0, reservation_none);
    CHECK(pipeline_ops(pipeline) == std::vector<u64>{2, 3, 4});
    pipeline.pop_executed(2);
    pipeline.pop_executed(3);
    pipeline.pop_executed(4);
    CHECK(pipeline.empty());
    pipeline.pop_executed(5);  // Empty: nothing to do.
    CHECK(pipeline.empty());

    for (Message* prepare : prepares) CHECK(prepare->references == 1);
    CHECK(next->references == 1);
    for (Message* prepare : prepares) pool.unref(prepare);
    pool.unref(next);
    CHECK(pool.free_count() == 8);
  }

  TEST_CASE("pipeline: has_client and has_pulse see the entries in flight") {
    // Goal: has_client() is true exactly for the clients of entries in the pipeline, and
    // has_pulse() exactly while a pulse (the primary's own operation) is in it.
    MessagePool pool;
    pool.init(8, message_size_max);
    Pipeline pipeline;
    pipeline.init(&pool);
    CHECK(!pipeline.has_client(11));
    CHECK(!pipeline.has_pulse());

    Message* first = prepare_make(pool, {.op = 1, .client = 11});
    Message* pulse = prepare_make(pool, {.op = 2, .client = 0, .operation = Operation::pulse});
    Message* third = prepare_make(pool, {.op = 3, .client = 13});
    pipeline.push(first, 0, reservation_none);
    CHECK(pipeline.has_client(11));
    CHECK(!pipeline.has_client(13));
    CHECK(!pipeline.has_pulse());
    pipeline.push(pulse, 0, reservation_none);
    pipeline.push(third, 0, reservation_none);
    CHECK(pipeline.has_pulse());
    CHECK(pipeline.has_client(11));
    CHECK(pipeline.has_client(13));
    CHECK(!pipeline.has_client(12));

    pipeline.pop_executed(1);
    CHECK(!pipeline.has_client(11));
    CHECK(pipeline.has_pulse());
    pipeline.pop_executed(2);
    CHECK(!pipeline.has_pulse());
    CHECK(pipeline.has_client(13));

    // Another operation of the primary's own (a noop) is not a pulse.
    Message* other = prepare_make(pool, {.op = 4, .client = 0, .operation = Operation::noop});
    pipeline.push(other, 0, reservation_none);
    CHECK(!pipeline.has_pulse());

    for (Message* message : {first, pulse, third, other}) pool.unref(message);
    pipeline.release();
    CHECK(pool.free_count() == 8);
  }

  TEST_CASE("pipeline: reservation_of by operation, counted from real request bodies") {
    // Goal: a create_accounts request reserves accounts, a create_transfers request transfers,
    // one per event; lookups, pulses and VSR operations reserve nothing.
    CHECK(reservation_equal(reservation_for(Operation::create_accounts, 5), 5, 0));
    CHECK(reservation_equal(reservation_for(Operation::create_transfers, 7), 0, 7));
    CHECK(reservation_equal(reservation_for(Operation::create_transfers, 1), 0, 1));
    CHECK(reservation_equal(reservation_for(Operation::lookup_accounts, 9), 0, 0));
    CHECK(reservation_equal(reservation_for(Operation::lookup_transfers, 3), 0, 0));
    // The deprecated creates count like the current ones.
    CHECK(reservation_equal(reservation_of(Operation::deprecated_create_accounts_sparse, 3), 3,
                            0));
    CHECK(reservation_equal(reservation_of(Operation::deprecated_create_accounts_unbatched, 2),
                            2, 0));
    CHECK(reservation_equal(reservation_of(Operation::deprecated_create_transfers_sparse, 4), 0,
                            4));
    CHECK(reservation_equal(reservation_of(Operation::deprecated_create_transfers_unbatched, 6),
                            0, 6));
    // A pulse consumes pulse_expiries_max timestamps but creates nothing.
    const u32 pulse_events =
        StateMachine::timestamp_event_count(Operation::state_machine_pulse, {});
    CHECK(pulse_events == StateMachine::pulse_expiries_max);
    CHECK(reservation_equal(reservation_of(Operation::pulse, pulse_events), 0, 0));
    CHECK(reservation_equal(reservation_of(Operation::state_machine_pulse, pulse_events), 0, 0));
    CHECK(reservation_equal(reservation_of(Operation::register_session, 1), 0, 0));
  }

  TEST_CASE("pipeline: reservation sums the entries in flight") {
    // Goal: reservation() is the sum of the entries' reservations, and an executed entry's
    // share leaves with it.
    MessagePool pool;
    pool.init(8, message_size_max);
    Pipeline pipeline;
    pipeline.init(&pool);
    CHECK(reservation_equal(pipeline.reservation(), 0, 0));

    const PrepareSpec specs[] = {
        {.op = 1, .client = 1, .operation = Operation::create_accounts},
        {.op = 2, .client = 2, .operation = Operation::create_transfers},
        {.op = 3, .client = 3, .operation = Operation::lookup_accounts},
        {.op = 4, .client = 0, .operation = Operation::pulse},
        {.op = 5, .client = 5, .operation = Operation::create_transfers},
    };
    const u32 event_counts[] = {5, 7, 9, StateMachine::pulse_expiries_max, 2};
    for (u32 index = 0; index < 5; index += 1) {
      Message* prepare = prepare_make(pool, specs[index]);
      const Operation operation = specs[index].operation;
      const Reservation reservation =
          operation == Operation::pulse ? reservation_of(operation, event_counts[index])
                                        : reservation_for(operation, event_counts[index]);
      pipeline.push(prepare, 0, reservation);
      pool.unref(prepare);
    }
    CHECK(reservation_equal(pipeline.reservation(), 5, 9));
    pipeline.pop_executed(1);
    CHECK(reservation_equal(pipeline.reservation(), 0, 9));
    pipeline.pop_executed(2);
    CHECK(reservation_equal(pipeline.reservation(), 0, 2));
    pipeline.release();
    CHECK(reservation_equal(pipeline.reservation(), 0, 0));
    CHECK(pool.free_count() == 8);
  }

  TEST_CASE("pipeline: release returns every reference to the pool") {
    // Goal: after the other owners drop theirs, release() gives every prepare back to the
    // pool, and the pipeline is empty and usable again.
    MessagePool pool;
    pool.init(12, message_size_max);
    Pipeline pipeline;
    pipeline.init(&pool);
    std::vector<Message*> prepares;
    for (u64 op = 1; op <= pipeline_max; op += 1) {
      prepares.push_back(prepare_make(pool, {.op = op, .client = op}));
      pipeline.push(prepares.back(), 0, reservation_none);
    }
    CHECK(pool.free_count() == 12 - pipeline_max);
    for (Message* prepare : prepares) {
      CHECK(prepare->references == 2);
      pool.unref(prepare);
      CHECK(prepare->references == 1);
    }
    CHECK(pool.free_count() == 12 - pipeline_max);
    pipeline.release();
    CHECK(pipeline.empty());
    CHECK(pool.free_count() == 12);
    for (Message* prepare : prepares) CHECK(prepare->references == 0);

    // Usable again from any op.
    Message* again = prepare_make(pool, {.op = 50, .client = 50});
    pipeline.push(again, 0, reservation_none);
    CHECK(pipeline_ops(pipeline) == std::vector<u64>{50});
    pool.unref(again);
    pipeline.release();
    CHECK(pool.free_count() == 12);
  }

  TEST_CASE("pipeline: a push that skips an op asserts") {
    // Goal: entries hold consecutive ops; a prepare of op 3 after op 1 traps.
    const base::death_test::ChildResult child = base::death_test::run_in_child([] {
      MessagePool pool;
      pool.init(4, message_size_max);
      Pipeline pipeline;
      pipeline.init(&pool);
      pipeline.push(prepare_make(pool, {.op = 1, .client = 1}), 0, reservation_none);
      pipeline.push(prepare_make(pool, {.op = 3, .client = 3}), 0, reservation_none);
    });
    CHECK(child.trapped());
    CHECK(child.stderr_contains("entries_[count_ - 1].op + 1"));
  }

  TEST_CASE("request_queue: first in, first out, across the ring's wrap") {
    // Goal: requests come out in the order they went in, also after the ring wraps, and each
    // pop hands the queue's reference to the caller.
    MessagePool pool;
    pool.init(request_queue_max + 8, message_size_max);
    RequestQueue queue;
    queue.init(&pool);
    CHECK(queue.empty());

    Message* first = request_make(pool, 1, 1);
    queue.push(first);
    CHECK(first->references == 2);
    for (u128 client = 2; client <= 5; client += 1) {
      Message* request = request_make(pool, client, 1);
      queue.push(request);
      pool.unref(request);
    }
    CHECK(queue.count() == 5);
    Message* popped = queue.pop();
    CHECK(popped == first);
    CHECK(first->references == 2);  // Ours and the popped one, now the caller's.
    pool.unref(popped);
    CHECK(first->references == 1);
    pool.unref(first);

    // Fill to the brim so the ring wraps: 4 remain, 60 more make it full.
    u128 client_next = 6;
    while (!queue.full()) {
      Message* request = request_make(pool, client_next, 1);
      queue.push(request);
      pool.unref(request);
      client_next += 1;
    }
    CHECK(queue.count() == request_queue_max);
    CHECK(client_next == request_queue_max + 2);
    for (u32 pops = 0; pops < 3; pops += 1) pool.unref(queue.pop());
    for (u32 pushes = 0; pushes < 3; pushes += 1) {
      Message* request = request_make(pool, client_next, 1);
      queue.push(request);
      pool.unref(request);
      client_next += 1;
    }
    CHECK(queue.full());
    std::vector<u128> expected;
    for (u128 client = 5; client < client_next; client += 1) expected.push_back(client);
    CHECK(queue_drain(queue, pool) == expected);
    CHECK(queue.empty());
    CHECK(pool.free_count() == request_queue_max + 8);
  }

  TEST_CASE("request_queue: full at request_queue_max, which is clients_max") {
    // Goal: the queue is full with request_queue_max (clients_max) requests and not before.
    MessagePool pool;
    pool.init(request_queue_max + 1, message_size_max);
    RequestQueue queue;
    queue.init(&pool);
    CHECK(request_queue_max == clients_max);
    for (u32 index = 0; index < request_queue_max; index += 1) {
      CHECK(!queue.full());
      Message* request = request_make(pool, 1000 + index, 1);
      queue.push(request);
      pool.unref(request);
    }
    CHECK(queue.full());
    CHECK(queue.count() == request_queue_max);
    CHECK(pool.free_count() == 1);
    queue.release();
    CHECK(pool.free_count() == request_queue_max + 1);
  }

  TEST_CASE("request_queue: has_client sees queued requests only") {
    // Goal: has_client() is true for exactly the clients with a queued request.
    MessagePool pool;
    pool.init(8, message_size_max);
    RequestQueue queue;
    queue.init(&pool);
    CHECK(!queue.has_client(7));
    for (u128 client : {u128{7}, u128{8}, make_u128(1, 9)}) {
      Message* request = request_make(pool, client, 3);
      queue.push(request);
      pool.unref(request);
    }
    CHECK(queue.has_client(7));
    CHECK(queue.has_client(8));
    CHECK(queue.has_client(make_u128(1, 9)));
    CHECK(!queue.has_client(9));  // Same low half, other client.
    pool.unref(queue.pop());
    CHECK(!queue.has_client(7));
    CHECK(queue.has_client(8));
    queue.release();
    CHECK(!queue.has_client(8));
    CHECK(pool.free_count() == 8);
  }

  TEST_CASE("request_queue: release returns every reference to the pool") {
    // Goal: requests still queued go back to the pool on release(), and the queue can be used
    // again afterwards.
    MessagePool pool;
    pool.init(10, message_size_max);
    RequestQueue queue;
    queue.init(&pool);
    std::vector<Message*> requests;
    for (u128 client = 1; client <= 6; client += 1) {
      requests.push_back(request_make(pool, client, 1));
      queue.push(requests.back());
    }
    CHECK(pool.free_count() == 4);
    for (Message* request : requests) {
      CHECK(request->references == 2);
      pool.unref(request);
    }
    CHECK(pool.free_count() == 4);
    queue.release();
    CHECK(queue.empty());
    CHECK(pool.free_count() == 10);

    Message* again = request_make(pool, 77, 2);
    queue.push(again);
    pool.unref(again);
    CHECK(queue.count() == 1);
    CHECK(queue.has_client(77));
    queue.release();
    CHECK(pool.free_count() == 10);
  }
}
