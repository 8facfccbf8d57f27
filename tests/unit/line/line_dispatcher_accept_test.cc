// The line master's accept (userspace/line/line_dispatcher.cc) under faults injected through
// the SystemCalls seam into a real loopback listener: out of descriptors or memory, it stops
// accepting for 100 ms (the connections wait in the backlog), then accepts the one that
// waited and hands it to the head of the line; the fault is logged once per interval.
#include "line/line_dispatcher.h"
#include "support/fake_system_calls.h"
#include "support/log_capture.h"
#include "support/loopback_listener.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

namespace sockdispatch {
namespace {

using testing::HasSubstr;
using namespace std::chrono_literals;

constexpr auto kPause = 100ms;

class LineDispatcherAcceptTest : public testing::Test {
protected:
  void SetUp() override {
    ASSERT_NE(base_, nullptr) << "event_base_new";
    test::LoopbackListener listener = test::listenOnLoopback(SOCK_NONBLOCK);
    ASSERT_TRUE(listener.fd);
    address_ = listener.address;
    LineDispatcher::Hooks hooks;
    // Asked for only when a batch is about to be sent: the loop ends after this turn.
    hooks.head = [this]() -> std::optional<uint32_t> {
      event_base_loopbreak(base_.get());
      return 0;
    };
    hooks.lineFull = [] { return false; };
    config_.nr_slots = 1;
    slots_[0].state = SD_SLOT_RUNNING;
    slots_[0].weight = 1;
    dispatcher_ = std::make_unique<LineDispatcher>(
        base_.get(), std::move(listener.fd), kMaxFdsPerMessage, Scoreboard(slots_.data(), &config_),
        hooks, systemChannelSyscalls(), calls_);
    ASSERT_TRUE(dispatcher_->ensureChannel(0)) << "the head's input";
    ASSERT_TRUE(dispatcher_->start()) << "start";
  }

  void connectClient() {
    clients_.push_back(test::connectTo(address_));
    ASSERT_TRUE(clients_.back());
  }

  // Runs the loop until a batch is handed to the head, at most 5 s.
  void runUntilHandedOver() {
    timeval bound{5, 0};
    event_base_loopexit(base_.get(), &bound);
    event_base_dispatch(base_.get());
  }

  test::LogCapture log_;
  test::FakeSystemCalls calls_;
  std::array<sd_slot, SD_MAX_WORKERS> slots_{}; // the head's queued count
  sd_config config_{};
  EventBasePtr base_{event_base_new()};
  std::unique_ptr<LineDispatcher> dispatcher_;
  sockaddr_in address_{};
  std::vector<UniqueFd> clients_;
};

class LineDispatcherAcceptFault : public LineDispatcherAcceptTest,
                                  public testing::WithParamInterface<int> {};

TEST_P(LineDispatcherAcceptFault, PausesThenHandsTheWaitingConnectionToTheLine) {
  const int code = GetParam();
  calls_.acceptFaults = {code};
  connectClient();
  runUntilHandedOver();

  EXPECT_EQ(dispatcher_->dispatched(), 1U) << "the connection reached the head of the line";
  ASSERT_GE(calls_.acceptTimes.size(), 2U);
  EXPECT_GE(calls_.acceptTimes[1] - calls_.acceptTimes[0], kPause - 5ms)
      << "no accept during the pause: a pause, not a spin";
  auto lines = log_.linesWith("Failed to accept on the line's listener");
  ASSERT_EQ(lines.size(), 1U);
  EXPECT_THAT(lines[0],
              HasSubstr(std::string(std::strerror(code)) + "; pausing accepts for 100 ms"));
}

INSTANTIATE_TEST_SUITE_P(OutOfResources, LineDispatcherAcceptFault,
                         testing::Values(EMFILE, ENFILE, ENOBUFS, ENOMEM), test::errnoName);

TEST_F(LineDispatcherAcceptTest, WhatWasAcceptedBeforeTheFaultIsHandedOverAtOnce) {
  calls_.acceptFaults = {0, EMFILE}; // the first connection accepted, the second call fails
  connectClient();
  connectClient();
  runUntilHandedOver();
  EXPECT_EQ(dispatcher_->dispatched(), 1U) << "the batch of one goes before the pause";
  EXPECT_EQ(calls_.acceptTimes.size(), 2U) << "and nothing more is tried meanwhile";

  runUntilHandedOver();
  EXPECT_EQ(dispatcher_->dispatched(), 2U) << "the second connection, after the pause";
  ASSERT_GE(calls_.acceptTimes.size(), 3U);
  EXPECT_GE(calls_.acceptTimes[2] - calls_.acceptTimes[1], kPause - 5ms);
}

TEST_F(LineDispatcherAcceptTest, ARepeatedFaultIsLoggedOncePerInterval) {
  calls_.acceptFaults = {EMFILE, ENFILE, EMFILE};
  connectClient();
  runUntilHandedOver();
  EXPECT_EQ(dispatcher_->dispatched(), 1U);
  EXPECT_EQ(log_.linesWith("Failed to accept").size(), 1U) << "three faults, one line";

  calls_.clock += kFaultLogInterval;
  calls_.acceptFaults = {EMFILE};
  connectClient();
  runUntilHandedOver();
  EXPECT_EQ(dispatcher_->dispatched(), 2U);
  auto lines = log_.linesWith("Failed to accept");
  ASSERT_EQ(lines.size(), 2U);
  EXPECT_THAT(lines[1], HasSubstr("(2 more since the last report)"));
}

} // namespace
} // namespace sockdispatch
