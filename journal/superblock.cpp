// The superblock's pure functions: checksum, validation, the successor of a version, and open()'s
// quorum decision. The asynchronous sequencing over Storage is in superblock.hpp.
#include "journal/superblock.hpp"

#include <bit>

namespace tally::journal {

namespace {

bool bytes_zero(std::span<const u8> bytes) {
  for (const u8 byte : bytes) {
    if (byte != 0) return false;
  }
  return true;
}

// A group of valid copies sharing one checksum: one version.
struct Group {
  u32 slot_first;  // A slot holding it.
  u32 copies;      // Bit i set: copy index i seen.
  u128 checksum;
  u64 sequence;
};

}  // namespace

const char* superblock_result_message(SuperblockResult result) {
  switch (result) {
    case SuperblockResult::ok: return "ok";
    case SuperblockResult::no_quorum: return "no valid superblock quorum";
    case SuperblockResult::fork: return "two superblock versions share one sequence (fork)";
    case SuperblockResult::sequence_skipped:
      return "a superblock copy is two or more sequences ahead of the quorum";
    case SuperblockResult::parent_not_connected:
      return "the superblock quorum's parent checksum does not match the older copies";
  }
  TALLY_UNREACHABLE();
}

const char* copy_status_name(CopyStatus status) {
  switch (status) {
    case CopyStatus::valid: return "valid";
    case CopyStatus::read_error: return "read error";
    case CopyStatus::checksum_invalid: return "checksum invalid";
    case CopyStatus::magic_invalid: return "not a superblock";
    case CopyStatus::version_unsupported: return "version unsupported";
    case CopyStatus::fields_invalid: return "fields invalid";
  }
  TALLY_UNREACHABLE();
}

u128 superblock_checksum(const Superblock& superblock) {
  const auto* bytes = reinterpret_cast<const std::byte*>(&superblock);
  return checksum(bytes + superblock_checksum_offset,
                  sizeof(Superblock) - superblock_checksum_offset);
}

const char* superblock_fields_error(const Superblock& superblock) {
  if (superblock.sequence == 0) return "sequence 0";
  if (superblock.sequence == 1 && superblock.parent != 0) return "sequence 1 with a parent";
  if (superblock.sequence > 1 && superblock.parent == 0) return "no parent";
  if (superblock.replica_count == 0 || superblock.replica_count > replica_count_max) {
    return "replica_count out of 1..6";
  }
  if (superblock.replica >= superblock.replica_count) return "replica >= replica_count";
  if (const char* error = layout_config_error(superblock.layout)) return error;
  if (superblock.vsr_state.log_view > superblock.vsr_state.view) return "log_view > view";
  if (superblock.checkpoint.op > superblock.vsr_state.commit_max) {
    return "checkpoint op > commit_max";
  }
  if (!bytes_zero(superblock.reserved_replica) || !bytes_zero(superblock.reserved) ||
      !bytes_zero(superblock.reserved_view)) {
    return "reserved bytes not zero";
  }
  if (superblock.checkpoint_syncing > 1) return "checkpoint_syncing above 1";
  if (superblock.checkpoint_syncing == 1 && superblock.checkpoint.op == 0) {
    return "checkpoint_syncing without a checkpoint";
  }
  if (superblock.view_headers_count > view_headers_max) return "view_headers_count above 9";
  if (superblock.view_headers_head_uncertain > 1) return "view_headers_head_uncertain above 1";
  if (superblock.view_headers_head_uncertain == 1 && superblock.view_headers_count == 0) {
    return "view_headers_head_uncertain without view headers";
  }
  if ((superblock.view_headers_blanks_unknown >> superblock.view_headers_count) != 0) {
    return "view_headers_blanks_unknown names headers beyond the count";
  }
  for (u32 index = 0; index < superblock.view_headers_count; index += 1) {
    const bool unknown = ((superblock.view_headers_blanks_unknown >> index) & 1) != 0;
    if (unknown && superblock.view_headers[index].checksum != 0) {
      return "view_headers_blanks_unknown names a header that is not a blank";
    }
  }
  for (u32 index = 0; index < view_headers_max; index += 1) {
    const Header& header = superblock.view_headers[index];
    if (index >= superblock.view_headers_count) {
      if (!bytes_zero({reinterpret_cast<const u8*>(&header), sizeof(Header)})) {
        return "unused view headers not zero";
      }
      continue;
    }
    // The checksum and the command of each, or a blank (checksum 0: no header for that op);
    // the VSR layer checks the rest (the hash chain).
    if (header.command != Command::prepare) return "view header invalid";
    if (header.checksum != 0 && !checksum_valid(header)) return "view header invalid";
  }
  return nullptr;
}

CopyStatus superblock_copy_status(const Superblock& superblock) {
  if (superblock.checksum != superblock_checksum(superblock)) return CopyStatus::checksum_invalid;
  if (superblock.magic != superblock_magic) return CopyStatus::magic_invalid;
  if (superblock.version != superblock_version) return CopyStatus::version_unsupported;
  if (superblock_fields_error(superblock) != nullptr) return CopyStatus::fields_invalid;
  return CopyStatus::valid;
}

Superblock superblock_format(const SuperblockFormatOptions& options) {
  TALLY_ASSERT(options.replica_count >= 1 && options.replica_count <= replica_count_max);
  TALLY_ASSERT(options.replica < options.replica_count);
  TALLY_ASSERT(layout_config_error(options.layout) == nullptr);
  Superblock superblock;
  std::memset(static_cast<void*>(&superblock), 0, sizeof(Superblock));
  superblock.version = superblock_version;
  superblock.magic = superblock_magic;
  superblock.cluster = options.cluster;
  superblock.parent = 0;
  superblock.sequence = 1;
  superblock.replica = options.replica;
  superblock.replica_count = options.replica_count;
  superblock.layout = options.layout;
  superblock.vsr_state.view = options.view;  // log_view 0: it stands for no view's log yet.
  superblock.checksum = superblock_checksum(superblock);
  TALLY_ASSERT(superblock_copy_status(superblock) == CopyStatus::valid);
  return superblock;
}

bool superblock_monotonic(const Superblock& previous, const Superblock& next) {
  if (next.vsr_state.view < previous.vsr_state.view) return false;
  if (next.vsr_state.log_view < previous.vsr_state.log_view) return false;
  if (next.vsr_state.commit_max < previous.vsr_state.commit_max) return false;
  if (next.checkpoint.op < previous.checkpoint.op) return false;
  // The same checkpoint op means the same checkpoint: a view change does not touch it.
  if (next.checkpoint.op == previous.checkpoint.op && !(next.checkpoint == previous.checkpoint)) {
    return false;
  }
  return true;
}

Superblock superblock_next(const Superblock& parent, const SuperblockUpdate& update) {
  TALLY_ASSERT(superblock_copy_status(parent) == CopyStatus::valid);
  Superblock next = parent;
  next.copy = 0;
  next.parent = parent.checksum;
  next.sequence = parent.sequence + 1;
  next.vsr_state = update.vsr_state;
  next.checkpoint = update.checkpoint;
  next.checkpoint_syncing = update.checkpoint_syncing ? 1 : 0;
  TALLY_ASSERT(update.view_headers.count <= view_headers_max);
  next.view_headers_count = update.view_headers.count;
  next.view_headers_blanks_unknown = update.view_headers.blanks_unknown;
  next.view_headers_head_uncertain = update.view_headers.head_uncertain ? 1 : 0;
  for (u32 index = 0; index < view_headers_max; index += 1) {
    if (index < update.view_headers.count) {
      next.view_headers[index] = update.view_headers.headers[index];
    } else {
      std::memset(static_cast<void*>(&next.view_headers[index]), 0, sizeof(Header));
    }
  }
  TALLY_ASSERT(superblock_monotonic(parent, next), "superblock update goes back in time");
  TALLY_ASSERT(superblock_fields_error(next) == nullptr, "%s", superblock_fields_error(next));
  next.checksum = superblock_checksum(next);
  TALLY_ASSERT(next.checksum != parent.checksum);
  return next;
}

ViewHeaders superblock_view_headers(const Superblock& superblock) {
  ViewHeaders view_headers;
  view_headers.count = superblock.view_headers_count;
  view_headers.blanks_unknown = superblock.view_headers_blanks_unknown;
  view_headers.head_uncertain = superblock.view_headers_head_uncertain == 1;
  for (u32 index = 0; index < superblock.view_headers_count; index += 1) {
    view_headers.headers[index] = superblock.view_headers[index];
  }
  return view_headers;
}

bool superblock_equal(const Superblock& a, const Superblock& b) {
  const auto* bytes_a = reinterpret_cast<const std::byte*>(&a);
  const auto* bytes_b = reinterpret_cast<const std::byte*>(&b);
  return a.checksum == b.checksum &&
         std::memcmp(bytes_a + superblock_checksum_offset, bytes_b + superblock_checksum_offset,
                     sizeof(Superblock) - superblock_checksum_offset) == 0;
}

u32 superblock_repair_order(std::span<const Superblock, superblock_copies> copies,
                            std::span<const CopyStatus, superblock_copies> statuses,
                            u128 checksum, std::array<u8, superblock_copies>& order) {
  u32 count = 0;
  // First the slots that hold no copy of the version: rewriting them risks nothing.
  for (u32 slot = 0; slot < superblock_copies; slot += 1) {
    const bool member = statuses[slot] == CopyStatus::valid && copies[slot].checksum == checksum;
    if (!member) {
      order[count] = static_cast<u8>(slot);
      count += 1;
    }
  }
  // Then the slots holding a copy of it under another index (misdirected): by now the slots
  // above hold their own copies, so the quorum does not depend on these.
  for (u32 slot = 0; slot < superblock_copies; slot += 1) {
    const bool member = statuses[slot] == CopyStatus::valid && copies[slot].checksum == checksum;
    if (member && copies[slot].copy != slot) {
      order[count] = static_cast<u8>(slot);
      count += 1;
    }
  }
  TALLY_ASSERT(count <= superblock_copies);
  return count;
}

QuorumDecision superblock_quorum(std::span<const Superblock, superblock_copies> copies,
                                 std::span<const bool, superblock_copies> read_ok) {
  QuorumDecision decision{};
  decision.result = SuperblockResult::no_quorum;

  std::array<CopyStatus, superblock_copies> statuses{};
  std::array<Group, superblock_copies> groups{};
  u32 group_count = 0;
  for (u32 slot = 0; slot < superblock_copies; slot += 1) {
    const Superblock& copy = copies[slot];
    statuses[slot] = read_ok[slot] ? superblock_copy_status(copy) : CopyStatus::read_error;
    CopyReport& report = decision.reports[slot];
    report.status = statuses[slot];
    if (statuses[slot] != CopyStatus::valid) continue;
    report.copy = copy.copy;
    report.sequence = copy.sequence;
    report.checksum = copy.checksum;

    u32 group_index = 0;
    while (group_index < group_count && groups[group_index].checksum != copy.checksum) {
      group_index += 1;
    }
    if (group_index == group_count) {
      groups[group_count] = Group{
          .slot_first = slot, .copies = 0, .checksum = copy.checksum, .sequence = copy.sequence};
      group_count += 1;
    }
    // The copy field is not checksummed. If it is out of range, only it was corrupted (a
    // misdirected write carries a valid index): count the copy as the slot's own.
    const u32 copy_index = copy.copy < superblock_copies ? copy.copy : slot;
    groups[group_index].copies |= 1u << copy_index;
  }
  TALLY_ASSERT(group_count <= superblock_copies);

  // The working quorum: the highest sequence among groups with at least quorum_open copies.
  u32 working = group_count;
  for (u32 index = 0; index < group_count; index += 1) {
    if (static_cast<u32>(std::popcount(groups[index].copies)) < quorum_open) continue;
    if (working == group_count || groups[index].sequence > groups[working].sequence) {
      working = index;
    }
  }
  if (working == group_count) return decision;
  const Group& chosen = groups[working];
  const Superblock& chosen_copy = copies[chosen.slot_first];

  // Every other version must fit the chain the quorum belongs to.
  for (u32 index = 0; index < group_count; index += 1) {
    if (index == working) continue;
    const Group& other = groups[index];
    const Superblock& other_copy = copies[other.slot_first];
    TALLY_ASSERT(other.checksum != chosen.checksum);
    if (other_copy.cluster != chosen_copy.cluster || other_copy.replica != chosen_copy.replica) {
      continue;  // Not from this file's history: a misdirected write from elsewhere is garbage.
    }
    if (other.sequence == chosen.sequence) {
      decision.result = SuperblockResult::fork;
      return decision;
    }
    if (other.sequence > chosen.sequence + 1) {
      decision.result = SuperblockResult::sequence_skipped;
      return decision;
    }
    if (other.sequence + 1 == chosen.sequence && chosen_copy.parent != other.checksum) {
      decision.result = SuperblockResult::parent_not_connected;
      return decision;
    }
    // sequence + 1: an update that did not complete. Older: stale, overwritten by repair.
  }

  decision.result = SuperblockResult::ok;
  decision.working_slot = chosen.slot_first;
  decision.quorum_count = static_cast<u32>(std::popcount(chosen.copies));
  for (u32 slot = 0; slot < superblock_copies; slot += 1) {
    decision.reports[slot].working =
        statuses[slot] == CopyStatus::valid && copies[slot].checksum == chosen.checksum;
  }
  decision.repair_count =
      superblock_repair_order(copies, statuses, chosen.checksum, decision.repair_order);
  TALLY_ASSERT(decision.quorum_count >= quorum_open);
  TALLY_ASSERT(decision.reports[decision.working_slot].working);
  return decision;
}

}  // namespace tally::journal
