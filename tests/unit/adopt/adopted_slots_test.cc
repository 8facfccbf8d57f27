#include "adopt/adopted_slots.h"

#include <gtest/gtest.h>

namespace sockdispatch {
namespace {

TEST(AdoptedSlots, ListenersTakeTheLowestFreeSlotAndKeepIt) {
  AdoptedSlots slots;
  EXPECT_TRUE(slots.empty());
  EXPECT_EQ(slots.assign(100), 0U);
  EXPECT_EQ(slots.assign(200), 1U);
  EXPECT_EQ(slots.assign(300), 2U);
  EXPECT_EQ(slots.assign(200), 1U) << "a listener already adopted keeps its slot";
  EXPECT_EQ(slots.slotsInUse(), 3U);
  slots.release(1);
  EXPECT_EQ(slots.slotsInUse(), 3U) << "slot 2 still holds one";
  EXPECT_FALSE(slots.inodeOf(1));
  EXPECT_EQ(slots.assign(400), 1U) << "the hole is filled first";
  EXPECT_EQ(slots.slotOf(400), 1U);
  slots.release(2);
  slots.release(1);
  slots.release(0);
  EXPECT_TRUE(slots.empty());
}

TEST(AdoptedSlots, ComparesAgainstAScan) {
  AdoptedSlots slots;
  (void)slots.assign(10);
  (void)slots.assign(20);
  (void)slots.assign(30);
  AdoptedSlots::Changes same = slots.compare({10, 20, 30});
  EXPECT_FALSE(same.any());
  AdoptedSlots::Changes changed = slots.compare({10, 30, 40, 50});
  EXPECT_EQ(changed.joined, (std::vector<uint64_t>{40, 50}));
  EXPECT_EQ(changed.left, (std::vector<uint32_t>{1}));
  AdoptedSlots::Changes gone = slots.compare({});
  EXPECT_EQ(gone.left, (std::vector<uint32_t>{0, 1, 2}));
}

TEST(AdoptedSlots, RefusesAListenerPastTheLastSlot) {
  AdoptedSlots slots;
  for (uint64_t inode = 1; inode <= SD_MAX_WORKERS; ++inode) {
    ASSERT_TRUE(slots.assign(inode));
  }
  EXPECT_FALSE(slots.assign(SD_MAX_WORKERS + 1));
  EXPECT_EQ(slots.slotsInUse(), static_cast<uint32_t>(SD_MAX_WORKERS));
}

} // namespace
} // namespace sockdispatch
