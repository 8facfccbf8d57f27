// A worker frozen (SIGSTOP) in line mode, at the head of the line and in its middle: what the
// line handed it before its input filled is counted `queued` against it, no connection after
// that waits for it, and after SIGCONT it serves what waited, none lost.
#include "support/http_client.h"
#include "support/process.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include <set>
#include <string>
#include <vector>

namespace sockdispatch::test {
namespace {

// How many connections a frozen worker may hold back at most: its input takes 6 messages
// before it is full (a send buffer at the kernel's minimum, line_dispatcher.cc), one
// connection each when they arrive one at a time; 2 more for a batch in flight on either side.
constexpr size_t kMostHeldBack = 8;
constexpr int kConnections = 30;
// A connection not answered within this while its worker is frozen is counted held back.
constexpr auto kAnswerBound = 700ms;

uint64_t queuedIn(uint16_t port, int slot) {
  auto status = runSockdispatch({"status", std::to_string(port), "--json"});
  EXPECT_EQ(status.code, 0) << status.err;
  const nlohmann::json parsed = nlohmann::json::parse(status.out);
  for (const auto &worker : parsed["workers"]) {
    if (worker["slot"] == slot) {
      return worker["queued"].get<uint64_t>();
    }
  }
  ADD_FAILURE() << "no slot " << slot << " in " << status.out;
  return 0;
}

// The pid of the slot's worker once it runs (0 before).
pid_t runningPid(uint16_t port, int slot) {
  auto status = runSockdispatch({"status", std::to_string(port), "--json"});
  EXPECT_EQ(status.code, 0) << status.err;
  const nlohmann::json parsed = nlohmann::json::parse(status.out);
  for (const auto &worker : parsed["workers"]) {
    if (worker["slot"] == slot && worker["state"] == "running") {
      return worker["pid"].get<pid_t>();
    }
  }
  return 0;
}

class FrozenWorker : public BpfTest, public testing::WithParamInterface<int> {};

/*
 * Three line workers, least_conn (the default); the worker of slot GetParam() (0: the head,
 * which the master hands every batch to; 1: the middle, which every connection for slot 2
 * travels through) is frozen with SIGSTOP. 30 clients then connect one after another and send
 * a request. A few are handed to the frozen worker before its input is full (at most 8, all
 * among the first 16): they get no answer while it is frozen, and `status --json` shows exactly
 * that many `queued` for it. Every other one is answered at once, by another worker: the frozen
 * one is passed over. After SIGCONT every held-back connection is answered, none lost, and `queued`
 * is 0.
 */
TEST_P(FrozenWorker, IsPassedOverAndServesWhatWaitedAfterwards) {
  const int victim = GetParam();
  auto attachment =
      Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "3", "--mode", "line"});
  ASSERT_NE(attachment, nullptr);
  const uint16_t port = attachment->port();
  ASSERT_TRUE(eventually([&] {
    return runningPid(port, 0) > 0 && runningPid(port, 1) > 0 && runningPid(port, 2) > 0;
  })) << "the three workers did not all run";
  const pid_t victimPid = runningPid(port, victim);
  ASSERT_TRUE(freeze(victimPid)) << "SIGSTOP of worker " << victim;

  std::vector<TcpClient> heldBack;
  std::vector<int> answeredBy;
  int lastHeldBack = -1;
  for (int i = 0; i < kConnections; ++i) {
    auto client = TcpClient::connect(port);
    ASSERT_TRUE(client) << "connection " << i;
    ASSERT_TRUE(client->send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    auto reply = client->readReply(kAnswerBound);
    if (!reply) {
      heldBack.push_back(std::move(*client));
      lastHeldBack = i;
      continue;
    }
    EXPECT_EQ(reply->status, 200);
    EXPECT_NE(reply->workerSlot(), victim) << "connection " << i << " answered by a frozen worker";
    answeredBy.push_back(reply->workerSlot());
  }
  EXPECT_GE(heldBack.size(), 1U) << "the frozen worker was handed nothing at all";
  EXPECT_LE(heldBack.size(), kMostHeldBack) << "the frozen worker was not passed over";
  // least_conn's ties rotate with the ticket: at most every other connection is handed to (or
  // through) the frozen worker until its input is full; from then on none is.
  EXPECT_LT(lastHeldBack, static_cast<int>(2 * kMostHeldBack))
      << "a connection late in the run still waited for the frozen worker";
  const uint64_t queued = queuedIn(port, victim);
  EXPECT_EQ(queued, heldBack.size()) << "queued counts what waits in the frozen worker's input";
  RecordProperty("held_back", std::to_string(heldBack.size()));
  RecordProperty("queued_while_frozen", std::to_string(queued));
  RecordProperty("answered_by_others", std::to_string(answeredBy.size()));

  ASSERT_EQ(::kill(victimPid, SIGCONT), 0);
  size_t lost = 0;
  for (size_t i = 0; i < heldBack.size(); ++i) {
    auto reply = heldBack[i].readReply(10s);
    lost += reply ? 0 : 1;
    EXPECT_TRUE(reply) << "held-back connection " << i << " was lost";
    if (reply) {
      EXPECT_EQ(reply->status, 200);
    }
  }
  EXPECT_EQ(lost, 0U);
  EXPECT_TRUE(eventually([&] { return queuedIn(port, victim) == 0; }))
      << "queued is back to 0 once the worker read its input";
  auto again = fetch(port);
  ASSERT_TRUE(again) << "the line serves after the thaw";
  EXPECT_EQ(attachment->stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(Line, FrozenWorker, testing::Values(0, 1), [](const auto &param) {
  return param.param == 0 ? std::string("Head") : std::string("Middle");
});

} // namespace
} // namespace sockdispatch::test
