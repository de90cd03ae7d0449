// Checkpoint writing and restoring. See checkpoint.hpp for the format.
#include "src/state_machine/checkpoint.hpp"

#include <cstring>

#include "tally/checksum.hpp"

namespace tally::state_machine {

// The Ledger's raw tables, for this file only.
class CheckpointAccess {
 public:
  static std::byte* bytes(Ledger& ledger, CheckpointTable table) {
    return const_cast<std::byte*>(bytes(static_cast<const Ledger&>(ledger), table));
  }

  static const std::byte* bytes(const Ledger& ledger, CheckpointTable table) {
    const void* data = nullptr;
    switch (table) {
      case CheckpointTable::accounts: data = ledger.accounts_.data(); break;
      case CheckpointTable::transfers: data = ledger.transfers_.data(); break;
      case CheckpointTable::pending_rows: data = ledger.pending_rows_.data(); break;
      case CheckpointTable::pending_statuses: data = ledger.pending_statuses_.data(); break;
      case CheckpointTable::expiry_heap: data = ledger.expiry_heap_.data(); break;
      case CheckpointTable::event_flags: data = ledger.change_events_.flags_.data(); break;
      case CheckpointTable::event_balances:
        data = ledger.change_events_.balances_low_.data();
        break;
      case CheckpointTable::event_balances_high:
        data = ledger.change_events_.balances_high_.data();
        break;
      case CheckpointTable::expiry_events: data = ledger.change_events_.expiries_.data(); break;
      case CheckpointTable::failed_ids: data = ledger.failed_ids_.data(); break;
    }
    TALLY_ASSERT(data != nullptr);
    return static_cast<const std::byte*>(data);
  }

  static u32 capacity(const Ledger& ledger, CheckpointTable table) {
    return checkpoint_table_capacity(ledger.config_, table);
  }

  static u32& count(Ledger& ledger, CheckpointTable table) {
    switch (table) {
      case CheckpointTable::accounts: return ledger.account_count_;
      case CheckpointTable::transfers: return ledger.transfer_count_;
      case CheckpointTable::pending_rows:
      case CheckpointTable::pending_statuses: return ledger.pending_count_;
      case CheckpointTable::expiry_heap: return ledger.expiry_count_;
      case CheckpointTable::event_flags:
      case CheckpointTable::event_balances: return ledger.change_events_.row_count_;
      case CheckpointTable::event_balances_high: return ledger.change_events_.high_count_;
      case CheckpointTable::expiry_events: return ledger.change_events_.expiry_count_;
      case CheckpointTable::failed_ids: return ledger.failed_count_;
    }
    TALLY_UNREACHABLE();
  }

  static u32 count(const Ledger& ledger, CheckpointTable table) {
    return count(const_cast<Ledger&>(ledger), table);
  }

  static u32 expiry_registered_count(const Ledger& ledger) {
    return ledger.expiry_registered_count_;
  }
  static void expiry_registered_count_set(Ledger& ledger, u32 count) {
    ledger.expiry_registered_count_ = count;
  }

  // Whether block `index` changed in place since the marks were last cleared.
  static bool marked(const Ledger& ledger, CheckpointTable table, u32 index) {
    switch (table) {
      case CheckpointTable::accounts: return ledger.accounts_dirty_.dirty(index);
      case CheckpointTable::pending_statuses: return ledger.pending_statuses_dirty_.dirty(index);
      case CheckpointTable::expiry_heap: return ledger.expiry_dirty_;
      default: return false;
    }
  }

