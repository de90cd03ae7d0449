// Address: an IPv4 or IPv6 socket address, and the parser of the replica address list that
// clients (protocol §1.2) and `tally start --addresses=` take.
//
// The list is comma-separated, 1 to replicas_max entries, the entry's position being the
// replica's index. Each entry is one of:
//
//   3000             port only         -> 127.0.0.1:3000
//   10.0.0.1         IPv4 only         -> 10.0.0.1:3001
//   10.0.0.1:3000    IPv4 and port
//   [::1]:3000       IPv6 and port (IPv6 always in brackets, since its colons would be ambiguous)
//   [::1]            IPv6 only         -> [::1]:3001
//
// There are no DNS names: a replica must not stall or change identity on a resolver. Ports are
// 1..65535 (port 0, "any port", is for tests that build an Address directly). Nothing is trimmed:
// "3000, 3001" is an error, because the space would otherwise have to mean something.
//
// Invariants: parsing allocates nothing and never throws; on failure the result names the first
// bad entry (1-based) and says what is wrong with it, in a sentence the CLI prints as is; on
// success every entry of the result holds a valid address with a port in 1..65535.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <span>
#include <string_view>

#include "tally/constants.hpp"
#include "tally/types.hpp"

namespace tally::io {

inline constexpr u16 address_port_default = 3001;
inline constexpr u32 address_count_max = replicas_max;
// Longest entry worth looking at: an IPv6 text (45) in brackets with a port is 53 characters.
inline constexpr u32 address_entry_size_max = 64;
// "[" IPv6 "]:" port, with the terminating zero: 46 + 2 + 2 + 5 = 55, rounded up.
inline constexpr u32 address_text_size_max = 64;
inline constexpr u32 address_error_size_max = 192;

struct Address {
  sockaddr_storage storage = {};
  socklen_t size = 0;  // sizeof(sockaddr_in) or sizeof(sockaddr_in6); 0 while unset.

  const sockaddr* sockaddr_pointer() const { return reinterpret_cast<const sockaddr*>(&storage); }
  sa_family_t family() const { return storage.ss_family; }
  bool valid() const;
  u16 port() const;
  void port_set(u16 port);
};

// 127.0.0.1:port, the address of a local replica (tests, single-machine clusters).
Address address_loopback(u16 port);
// From an IPv4 address in host byte order, e.g. 0x7f000001 for 127.0.0.1.
Address address_ipv4(u32 host, u16 port);
// The address a socket is bound to (getsockname), or an invalid address if it has none.
Address address_of_socket(int socket);

bool address_equal(const Address& a, const Address& b);

// "127.0.0.1:3000" or "[::1]:3000" into `buffer` (zero-terminated), returned as a view of it.
// A buffer of address_text_size_max characters always suffices; a shorter one gets a truncated
// (still terminated) text.
std::string_view address_format(const Address& address, std::span<char> buffer);

enum class AddressError : u8 {
  none,
  list_empty,          // The whole list is empty.
  list_too_long,       // More than address_count_max entries.
  entry_empty,         // ",," or a leading or trailing comma.
  entry_too_long,      // Longer than address_entry_size_max: no valid entry is.
  whitespace,          // A space or tab anywhere in the entry.
  ipv4_invalid,        // Not a dotted-quad IPv4 address (a DNS name lands here).
  ipv6_unbracketed,    // More than one colon outside brackets.
  ipv6_unclosed,       // "[" without "]".
  ipv6_invalid,        // The text between the brackets is not an IPv6 address.
  ipv6_trailing,       // Something other than ":port" after "]".
  port_invalid,        // Empty, or not only decimal digits.
  port_out_of_range,   // 0, or above 65535.
};

const char* address_error_name(AddressError error);

struct AddressList {
  std::array<Address, address_count_max> addresses = {};
  u32 count = 0;
  AddressError error = AddressError::none;
  u32 error_entry = 0;  // 1-based index of the bad entry; 0 for errors of the whole list.
  // A sentence for the user, e.g. "address 2 'foo:1': not an IPv4 address (no DNS names)".
  char error_message[address_error_size_max] = {};

  bool ok() const { return error == AddressError::none; }
  std::span<const Address> span() const { return {addresses.data(), count}; }
};

AddressList addresses_parse(std::string_view text);

}  // namespace tally::io
