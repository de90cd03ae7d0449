// The new primary's choice of log (view_change_quorum.hpp), case by case: canonical logs, the
// commit bound, nack quorums, blanks, uncertain heads, waiting, and logs that cannot be.
#include <vector>

#include "doctest/doctest.h"
#include "src/vsr/quorums.hpp"
#include "src/vsr/view_change_quorum.hpp"
#include "tally/header.hpp"

namespace {

using tally::Command;
using tally::Header;
using tally::Operation;
using tally::u128;
using tally::u16;
using tally::u32;
using tally::u64;
using tally::u8;
using tally::vsr::DoViewChange;
using tally::vsr::log_choose;
using tally::vsr::LogChoice;
using tally::vsr::LogDecision;

// A chain of prepare headers per "branch": ops 1..n, with the view each was prepared in. Two
// branches share their ops up to the op where they fork.
struct Chain {
  std::vector<Header> headers;  // headers[op]: index 0 is a stand-in root.

  Chain(u64 op_max, u32 view, u64 salt) {
    headers.resize(op_max + 1);
    headers[0].command = Command::prepare;
    tally::set_checksum(headers[0]);
    for (u64 op = 1; op <= op_max; op += 1) add(op, view, salt);
  }

  // A fork of `other` from `op_fork` on (ops below are shared), prepared in `view`.
  Chain(const Chain& other, u64 op_fork, u64 op_max, u32 view, u64 salt) {
    headers.assign(other.headers.begin(), other.headers.begin() + static_cast<long>(op_fork));
    headers.resize(op_max + 1);
    for (u64 op = op_fork; op <= op_max; op += 1) add(op, view, salt);
  }

  void add(u64 op, u32 view, u64 salt) {
    Header& header = headers[op];
    header = Header{};
    header.command = Command::prepare;
    header.size = tally::header_size;
    header.view = view;
    header.prepare.op = op;
    header.prepare.parent = headers[op - 1].checksum;
    header.prepare.timestamp = op * 10 + salt;
    header.prepare.commit = op > 8 ? op - 8 : 0;
    header.prepare.operation = Operation::pulse;
    tally::set_checksum(header);
  }
};

Header blank(u64 op) {
  Header header{};
  header.command = Command::prepare;
  header.prepare.op = op;
  return header;
}

// One replica's DVC: the chain's headers from `head` down to `bottom`, blanks at `blanks`.
struct Dvc {
  std::vector<Header> body;
  DoViewChange dvc;

  Dvc(u8 replica, u32 log_view, const Chain& chain, u64 head, u64 bottom, u64 commit_min,
      std::vector<u64> blanks = {}, u16 nacks = 0) {
    for (u64 op = head;; op -= 1) {
      bool is_blank = false;
      for (const u64 blank_op : blanks) is_blank = is_blank || blank_op == op;
      body.push_back(is_blank ? blank(op) : chain.headers[op]);
      if (op == bottom) break;
    }
    dvc = DoViewChange{.replica = replica,
                       .log_view = log_view,
                       .op = head,
                       .commit_min = commit_min,
                       .nack_bitset = nacks,
                       .present_bitset = 0,
                       .head_uncertain = false,
                       .headers = {}};
  }
};

LogDecision choose(std::vector<Dvc>& dvcs, u32 replica_count) {
  std::vector<DoViewChange> list;
  for (Dvc& entry : dvcs) {
    entry.dvc.headers = entry.body;
    list.push_back(entry.dvc);
  }
  return log_choose(list, replica_count, tally::vsr::quorums(replica_count).nack);
}

}  // namespace