  static void marks_clear(Ledger& ledger) {
    for (u64 block = 0; block < ledger.accounts_dirty_.block_count(); block += 1) {
      ledger.accounts_dirty_.clear(block);
    }
    for (u64 block = 0; block < ledger.pending_statuses_dirty_.block_count(); block += 1) {
      ledger.pending_statuses_dirty_.clear(block);
    }
    ledger.expiry_dirty_ = false;
  }
};

namespace {

u32 per_block(CheckpointTable table) {
  return checkpoint_elements_per_block(checkpoint_element_size(table));
}

u64 blocks_for(u64 elements, CheckpointTable table) {
  return (elements + per_block(table) - 1) / per_block(table);
}

}  // namespace

u32 checkpoint_table_capacity(const Config& config, CheckpointTable table) {
  switch (table) {
    case CheckpointTable::accounts: return config.accounts_max;
    case CheckpointTable::transfers: return config.transfers_max;
    case CheckpointTable::pending_rows:
    case CheckpointTable::pending_statuses:
    case CheckpointTable::expiry_heap: return config.pending_transfers_max;
    case CheckpointTable::event_flags:
    case CheckpointTable::event_balances:
    case CheckpointTable::event_balances_high: return config.change_events_max();
    case CheckpointTable::expiry_events: return config.pending_transfers_max;
    case CheckpointTable::failed_ids: return config.failed_transfer_ids_max;
  }
  return 0;
}

u64 checkpoint_block_count_max(const Config& config) {
  u64 total = 0;
  for (u32 index = 0; index < checkpoint_table_count; index += 1) {
    const auto table = static_cast<CheckpointTable>(index);
    total += blocks_for(checkpoint_table_capacity(config, table), table);
  }
  return total;
}

u64 checkpoint_block_count_rewritable(const Config& config) {
  u64 total = 0;
  for (u32 index = 0; index < checkpoint_table_count; index += 1) {
    const auto table = static_cast<CheckpointTable>(index);
    // Append-only tables rewrite only their last, partly filled block.
    total += checkpoint_table_append_only(table)
                 ? 1
                 : blocks_for(checkpoint_table_capacity(config, table), table);
  }
  return total;
}

namespace {

u128 block_checksum(const std::byte* block, u32 payload_size) {
  return checksum(block + 16, checkpoint_block_header_size - 16 + payload_size);
}

// The payload size of block `index` of a table of `count` elements.
u32 block_payload_size(CheckpointTable table, u32 count, u32 index) {
  const u64 first = u64{index} * per_block(table);
  TALLY_ASSERT(first < count);
  const u64 elements = count - first < per_block(table) ? count - first : per_block(table);
  return static_cast<u32>(elements * checkpoint_element_size(table));
}

}  // namespace

u32 checkpoint_block_count(const CheckpointState& state, CheckpointTable table) {
  const u32 count = state.counts[static_cast<u32>(table)];
  return (count + per_block(table) - 1) / per_block(table);
}

CheckpointState Checkpointer::state(const StateMachine& state_machine) {
  const Ledger& ledger = state_machine.ledger();
  TALLY_ASSERT(ledger.indexes_caught_up());
  CheckpointState state{};
  state.commit_timestamp = state_machine.commit_timestamp();
  for (u32 table = 0; table < checkpoint_table_count; table += 1) {
    state.counts[table] = CheckpointAccess::count(ledger, static_cast<CheckpointTable>(table));
  }
  state.expiry_registered_count = CheckpointAccess::expiry_registered_count(ledger);
  const Config& config = ledger.config();
  state.config_accounts_max = config.accounts_max;
  state.config_transfers_max = config.transfers_max;
  state.config_pending_transfers_max = config.pending_transfers_max;
  state.config_failed_transfer_ids_max = config.failed_transfer_ids_max;
  return state;
}

bool Checkpointer::block_dirty(const StateMachine& state_machine, CheckpointTable table,
                               u32 index) const {
  if (initial_) return true;
  const Ledger& ledger = state_machine.ledger();
  if (table == CheckpointTable::expiry_heap) return CheckpointAccess::marked(ledger, table, index);
  // Blocks from the one holding the previous end onwards gained elements (or may have).
  const u32 previous = counts_previous_[static_cast<u32>(table)];
  if (index >= previous / per_block(table)) return true;
  return CheckpointAccess::marked(ledger, table, index);
}

Checkpointer::BlockRange Checkpointer::blocks_sealed(const StateMachine& state_machine,
                                                     CheckpointTable table) const {
  TALLY_ASSERT(checkpoint_table_append_only(table));
  const Ledger& ledger = state_machine.ledger();
  TALLY_ASSERT(!ledger.chain_is_open());
  const u32 begin = initial_ ? 0 : counts_previous_[static_cast<u32>(table)] / per_block(table);
  const u32 end = CheckpointAccess::count(ledger, table) / per_block(table);
  return {.begin = begin, .end = end > begin ? end : begin};
}

u32 Checkpointer::block_encode(const StateMachine& state_machine, CheckpointTable table,
                               u32 index, std::span<std::byte> block) {
  TALLY_ASSERT(block.size() >= checkpoint_block_size);
  const Ledger& ledger = state_machine.ledger();
  const u32 count = CheckpointAccess::count(ledger, table);
  const u32 size = block_payload_size(table, count, index);
  const u32 element_size = checkpoint_element_size(table);

  CheckpointBlockHeader header{};
  header.table = static_cast<u32>(table);
  header.index = index;
  header.size = size;
  header.element_size = element_size;
  std::memcpy(block.data(), &header, sizeof(header));
  const std::byte* source =
      CheckpointAccess::bytes(ledger, table) + u64{index} * per_block(table) * element_size;
  std::memcpy(block.data() + sizeof(header), source, size);
  header.checksum = block_checksum(block.data(), size);
  std::memcpy(block.data(), &header.checksum, sizeof(header.checksum));
  return checkpoint_block_header_size + size;
}

void Checkpointer::done(StateMachine& state_machine) {
  Ledger& ledger = state_machine.ledger_mutable();
  TALLY_ASSERT(!ledger.chain_is_open());
  const CheckpointState current = state(state_machine);
  for (u32 table = 0; table < checkpoint_table_count; table += 1) {
    counts_previous_[table] = current.counts[table];
  }
  CheckpointAccess::marks_clear(ledger);
  initial_ = false;
}

const char* checkpoint_block_error_name(CheckpointBlockError error) {
  switch (error) {
    case CheckpointBlockError::none: return "none";
    case CheckpointBlockError::too_short: return "too_short";
    case CheckpointBlockError::checksum_mismatch: return "checksum_mismatch";
    case CheckpointBlockError::table_invalid: return "table_invalid";
    case CheckpointBlockError::element_size_mismatch: return "element_size_mismatch";
    case CheckpointBlockError::index_out_of_range: return "index_out_of_range";
    case CheckpointBlockError::size_mismatch: return "size_mismatch";
    case CheckpointBlockError::reserved_not_zero: return "reserved_not_zero";
  }
  return "unknown";
}

bool CheckpointRestorer::begin(StateMachine& state_machine, const CheckpointState& state) {
  const Config& config = state_machine.ledger().config();
  if (state.config_accounts_max != config.accounts_max ||
      state.config_transfers_max != config.transfers_max ||
      state.config_pending_transfers_max != config.pending_transfers_max ||
      state.config_failed_transfer_ids_max != config.failed_transfer_ids_max) {
    return false;
  }
  for (u32 table = 0; table < checkpoint_table_count; table += 1) {
    if (state.counts[table] >
        CheckpointAccess::capacity(state_machine.ledger(), static_cast<CheckpointTable>(table))) {
      return false;
    }
  }
  const auto count = [&state](CheckpointTable table) {
    return u64{state.counts[static_cast<u32>(table)]};
  };
  using T = CheckpointTable;
  // Tables that share a count, and the counts that bound others.
  if (count(T::pending_rows) != count(T::pending_statuses) ||
      state.expiry_registered_count > count(T::pending_rows) ||
      count(T::event_flags) != count(T::event_balances) ||
      count(T::event_flags) != count(T::transfers) + count(T::expiry_events) ||
      count(T::event_balances_high) > count(T::event_flags) ||
      count(T::expiry_events) > count(T::pending_rows)) {
    return false;
  }
  state_machine.reset();
  return true;
}

u32 checkpoint_block_intact(std::span<const std::byte> block, u128 checksum) {
  CheckpointBlockHeader header;
  if (checksum == 0 || block.size() < sizeof(header)) return 0;
  std::memcpy(&header, block.data(), sizeof(header));
  if (header.checksum != checksum || header.size > block.size() - sizeof(header)) return 0;
  if (block_checksum(block.data(), header.size) != checksum) return 0;
  return static_cast<u32>(sizeof(header)) + header.size;
}

CheckpointBlockError CheckpointRestorer::block(StateMachine& state_machine,
                                               const CheckpointState& state,
                                               std::span<const std::byte> block) {
  CheckpointBlockHeader header;
  if (block.size() < sizeof(header)) return CheckpointBlockError::too_short;
  std::memcpy(&header, block.data(), sizeof(header));
  if (header.size > block.size() - sizeof(header)) return CheckpointBlockError::too_short;
  if (header.checksum != block_checksum(block.data(), header.size)) {
    return CheckpointBlockError::checksum_mismatch;
  }
  if (header.checksum_padding != 0) return CheckpointBlockError::reserved_not_zero;
  for (const u8 byte : header.reserved) {
    if (byte != 0) return CheckpointBlockError::reserved_not_zero;
  }
  if (header.table >= checkpoint_table_count) return CheckpointBlockError::table_invalid;
  const auto table = static_cast<CheckpointTable>(header.table);
  if (header.element_size != checkpoint_element_size(table)) {
    return CheckpointBlockError::element_size_mismatch;
  }
  if (header.index >= checkpoint_block_count(state, table)) {
    return CheckpointBlockError::index_out_of_range;
  }
  const u32 count = state.counts[header.table];
  if (header.size != block_payload_size(table, count, header.index)) {
    return CheckpointBlockError::size_mismatch;
  }
  std::byte* target = CheckpointAccess::bytes(state_machine.ledger_mutable(), table) +
                      u64{header.index} * per_block(table) * header.element_size;
  std::memcpy(target, block.data() + sizeof(header), header.size);
  return CheckpointBlockError::none;
}

void CheckpointRestorer::finish(StateMachine& state_machine, const CheckpointState& state) {
  Ledger& ledger = state_machine.ledger_mutable();
  for (u32 table = 0; table < checkpoint_table_count; table += 1) {
    CheckpointAccess::count(ledger, static_cast<CheckpointTable>(table)) = state.counts[table];
  }
  CheckpointAccess::expiry_registered_count_set(ledger, state.expiry_registered_count);
  state_machine.commit_timestamp_set(state.commit_timestamp);
  ledger.indexes_rebuild();
  // The restored state is the checkpoint: nothing is dirty relative to it.
  CheckpointAccess::marks_clear(ledger);
}

}  // namespace tally::state_machine
