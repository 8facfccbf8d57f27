// A line-mode stop while clients are mid-handshake: the connections whose handshakes are in
// SYN-RECV on the master's listener when the stop begins are completed and served, not reset.
#include "core/unique_fd.h"
#include "support/http_client.h"
#include "support/process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <array>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

namespace sockdispatch::test {
namespace {

constexpr int kClients = 12;

// A client whose SYN-ACKs are dropped by a socket filter on its own socket (a filter runs on
// every segment for a full socket, SYN-SENT included): it stays in SYN-SENT and the server's
// side of its handshake in SYN-RECV, as when a client's final ACK is lost, until the filter is
// taken off; the server's next SYN-ACK retransmission (1 s after the first) completes it.
class HeldHandshake {
public:
  static std::optional<HeldHandshake> start(uint16_t port) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
      ADD_FAILURE() << "socket: " << std::strerror(errno);
      return std::nullopt;
    }
    std::array<sock_filter, 1> dropAll{{BPF_STMT(BPF_RET | BPF_K, 0)}};
    sock_fprog program{static_cast<unsigned short>(dropAll.size()), dropAll.data()};
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof(program)) != 0) {
      ADD_FAILURE() << "SO_ATTACH_FILTER: " << std::strerror(errno);
      return std::nullopt;
    }
    sockaddr_in server{};
    server.sin_family = AF_INET;
    server.sin_port = htons(port);
    server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd.get(), reinterpret_cast<sockaddr *>(&server), sizeof(server)) == 0 ||
        errno != EINPROGRESS) {
      ADD_FAILURE() << "connect did not stay in progress: " << std::strerror(errno);
      return std::nullopt;
    }
    return HeldHandshake(std::move(fd));
  }

  bool release() {
    int unused = 0;
    return ::setsockopt(fd_.get(), SOL_SOCKET, SO_DETACH_FILTER, &unused, sizeof(unused)) == 0;
  }

  // Waits for the handshake to complete, sends a request and reads the answer until the server
  // closes. nullopt: not connected, or no whole answer, within `timeout`.
  std::optional<HttpReply> request(std::chrono::milliseconds timeout, std::string &why) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    if (!waitFor(POLLOUT, deadline)) {
      why = "the handshake did not complete";
      return std::nullopt;
    }
    int error = 0;
    socklen_t length = sizeof(error);
    ::getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0) {
      why = std::string("connect: ") + std::strerror(error);
      return std::nullopt;
    }
    const std::string head = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if (::send(fd_.get(), head.data(), head.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(head.size())) {
      why = std::string("send: ") + std::strerror(errno);
      return std::nullopt;
    }
    std::string buffer;
    for (;;) {
      if (!waitFor(POLLIN, deadline)) {
        why = "no answer; got " + std::to_string(buffer.size()) + " bytes";
        return std::nullopt;
      }
      std::array<char, 4096> chunk{};
      ssize_t got = ::recv(fd_.get(), chunk.data(), chunk.size(), 0);
      if (got < 0 && errno == EAGAIN) {
        continue;
      }
      if (got <= 0) {
        auto reply = takeReply(buffer, true);
        if (!reply) {
          why = got < 0 ? std::string("recv: ") + std::strerror(errno)
                        : "closed after " + std::to_string(buffer.size()) + " bytes";
        }
        return reply;
      }
      buffer.append(chunk.data(), static_cast<size_t>(got));
    }
  }

private:
  explicit HeldHandshake(UniqueFd fd) : fd_(std::move(fd)) {}

  bool waitFor(short events, std::chrono::steady_clock::time_point deadline) {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        return false;
      }
      pollfd ready{fd_.get(), events, 0};
      int n = ::poll(&ready, 1, static_cast<int>(left.count()));
      if (n > 0) {
        return true;
      }
      if (n < 0 && errno != EINTR) {
        return false;
      }
    }
  }

  UniqueFd fd_;
};

// Handshakes in SYN-RECV on local port `port`, as `ss` lists them.
int synRecvOn(uint16_t port) {
  auto listed = runCommand(
      {"/usr/bin/ss", "-Htn", "state", "syn-recv", "sport", "=", ":" + std::to_string(port)}, 5s);
  EXPECT_EQ(listed.code, 0) << listed.err;
  std::istringstream lines(listed.out);
  int count = 0;
  for (std::string line; std::getline(lines, line);) {
    count += line.empty() ? 0 : 1;
  }
  return count;
}

class LineStop : public BpfTest, public testing::WithParamInterface<int> {};

/*
 * Two line workers; 12 clients begin a handshake whose SYN-ACK they do not take (a filter on
 * their own sockets), so `ss` shows 12 handshakes in SYN-RECV on the port. The master is then
 * stopped (SIGTERM, or SIGQUIT as `detach` sends): it says it waits for the 12. The clients take
 * the SYN-ACK again; the server's retransmission completes each handshake, and every client
 * gets a 200 answer: none is reset. The master then exits 0.
 */
TEST_P(LineStop, LosesNoHandshakeInProgress) {
  auto attachment =
      Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "2", "--mode", "line"});
  ASSERT_NE(attachment, nullptr);
  const uint16_t port = attachment->port();

  std::vector<HeldHandshake> clients;
  for (int i = 0; i < kClients; ++i) {
    auto client = HeldHandshake::start(port);
    ASSERT_TRUE(client) << "client " << i;
    clients.push_back(std::move(*client));
  }
  ASSERT_TRUE(eventually([&] { return synRecvOn(port) == kClients; }))
      << "handshakes in SYN-RECV: " << synRecvOn(port);
  RecordProperty("syn_recv_at_stop", std::to_string(kClients));

  ASSERT_EQ(::kill(attachment->process().pid(), GetParam()), 0);
  const std::string waiting = "waiting for " + std::to_string(kClients) + " handshakes";
  EXPECT_TRUE(eventually([&] {
    return attachment->process().stderrText().find(waiting) != std::string::npos;
  })) << "the master did not wait for the handshakes:\n"
      << attachment->process().stderrText();
  for (auto &client : clients) {
    ASSERT_TRUE(client.release()) << "SO_DETACH_FILTER: " << std::strerror(errno);
  }

  int lost = 0;
  for (size_t i = 0; i < clients.size(); ++i) {
    std::string why;
    auto reply = clients[i].request(10s, why);
    if (!reply) {
      ++lost;
      ADD_FAILURE() << "client " << i << " lost: " << why;
      continue;
    }
    EXPECT_EQ(reply->status, 200) << "client " << i;
  }
  EXPECT_EQ(lost, 0);
  RecordProperty("lost", std::to_string(lost));
  EXPECT_EQ(attachment->process().wait(20s), 0);
  EXPECT_EQ(attachment->process().stderrText().find("reset"), std::string::npos);
  if (HasFailure()) {
    ADD_FAILURE() << "the attachment said:\n" << attachment->process().stderrText();
  }
}

INSTANTIATE_TEST_SUITE_P(Signals, LineStop, testing::Values(SIGTERM, SIGQUIT),
                         [](const auto &param) {
                           return param.param == SIGTERM ? std::string("SIGTERM")
                                                         : std::string("SIGQUIT");
                         });

} // namespace
} // namespace sockdispatch::test
