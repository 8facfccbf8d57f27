#include "core/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace sockdispatch {

uint16_t SocketAddress::port() const {
  if (family() == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6 *>(&storage)->sin6_port);
  }
  return ntohs(reinterpret_cast<const sockaddr_in *>(&storage)->sin_port);
}

void SocketAddress::setPort(uint16_t port) {
  if (family() == AF_INET6) {
    reinterpret_cast<sockaddr_in6 *>(&storage)->sin6_port = htons(port);
  } else {
    reinterpret_cast<sockaddr_in *>(&storage)->sin_port = htons(port);
  }
}

std::string SocketAddress::toString() const {
  char text[INET6_ADDRSTRLEN] = {};
  // Appended piece by piece into one string: `"[" + std::string(...)` inserts at the front,
  // which GCC 12 at -O3 mistakes for an overlapping copy (-Wrestrict).
  std::string out;
  out.reserve(sizeof(text) + 8);
  if (family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6 *>(&storage)->sin6_addr, text,
              sizeof(text));
    out.append("[").append(text).append("]");
  } else {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in *>(&storage)->sin_addr, text,
              sizeof(text));
    out.append(text);
  }
  out.append(":").append(std::to_string(port()));
  return out;
}

std::optional<SocketAddress> parseAddress(std::string_view host, uint16_t port) {
  std::string text(host);
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  SocketAddress address;
  auto *v4 = reinterpret_cast<sockaddr_in *>(&address.storage);
  if (inet_pton(AF_INET, text.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    address.length = sizeof(sockaddr_in);
    return address;
  }
  address.storage = {};
  auto *v6 = reinterpret_cast<sockaddr_in6 *>(&address.storage);
  if (inet_pton(AF_INET6, text.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    address.length = sizeof(sockaddr_in6);
    return address;
  }
  return std::nullopt;
}

} // namespace sockdispatch
