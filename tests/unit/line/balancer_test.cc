// The C++ skip_load reference (userspace/line/balancer.cc) over sockdispatch/policy.h, the same
// step function the BPF program runs.
#include "line/balancer.h"
#include "sockdispatch/policy.h"

#include <gtest/gtest.h>

#include <ostream>
#include <vector>

namespace sockdispatch {
namespace {

std::vector<SlotSnapshot> liveSlots(uint32_t count) {
  std::vector<SlotSnapshot> slots(count);
  for (uint32_t i = 0; i < count; ++i) {
    slots[i].slot = i;
    slots[i].state = SD_SLOT_RUNNING;
  }
  return slots;
}

struct KeepCase {
  const char *name;
  uint64_t load;
  uint32_t live;
  uint32_t position;
  int keeps;
};

// Names the case in test listings instead of dumping its bytes.
void PrintTo(const KeepCase &c, std::ostream *os) {
  *os << c.name;
}

class SkipLoadKeeps : public testing::TestWithParam<KeepCase> {};

TEST_P(SkipLoadKeeps, MatchesTheHeuristic) {
  const auto &c = GetParam();
  EXPECT_EQ(sd_skip_load_keeps(c.load, c.live, c.position), c.keeps);
}

INSTANTIATE_TEST_SUITE_P(
    Table, SkipLoadKeeps,
    testing::Values(KeepCase{"single_worker_always_keeps", 7, 1, 0, 1},
                    KeepCase{"no_live_worker_never_divides_by_zero", 5, 0, 0, 1},
                    KeepCase{"last_of_four_keeps", 5, 4, 3, 1},
                    KeepCase{"load_zero_keeps", 0, 4, 0, 1},
                    KeepCase{"load_multiple_of_n_minus_1_keeps", 6, 4, 1, 1},
                    KeepCase{"load_not_multiple_passes", 4, 4, 1, 0},
                    KeepCase{"two_workers_first_keeps_every_load", 9, 2, 0, 1}),
    [](const testing::TestParamInfo<KeepCase> &p) { return p.param.name; });

TEST(SkipLoadChoose, OneWorkerTakesEverything) {
  auto slots = liveSlots(1);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(skipLoadChoose(slots), 0U);
  }
  EXPECT_EQ(slots[0].skipped, 10U);
}

TEST(SkipLoadChoose, FourIdleWorkersSequence) {
  // Connections close at once (open stays 0): the choice depends on `skipped` alone.
  auto slots = liveSlots(4);
  std::vector<uint32_t> chosen;
  for (int i = 0; i < 8; ++i) {
    chosen.push_back(*skipLoadChoose(slots));
  }
  // w0: load 0 keep | w0: 1 pass, w1: 0 keep | w0: 2 pass, w1: 1 pass, w2: 0 keep |
  // w0: 3 keep | w0: 4 pass, w1: 2 pass, w2: 1 pass, w3 keeps (last) | ...
  EXPECT_EQ(chosen, (std::vector<uint32_t>{0, 1, 2, 0, 3, 1, 0, 3}));
}

TEST(SkipLoadChoose, VisitedWorkersCountASkip) {
  auto slots = liveSlots(3);
  slots[0].open = 1; // load 1 % 2 != 0: passes
  EXPECT_EQ(skipLoadChoose(slots), 1U);
  EXPECT_EQ(slots[0].skipped, 1U);
  EXPECT_EQ(slots[1].skipped, 1U);
  EXPECT_EQ(slots[2].skipped, 0U);
}

TEST(SkipLoadChoose, DeadDrainingAndStartingSlotsAreNotOnTheLine) {
  auto slots = liveSlots(4);
  slots[0].state = SD_SLOT_DEAD;
  slots[1].draining = 1;
  slots[2].state = SD_SLOT_STARTING;
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(skipLoadChoose(slots), 3U); // the only live one is first and last
  }
  EXPECT_EQ(slots[0].skipped + slots[1].skipped + slots[2].skipped, 0U);
}

TEST(SkipLoadChoose, NoLiveWorkerChoosesNothing) {
  auto slots = liveSlots(3);
  for (auto &slot : slots) {
    slot.state = SD_SLOT_DEAD;
  }
  EXPECT_FALSE(skipLoadChoose(slots).has_value());
  std::vector<SlotSnapshot> none;
  EXPECT_FALSE(skipLoadChoose(none).has_value());
}

TEST(SkipLoadChoose, LoadedWorkersPassConnectionsOn) {
  auto slots = liveSlots(3);
  slots[0].open = 3;                    // 3 % 2 == 1: pass
  slots[1].open = 1;                    // 1 % 2 == 1: pass
  EXPECT_EQ(skipLoadChoose(slots), 2U); // last keeps
}

TEST(LeastConnChoose, FewestOpenLowestIndexOnTies) {
  auto slots = liveSlots(4);
  slots[0].open = 3;
  slots[1].open = 1;
  slots[2].open = 1;
  slots[3].open = 2;
  EXPECT_EQ(leastConnChoose(slots), 1U);
  slots[1].draining = 1;
  EXPECT_EQ(leastConnChoose(slots), 2U);
}

