// The deterministic policies in the kernel program, each proven against its C++ reference on
// a live attachment. The policy is switched by writing the pinned config map, which is what
// `bpftool map update pinned …/config` does: the next SYN uses it.
#include "balancer.h"
#include "pinned_attachment.h"
#include "support/http_client.h"
#include "support/live_attachment.h"
#include "support/process.h"

#include <gtest/gtest.h>

#include <functional>
#include <vector>

namespace sockdispatch::test {
namespace {

class Policy : public LiveAttachmentTest {
protected:
  void setPolicy(sd_policy policy) {
    storeRelease<__u32>(pinned_->scoreboard().config()->policy, policy);
  }

  // Opens `count` connections one at a time; before each, `predict` names the slot from the
  // scoreboard and the config; the answering worker must be that slot. `keepOpen` holds the
  // connections (open counts grow), otherwise each is closed and its close awaited.
  void expectSequence(int count, bool keepOpen,
                      const std::function<uint32_t(const std::vector<SlotSnapshot> &,
                                                   const sd_config &)> &predict) {
    std::vector<TcpClient> held;
    for (int i = 0; i < count; ++i) {
      Scoreboard board = pinned_->scoreboard();
      auto snapshot = board.snapshotAll();
      uint32_t expected = predict(snapshot, *board.config());
      auto client = TcpClient::connect(attachment_->port());
      ASSERT_TRUE(client.has_value());
      ASSERT_TRUE(client->send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
      auto reply = client->readReply();
      ASSERT_TRUE(reply.has_value()) << "step " << i;
      ASSERT_EQ(reply->workerSlot(), static_cast<int>(expected)) << "step " << i;
      if (keepOpen) {
        held.push_back(std::move(*client));
      } else {
        client->close();
        ASSERT_TRUE(eventually([&] { return pinned_->scoreboard().snapshot(expected).open == 0; }));
      }
    }
  }
};

/* round_robin walks the live slots in order; a dead slot is left out of the cycle. */
TEST_F(Policy, RoundRobinCyclesInSlotOrder) {
  setPolicy(SD_POLICY_ROUND_ROBIN);
  expectSequence(12, false, [](const auto &slots, const sd_config &config) {
    return *roundRobinChoose(slots, loadRelaxed(config.rr_cursor));
  });
}

/* weighted: weights 1, 3, 0, 2 give shares 1/6, 3/6, none, 2/6, in a fixed order. */
TEST_F(Policy, WeightedFollowsTheWeights) {
  Scoreboard board = pinned_->scoreboard();
  const uint32_t weights[] = {1, 3, 0, 2};
  for (uint32_t slot = 0; slot < 4; ++slot) {
    board.setWeight(slot, weights[slot]);
  }
  setPolicy(SD_POLICY_WEIGHTED);
  std::vector<int> served(4);
  expectSequence(12, false, [&](const auto &slots, const sd_config &config) {
    uint32_t slot = *weightedChoose(slots, loadRelaxed(config.rr_cursor));
    ++served[slot];
    return slot;
  });
  EXPECT_EQ(served, (std::vector<int>{2, 6, 0, 4}));
}

/* least_conn with connections held open: always the slot with the fewest. */
TEST_F(Policy, LeastConnSpreadsHeldConnections) {
  setPolicy(SD_POLICY_LEAST_CONN);
  std::vector<int> served(4);
  expectSequence(10, true, [&](const auto &slots, const sd_config &) {
    uint32_t slot = *leastConnChoose(slots);
    ++served[slot];
    return slot;
  });
  EXPECT_EQ(served, (std::vector<int>{3, 3, 2, 2})) << "fewest open first, lowest slot on ties";
}

/* A draining slot is chosen by no policy. */
TEST_F(Policy, DrainingSlotIsNeverChosen) {
  Scoreboard board = pinned_->scoreboard();
  board.setDraining(1, true);
  for (sd_policy policy : {SD_POLICY_SKIP_LOAD, SD_POLICY_LEAST_CONN, SD_POLICY_ROUND_ROBIN,
                           SD_POLICY_WEIGHTED, SD_POLICY_P2C}) {
    setPolicy(policy);
    for (int i = 0; i < 8; ++i) {
      auto reply = fetch(attachment_->port());
      ASSERT_TRUE(reply.has_value());
      EXPECT_NE(reply->workerSlot(), 1) << "policy " << policy;
    }
  }
}

} // namespace
} // namespace sockdispatch::test
