// FirstReadGate: reads are tried while they find requests, given up after misses, and tried
// again now and then so a change in the traffic is noticed.
#include "http/first_read_gate.h"

#include <gtest/gtest.h>

namespace sockdispatch {
namespace {

TEST(FirstReadGate, TriesWhileReadsFindRequests) {
  FirstReadGate gate;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(gate.worthTrying()) << i;
    gate.record(true);
  }
  EXPECT_EQ(gate.score(), FirstReadGate::kMaxScore);
}

TEST(FirstReadGate, GivesUpAfterMissesAndProbesNowAndThen) {
  FirstReadGate gate;
  int tried = 0;
  for (int i = 0; i < 10; ++i) {
    if (gate.worthTrying()) {
      ++tried;
      gate.record(false);
    }
  }
  EXPECT_EQ(gate.score(), 0);
  EXPECT_LE(tried, FirstReadGate::kMaxScore / 4 + 1) << "a miss costs twice a find";
  int probes = 0;
  for (uint32_t i = 0; i < 10 * FirstReadGate::kProbeEvery; ++i) {
    if (gate.worthTrying()) {
      ++probes;
      gate.record(false);
    }
  }
  EXPECT_GE(probes, 9);
  EXPECT_LE(probes, 11);
}

TEST(FirstReadGate, AProbeThatFindsReopensTheGate) {
  FirstReadGate gate;
  while (gate.score() > 0) {
    (void)gate.worthTrying();
    gate.record(false);
  }
  uint32_t waited = 0;
  while (!gate.worthTrying()) {
    ++waited;
    ASSERT_LT(waited, FirstReadGate::kProbeEvery);
  }
  gate.record(true);
  EXPECT_TRUE(gate.worthTrying());
}

} // namespace
} // namespace sockdispatch
