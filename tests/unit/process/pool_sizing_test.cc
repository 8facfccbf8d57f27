// The dynamic pool's decisions from open connections and size: grow 1, 2, 4, 8 per look while
// busy, never past --max-workers; retire one per look after --pool-idle-seconds idle looks,
// never below --min-workers; a look in between resets both runs.
#include "process/pool_sizing.h"

#include <gtest/gtest.h>

#include <vector>

namespace sockdispatch {
namespace {

AttachOptions poolOptions(int min, int max) {
  AttachOptions options;
  options.minWorkers = min;
  options.maxWorkers = max;
  options.poolBusyConnections = 10;
  options.poolIdleSeconds = 3;
  return options;
}

TEST(PoolSizing, GrowsByDoublingStepsWhileBusyUpToTheMaximum) {
  PoolSizing pool;
  AttachOptions options = poolOptions(1, 20);
  std::vector<int> added;
  int size = 1;
  for (int look = 0; look < 7; ++look) {
    auto decision = pool.decide(/*open=*/1000, size, options);
    EXPECT_FALSE(decision.retire);
    added.push_back(decision.add);
    size += decision.add;
  }
  EXPECT_EQ(added, (std::vector<int>{1, 2, 4, 8, 4, 0, 0})); // capped at 8, then at 20 workers
  EXPECT_EQ(size, 20);
}

TEST(PoolSizing, BusyMeansMoreThanTheThresholdPerWorker) {
  PoolSizing pool;
  AttachOptions options = poolOptions(1, 8);
  EXPECT_EQ(pool.decide(40, 4, options).add, 0); // exactly 10 each: not busy
  EXPECT_EQ(pool.decide(41, 4, options).add, 1);
}

TEST(PoolSizing, AQuietLookResetsTheGrowthStep) {
  PoolSizing pool;
  AttachOptions options = poolOptions(1, 64);
  EXPECT_EQ(pool.decide(1000, 2, options).add, 1);
  EXPECT_EQ(pool.decide(1000, 3, options).add, 2);
  EXPECT_EQ(pool.decide(30, 5, options).add, 0); // neither busy nor idle
  EXPECT_EQ(pool.decide(1000, 5, options).add, 1);
}

TEST(PoolSizing, RetiresOnePerLookAfterTheIdleSecondsDownToTheMinimum) {
  PoolSizing pool;
  AttachOptions options = poolOptions(2, 8);
  int size = 5;
  std::vector<bool> retired;
  for (int look = 0; look < 8; ++look) {
    auto decision = pool.decide(/*open=*/0, size, options);
    EXPECT_EQ(decision.add, 0);
    retired.push_back(decision.retire);
    size -= decision.retire ? 1 : 0;
  }
  EXPECT_EQ(retired, (std::vector<bool>{false, false, true, true, true, false, false, false}));
  EXPECT_EQ(size, 2);
}

TEST(PoolSizing, IdleMeansFewerThanAQuarterOfTheThreshold) {
  PoolSizing pool;
  AttachOptions options = poolOptions(1, 8);
  options.poolIdleSeconds = 1;
  EXPECT_FALSE(pool.decide(10, 4, options).retire); // 10 * 4 >= 10 * 4: not idle
  EXPECT_TRUE(pool.decide(9, 4, options).retire);
}

TEST(PoolSizing, ResetStartsTheIdleCountAgain) {
  PoolSizing pool;
  AttachOptions options = poolOptions(1, 8);
  EXPECT_FALSE(pool.decide(0, 4, options).retire);
  EXPECT_FALSE(pool.decide(0, 4, options).retire);
  pool.reset();
  EXPECT_FALSE(pool.decide(0, 4, options).retire);
  EXPECT_FALSE(pool.decide(0, 4, options).retire);
  EXPECT_TRUE(pool.decide(0, 4, options).retire);
}

} // namespace
} // namespace sockdispatch
