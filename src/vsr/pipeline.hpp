// Pipeline: the primary's prepares in flight (prepared, not yet executed) with the replicas that
// hold each durably, and RequestQueue: the requests waiting for room in the pipeline.
//
//   RequestQueue (up to request_queue_max, FIFO)  ──>  Pipeline (up to pipeline_max, by op)
//                                                        [op n+1][op n+2]...[op n+k]
//                                                        ok_mask per entry: bit r = replica r
//                                                        acknowledged (the primary's own write)
//
// An entry leaves the pipeline only once executed (pop_executed()), not when it commits: until
// then a retransmission of its request must still find it here, or the request would be
// prepared a second time (a checkpoint or a WAL read can hold execution back after a commit).
// Each entry's reservation of ledger capacity (accounts or transfers it may create) is known
// when it enters (the request's events were counted once), not decoded on every capacity check.
//
// Invariants: entries hold consecutive ops in increasing order; each holds one reference to its
// prepare; at most one entry and one queued request per client; a bit of ok_mask is set for a
// replica index below the replica count only.
#pragma once

#include <bit>
#include <span>

#include "journal/wal.hpp"
#include "src/base/assert.hpp"
#include "src/base/message_pool.hpp"
#include "src/state_machine/state_machine.hpp"
#include "tally/constants.hpp"
#include "tally/header.hpp"
#include "tally/types.hpp"

namespace tally::vsr {

// Prepares in flight at the primary, uncommitted: also the WAL's concurrent writes.
inline constexpr u32 pipeline_max = journal::wal_write_count_max;
// Requests waiting for room in the pipeline: one per client session at most.
inline constexpr u32 request_queue_max = clients_max;

using Reservation = state_machine::StateMachine::Reservation;

// What a prepare of `operation` creating `events` events (timestamp_event_count()) reserves of
// the ledger's capacity until it executes.
inline Reservation reservation_of(Operation operation, u32 events) {
  Reservation reservation{.accounts = 0, .transfers = 0};
  if (operation == Operation::create_accounts ||
      operation == Operation::deprecated_create_accounts_sparse ||
      operation == Operation::deprecated_create_accounts_unbatched) {
    reservation.accounts = events;
  } else if (operation == Operation::create_transfers ||
             operation == Operation::deprecated_create_transfers_sparse ||
             operation == Operation::deprecated_create_transfers_unbatched) {
    reservation.transfers = events;
  }
  // Anything else creates nothing (a pulse's events are expiries, not new records).
  return reservation;
}

class Pipeline {
 public:
  struct Entry {
    base::Message* prepare = nullptr;
    u64 op = 0;
    u32 ok_mask = 0;  // Bit r: replica r holds the prepare durably (the primary's own bit too).
    Reservation reservation{.accounts = 0, .transfers = 0};
  };

  Pipeline() = default;
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;
  ~Pipeline() { TALLY_ASSERT(count_ == 0, "Pipeline::release() before destruction"); }

  void init(base::MessagePool* pool) {
    TALLY_ASSERT(pool != nullptr && pool_ == nullptr);
    pool_ = pool;
  }

  void release() {
    for (u32 index = 0; index < count_; index += 1) {
      pool_->unref(entries_[index].prepare);
      entries_[index] = Entry{};
    }
    count_ = 0;
  }

  u32 count() const { return count_; }
  bool empty() const { return count_ == 0; }
  bool full() const { return count_ == pipeline_max; }
  const Entry& entry(u32 index) const {
    TALLY_ASSERT(index < count_);
    return entries_[index];
  }

  // A prepare of the op after the last entry's; `ok_mask` says who holds it durably already,
  // `reservation` what it may create (reservation_of()).
  void push(base::Message* prepare, u32 ok_mask, Reservation reservation) {
    TALLY_ASSERT(!full());
    const Header& header = prepare->header();
    TALLY_ASSERT(header.command == Command::prepare);
    TALLY_ASSERT(count_ == 0 || header.prepare.op == entries_[count_ - 1].op + 1);
    entries_[count_] = Entry{
        .prepare = pool_->ref(prepare),
        .op = header.prepare.op,
        .ok_mask = ok_mask,
        .reservation = reservation,
    };
    count_ += 1;
  }

