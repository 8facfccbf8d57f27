// The master may die: its workers keep serving what they hold and what is queued for them, and
// a restarted master takes them over without losing a request (docs/design/takeover.md).
#include "control/pinned_attachment.h"
#include "support/http_client.h"
#include "support/load.h"
#include "support/open_loop_load.h"
#include "support/process.h"
#include "support/worker_state.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <set>
#include <string>
#include <vector>

namespace sockdispatch::test {
namespace {

using Takeover = BpfTest;

class TakeoverInMode : public BpfTest, public testing::WithParamInterface<const char *> {};

// SIGKILL, and the wait for it to be gone: the master dies without cleaning up.
void killMaster(Attachment &attachment) {
  attachment.process().signal(SIGKILL);
  ASSERT_TRUE(attachment.process().wait(5s).has_value()) << "the master outlived SIGKILL";
}

// The pid the built-in page names: "... (pid N) ...".
uint32_t answeringPid(const HttpReply &reply) {
  auto at = reply.body.find("(pid ");
  return at == std::string::npos ? 0 : static_cast<uint32_t>(std::stoul(reply.body.substr(at + 5)));
}

/*
 * SIGKILL of the master under an open-loop load of new connections and keep-alive clients: its
 * workers serve on (requests keep completing while no master runs; in line mode they accept on
 * the line's listener, which they keep); 2 s later a new master is started on the same port,
 * takes the group (or the line's listener) over, starts its own workers and retires the old
 * ones, which leave. Zero failed requests over the whole run; afterwards only new workers
 * answer, and the pins name the new master.
 */
TEST_P(TakeoverInMode, KilledMasterIsReplacedUnderLoadWithoutLoss) {
  auto first =
      Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "2", "--mode", GetParam()});
  ASSERT_NE(first, nullptr);
  const uint16_t port = first->port();
  const std::set<uint32_t> oldWorkers = runningPidsOf(port);
  ASSERT_EQ(oldWorkers.size(), 2U);

  OpenLoopLoad arrivals(port, 200, std::chrono::seconds(40));
  Load keepAlive(port, 4, 0, 1000000, std::chrono::seconds(40));
  ASSERT_TRUE(arrivals.waitFor(100)) << "the load did not start";

  ASSERT_NO_FATAL_FAILURE(killMaster(*first));
  // No master: the orphans serve on.
  ASSERT_TRUE(arrivals.waitFor(200)) << "nothing was served while the master was gone";
  ASSERT_TRUE(keepAlive.waitFor(200)) << "keep-alive clients stalled while the master was gone";
  ::sleep(2); // the restart delay of the scenario (systemd's RestartSec)
  for (uint32_t pid : oldWorkers) {
    ASSERT_TRUE(processAlive(pid)) << "worker " << pid << " died with its master";
  }

  auto second = Attachment::start(
      {std::to_string(port), "--bind", "127.0.0.1", "--workers", "2", "--mode", GetParam()});
  ASSERT_NE(second, nullptr);
  EXPECT_TRUE(eventually([&] { return allGone(oldWorkers); }, 20s))
      << "the old workers did not leave\n"
      << second->process().stderrText();
  ASSERT_TRUE(arrivals.waitFor(200));
  ASSERT_TRUE(keepAlive.waitFor(200));
  LoadTally fresh = arrivals.stop();
  LoadTally held = keepAlive.stop();
  EXPECT_EQ(fresh.failures(), 0U) << fresh.describe();
  EXPECT_EQ(held.failures(), 0U) << held.describe();
  EXPECT_GT(fresh.ok, 600U) << fresh.describe();

  auto pinned = PinnedAttachment::open(port, false);
  ASSERT_TRUE(pinned) << pinned.error().message();
  EXPECT_EQ(pinned->config().master_pid, static_cast<uint32_t>(second->process().pid()));
  std::set<uint32_t> newWorkers = runningPids(*pinned);
  EXPECT_EQ(newWorkers.size(), 2U);
  for (int i = 0; i < 6; ++i) {
    auto reply = fetch(port);
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->status, 200);
    EXPECT_EQ(newWorkers.count(answeringPid(*reply)), 1U)
        << "answered by a process that is not a new worker: " << reply->body;
  }
  const std::string log = second->process().stderrText();
  EXPECT_NE(log.find("taking them over"), std::string::npos) << log;
  EXPECT_NE(log.find("took over from master pid " + std::to_string(first->process().pid())),
            std::string::npos)
      << log;
  EXPECT_EQ(second->stop(), 0);
}

/*
 * A master that does not come back: its workers serve for --orphan-timeout, then drain and
 * exit, and the port stops listening, so nothing is orphaned forever. A request made just
 * after the master died is still answered.
 */
