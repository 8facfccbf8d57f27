#include "adopt/seeded_connections.h"

#include <gtest/gtest.h>

namespace sockdispatch {
namespace {

TEST(SeededConnections, EachClosedConnectionIsTakenOffItsSlotOnce) {
  SeededConnections seeded;
  seeded.add(0, 11);
  seeded.add(0, 12);
  seeded.add(2, 21);
  EXPECT_EQ(seeded.perSlot(), (std::map<uint32_t, uint64_t>{{0, 2}, {2, 1}}));
  EXPECT_EQ(seeded.closedSince({11, 12, 21, 99}), (std::map<uint32_t, uint64_t>{}));
  EXPECT_EQ(seeded.closedSince({12}), (std::map<uint32_t, uint64_t>{{0, 1}, {2, 1}}));
  EXPECT_EQ(seeded.closedSince({12}), (std::map<uint32_t, uint64_t>{})) << "counted once";
  EXPECT_EQ(seeded.size(), 1U);
  EXPECT_EQ(seeded.closedSince({}), (std::map<uint32_t, uint64_t>{{0, 1}}));
  EXPECT_TRUE(seeded.empty());
}

TEST(SeededConnections, ASlotThatLeftForgetsItsConnections) {
  SeededConnections seeded;
  seeded.add(1, 5);
  seeded.add(3, 6);
  seeded.dropSlot(1);
  EXPECT_EQ(seeded.perSlot(), (std::map<uint32_t, uint64_t>{{3, 1}}));
  EXPECT_EQ(seeded.closedSince({}), (std::map<uint32_t, uint64_t>{{3, 1}}));
}

} // namespace
} // namespace sockdispatch
