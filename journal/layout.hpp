// The data file's layout: five zones, in this order, each starting and ending on a sector
// boundary, with no gaps between them:
//
//   zone             holds                                         size
//   superblock       superblock_copies copies of the superblock    4 x 8 KiB
//   wal_headers      one 256-byte prepare header per WAL slot      slot_count x 256 B
//   wal_prepares     one whole prepare per WAL slot                slot_count x message_size_max
//   client_replies   the latest reply to each client session       clients_max x message_size_max
//   grid             checksummed blocks of checkpointed state      grid_block_count x block size
//
// The superblock zone is the same for every configuration (it is read before the configuration
// is known: the superblock records it); everything after it derives from a LayoutConfig.
// docs/data-file.md draws the production layout with its offsets.
//
// Two configurations are named: production() (what `tally format` writes: 1024 slots of 1 MiB,
// about 5 GiB with the grid), checked at compile time below, and testing() (64 slots of 64 KiB,
// about 24 MiB) for unit tests and the simulator. Any other is checked by layout_config_error().
//
// Invariants of a valid LayoutConfig: slot_count is a power of two (so a WAL slot is op % count
// by a mask, and the header ring fills whole sectors: 16 headers per sector, slot_count >= 16);
// message_size_max and grid_block_size are multiples of the sector size; every zone's offset
// and size are multiples of the sector size; the file size fits in 63 bits.
#pragma once

#include <cstddef>
#include <type_traits>

#include "journal/storage.hpp"
#include "src/base/assert.hpp"
#include "tally/constants.hpp"
#include "tally/types.hpp"

namespace tally::journal {

inline constexpr u32 superblock_copies = 4;
// Two sectors per copy: room to grow past the fields of today, and a copy that a crash can tear
// (one sector written, the other not), which the simulator then exercises.
inline constexpr u32 superblock_copy_size = 2 * sector_size;
inline constexpr u64 superblock_zone_size = u64{superblock_copies} * superblock_copy_size;

inline constexpr u32 wal_header_size = header_size;  // The wire header, 256 bytes.
inline constexpr u32 wal_headers_per_sector = sector_size / wal_header_size;

// Production values.
inline constexpr u32 journal_slot_count = 1024;
inline constexpr u32 grid_block_size_default = 64 * 1024;  // The state machine's block size.
// A checkpoint of the state machine's default capacities, every table full, takes up to 81,410
// blocks, and one that rewrites every in-place table while the previous checkpoint keeps its
// copies up to 84,659 (the replica checks this at start, src/vsr/replica.hpp): 98,304 blocks
// leave a margin of about 13,600.
inline constexpr u64 grid_block_count_default = 98304;  // 6 GiB.

// Limits on any configuration.
inline constexpr u32 slot_count_min = wal_headers_per_sector;
inline constexpr u32 slot_count_max = 1u << 20;
inline constexpr u64 grid_block_count_max = u64{1} << 32;

// The layout's parameters, as recorded in the superblock (so that every later reader knows
// where the zones are). Persisted: fixed-width fields, no padding, reserved bytes zero.
struct LayoutConfig {
  u32 slot_count;
  u32 message_size_max;
  u32 clients_max;
  u32 grid_block_size;
  u64 grid_block_count;
  u64 reserved;

  static constexpr LayoutConfig production() {
    return LayoutConfig{
        .slot_count = journal_slot_count,
        .message_size_max = tally::message_size_max,
        .clients_max = tally::clients_max,
        .grid_block_size = grid_block_size_default,
        .grid_block_count = grid_block_count_default,
        .reserved = 0,
    };
  }

  static constexpr LayoutConfig testing() {
    return LayoutConfig{
        .slot_count = 64,
        .message_size_max = 64 * 1024,
        .clients_max = tally::clients_max,
        .grid_block_size = grid_block_size_default,
        .grid_block_count = 256,
        .reserved = 0,
    };
  }

  friend constexpr bool operator==(const LayoutConfig&, const LayoutConfig&) = default;
};

static_assert(sizeof(LayoutConfig) == 32);
static_assert(std::has_unique_object_representations_v<LayoutConfig>);
static_assert(offsetof(LayoutConfig, grid_block_count) == 16);

constexpr bool power_of_two(u64 value) { return value != 0 && (value & (value - 1)) == 0; }

// Why a configuration is invalid, or nullptr if it is valid.
constexpr const char* layout_config_error(const LayoutConfig& config) {
  if (!power_of_two(config.slot_count)) return "slot_count must be a power of two";
  if (config.slot_count < slot_count_min) return "slot_count must be at least 16";
  if (config.slot_count > slot_count_max) return "slot_count must be at most 2^20";
  if (config.message_size_max % sector_size != 0) {
    return "message_size_max must be a multiple of 4096";
  }
  if (config.message_size_max == 0 || config.message_size_max > tally::message_size_max) {
    return "message_size_max must be in 4096..1048576";
  }
  if (config.clients_max == 0 || config.clients_max > tally::clients_max) {
    return "clients_max must be in 1..64";
  }
  if (!power_of_two(config.grid_block_size) || config.grid_block_size < sector_size ||
      config.grid_block_size > tally::message_size_max) {
    return "grid_block_size must be a power of two in 4096..1048576";
  }
  if (config.grid_block_count == 0 || config.grid_block_count > grid_block_count_max) {
    return "grid_block_count must be in 1..2^32";
  }
  if (config.reserved != 0) return "reserved must be zero";
  return nullptr;
}

enum class ZoneKind : u8 {
  superblock = 0,
  wal_headers = 1,
  wal_prepares = 2,
  client_replies = 3,
  grid = 4,
};
inline constexpr u32 zone_count = 5;

const char* zone_name(ZoneKind zone);

struct Zone {
  u64 offset;
  u64 size;

