// One worker's keep-or-pass decision in the line fallback (userspace/line/line_balancer.cc). The
// central property: decisions made worker by worker along the line choose what the C++
// reference of the kernel program (balancer.h) chooses over the same counters, and leave the
// shared counters as it leaves them, so line mode and eBPF mode balance alike.
#include "line/balancer.h"
#include "line/line_balancer.h"

#include <gtest/gtest.h>

#include <array>
#include <optional>
#include <ostream>
#include <vector>

namespace sockdispatch {
namespace {

// A scoreboard in plain memory, as the shared file or the BPF map would hold it.
class Line {
public:
  explicit Line(const std::vector<uint64_t> &open, uint32_t policy = SD_POLICY_SKIP_LOAD) {
    config_.abi_version = SD_ABI_VERSION;
    config_.policy = policy;
    config_.nr_slots = static_cast<uint32_t>(open.size());
    for (size_t i = 0; i < open.size(); ++i) {
      slots_[i].state = SD_SLOT_RUNNING;
      slots_[i].weight = 1;
      slots_[i].open = open[i];
    }
  }

  Scoreboard board() { return Scoreboard(slots_.data(), &config_); }
  sd_slot &slot(uint32_t index) { return slots_[index]; }
  [[nodiscard]] uint32_t size() const { return config_.nr_slots; }

