// The kernel program's decisions, proven against the C++ reference: a real master with four
// workers on loopback, a deterministic sequence of connections opened one at a time, and for
// each, the worker that answered (its own X-Sockdispatch-Worker header and pid) must be the
// one skip_load predicts from the same scoreboard the program reads. The same checks run in
// line mode (`--mode line`: the workers decide, passing connections down the line), so both
// modes are proven to make the same decisions.
#include "control/pinned_attachment.h"
#include "line/balancer.h"
#include "support/http_client.h"
#include "support/live_attachment.h"
#include "support/process.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>

namespace sockdispatch::test {
namespace {

class Dispatch : public LiveAttachmentTest, public testing::WithParamInterface<const char *> {
public:
  [[nodiscard]] std::vector<std::string> extraArgs() const override {
    return {"--mode", GetParam(), "--policy", "skip_load"};
  }

protected:
  // Waits until every slot's `open` equals what this test holds (workers see closes late).
  bool openCountsSettle(const std::map<uint32_t, uint64_t> &expected) {
    return eventually([&] {
      for (const auto &slot : pinned_->scoreboard().snapshotAll()) {
        auto it = expected.find(slot.slot);
        uint64_t want = it == expected.end() ? 0 : it->second;
        if (slot.open != want) {
          return false;
        }
      }
      return true;
    });
  }
};

/*
 * 60 connections, one at a time. Two in three are kept open (keep-alive) and every fifth
 * step closes the oldest held one, so open counts and skip counters both vary. Before each
 * connection the test predicts the worker from the pinned scoreboard with the C++
 * skip_load; after it, the answering worker must match, and the kernel's `skipped` counters
 * must have moved exactly as the reference moved them.
 */
TEST_P(Dispatch, ChoiceMatchesSkipLoadReference) {
  auto verdictsBefore = pinned_->verdicts();
  ASSERT_TRUE(verdictsBefore);
  std::deque<std::pair<uint32_t, TcpClient>> held;
  std::map<uint32_t, uint64_t> openBySlot;
  std::map<uint32_t, int> servedBySlot;
  constexpr int kConnections = 60;

  for (int i = 0; i < kConnections; ++i) {
    ASSERT_TRUE(openCountsSettle(openBySlot)) << "step " << i;
    auto snapshot = pinned_->scoreboard().snapshotAll();
    ASSERT_EQ(snapshot.size(), 4U);
    auto predicted = snapshot;
    auto expected = skipLoadChoose(predicted);
    ASSERT_TRUE(expected.has_value());

    auto client = TcpClient::connect(attachment_->port());
    ASSERT_TRUE(client.has_value()) << "step " << i;
    ASSERT_TRUE(client->send("GET /?step=" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto reply = client->readReply();
    ASSERT_TRUE(reply.has_value()) << "step " << i;
    ASSERT_EQ(reply->status, 200);
    int slot = reply->workerSlot();
    ASSERT_EQ(slot, static_cast<int>(*expected))
        << "step " << i << ": " << GetParam() << " mode chose " << slot << ", skip_load predicts "
        << *expected;
    std::string pidText = "(pid " + std::to_string(snapshot[*expected].pid) + ")";
    EXPECT_NE(reply->body.find(pidText), std::string::npos) << reply->body;
    auto after = pinned_->scoreboard().snapshotAll();
    for (size_t s = 0; s < after.size(); ++s) {
      EXPECT_EQ(after[s].skipped, predicted[s].skipped) << "step " << i << " slot " << s;
    }
    ++servedBySlot[*expected];

    if (i % 3 != 0) {
      held.emplace_back(*expected, std::move(*client));
      ++openBySlot[*expected];
    }
    if (i % 5 == 4 && !held.empty()) {
      --openBySlot[held.front().first];
      held.pop_front();
    }
  }

  EXPECT_EQ(servedBySlot.size(), 4U) << "every worker took connections";
  auto verdictsAfter = pinned_->verdicts();
  ASSERT_TRUE(verdictsAfter);
  EXPECT_EQ((*verdictsAfter)[SD_VERDICT_SELECTED] - (*verdictsBefore)[SD_VERDICT_SELECTED],
            static_cast<uint64_t>(kConnections));
  EXPECT_EQ((*verdictsAfter)[SD_VERDICT_SELECT_FAILED], 0U);
  EXPECT_EQ((*verdictsAfter)[SD_VERDICT_NO_LIVE_WORKER], 0U);
}

/* The scoreboard mirrors what the workers did: accepted and requests totals per slot. */
TEST_P(Dispatch, ScoreboardCountsAcceptsAndRequests) {
  std::map<int, uint64_t> requests;
  for (int c = 0; c < 8; ++c) {
    auto client = TcpClient::connect(attachment_->port());
    ASSERT_TRUE(client.has_value());
    for (int r = 0; r < 3; ++r) {
      ASSERT_TRUE(client->send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
      auto reply = client->readReply();
      ASSERT_TRUE(reply.has_value());
      ++requests[reply->workerSlot()];
    }
  }
  ASSERT_TRUE(eventually([&] {
    uint64_t total = 0;
    for (const auto &slot : pinned_->scoreboard().snapshotAll()) {
      total += slot.requests;
    }
    return total == 24;
  }));
  uint64_t accepted = 0;
  for (const auto &slot : pinned_->scoreboard().snapshotAll()) {
    EXPECT_EQ(slot.requests, requests[static_cast<int>(slot.slot)]) << "slot " << slot.slot;
    EXPECT_EQ(slot.state, SD_SLOT_RUNNING);
    EXPECT_NE(slot.pid, 0U);
    accepted += slot.accepted;
    EXPECT_EQ(slot.accepted, slot.selected) << "every selected connection was accepted";
  }
  EXPECT_EQ(accepted, 8U);
}

INSTANTIATE_TEST_SUITE_P(Modes, Dispatch, testing::Values("ebpf", "line"),
                         [](const auto &param) { return std::string(param.param); });

} // namespace
} // namespace sockdispatch::test
