// `sockdispatch detach` and `sockdispatch reload` against real masters: the master's pid comes
// from the pinned config, the request is a signal (SIGQUIT, SIGHUP), and the outcome is read
// back from the process table and the pins.
#include "bpf/pin_dir.h"
#include "control/pinned_attachment.h"
#include "support/http_client.h"
#include "support/process.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <unistd.h>

#include <set>

namespace sockdispatch::test {
namespace {

bool exists(const std::string &path) {
  return ::access(path.c_str(), F_OK) == 0;
}

using DetachCli = BpfTest;
using ReloadCli = BpfTest;

/*
 * detach of a running attachment: the master stops gracefully (a request in flight is
 * answered), exits 0, and its pins are gone when detach returns.
 */
TEST_F(DetachCli, StopsARunningAttachmentGracefully) {
  auto attachment = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "2"});
  ASSERT_NE(attachment, nullptr);
  std::string port = std::to_string(attachment->port());
  auto busy = TcpClient::connect(attachment->port());
  ASSERT_TRUE(busy.has_value());
  ASSERT_TRUE(busy->send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234"));
  ASSERT_TRUE(eventually([&] {
    auto board = PinnedAttachment::open(attachment->port(), false);
    if (!board) {
      return false;
    }
    auto slots = board->scoreboard().snapshotAll();
    return slots[0].open + slots[1].open == 1;
  })) << "the worker never saw the connection";

  auto detach = Process::start({SOCKDISPATCH_BINARY, "detach", port, "--timeout", "20"});
  ASSERT_NE(detach, nullptr);
  EXPECT_FALSE(detach->wait(300ms).has_value()) << "detach waits for the busy request";
  ASSERT_TRUE(busy->send("56789"));
  auto reply = busy->readReply();
  ASSERT_TRUE(reply.has_value()) << "the request in flight was not answered";
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(detach->wait(20s), 0) << detach->stderrText();
  auto line = detach->readLine(1s);
  ASSERT_TRUE(line.has_value());
  EXPECT_NE(line->find("port " + port + " detached: master pid " +
                       std::to_string(attachment->process().pid()) + " stopped"),
            std::string::npos)
      << *line;
  EXPECT_FALSE(exists(pinDirFor(attachment->port()))) << "pins left behind";
  EXPECT_EQ(attachment->process().wait(5s), 0) << attachment->process().stderrText();
  EXPECT_FALSE(TcpClient::connect(attachment->port()).has_value()) << "port still open";
}

/* detach is idempotent: a port that is not attached is reported, exit 0. */
TEST_F(DetachCli, NotAttachedIsNothingToDo) {
  auto done = runSockdispatch({"detach", "9"});
  EXPECT_EQ(done.code, 0) << done.err;
  EXPECT_NE(done.out.find("port 9 is not attached; nothing to do"), std::string::npos) << done.out;
}

/* The pins of a SIGKILLed master are recognised as stale and removed; nothing is signalled. */
TEST_F(DetachCli, StaleStateOfAKilledMasterIsRemoved) {
  auto attachment = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "1"});
  ASSERT_NE(attachment, nullptr);
  uint16_t port = attachment->port();
  pid_t master = attachment->process().pid();
  attachment->process().signal(SIGKILL);
  ASSERT_TRUE(attachment->process().wait(5s).has_value());
  ASSERT_TRUE(exists(pinDirFor(port)));
  auto done = runSockdispatch({"detach", std::to_string(port)});
  EXPECT_EQ(done.code, 0) << done.err;
  EXPECT_NE(done.out.find("master pid " + std::to_string(master) +
                          " was not running; removed its stale state"),
            std::string::npos)
      << done.out;
  EXPECT_FALSE(exists(pinDirFor(port)));
  auto again = runSockdispatch({"detach", std::to_string(port)});
  EXPECT_EQ(again.code, 0);
  EXPECT_NE(again.out.find("not attached"), std::string::npos) << again.out;
}

/*
 * A master pid that some other live process now carries is not the master: detach must not
 * signal it. The pinned master_pid is pointed at a sleeping child of the test, which
 * survives, and the pins are treated as stale.
 */
TEST_F(DetachCli, NeverSignalsAProcessThatDoesNotHoldThePins) {
  auto attachment = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "1"});
  ASSERT_NE(attachment, nullptr);
  auto bystander = Process::start({"/bin/sleep", "30"});
  ASSERT_NE(bystander, nullptr);
  {
    auto pins = PinnedAttachment::open(attachment->port(), true);
    ASSERT_TRUE(pins) << pins.error().message();
    storeRelease<__u32>(pins->scoreboard().config()->master_pid,
                        static_cast<__u32>(bystander->pid()));
  }
  auto done = runSockdispatch({"detach", std::to_string(attachment->port())});
  EXPECT_EQ(done.code, 0) << done.err;
  EXPECT_NE(done.out.find("was not running"), std::string::npos) << done.out;
  EXPECT_FALSE(bystander->wait(200ms).has_value()) << "the bystander was signalled";
  EXPECT_EQ(attachment->stop(), 0);
}

/*
 * reload: SIGHUP to the master, which starts a new generation of workers and bumps
 * config.generation once it serves; reload prints the new generation, and the port keeps
 * answering from the new workers.
 */
TEST_F(ReloadCli, NewGenerationServes) {
  auto attachment = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "2"});
  ASSERT_NE(attachment, nullptr);
  std::string port = std::to_string(attachment->port());
  auto done = runSockdispatch({"reload", port, "--timeout", "20"});
  ASSERT_EQ(done.code, 0) << done.err << attachment->process().stderrText();
  EXPECT_NE(done.out.find("port " + port + " reloaded: generation 1 -> 2"), std::string::npos)
      << done.out;
  auto status = runSockdispatch({"status", port, "--json"});
  ASSERT_EQ(status.code, 0) << status.err;
  auto json = nlohmann::json::parse(status.out);
  EXPECT_EQ(json["generation"], 2);
  std::set<int> running;
  for (const auto &w : json["workers"]) {
    if (w["state"] == "running") {
      running.insert(w["slot"].get<int>());
    }
  }
  EXPECT_EQ(running.size(), 2U) << status.out;
  for (int i = 0; i < 4; ++i) {
    auto reply = fetch(attachment->port());
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->status, 200);
    EXPECT_EQ(running.count(reply->workerSlot()), 1U) << "answered by an old worker";
  }
}

TEST_F(ReloadCli, RefusesStaleAndMissingAttachments) {
  auto missing = runSockdispatch({"reload", "9"});
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.err.find("reload: port 9 is not attached"), std::string::npos) << missing.err;

  auto attachment = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "1"});
  ASSERT_NE(attachment, nullptr);
  uint16_t port = attachment->port();
  attachment->process().signal(SIGKILL);
  ASSERT_TRUE(attachment->process().wait(5s).has_value());
  auto stale = runSockdispatch({"reload", std::to_string(port), "--timeout", "2"});
  EXPECT_EQ(stale.code, 1);
  EXPECT_NE(stale.err.find("is not running"), std::string::npos) << stale.err;
  EXPECT_EQ(removePinDir(pinDirFor(port)).ok(), true);
}

} // namespace
} // namespace sockdispatch::test