TEST_P(TakeoverInMode, OrphansLeaveAfterTheBound) {
  auto first = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "2", "--orphan-timeout",
                                  "1", "--mode", GetParam()});
  ASSERT_NE(first, nullptr);
  const uint16_t port = first->port();
  const std::set<uint32_t> workers = runningPidsOf(port);
  ASSERT_NO_FATAL_FAILURE(killMaster(*first));
  auto reply = fetch(port);
  ASSERT_TRUE(reply.has_value()) << "an orphan stopped serving at once";
  EXPECT_EQ(reply->status, 200);
  EXPECT_TRUE(eventually([&] { return allGone(workers); }, 15s)) << "orphans outlived the bound";
  EXPECT_TRUE(eventually([&] { return !TcpClient::connect(port).has_value(); }, 5s));
  // What they left is stale: the next attach replaces it (and says so for pins).
  auto second = Attachment::start(
      {std::to_string(port), "--bind", "127.0.0.1", "--workers", "1", "--mode", GetParam()});
  ASSERT_NE(second, nullptr);
  if (std::string(GetParam()) == "ebpf") {
    EXPECT_NE(second->process().stderrText().find("removing stale state"), std::string::npos);
  }
  EXPECT_EQ(second->process().stderrText().find("taking them over"), std::string::npos);
  EXPECT_EQ(second->stop(), 0);
}

/*
 * Under the systemd unit the master has neither CAP_SYS_PTRACE nor CAP_KILL, and workers that
 * dropped to another user (--user nobody) can neither be inspected through /proc nor be
 * signalled by it. On the eBPF path they are found all the same (their slots' listeners are
 * alive, which only they hold), the new master joins their group and serves, and they leave
 * by their own --orphan-timeout: no request is lost.
 */
TEST_F(Takeover, WorkersOfAnotherUserAreTakenOverWithoutPtraceOrKill) {
  if (::access("/usr/bin/setpriv", X_OK) != 0) {
    GTEST_SKIP() << "needs setpriv (util-linux) to drop capabilities";
  }
  auto first = Attachment::start(
      {"0", "--bind", "127.0.0.1", "--workers", "2", "--user", "nobody", "--orphan-timeout", "8"});
  ASSERT_NE(first, nullptr);
  const uint16_t port = first->port();
  const std::set<uint32_t> oldWorkers = runningPidsOf(port);
  OpenLoopLoad arrivals(port, 100, std::chrono::seconds(30));
  ASSERT_TRUE(arrivals.waitFor(50));
  ASSERT_NO_FATAL_FAILURE(killMaster(*first));
  ASSERT_TRUE(arrivals.waitFor(50));

  auto second = Attachment::start(
      {std::to_string(port), "--bind", "127.0.0.1", "--workers", "2", "--user", "nobody"}, 20s,
      {"/usr/bin/setpriv", "--bounding-set=-sys_ptrace,-kill", "--"});
  ASSERT_NE(second, nullptr);
  EXPECT_TRUE(eventually([&] { return allGone(oldWorkers); }, 20s))
      << "the old workers did not leave by their bound";
  ASSERT_TRUE(arrivals.waitFor(100));
  LoadTally tally = arrivals.stop();
  EXPECT_EQ(tally.failures(), 0U) << tally.describe();
  EXPECT_NE(second->process().stderrText().find("taking them over"), std::string::npos)
      << second->process().stderrText();
  EXPECT_EQ(second->stop(), 0);
}

/*
 * Orphans are taken over only by an attachment that would join their group: another address,
 * or line mode, is refused with exit 2 and a message that names the workers, and the orphans
 * keep serving.
 */
TEST_F(Takeover, RefusesWhatCannotJoinTheOrphansGroup) {
  auto first = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "1"});
  ASSERT_NE(first, nullptr);
  const std::string port = std::to_string(first->port());
  ASSERT_NO_FATAL_FAILURE(killMaster(*first));

  auto elsewhere = runSockdispatch({"attach", port, "--bind", "::1", "--workers", "1"});
  EXPECT_EQ(elsewhere.code, 2) << elsewhere.err;
  EXPECT_NE(elsewhere.err.find("is still served by 1 worker of master pid " +
                               std::to_string(first->process().pid()) + " on 127.0.0.1:" + port),
            std::string::npos)
      << elsewhere.err;
  auto line = runSockdispatch({"attach", port, "--bind", "127.0.0.1", "--mode", "line"});
  EXPECT_EQ(line.code, 2) << line.err;
  EXPECT_NE(line.err.find("a line mode attachment cannot take over"), std::string::npos)
      << line.err;
  auto reply = fetch(first->port());
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, 200);
  // Released here, not left for the bound.
  auto detached = runSockdispatch({"detach", port});
  EXPECT_EQ(detached.code, 0) << detached.err;
  EXPECT_NE(detached.out.find("asked 1 of its workers, still serving, to finish and leave"),
            std::string::npos)
      << detached.out;
  EXPECT_TRUE(eventually([&] { return !TcpClient::connect(first->port()).has_value(); }, 15s))
      << "the orphan did not leave when detached";
}

INSTANTIATE_TEST_SUITE_P(Modes, TakeoverInMode, testing::Values("ebpf", "line"),
                         [](const auto &param) { return std::string(param.param); });

} // namespace
} // namespace sockdispatch::test
