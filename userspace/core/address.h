#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sockdispatch {

// A numeric IPv4 or IPv6 socket address.
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  [[nodiscard]] int family() const { return storage.ss_family; }
  [[nodiscard]] uint16_t port() const;
  void setPort(uint16_t port);
  // "127.0.0.1:8080" or "[::1]:8080".
  [[nodiscard]] std::string toString() const;
};

// Parses a numeric address ("0.0.0.0", "127.0.0.1", "::", "::1", "[::1]") with the given
// port. Host names are not resolved: a listener must not depend on DNS at start.
std::optional<SocketAddress> parseAddress(std::string_view host, uint16_t port);

} // namespace sockdispatch
