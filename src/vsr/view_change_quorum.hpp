// The new primary's choice of log from a quorum of do_view_change messages (DVCs): a pure
// function, table-tested in view_change_quorum_test.cpp. docs/vsr-protocol.md, "View change",
// gives the rules and why they are safe; in short:
//
//   - canonical DVCs: those with the highest log_view; their headers agree wherever two hold one
//     (each is a prefix of the log of that view);
//   - commit: the highest op any DVC shows committed (its commit_min; its oldest header, which
//     is at or below its commit_max; its head's commit field; its head less a pipeline);
//   - from commit + 1 up to the highest canonical head, each op either has a canonical header,
//     or gathers a nack quorum (DVCs that never acknowledged it), which proves it never
//     committed: the log ends below the first such op. An op with neither waits for more DVCs
//     (or, with every replica's DVC in, cannot be decided: the view cannot start).
//
// Invariant: the result never ends below `commit`, and every header it installs is canonical.
#pragma once

#include <array>
#include <optional>
#include <span>

#include "journal/superblock.hpp"
#include "src/base/assert.hpp"
#include "src/vsr/pipeline.hpp"
#include "tally/header.hpp"
#include "tally/types.hpp"

namespace tally::vsr {

// One replica's DVC, as the new primary keeps it.
struct DoViewChange {
  u8 replica = 0;
  u32 log_view = 0;
  u64 op = 0;  // headers[0].op
  u64 commit_min = 0;
  u16 nack_bitset = 0;
  u16 present_bitset = 0;
  // A damaged slot may hold an op above `op` that this replica acknowledged: its log's end is
  // no nack for the ops above it.
  bool head_uncertain = false;
  std::span<const Header> headers;  // Newest first: headers[i].op == op - i; blanks allowed.
};

enum class LogChoice : u8 {
  install,  // `head`, `commit` and `headers` are the new view's log.
  wait,     // An op can be neither kept nor truncated yet: wait for more DVCs.
  stuck,    // Every replica's DVC is in and an op still cannot be decided.
};

struct LogDecision {
  LogChoice choice = LogChoice::wait;
  u32 log_view_max = 0;
  u64 commit = 0;          // Every op up to here is committed.
  u64 head = 0;            // The new log's head (>= commit).
  u64 timestamp_max = 0;   // The highest timestamp any DVC's head carries.
  // headers[0 .. header_count): ops head, head - 1, ... down to commit (when known).
  u32 header_count = 0;
  std::array<Header, journal::view_headers_max> headers{};
};

inline bool dvc_header_blank(const Header& header) {
  return header.checksum == 0 && header.command == Command::prepare;
}

// The DVC's header for `op`, if it holds a valid one.
inline const Header* dvc_header(const DoViewChange& dvc, u64 op) {
  if (op > dvc.op || dvc.op - op >= dvc.headers.size()) return nullptr;
  const Header& header = dvc.headers[dvc.op - op];
  TALLY_ASSERT(header.prepare.op == op);
  return dvc_header_blank(header) ? nullptr : &header;
}

inline LogDecision log_choose(std::span<const DoViewChange> dvcs, u32 replica_count,
                              u32 quorum_nack) {
  TALLY_ASSERT(!dvcs.empty() && dvcs.size() <= replica_count);
  TALLY_ASSERT(quorum_nack >= 1 && quorum_nack <= replica_count);
  LogDecision decision;
  // Every committed op is held by a replication quorum, which meets any nack quorum's worth of
  // replicas: with that many DVCs whose heads are certain, an op none of them holds was never
  // committed. Fewer, and a replica that cannot say what is above its head may be the one that
  // holds it: wait.
  u32 certain = 0;
  for (const DoViewChange& dvc : dvcs) certain += dvc.head_uncertain ? 0 : 1;
  if (certain < quorum_nack) {
    decision.choice = dvcs.size() < replica_count ? LogChoice::wait : LogChoice::stuck;
    return decision;
  }
  u64 op_head_max = 0;
  for (const DoViewChange& dvc : dvcs) {
    TALLY_ASSERT(dvc.replica < replica_count);
    TALLY_ASSERT(!dvc.headers.empty() && dvc.headers.size() <= journal::view_headers_max);
    TALLY_ASSERT(dvc.headers[0].prepare.op == dvc.op && !dvc_header_blank(dvc.headers[0]));
    // What validate_replica_message() checks of a peer's, and join_view_send() asserts of the
    // new primary's own: what it executed is in its log; its bits name its headers.
    TALLY_ASSERT(dvc.commit_min <= dvc.op);
    TALLY_ASSERT(dvc.nack_bitset < (1u << dvc.headers.size()) &&
                 dvc.present_bitset < (1u << dvc.headers.size()));
    if (dvc.log_view > decision.log_view_max) decision.log_view_max = dvc.log_view;
  }
  for (const DoViewChange& dvc : dvcs) {
    const Header& head = dvc.headers[0];
    if (head.prepare.timestamp > decision.timestamp_max) {
      decision.timestamp_max = head.prepare.timestamp;
    }
    // Committed: what it executed; its oldest header (its DVC reaches down to an op at or
    // below its commit_max); what the head's primary had committed; a pipeline below its head.
    u64 committed = dvc.commit_min;
    const Header& oldest = dvc.headers[dvc.headers.size() - 1];
    if (oldest.prepare.op > committed) committed = oldest.prepare.op;
    if (head.prepare.commit > committed) committed = head.prepare.commit;
    if (dvc.op > pipeline_max && dvc.op - pipeline_max > committed) {
      committed = dvc.op - pipeline_max;
    }
    if (committed > decision.commit) decision.commit = committed;
    if (dvc.log_view == decision.log_view_max && dvc.op > op_head_max) op_head_max = dvc.op;
  }
  if (decision.commit > op_head_max) {
    // A committed op beyond every canonical head: the canonical logs lack it, which a correct
    // cluster never produces. Nothing is installed.
    decision.choice = LogChoice::stuck;
    return decision;
  }
  decision.head = op_head_max;
  for (u64 op = decision.commit + 1; op <= op_head_max; op += 1) {
    const Header* canonical = nullptr;
    for (const DoViewChange& dvc : dvcs) {
      if (dvc.log_view != decision.log_view_max) continue;
      const Header* header = dvc_header(dvc, op);
      if (header == nullptr) continue;
      if (canonical != nullptr && canonical->checksum != header->checksum) {
        decision.choice = LogChoice::stuck;  // Two logs of one view disagree: never correct.
        return decision;
      }
      canonical = header;
    }
    u32 nacks = 0;
    for (const DoViewChange& dvc : dvcs) {
      if (dvc.op < op) {
        if (!dvc.head_uncertain) nacks += 1;  // Its log ends below: it never acknowledged op.
        continue;
      }
      const u64 index = dvc.op - op;
      if (index >= dvc.headers.size()) continue;  // Below its DVC: committed there.
      if ((dvc.nack_bitset & (1u << index)) != 0) {
        nacks += 1;
        continue;
      }
      const Header& header = dvc.headers[index];
      if (dvc.log_view < decision.log_view_max && !dvc_header_blank(header) &&
          (canonical == nullptr || header.checksum != canonical->checksum)) {
        nacks += 1;  // It acknowledged another op there, of an older log.
      }
    }
    if (nacks >= quorum_nack) {
      decision.head = op - 1;  // No replication quorum ever held op: it and all above go.
      break;
    }
    if (canonical == nullptr) {
      decision.choice = dvcs.size() < replica_count ? LogChoice::wait : LogChoice::stuck;
      return decision;
    }
  }
  TALLY_ASSERT(decision.head >= decision.commit);
  TALLY_ASSERT(decision.head - decision.commit < journal::view_headers_max);
  // The headers of the new log from its head down to the committed op itself: above `commit`
  // every one is canonical (checked above); at `commit`, the canonical one when a canonical DVC
  // holds it, so that a new primary whose own entry there is of an older log replaces it.
  for (u64 op = decision.head; op >= decision.commit && op > 0; op -= 1) {
    const Header* canonical = nullptr;
    for (const DoViewChange& dvc : dvcs) {
      if (dvc.log_view != decision.log_view_max) continue;
      if (const Header* header = dvc_header(dvc, op); header != nullptr) canonical = header;
    }
    TALLY_ASSERT(canonical != nullptr || op == decision.commit);
    if (canonical == nullptr) break;
    decision.headers[decision.header_count] = *canonical;
    decision.header_count += 1;
  }
  // Every op above `commit` has its canonical header, newest first; the committed op too when a
  // canonical DVC holds it (and it is not the root, op 0).
  TALLY_ASSERT(decision.header_count == decision.head - decision.commit ||
               decision.header_count == decision.head - decision.commit + 1);
  TALLY_ASSERT(decision.header_count == 0 ||
               decision.headers[0].prepare.op == decision.head);
  decision.choice = LogChoice::install;
  return decision;
}

}  // namespace tally::vsr
