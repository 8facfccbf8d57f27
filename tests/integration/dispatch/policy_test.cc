// The policies in the kernel program, each proven against its C++ model (the same walks,
// sockdispatch/walk.h, run over the scoreboard) on a live attachment. The policy is switched
// by writing the pinned config map, which is what `bpftool map update pinned …/config` does:
// the next SYN uses it.
#include "control/pinned_attachment.h"
#include "line/balancer.h"
#include "support/http_client.h"
#include "support/live_attachment.h"
#include "support/process.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <optional>
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

/*
 * The kernel equals the model, policy by policy. The deterministic policies (skip_load,
 * least_conn, round_robin, weighted) and hash: 40 connections one at a time, with weights
 * 1, 3, 0, 2; two in three are held open and every fifth step closes the oldest held one,
 * so open counts, skips and tickets all vary. Before each connection the C++ model (the
 * walks of sockdispatch/walk.h run over the pinned scoreboard, with the program's rr_cursor
 * as the ticket) names the slot, or none for hash; the answering worker must be that slot,
 * and every slot's `skipped` and `selected` must have moved exactly as the model moved them.
 * The verdicts count every connection as the model's kind of decision.
 */
class KernelModel : public Policy, public testing::WithParamInterface<sd_policy> {
protected:
  // The model's choice for the next connection, writing `slots` as the program writes its
  // map (skip_load's skips, the keeper's `selected`); nullopt: the kernel's hash chooses.
  static std::optional<uint32_t> modelChoice(sd_policy policy, std::vector<SlotSnapshot> &slots,
                                             const sd_config &config) {
    uint64_t ticket = loadRelaxed(config.rr_cursor);
    std::optional<uint32_t> choice;
    switch (policy) {
    case SD_POLICY_SKIP_LOAD: choice = skipLoadChoose(slots); break;
    case SD_POLICY_LEAST_CONN: choice = leastConnChoose(slots, 0, ticket); break;
    case SD_POLICY_ROUND_ROBIN: choice = roundRobinChoose(slots, ticket); break;
    case SD_POLICY_WEIGHTED: choice = weightedChoose(slots, ticket); break;
    default: return std::nullopt;
    }
    if (choice) {
      slots[*choice].selected += 1;
    }
    return choice;
  }

  bool openCountsSettle(const std::vector<uint64_t> &expected) {
    return eventually([&] {
      for (const auto &slot : pinned_->scoreboard().snapshotAll()) {
        if (slot.open != expected[slot.slot]) {
          return false;
        }
      }
      return true;
    });
  }
};