TEST_SUITE("view_change_quorum") {
  TEST_CASE("view_change_quorum: the longest log of the highest log_view is the new log") {
    // Goal: two replicas of the same log_view, one further ahead: the log reaches the further
    // head, and every header above the commit bound is the canonical one.
    const Chain chain(20, 1, 0);
    std::vector<Dvc> dvcs;
    dvcs.emplace_back(0, 1, chain, 20, 12, 12);
    dvcs.emplace_back(1, 1, chain, 18, 12, 12);
    const LogDecision decision = choose(dvcs, 3);
    REQUIRE(decision.choice == LogChoice::install);
    CHECK(decision.log_view_max == 1);
    CHECK(decision.commit == 12);
    CHECK(decision.head == 20);
    // From the head down to the committed op itself.
    REQUIRE(decision.header_count == 9);
    for (u32 index = 0; index < decision.header_count; index += 1) {
      CHECK(decision.headers[index].checksum == chain.headers[20 - index].checksum);
    }
    CHECK(decision.timestamp_max == chain.headers[20].prepare.timestamp);
  }

  TEST_CASE("view_change_quorum: a higher log_view wins over a longer older log") {
    // Goal: replica 1 was in view 1 and prepared further; replica 0's log is of view 2, which
    // forked at op 15. The view-2 log is canonical: ops 15.. of view 1 never committed.
    const Chain old_chain(22, 1, 0);
    const Chain new_chain(old_chain, 15, 17, 2, 5);
    std::vector<Dvc> dvcs;
    dvcs.emplace_back(0, 2, new_chain, 17, 12, 12);
    dvcs.emplace_back(1, 1, old_chain, 22, 14, 14);
    const LogDecision decision = choose(dvcs, 3);
    REQUIRE(decision.choice == LogChoice::install);
    CHECK(decision.log_view_max == 2);
    CHECK(decision.commit == 14);
    CHECK(decision.head == 17);
    REQUIRE(decision.header_count == 4);
    CHECK(decision.headers[0].checksum == new_chain.headers[17].checksum);
    CHECK(decision.headers[2].checksum == new_chain.headers[15].checksum);
    CHECK(decision.headers[3].checksum == new_chain.headers[14].checksum);
  }

  TEST_CASE("view_change_quorum: a nack quorum truncates an op that never committed") {
    // Goal: 3 replicas (nack quorum 2). The canonical head is 20 (replica 0); replica 1's log
    // ends at 18, and replica 0 itself never made op 19 durable (its nack bit): ops 19 and 20
    // have two nacks each and go; the log ends at 18.
    const Chain chain(20, 1, 0);
    std::vector<Dvc> dvcs;
    dvcs.emplace_back(0, 1, chain, 20, 12, 12, std::vector<u64>{}, u16{0b11});
    dvcs.emplace_back(1, 1, chain, 18, 12, 12);
    const LogDecision decision = choose(dvcs, 3);
    REQUIRE(decision.choice == LogChoice::install);
    CHECK(decision.head == 18);
    CHECK(decision.header_count == 7);
  }

  TEST_CASE("view_change_quorum: a committed op is never truncated, nacks or not") {
    // Goal: ops up to the commit bound stay even if replicas nack above: the head never goes
    // below `commit`.
    const Chain chain(20, 1, 0);
    std::vector<Dvc> dvcs;
    dvcs.emplace_back(0, 1, chain, 20, 16, 16, std::vector<u64>{}, u16{0b1111});
    dvcs.emplace_back(1, 1, chain, 16, 16, 16);
    const LogDecision decision = choose(dvcs, 3);
    REQUIRE(decision.choice == LogChoice::install);
    CHECK(decision.commit == 16);
    CHECK(decision.head == 16);
    REQUIRE(decision.header_count == 1);
    CHECK(decision.headers[0].checksum == chain.headers[16].checksum);
  }

  TEST_CASE("view_change_quorum: an op with a blank and no nack quorum waits for more DVCs") {
    // Goal: 5 replicas (nack quorum 3). The canonical DVC lacks op 19's header (a blank: a
    // damaged slot, never nacked); only one other DVC is in: wait. With all five in and still
    // no header, the view cannot start (stuck), not a guess.
    const Chain chain(20, 1, 0);
    std::vector<Dvc> dvcs;
    dvcs.emplace_back(0, 1, chain, 20, 12, 12, std::vector<u64>{19});
    dvcs.emplace_back(1, 1, chain, 18, 12, 12);
    dvcs.emplace_back(2, 0, chain, 12, 12, 12);
    CHECK(choose(dvcs, 5).choice == LogChoice::wait);
    dvcs.emplace_back(3, 0, chain, 12, 12, 12);
    // Now three logs end below 19: a nack quorum, and 19 and 20 go.
    const LogDecision decision = choose(dvcs, 5);
    REQUIRE(decision.choice == LogChoice::install);
    CHECK(decision.head == 18);
  }

  TEST_CASE("view_change_quorum: the blank of one canonical DVC is filled by another") {
    // Goal: replica 0 has a blank at op 17 (damaged slot), replica 1 of the same log_view holds
    // it: the header comes from replica 1.
    const Chain chain(20, 1, 0);
    std::vector<Dvc> dvcs;
    dvcs.emplace_back(0, 1, chain, 20, 12, 12, std::vector<u64>{17});
    dvcs.emplace_back(1, 1, chain, 19, 12, 12);
    const LogDecision decision = choose(dvcs, 3);
    REQUIRE(decision.choice == LogChoice::install);
    CHECK(decision.head == 20);
    REQUIRE(decision.header_count == 9);
    CHECK(decision.headers[3].checksum == chain.headers[17].checksum);
  }

  TEST_CASE("view_change_quorum: an uncertain head nacks nothing above it") {
    // Goal: 3 replicas. Replica 1's head is uncertain (a damaged slot above it may hold an op it
    // acknowledged): its log ending at 16 is no nack for 17..20. With only one certain DVC (the
    // nack quorum is 2), the choice waits; a second certain DVC lets it go on.
    const Chain chain(20, 1, 0);
    std::vector<Dvc> dvcs;
    dvcs.emplace_back(0, 1, chain, 20, 12, 12);
    dvcs.emplace_back(1, 1, chain, 16, 12, 12);
    dvcs[1].dvc.head_uncertain = true;
    CHECK(choose(dvcs, 3).choice == LogChoice::wait);
    dvcs.emplace_back(2, 1, chain, 19, 12, 12);
    const LogDecision decision = choose(dvcs, 3);
    REQUIRE(decision.choice == LogChoice::install);
    CHECK(decision.head == 20);
    // Two replicas: one certain DVC is a nack quorum (both hold every committed op).
    std::vector<Dvc> pair;
    pair.emplace_back(0, 1, chain, 20, 12, 12);
    pair.emplace_back(1, 1, chain, 16, 12, 12);
    pair[1].dvc.head_uncertain = true;
    const LogDecision two = choose(pair, 2);
    REQUIRE(two.choice == LogChoice::install);
    CHECK(two.head == 20);
  }

  TEST_CASE("view_change_quorum: an older log's different header counts as a nack") {
    // Goal: 3 replicas. Replica 0 (log_view 2) has op 19 canonical; replica 1 (log_view 1)
    // holds another op 19 of its older log: it never acknowledged the canonical one. With
    // replica 0's own nack bit for 19 (not yet durable there), that is a nack quorum.
    const Chain old_chain(20, 1, 0);
    const Chain new_chain(old_chain, 19, 20, 2, 3);
    std::vector<Dvc> dvcs;
    dvcs.emplace_back(0, 2, new_chain, 20, 12, 12, std::vector<u64>{}, u16{0b10});
    dvcs.emplace_back(1, 1, old_chain, 20, 12, 12);
    const LogDecision decision = choose(dvcs, 3);
    REQUIRE(decision.choice == LogChoice::install);
    CHECK(decision.head == 18);
  }

  TEST_CASE("view_change_quorum: the committed op's own header is part of the new log") {
    // Goal: the regression of a committed op lost in a view change (found by the simulator).
    // Op 119 committed in view 6; the new primary's own log (log_view 4) holds another op 119.
    // The canonical DVCs' commit bound is 119 itself (one of them holds only that header): the
    // decision must still name the canonical op 119, so that the new primary replaces its own.
    const Chain old_chain(119, 4, 0);
    const Chain new_chain(old_chain, 119, 119, 6, 9);
    std::vector<Dvc> dvcs;
    dvcs.emplace_back(0, 4, old_chain, 119, 117, 0);
    dvcs.emplace_back(2, 6, new_chain, 119, 117, 117);
    dvcs.emplace_back(3, 6, new_chain, 119, 119, 0);
    const LogDecision decision = choose(dvcs, 4);
    REQUIRE(decision.choice == LogChoice::install);
    CHECK(decision.commit == 119);
    CHECK(decision.head == 119);
    REQUIRE(decision.header_count == 1);
    CHECK(decision.headers[0].checksum == new_chain.headers[119].checksum);
    CHECK(decision.headers[0].checksum != old_chain.headers[119].checksum);
  }

  TEST_CASE("view_change_quorum: logs that no correct cluster makes are refused") {
    // Goal: a committed op beyond every canonical head, or two canonical logs disagreeing on an
    // op, is never installed.
    const Chain chain(20, 1, 0);
    std::vector<Dvc> ahead;
    ahead.emplace_back(0, 2, chain, 14, 12, 12);
    ahead.emplace_back(1, 1, chain, 20, 18, 18);  // Executed 18, beyond the canonical head 14.
    CHECK(choose(ahead, 3).choice == LogChoice::stuck);
    const Chain fork(chain, 16, 20, 1, 7);
    std::vector<Dvc> split;
    split.emplace_back(0, 1, chain, 20, 12, 12);
    split.emplace_back(1, 1, fork, 20, 12, 12);
    CHECK(choose(split, 3).choice == LogChoice::stuck);
  }
}
