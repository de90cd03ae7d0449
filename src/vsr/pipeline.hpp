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
  TALLY_ASSERT(operation != Operation::reserved && operation != Operation::root);
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
  TALLY_ASSERT(reservation.accounts == 0 || reservation.transfers == 0);
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
    TALLY_ASSERT(count_ == 0);
    pool_ = pool;
  }

  void release() {
    TALLY_ASSERT(count_ == 0 || pool_ != nullptr, "entries without a pool");
    invariants();
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
    const Entry& result = entries_[index];
    TALLY_ASSERT(result.prepare != nullptr && result.prepare->header().prepare.op == result.op);
    return result;
  }

  // A prepare of the op after the last entry's; `ok_mask` says who holds it durably already,
  // `reservation` what it may create (reservation_of()).
  void push(base::Message* prepare, u32 ok_mask, Reservation reservation) {
    TALLY_ASSERT(!full());
    const Header& header = prepare->header();
    TALLY_ASSERT(header.command == Command::prepare);
    TALLY_ASSERT(header.prepare.op > 0, "op 0 is the root, never prepared");
    TALLY_ASSERT(count_ == 0 || header.prepare.op == entries_[count_ - 1].op + 1);
    TALLY_ASSERT(ok_mask < (1u << replicas_max), "ok_mask 0x%x", ok_mask);
    // A prepare creates accounts or transfers, never both (reservation_of()).
    TALLY_ASSERT(reservation.accounts == 0 || reservation.transfers == 0);
    entries_[count_] = Entry{
        .prepare = pool_->ref(prepare),
        .op = header.prepare.op,
        .ok_mask = ok_mask,
        .reservation = reservation,
    };
    count_ += 1;
    invariants();
  }

  // Records that `replica` holds the prepare (op, checksum) durably. False if the pipeline has
  // no such prepare (an old or unknown acknowledgement).
  bool acknowledge(u64 op, u128 checksum, u8 replica) {
    TALLY_ASSERT(replica < replicas_max);
    // What validation established for a prepare_ok (message_validation.hpp).
    TALLY_ASSERT(op > 0 && checksum != 0);
    for (u32 index = 0; index < count_; index += 1) {
      Entry& entry = entries_[index];
      if (entry.op != op || entry.prepare->header().checksum != checksum) continue;
      // Consecutive ops: the entry of `op` sits where its distance from the oldest says.
      TALLY_ASSERT(op - entries_[0].op == index);
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
    TALLY_ASSERT(self < replicas_max);
    // The pipeline holds every op after `commit` that is prepared (none is skipped): an entry
    // leaves only once executed, so only after it committed.
    TALLY_ASSERT(count_ == 0 || entries_[0].op <= commit + 1, "oldest op %llu, commit %llu",
                 static_cast<unsigned long long>(entries_[0].op),
                 static_cast<unsigned long long>(commit));
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
    invariants();
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
      const Header::Prepare& prepare = entries_[index].prepare->header().prepare;
      if (prepare.operation != Operation::pulse) continue;
      // The primary's own: no client, no request (validate_prepare_operation()).
      TALLY_ASSERT(prepare.client == 0 && prepare.request == 0);
      return true;
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
  // O(1) on every change: the count within capacity, the ends of the ops consecutive, the
  // slots past the count empty; the sweep of every entry only where slow checks run.
  void invariants() const {
    TALLY_ASSERT(count_ <= pipeline_max);
    TALLY_ASSERT(count_ == 0 || entries_[count_ - 1].op == entries_[0].op + count_ - 1);
    TALLY_ASSERT(count_ == pipeline_max || entries_[count_].prepare == nullptr);
    for (u32 index = 0; index < count_; index += 1) {
      const Entry& entry = entries_[index];
      TALLY_ASSERT_SLOW(entry.prepare != nullptr && entry.prepare->references > 0);
      TALLY_ASSERT_SLOW(entry.prepare->header().prepare.op == entry.op);
      TALLY_ASSERT_SLOW(index == 0 || entry.op == entries_[index - 1].op + 1);
    }
  }

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
    TALLY_ASSERT(count_ == 0);
    pool_ = pool;
  }

  void release() {
    TALLY_ASSERT(count_ == 0 || pool_ != nullptr, "requests without a pool");
    while (count_ > 0) pool_->unref(pop());
  }

  u32 count() const { return count_; }
  bool empty() const { return count_ == 0; }
  bool full() const { return count_ == request_queue_max; }

  // Takes its own reference.
  void push(base::Message* request) {
    TALLY_ASSERT(!full());
    TALLY_ASSERT(request->header().command == Command::request);
    // The slot after the newest is free: no reference is overwritten.
    TALLY_ASSERT(requests_[index_of(count_)] == nullptr);
    // At most one queued request per client (request_handle() checks before it queues).
    TALLY_ASSERT_SLOW(!has_client(request->header().request.client));
    requests_[index_of(count_)] = pool_->ref(request);
    count_ += 1;
    invariants();
  }

  // The oldest request; the caller owns the queue's reference.
  base::Message* pop() {
    TALLY_ASSERT(count_ > 0);
    base::Message* request = requests_[head_];
    TALLY_ASSERT(request != nullptr);
    TALLY_ASSERT(request->header().command == Command::request);  // As push() took it.
    requests_[head_] = nullptr;
    head_ = (head_ + 1) % request_queue_max;
    count_ -= 1;
    invariants();
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
  u32 index_of(u32 position) const {
    TALLY_ASSERT(position < request_queue_max && head_ < request_queue_max);
    return (head_ + position) % request_queue_max;
  }

  // The ring holds count_ requests from head_ on: the oldest is there, the slot after the
  // newest is free (unless full).
  void invariants() const {
    TALLY_ASSERT(count_ <= request_queue_max && head_ < request_queue_max);
    TALLY_ASSERT(count_ == 0 || requests_[head_] != nullptr);
    TALLY_ASSERT(count_ == request_queue_max || requests_[index_of(count_)] == nullptr);
  }

  base::MessagePool* pool_ = nullptr;
  base::Message* requests_[request_queue_max] = {};
  u32 head_ = 0;
  u32 count_ = 0;
};

}  // namespace tally::vsr
