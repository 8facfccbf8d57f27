// The end of the line's listener at a stop (userspace/line/handshake_drain.cc) on a real
// loopback listener, with handshakes really in SYN-RECV: clients whose own socket filter drops
// every segment stay in SYN-SENT, so the listener's side of each handshake waits in SYN-RECV
// (as when a client's final ACK is lost) until the filter is taken off and the listener's
// SYN-ACK retransmission (1 s after the first) completes it.
#include "core/listener_diag.h"
#include "core/unique_fd.h"
#include "line/handshake_drain.h"
#include "support/loopback_listener.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

namespace sockdispatch {
namespace {

using namespace std::chrono_literals;

// A connect in progress whose segments from the listener are all dropped while `held`.
UniqueFd heldConnect(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  std::array<sock_filter, 1> dropAll{{BPF_STMT(BPF_RET | BPF_K, 0)}};
  sock_fprog program{static_cast<unsigned short>(dropAll.size()), dropAll.data()};
  EXPECT_EQ(::setsockopt(fd.get(), SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof(program)), 0)
      << "SO_ATTACH_FILTER: " << std::strerror(errno);
  sockaddr_in server{};
  server.sin_family = AF_INET;
  server.sin_port = htons(port);
  server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int connected = ::connect(fd.get(), reinterpret_cast<sockaddr *>(&server), sizeof(server));
  EXPECT_TRUE(connected != 0 && errno == EINPROGRESS) << "connect: " << std::strerror(errno);
  return fd;
}

void release(const UniqueFd &client) {
  int unused = 0;
  EXPECT_EQ(::setsockopt(client.get(), SOL_SOCKET, SO_DETACH_FILTER, &unused, sizeof(unused)), 0)
      << "SO_DETACH_FILTER: " << std::strerror(errno);
}

size_t inProgress(uint16_t port) {
  auto counted = handshakesInProgress(port, AF_INET);
  EXPECT_TRUE(counted) << counted.error().message();
  return counted ? *counted : 0;
}

bool waitFor(const std::function<bool()> &condition) {
  for (int i = 0; i < 200 && !condition(); ++i) {
    ::usleep(5000);
  }
  return condition();
}

void acceptAll(int listener, std::vector<UniqueFd> &into) {
  for (;;) {
    UniqueFd fd(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd) {
      return;
    }
    into.push_back(std::move(fd));
  }
}

/*
 * Three handshakes in SYN-RECV when the drain begins; the clients take the SYN-ACK again 100 ms
 * later. The drain waits for the listener's retransmission to complete them, takes all three,
 * and returns 0 (none left to reset) well before its 5 s bound. A client that begins a
 * handshake during the drain is refused (its SYN dropped): not counted, never completed.
 */
TEST(HandshakeDrain, TakesEveryHandshakeInProgress) {
  test::LoopbackListener listener = test::listenOnLoopback(SOCK_NONBLOCK, 64);
  std::vector<UniqueFd> clients;
  clients.reserve(3);
  for (int i = 0; i < 3; ++i) {
    clients.push_back(heldConnect(listener.port()));
  }
  ASSERT_TRUE(waitFor([&] { return inProgress(listener.port()) == 3; }))
      << "in SYN-RECV: " << inProgress(listener.port());

  UniqueFd late;
  std::thread clientSide([&] {
    std::this_thread::sleep_for(100ms);
    for (const UniqueFd &client : clients) {
      release(client);
    }
    // A new handshake while the drain runs: dropped at the listener.
    late = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_in server{};
    server.sin_family = AF_INET;
    server.sin_port = htons(listener.port());
    server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    (void)::connect(late.get(), reinterpret_cast<sockaddr *>(&server), sizeof(server));
  });
  std::vector<UniqueFd> accepted;
  auto began = std::chrono::steady_clock::now();
  size_t left =
      drainHandshakes(listener.fd.get(), 5000ms, [&] { acceptAll(listener.fd.get(), accepted); });
  auto took = std::chrono::steady_clock::now() - began;
  clientSide.join();

  EXPECT_EQ(left, 0U) << "handshakes left to reset";
  EXPECT_EQ(accepted.size(), 3U) << "every handshake in progress was taken";
  EXPECT_LT(took, 4s) << "the drain ends once none is in progress, not at its bound";
  EXPECT_EQ(inProgress(listener.port()), 0U) << "the late SYN never made a handshake";
  pollfd connected{late.get(), POLLOUT, 0};
  EXPECT_EQ(::poll(&connected, 1, 300), 0) << "the late client was let in";
}

/*
 * Two handshakes that never complete (their clients keep dropping the SYN-ACK): the drain
 * gives up at its bound and says how many are left to be reset.
 */
TEST(HandshakeDrain, GivesUpAtItsBound) {
  test::LoopbackListener listener = test::listenOnLoopback(SOCK_NONBLOCK, 64);
  std::vector<UniqueFd> clients;
  clients.push_back(heldConnect(listener.port()));
  clients.push_back(heldConnect(listener.port()));
  ASSERT_TRUE(waitFor([&] { return inProgress(listener.port()) == 2; }));

  std::vector<UniqueFd> accepted;
  auto began = std::chrono::steady_clock::now();
  size_t left =
      drainHandshakes(listener.fd.get(), 300ms, [&] { acceptAll(listener.fd.get(), accepted); });
  auto took = std::chrono::steady_clock::now() - began;

  EXPECT_EQ(left, 2U);
  EXPECT_TRUE(accepted.empty());
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 2s);
}

} // namespace
} // namespace sockdispatch
