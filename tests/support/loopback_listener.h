#pragma once

#include "core/unique_fd.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

namespace sockdispatch::test {

// A TCP listener on 127.0.0.1, on a port the kernel chose. A step that fails is a test failure
// (the fd is then invalid).
struct LoopbackListener {
  UniqueFd fd;
  sockaddr_in address{};
  [[nodiscard]] uint16_t port() const { return ntohs(address.sin_port); }
};

// `typeFlags`: SOCK_NONBLOCK and the like, beside SOCK_CLOEXEC.
inline LoopbackListener listenOnLoopback(int typeFlags = 0, int backlog = 16) {
  LoopbackListener listener{UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | typeFlags, 0))};
  if (!listener.fd) {
    ADD_FAILURE() << "socket: " << std::strerror(errno);
    return listener;
  }
  listener.address.sin_family = AF_INET;
  listener.address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(listener.address);
  auto *raw = reinterpret_cast<sockaddr *>(&listener.address);
  if (::bind(listener.fd.get(), raw, length) != 0 || ::listen(listener.fd.get(), backlog) != 0 ||
      ::getsockname(listener.fd.get(), raw, &length) != 0) {
    ADD_FAILURE() << "bind, listen or getsockname on loopback: " << std::strerror(errno);
    listener.fd.reset();
  }
  return listener;
}

// A client connection to `address`, completed by the kernel into the listener's queue.
inline UniqueFd connectTo(const sockaddr_in &address) {
  UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!client ||
      ::connect(client.get(), reinterpret_cast<const sockaddr *>(&address), sizeof(address)) != 0) {
    ADD_FAILURE() << "connect to loopback: " << std::strerror(errno);
    client.reset();
  }
  return client;
}

} // namespace sockdispatch::test
