// A line stop orders the workers' exits: a worker leaves only after every worker before it on
// the line has left, since one of them may still be passing it connections
// (docs/design/line.md, "Exits in line order").
#include "control/pinned_attachment.h"
#include "support/http_client.h"
#include "support/process.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <string>

namespace sockdispatch::test {
namespace {

// Whether `pidfd`'s process exits within `window`.
bool exitsWithin(const UniqueFd &pidfd, std::chrono::milliseconds window) {
  pollfd exited{pidfd.get(), POLLIN, 0};
  return ::poll(&exited, 1, static_cast<int>(window.count())) > 0;
}

UniqueFd openPidfd(uint32_t pid) {
  return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0)));
}

class LineExitOrder : public BpfTest, public testing::WithParamInterface<int> {};

/*
 * Two line workers; worker 1 is drained, so a half-sent request lands on worker 0. The master
 * is stopped: worker 1 has no connection, but it stays while worker 0 (before it) serves the
 * request in flight. The request is completed and answered with Connection: close; worker 0
 * leaves, then worker 1, and the master exits 0 without answering anything 503.
 */
TEST_P(LineExitOrder, ALaterWorkerLeavesOnlyAfterTheOnesBeforeIt) {
  auto attachment = Attachment::start(
      {"0", "--bind", "127.0.0.1", "--workers", "2", "--mode", "line", "--shutdown-timeout", "20"});
  ASSERT_NE(attachment, nullptr);
  const uint16_t port = attachment->port();
  auto pinned = PinnedAttachment::open(port, false);
  ASSERT_TRUE(pinned) << pinned.error().message();
  auto drained = runSockdispatch({"tune", std::to_string(port), "--drain", "1"});
  ASSERT_EQ(drained.code, 0) << drained.err;

  auto halfSent = TcpClient::connect(port);
  ASSERT_TRUE(halfSent);
  ASSERT_TRUE(halfSent->send("GET /?half HTTP/1.1\r\nHost: x\r\n"));
  ASSERT_TRUE(eventually([&] { return pinned->scoreboard().snapshot(0).open == 1; }))
      << "worker 0 did not take the connection";
  UniqueFd first = openPidfd(pinned->scoreboard().snapshot(0).pid);
  UniqueFd second = openPidfd(pinned->scoreboard().snapshot(1).pid);
  ASSERT_TRUE(first && second) << "pidfd_open: " << std::strerror(errno);

  attachment->process().signal(GetParam());
  EXPECT_FALSE(exitsWithin(second, 500ms))
      << "worker 1 left while worker 0, before it on the line, still served";
  ASSERT_TRUE(halfSent->send("\r\n"));
  auto completed = halfSent->readReply();
  ASSERT_TRUE(completed) << "the request in flight was not answered";
  EXPECT_EQ(completed->status, 200);
  EXPECT_EQ(completed->header("connection"), "close");
  EXPECT_TRUE(exitsWithin(first, 10s)) << "worker 0 did not leave";
  EXPECT_TRUE(exitsWithin(second, 10s)) << "worker 1 did not leave after worker 0";
  EXPECT_EQ(attachment->process().wait(10s), 0);
  const std::string said = attachment->process().stderrText();
  // The master's warning when it answers a leftover connection itself (not "503" alone: the
  // log names the master's pid, which may hold those digits).
  EXPECT_EQ(said.find("answered 503"), std::string::npos) << said;
  EXPECT_EQ(said.find("shutdown timeout"), std::string::npos) << said;
}

INSTANTIATE_TEST_SUITE_P(Signals, LineExitOrder, testing::Values(SIGTERM, SIGQUIT),
                         [](const auto &param) {
                           return param.param == SIGTERM ? std::string("SIGTERM")
                                                         : std::string("SIGQUIT");
                         });

} // namespace
} // namespace sockdispatch::test