TEST_P(KernelModel, KernelChoosesWhatTheModelChooses) {
  sd_policy policy = GetParam();
  Scoreboard board = pinned_->scoreboard();
  const uint32_t weights[] = {1, 3, 0, 2};
  for (uint32_t slot = 0; slot < 4; ++slot) {
    board.setWeight(slot, weights[slot]);
  }
  setPolicy(policy);
  auto verdictsBefore = pinned_->verdicts();
  ASSERT_TRUE(verdictsBefore) << verdictsBefore.error().message();
  std::deque<std::pair<uint32_t, TcpClient>> held;
  std::vector<uint64_t> open(4);
  std::set<uint32_t> served;
  constexpr int kConnections = 40;
  for (int i = 0; i < kConnections; ++i) {
    ASSERT_TRUE(openCountsSettle(open)) << "step " << i;
    Scoreboard now = pinned_->scoreboard();
    std::vector<SlotSnapshot> model = now.snapshotAll();
    std::optional<uint32_t> expected = modelChoice(policy, model, *now.config());
    ASSERT_EQ(expected.has_value(), policy != SD_POLICY_HASH) << "step " << i;

    auto client = TcpClient::connect(attachment_->port());
    ASSERT_TRUE(client.has_value()) << "step " << i;
    ASSERT_TRUE(client->send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto reply = client->readReply();
    ASSERT_TRUE(reply.has_value()) << "step " << i;
    int slot = reply->workerSlot();
    ASSERT_GE(slot, 0) << "step " << i;
    ASSERT_LT(slot, 4) << "step " << i;
    if (expected) {
      ASSERT_EQ(slot, static_cast<int>(*expected))
          << "step " << i << ": the kernel chose " << slot << ", the model " << *expected;
    }
    for (const SlotSnapshot &after : pinned_->scoreboard().snapshotAll()) {
      EXPECT_EQ(after.skipped, model[after.slot].skipped) << "step " << i << " slot " << after.slot;
      EXPECT_EQ(after.selected, model[after.slot].selected)
          << "step " << i << " slot " << after.slot;
    }
    served.insert(static_cast<uint32_t>(slot));
    if (i % 3 != 0) {
      held.emplace_back(static_cast<uint32_t>(slot), std::move(*client));
      ++open[static_cast<size_t>(slot)];
    }
    if (i % 5 == 4 && !held.empty()) {
      --open[held.front().first];
      held.pop_front();
    }
  }
  EXPECT_GE(served.size(), 3U) << "the connections spread";

  auto verdictsAfter = pinned_->verdicts();
  ASSERT_TRUE(verdictsAfter) << verdictsAfter.error().message();
  auto delta = [&](sd_verdict verdict) {
    return (*verdictsAfter)[verdict] - (*verdictsBefore)[verdict];
  };
  uint64_t all = kConnections;
  EXPECT_EQ(delta(SD_VERDICT_SELECTED), policy == SD_POLICY_HASH ? 0U : all);
  EXPECT_EQ(delta(SD_VERDICT_HASH), policy == SD_POLICY_HASH ? all : 0U);
  EXPECT_EQ(delta(SD_VERDICT_SELECT_FAILED), 0U);
  EXPECT_EQ(delta(SD_VERDICT_NO_LIVE_WORKER), 0U);
}

INSTANTIATE_TEST_SUITE_P(EveryPolicy, KernelModel,
                         testing::Values(SD_POLICY_SKIP_LOAD, SD_POLICY_LEAST_CONN,
                                         SD_POLICY_ROUND_ROBIN, SD_POLICY_WEIGHTED, SD_POLICY_HASH),
                         [](const testing::TestParamInfo<sd_policy> &p) {
                           switch (p.param) {
                           case SD_POLICY_SKIP_LOAD: return "skip_load";
                           case SD_POLICY_LEAST_CONN: return "least_conn";
                           case SD_POLICY_ROUND_ROBIN: return "round_robin";
                           case SD_POLICY_WEIGHTED: return "weighted";
                           default: return "hash";
                           }
                         });

/*
 * p2c, the kernel against the model. The program's two draws come from
 * bpf_get_prandom_u32(), so the model is every pair of draws, each equally likely: over the
 * live positions a and the b that sd_p2c_second_position maps to the other live - 1, the
 * model's p2cChoose gives each slot a probability. Slots 0, 1, 2, 3 hold 3, 2, 1 and 0
 * keep-alive connections (opened while the others were draining), then 240 short connections
 * follow, each closed before the next. Every choice the kernel makes must be one the model
 * can make (so slot 0, the most loaded, never), and each slot's count must lie within five
 * standard deviations (binomial) of the model's expectation: 0, 40, 80, 120.
 */
TEST_F(Policy, P2cChoosesWhatTheModelChoosesForSomeDraw) {
  Scoreboard board = pinned_->scoreboard();
  std::vector<TcpClient> held;
  for (uint32_t loaded = 0; loaded < 4; ++loaded) {
    for (uint32_t slot = 0; slot < 4; ++slot) {
      board.setDraining(slot, slot != loaded);
    }
    for (uint32_t i = 0; i < 3 - loaded; ++i) {
      auto client = TcpClient::connect(attachment_->port());
      ASSERT_TRUE(client.has_value()) << "held connection on slot " << loaded;
      ASSERT_TRUE(client->send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
      auto reply = client->readReply();
      ASSERT_TRUE(reply.has_value()) << "held connection on slot " << loaded;
      ASSERT_EQ(reply->workerSlot(), static_cast<int>(loaded)) << "the only undrained slot";
      held.push_back(std::move(*client));
    }
  }
  for (uint32_t slot = 0; slot < 4; ++slot) {
    board.setDraining(slot, false);
  }
  ASSERT_TRUE(eventually([&] {
    auto slots = pinned_->scoreboard().snapshotAll();
    return slots[0].open == 3 && slots[1].open == 2 && slots[2].open == 1 && slots[3].open == 0;
  }));

  // The model over every pair of draws, from a scoreboard: each slot's probability.
  constexpr uint32_t kLive = 4;
  auto model = [](const std::vector<SlotSnapshot> &slots) {
    std::vector<double> probability(4);
    for (uint32_t a = 0; a < kLive; ++a) {
      for (uint32_t b = 0; b < kLive - 1; ++b) {
        probability[*p2cChoose(slots, a, b)] += 1.0 / (kLive * (kLive - 1));
      }
    }
    return probability;
  };
  const std::vector<SlotSnapshot> settled = board.snapshotAll();
  std::vector<double> probability = model(settled);
  const double modelShares[] = {0.0, 2.0 / 12, 4.0 / 12, 6.0 / 12};
  for (size_t slot = 0; slot < 4; ++slot) {
    EXPECT_NEAR(probability[slot], modelShares[slot], 1e-9) << "slot " << slot;
  }

  setPolicy(SD_POLICY_P2C);
  constexpr int kConnections = 240;
  std::vector<int> served(4);
  for (int i = 0; i < kConnections; ++i) {
    // Each connection meets the settled loads: the previous one's close has been seen.
    ASSERT_TRUE(eventually([&] {
      auto slots = pinned_->scoreboard().snapshotAll();
      for (size_t slot = 0; slot < 4; ++slot) {
        if (slots[slot].open != settled[slot].open) {
          return false;
        }
      }
      return true;
    })) << "step "
        << i;
    std::vector<double> now = model(pinned_->scoreboard().snapshotAll());
    auto reply = fetch(attachment_->port());
    ASSERT_TRUE(reply.has_value()) << "step " << i;
    int slot = reply->workerSlot();
    ASSERT_GE(slot, 0) << "step " << i;
    ASSERT_LT(slot, 4) << "step " << i;
    EXPECT_GT(now[static_cast<size_t>(slot)], 0.0)
        << "step " << i << ": the kernel chose slot " << slot << ", which no draw of the model"
        << " chooses";
    ++served[static_cast<size_t>(slot)];
  }
  for (size_t slot = 0; slot < 4; ++slot) {
    double expected = kConnections * probability[slot];
    double sigma = std::sqrt(kConnections * probability[slot] * (1 - probability[slot]));
    EXPECT_LE(std::abs(served[slot] - expected), 5 * sigma)
        << "slot " << slot << ": " << served[slot] << " connections, the model expects "
        << expected;
  }
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
