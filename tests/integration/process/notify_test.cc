// The systemd readiness protocol, the way systemd speaks it to a Type=notify service: the test
// binds the AF_UNIX datagram socket systemd would, passes it as $NOTIFY_SOCKET to a real
// `attach`, and checks what arrives, from whom, and when.
#include "control/pinned_attachment.h"
#include "core/unique_fd.h"
#include "support/http_client.h"
#include "support/notify_socket.h"
#include "support/process.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <regex>

namespace sockdispatch::test {
namespace {

using Notify = BpfTest;

/*
 * attach with $NOTIFY_SOCKET sends READY=1 (with a STATUS= line naming the address) from the
 * master's pid only once every worker serves: right after it, the scoreboard shows every slot
 * RUNNING and a request is answered 200. It sends nothing before. SIGHUP brings RELOADING=1,
 * then READY=1 once the new generation serves. On SIGTERM it sends STOPPING=1 and exits 0.
 */
TEST_F(Notify, ReadyOnlyWhenEveryWorkerServesReloadingAroundAReloadAndStoppingOnSigterm) {
  NotifySocket socket;
  std::unique_ptr<Process> attach;
  {
    ScopedEnv env("NOTIFY_SOCKET", socket.path());
    attach = Process::start(
        {SOCKDISPATCH_BINARY, "attach", "0", "--bind", "127.0.0.1", "--workers", "2"});
  }
  ASSERT_NE(attach, nullptr);

  auto ready = socket.receive(20s);
  ASSERT_TRUE(ready.has_value()) << "no notification; stderr:\n" << attach->stderrText();
  EXPECT_EQ(ready->sender, attach->pid()) << "READY must come from the main pid";
  std::smatch match;
  static const std::regex format(R"(^READY=1\nSTATUS=listening on 127\.0\.0\.1:(\d+), 2 workers$)");
  ASSERT_TRUE(std::regex_match(ready->text, match, format)) << ready->text;
  auto port = static_cast<uint16_t>(std::stoi(match[1]));

  // At once, with no retry: every slot is RUNNING and the port answers.
  auto pinned = PinnedAttachment::open(port, false);
  ASSERT_TRUE(pinned) << pinned.error().message();
  Scoreboard board = pinned->scoreboard();
  ASSERT_EQ(board.slotCount(), 2U);
  for (uint32_t slot = 0; slot < 2; ++slot) {
    EXPECT_EQ(board.state(slot), SD_SLOT_RUNNING) << "slot " << slot;
  }
  auto reply = fetch(port);
  ASSERT_TRUE(reply.has_value()) << "no answer right after READY=1";
  EXPECT_EQ(reply->status, 200);

  EXPECT_FALSE(socket.receive(200ms).has_value()) << "nothing more while serving";

  // A reload: RELOADING=1 as it begins, READY=1 only once the new generation serves.
  uint64_t generation = pinned->config().generation;
  attach->signal(SIGHUP);
  auto reloading = socket.receive(20s);
  ASSERT_TRUE(reloading.has_value()) << "no RELOADING=1; stderr:\n" << attach->stderrText();
  EXPECT_TRUE(std::regex_match(reloading->text, std::regex(R"(^RELOADING=1\nMONOTONIC_USEC=\d+$)")))
      << reloading->text;
  EXPECT_EQ(reloading->sender, attach->pid());
  auto reloaded = socket.receive(20s);
  ASSERT_TRUE(reloaded.has_value()) << "no READY=1 after the reload";
  EXPECT_EQ(reloaded->text, "READY=1\nSTATUS=reloaded: a new generation serves");
  EXPECT_EQ(pinned->config().generation, generation + 1) << "READY=1 before the new generation";
  uint32_t running = 0;
  for (const auto &slot : pinned->scoreboard().snapshotAll()) {
    running += slot.state == SD_SLOT_RUNNING && slot.generation > 1 ? 1 : 0;
  }
  EXPECT_EQ(running, 2U) << "the new generation's two workers serve";
  reply = fetch(port);
  ASSERT_TRUE(reply.has_value()) << "no answer right after the reload's READY=1";
  EXPECT_EQ(reply->status, 200);

  attach->signal(SIGTERM);
  auto stopping = socket.receive(20s);
  ASSERT_TRUE(stopping.has_value()) << "no STOPPING=1; stderr:\n" << attach->stderrText();
  EXPECT_EQ(stopping->text, "STOPPING=1");
  EXPECT_EQ(stopping->sender, attach->pid());
  EXPECT_EQ(attach->wait(20s), 0) << attach->stderrText();
}

/* Without $NOTIFY_SOCKET (not under systemd) attach runs exactly as before. */
TEST_F(Notify, WithoutNotifySocketNothingChanges) {
  ASSERT_EQ(::getenv("NOTIFY_SOCKET"), nullptr);
  auto attachment = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "1"});
  ASSERT_NE(attachment, nullptr);
  auto reply = fetch(attachment->port());
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(attachment->stop(), 0) << attachment->process().stderrText();
  EXPECT_EQ(attachment->process().stderrText().find("notify systemd"), std::string::npos);
}

/* A $NOTIFY_SOCKET nobody listens on is logged as a warning, never fatal. */
TEST_F(Notify, UnreachableNotifySocketIsNotFatal) {
  std::unique_ptr<Attachment> attachment;
  {
    ScopedEnv env("NOTIFY_SOCKET", "/nonexistent/sockdispatch-notify");
    attachment = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "1"});
  }
  ASSERT_NE(attachment, nullptr);
  auto reply = fetch(attachment->port());
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(attachment->stop(), 0) << attachment->process().stderrText();
  EXPECT_NE(attachment->process().stderrText().find("Failed to notify systemd (READY=1)"),
            std::string::npos)
      << attachment->process().stderrText();
}

} // namespace
} // namespace sockdispatch::test
