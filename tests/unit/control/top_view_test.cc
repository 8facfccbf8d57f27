// What `sockdispatch top` computes from two samples: rates, sorting, the rows shown.
#include "control/top_view.h"

#include <gtest/gtest.h>

namespace sockdispatch {
namespace {

AttachmentStatus sample(uint64_t accepted0, uint64_t accepted1, uint64_t selected) {
  AttachmentStatus status;
  status.port = 8080;
  status.config.mode = SD_MODE_EBPF;
  status.config.policy = SD_POLICY_LEAST_CONN;
  status.config.master_pid = 4242;
  status.masterAlive = true;
  for (uint32_t slot = 0; slot < 3; ++slot) {
    SlotSnapshot worker;
    worker.slot = slot;
    worker.pid = 5000 + slot;
    worker.state = slot == 2 ? SD_SLOT_EMPTY : SD_SLOT_RUNNING;
    status.workers.push_back(worker);
  }
  status.workers[0].accepted = accepted0;
  status.workers[0].requests = accepted0 * 2;
  status.workers[1].accepted = accepted1;
  status.workers[1].requests = accepted1 * 2;
  status.workers[1].open = 4;
  status.workers[1].queued = 1;
  status.workers[1].draining = 1;
  status.verdicts[SD_VERDICT_SELECTED] = selected;
  return status;
}

TEST(TopView, RatesAreTheDifferenceOverTheTimeBetweenSamples) {
  AttachmentStatus before = sample(100, 200, 300);
  AttachmentStatus now = sample(150, 400, 550);
  TopFrame frame = makeTopFrame(now, &before, 2.0, TopSort::kSlot);
  ASSERT_EQ(frame.rows.size(), 2U) << "an empty slot is not a row";
  EXPECT_DOUBLE_EQ(frame.rows[0].acceptedPerSecond, 25.0);
  EXPECT_DOUBLE_EQ(frame.rows[0].requestsPerSecond, 50.0);
  EXPECT_DOUBLE_EQ(frame.rows[1].acceptedPerSecond, 100.0);
  EXPECT_DOUBLE_EQ(frame.acceptedPerSecond, 125.0);
  EXPECT_EQ(frame.open, 4U);
  EXPECT_EQ(frame.queued, 1U);
  ASSERT_EQ(frame.verdictRates.size(), 1U);
  EXPECT_EQ(frame.verdictRates[0].first, "selected");
  EXPECT_DOUBLE_EQ(frame.verdictRates[0].second, 125.0);
  EXPECT_EQ(frame.mode, "ebpf");
  EXPECT_EQ(frame.policy, "least_conn");
}

TEST(TopView, TheFirstSampleAndAResetCounterShowNoRate) {
  AttachmentStatus now = sample(150, 400, 550);
  TopFrame first = makeTopFrame(now, nullptr, 0, TopSort::kSlot);
  EXPECT_DOUBLE_EQ(first.acceptedPerSecond, 0.0);
  EXPECT_TRUE(first.verdictRates.empty());
  AttachmentStatus before = sample(900, 400, 550);
  TopFrame reset = makeTopFrame(now, &before, 1.0, TopSort::kSlot);
  EXPECT_DOUBLE_EQ(reset.rows[0].acceptedPerSecond, 0.0) << "a new generation's counters";
  // A respawned worker in the slot (another pid): its rate starts afresh too.
  before = sample(100, 200, 300);
  before.workers[0].pid = 1;
  TopFrame respawned = makeTopFrame(now, &before, 1.0, TopSort::kSlot);
  EXPECT_DOUBLE_EQ(respawned.rows[0].acceptedPerSecond, 0.0);
}

TEST(TopView, SortsCycleThroughTheColumns) {
  AttachmentStatus before = sample(100, 200, 300);
  AttachmentStatus now = sample(150, 201, 550);
  EXPECT_EQ(makeTopFrame(now, &before, 1, TopSort::kSlot).rows[0].slot, 0U);
  EXPECT_EQ(makeTopFrame(now, &before, 1, TopSort::kOpen).rows[0].slot, 1U);
  EXPECT_EQ(makeTopFrame(now, &before, 1, TopSort::kAccepted).rows[0].slot, 0U);
  EXPECT_EQ(makeTopFrame(now, &before, 1, TopSort::kRequests).rows[0].slot, 0U);
  TopSort sort = TopSort::kSlot;
  std::vector<std::string> names;
  for (int i = 0; i < 5; ++i) {
    names.emplace_back(sortName(sort));
    sort = nextSort(sort);
  }
  EXPECT_EQ(names,
            (std::vector<std::string>{"slot", "open+queued", "accepted/s", "requests/s", "slot"}));
}

TEST(TopView, PlainTextShowsEveryRowAndMarksDraining) {
  AttachmentStatus before = sample(100, 200, 300);
  AttachmentStatus now = sample(150, 400, 550);
  std::string text =
      formatTopPlain({makeTopFrame(now, &before, 2.0, TopSort::kSlot)}, TopSort::kSlot);
  EXPECT_NE(text.find("port 8080  ebpf  least_conn  master 4242  2 workers  open 4  queued 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("selected 125/s"), std::string::npos) << text;
  EXPECT_NE(text.find("5000 running"), std::string::npos) << text;
  EXPECT_NE(text.find("5001 running*"), std::string::npos) << text;
  EXPECT_EQ(text.find("5002"), std::string::npos) << "no empty slot: " << text;
  EXPECT_NE(formatTopPlain({}, TopSort::kSlot).find("no attachments"), std::string::npos);
}

} // namespace
} // namespace sockdispatch
