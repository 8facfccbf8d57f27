// The fault logs' pace (userspace/core/log_limiter.cc): the first fault is logged at once,
// repeats within the interval are held back and counted, and the next line after the interval
// says how many were.
#include "core/log_limiter.h"

#include <gtest/gtest.h>

#include <optional>

namespace sockdispatch {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

TEST(LogLimiter, TheFirstFaultIsLoggedAtOnce) {
  LogLimiter limiter(seconds(10));
  EXPECT_EQ(limiter.admit(Clock::time_point{}), std::optional<uint64_t>(0));
}

TEST(LogLimiter, RepeatsWithinTheIntervalAreHeldBackThenCounted) {
  LogLimiter limiter(seconds(10));
  Clock::time_point start{seconds(100)};
  ASSERT_TRUE(limiter.admit(start).has_value());
  for (int i = 1; i <= 5; ++i) {
    EXPECT_EQ(limiter.admit(start + seconds(i)), std::nullopt) << "repeat " << i;
  }
  EXPECT_EQ(limiter.admit(start + milliseconds(9999)), std::nullopt) << "just inside";
  EXPECT_EQ(limiter.admit(start + seconds(10)), std::optional<uint64_t>(6))
      << "one line once the interval has passed, counting the six held back";
  EXPECT_EQ(limiter.admit(start + seconds(11)), std::nullopt) << "a new interval began";
  EXPECT_EQ(limiter.admit(start + seconds(30)), std::optional<uint64_t>(1));
  EXPECT_EQ(limiter.seen(), 10U);
}

TEST(LogLimiter, TheSuffixSaysHowManyWereHeldBack) {
  EXPECT_EQ(heldBackSuffix(0), "");
  EXPECT_EQ(heldBackSuffix(6), " (6 more since the last report)");
}

} // namespace
} // namespace sockdispatch
