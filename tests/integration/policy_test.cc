// The deterministic policies in the kernel program, each proven against its C++ reference on
// a live attachment. The policy is switched by writing the pinned config map, which is what
// `bpftool map update pinned …/config` does: the next SYN uses it.
#include "balancer.h"
#include "pinned_attachment.h"
#include "support/http_client.h"
#include "support/live_attachment.h"
#include "support/process.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <set>
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

/* least_conn with connections held open: always a slot with the fewest; among those, the
 * first from the slot the connection's ticket (the program's rr_cursor) names. */
TEST_F(Policy, LeastConnSpreadsHeldConnections) {
  setPolicy(SD_POLICY_LEAST_CONN);
  std::vector<int> served(4);
  expectSequence(10, true, [&](const auto &slots, const sd_config &config) {
    uint32_t slot = *leastConnChoose(slots, 0, loadRelaxed(config.rr_cursor));
    ++served[slot];
    return slot;
  });
  std::sort(served.begin(), served.end());
  EXPECT_EQ(served, (std::vector<int>{2, 2, 3, 3})) << "never more than one apart";
}

/* least_conn with short connections on idle workers: every load is a tie, and ties rotate,
 * so each worker takes one connection in turn (not slot 0 every time). */
TEST_F(Policy, LeastConnTiesRotate) {
  setPolicy(SD_POLICY_LEAST_CONN);
  std::vector<uint32_t> order;
  expectSequence(8, false, [&](const auto &slots, const sd_config &config) {
    uint32_t slot = *leastConnChoose(slots, 0, loadRelaxed(config.rr_cursor));
    order.push_back(slot);
    return slot;
  });
  for (size_t i = 4; i < order.size(); ++i) {
    EXPECT_EQ(order[i], order[i - 4]) << "a cycle of the four workers, at " << i;
  }
  EXPECT_EQ(std::set<uint32_t>(order.begin(), order.begin() + 4).size(), 4U) << "each once";
}

// Opens `count` connections one at a time, each answered and closed before the next, and
// counts which worker answered each.
std::vector<int> servedBy(uint16_t port, int count) {
  std::vector<int> served(4);
  for (int i = 0; i < count; ++i) {
    auto reply = fetch(port);
    if (!reply || reply->workerSlot() < 0 || reply->workerSlot() >= 4) {
      ADD_FAILURE() << "connection " << i << " got no answer from a worker";
      return served;
    }
    ++served[static_cast<size_t>(reply->workerSlot())];
  }
  return served;
}

/*
 * p2c on the real kernel, a fixed sample of 240 connections. Slot 0 holds 12 keep-alive
 * connections (opened while the others were draining); the other three hold none. p2c's two
 * samples are two different workers, so slot 0 always meets a less loaded one and is never
 * chosen; the three idle ones share the connections at random: each gets 80 on average, and
 * the bounds below are about five standard deviations (binomial, p = 1/3) either side.
 */
TEST_F(Policy, P2cNeverChoosesTheMostLoadedAndSpreadsTheRest) {
  Scoreboard board = pinned_->scoreboard();
  for (uint32_t slot = 1; slot < 4; ++slot) {
    board.setDraining(slot, true);
  }
  std::vector<TcpClient> held;
  for (int i = 0; i < 12; ++i) {
    auto client = TcpClient::connect(attachment_->port());
    ASSERT_TRUE(client.has_value()) << "held connection " << i;
    ASSERT_TRUE(client->send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto reply = client->readReply();
    ASSERT_TRUE(reply.has_value()) << "held connection " << i;
    ASSERT_EQ(reply->workerSlot(), 0) << "the only undrained slot";
    held.push_back(std::move(*client));
  }
  for (uint32_t slot = 1; slot < 4; ++slot) {
    board.setDraining(slot, false);
  }
  setPolicy(SD_POLICY_P2C);
  auto selectedBefore = board.snapshot(0).selected;
  std::vector<int> served = servedBy(attachment_->port(), 240);
  EXPECT_EQ(served[0], 0) << "p2c chose the worker holding 12 connections";
  EXPECT_EQ(board.snapshot(0).selected, selectedBefore);
  for (size_t slot = 1; slot < 4; ++slot) {
    EXPECT_GE(served[slot], 45) << "slot " << slot;
    EXPECT_LE(served[slot], 115) << "slot " << slot;
  }
}

/*
 * hash: the program selects nothing and the kernel's reuseport hash of the 4-tuple chooses.
 * A fixed sample of 400 connections from changing source ports: every worker gets some
 * (100 on average; the bounds are about five standard deviations, binomial p = 1/4), and
 * every one of them is counted as the hash's verdict, none as the program's selection.
 */
TEST_F(Policy, HashLeavesTheChoiceToTheKernelAndSpreads) {
  setPolicy(SD_POLICY_HASH);
  auto before = pinned_->verdicts();
  ASSERT_TRUE(before) << before.error().message();
  std::vector<int> served = servedBy(attachment_->port(), 400);
  auto after = pinned_->verdicts();
  ASSERT_TRUE(after) << after.error().message();
  for (size_t slot = 0; slot < 4; ++slot) {
    EXPECT_GE(served[slot], 55) << "slot " << slot;
    EXPECT_LE(served[slot], 145) << "slot " << slot;
  }
  EXPECT_EQ((*after)[SD_VERDICT_HASH] - (*before)[SD_VERDICT_HASH], 400U);
  EXPECT_EQ((*after)[SD_VERDICT_SELECTED], (*before)[SD_VERDICT_SELECTED]);
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
