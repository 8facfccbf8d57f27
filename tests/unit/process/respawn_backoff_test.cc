// The master's respawn pacing: immediate after the first quick crash, then doubling from
// 100 ms to 10 s; a long life resets it; logged per crash only at first, then per doubling.
#include "process/respawn_backoff.h"

#include <gtest/gtest.h>

#include <vector>

namespace sockdispatch {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(RespawnBackoff, DoublesFromTheSecondQuickCrashUpToTenSeconds) {
  RespawnBackoff backoff;
  std::vector<long> delays;
  for (int i = 0; i < 12; ++i) {
    delays.push_back(backoff.afterExit(milliseconds(10)).count());
  }
  EXPECT_EQ(delays, (std::vector<long>{0, 100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000, 10000,
                                       10000}));
  EXPECT_EQ(backoff.quickCrashes(), 12);
}

TEST(RespawnBackoff, ALongLifeResetsTheCount) {
  RespawnBackoff backoff;
  for (int i = 0; i < 5; ++i) {
    backoff.afterExit(seconds(1));
  }
  EXPECT_EQ(backoff.afterExit(RespawnBackoff::kQuickCrash).count(), 0);
  EXPECT_EQ(backoff.quickCrashes(), 0);
  EXPECT_EQ(backoff.afterExit(seconds(1)).count(), 0); // a new run starts at once
}

TEST(RespawnBackoff, ResetForgetsTheRun) {
  RespawnBackoff backoff;
  for (int i = 0; i < 4; ++i) {
    backoff.afterExit(milliseconds(1));
  }
  backoff.reset();
  EXPECT_EQ(backoff.afterExit(milliseconds(1)).count(), 0);
}

TEST(RespawnBackoff, LogsTheFirstCrashesThenEachDoubling) {
  RespawnBackoff backoff;
  std::vector<int> perCrash;
  std::vector<int> loop;
  for (int i = 1; i <= 16; ++i) {
    backoff.afterExit(milliseconds(1));
    if (backoff.worthLogging()) {
      perCrash.push_back(i);
    }
    if (backoff.loopWorthLogging()) {
      loop.push_back(i);
    }
  }
  EXPECT_EQ(perCrash, (std::vector<int>{1, 2}));
  EXPECT_EQ(loop, (std::vector<int>{2, 4, 8, 16})); // 1 has no delay
}

} // namespace
} // namespace sockdispatch
