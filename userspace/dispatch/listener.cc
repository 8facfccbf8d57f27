#include "dispatch/listener.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <fstream>
#include <sstream>

namespace sockdispatch {

namespace {

Result<UniqueFd> bindOne(const SocketAddress &address) {
  UniqueFd fd(::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    return osError("create socket for " + address.toString());
  }
  int one = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
    return osError("set SO_REUSEADDR on " + address.toString());
  }
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    return osError("set SO_REUSEPORT on " + address.toString());
  }
  if (address.family() == AF_INET6 &&
      ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) {
    return osError("set IPV6_V6ONLY on " + address.toString());
  }
  if (::bind(fd.get(), reinterpret_cast<const sockaddr *>(&address.storage), address.length) != 0) {
    return osError("bind " + address.toString());
  }
  return fd;
}

bool fileHasListener(const char *path, uint16_t port) {
  std::ifstream table(path);
  std::string line;
  std::getline(table, line); // header
  while (std::getline(table, line)) {
    // "  0: 0100007F:1F90 00000000:0000 0A ..."
    std::istringstream fields(line);
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    auto colon = local.rfind(':');
    if (colon == std::string::npos || state != "0A") {
      continue;
    }
    if (std::stoul(local.substr(colon + 1), nullptr, 16) == port) {
      return true;
    }
  }
  return false;
}

} // namespace

Result<ListenerGroup> bindReuseportGroup(const SocketAddress &address, int count) {
  ListenerGroup group;
  group.address = address;
  for (int i = 0; i < count; ++i) {
    auto fd = bindOne(group.address);
    if (!fd) {
      return fd.error();
    }
    if (i == 0 && group.address.port() == 0) {
      SocketAddress bound = group.address;
      bound.length = sizeof(bound.storage);
      if (::getsockname(fd->get(), reinterpret_cast<sockaddr *>(&bound.storage), &bound.length) !=
          0) {
        return osError("read the bound address of " + address.toString());
      }
      group.address = bound;
    }
    group.sockets.push_back(std::move(fd.value()));
  }
  return group;
}

Result<void> listenAll(ListenerGroup &group, int backlog) {
  for (auto &fd : group.sockets) {
    if (::listen(fd.get(), backlog) != 0) {
      return osError("listen on " + group.address.toString());
    }
  }
  return {};
}

Result<UniqueFd> openGroupListener(const SocketAddress &address, int backlog) {
  auto fd = bindOne(address);
  if (!fd) {
    return fd.error();
  }
  if (::listen(fd->get(), backlog) != 0) {
    return osError("listen on " + address.toString());
  }
  return std::move(fd.value());
}

bool portHasListener(uint16_t port) {
  return fileHasListener("/proc/net/tcp", port) || fileHasListener("/proc/net/tcp6", port);
}

} // namespace sockdispatch