  // Records that `replica` holds the prepare (op, checksum) durably. False if the pipeline has
  // no such prepare (an old or unknown acknowledgement).
  bool acknowledge(u64 op, u128 checksum, u8 replica) {
    TALLY_ASSERT(replica < replicas_max);
    for (u32 index = 0; index < count_; index += 1) {
      Entry& entry = entries_[index];
      if (entry.op != op || entry.prepare->header().checksum != checksum) continue;
      entry.ok_mask |= 1u << replica;
      return true;
    }
    return false;
  }

  // The highest op up to which every entry above `commit` has a quorum of acknowledgements, the
  // primary's own among them (so a committed op is always in the primary's WAL); `commit` if
  // the next one has not.
  u64 commit_prefix(u64 commit, u8 self, u32 quorum) const {
    TALLY_ASSERT(quorum >= 1 && quorum <= replicas_max);
    for (u32 index = 0; index < count_; index += 1) {
      const Entry& entry = entries_[index];
      if (entry.op <= commit) continue;
      if ((entry.ok_mask & (1u << self)) == 0) break;
      if (static_cast<u32>(std::popcount(entry.ok_mask)) < quorum) break;
      TALLY_ASSERT(entry.op == commit + 1);
      commit = entry.op;
    }
    return commit;
  }

  // The oldest entry leaves once it has executed.
  void pop_executed(u64 op) {
    if (count_ == 0 || entries_[0].op != op) return;
    pool_->unref(entries_[0].prepare);
    for (u32 index = 1; index < count_; index += 1) entries_[index - 1] = entries_[index];
    count_ -= 1;
    entries_[count_] = Entry{};
    TALLY_ASSERT(count_ == 0 || entries_[0].op == op + 1);
  }

  bool has_client(u128 client) const {
    TALLY_ASSERT(client != 0);
    for (u32 index = 0; index < count_; index += 1) {
      if (entries_[index].prepare->header().prepare.client == client) return true;
    }
    return false;
  }

  bool has_pulse() const {
    for (u32 index = 0; index < count_; index += 1) {
      if (entries_[index].prepare->header().prepare.operation == Operation::pulse) return true;
    }
    return false;
  }

  // What the entries reserve of the ledger's capacity until they execute.
  Reservation reservation() const {
    Reservation total{.accounts = 0, .transfers = 0};
    for (u32 index = 0; index < count_; index += 1) {
      total.accounts += entries_[index].reservation.accounts;
      total.transfers += entries_[index].reservation.transfers;
    }
    return total;
  }

 private:
  base::MessagePool* pool_ = nullptr;
  Entry entries_[pipeline_max] = {};
  u32 count_ = 0;
};

class RequestQueue {
 public:
  RequestQueue() = default;
  RequestQueue(const RequestQueue&) = delete;
  RequestQueue& operator=(const RequestQueue&) = delete;
  ~RequestQueue() { TALLY_ASSERT(count_ == 0, "RequestQueue::release() before destruction"); }

  void init(base::MessagePool* pool) {
    TALLY_ASSERT(pool != nullptr && pool_ == nullptr);
    pool_ = pool;
  }

  void release() {
    while (count_ > 0) pool_->unref(pop());
  }

  u32 count() const { return count_; }
  bool empty() const { return count_ == 0; }
  bool full() const { return count_ == request_queue_max; }

  // Takes its own reference.
  void push(base::Message* request) {
    TALLY_ASSERT(!full());
    TALLY_ASSERT(request->header().command == Command::request);
    requests_[index_of(count_)] = pool_->ref(request);
    count_ += 1;
  }

  // The oldest request; the caller owns the queue's reference.
  base::Message* pop() {
    TALLY_ASSERT(count_ > 0);
    base::Message* request = requests_[head_];
    TALLY_ASSERT(request != nullptr);
    requests_[head_] = nullptr;
    head_ = (head_ + 1) % request_queue_max;
    count_ -= 1;
    return request;
  }

  bool has_client(u128 client) const {
    TALLY_ASSERT(client != 0);
    for (u32 position = 0; position < count_; position += 1) {
      if (requests_[index_of(position)]->header().request.client == client) return true;
    }
    return false;
  }

 private:
  u32 index_of(u32 position) const { return (head_ + position) % request_queue_max; }

  base::MessagePool* pool_ = nullptr;
  base::Message* requests_[request_queue_max] = {};
  u32 head_ = 0;
  u32 count_ = 0;
};

}  // namespace tally::vsr