  constexpr u64 end() const { return offset + size; }
};

// Where everything is, for one valid configuration. Cheap to copy; all constexpr.
class Layout {
 public:
  explicit constexpr Layout(const LayoutConfig& config) : config_(config) {
    TALLY_ASSERT(layout_config_error(config) == nullptr, "%s", layout_config_error(config));
    zones_[0] = Zone{.offset = 0, .size = superblock_zone_size};
    zones_[1] = Zone{.offset = zones_[0].end(), .size = u64{config.slot_count} * wal_header_size};
    zones_[2] = Zone{.offset = zones_[1].end(),
                     .size = u64{config.slot_count} * config.message_size_max};
    zones_[3] = Zone{.offset = zones_[2].end(),
                     .size = u64{config.clients_max} * config.message_size_max};
    zones_[4] = Zone{.offset = zones_[3].end(),
                     .size = config.grid_block_count * config.grid_block_size};
    for (const Zone& zone : zones_) {
      TALLY_ASSERT(zone.offset % sector_size == 0 && zone.size % sector_size == 0);
    }
    TALLY_ASSERT(size() < (u64{1} << 63));
  }

  constexpr const LayoutConfig& config() const { return config_; }
  constexpr Zone zone(ZoneKind kind) const { return zones_[static_cast<u32>(kind)]; }
  // The data file's size: the end of the last zone.
  constexpr u64 size() const { return zones_[zone_count - 1].end(); }

  constexpr u64 superblock_copy_offset(u32 copy) const {
    TALLY_ASSERT(copy < superblock_copies);
    return u64{copy} * superblock_copy_size;
  }

  // WAL headers are written a sector at a time: slot s's header is byte
  // (s % 16) * 256 of the sector at wal_header_sector_offset(s). Slot 17 -> sector 1, byte 256.
  constexpr u64 wal_header_sector_offset(u32 slot) const {
    TALLY_ASSERT(slot < config_.slot_count);
    return zone(ZoneKind::wal_headers).offset + u64{slot / wal_headers_per_sector} * sector_size;
  }
  constexpr u64 wal_header_offset(u32 slot) const {
    TALLY_ASSERT(slot < config_.slot_count);
    return zone(ZoneKind::wal_headers).offset + u64{slot} * wal_header_size;
  }

  constexpr u64 wal_prepare_offset(u32 slot) const {
    TALLY_ASSERT(slot < config_.slot_count);
    return zone(ZoneKind::wal_prepares).offset + u64{slot} * config_.message_size_max;
  }

  constexpr u64 client_reply_offset(u32 client_index) const {
    TALLY_ASSERT(client_index < config_.clients_max);
    return zone(ZoneKind::client_replies).offset + u64{client_index} * config_.message_size_max;
  }

  constexpr u64 grid_block_offset(u64 block_index) const {
    TALLY_ASSERT(block_index < config_.grid_block_count);
    return zone(ZoneKind::grid).offset + block_index * config_.grid_block_size;
  }

 private:
  LayoutConfig config_;
  Zone zones_[zone_count] = {};
};

// The production layout, checked at compile time. docs/data-file.md quotes these numbers.
namespace production_layout {
inline constexpr Layout layout{LayoutConfig::production()};
static_assert(power_of_two(journal_slot_count));
static_assert(layout_config_error(LayoutConfig::production()) == nullptr);
static_assert(layout_config_error(LayoutConfig::testing()) == nullptr);
static_assert(superblock_copy_size % sector_size == 0);
static_assert(layout.zone(ZoneKind::superblock).offset == 0);
static_assert(layout.zone(ZoneKind::superblock).size == 32 * 1024);
static_assert(layout.zone(ZoneKind::wal_headers).offset == 32 * 1024);
static_assert(layout.zone(ZoneKind::wal_headers).size == 256 * 1024);
static_assert(layout.zone(ZoneKind::wal_prepares).offset == 288 * 1024);
static_assert(layout.zone(ZoneKind::wal_prepares).size == u64{1} << 30);
static_assert(layout.zone(ZoneKind::client_replies).offset == (u64{1} << 30) + 288 * 1024);
static_assert(layout.zone(ZoneKind::client_replies).size == 64 * 1024 * 1024);
static_assert(layout.zone(ZoneKind::grid).offset == 1'141'145'600);
static_assert(layout.zone(ZoneKind::grid).size == u64{6} << 30);
static_assert(layout.size() == 7'583'596'544);
// The prepare of any op fits one slot, and the header ring fills whole sectors.
static_assert(LayoutConfig::production().message_size_max == tally::message_size_max);
static_assert(journal_slot_count % wal_headers_per_sector == 0);
}  // namespace production_layout

}  // namespace tally::journal
