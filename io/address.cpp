// Address parsing and formatting (see address.hpp for the accepted forms).
//
// Each entry is classified by its first character and its colons, before any conversion:
//   starts with '['        -> IPv6 in brackets, then nothing or ":port"
//   only digits            -> a port on 127.0.0.1
//   no colon               -> IPv4 on the default port
//   exactly one colon      -> IPv4 ":" port
//   two or more colons     -> an IPv6 address without brackets: rejected with a hint
// inet_pton does the address conversions: it accepts only numeric forms (dotted quads without
// leading zeros for IPv4), never resolves names, and allocates nothing. It wants a terminated
// string, so the entry's parts are copied into a bounded local buffer first.
#include "io/address.hpp"

#include <arpa/inet.h>

#include <cstdio>
#include <cstring>

#include "src/base/assert.hpp"

namespace tally::io {

namespace {

constexpr u32 port_max = 65535;

bool is_digit(char character) { return character >= '0' && character <= '9'; }

bool all_digits(std::string_view text) {
  if (text.empty()) return false;
  for (const char character : text) {
    if (!is_digit(character)) return false;
  }
  return true;
}

bool has_whitespace(std::string_view text) {
  for (const char character : text) {
    if (character == ' ' || character == '\t' || character == '\n' || character == '\r' ||
        character == '\v' || character == '\f') {
      return true;
    }
  }
  return false;
}

// Decimal digits only; the value saturates above port_max so that a long run of digits is "out
// of range", not a wrapped-around valid port.
AddressError port_parse(std::string_view text, u16* port) {
  if (!all_digits(text)) return AddressError::port_invalid;
  u32 value = 0;
  for (const char character : text) {
    value = value * 10 + static_cast<u32>(character - '0');
    if (value > port_max) value = port_max + 1;
  }
  if (value == 0 || value > port_max) return AddressError::port_out_of_range;
  *port = static_cast<u16>(value);
  return AddressError::none;
}

// inet_pton into `destination` of the text `host`, terminated in a local copy.
bool host_parse(int family, std::string_view host, void* destination) {
  char text[address_entry_size_max + 1] = {};
  if (host.empty() || host.size() > address_entry_size_max) return false;
  std::memcpy(text, host.data(), host.size());
  return inet_pton(family, text, destination) == 1;
}

Address address_ipv6(const in6_addr& host, u16 port) {
  Address address;
  auto* ipv6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
  ipv6->sin6_family = AF_INET6;
  ipv6->sin6_addr = host;
  ipv6->sin6_port = htons(port);
  address.size = sizeof(sockaddr_in6);
  return address;
}

struct EntryResult {
  AddressError error = AddressError::none;
  // For port errors: the port text, quoted in the message.
  std::string_view port_text;
};

EntryResult entry_failed(AddressError error) {
  EntryResult result;
  result.error = error;
  return result;
}

EntryResult entry_parse(std::string_view entry, Address* address) {
  if (entry.empty()) return entry_failed(AddressError::entry_empty);
  if (entry.size() > address_entry_size_max) return entry_failed(AddressError::entry_too_long);
  if (has_whitespace(entry)) return entry_failed(AddressError::whitespace);

  u16 port = address_port_default;
  if (entry.front() == '[') {
    const std::size_t close = entry.find(']');
    if (close == std::string_view::npos) return entry_failed(AddressError::ipv6_unclosed);
    const std::string_view rest = entry.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return entry_failed(AddressError::ipv6_trailing);
      const std::string_view port_text = rest.substr(1);
      const AddressError error = port_parse(port_text, &port);
      if (error != AddressError::none) return {.error = error, .port_text = port_text};
    }
    in6_addr host = {};
    if (!host_parse(AF_INET6, entry.substr(1, close - 1), &host)) {
      return entry_failed(AddressError::ipv6_invalid);
    }
    *address = address_ipv6(host, port);
    return {};
  }

  if (all_digits(entry)) {
    const AddressError error = port_parse(entry, &port);
    if (error != AddressError::none) return {.error = error, .port_text = entry};
    *address = address_loopback(port);
    return {};
  }

