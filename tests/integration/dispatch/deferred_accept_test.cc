// TCP_DEFER_ACCEPT on the built-in workers' listeners (--defer-accept): a connection is
// accepted once its request begins to arrive, or after the deferral without one; with 0, at
// the handshake. What the kernel holds is read from /proc/net/tcp: a deferred connection is
// a request socket (SYN_RECV) on the server's side while the client's is established.
#include "support/http_client.h"
#include "support/process.h"
#include "support/worker_state.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <fstream>
#include <optional>
#include <sstream>
#include <string>

namespace sockdispatch::test {
namespace {

constexpr const char *kEstablished = "01";
constexpr const char *kSynReceived = "03";

// The local port of a connected socket.
uint16_t localPort(int fd) {
  sockaddr_in address{};
  socklen_t length = sizeof(address);
  if (::getsockname(fd, reinterpret_cast<sockaddr *>(&address), &length) != 0) {
    return 0;
  }
  return ntohs(address.sin_port);
}

// The state (hex, as /proc/net/tcp shows it) of the server's side of the connection from
// `clientPort` to `port` on loopback; empty when the kernel holds none.
std::string serverSideState(uint16_t port, uint16_t clientPort) {
  std::ifstream table("/proc/net/tcp");
  std::string line;
  std::getline(table, line); // header
  while (std::getline(table, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    auto localColon = local.rfind(':');
    auto remoteColon = remote.rfind(':');
    if (localColon == std::string::npos || remoteColon == std::string::npos) {
      continue;
    }
    if (std::stoul(local.substr(localColon + 1), nullptr, 16) == port &&
        std::stoul(remote.substr(remoteColon + 1), nullptr, 16) == clientPort) {
      return state;
    }
  }
  return {};
}

class DeferredAccept : public BpfTest, public testing::WithParamInterface<const char *> {
protected:
  void start(const std::string &deferAccept) {
    attachment_ = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "2", "--mode",
                                     GetParam(), "--defer-accept", deferAccept});
    ASSERT_NE(attachment_, nullptr);
    // An eBPF worker sets the option on its listener as it starts serving.
    ASSERT_TRUE(eventually([&] { return runningPidsOf(attachment_->port()).size() == 2; }));
  }

  // A client connected (for itself), once the server's side of it is in `state`.
  void connectUntil(const char *state, std::chrono::milliseconds timeout = 5s) {
    client_ = TcpClient::connect(attachment_->port());
    ASSERT_TRUE(client_.has_value());
    clientPort_ = localPort(client_->fd());
    ASSERT_TRUE(eventually([&] { return serverState() == state; }, timeout))
        << "state " << serverState() << ", waited for " << state;
  }

  void expectAnswered() {
    ASSERT_TRUE(client_->send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto reply = client_->readReply();
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->status, 200);
  }

  [[nodiscard]] std::string serverState() const {
    return serverSideState(attachment_->port(), clientPort_);
  }

  std::unique_ptr<Attachment> attachment_;
  std::optional<TcpClient> client_;
  uint16_t clientPort_ = 0;
};

// Connected for the client; for the server, a request socket nobody accepted until the
// request came.
TEST_P(DeferredAccept, AConnectionIsAcceptedOnceItsRequestArrives) {
  start("30");
  connectUntil(kSynReceived);
  expectAnswered();
  EXPECT_EQ(serverState(), kEstablished);
}

TEST_P(DeferredAccept, ZeroAcceptsAtTheHandshake) {
  start("0");
  connectUntil(kEstablished);
  expectAnswered();
}

// A client that connects and stays silent past the deferral is accepted all the same (the
// kernel completes it at its SYN-ACK retransmission), and its late request is answered.
TEST_P(DeferredAccept, ASilentClientIsAcceptedAfterTheDeferral) {
  start("1");
  connectUntil(kEstablished, 10s);
  expectAnswered();
}

INSTANTIATE_TEST_SUITE_P(Modes, DeferredAccept, testing::Values("ebpf", "line"),
                         [](const auto &param) { return std::string(param.param); });

} // namespace
} // namespace sockdispatch::test
