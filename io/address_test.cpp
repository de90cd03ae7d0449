// Tests of address list parsing and formatting.
//
// Goals: every accepted form gives the right family, host and port (defaults included); every
// malformed list or entry is rejected with its own error, the 1-based number of the bad entry,
// and a message that quotes the entry; formatting round-trips through the parser.
#include "io/address.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <unistd.h>

#include <string>

namespace tally::io {
namespace {

std::string format(const Address& address) {
  char buffer[address_text_size_max];
  return std::string(address_format(address, buffer));
}

// The single address of a one-entry list, checked to have parsed.
Address parse_one(std::string_view text) {
  const AddressList list = addresses_parse(text);
  INFO("text: ", std::string(text), " error: ", list.error_message);
  REQUIRE(list.ok());
  REQUIRE(list.count == 1);
  return list.addresses[0];
}

struct Rejection {
  std::string_view text;
  AddressError error;
  u32 entry;
  std::string_view message;  // Expected in full.
};

}  // namespace

TEST_SUITE("io_address") {
  TEST_CASE("io_address: a port alone means 127.0.0.1 and an IPv4 alone means port 3001") {
    const Address port_only = parse_one("3000");
    CHECK(port_only.family() == AF_INET);
    CHECK(port_only.port() == 3000);
    CHECK(format(port_only) == "127.0.0.1:3000");
    CHECK(address_equal(port_only, address_loopback(3000)));

    const Address host_only = parse_one("10.1.2.3");
    CHECK(host_only.family() == AF_INET);
    CHECK(host_only.port() == address_port_default);
    CHECK(format(host_only) == "10.1.2.3:3001");
    CHECK(address_equal(host_only, address_ipv4(0x0a010203, 3001)));

    const Address both = parse_one("192.168.0.9:65535");
    CHECK(format(both) == "192.168.0.9:65535");
    CHECK(parse_one("1").port() == 1);
    CHECK(parse_one("0.0.0.0:7").port() == 7);
    // Leading zeros in a port are still decimal.
    CHECK(parse_one("03000").port() == 3000);
  }

  TEST_CASE("io_address: IPv6 in brackets with and without a port") {
    const Address with_port = parse_one("[::1]:3000");
    CHECK(with_port.family() == AF_INET6);
    CHECK(with_port.size == sizeof(sockaddr_in6));
    CHECK(with_port.port() == 3000);
    CHECK(format(with_port) == "[::1]:3000");

    const Address without_port = parse_one("[fe80::1:2]");
    CHECK(without_port.family() == AF_INET6);
    CHECK(without_port.port() == 3001);
    CHECK(format(without_port) == "[fe80::1:2]:3001");

    const Address mapped = parse_one("[::ffff:10.0.0.1]:9");
    CHECK(format(mapped) == "[::ffff:10.0.0.1]:9");
    CHECK_FALSE(address_equal(with_port, without_port));
  }

  TEST_CASE("io_address: a list keeps its order and allows up to six entries") {
    const AddressList list =
        addresses_parse("3000,10.0.0.2,10.0.0.3:4000,[::1]:5000,[2001:db8::7],6000");
    REQUIRE(list.ok());
    REQUIRE(list.count == 6);
    CHECK(list.span().size() == 6);
    const char* expected[] = {"127.0.0.1:3000", "10.0.0.2:3001",      "10.0.0.3:4000",
                              "[::1]:5000",     "[2001:db8::7]:3001", "127.0.0.1:6000"};
    for (u32 index = 0; index < 6; index += 1) {
      CHECK(format(list.addresses[index]) == expected[index]);
    }
    CHECK(list.error_message[0] == '\0');
    CHECK(list.error_entry == 0);
  }

  TEST_CASE("io_address: every malformed list or entry is rejected with its own message") {
    const Rejection rejections[] = {
        {"", AddressError::list_empty, 0,
         "no addresses given (expected e.g. 3000, or 10.0.0.1:3000,10.0.0.2:3000)"},
        {"1,2,3,4,5,6,7", AddressError::list_too_long, 0,
         "7 addresses given, at most 6 (one per replica)"},
        {"3000,", AddressError::entry_empty, 2,
         "address 2 is empty (a leading, trailing or double comma?)"},
        {",3000", AddressError::entry_empty, 1,
         "address 1 is empty (a leading, trailing or double comma?)"},
        {"3000,,3001", AddressError::entry_empty, 2,
         "address 2 is empty (a leading, trailing or double comma?)"},
        {"3000,foo:1", AddressError::ipv4_invalid, 2,
         "address 2 'foo:1': not an IPv4 address (no DNS names)"},
        {"localhost", AddressError::ipv4_invalid, 1,
         "address 1 'localhost': not an IPv4 address (no DNS names)"},
        {"1.2.3", AddressError::ipv4_invalid, 1,
         "address 1 '1.2.3': not an IPv4 address (no DNS names)"},
        {"1.2.3.256:80", AddressError::ipv4_invalid, 1,
         "address 1 '1.2.3.256:80': not an IPv4 address (no DNS names)"},
        {"01.2.3.4", AddressError::ipv4_invalid, 1,
         "address 1 '01.2.3.4': not an IPv4 address (no DNS names)"},
        {":3000", AddressError::ipv4_invalid, 1,
         "address 1 ':3000': not an IPv4 address (no DNS names)"},
        {"3000, 3001", AddressError::whitespace, 2, "address 2 ' 3001': contains whitespace"},
        {"::1", AddressError::ipv6_unbracketed, 1,
         "address 1 '::1': more than one colon: write an IPv6 address in brackets, e.g. "
         "[::1]:3000"},
        {"1.2.3.4::5", AddressError::ipv6_unbracketed, 1,
         "address 1 '1.2.3.4::5': more than one colon: write an IPv6 address in brackets, e.g. "
         "[::1]:3000"},
        {"[::1:3000", AddressError::ipv6_unclosed, 1,
         "address 1 '[::1:3000': '[' without a closing ']'"},
        {"[::g]:3000", AddressError::ipv6_invalid, 1,
         "address 1 '[::g]:3000': not an IPv6 address (no DNS names)"},
        {"[]:3000", AddressError::ipv6_invalid, 1,
         "address 1 '[]:3000': not an IPv6 address (no DNS names)"},
        {"[1.2.3.4]:3000", AddressError::ipv6_invalid, 1,
         "address 1 '[1.2.3.4]:3000': not an IPv6 address (no DNS names)"},
        {"[::1]3000", AddressError::ipv6_trailing, 1,
         "address 1 '[::1]3000': expected nothing or ':port' after ']'"},
        {"[::1]:", AddressError::port_invalid, 1, "address 1 '[::1]:': port '' is not a number"},
        {"[::1]:x", AddressError::port_invalid, 1,
         "address 1 '[::1]:x': port 'x' is not a number"},
        {"1.2.3.4:", AddressError::port_invalid, 1,
         "address 1 '1.2.3.4:': port '' is not a number"},
        {"1.2.3.4:+80", AddressError::port_invalid, 1,
         "address 1 '1.2.3.4:+80': port '+80' is not a number"},
        {"1.2.3.4:-1", AddressError::port_invalid, 1,
         "address 1 '1.2.3.4:-1': port '-1' is not a number"},
        {"3000,0", AddressError::port_out_of_range, 2, "address 2 '0': port 0 is outside 1..65535"},
        {"65536", AddressError::port_out_of_range, 1,
         "address 1 '65536': port 65536 is outside 1..65535"},
        {"99999999999999999999", AddressError::port_out_of_range, 1,
         "address 1 '99999999999999999999': port 99999999999999999999 is outside 1..65535"},
        {"1.2.3.4:70000", AddressError::port_out_of_range, 1,
         "address 1 '1.2.3.4:70000': port 70000 is outside 1..65535"},
        {"[::1]:0", AddressError::port_out_of_range, 1,
         "address 1 '[::1]:0': port 0 is outside 1..65535"},
    };
    for (const Rejection& rejection : rejections) {
      const AddressList list = addresses_parse(rejection.text);
      INFO("text: '", std::string(rejection.text), "' message: ", list.error_message);
      CHECK_FALSE(list.ok());
      CHECK(address_error_name(list.error) == std::string(address_error_name(rejection.error)));
      CHECK(list.error_entry == rejection.entry);
      CHECK(list.count == 0);
      CHECK(std::string(list.error_message) == rejection.message);
    }
  }

  TEST_CASE("io_address: an entry longer than any address is quoted in part") {
    const std::string long_entry(200, '1');
    const std::string text = "3000," + long_entry;
    const AddressList list = addresses_parse(text);
    CHECK(list.error == AddressError::entry_too_long);
    CHECK(list.error_entry == 2);
    const std::string expected = "address 2 '" + std::string(address_entry_size_max, '1') +
                                 "...': too long to be an address";
    CHECK(std::string(list.error_message) == expected);
  }

  TEST_CASE("io_address: formatting round-trips and truncates into a short buffer") {
    for (const char* text : {"127.0.0.1:1", "255.255.255.255:65535", "[::]:3001",
                             "[2001:db8:85a3::8a2e:370:7334]:443"}) {
      const Address address = parse_one(text);
      CHECK(format(address) == text);
      CHECK(address_equal(parse_one(format(address)), address));
    }
    char small[6];
    CHECK(address_format(address_loopback(3000), small) == "127.0");
    CHECK(small[5] == '\0');
    CHECK(address_format(Address{}, std::span<char>{}).empty());
    CHECK(format(Address{}) == "(no address)");
    CHECK_FALSE(Address{}.valid());
  }

  TEST_CASE("io_address: port_set and the address a socket is bound to") {
    Address address = address_loopback(0);
    address.port_set(4242);
    CHECK(address.port() == 4242);

    const int socket = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(socket >= 0);
    Address any_port = address_loopback(0);
    REQUIRE(::bind(socket, any_port.sockaddr_pointer(), any_port.size) == 0);
    const Address bound = address_of_socket(socket);
    ::close(socket);
    CHECK(bound.valid());
    CHECK(bound.port() != 0);
    any_port.port_set(bound.port());
    CHECK(address_equal(bound, any_port));
  }
}

}  // namespace tally::io