  // One connection enters at the first worker and walks the line until a worker keeps it.
  std::optional<uint32_t> walk(uint64_t ticket = 0, uint64_t maxConnections = 0) {
    Scoreboard view = board();
    uint32_t hops = 0;
    for (uint32_t slot = 0; slot < size(); ++slot) {
      LineStep step{slot, slot + 1 < size(), maxConnections, ticket, hops};
      if (decideOnLine(view, step) == LineVerdict::kKeep) {
        return slot;
      }
      ++hops;
    }
    return std::nullopt;
  }

private:
  std::array<sd_slot, SD_MAX_WORKERS> slots_{};
  sd_config config_{};
};

struct EquivalenceCase {
  const char *name;
  std::vector<uint64_t> open;
  std::vector<uint32_t> draining; // slots marked draining
  std::vector<uint32_t> dead;     // slots not running
};

void PrintTo(const EquivalenceCase &c, std::ostream *os) {
  *os << c.name;
}

class SkipLoadAlongTheLine : public testing::TestWithParam<EquivalenceCase> {};

TEST_P(SkipLoadAlongTheLine, ChoosesWhatTheKernelReferenceChooses) {
  const auto &c = GetParam();
  Line line(c.open);
  for (uint32_t slot : c.draining) {
    line.slot(slot).draining = 1;
  }
  for (uint32_t slot : c.dead) {
    line.slot(slot).state = SD_SLOT_DEAD;
  }
  std::vector<SlotSnapshot> reference = line.board().snapshotAll();
  Scoreboard board = line.board();

  for (int connection = 0; connection < 60; ++connection) {
    std::optional<uint32_t> expected = skipLoadChoose(reference);
    std::optional<uint32_t> chosen = line.walk();
    ASSERT_TRUE(chosen.has_value()) << "the physical end of the line always keeps";
    if (expected) {
      ASSERT_EQ(*chosen, *expected) << "connection " << connection;
    }
    for (uint32_t slot = 0; slot < line.size(); ++slot) {
      ASSERT_EQ(line.slot(slot).skipped, reference[slot].skipped)
          << "skipped of slot " << slot << " after connection " << connection;
    }
    // The keeper opens the connection; every third one some connection closes again.
    board.connectionOpened(*chosen);
    reference[*chosen].open += 1;
    if (connection % 3 == 2) {
      uint32_t closing = static_cast<uint32_t>(connection) % line.size();
      if (reference[closing].open > 0) {
        board.connectionClosed(closing);
        reference[closing].open -= 1;
      }
    }
  }
  uint64_t selected = 0;
  for (uint32_t slot = 0; slot < line.size(); ++slot) {
    selected += line.slot(slot).selected;
  }
  EXPECT_EQ(selected, 60U) << "each connection is counted once, on its keeper";
}

INSTANTIATE_TEST_SUITE_P(
    Table, SkipLoadAlongTheLine,
    testing::Values(EquivalenceCase{"one_idle_worker", {0}, {}, {}},
                    EquivalenceCase{"one_busy_worker", {9}, {}, {}},
                    EquivalenceCase{"two_idle", {0, 0}, {}, {}},
                    EquivalenceCase{"two_first_loaded", {5, 0}, {}, {}},
                    EquivalenceCase{"three_idle", {0, 0, 0}, {}, {}},
                    EquivalenceCase{"three_uneven", {3, 1, 0}, {}, {}},
                    EquivalenceCase{"four_idle", {0, 0, 0, 0}, {}, {}},
                    EquivalenceCase{"four_uneven", {5, 0, 2, 7}, {}, {}},
                    EquivalenceCase{"five_heavy", {10, 20, 30, 40, 50}, {}, {}},
                    EquivalenceCase{"five_first_dead", {0, 4, 4, 1, 0}, {}, {0}},
                    EquivalenceCase{"six_idle", {0, 0, 0, 0, 0, 0}, {}, {}},
                    EquivalenceCase{"six_rising", {0, 1, 2, 3, 4, 5}, {}, {}},
                    EquivalenceCase{"six_falling", {50, 40, 30, 20, 10, 0}, {}, {}},
                    EquivalenceCase{"six_middle_draining", {1, 2, 3, 4, 5, 6}, {2}, {}},
                    EquivalenceCase{"six_last_draining", {7, 0, 7, 0, 7, 0}, {5}, {}},
                    EquivalenceCase{"six_draining_and_dead", {2, 2, 2, 2, 2, 2}, {1, 4}, {3}}),
    [](const testing::TestParamInfo<EquivalenceCase> &p) { return p.param.name; });

TEST(DecideOnLine, FullWorkerPassesButCountsItsVisit) {
  Line line({2, 0, 0});
  Scoreboard board = line.board();
  // Load 2 % (3 - 1) == 0 would keep; two open connections is full.
  EXPECT_EQ(decideOnLine(board, LineStep{0, true, 2, 0, 0}), LineVerdict::kPass);
  EXPECT_EQ(line.slot(0).skipped, 1U);
  EXPECT_EQ(line.slot(0).selected, 0U);
  EXPECT_EQ(decideOnLine(board, LineStep{0, true, 3, 0, 0}), LineVerdict::kPass)
      << "load 3 passes by the heuristic";
  EXPECT_EQ(decideOnLine(board, LineStep{0, true, 0, 0, 0}), LineVerdict::kKeep)
      << "load 4, no limit: keeps";
}

TEST(DecideOnLine, FullLastWorkerKeeps) {
  Line line({0, 8});
  Scoreboard board = line.board();
  EXPECT_EQ(decideOnLine(board, LineStep{1, false, 8, 0, 1}), LineVerdict::kKeep);
  EXPECT_EQ(line.slot(1).selected, 1U);
}

TEST(DecideOnLine, FullLastLiveWorkerKeepsRatherThanPassToADrainingOne) {
  Line line({0, 8, 0});
  line.slot(2).draining = 1;
  Scoreboard board = line.board();
  EXPECT_EQ(decideOnLine(board, LineStep{1, true, 8, 0, 1}), LineVerdict::kKeep);
}

TEST(DecideOnLine, DrainingWorkerPassesWithoutCountingASkip) {
  Line line({0, 0, 0});
  line.slot(1).draining = 1;
  Scoreboard board = line.board();
  EXPECT_EQ(decideOnLine(board, LineStep{1, true, 0, 0, 1}), LineVerdict::kPass);
  EXPECT_EQ(line.slot(1).skipped, 0U);
  line.slot(1).state = SD_SLOT_STOPPING;
  line.slot(1).draining = 0;
  EXPECT_EQ(decideOnLine(board, LineStep{1, true, 0, 0, 1}), LineVerdict::kPass);
}

TEST(DecideOnLine, ThePhysicalEndKeepsEvenOffTheLine) {
  Line line({0, 0, 0});
  line.slot(2).draining = 1;
  Scoreboard board = line.board();
  EXPECT_EQ(decideOnLine(board, LineStep{2, false, 0, 0, 2}), LineVerdict::kKeep)
      << "nothing is dropped: with no successor the worker keeps";
  EXPECT_EQ(line.slot(2).selected, 1U);
}

TEST(DecideOnLine, TooManyHopsKeeps) {
  Line line({1, 0, 0}); // load 1 % (3 - 1) != 0: the heuristic passes
  Scoreboard board = line.board();
  EXPECT_EQ(decideOnLine(board, LineStep{0, true, 0, 0, SD_MAX_WORKERS - 1}), LineVerdict::kPass);
  line.slot(0).skipped = 0;
  EXPECT_EQ(decideOnLine(board, LineStep{0, true, 0, 0, SD_MAX_WORKERS}), LineVerdict::kKeep);
}

TEST(DecideOnLine, HashPolicyFallsBackToSkipLoad) {
  Line line({0, 0, 0, 0}, SD_POLICY_HASH);
  std::vector<uint32_t> chosen;
  for (int i = 0; i < 8; ++i) {
    chosen.push_back(*line.walk());
  }
  EXPECT_EQ(chosen, (std::vector<uint32_t>{0, 1, 2, 0, 3, 1, 0, 3}))
      << "the skip_load sequence of four idle workers (balancer_test)";
}

struct PolicyCase {
  const char *name;
  uint32_t policy;
  std::vector<uint64_t> open;
  std::vector<uint32_t> weight;
  std::vector<uint32_t> draining;
};

void PrintTo(const PolicyCase &c, std::ostream *os) {
  *os << c.name;
}

class PolicyAlongTheLine : public testing::TestWithParam<PolicyCase> {};

TEST_P(PolicyAlongTheLine, ChoosesWhatTheReferenceChooses) {
  const auto &c = GetParam();
  Line line(c.open, c.policy);
  for (size_t i = 0; i < c.weight.size(); ++i) {
    line.slot(static_cast<uint32_t>(i)).weight = c.weight[i];
  }
  for (uint32_t slot : c.draining) {
    line.slot(slot).draining = 1;
  }
  for (uint64_t ticket = 0; ticket < 40; ++ticket) {
    std::vector<SlotSnapshot> slots = line.board().snapshotAll();
    std::optional<uint32_t> expected;
    switch (c.policy) {
    case SD_POLICY_LEAST_CONN: expected = leastConnChoose(slots, 0, ticket); break;
    case SD_POLICY_ROUND_ROBIN: expected = roundRobinChoose(slots, ticket); break;
    case SD_POLICY_WEIGHTED: expected = weightedChoose(slots, ticket); break;
    case SD_POLICY_P2C: {
      auto [a, b] = p2cSamples(ticket);
      expected = p2cChoose(slots, a, b);
      break;
    }
    default: FAIL() << "no reference for policy " << c.policy;
    }
    ASSERT_TRUE(expected.has_value());
    std::optional<uint32_t> chosen = line.walk(ticket);
    ASSERT_EQ(chosen, expected) << "ticket " << ticket;
    line.board().connectionOpened(*chosen);
  }
  for (uint32_t slot = 0; slot < line.size(); ++slot) {
    EXPECT_EQ(line.slot(slot).skipped, 0U) << "only skip_load counts skips";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, PolicyAlongTheLine,
    testing::Values(
        PolicyCase{"least_conn_uneven", SD_POLICY_LEAST_CONN, {4, 1, 3, 1, 9}, {}, {}},
        PolicyCase{"least_conn_draining", SD_POLICY_LEAST_CONN, {4, 0, 3}, {}, {1}},
        PolicyCase{"round_robin_four", SD_POLICY_ROUND_ROBIN, {0, 0, 0, 0}, {}, {}},
        PolicyCase{"round_robin_draining", SD_POLICY_ROUND_ROBIN, {0, 0, 0, 0}, {}, {2}},
        PolicyCase{"weighted_1_3_0", SD_POLICY_WEIGHTED, {0, 0, 0}, {1, 3, 0}, {}},
        PolicyCase{"weighted_2_1_1_4", SD_POLICY_WEIGHTED, {0, 0, 0, 0}, {2, 1, 1, 4}, {}},
        PolicyCase{"p2c_uneven", SD_POLICY_P2C, {5, 0, 9, 2, 7}, {}, {}},
        PolicyCase{"p2c_six_idle", SD_POLICY_P2C, {0, 0, 0, 0, 0, 0}, {}, {}}),
    [](const testing::TestParamInfo<PolicyCase> &p) { return p.param.name; });

TEST(LinePosition, CountsOnlySelectableSlots) {
  Line line({0, 0, 0, 0, 0});
  line.slot(1).draining = 1;
  line.slot(3).state = SD_SLOT_DEAD;
  std::vector<SlotSnapshot> slots = line.board().snapshotAll();
  LinePosition last = linePosition(slots, 4);
  EXPECT_TRUE(last.onLine);
  EXPECT_EQ(last.position, 2U);
  EXPECT_EQ(last.live, 3U);
  EXPECT_FALSE(linePosition(slots, 1).onLine);
  EXPECT_FALSE(linePosition(slots, 3).onLine);
  EXPECT_EQ(linePosition(slots, 2).position, 1U);
}

TEST(P2cSamples, SameForTheSameTicketAndSpreadOut) {
  EXPECT_EQ(p2cSamples(17), p2cSamples(17));
  std::array<int, 4> hits{};
  for (uint64_t ticket = 0; ticket < 400; ++ticket) {
    hits.at(p2cSamples(ticket).first % 4) += 1;
  }
  for (int count : hits) {
    EXPECT_GT(count, 60) << "each of four positions is sampled";
  }
}

} // namespace
} // namespace sockdispatch
