// The WAL's recovery decision table: what a slot holds after a crash, decided from its two
// copies on disk. Pure: no IO, no state; journal/wal.hpp reads the copies and applies the result.
//
// Every WAL slot is written twice, in this order (docs/journal.md): first the whole prepare in
// the prepares ring (its header is the "prepare copy"), then, once that is durable, the sector of
// the headers ring holding the slot's "redundant copy". Each copy is classified on its own:
//
//   bad    the checksum fails (torn, bit flip), the read failed (latent sector error), or it is
//          well formed but not ours here: another cluster, another command, or an op that does
//          not belong to this slot (a misdirected read or write). For the prepare copy also: the
//          body's checksum fails or the sector padding after the message is not zero.
//   empty  the slot was never written: all zero (a fresh file) or the reserved header that
//          wal_format_header() puts there (operation reserved, op == slot).
//   ok     a checksummed prepare header of this cluster whose op belongs to this slot
//          (op % slot_count == slot); for the prepare copy, with a verified body.
//
// recovery_case() then picks the one row of recovery_cases() that matches the pair, given the
// highest op any ok copy claims (op_max). Each row gives a decision for a cluster (repair from a
// peer is possible) and for a solo replica (it is not: a faulty slot stops the replica, so two
// rows accept a little more risk, as TigerBeetle does). recovery_torn() then refines the "faulty"
// rows that look exactly like a prepare torn by the crash itself into "torn". The rows, and why
// each decision is safe, are explained in docs/journal.md and next to each row in the .cpp.
//
// Invariants: the table is exhaustive and unambiguous (every combination of inputs matches
// exactly one row; a unit test enumerates them all); a bad copy is never trusted; a slot whose
// content cannot be decided locally is faulty, never valid or empty.
#pragma once

#include <optional>
#include <span>

#include "tally/header.hpp"
#include "tally/types.hpp"

namespace tally::journal {

enum class Copy : u8 { bad = 0, empty = 1, ok = 2 };
inline constexpr u32 copy_kind_count = 3;

// How the two copies compare when both are ok (none otherwise).
enum class Relation : u8 {
  none = 0,
  same = 1,           // Byte for byte the same header.
  prepare_newer = 2,  // header.op < prepare.op: the redundant copy is from an older wrap.
  header_newer = 3,   // header.op > prepare.op: the prepare copy is from an older wrap.
  conflict = 4,       // Same op, different headers (e.g. rewritten in a later view).
};
inline constexpr u32 relation_count = 5;

enum class Decision : u8 {
  valid = 0,   // Both copies agree: use the entry as it is.
  empty = 1,   // Nothing was ever written here: the reserved header, nothing to repair.
  fix = 2,     // Trust the prepare copy (it verifies, body included) and rewrite the redundant
               // copy from it during recovery.
  faulty = 3,  // Cannot be decided locally: repair from a peer (dirty and faulty).
  torn = 4,    // A prepare torn by the crash, never acknowledged: treat the slot as empty.
               // Only recovery_torn() gives this decision, never a row.
};

enum class Match : u8 { any = 0, no = 1, yes = 2 };

struct RecoveryCase {
  const char* label;
  Copy header;
  Copy prepare;
  Relation relation;
  Match prepare_op_max;  // Whether prepare.op is the highest op of any ok copy.
  Decision decision;       // Replica count > 1.
  Decision decision_solo;  // Replica count == 1.
};

std::span<const RecoveryCase> recovery_cases();

// What recovery learned about one slot's two copies; the ops and checksums are meaningful only
// for ok copies.
struct SlotCopies {
  Copy header = Copy::bad;
  Copy prepare = Copy::bad;
  Relation relation = Relation::none;
  u64 header_op = 0;
  u64 prepare_op = 0;
  u32 header_view = 0;  // The redundant copy's view, when it is ok (for the VSR layer).
};

// The row for one slot. op_max is the highest op of any ok copy in either ring (none if no copy
// is ok). Asserts that exactly one row matches.
const RecoveryCase& recovery_case(const SlotCopies& copies, std::optional<u64> op_max);

// The relation of two ok copies (both already classified ok for the same slot).
Relation relation_of(const Header& redundant, const Header& prepare);

// Classifies one 256-byte header read from slot `slot` of either ring. Verifies the header
// checksum first and looks at no other field before that, since the bytes may be anything.
// For the prepare copy, the caller must also verify the body (header_ok is necessary, not
// sufficient).
Copy classify_header(const Header& header, u128 cluster, u32 slot, u32 slot_count,
                     u32 message_size_max);

// The header that marks a slot as never written, in both rings: command prepare, operation
// reserved, op = slot, an empty body, checksummed.
Header wal_format_header(u128 cluster, u32 slot);

// A header that is deliberately bad (the reserved header with checksum 0): what the redundant
// copy of a faulty slot becomes when its sector is rewritten, so that a later recovery still
// finds the slot faulty rather than empty.
Header wal_faulty_header(u128 cluster, u32 slot);

// Refines the decisions of a whole ring: a slot decided faulty is a prepare torn by the crash
// when all of these hold:
//   - its prepare copy is bad;
//   - it is the slot of one of the next `write_count_max` ops after op_max (op_torn), the only
//     ops that can have been in flight beyond the head;
//   - its redundant copy shows what the slot held before: nothing (op_torn < slot_count), or
//     the previous wrap, op_torn - slot_count, which is at most op_checkpoint;
//   - op_max is certain: no other faulty slot has a bad or empty redundant copy, which could
//     hide a higher op.
// Such a write never completed, so it was never acknowledged, and the slot becomes torn (empty).
// Even if the prepare copy was damaged rather than torn, what it held was checkpointed: nothing
// needed is lost. Returns the number of slots changed. Example, 8 slots, write_count_max 2,
// op_max 9, op_checkpoint 4: slot 2 (op 10) may be torn if its redundant copy shows op 2, and
// slot 3 (op 11) if it shows op 3; slot 4 (op 12) may not.
u32 recovery_torn(std::span<const SlotCopies> copies, std::span<Decision> decisions,
                  std::optional<u64> op_max, std::optional<u64> op_checkpoint,
                  u32 write_count_max);

const char* copy_name(Copy copy);
const char* relation_name(Relation relation);
const char* decision_name(Decision decision);

}  // namespace tally::journal
