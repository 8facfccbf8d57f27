// Nothing accepted by the kernel is lost when a worker dies: the master keeps every
// listener open, so a killed worker's accept queue waits for its respawn.
#include "control/pinned_attachment.h"
#include "support/http_client.h"
#include "support/process.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <vector>

namespace sockdispatch::test {
namespace {

using Crash = BpfTest;

/*
 * Four workers are frozen with SIGSTOP, then 24 clients connect and send a request each:
 * the kernel program steers every SYN to a slot and the handshakes complete into that
 * slot's accept queue. The worker holding the most queued connections is SIGKILLed and the
 * others resumed. Every client must get a 200; the ones queued for the victim are answered
 * by the worker respawned into the same slot (a new pid).
 */
TEST_F(Crash, KilledWorkersQueuedConnectionsAreAllAnswered) {
  auto attachment = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "4"});
  ASSERT_NE(attachment, nullptr);
  auto pinned = PinnedAttachment::open(attachment->port(), false);
  ASSERT_TRUE(pinned) << pinned.error().message();
  auto before = pinned->scoreboard().snapshotAll();
  ASSERT_EQ(before.size(), 4U);
  for (const auto &slot : before) {
    ASSERT_TRUE(freeze(static_cast<pid_t>(slot.pid))) << "SIGSTOP slot " << slot.slot;
  }

  constexpr int kClients = 24;
  std::vector<TcpClient> clients;
  for (int i = 0; i < kClients; ++i) {
    auto client = TcpClient::connect(attachment->port());
    ASSERT_TRUE(client.has_value()) << "connect " << i << " (queued in the kernel)";
    ASSERT_TRUE(client->send("GET /?c=" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n"));
    clients.push_back(std::move(*client));
  }
  auto queued = pinned->scoreboard().snapshotAll();
  uint32_t victim = 0;
  for (uint32_t s = 0; s < 4; ++s) {
    if (queued[s].selected - before[s].selected >
        queued[victim].selected - before[victim].selected) {
      victim = s;
    }
  }
  uint64_t victimQueue = queued[victim].selected - before[victim].selected;
  ASSERT_GT(victimQueue, 0U);
  ASSERT_EQ(queued[victim].accepted, before[victim].accepted) << "the victim accepted nothing";

  pid_t victimPid = static_cast<pid_t>(before[victim].pid);
  ASSERT_EQ(::kill(victimPid, SIGKILL), 0);
  for (const auto &slot : before) {
    if (slot.slot != victim) {
      ASSERT_EQ(::kill(static_cast<pid_t>(slot.pid), SIGCONT), 0);
    }
  }

  int answered = 0;
  uint64_t answeredByRespawn = 0;
  for (auto &client : clients) {
    auto reply = client.readReply(10s);
    ASSERT_TRUE(reply.has_value()) << "a queued connection was lost";
    EXPECT_EQ(reply->status, 200);
    ++answered;
    if (reply->workerSlot() == static_cast<int>(victim)) {
      EXPECT_EQ(reply->body.find("(pid " + std::to_string(victimPid) + ")"), std::string::npos)
          << "answered by the killed process?";
      ++answeredByRespawn;
    }
  }
  EXPECT_EQ(answered, kClients);
  EXPECT_EQ(answeredByRespawn, victimQueue);
  auto after = pinned->scoreboard().snapshot(victim);
  EXPECT_EQ(after.respawns, before[victim].respawns + 1);
  EXPECT_NE(after.pid, static_cast<uint32_t>(victimPid));
  EXPECT_EQ(after.state, SD_SLOT_RUNNING);
}

} // namespace
} // namespace sockdispatch::test
