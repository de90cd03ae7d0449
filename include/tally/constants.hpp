// Protocol limits of the TigerBeetle 0.17 client wire protocol, as named constants.
//
// Every size and count that a message, a body or a session table may reach is bounded here, and
// static_asserts tie the derived limits to the numbers the protocol document states (§0, §1.1,
// §5.5, §8.2, §8.5), so that a change to one limit that breaks another fails the build.
//
// Releases are u32 values whose little-endian bytes are [patch][minor][major u16], i.e.
// value = major << 16 | minor << 8 | patch. Example: 0.17.9 -> 0x00001109 -> bytes 09 11 00 00.
#pragma once

#include "tally/types.hpp"

namespace tally {

// A whole message (header and body) is at most 1 MiB; this is compiled into every client.
inline constexpr u32 message_size_max = 1024 * 1024;
inline constexpr u32 header_size = 256;
inline constexpr u32 message_body_size_max = message_size_max - header_size;

static_assert(message_body_size_max == 1'048'320);
static_assert(message_size_max % header_size == 0);

// The largest request body a client may send, announced in the register reply. Tally announces
// the protocol maximum, as the real server does by default (§5.1).
inline constexpr u32 batch_size_limit = message_body_size_max;

// Client sessions held by a cluster; registering one more evicts the least recently active.
inline constexpr u32 clients_max = 64;

// Replicas in a cluster. Clients index a fixed array with `replica`, so this is also a wire limit.
inline constexpr u32 replicas_max = 6;

// The `protocol` field of every header.
inline constexpr u16 protocol_version = 0;

// Operations below this value belong to VSR (register, pulse, ...), the rest to the state machine.
inline constexpr u8 vsr_operations_reserved = 128;

// A multi-batch postamble counts 1..65534 batches: 0xFFFF is the trailer's filler value.
inline constexpr u16 batch_count_max = 0xFFFF - 1;

// ---------------------------------------------------------------------------------------------
// Releases.

struct ReleaseTriple {
  u16 major;
  u8 minor;
  u8 patch;
};

constexpr u32 release_encode(ReleaseTriple triple) {
  return (u32{triple.major} << 16) | (u32{triple.minor} << 8) | u32{triple.patch};
}

constexpr ReleaseTriple release_decode(u32 release) {
  return ReleaseTriple{
      .major = static_cast<u16>(release >> 16),
      .minor = static_cast<u8>(release >> 8),
      .patch = static_cast<u8>(release),
  };
}

constexpr u16 release_major(u32 release) { return release_decode(release).major; }
constexpr u8 release_minor(u32 release) { return release_decode(release).minor; }
constexpr u8 release_patch(u32 release) { return release_decode(release).patch; }

// Real 0.17.x servers accept clients from 0.16.4 on; older ones are evicted (reason 2).
inline constexpr u32 release_client_min = release_encode({.major = 0, .minor = 16, .patch = 4});
// The release the server puts in pongs and evictions; clients newer than this are evicted
// (reason 3), so it must be at least the newest client we serve, tigerbeetle-node 0.17.9.
inline constexpr u32 release_server = release_encode({.major = 0, .minor = 17, .patch = 9});
// The release measured on the wire from tigerbeetle-node 0.17.9 (§13).
inline constexpr u32 release_client_node = 0x00001109;

static_assert(release_client_min == 0x00001004);
static_assert(release_server == 0x00001109);
static_assert(release_client_min <= release_client_node);
static_assert(release_client_node <= release_server);
static_assert(release_major(release_server) == 0);
static_assert(release_minor(release_server) == 17);
static_assert(release_patch(release_server) == 9);

// ---------------------------------------------------------------------------------------------
// Multi-batch trailer size and the per-operation limits of §8.5 that follow from it.

// The trailer holds one u16 count per batch plus the u16 postamble, padded with 0xFF bytes up to
// a multiple of the element size, so that payload and trailer together stay a whole number of
// elements. Example: element size 16, 2 batches -> 6 bytes rounded up to 16.
// An element size of 0 gives the unpadded size (no rounding is possible); u64 keeps it total.
constexpr u64 multi_batch_trailer_size(u32 element_size, u16 batch_count) {
  const u64 unpadded = u64{batch_count} * 2 + 2;
  if (element_size == 0) return unpadded;
  return (unpadded + element_size - 1) / element_size * element_size;
}

static_assert(multi_batch_trailer_size(128, 1) == 128);
static_assert(multi_batch_trailer_size(16, 1) == 16);
static_assert(multi_batch_trailer_size(16, 2) == 16);
static_assert(multi_batch_trailer_size(16, 7) == 16);
static_assert(multi_batch_trailer_size(16, 8) == 32);

// The most elements of `element_size` bytes one multi-batch body can carry in a single batch.
constexpr u32 multi_batch_element_max(u32 element_size) {
  if (element_size == 0) return 0;
  return static_cast<u32>((message_body_size_max - multi_batch_trailer_size(element_size, 1)) /
                          element_size);
}

// Sizes of the elements that the limits below are computed from (records.hpp asserts them).
inline constexpr u32 account_size = 128;
inline constexpr u32 transfer_size = 128;
inline constexpr u32 id_size = 16;
inline constexpr u32 create_result_size = 16;
inline constexpr u32 create_error_result_size = 8;  // The deprecated sparse {index, status}.
inline constexpr u32 account_filter_size = 128;
inline constexpr u32 query_filter_size = 64;
inline constexpr u32 account_balance_size = 128;
inline constexpr u32 change_events_filter_size = 64;
inline constexpr u32 change_event_size = 384;

// create_accounts / create_transfers: events per batch, also the dense results per batch.
inline constexpr u32 create_event_max =
    multi_batch_element_max(account_size) < multi_batch_element_max(create_result_size)
        ? multi_batch_element_max(account_size)
        : multi_batch_element_max(create_result_size);
// lookup_accounts / lookup_transfers: ids per batch, bounded by the 128-byte records returned.
inline constexpr u32 lookup_event_max =
    multi_batch_element_max(id_size) < multi_batch_element_max(account_size)
        ? multi_batch_element_max(id_size)
        : multi_batch_element_max(account_size);
// get_account_transfers, get_account_balances, query_accounts, query_transfers: results per
// batch (each batch is one filter).
inline constexpr u32 query_result_max = multi_batch_element_max(account_size);
// get_change_events is not multi-batch encoded: its reply is a raw array filling the body.
inline constexpr u32 change_events_result_max = message_body_size_max / change_event_size;

static_assert(create_event_max == 8189);
static_assert(lookup_event_max == 8189);
static_assert(query_result_max == 8189);
static_assert(change_events_result_max == 2730);
static_assert(multi_batch_element_max(id_size) == 65519);

// create_event_max is the largest event count whose one-batch body still fits.
static_assert(create_event_max * account_size + multi_batch_trailer_size(account_size, 1) <=
              message_body_size_max);
static_assert((create_event_max + 1) * account_size + multi_batch_trailer_size(account_size, 1) >
              message_body_size_max);

}  // namespace tally