  const std::size_t colon = entry.find(':');
  std::string_view host_text = entry;
  if (colon != std::string_view::npos) {
    if (entry.find(':', colon + 1) != std::string_view::npos) {
      return entry_failed(AddressError::ipv6_unbracketed);
    }
    host_text = entry.substr(0, colon);
    const std::string_view port_text = entry.substr(colon + 1);
    const AddressError error = port_parse(port_text, &port);
    if (error != AddressError::none) return {.error = error, .port_text = port_text};
  }
  in_addr host = {};
  if (!host_parse(AF_INET, host_text, &host)) return entry_failed(AddressError::ipv4_invalid);
  *address = address_ipv4(ntohl(host.s_addr), port);
  return {};
}

void error_set(AddressList* list, AddressError error, u32 entry_number, std::string_view entry,
               std::string_view port_text) {
  TALLY_ASSERT(error != AddressError::none);
  list->error = error;
  list->error_entry = entry_number;
  list->count = 0;
  char* message = list->error_message;
  const std::size_t size = sizeof(list->error_message);
  // Entries over the length limit are quoted in part; the rest are at most 64 characters.
  const int entry_length = static_cast<int>(entry.size() > address_entry_size_max
                                                ? address_entry_size_max
                                                : entry.size());
  const char* ellipsis = entry.size() > address_entry_size_max ? "..." : "";
  const int port_length = static_cast<int>(port_text.size());
  switch (error) {
    case AddressError::list_empty:
      std::snprintf(message, size,
                    "no addresses given (expected e.g. 3000, or 10.0.0.1:3000,10.0.0.2:3000)");
      return;
    case AddressError::list_too_long:
      std::snprintf(message, size, "%u addresses given, at most %u (one per replica)",
                    entry_number, address_count_max);
      list->error_entry = 0;
      return;
    case AddressError::entry_empty:
      std::snprintf(message, size, "address %u is empty (a leading, trailing or double comma?)",
                    entry_number);
      return;
    default: break;
  }
  const char* reason = "";
  switch (error) {
    case AddressError::entry_too_long: reason = "too long to be an address"; break;
    case AddressError::whitespace: reason = "contains whitespace"; break;
    case AddressError::ipv4_invalid: reason = "not an IPv4 address (no DNS names)"; break;
    case AddressError::ipv6_unbracketed:
      reason = "more than one colon: write an IPv6 address in brackets, e.g. [::1]:3000";
      break;
    case AddressError::ipv6_unclosed: reason = "'[' without a closing ']'"; break;
    case AddressError::ipv6_invalid: reason = "not an IPv6 address (no DNS names)"; break;
    case AddressError::ipv6_trailing: reason = "expected nothing or ':port' after ']'"; break;
    case AddressError::port_invalid:
      std::snprintf(message, size, "address %u '%.*s': port '%.*s' is not a number",
                    entry_number, entry_length, entry.data(), port_length, port_text.data());
      return;
    case AddressError::port_out_of_range:
      std::snprintf(message, size, "address %u '%.*s': port %.*s is outside 1..65535",
                    entry_number, entry_length, entry.data(), port_length, port_text.data());
      return;
    case AddressError::none:
    case AddressError::list_empty:
    case AddressError::list_too_long:
    case AddressError::entry_empty: TALLY_UNREACHABLE();
  }
  std::snprintf(message, size, "address %u '%.*s%s': %s", entry_number, entry_length,
                entry.data(), ellipsis, reason);
}

}  // namespace

bool Address::valid() const {
  if (size == sizeof(sockaddr_in)) return family() == AF_INET;
  if (size == sizeof(sockaddr_in6)) return family() == AF_INET6;
  return false;
}

u16 Address::port() const {
  TALLY_ASSERT(valid());
  if (family() == AF_INET) {
    return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  }
  return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
}

void Address::port_set(u16 port) {
  TALLY_ASSERT(valid());
  if (family() == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&storage)->sin_port = htons(port);
  } else {
    reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port = htons(port);
  }
}

Address address_loopback(u16 port) { return address_ipv4(INADDR_LOOPBACK, port); }

Address address_ipv4(u32 host, u16 port) {
  Address address;
  auto* ipv4 = reinterpret_cast<sockaddr_in*>(&address.storage);
  ipv4->sin_family = AF_INET;
  ipv4->sin_addr.s_addr = htonl(host);
  ipv4->sin_port = htons(port);
  address.size = sizeof(sockaddr_in);
  return address;
}

