// The host's answer to a balancer in front (control/agent_weight): the weight formula of
// docs/fleet.md case by case, its lines in HAProxy's agent syntax (parsed back as HAProxy
// reads them), keepalived's misc_dynamic statuses, and the load read from scoreboard slots.
#include "control/agent_weight.h"
#include "support/agent_syntax.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sockdispatch {
namespace {

WorkerLoad live(uint64_t load, bool stuck = false) {
  return {true, stuck, load};
}
WorkerLoad notLive() {
  return {false, false, 0};
}

struct WeightCase {
  std::string name;
  HostLoad host;
  HostState state;
  uint32_t weight;
};

class HostWeight : public testing::TestWithParam<WeightCase> {};

TEST_P(HostWeight, FollowsTheDocumentedFormula) {
  HostAnswer answer = hostAnswer(GetParam().host);
  EXPECT_EQ(answer.state, GetParam().state);
  if (answer.state == HostState::up) {
    EXPECT_EQ(answer.weightPercent, GetParam().weight);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, HostWeight,
    testing::Values(
        WeightCase{"IdleWithoutCapacityIsFull",
                   {false, 0, 4, {live(0), live(9), live(3), live(1)}},
                   HostState::up,
                   100},
        WeightCase{
            "LoadCountsAgainstCapacity", {false, 100, 2, {live(40), live(80)}}, HostState::up, 40},
        WeightCase{
            "OverCapacityCountsAsFull", {false, 10, 2, {live(50), live(0)}}, HostState::up, 50},
        WeightCase{"StuckWorkersGiveNothing",
                   {false, 0, 4, {live(0, true), live(0), live(0), live(0, true)}},
                   HostState::up,
                   50},
        WeightCase{"DeadWorkerStillExpected",
                   {false, 0, 4, {live(0), live(0), live(0), notLive()}},
                   HostState::up,
                   75},
        WeightCase{
            "EveryWorkerFullKeepsOnePercent", {false, 5, 2, {live(5), live(7)}}, HostState::up, 1},
        WeightCase{"EveryWorkerStuckIsZero",
                   {false, 0, 2, {live(0, true), live(3, true)}},
                   HostState::up,
                   0},
        WeightCase{"NoLiveWorkerIsDown", {false, 0, 2, {notLive(), notLive()}}, HostState::down, 0},
        WeightCase{"NoWorkerAtAllIsDown", {false, 0, 0, {}}, HostState::down, 0},
        WeightCase{
            "LeavingDrainsWhateverTheLoad", {true, 0, 2, {live(0), live(0)}}, HostState::drain, 0}),
    [](const testing::TestParamInfo<WeightCase> &p) { return p.param.name; });

TEST(AgentLine, UpCarriesReadyAndTheWeight) {
  EXPECT_EQ(agentLine({HostState::up, 60, {}}), "up ready 60%\n");
  EXPECT_EQ(agentLine({HostState::drain, 0, {}}), "drain\n");
  EXPECT_EQ(agentLine({HostState::down, 0, "no live worker"}), "down#no live worker\n");
  EXPECT_EQ(agentLine({HostState::down, 0, {}}), "down\n");
}

TEST(AgentLine, EveryAnswerParsesAsHAProxysSyntax) {
  for (const HostAnswer &answer :
       {HostAnswer{HostState::up, 0, {}}, HostAnswer{HostState::up, 1, {}},
        HostAnswer{HostState::up, 100, {}}, HostAnswer{HostState::drain, 0, {}},
        HostAnswer{HostState::down, 0, "no live worker"}}) {
    std::string line = agentLine(answer);
    std::string problem;
    auto reply = test::parseAgentReply(line, &problem);
    ASSERT_TRUE(reply) << line << ": " << problem;
    switch (answer.state) {
    case HostState::up:
      EXPECT_EQ(reply->operatingState, "up") << line;
      EXPECT_EQ(reply->adminState, "ready") << line << "only the agent can undo its own drain";
      EXPECT_EQ(reply->weightPercent, static_cast<int>(answer.weightPercent)) << line;
      break;
    case HostState::drain:
      EXPECT_EQ(reply->adminState, "drain") << line;
      EXPECT_FALSE(reply->operatingState) << line;
      break;
    case HostState::down:
      EXPECT_EQ(reply->operatingState, "down") << line;
      EXPECT_EQ(reply->description, "no live worker") << line;
      break;
    }
  }
}

TEST(AgentLine, TheSyntaxCheckRefusesWhatHAProxyWouldNot) {
  std::string problem;
  EXPECT_FALSE(test::parseAgentReply("up 60", &problem)) << "no line end";
  EXPECT_FALSE(test::parseAgentReply("up sixty%\n", &problem));
  EXPECT_FALSE(test::parseAgentReply("weight 60%\n", &problem));
}

TEST(Keepalived, MiscDynamicStatuses) {
  EXPECT_EQ(keepalivedStatus({HostState::up, 0, {}}), 2);
  EXPECT_EQ(keepalivedStatus({HostState::up, 60, {}}), 62);
  EXPECT_EQ(keepalivedStatus({HostState::up, 100, {}}), 102);
  EXPECT_EQ(keepalivedStatus({HostState::drain, 0, {}}), 2) << "weight 0: no new connections";
  EXPECT_EQ(keepalivedStatus({HostState::down, 0, "x"}), 1) << "1: the check failed";
}

SlotSnapshot slot(uint32_t index, uint32_t state, uint32_t pid, uint64_t open, uint64_t queued) {
  SlotSnapshot s;
  s.slot = index;
  s.state = state;
  s.pid = pid;
  s.open = open;
  s.queued = queued;
  return s;
}

TEST(HostLoadFrom, ReadsStatesPidsLoadAndTheConfig) {
  sd_config config{};
  config.agent_capacity = 10;
  const uint64_t now = 50'000'000'000ULL;
  std::vector<SlotSnapshot> slots{
      slot(0, SD_SLOT_RUNNING, 100, 2, 3), slot(1, SD_SLOT_FULL, 101, 10, 0),
      slot(2, SD_SLOT_DEAD, 0, 0, 0),      slot(3, SD_SLOT_STOPPING, 103, 1, 0),
      slot(4, SD_SLOT_EMPTY, 0, 0, 0),     slot(5, SD_SLOT_RUNNING, 105, 0, 0),
      slot(6, SD_SLOT_RUNNING, 106, 0, 0), slot(7, SD_SLOT_RUNNING, 107, 0, 0)};
  slots[5].draining = 1;                       // drained by tune: expected, not live
  slots[6].busySince = now - 2'000'000'000ULL; // two seconds in one handler call
  HostLoad host =
      hostLoadFrom(config, slots, now, [](pid_t pid) { return pid == 107; }); // 107 stopped
  EXPECT_FALSE(host.leaving);
  EXPECT_EQ(host.capacity, 10U);
  EXPECT_EQ(host.expected, 6U) << "running, full, dead, drained, stuck, stopped; not stopping "
                                  "or empty";
  ASSERT_EQ(host.workers.size(), 6U);
  EXPECT_TRUE(host.workers[0].live);
  EXPECT_EQ(host.workers[0].load, 5U);
  EXPECT_TRUE(host.workers[1].live);
  EXPECT_FALSE(host.workers[2].live);
  EXPECT_FALSE(host.workers[3].live);
  EXPECT_TRUE(host.workers[4].stuck);
  EXPECT_TRUE(host.workers[5].stuck);
  // free: 0.5 + 0 = 0.5 of 6 workers
  EXPECT_EQ(hostAnswer(host).weightPercent, 8U);

  config.leaving = 1;
  EXPECT_TRUE(hostLoadFrom(config, slots, now, [](pid_t) { return false; }).leaving);
  config.leaving = 0;
  config.stopping = 1;
  EXPECT_TRUE(hostLoadFrom(config, slots, now, [](pid_t) { return false; }).leaving);
}

TEST(ProcessStopped, ReadsTheStateOfAProcess) {
  EXPECT_FALSE(processStopped(::getpid()));
  EXPECT_FALSE(processStopped(0x7ffffff0)) << "no such process: not stopped";
}

} // namespace
} // namespace sockdispatch
