// Slow clients against the real server (`attach 0 --workers 2` with timeouts shortened by
// flag): slowloris connections trickling header lines, and connections that never send a
// request, while fast clients keep being served.
#include "support/http_client.h"
#include "support/process.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <optional>
#include <string>
#include <vector>

namespace sockdispatch::test {
namespace {

using SlowClients = BpfTest;

// Everything a socket still has to give: reads without blocking until EOF, an error, or
// nothing more within `wait`.
std::string drain(int fd, std::chrono::milliseconds wait, bool &closed) {
  std::string out;
  char chunk[4096];
  for (;;) {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(wait.count())) <= 0) {
      return out;
    }
    ssize_t n = ::recv(fd, chunk, sizeof(chunk), MSG_DONTWAIT);
    if (n <= 0) {
      closed = true;
      return out;
    }
    out.append(chunk, static_cast<size_t>(n));
  }
}

/*
 * 30 slowloris connections each send a request line and then one header line every 200 ms,
 * never finishing the head. With --header-timeout 1 every one of them is answered 408 and
 * closed, although bytes kept arriving (the deadline is not moved by reads). Meanwhile fast
 * clients on fresh connections are all served.
 */
TEST_F(SlowClients, SlowlorisGets408WhileFastClientsAreServed) {
  auto server = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "2", "--header-timeout",
                                   "1", "--idle-timeout", "5"});
  ASSERT_NE(server, nullptr);
  constexpr int kSlow = 30;
  std::vector<TcpClient> slow;
  for (int i = 0; i < kSlow; ++i) {
    auto client = TcpClient::connect(server->port());
    ASSERT_TRUE(client.has_value()) << "connect slow client " << i;
    ASSERT_TRUE(client->send("GET / HTTP/1.1\r\nHost: t\r\n")) << "send request line " << i;
    slow.push_back(std::move(*client));
  }
  std::vector<std::string> received(kSlow);
  std::vector<bool> closed(kSlow, false);
  int fastServed = 0;
  int fastTried = 0;
  int stillTrickling = kSlow;
  auto deadline = std::chrono::steady_clock::now() + 8s;
  for (int round = 0; std::chrono::steady_clock::now() < deadline; ++round) {
    int open = 0;
    for (int i = 0; i < kSlow; ++i) {
      bool eof = false;
      received[i] += drain(slow[i].fd(), 0ms, eof);
      closed[i] = closed[i] || eof;
      if (!closed[i] && received[i].empty()) {
        ++open;
        std::string line = "X-Slow-" + std::to_string(round) + ": 1\r\n";
        ::send(slow[i].fd(), line.data(), line.size(), MSG_NOSIGNAL);
      }
    }
    ++fastTried;
    auto reply = fetch(server->port(), "/");
    if (reply && reply->status == 200) {
      ++fastServed;
    }
    stillTrickling = open;
    if (open == 0) {
      break;
    }
    ::usleep(200000);
  }
  // Every slow connection was cut while it was still sending: reads do not move the deadline.
  EXPECT_EQ(stillTrickling, 0) << "slow connections outlived the header timeout while trickling";
  EXPECT_EQ(fastServed, fastTried) << "fast clients were refused during the slowloris";
  EXPECT_GE(fastTried, 3) << "the slow connections were cut before any trickling";
  for (int i = 0; i < kSlow; ++i) {
    bool eof = closed[i];
    received[i] += drain(slow[i].fd(), 2000ms, eof);
    std::string buffer = received[i];
    auto reply = takeReply(buffer, true);
    ASSERT_TRUE(reply.has_value()) << "slow client " << i << " got no answer: " << received[i];
    EXPECT_EQ(reply->status, 408) << "slow client " << i;
    EXPECT_EQ(reply->header("connection"), "close") << "slow client " << i;
    EXPECT_TRUE(eof) << "slow client " << i << " was not closed";
  }
  auto after = fetch(server->port(), "/");
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->status, 200);
}

/*
 * Connections that never send a byte are closed quietly at --idle-timeout (no 408: there is
 * no request to answer); a connection that asked once is kept that long too, then closed.
 */
TEST_F(SlowClients, SilentConnectionsAreClosedAtTheIdleTimeout) {
  auto server =
      Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "2", "--idle-timeout", "1"});
  ASSERT_NE(server, nullptr);
  std::vector<TcpClient> silent;
  for (int i = 0; i < 10; ++i) {
    auto client = TcpClient::connect(server->port());
    ASSERT_TRUE(client.has_value()) << "connect " << i;
    silent.push_back(std::move(*client));
  }
  auto asked = TcpClient::connect(server->port());
  ASSERT_TRUE(asked.has_value());
  ASSERT_TRUE(asked->send("GET / HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto reply = asked->readReply();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, 200);
  for (size_t i = 0; i < silent.size(); ++i) {
    std::string rest = silent[i].readUntilClose(5s);
    EXPECT_TRUE(rest.empty()) << "silent client " << i << " got: " << rest;
    EXPECT_TRUE(silent[i].waitForClose(0ms)) << "silent client " << i << " still open";
  }
  EXPECT_TRUE(asked->waitForClose(5s));
  auto after = fetch(server->port(), "/");
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->status, 200);
}

/* --max-keepalive-requests: the last request of the budget is answered with close. */
TEST_F(SlowClients, KeepAliveBudgetEndsTheConnection) {
  auto server = Attachment::start(
      {"0", "--bind", "127.0.0.1", "--workers", "2", "--max-keepalive-requests", "3"});
  ASSERT_NE(server, nullptr);
  auto client = TcpClient::connect(server->port());
  ASSERT_TRUE(client.has_value());
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(client->send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")) << "request " << i;
    auto reply = client->readReply();
    ASSERT_TRUE(reply.has_value()) << "request " << i;
    EXPECT_EQ(reply->status, 200);
    EXPECT_EQ(reply->header("connection"), i == 3 ? "close" : "") << "request " << i;
  }
  EXPECT_TRUE(client->waitForClose(5s));
}

} // namespace
} // namespace sockdispatch::test
