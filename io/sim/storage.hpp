// io::sim::Storage: a data file in memory for the simulator, with discrete-event latency and
// injected faults. It satisfies journal::Storage (the static_assert at the end of this file), so
// the journal and the replica run on it unchanged.
//
// Time: nothing happens inside read() or write(). Each operation is given a latency drawn from
// [latency_min_ticks, latency_max_ticks]; tick() advances the clock by one and completes every
// operation whose latency has elapsed, in an order drawn from the seeded Prng (so operations
// submitted together may complete in any order, as with a real device), and runs their callbacks.
// A write's bytes reach the stored file when it completes; a read copies them out when it
// completes. Operations submitted by a callback complete on a later tick.
//
// Faults, each with a rate in parts per million and allowed only inside the zones given with
// faults_allow(), so the simulator can keep them within what the cluster can repair:
//
//   fault               drawn                         effect
//   read_error          per sector, at each read      latent sector error: the sector becomes
//                                                     unreadable until written again; the read
//                                                     completes with ReadResult::error
//   bit_flip            per sector, at each read      one stored bit flips (persistent), the read
//                                                     returns the corrupt sector
//   misdirected_write   per write, when it lands      the data lands at another sector-aligned
//                                                     offset of the zone (see FaultZone), instead
//                                                     of or as well as its own
//   torn_write          per write in flight, crash()  only some of the write's sectors land
//
// crash() ends the process that owned the storage: every read in flight is dropped, and every
// write in flight is torn (at torn_write's rate), else lands or is lost (a fair coin), and no
// callback runs. Completed writes are never undone: they are durable, as the contract says.
//
// Every damaged sector is recorded (sector_damage(), damaged()) until a clean write replaces
// it, and every fault is counted (fault_count()), so tests can check what happened.
//
// Invariants: the stored file and the damage record are allocated once, at construction (a
// LargeArray each; the stored file starts zeroed); at most in_flight_max operations are in
// flight; the same seed and the same calls give the same run, byte for byte (trace_hash()).
#pragma once

#include <array>
#include <cstddef>
#include <span>

#include "journal/storage.hpp"
#include "src/base/bounded_array.hpp"
#include "src/base/large_array.hpp"
#include "src/base/prng.hpp"
#include "tally/types.hpp"

namespace tally::io::sim {

using journal::ReadResult;
using journal::sector_size;

enum class Fault : u8 { read_error = 0, bit_flip = 1, misdirected_write = 2, torn_write = 3 };
inline constexpr u32 fault_kind_count = 4;

const char* fault_name(Fault fault);

// What is wrong with a stored sector, as bits of sector_damage(). A sector may carry several.
namespace damage {
inline constexpr u8 read_error = 1 << 0;         // Unreadable (latent sector error).
inline constexpr u8 bit_flip = 1 << 1;           // Holds a flipped bit.
inline constexpr u8 misdirected_onto = 1 << 2;   // Holds data meant for another offset.
inline constexpr u8 misdirected_away = 1 << 3;   // Missed a write that went elsewhere: stale.
inline constexpr u8 torn = 1 << 4;               // Missed its part of a torn write: stale.
}  // namespace damage

struct FaultRates {
  u32 read_error_ppm = 0;
  u32 bit_flip_ppm = 0;
  u32 misdirected_write_ppm = 0;
  u32 torn_write_ppm = 0;
};

// A byte range [offset, offset + size) in which a fault may happen; sector-aligned.
//
// For misdirected writes, the target is offset + i * alignment for some i. The default lets a
// write land at any sector, straddling the slots of a zone of fixed-size slots (so damaging
// two); a zone that sets its slot size (superblock copies, WAL prepares) models a device that
// wrote a request whole at a wrong address: one slot replaced by another slot's data.
struct FaultZone {
  u64 offset = 0;
  u64 size = 0;
  u64 alignment = sector_size;
  // The per-sector faults drawn at reads (read_error, bit_flip) come at the storage's rate
  // divided by this here: a zone read whole at once (a checkpoint's grid blocks at open) would
  // otherwise fault at nearly every such read, and never be read back whole.
  u32 read_fault_divisor = 1;
};

struct StorageOptions {
  u64 size = 0;  // Bytes, a multiple of sector_size.
  u64 seed = 0;
  u32 in_flight_max = 1024;
  u32 read_latency_min_ticks = 1;
  u32 read_latency_max_ticks = 1;
  u32 write_latency_min_ticks = 1;
  u32 write_latency_max_ticks = 1;
  FaultRates fault_rates = {};
};

class Storage {
 public:
  // Bookkeeping the storage keeps inside each completion; the caller never touches it.
  class Pending {
   private:
    friend class Storage;
    enum class Kind : u8 { read, write };

