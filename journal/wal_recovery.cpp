// The WAL recovery decision table and the classification of one copy (see wal_recovery.hpp).
//
// Write order that every row relies on: a slot's redundant copy is written only after its
// prepare copy is durable, and a write's callback runs only after both are. So, with no storage
// fault, the redundant copy never shows an op newer than the prepare copy, and an acknowledged
// write always shows in both. A row that would need that rule broken is a storage fault (or two),
// and a fault is repaired from a peer, never guessed.
#include "journal/wal_recovery.hpp"

#include <cstring>

#include "src/base/assert.hpp"

namespace tally::journal {

namespace {

constexpr Copy bad = Copy::bad;
constexpr Copy empty = Copy::empty;
constexpr Copy ok = Copy::ok;
constexpr Match any = Match::any;
constexpr Match no = Match::no;
constexpr Match yes = Match::yes;

// Columns: label, redundant copy, prepare copy, relation, prepare.op == op_max, decision with
// peers, decision alone. docs/journal.md explains every row at more length.
constexpr RecoveryCase cases[] = {
    // Nothing verifies. A torn prepare under a header sector that a fault also hit, or two faults.
    {"bad_bad", bad, bad, Relation::none, any, Decision::faulty, Decision::faulty},
    // The redundant copy is damaged and the prepare slot looks unused. The prepare may have been
    // written and then lost (misdirected), so a cluster repairs. Alone, the slot is taken as
    // empty (the prepare copy, reserved, is the fix): being wrong needs the header fault and a
    // lost prepare write in the same slot.
    {"bad_empty", bad, empty, Relation::none, any, Decision::faulty, Decision::fix},
    // The prepare verifies and holds the highest op seen: the crash (or a fault) hit the header
    // sector write that follows every prepare. Rewrite the redundant copy from the prepare.
    {"bad_ok_head", bad, ok, Relation::none, yes, Decision::fix, Decision::fix},
    // The prepare verifies but is not the head: it may be an older wrap or an older view of the
    // op whose newer prepare write was lost, and the header that would tell is damaged. A
    // cluster repairs; alone, the verified prepare is the best there is.
    {"bad_ok_behind", bad, ok, Relation::none, no, Decision::faulty, Decision::fix},
    // Never written according to the headers ring, and a prepare that does not verify: usually
    // the first write to this slot torn by the crash (recovery_torn() then decides torn).
    {"empty_bad", empty, bad, Relation::none, any, Decision::faulty, Decision::faulty},
    // Both copies say never written: the first wrap has not reached this slot.
    {"empty_empty", empty, empty, Relation::none, any, Decision::empty, Decision::empty},
    // The prepare is durable but the crash came before its header sector was written (first
    // wrap). The prepare verifies on its own; rewrite the redundant copy.
    {"empty_ok", empty, ok, Relation::none, any, Decision::fix, Decision::fix},
    // The redundant copy verifies, the prepare does not: a torn overwrite (the header still shows
    // the previous wrap; recovery_torn() may decide torn), or a damaged prepare whose op the
    // header names. Repair.
    {"ok_bad", ok, bad, Relation::none, any, Decision::faulty, Decision::faulty},
    // The header says the slot holds an op but the prepare slot looks unused: the prepare write
    // was lost or misdirected. Since the header is written only after the prepare is durable,
    // this is never a crash alone. Repair.
    {"ok_empty", ok, empty, Relation::none, any, Decision::faulty, Decision::faulty},
    // The normal case: both copies are the same header and the prepare verifies.
    {"ok_ok_same", ok, ok, Relation::same, any, Decision::valid, Decision::valid},
    // The prepare is from a newer wrap than the header: the crash came between the prepare and
    // its header write (or the header write was lost). The prepare verifies; rewrite the header.
    {"ok_ok_prepare_newer", ok, ok, Relation::prepare_newer, any, Decision::fix, Decision::fix},
    // The header is newer than the prepare: the header is written only after the prepare is
    // durable, so the newer prepare was lost or misdirected. Repair.
    {"ok_ok_header_newer", ok, ok, Relation::header_newer, any, Decision::faulty,
     Decision::faulty},
    // The same op twice with different headers (a view change rewrote it): which write came last
    // cannot be told from the views (an older view's prepare may be repaired in a newer view).
    // Repair.
    {"ok_ok_conflict", ok, ok, Relation::conflict, any, Decision::faulty, Decision::faulty},
};

bool matches(Match match, bool value) {
  switch (match) {
    case Match::any: return true;
    case Match::no: return !value;
    case Match::yes: return value;
  }
  TALLY_UNREACHABLE();
}

bool zeroed(const Header& header) {
  const auto bytes = header_bytes(header);
  for (const std::byte byte : bytes) {
    if (byte != std::byte{0}) return false;
  }
  return true;
}

}  // namespace

std::span<const RecoveryCase> recovery_cases() { return cases; }

const RecoveryCase& recovery_case(const SlotCopies& copies, std::optional<u64> op_max) {
  TALLY_ASSERT((copies.relation == Relation::none) ==
               (copies.header != Copy::ok || copies.prepare != Copy::ok));
  // op_max covers every ok copy, so an ok prepare copy is at most op_max.
  TALLY_ASSERT(copies.prepare != Copy::ok || (op_max && copies.prepare_op <= *op_max));
  TALLY_ASSERT(copies.header != Copy::ok || (op_max && copies.header_op <= *op_max));

  const bool prepare_op_max = copies.prepare == Copy::ok && copies.prepare_op == *op_max;
  const RecoveryCase* found = nullptr;
  for (const RecoveryCase& row : cases) {
    if (row.header != copies.header || row.prepare != copies.prepare) continue;
    if (row.relation != copies.relation) continue;
    if (!matches(row.prepare_op_max, prepare_op_max)) continue;
    TALLY_ASSERT(found == nullptr, "rows %s and %s both match", found->label, row.label);
    found = &row;
  }
  TALLY_ASSERT(found != nullptr, "no row for header=%s prepare=%s relation=%s",
               copy_name(copies.header), copy_name(copies.prepare),
               relation_name(copies.relation));
  return *found;
}

Relation relation_of(const Header& redundant, const Header& prepare) {
  TALLY_ASSERT(checksum_valid(redundant) && checksum_valid(prepare));
  TALLY_ASSERT(redundant.command == Command::prepare && prepare.command == Command::prepare);
  if (redundant.prepare.op < prepare.prepare.op) return Relation::prepare_newer;
  if (redundant.prepare.op > prepare.prepare.op) return Relation::header_newer;
  if (std::memcmp(&redundant, &prepare, sizeof(Header)) == 0) return Relation::same;
  return Relation::conflict;
}

Copy classify_header(const Header& header, u128 cluster, u32 slot, u32 slot_count,
                     u32 message_size_max) {
  TALLY_ASSERT(slot < slot_count);
  TALLY_ASSERT(message_size_max >= header_size && message_size_max <= tally::message_size_max);
  if (zeroed(header)) return Copy::empty;
  // Nothing else may be read before the checksum holds: the bytes may be anything.
  if (!checksum_valid(header)) return Copy::bad;
  if (header.command != Command::prepare) return Copy::bad;
  if (header.cluster != cluster) return Copy::bad;
  if (header.size < header_size || header.size > message_size_max) return Copy::bad;
  if (header.prepare.operation == Operation::reserved) {
    // A reserved header names its own slot: one found elsewhere was misdirected.
    if (header.prepare.op != slot || header.size != header_size) return Copy::bad;
    return Copy::empty;
  }
  if (header.prepare.op % slot_count != slot) return Copy::bad;
  return Copy::ok;
}

Header wal_format_header(u128 cluster, u32 slot) {
  Header header{};
  header.cluster = cluster;
  header.size = header_size;
  header.command = Command::prepare;
  header.prepare.op = slot;
  header.prepare.operation = Operation::reserved;
  header.checksum_body = checksum_empty;
  set_checksum(header);
  TALLY_ASSERT(checksum_valid(header));
  return header;
}

Header wal_faulty_header(u128 cluster, u32 slot) {
  Header header = wal_format_header(cluster, slot);
  header.checksum = 0;
  TALLY_ASSERT(!checksum_valid(header));
  return header;
}

u32 recovery_torn(std::span<const SlotCopies> copies, std::span<Decision> decisions,
                  std::optional<u64> op_max, std::optional<u64> op_checkpoint,
                  u32 write_count_max) {
  TALLY_ASSERT(copies.size() == decisions.size());
  TALLY_ASSERT(write_count_max > 0 && write_count_max < copies.size());
  const u64 slot_count = copies.size();
  // The first op after the head: the earliest op a crash can have torn while appending.
  const u64 op_next = op_max ? *op_max + 1 : 0;

  // Whether the slot looks like a prepare torn while appending one of the ops
  // op_next .. op_next + write_count_max - 1. Worked example, slot_count 8, op_max 9, so op_next
  // 10 (slot 2): slot 3 would next hold op 11, at distance (3 - 10 % 8) mod 8 = 1 from op_next;
  // slot 1 is at distance (1 - 2) mod 8 = 7, op 17, far beyond any write in flight.
  const auto candidate = [&](u64 slot) {
    const SlotCopies& slot_copies = copies[slot];
    if (decisions[slot] != Decision::faulty || slot_copies.prepare != Copy::bad) return false;
    const u64 distance = (slot + slot_count - op_next % slot_count) % slot_count;
    if (distance >= write_count_max) return false;
    const u64 op_torn = op_next + distance;
    // The redundant copy must show exactly what this slot held before the torn write: nothing,
    // if the torn write was the slot's first, or its previous wrap, which must be checkpointed
    // (the VSR layer never overwrites an op that is not). So truncating loses nothing needed,
    // even when the prepare copy was in fact damaged rather than torn.
    if (slot_copies.header == Copy::empty) return op_torn < slot_count;
    if (slot_copies.header != Copy::ok) return false;
    return slot_copies.header_op + slot_count == op_torn && op_checkpoint.has_value() &&
           slot_copies.header_op <= *op_checkpoint;
  };

  bool certain = true;
  u32 candidate_count = 0;
  for (u64 slot = 0; slot < slot_count; slot += 1) {
    if (decisions[slot] != Decision::faulty) continue;
    if (candidate(slot)) {
      candidate_count += 1;
    } else if (copies[slot].header != Copy::ok) {
      // This slot's op is unknown and may be above op_max: op_max is not certain, and a bad
      // prepare elsewhere may be a damaged acknowledged op rather than a torn append.
      certain = false;
    }
  }
  TALLY_ASSERT(candidate_count <= write_count_max);
  if (!certain) return 0;

  u32 torn_count = 0;
  for (u64 slot = 0; slot < slot_count; slot += 1) {
    if (!candidate(slot)) continue;
    decisions[slot] = Decision::torn;
    torn_count += 1;
  }
  TALLY_ASSERT(torn_count == candidate_count);
  return torn_count;
}

const char* copy_name(Copy copy) {
  switch (copy) {
    case Copy::bad: return "bad";
    case Copy::empty: return "empty";
    case Copy::ok: return "ok";
  }
  return "unknown";
}

const char* relation_name(Relation relation) {
  switch (relation) {
    case Relation::none: return "none";
    case Relation::same: return "same";
    case Relation::prepare_newer: return "prepare_newer";
    case Relation::header_newer: return "header_newer";
    case Relation::conflict: return "conflict";
  }
  return "unknown";
}

const char* decision_name(Decision decision) {
  switch (decision) {
    case Decision::valid: return "valid";
    case Decision::empty: return "empty";
    case Decision::fix: return "fix";
    case Decision::faulty: return "faulty";
    case Decision::torn: return "torn";
  }
  return "unknown";
}

}  // namespace tally::journal
