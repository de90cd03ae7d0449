// The Storage concept: what the journal (and later the replica) needs from a data file.
//
// Two implementations satisfy it structurally, without including this header: io::FileStorage
// (io_uring, O_DIRECT on a real file) and io::sim::Storage (memory, with injected faults). The
// logic in journal/ and src/vsr is written once against the concept and is compiled with either.
//
// Contract:
// - Asynchronous, callback-based, nothing allocated per operation: the caller owns a completion
//   struct (`S::Read`, `S::Write`) for the whole time the operation is in flight and gets it back
//   in its callback; the completion's `context` (set by the caller, untouched by the storage) or
//   the completion's place inside a larger struct leads back to the caller. Callbacks run from
//   the owner's event loop (io) or the simulator's step (sim), never from inside read()/write()
//   themselves, so a callback may start new operations.
// - Offsets, sizes and buffer addresses are multiples of sector_size (4 KiB): the real
//   implementation uses O_DIRECT.
// - A write whose callback has run is durable: it survives a crash or power loss (O_DSYNC or an
//   explicit flush inside the implementation). A write still in flight at a crash may be lost,
//   torn (some sectors old, some new) or, in the simulator, misdirected.
// - A read returns the bytes on disk, which may be corrupt: every reader verifies checksums.
//   A read that the device cannot serve (a latent sector error) completes with `result` =
//   ReadResult::error and the buffer's contents undefined; the caller treats it like corruption.
// - size() is the data file's size in bytes, fixed after open.
#pragma once

#include <concepts>
#include <cstddef>
#include <span>

#include "src/base/assert.hpp"
#include "tally/types.hpp"

namespace tally::journal {

inline constexpr u32 sector_size = 4096;

// A byte size rounded up to whole sectors: what an O_DIRECT read or write of that many bytes
// moves (300 -> 4096, 4096 -> 4096, 4097 -> 8192). Of the caller's own type, so that a u32 size
// stays a u32.
template <std::unsigned_integral T>
constexpr T sector_ceil(T size) {
  const T result = static_cast<T>((size + sector_size - 1) / sector_size * sector_size);
  // No wrap past the type's end, and less than a sector added.
  TALLY_ASSERT(result >= size && result - size < sector_size);
  return result;
}

enum class ReadResult : u8 { ok, error };

template <typename S>
concept Storage = requires(S storage, typename S::Read* read, typename S::Write* write,
                           void (*read_callback)(typename S::Read*),
                           void (*write_callback)(typename S::Write*),
                           std::span<std::byte> buffer, std::span<const std::byte> data,
                           u64 offset) {
  { storage.read(read, read_callback, buffer, offset) } -> std::same_as<void>;
  { storage.write(write, write_callback, data, offset) } -> std::same_as<void>;
  { storage.size() } -> std::same_as<u64>;
  // The completion records what was asked, and for reads, how it went.
  { read->context } -> std::convertible_to<void*>;
  { write->context } -> std::convertible_to<void*>;
  { read->result } -> std::convertible_to<ReadResult>;
  { read->buffer } -> std::convertible_to<std::span<std::byte>>;
  { read->offset } -> std::convertible_to<u64>;
  { write->data } -> std::convertible_to<std::span<const std::byte>>;
  { write->offset } -> std::convertible_to<u64>;
};

}  // namespace tally::journal