    Kind kind_ = Kind::read;
    bool in_flight_ = false;
    u64 ready_tick_ = 0;
    u64 submit_index_ = 0;  // Submission order, for the crash outcomes and the trace.
    Pending* next_ = nullptr;
    void* completion_ = nullptr;  // The Read or Write holding this.
  };

  struct Read {
    void* context = nullptr;
    std::span<std::byte> buffer;
    u64 offset = 0;
    ReadResult result = ReadResult::ok;

   private:
    friend class Storage;
    void (*callback_)(Read*) = nullptr;
    Pending pending_;
  };

  struct Write {
    void* context = nullptr;
    std::span<const std::byte> data;
    u64 offset = 0;

   private:
    friend class Storage;
    void (*callback_)(Write*) = nullptr;
    Pending pending_;
  };

  explicit Storage(const StorageOptions& options);
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage() = default;

  // journal::Storage.
  void read(Read* read, void (*callback)(Read*), std::span<std::byte> buffer, u64 offset);
  void write(Write* write, void (*callback)(Write*), std::span<const std::byte> data, u64 offset);
  u64 size() const { return size_; }

  // Advances the clock by one tick and completes the operations whose latency has elapsed.
  void tick();
  u64 ticks() const { return ticks_; }
  u32 in_flight_count() const { return in_flight_count_; }
  bool idle() const { return in_flight_count_ == 0; }

  // The owning process dies: see the file comment. The storage stays usable by its successor.
  void crash();

  // Faults happen only inside allowed zones (none at first) and at the configured rates.
  void faults_allow(Fault fault, FaultZone zone);
  void faults_disallow_all();
  void fault_rates_set(const FaultRates& rates) { rates_ = rates; }
  const FaultRates& fault_rates() const { return rates_; }

  // Deliberate damage for tests, outside the rates and zones; recorded like any other fault.
  void inject_bit_flip(u64 offset);
  void inject_read_error(u64 offset);

  // The damage record: bits of `damage::` for one sector, and whether any sector of a range
  // is damaged. Faults that happened, by kind, since construction.
  u8 sector_damage(u64 offset) const;
  bool damaged(u64 offset, u64 size) const;
  u64 damaged_sector_count() const;
  u64 fault_count(Fault fault) const { return fault_counts_[static_cast<u32>(fault)]; }

  // The stored bytes, bypassing latency and faults: for checkers and tests.
  std::span<const std::byte> peek(u64 offset, u64 size) const;

  // A running hash of every completion, crash outcome and fault: two runs with one seed must
  // end with the same value.
  u64 trace_hash() const { return trace_hash_; }

 private:
  static constexpr u32 zones_max = 16;

  void submit(Pending* pending, Pending::Kind kind, void* completion, u64 latency_ticks);
  void complete_read(Read* read);
  void complete_write(Write* write);
  // Puts a write's bytes on the stored file, possibly misdirected.
  void write_land(const Write* write);
  void write_tear(const Write* write);
  void bytes_store(u64 offset, std::span<const std::byte> data, u8 damage_bits);
  bool fault_allowed(Fault fault, u64 offset, u64 size) const;
  const FaultZone* fault_zone(Fault fault, u64 offset, u64 size) const;
  void sector_flip_bit(u64 sector_index);
  void fault_record(Fault fault, u64 offset);
  void trace(u64 value);
  void range_assert(u64 offset, u64 size) const;

  u64 size_;
  u64 sector_count_;
  u32 in_flight_max_;
  u32 read_latency_min_ticks_;
  u32 read_latency_max_ticks_;
  u32 write_latency_min_ticks_;
  u32 write_latency_max_ticks_;
  FaultRates rates_;
  base::Prng prng_;

  base::LargeArray<std::byte> bytes_;
  base::LargeArray<u8> damage_;
  // The operations that complete in one tick, gathered so that their order can be shuffled.
  base::LargeArray<Pending*> ready_;

  // Operations in flight, in submission order.
  Pending* pending_head_ = nullptr;
  Pending* pending_tail_ = nullptr;
  u32 in_flight_count_ = 0;
  u64 submit_count_ = 0;
  u64 ticks_ = 0;

  std::array<base::BoundedArray<FaultZone, zones_max>, fault_kind_count> zones_{};
  std::array<u64, fault_kind_count> fault_counts_{};
  u64 trace_hash_ = 0;
};

static_assert(journal::Storage<Storage>);

}  // namespace tally::io::sim