/* A worker's listen queue counts as load: a busy worker's `open` stands still while it grows. */
TEST(LeastConnChoose, CountsConnectionsWaitingInTheListenQueue) {
  auto slots = liveSlots(3);
  slots[0].open = 1;
  slots[0].queued = 3;
  slots[1].open = 2;
  slots[2].open = 3;
  EXPECT_EQ(leastConnChoose(slots), 1U);
  EXPECT_EQ(p2cChoose(slots, 0, 0), 1U) << "slot 0 against slot 1";
}

/* A worker inside one handler call for longer than SD_BUSY_NS is chosen last; without a
 * clock (now == 0) business is ignored. */
TEST(LeastConnChoose, AvoidsAWorkerStuckInAHandlerCall) {
  const uint64_t now = 10'000'000'000ULL;
  auto slots = liveSlots(3);
  slots[0].busySince = now - 2 * SD_BUSY_NS; // stuck, with the fewest connections
  slots[1].open = 5;
  slots[2].open = 4;
  slots[2].busySince = now - SD_BUSY_NS / 2; // inside a call, but a short one so far
  EXPECT_EQ(leastConnChoose(slots, now), 2U);
  EXPECT_EQ(leastConnChoose(slots), 0U);
  EXPECT_EQ(p2cChoose(slots, 0, 0, now), 1U) << "slot 0 against slot 1";
  slots[1].busySince = now - 3 * SD_BUSY_NS;
  slots[2].busySince = now - 3 * SD_BUSY_NS;
  EXPECT_EQ(leastConnChoose(slots, now), 0U) << "all stuck: the fewest connections again";
}

TEST(RoundRobinChoose, CyclesOverLiveSlots) {
  auto slots = liveSlots(4);
  slots[2].state = SD_SLOT_DEAD;
  std::vector<uint32_t> chosen;
  for (uint64_t ticket = 0; ticket < 6; ++ticket) {
    chosen.push_back(*roundRobinChoose(slots, ticket));
  }
  EXPECT_EQ(chosen, (std::vector<uint32_t>{0, 1, 3, 0, 1, 3}));
}

TEST(WeightedChoose, SharesFollowWeights) {
  auto slots = liveSlots(3);
  slots[0].weight = 1;
  slots[1].weight = 3;
  slots[2].weight = 0; // no share
  std::vector<uint32_t> chosen;
  for (uint64_t ticket = 0; ticket < 8; ++ticket) {
    chosen.push_back(*weightedChoose(slots, ticket));
  }
  EXPECT_EQ(chosen, (std::vector<uint32_t>{0, 1, 1, 1, 0, 1, 1, 1}));
  for (auto &slot : slots) {
    slot.weight = 0;
  }
  EXPECT_EQ(weightedChoose(slots, 2), 2U) << "all weights 0: round_robin";
}

TEST(P2cChoose, FewerOpenWinsFirstOnTies) {
  auto slots = liveSlots(4);
  slots[1].open = 5;
  slots[3].open = 2;
  EXPECT_EQ(p2cChoose(slots, 1, 2), 3U) << "slot 1 against slot 3";
  EXPECT_EQ(p2cChoose(slots, 3, 1), 3U) << "slot 3 against slot 1";
  EXPECT_EQ(p2cChoose(slots, 0, 1), 0U) << "slot 0 against slot 2: a tie";
  EXPECT_EQ(p2cChoose(slots, 6, 5), 2U) << "slot 2 against slot 3: draws taken modulo";
  std::vector<SlotSnapshot> none;
  EXPECT_FALSE(p2cChoose(none, 0, 1).has_value());
}

/* The two samples are two different live workers, so p2c never compares a worker with itself,
 * and the most loaded of several workers is never chosen. */
TEST(P2cChoose, SamplesTwoDistinctWorkers) {
  for (uint32_t live = 2; live <= 5; ++live) {
    for (uint32_t first = 0; first < live; ++first) {
      std::vector<int> drawn(live);
      for (uint32_t draw = 0; draw < 3 * live; ++draw) {
        uint32_t second = sd_p2c_second_position(first, draw, live);
        ASSERT_LT(second, live);
        ASSERT_NE(second, first) << "live " << live << " draw " << draw;
        ++drawn[second];
      }
      for (uint32_t position = 0; position < live; ++position) {
        EXPECT_EQ(drawn[position] > 0, position != first) << "every other position is drawn";
      }
    }
  }
  EXPECT_EQ(sd_p2c_second_position(0, 7, 1), 0U) << "one live worker: itself";
  const uint64_t now = 10'000'000'000ULL;
  auto slots = liveSlots(4);
  slots[2].busySince = now - 2 * SD_BUSY_NS;
  for (uint32_t a = 0; a < 8; ++a) {
    for (uint32_t b = 0; b < 8; ++b) {
      EXPECT_NE(p2cChoose(slots, a, b, now), 2U) << "samples " << a << ", " << b;
    }
  }
}

} // namespace
} // namespace sockdispatch