Address address_of_socket(int socket) {
  TALLY_ASSERT(socket >= 0);
  Address address;
  socklen_t size = sizeof(address.storage);
  if (getsockname(socket, reinterpret_cast<sockaddr*>(&address.storage), &size) != 0) return {};
  address.size = size;
  if (!address.valid()) return {};
  return address;
}

bool address_equal(const Address& a, const Address& b) {
  if (!a.valid() || !b.valid()) return false;
  if (a.family() != b.family() || a.port() != b.port()) return false;
  if (a.family() == AF_INET) {
    return reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr.s_addr ==
           reinterpret_cast<const sockaddr_in*>(&b.storage)->sin_addr.s_addr;
  }
  const auto* a6 = reinterpret_cast<const sockaddr_in6*>(&a.storage);
  const auto* b6 = reinterpret_cast<const sockaddr_in6*>(&b.storage);
  return std::memcmp(&a6->sin6_addr, &b6->sin6_addr, sizeof(in6_addr)) == 0 &&
         a6->sin6_scope_id == b6->sin6_scope_id;
}

std::string_view address_format(const Address& address, std::span<char> buffer) {
  if (buffer.empty()) return {};
  char host[INET6_ADDRSTRLEN] = {};
  int written = 0;
  if (!address.valid()) {
    written = std::snprintf(buffer.data(), buffer.size(), "(no address)");
  } else if (address.family() == AF_INET) {
    const auto* ipv4 = reinterpret_cast<const sockaddr_in*>(&address.storage);
    const char* text = inet_ntop(AF_INET, &ipv4->sin_addr, host, sizeof(host));
    TALLY_ASSERT(text != nullptr);
    written = std::snprintf(buffer.data(), buffer.size(), "%s:%u", host, address.port());
  } else {
    const auto* ipv6 = reinterpret_cast<const sockaddr_in6*>(&address.storage);
    const char* text = inet_ntop(AF_INET6, &ipv6->sin6_addr, host, sizeof(host));
    TALLY_ASSERT(text != nullptr);
    written = std::snprintf(buffer.data(), buffer.size(), "[%s]:%u", host, address.port());
  }
  TALLY_ASSERT(written >= 0);
  const std::size_t length = static_cast<std::size_t>(written) < buffer.size()
                                 ? static_cast<std::size_t>(written)
                                 : buffer.size() - 1;
  return {buffer.data(), length};
}

const char* address_error_name(AddressError error) {
  switch (error) {
    case AddressError::none: return "none";
    case AddressError::list_empty: return "list_empty";
    case AddressError::list_too_long: return "list_too_long";
    case AddressError::entry_empty: return "entry_empty";
    case AddressError::entry_too_long: return "entry_too_long";
    case AddressError::whitespace: return "whitespace";
    case AddressError::ipv4_invalid: return "ipv4_invalid";
    case AddressError::ipv6_unbracketed: return "ipv6_unbracketed";
    case AddressError::ipv6_unclosed: return "ipv6_unclosed";
    case AddressError::ipv6_invalid: return "ipv6_invalid";
    case AddressError::ipv6_trailing: return "ipv6_trailing";
    case AddressError::port_invalid: return "port_invalid";
    case AddressError::port_out_of_range: return "port_out_of_range";
  }
  return "unknown";
}

AddressList addresses_parse(std::string_view text) {
  AddressList list;
  if (text.empty()) {
    error_set(&list, AddressError::list_empty, 0, {}, {});
    return list;
  }
  u32 entry_count = 1;
  for (const char character : text) entry_count += character == ',' ? 1 : 0;
  if (entry_count > address_count_max) {
    error_set(&list, AddressError::list_too_long, entry_count, {}, {});
    return list;
  }

  std::string_view rest = text;
  for (u32 index = 0; index < entry_count; index += 1) {
    const std::size_t comma = rest.find(',');
    const std::string_view entry = rest.substr(0, comma);
    const EntryResult result = entry_parse(entry, &list.addresses[index]);
    if (result.error != AddressError::none) {
      error_set(&list, result.error, index + 1, entry, result.port_text);
      return list;
    }
    TALLY_ASSERT(list.addresses[index].valid() && list.addresses[index].port() != 0);
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    list.count = index + 1;
  }
  TALLY_ASSERT(list.count == entry_count);
  return list;
}

}  // namespace tally::io
