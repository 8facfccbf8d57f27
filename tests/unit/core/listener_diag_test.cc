// dumpTcpListeners against real listeners on loopback (IPv4 and IPv6), with connections that
// nobody accepts: each listener is found by the kernel's port filter and nothing else is, its
// inode and cookie are those of the socket we hold, and its accept queue is exact.
#include "core/listener_diag.h"
#include "core/unique_fd.h"
#include "support/process.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace sockdispatch {
namespace {

using test::eventually;

constexpr int kBacklog = 16;

// A listener bound to `host` (port 0 picks one; SO_REUSEPORT so a test may put several on one
// port), or nullopt when the host has no such address (no IPv6 on loopback).
std::optional<UniqueFd> listenOn(const char *host, uint16_t port = 0) {
  auto address = parseAddress(host, port);
  if (!address) {
    ADD_FAILURE() << "bad address " << host;
    return std::nullopt;
  }
  UniqueFd fd(::socket(address->family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  int on = 1;
  if (!fd || ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0) {
    ADD_FAILURE() << "socket: " << std::strerror(errno);
    return std::nullopt;
  }
  if (address->family() == AF_INET6 &&
      ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) != 0) {
    ADD_FAILURE() << "IPV6_V6ONLY: " << std::strerror(errno);
    return std::nullopt;
  }
  if (::bind(fd.get(), reinterpret_cast<const sockaddr *>(&address->storage), address->length) !=
      0) {
    if (errno != EADDRNOTAVAIL) {
      ADD_FAILURE() << "bind " << address->toString() << ": " << std::strerror(errno);
    }
    return std::nullopt;
  }
  if (::listen(fd.get(), kBacklog) != 0) {
    ADD_FAILURE() << "listen: " << std::strerror(errno);
    return std::nullopt;
  }
  return fd;
}

SocketAddress localOf(const UniqueFd &fd) {
  SocketAddress address;
  address.length = sizeof(address.storage);
  EXPECT_EQ(
      ::getsockname(fd.get(), reinterpret_cast<sockaddr *>(&address.storage), &address.length), 0)
      << "getsockname";
  return address;
}

// `count` connected clients to `to`, whose handshakes the kernel completes without an accept.
std::vector<UniqueFd> connectClients(const SocketAddress &to, int count) {
  std::vector<UniqueFd> clients;
  for (int i = 0; i < count; ++i) {
    UniqueFd fd(::socket(to.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_TRUE(fd) << "socket";
    EXPECT_EQ(::connect(fd.get(), reinterpret_cast<const sockaddr *>(&to.storage), to.length), 0)
        << "connect " << i << " to " << to.toString() << ": " << std::strerror(errno);
    clients.push_back(std::move(fd));
  }
  return clients;
}

uint64_t inodeOf(const UniqueFd &fd) {
  struct stat st {};
  EXPECT_EQ(::fstat(fd.get(), &st), 0) << "fstat";
  return st.st_ino;
}

uint64_t cookieOf(const UniqueFd &fd) {
  uint64_t cookie = 0;
  socklen_t length = sizeof(cookie);
  EXPECT_EQ(::getsockopt(fd.get(), SOL_SOCKET, SO_COOKIE, &cookie, &length), 0) << "SO_COOKIE";
  return cookie;
}

std::vector<ListenerInfo> dump(uint16_t port) {
  auto listeners = dumpTcpListeners(port);
  EXPECT_TRUE(listeners) << listeners.error().message();
  return listeners ? listeners.value() : std::vector<ListenerInfo>{};
}

// The accept queue the dump gives for the listener with this cookie, or -1 when not found.
long queueOf(uint16_t port, uint64_t cookie) {
  for (const ListenerInfo &listener : dump(port)) {
    if (listener.cookie == cookie) {
      return listener.acceptQueue;
    }
  }
  return -1;
}

class ListenerDiag : public testing::TestWithParam<const char *> {};

/*
 * One listener, 5 connections queued on it and not accepted, and a second listener on another
 * port with 2 of its own: the dump of the first port returns the first listener only, with its
 * inode, cookie, address, uid, backlog and exactly 5 queued; one accept leaves 4.
 */
TEST_P(ListenerDiag, FindsTheListenerOfThePortWithItsExactAcceptQueue) {
  auto listener = listenOn(GetParam());
  if (!listener) {
    GTEST_SKIP() << "no " << GetParam() << " on this host";
  }
  auto other = listenOn(GetParam());
  ASSERT_TRUE(other);
  SocketAddress local = localOf(*listener);
  SocketAddress otherLocal = localOf(*other);
  ASSERT_NE(local.port(), otherLocal.port());
  auto clients = connectClients(local, 5);
  auto otherClients = connectClients(otherLocal, 2);

  ASSERT_TRUE(eventually([&] { return queueOf(local.port(), cookieOf(*listener)) == 5; }))
      << "queue " << queueOf(local.port(), cookieOf(*listener));
  auto found = dump(local.port());
  ASSERT_EQ(found.size(), 1U) << "only the port's listener";
  const ListenerInfo &info = found.front();
  EXPECT_EQ(info.inode, inodeOf(*listener));
  EXPECT_EQ(info.cookie, cookieOf(*listener));
  EXPECT_NE(info.cookie, cookieOf(*other));
  EXPECT_EQ(info.local.toString(), local.toString());
  EXPECT_EQ(info.local.family(), local.family());
  EXPECT_EQ(info.uid, ::geteuid());
  EXPECT_EQ(info.acceptQueue, 5U);
  EXPECT_EQ(info.backlog, static_cast<uint32_t>(kBacklog));

  UniqueFd accepted(::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(accepted) << "accept: " << std::strerror(errno);
  EXPECT_EQ(queueOf(local.port(), info.cookie), 4) << "an accept leaves the queue at once";

  auto otherFound = dump(otherLocal.port());
  ASSERT_EQ(otherFound.size(), 1U);
  EXPECT_EQ(otherFound.front().inode, inodeOf(*other));
  EXPECT_EQ(otherFound.front().acceptQueue, 2U);
}

INSTANTIATE_TEST_SUITE_P(Loopback, ListenerDiag, testing::Values("127.0.0.1", "::1"),
                         [](const testing::TestParamInfo<const char *> &param) {
                           return std::string(param.param) == "::1" ? "IPv6" : "IPv4";
                         });

/*
 * A reuseport group of 3 on 127.0.0.1 and one listener on [::1] of the same port, each with a
 * different number of connections queued (the kernel's hash spreads them over the group, so
 * the group is checked by its sum): all four are returned, IPv4 first, each by its own inode
 * and cookie; asked for one family, the dump returns that family's only.
 */
TEST(ListenerDiagGroup, ReturnsEveryListenerOfThePortInBothFamilies) {
  std::vector<UniqueFd> group;
  auto first = listenOn("127.0.0.1");
  ASSERT_TRUE(first);
  uint16_t port = localOf(*first).port();
  group.push_back(std::move(*first));
  for (int i = 0; i < 2; ++i) {
    auto more = listenOn("127.0.0.1", port);
    ASSERT_TRUE(more);
    group.push_back(std::move(*more));
  }
  auto v6 = listenOn("::1", port);
  auto clients = connectClients(localOf(group.front()), 7);
  std::vector<UniqueFd> v6Clients;
  if (v6) {
    v6Clients = connectClients(localOf(*v6), 3);
  }

  std::vector<ListenerInfo> found;
  auto queuedIn = [&](int family) {
    uint32_t sum = 0;
    for (const ListenerInfo &listener : found) {
      sum += listener.local.family() == family ? listener.acceptQueue : 0;
    }
    return sum;
  };
  ASSERT_TRUE(eventually([&] {
    found = dump(port);
    return queuedIn(AF_INET) == 7 && queuedIn(AF_INET6) == (v6 ? 3U : 0U);
  })) << "IPv4 "
      << queuedIn(AF_INET) << ", IPv6 " << queuedIn(AF_INET6);
  ASSERT_EQ(found.size(), v6 ? 4U : 3U);
  std::set<uint64_t> inodes;
  std::set<uint64_t> cookies;
  for (const UniqueFd &fd : group) {
    inodes.insert(inodeOf(fd));
    cookies.insert(cookieOf(fd));
  }
  if (v6) {
    inodes.insert(inodeOf(*v6));
    cookies.insert(cookieOf(*v6));
    EXPECT_EQ(found.back().local.family(), AF_INET6) << "IPv4 first";
    EXPECT_EQ(found.back().local.toString(), "[::1]:" + std::to_string(port));
  }
  for (const ListenerInfo &listener : found) {
    EXPECT_EQ(inodes.count(listener.inode), 1U) << listener.local.toString();
    EXPECT_EQ(cookies.count(listener.cookie), 1U) << listener.local.toString();
    EXPECT_EQ(listener.local.port(), port);
  }

  // One family at a time: the same listeners, split by family.
  auto v4Only = dumpTcpListeners(port, AF_INET);
  auto v6Only = dumpTcpListeners(port, AF_INET6);
  ASSERT_TRUE(v4Only && v6Only);
  EXPECT_EQ(v4Only->size(), 3U);
  EXPECT_EQ(v6Only->size(), v6 ? 1U : 0U);
  for (const ListenerInfo &listener : v4Only.value()) {
    EXPECT_EQ(listener.local.family(), AF_INET);
  }
  auto unsupported = dumpTcpListeners(port, AF_UNIX);
  ASSERT_FALSE(unsupported);
  EXPECT_EQ(unsupported.error().code, EAFNOSUPPORT) << unsupported.error().message();
}

/* A port nobody listens on (a connected socket's, which is no listener): an empty answer. */
TEST(ListenerDiagGroup, APortWithoutListenersGivesNone) {
  auto listener = listenOn("127.0.0.1");
  ASSERT_TRUE(listener);
  auto clients = connectClients(localOf(*listener), 1);
  uint16_t clientPort = localOf(clients.front()).port();
  auto found = dumpTcpListeners(clientPort);
  ASSERT_TRUE(found) << found.error().message();
  EXPECT_TRUE(found->empty()) << found->size() << " listeners on port " << clientPort;
}

} // namespace
} // namespace sockdispatch
