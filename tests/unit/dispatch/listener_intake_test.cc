// The eBPF worker's intake (userspace/dispatch/listener_intake.cc) under accept faults,
// injected through the SystemCalls seam into a real loopback listener: out of descriptors or
// memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), it pauses (counting itself full) for 100 ms
// rather than spin, then accepts the connection that waited; the fault is logged once per
// interval with the count of repeats held back, never once per failed call.
#include "dispatch/listener_intake.h"
#include "support/fake_system_calls.h"
#include "support/log_capture.h"
#include "support/loopback_listener.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <string>
#include <vector>

namespace sockdispatch {
namespace {

using testing::ElementsAre;
using testing::HasSubstr;
using namespace std::chrono_literals;

constexpr uint32_t kSlot = 3;
constexpr auto kPause = 100ms;

// The worker's side, as far as the intake sees it: paused means full (Worker::setPaused).
class RecordingSink final : public IntakeSink {
public:
  void takeConnection(int fd) override {
    events.emplace_back("taken");
    connections.emplace_back(fd);
    event_base_loopbreak(base);
  }
  void setPaused(bool paused) override {
    events.emplace_back(paused ? "paused" : "resumed");
    intake->setFull(paused);
  }

  event_base *base = nullptr;
  Intake *intake = nullptr;
  std::vector<std::string> events;
  std::vector<UniqueFd> connections;
};

class ListenerIntakeTest : public testing::Test {
protected:
  void SetUp() override {
    ASSERT_NE(base_, nullptr) << "event_base_new";
    test::LoopbackListener listener = test::listenOnLoopback();
    ASSERT_TRUE(listener.fd);
    address_ = listener.address;
    intake_ = std::make_unique<ListenerIntake>(std::move(listener.fd), kSlot, 0,
                                               std::chrono::seconds(0), calls_);
    sink_.base = base_.get();
    sink_.intake = intake_.get();
    ASSERT_TRUE(intake_->start(base_.get(), sink_)) << "start";
  }

  // A client connection, completed by the kernel into the listener's queue.
  void connectClient() {
    clients_.push_back(test::connectTo(address_));
    ASSERT_TRUE(clients_.back());
  }

  // Runs the loop until the sink takes a connection, at most 5 s.
  void runUntilTaken() {
    timeval bound{5, 0};
    event_base_loopexit(base_.get(), &bound);
    event_base_dispatch(base_.get());
  }

  test::LogCapture log_;
  test::FakeSystemCalls calls_;
  EventBasePtr base_{event_base_new()};
  RecordingSink sink_;
  std::unique_ptr<ListenerIntake> intake_;
  sockaddr_in address_{};
  std::vector<UniqueFd> clients_;
};

class ListenerIntakeFault : public ListenerIntakeTest, public testing::WithParamInterface<int> {};

TEST_P(ListenerIntakeFault, PausesThenAcceptsTheConnectionThatWaited) {
  const int code = GetParam();
  calls_.acceptFaults = {code};
  connectClient();
  runUntilTaken();

  EXPECT_THAT(sink_.events, ElementsAre("paused", "resumed", "taken"))
      << "full while paused, then the waiting connection is served";
  ASSERT_EQ(sink_.connections.size(), 1U);
  EXPECT_FALSE(intake_->paused());
  ASSERT_GE(calls_.acceptTimes.size(), 2U);
  EXPECT_GE(calls_.acceptTimes[1] - calls_.acceptTimes[0], kPause - 5ms)
      << "no accept during the pause: a pause, not a spin";
  auto lines = log_.linesWith("Failed to accept on the slot 3 socket");
  ASSERT_EQ(lines.size(), 1U);
  EXPECT_THAT(lines[0],
              HasSubstr(std::string(std::strerror(code)) + "; pausing accepts for 100 ms"));
  EXPECT_THAT(lines[0], HasSubstr("warning"));
}

INSTANTIATE_TEST_SUITE_P(OutOfResources, ListenerIntakeFault,
                         testing::Values(EMFILE, ENFILE, ENOBUFS, ENOMEM), test::errnoName);

TEST_F(ListenerIntakeTest, ARepeatedFaultIsLoggedOncePerInterval) {
  calls_.acceptFaults = {EMFILE, EMFILE, EMFILE};
  connectClient();
  runUntilTaken();
  EXPECT_THAT(sink_.events,
              ElementsAre("paused", "resumed", "paused", "resumed", "paused", "resumed", "taken"));
  EXPECT_EQ(log_.linesWith("Failed to accept").size(), 1U) << "three faults, one line";

  calls_.clock += kFaultLogInterval; // the next fault comes one interval later
  calls_.acceptFaults = {EMFILE};
  connectClient();
  runUntilTaken();
  EXPECT_EQ(sink_.connections.size(), 2U) << "the second connection is served too";
  auto lines = log_.linesWith("Failed to accept");
  ASSERT_EQ(lines.size(), 2U);
  EXPECT_THAT(lines[1], HasSubstr("(2 more since the last report)"));
}

TEST_F(ListenerIntakeTest, AFullWorkerDoesNotAcceptUntilItHasRoom) {
  intake_->setFull(true);
  connectClient();
  EXPECT_EQ(event_base_loop(base_.get(), EVLOOP_NONBLOCK), 1)
      << "no event left to run the loop: the listener is not watched";
  EXPECT_TRUE(calls_.acceptTimes.empty()) << "a full worker leaves the listener alone";
  intake_->setFull(false);
  runUntilTaken();
  EXPECT_THAT(sink_.events, ElementsAre("taken"));
}

TEST_F(ListenerIntakeTest, AnotherAcceptErrorNeitherPausesNorLogsAWarning) {
  calls_.acceptFaults = {EPERM}; // e.g. a firewall rule refusing the connection
  connectClient();
  runUntilTaken();
  EXPECT_THAT(sink_.events, ElementsAre("taken")) << "the next readiness accepts at once";
  EXPECT_TRUE(log_.linesWith("warning").empty());
}

} // namespace
} // namespace sockdispatch
